"""Compact CPU record of one attack run: per-record scalars plus small quantised per-pixel maps.

A :class:`Trajectory` is filled from :class:`attack_engine.StepRecord` s while an attack runs (or loaded
from an ``.npz``) and then answers every question the viewer asks without recomputing anything:
adversarial image, perturbation, prediction, p_y, gradient weight and ``|∂L/∂z|`` maps, first-flip
map, confidence histograms and a per-pixel probe over iterations.

Storage per record (maps at "view" resolution, the model resolution capped at :data:`MAP_SIDE`):

* perturbation ``int8`` (δ / δ_max · 127), prediction ``uint8``/``uint16``;
* p_y ``uint8`` (linear), weight and ``|∂L/∂z|`` ``uint8`` (log10, fixed ranges :data:`W_LOG`, :data:`G_LOG`);
* top-k class probabilities on a grid of at most :data:`PROBE_SIDE` per side (the pixel probe);
* histogram counts of p_y (correct / wrong) from the full-precision maps;
* the q-lens inputs (:mod:`attack_engine.qlens`), area-averaged over valid pixels: the margin
  ``log p_y - log(1-p_y)`` (``float16`` rounded to 8 significant bits, which compresses better) and
  ``log ||∂CE/∂z|| - log(1-p_y)`` ``uint8`` on ``[0, log(2)/2]`` (its whole range; 0 for two classes), plus
  the per-bin share summary from the full-resolution record, so any q's weight, ``|∂L_q/∂z|`` and
  gradient-mass split follow without a model call.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from attack_engine import qlens
from attack_engine.images import sample_nearest as _nearest

MAP_SIDE = 384  # per-pixel maps are stored at most this many pixels per side (= the largest panel sent)
PROBE_SIDE = 64  # top-k class probabilities are kept on a grid of at most this many pixels per side
TOPK = 3
HIST_BINS = 40
W_LOG = (-6.0, 2.0)  # log10 range of the stored gradient weight (relative to CE)
G_LOG = (-7.0, 1.0)  # log10 range of the stored |dL/dz|
CEG_EXCESS_MAX = 0.5 * math.log(2.0)  # log ||dCE/dz|| - log(1 - p_y) lies in [0, this]
LIST_FIELDS = ("p_true", "weight", "grad", "topk_cls", "topk_p", "hist", "margin", "log_ceg", "qsum")
SCALARS = (
    "index", "iteration", "stage", "stage_step", "stage_total", "eps", "step_size", "param", "loss", "ce",
    "acc", "miou", "best_acc", "best_index", "mass_cc", "mass_uc", "mass_wrong", "flipped",
)


def round_f16(x: np.ndarray, bits: int = 7) -> np.ndarray:
    """``float16`` keeping ``bits`` of its 10 mantissa bits (round to nearest; relative error ≤ 2^-(bits+1))."""
    u = np.asarray(x, dtype=np.float16).view(np.uint16)
    drop = 10 - bits
    r = u + np.uint16(1 << (drop - 1))  # no wrap-around: only non-finite codes (kept as they are) are that large
    r >>= drop
    r <<= drop
    keep = (u & 0x7C00) == 0x7C00  # inf / NaN, and values that would round up to inf, stay as they were
    keep |= (r & 0x7C00) == 0x7C00
    np.copyto(r, u, where=keep)
    return r.view(np.float16)


def quantise_log(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Positive values -> 1..255 on a log10 scale over [lo, hi]; zero/negative/NaN -> 0."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.log10(x)
    ok = x > 0
    return _codes(t, lo, hi, ok)


def quantise_log10(logv: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Like :func:`quantise_log` but from log10 values (-inf/NaN -> 0)."""
    t = np.array(logv, dtype=np.float64)
    return _codes(t, lo, hi, None)


def _codes(t: np.ndarray, lo: float, hi: float, ok: np.ndarray | None) -> np.ndarray:
    """log10 values ``t`` (overwritten) -> ``rint((t - lo) / (hi - lo) · 254)`` clipped to 0..254, plus 1; 0 where
    ``t`` is not finite or ``ok`` is False.  In place: the app quantises two maps per record."""
    t -= lo
    t /= hi - lo
    fin = np.isfinite(t)
    ok = fin if ok is None else (ok & fin)
    t *= 254.0
    np.rint(t, out=t)
    np.clip(t, 0, 254, out=t)
    t += 1
    t[~ok] = 0
    return t.astype(np.uint8)


