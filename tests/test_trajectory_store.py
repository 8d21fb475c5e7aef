"""What ``Trajectory.append`` stores, against the plain computation of each stored array (bit for bit).

``append`` runs once per recorded iteration in the app, so it is written with in-place NumPy passes, per-run masks
computed once and no resize when the view is the model's size.  The references here are the direct formulas (the
previous implementation): torch ``double`` maps, ``F.interpolate(mode="area")``, ``np.where`` masks, two
``np.histogram`` calls and ``np.maximum.at`` for the share summary's per-cell maxima.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from app.runner import LiveRun, make_config, prepare
from app.standin import TinySeg, synthetic_image
from app.trajectory import CEG_EXCESS_MAX, G_LOG, HIST_BINS, W_LOG, round_f16
from attack_engine import qlens


def _area(t: torch.Tensor, hw) -> torch.Tensor:
    return t if tuple(t.shape[-2:]) == tuple(hw) else F.interpolate(t, size=hw, mode="area")


def _q_log10(lg: np.ndarray, lo: float, hi: float) -> np.ndarray:
    t = (lg - lo) / (hi - lo)
    q = np.clip(np.rint(np.nan_to_num(t, nan=0.0, neginf=0.0, posinf=1.0) * 254.0), 0, 254) + 1
    return np.where(np.isfinite(t), q, 0).astype(np.uint8)


def _summary(lp: np.ndarray, lc: np.ndarray, g: np.ndarray) -> np.ndarray:
    lp, lc, g = lp.ravel(), lc.ravel(), g.ravel()
    keep = (g >= 0) & np.isfinite(lc) & np.isfinite(lp)
    lp, lc, g = lp[keep], lc[keep], g[keep].astype(np.int64)
    b = np.clip(np.floor((lp - qlens.SUMMARY_LO) / qlens.SUMMARY_STEP).astype(np.int64) + 1, 0, qlens.SUMMARY_BINS - 1)
    cell, n = g * qlens.SUMMARY_BINS + b, 3 * qlens.SUMMARY_BINS
    top = np.full(n, -np.inf)
    np.maximum.at(top, cell, lc)
    w = np.exp(lc - top[cell])
    sw, s1, s2 = (np.bincount(cell, weights=v, minlength=n) for v in (w, w * lp, w * lp * lp))
    out = np.zeros((n, 3))
    has = sw > 0
    out[:, 0] = -np.inf
    out[has, 0] = top[has] + np.log(sw[has])
    out[has, 1] = s1[has] / sw[has]
    out[has, 2] = np.maximum(s2[has] / sw[has] - out[has, 1] ** 2, 0.0)
    return out.reshape(3, qlens.SUMMARY_BINS, 3).astype(np.float32)


def _expected(t, rec) -> dict[str, np.ndarray]:
    """Every array ``append`` stores for ``rec`` (telemetry on), computed the plain way."""
    pt = rec.p_true[0].float()
    g = rec.log_grad_logits[0].double() / math.log(10.0)
    maps = _area(torch.stack([pt.double(), rec.weight[0].double(), g])[None], t.hw)[0].numpy()
    with np.errstate(divide="ignore"):
        w_log = np.log10(maps[1])
    pred, lab = rec.pred[0].numpy(), t.labels
    valid = (lab != t.info.ignore_index) & (lab >= 0) & (lab < t.info.num_classes)
    correct = (pred == lab) & valid
    edges = np.linspace(0.0, 1.0, HIST_BINS + 1)
    lp, lr, lc = (x[0].double() for x in (rec.log_p_true, rec.log_p_other, rec.log_ce_grad))
    vf = torch.isfinite(lc).double()
    fin = vf > 0
    lens = _area(torch.stack([torch.where(fin, lp - lr, 0.0) * vf, torch.where(fin, lc - lr, 0.0) * vf, vf])[None],
                 t.hw)[0].numpy()
    ok = (lens[2] > 0) & t.valid_v
    with np.errstate(invalid="ignore", divide="ignore"):
        m, e = np.where(ok, lens[0] / lens[2], 0.0), np.where(ok, lens[1] / lens[2], np.nan)
    q = np.clip(np.rint(np.nan_to_num(e, nan=0.0) / CEG_EXCESS_MAX * 254.0), 0, 254) + 1
    groups = qlens.pixel_groups(correct, valid, np.exp(lp.numpy()))
    d = _area((rec.x_adv[0] - rec.x_clean[0]).float()[None], t.hw)[0].permute(1, 2, 0).numpy()
    return {
        "p_true": np.clip(np.rint(maps[0] * 255.0), 0, 255).astype(np.uint8),
        "weight": _q_log10(np.where(maps[1] > 0, w_log, np.nan), *W_LOG), "grad": _q_log10(maps[2], *G_LOG),
        "hist": np.stack([np.histogram(pt.numpy()[correct], bins=edges)[0],
                          np.histogram(pt.numpy()[valid & ~correct], bins=edges)[0]]).astype(np.int32),
        "margin": round_f16(m), "log_ceg": np.where(ok, q, 0).astype(np.uint8),
        "qsum": _summary(lp.numpy(), lc.numpy(), groups),
        "delta": np.clip(np.rint(d / t.info.dmax * 127.0), -127, 127).astype(np.int8),
    }


@pytest.mark.parametrize("classes", [2, 4])
@pytest.mark.parametrize("map_side", [None, 40])
def test_append_stores_the_plain_computation_bit_for_bit(classes, map_side):
    img, mask = synthetic_image(64)
    mask = mask.copy()
    mask[:10, :20] = 255  # ignored pixels
    if classes > 2:
        mask[20:30, 20:30] = 3
    model = TinySeg(num_classes=classes).freeze()
    live = LiveRun(model, prepare(img, mask, model, "synthetic"), make_config("tsallis", "apgd", 8, 6, 0, 0,
                                                                              "linear:-2:1"), map_side=map_side)
    t, n = live.traj, 0
    assert t._same_hw == (map_side is None)
    for rec in live._it:
        before = len(t)
        t.append(rec)
        want = _expected(t, rec)
        for name, arr in want.items():
            got = getattr(t, name)[before]
            assert got.dtype == arr.dtype and got.shape == arr.shape, name
            assert got.tobytes() == np.ascontiguousarray(arr).tobytes(), f"{name} differs at record {before}"
        n += 1
    assert n >= 6 and (t.margin[-1] != 0).any() and np.isfinite(t.qsum[-1][..., 0]).any()


def test_share_summary_is_the_plain_computation_bit_for_bit():
    rng = np.random.default_rng(0)
    for trial in range(12):
        n = int(rng.integers(1, 5000))
        lp = np.log(rng.uniform(1e-30, 1, n)) * rng.uniform(0, 1, n) ** 3
        lp[rng.uniform(size=n) < 0.05] = -rng.uniform(30, 1e4)
        lp[rng.uniform(size=n) < 0.1] = 0.0
        lc = 0.5 * math.log(2) + np.log(-np.expm1(np.minimum(lp, -1e-300))) + rng.normal(0, 0.1, n)
        lc[rng.uniform(size=n) < 0.05] = -np.inf
        if trial % 3 == 0:
            lp[rng.uniform(size=n) < 0.02] = np.nan
        g = rng.integers(-1 if trial % 2 else 0, 3, n).astype(np.int8)
        for dt in (np.float64, np.float32):
            got = qlens.share_summary(lp.astype(dt), lc.astype(dt), g)
            assert got.tobytes() == _summary(lp.astype(dt).astype(np.float64), lc.astype(dt).astype(np.float64),
                                             g).tobytes()