def dequantise_log(q: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Inverse of :func:`quantise_log` (0 -> 0)."""
    q = np.asarray(q)
    v = np.power(10.0, lo + (q.astype(np.float64) - 1.0) / 254.0 * (hi - lo))
    return np.where(q == 0, 0.0, v).astype(np.float32)


def view_size(hw: tuple[int, int], side: int = MAP_SIDE) -> tuple[int, int]:
    """(H, W) scaled so the longer side is at most ``side`` (never upscaled)."""
    h, w = hw
    s = min(1.0, side / max(h, w))
    return max(1, round(h * s)), max(1, round(w * s))


def _area(t: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """``[B,C,H,W]`` float -> area-averaged ``hw`` (identity when already that size)."""
    if tuple(t.shape[-2:]) == tuple(hw):
        return t
    return F.interpolate(t, size=hw, mode="area")


def probe_grid(model_hw: tuple[int, int], map_side: int | None = None) -> tuple[int, int]:
    """The probe's grid for a run at ``model_hw``: the view size (longer side ``map_side``, default
    :data:`MAP_SIDE`) capped at :data:`PROBE_SIDE` per side."""
    return view_size(view_size(tuple(model_hw), map_side or MAP_SIDE), PROBE_SIDE)


def probe_topk(num_classes: int) -> int:
    """How many class probabilities per pixel the probe keeps: :data:`TOPK` (at most the class count); 0 for two
    classes, whose probe reads both from p_y."""
    return min(TOPK, num_classes) if num_classes > 2 else 0


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().float().cpu().numpy()


def _np64(t: torch.Tensor) -> np.ndarray:
    """A fresh float64 NumPy copy of a tensor (CPU)."""
    return t.detach().cpu().numpy().astype(np.float64)


@dataclass
class RunInfo:
    """What a run was: model, classes, config and where the image came from."""

    model_id: str
    class_names: list[str]
    palette: list[list[int]]
    config: dict
    ignore_index: int = 255
    source: str = "upload"  # example id or "upload"
    has_gt: bool = False
    model_hw: tuple[int, int] = (0, 0)
    expected_records: int = 0
    clean_acc: float = math.nan
    clean_miou: float = math.nan
    dmax: float = 0.0  # largest stage radius (perturbation quantisation scale)
    extra: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_json(self) -> str:
        d = asdict(self)
        d["model_hw"] = list(self.model_hw)
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> RunInfo:
        d = json.loads(text)
        d["model_hw"] = tuple(d["model_hw"])
        return cls(**d)


class Trajectory:
    """The recorded run; append :class:`~attack_engine.StepRecord` s, then read any record instantly.

    Args:
        info: :class:`RunInfo`.
        image: clean image at model resolution ``H×W×3`` uint8 (what the attack ran on).
        labels: the attack's labels at model resolution (ground truth or the clean prediction), int.
        clean_pred: the model's clean prediction at model resolution.
        light: keep only predictions and scalars (for compare runs).
        map_side: longest side of the stored maps (default :data:`MAP_SIDE`; shipped runs use less).
    """

    def __init__(self, info: RunInfo, image: np.ndarray, labels: np.ndarray, clean_pred: np.ndarray,
                 light: bool = False, map_side: int | None = None,
                 recorders: dict[str, Callable[[Any, Trajectory], np.ndarray]] | None = None) -> None:
        self.info = info
        self.light = light
        self.image = np.ascontiguousarray(image, dtype=np.uint8)
        self.labels = np.asarray(labels).astype(np.int64)
        self.clean_pred = np.asarray(clean_pred).astype(np.int64)
        if map_side is not None:
            info.extra["map_side"] = int(map_side)
        self.hw = view_size(self.image.shape[:2], int(info.extra.get("map_side", MAP_SIDE)))
        vh, vw = self.hw
        self.probe_hw = probe_grid(self.image.shape[:2], int(info.extra.get("map_side", MAP_SIDE)))
        img_t = torch.from_numpy(self.image).permute(2, 0, 1)[None].float() / 255.0
        self.image_v = (_area(img_t, self.hw)[0].permute(1, 2, 0).numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8)
        self.labels_v = _nearest(torch.from_numpy(self.labels), self.hw).numpy()
        self.clean_pred_v = _nearest(torch.from_numpy(self.clean_pred), self.hw).numpy()
        self.valid_v = self._valid(self.labels_v)
        self._valid_full = self._valid(self.labels)  # per-run constants of append (recomputed on every record before)
        self._n_valid_v = max(1, int(self.valid_v.sum()))
        self._same_hw = tuple(self.hw) == tuple(self.labels.shape[-2:])  # the view maps are the model's pixels
        self.pred_dtype = np.uint8 if info.num_classes <= 255 else np.uint16
        self.sc: dict[str, list[float]] = {k: [] for k in SCALARS}
        self.delta: list[np.ndarray | None] = []  # None where a shipped run dropped it (see save(delta_every))
        self.pred: list[np.ndarray] = []
        self.p_true: list[np.ndarray] = []
        self.weight: list[np.ndarray] = []
        self.grad: list[np.ndarray] = []
        self.topk_cls: list[np.ndarray] = []
        self.topk_p: list[np.ndarray] = []
        self.hist: list[np.ndarray] = []
        self.margin: list[np.ndarray] = []  # float16 log p_y - log(1 - p_y)
        self.log_ceg: list[np.ndarray] = []  # uint8 log ||dCE/dz|| - log(1-p_y) on [0, CEG_EXCESS_MAX] (0: ignored)
        self.qsum: list[np.ndarray] = []  # float32 [3, SUMMARY_BINS, 3] (attack_engine.qlens.share_summary)
        self.first_flip = np.full((vh, vw), -1, dtype=np.int32)
        self.finished = False
        self.view_cache: dict[str, Any] = {}  # drawings the views derive once per run (app.figures.background)
        # per-record data of panels that need more than the above (app.panels: an entry's ``record``); not saved
        self.recorders = dict(recorders or {}) if not light else {}
        self.panel_maps: dict[str, list[np.ndarray]] = {name: [] for name in self.recorders}

    # -- filling ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.sc["index"])

    def _valid(self, labels: np.ndarray) -> np.ndarray:
        """Pixels that count (the engine's rule: label in ``[0, C)`` and not the ignore id)."""
        c = self.info.num_classes
        return (labels != self.info.ignore_index) & (labels >= 0) & (labels < c)

    def append(self, rec: Any) -> None:
        """Add one record (batch item 0); its top-k classes (``AttackRun(record_topk=probe_topk(C))``) feed the probe."""
        info = self.info
        k = len(self)
        pred_v = _nearest(rec.pred[0].detach().cpu(), self.hw).numpy().astype(self.pred_dtype)
        flipped = (pred_v != self.clean_pred_v) & self.valid_v
        self.first_flip[flipped & (self.first_flip < 0)] = k
        mass = _np(rec.mass)[0] if rec.mass is not None else np.full(3, np.nan)
        vals = {
            "index": rec.index, "iteration": rec.iteration, "stage": rec.stage, "stage_step": rec.stage_step,
            "stage_total": rec.stage_total, "eps": float(rec.eps[0]), "step_size": float(rec.step_size[0]),
            "param": math.nan if rec.param is None else float(rec.param), "loss": float(rec.loss[0]),
            "ce": float(rec.ce[0]), "acc": float(rec.acc[0]), "miou": float(rec.miou[0]),
            "best_acc": float(rec.best_acc[0]), "best_index": int(rec.best_index[0]),
            "mass_cc": float(mass[0]), "mass_uc": float(mass[1]), "mass_wrong": float(mass[2]),
            "flipped": float(flipped.sum() / self._n_valid_v),
        }
        for key, v in vals.items():
            self.sc[key].append(v)
        self.pred.append(pred_v)
        if self.light:
            return
        self._delta_append(rec)
        if rec.p_true is not None:
            self._telemetry_append(rec)
        if getattr(rec, "topk_p", None) is not None and probe_topk(info.num_classes):
            k = probe_topk(info.num_classes)  # the records' grid is probe_hw (LiveRun: AttackRun(topk_hw=...))
            cls = _nearest(rec.topk_cls[0, :k].detach().cpu(), self.probe_hw)
            pv = _nearest(rec.topk_p[0, :k].detach().float().cpu(), self.probe_hw)
            self.topk_cls.append(cls.numpy().astype(np.uint16))
            self.topk_p.append(np.clip(np.rint(pv.numpy() * 255.0), 0, 255).astype(np.uint8))
        for name, record in self.recorders.items():
            self.panel_maps[name].append(np.asarray(record(rec, self)))

    def _view(self, maps: list[np.ndarray]) -> list[np.ndarray]:
        """Full-resolution float64 maps at the view resolution (area average; as they are when the sizes agree)."""
        if self._same_hw:
            return maps
        return list(_area(torch.from_numpy(np.stack(maps))[None], self.hw)[0].numpy())

    def _delta_append(self, rec: Any) -> None:
        d = (rec.x_adv[0] - rec.x_clean[0]).detach().float().cpu()[None]
        d = _area(d, self.hw)[0].permute(1, 2, 0).numpy()
        d = d / (self.info.dmax or 1.0)
        d *= 127.0
        np.rint(d, out=d)
        np.clip(d, -127, 127, out=d)
        self.delta.append(d.astype(np.int8))

    def _telemetry_append(self, rec: Any) -> None:
        """p_y histogram, the quantised p_y / weight / ``|∂L/∂z|`` maps and the q-lens inputs of one record."""
        pt_full = _np64(rec.p_true[0].float())  # rounded to float32 first, whatever the run's dtype
        pred = rec.pred[0].detach().cpu().numpy()
        correct = (pred == self.labels) & self._valid_full
        self._hist_append(pt_full, correct)
        log_g = getattr(rec, "log_grad_logits", None)  # natural log of |dL/dz|, finite where it underflows
        if log_g is not None:
            g = _np64(log_g[0])
            g /= math.log(10.0)
        else:
            g = torch.log10(rec.grad_logits[0].detach().double().cpu()).numpy()
        pt, w, g = self._view([pt_full, _np64(rec.weight[0]), g])
        pt = pt * 255.0
        np.rint(pt, out=pt)
        np.clip(pt, 0, 255, out=pt)
        self.p_true.append(pt.astype(np.uint8))
        self.weight.append(quantise_log(w, *W_LOG))
        self.grad.append(quantise_log10(g, *G_LOG))
        if getattr(rec, "log_ce_grad", None) is not None:
            self._lens_append(rec, correct)

    def _lens_append(self, rec: Any, correct: np.ndarray) -> None:
        lp, lr, lc = (_np64(t[0]) for t in (rec.log_p_true, rec.log_p_other, rec.log_ce_grad))
        valid = np.isfinite(lc)
        # per pixel: margin log p_y - log(1-p_y), and log ||dCE/dz|| - log(1-p_y) in [0, log(2)/2] (0 for 2 classes)
        with np.errstate(invalid="ignore"):
            margin, excess = lp - lr, lc - lr
        margin[~valid] = 0.0
        excess[~valid] = 0.0
        if self._same_hw:
            ok = valid & self.valid_v
            m, e = margin, excess
        else:
            vf = valid.astype(np.float64)
            num_m, num_e, den = self._view([margin * vf, excess * vf, vf])
            ok = (den > 0) & self.valid_v
            with np.errstate(invalid="ignore", divide="ignore"):
                m, e = num_m / den, num_e / den
        m[~ok] = 0.0
        self.margin.append(round_f16(m))
        e[~ok] = 0.0
        e /= CEG_EXCESS_MAX
        e *= 254.0
        np.rint(e, out=e)
        np.clip(e, 0, 254, out=e)
        e += 1
        e[~ok] = 0
        self.log_ceg.append(e.astype(np.uint8))
        groups = np.where(np.exp(lp) >= qlens.CONFIDENT, 0, 1).astype(np.int8)
        groups[~correct] = 2
        groups[~self._valid_full] = qlens.IGNORED
        self.qsum.append(qlens.share_summary(lp, lc, groups))

    def _hist_append(self, p_true: np.ndarray, correct: np.ndarray) -> None:
        edges = np.linspace(0.0, 1.0, HIST_BINS + 1)
        hc, _ = np.histogram(p_true[correct], bins=edges)
        hw_, _ = np.histogram(p_true[self._valid_full & ~correct], bins=edges)
        self.hist.append(np.stack([hc, hw_]).astype(np.int32))

    # -- reading ----------------------------------------------------------------------------------
    @property
    def display_hw(self) -> tuple[int, int]:
        """Panel size: the original image's aspect ratio, no smaller than the view maps in either direction."""
        src = self.info.extra.get("source_hw")
        hv, wv = self.hw
        if not src:
            return self.hw
        ho, wo = src
        s = max(hv / ho, wv / wo)
        return max(1, round(ho * s)), max(1, round(wo * s))

    @property
    def has_telemetry(self) -> bool:
        return bool(self.p_true)

    def clamp(self, k: int | float | None) -> int:
        """A valid record index (the last one for ``None``)."""
        n = len(self)
        if n == 0:
            return 0
        return n - 1 if k is None else int(min(max(int(k), 0), n - 1))

    def scalars(self, name: str) -> np.ndarray:
        return np.asarray(self.sc[name], dtype=np.float64)

    def get(self, name: str, k: int) -> float:
        return float(self.sc[name][k])

    def delta_key(self, k: int) -> int:
        """The record whose perturbation is shown at ``k``: ``k`` itself unless a shipped run dropped it."""
        if self.delta[k] is not None:
            return k
        for j in range(k - 1, -1, -1):
            if self.delta[j] is not None:
                return j
        return next(j for j in range(k, len(self.delta)) if self.delta[j] is not None)

    def delta_at(self, k: int) -> np.ndarray:
        """Perturbation ``H×W×3`` float32 in image units at the view resolution."""
        return self.delta[self.delta_key(k)].astype(np.float32) * (self.info.dmax / 127.0)

    def x_adv_at(self, k: int) -> np.ndarray:
        """Adversarial image ``H×W×3`` uint8 at the view resolution."""
        x = self.image_v.astype(np.float32) + self.delta_at(k) * 255.0
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)

    def weight_at(self, k: int) -> np.ndarray:
        return dequantise_log(self.weight[k], *W_LOG)

    def grad_at(self, k: int) -> np.ndarray:
        return dequantise_log(self.grad[k], *G_LOG)

    @property
    def has_lens(self) -> bool:
        """Whether the q-lens inputs were recorded (runs saved before they existed lack them)."""
        return bool(self.log_ceg)

    def lens_inputs_at(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(log p_y, log ||∂CE/∂z||, groups)`` at the view resolution (see :mod:`attack_engine.qlens`)."""
        m = self.margin[k].astype(np.float64)
        log_p = -np.logaddexp(0.0, -m)  # log sigmoid(margin), stable for saturated margins
        q = self.log_ceg[k]
        groups = qlens.groups_from_labels(self.pred[k].astype(np.int64), self.labels_v, log_p,
                                          self.info.ignore_index, self.info.num_classes)
        groups = np.where(q > 0, groups, qlens.IGNORED).astype(np.int8)
        lc = np.where(q > 0, -np.logaddexp(0.0, m) + (q.astype(np.float64) - 1.0) / 254.0 * CEG_EXCESS_MAX, -np.inf)
        return log_p, lc, groups

    def margin_at(self, k: int) -> np.ndarray:
        """log p_y - log(1 - p_y) per view pixel (NaN on ignored pixels)."""
        return np.where(self.log_ceg[k] > 0, self.margin[k].astype(np.float64), np.nan)

    def first_flip_at(self, k: int) -> np.ndarray:
        """Record index of each pixel's first flip (vs the clean prediction) up to ``k``; -1 = not yet."""
        return np.where((self.first_flip >= 0) & (self.first_flip <= k), self.first_flip, -1)

    def best_index(self) -> int:
        """Record index of the best iterate so far (-1 if none yet)."""
        return int(self.sc["best_index"][-1]) if len(self) else -1

    def probe(self, y: int, x: int) -> dict[str, Any]:
        """Everything stored about view pixel (y, x) over all records (class probabilities, weight, grad)."""
        n = len(self)
        out: dict[str, Any] = {
            "y": y, "x": x, "label": int(self.labels_v[y, x]), "clean": int(self.clean_pred_v[y, x]),
            "pred": np.array([int(p[y, x]) for p in self.pred]), "first_flip": int(self.first_flip[y, x]),
        }
        if self.p_true:
            out["p_true"] = np.array([p[y, x] for p in self.p_true], dtype=np.float32) / 255.0
            out["weight"] = dequantise_log(np.array([w[y, x] for w in self.weight]), *W_LOG)
            out["grad"] = dequantise_log(np.array([g[y, x] for g in self.grad]), *G_LOG)
        probs: dict[int, np.ndarray] = {}
        c = self.info.num_classes
        lab = out["label"]
        if c == 2 and "p_true" in out and 0 <= lab < 2:
            probs = {lab: out["p_true"], 1 - lab: 1.0 - out["p_true"]}
        elif self.topk_cls:
            py = min(int(y * self.probe_hw[0] / self.hw[0]), self.probe_hw[0] - 1)
            px = min(int(x * self.probe_hw[1] / self.hw[1]), self.probe_hw[1] - 1)
            for i in range(len(self.topk_cls)):
                for cls, pv in zip(self.topk_cls[i][:, py, px], self.topk_p[i][:, py, px], strict=True):
                    probs.setdefault(int(cls), np.full(n, np.nan, dtype=np.float32))[i] = pv / 255.0
        out["probs"] = probs
        return out

    # -- persistence ------------------------------------------------------------------------------
    def to_arrays(self, delta_every: int = 1, with_image: bool = True) -> dict[str, np.ndarray]:
        """All stored data as named arrays (see :meth:`save`)."""
        arrs: dict[str, np.ndarray] = {
            "info": np.frombuffer(self.info.to_json().encode(), dtype=np.uint8),
            "labels": self.labels.astype(np.int32), "clean_pred": self.clean_pred.astype(np.int32),
            "first_flip": self.first_flip, "finished": np.array(self.finished), "light": np.array(self.light),
        }
        if with_image:
            arrs["image"] = self.image
        for k in SCALARS:
            arrs["sc_" + k] = self.scalars(k)
        if self.pred:
            arrs["pred"] = np.stack(self.pred)
        if self.delta:
            n = len(self.delta)
            keep = [k for k in range(n) if self.delta[k] is not None and
                    (k % max(delta_every, 1) == 0 or k in (n - 1, self.best_index()))]
            arrs["delta_keys"] = np.asarray(keep, dtype=np.int32)
            arrs["delta"] = np.stack([self.delta[k] for k in keep])
        for name in LIST_FIELDS:
            lst = getattr(self, name)
            if lst:
                arrs[name] = np.stack(lst)
        return arrs

    @classmethod
    def from_arrays(cls, z, image: np.ndarray | None = None) -> Trajectory:
        """Inverse of :meth:`to_arrays`; ``image`` is required when the arrays were saved without it."""
        info = RunInfo.from_json(bytes(z["info"]).decode())
        img = z.get("image", image)
        if img is None:
            raise ValueError("this run was saved without its image; pass image=")
        t = cls(info, img, z["labels"], z["clean_pred"], light=bool(z["light"]))
        for k in SCALARS:
            vals = z["sc_" + k].tolist()
            t.sc[k] = [int(v) for v in vals] if k in ("index", "iteration", "stage", "stage_step", "stage_total",
                                                      "best_index") else vals
        if "pred" in z:
            t.pred = list(z["pred"])
        if "delta" in z:
            t.delta = [None] * len(t)
            for k, d in zip(z["delta_keys"].tolist(), z["delta"], strict=True):
                t.delta[k] = d
        for name in LIST_FIELDS:
            if name in z:
                setattr(t, name, list(z[name]))
        t.first_flip = z["first_flip"].astype(np.int32)
        t.finished = bool(z["finished"])
        return t

    def save(self, path: str | Path, delta_every: int = 1) -> None:
        """Write a compressed ``.npz``.

        ``delta_every`` > 1 keeps the perturbation (noise that does not compress) only at every n-th record and
        at the first, best and last ones; the viewer then shows the nearest earlier kept one and says so.
        """
        buf = io.BytesIO()
        np.savez_compressed(buf, **self.to_arrays(delta_every))
        Path(path).write_bytes(buf.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> Trajectory:
        return cls.from_arrays(np.load(path, allow_pickle=False))


def save_group(path: str | Path, trajs: dict[str, Trajectory], with_image: bool = True) -> None:
    """Several runs on the same image (a comparison) in one ``.npz``; the image is stored once (or not at all,
    when the caller ships it elsewhere: then :func:`load_group` needs ``image=``)."""
    arrs: dict[str, np.ndarray] = {"names": np.frombuffer(json.dumps(list(trajs)).encode(), dtype=np.uint8)}
    for i, t in enumerate(trajs.values()):
        if i == 0 and with_image:
            arrs["image"] = t.image
        for k, v in t.to_arrays(with_image=False).items():
            arrs[f"{i}/{k}"] = v
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrs)
    Path(path).write_bytes(buf.getvalue())


def load_group(path: str | Path, image: np.ndarray | None = None) -> dict[str, Trajectory]:
    """Inverse of :func:`save_group`."""
    z = np.load(path, allow_pickle=False)
    names = json.loads(bytes(z["names"]).decode())
    image = z.get("image", image)
    out = {}
    for i, name in enumerate(names):
        sub = {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith(f"{i}/")}
        out[name] = Trajectory.from_arrays(sub, image=image)
    return out
