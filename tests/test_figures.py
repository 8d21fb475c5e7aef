"""Pure figure builders and the trajectory store: records in, images / Plotly specs out."""

from __future__ import annotations

import json
import math

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from PIL import Image

import app  # noqa: F401
from app import figures as fg
from app.runner import LiveRun, make_config, prepare
from app.standin import TinySeg, synthetic_image
from app.trajectory import HIST_BINS, Trajectory, dequantise_log, quantise_log, view_size
from app.view import MAIN_PANELS, MIN_PANEL_SIDE, panel_hw, panel_to_view, render_main, render_static, view_to_panel
from attack_engine.losses import ATTACKS


@pytest.fixture(scope="module")
def traj() -> Trajectory:
    img, mask = synthetic_image(64)
    model = TinySeg().freeze()
    prep = prepare(img, mask, model, "synthetic")
    return LiveRun(model, prep, make_config("tsallis", "apgd", 8, 6, 0, 0, "linear:-2:1")).run_all()


def _valid_plotly(fig: fg.Fig) -> go.Figure:
    spec = json.loads(fig.to_json())  # strict JSON: no NaN
    return go.Figure(spec)  # raises on any invalid property


def test_quantise_log_roundtrip():
    x = np.array([0.0, 1e-9, 1e-6, 1e-3, 0.5, 1.0, 50.0, 1e5, np.nan, -1.0])
    q = quantise_log(x, -6, 2)
    assert q[0] == 0 and q[-1] == 0 and q[-2] == 0
    back = dequantise_log(q, -6, 2)
    inside = (x >= 1e-6) & (x <= 100)
    rel = np.abs(np.log10(back[inside]) - np.log10(x[inside]))
    assert rel.max() <= 8 / 254 / 2 + 1e-6  # half a quantisation step in log10


def test_view_size_caps_and_keeps_aspect():
    assert view_size((100, 50)) == (100, 50)
    assert view_size((1024, 512), 512) == (512, 256)


def test_trajectory_records_everything(traj: Trajectory):
    n = len(traj)
    assert n == traj.info.expected_records == 6 + 3  # APGD: steps + one start record per stage
    assert traj.finished and "result_acc" in traj.info.extra
    assert len(traj.pred) == len(traj.delta) == len(traj.p_true) == len(traj.weight) == len(traj.grad) == n
    assert traj.hist[0].shape == (2, HIST_BINS)
    valid = traj.valid_v.sum()
    assert traj.hist[3].sum() == valid  # every labelled pixel is in the histogram
    # records beyond what was flipped: first-flip map only grows
    flips = [(traj.first_flip_at(k) >= 0).sum() for k in range(n)]
    assert flips == sorted(flips)
    # perturbation stays in the largest stage's ball (quantised)
    d = np.stack([traj.delta_at(k) for k in range(n)])
    assert np.abs(d).max() <= traj.info.dmax * (1 + 1 / 127)
    assert traj.clamp(None) == n - 1 and traj.clamp(999) == n - 1 and traj.clamp(-3) == 0


def test_trajectory_save_load_roundtrip(traj: Trajectory, tmp_path):
    p = tmp_path / "t.npz"
    traj.save(p)
    t2 = Trajectory.load(p)
    assert len(t2) == len(traj)
    for k in (0, len(traj) - 1):
        assert np.array_equal(t2.x_adv_at(k), traj.x_adv_at(k))
        assert np.array_equal(t2.weight[k], traj.weight[k])
    assert t2.scalars("acc").tolist() == traj.scalars("acc").tolist()
    assert t2.info.config == traj.info.config
    # keyframed perturbations: the viewer falls back to the nearest earlier kept record
    traj.save(p, delta_every=4)
    t3 = Trajectory.load(p)
    assert t3.delta_key(5) == 4 and t3.delta_key(4) == 4
    assert t3.delta[len(t3) - 1] is not None
    note = render_main(t3, 5)["status"]
    assert "record 4" in note


def test_probe_gives_series_for_one_pixel(traj: Trajectory):
    pr = traj.probe(10, 20)
    n = len(traj)
    assert len(pr["pred"]) == len(pr["p_true"]) == len(pr["weight"]) == len(pr["grad"]) == n
    probs = pr["probs"]
    assert set(probs) == {0, 1}
    assert np.allclose(probs[0] + probs[1], 1.0, atol=1e-6)


def test_probe_multiclass_uses_topk():
    img, _ = synthetic_image(48)
    model = TinySeg(num_classes=5).freeze()
    live = LiveRun(model, prepare(img, None, model), make_config("ce", "pgd", 8, 3, 0, 0, None))
    t = live.run_all()
    assert t.topk_cls and t.topk_cls[0].shape[0] == 3
    pr = t.probe(5, 5)
    assert pr["probs"] and all(len(v) == len(t) for v in pr["probs"].values())
    tot = sum(np.nan_to_num(v) for v in pr["probs"].values())
    assert np.all(tot <= 1.0 + 0.02)


def test_weight_curve_matches_the_definitions():
    p, w = fg.weight_curve("tsallis", 0, 10, "const:-1")
    assert np.allclose(w, p ** 2, rtol=1e-6)  # w_q(p) = p^(1-q)
    _, w_ce = fg.weight_curve("ce", 3, 10)
    assert np.allclose(w_ce, 1.0)
    p, w_m = fg.weight_curve("masked_ce", 0, 10)
    assert np.all(w_m[p > 0.5] == 1) and np.all(w_m[p < 0.5] == 0)
    p, w_s = fg.weight_curve("segpgd", 5, 10)  # λ = 0.25
    assert np.allclose(w_s[p > 0.5], 0.75) and np.allclose(w_s[p < 0.5], 0.25)


@pytest.mark.parametrize("attack", ATTACKS)
def test_histogram_figure_every_attack(attack):
    hist = np.array([np.arange(HIST_BINS), np.arange(HIST_BINS)[::-1]])
    fig = fg.histogram_figure(hist, attack, 2, 10, "linear:-2:1" if attack == "tsallis" else None,
                              -1.0 if attack == "tsallis" else None, k=2)
    g = _valid_plotly(fig)
    bars = [t for t in g.data if t.type == "bar"]
    assert [b.name for b in bars] == ["correct", "wrong"]
    assert math.isclose(sum(sum(b.y) for b in bars), 1.0, rel_tol=1e-4)
    assert any(t.yaxis == "y2" for t in g.data)  # weight curve on the secondary axis
    if attack == "tsallis":
        assert any(abs(s.x0 - 2 / 3) < 1e-6 for s in g.layout.shapes)  # p* = (1-q)/(2-q) at q = -1


def test_curves_mass_probe_preview_compare_are_valid_plotly(traj: Trajectory):
    g = _valid_plotly(fg.curves_figure(traj, 3))
    names = [t.name for t in g.data]
    for want in ("pixel acc", "mIoU", "attack loss", "q", "step size ×255", "best iterate"):
        assert want in names
    star = next(t for t in g.data if t.name == "best iterate")
    assert star.x[0] == traj.best_index()
    m = _valid_plotly(fg.mass_figure(traj, 2))
    ys = np.array([t.y for t in m.data], dtype=float)
    assert np.allclose(ys.sum(0), 1.0, atol=1e-3)
    _valid_plotly(fg.probe_figure(traj.probe(3, 3), traj.info.class_names, traj.info.palette, 1))
    for opt in ("pgd", "apgd"):
        _valid_plotly(fg.schedule_preview_figure("tsallis", "cosine:-2:1", 20, opt))
    _valid_plotly(fg.schedule_preview_figure("segpgd", None, 20))
    _valid_plotly(fg.compare_curves_figure({"CE-PGD": traj.scalars("acc"), "TsallisPGD": traj.scalars("acc")}, 2))


def test_nan_becomes_null_in_json():
    f = fg.Fig([dict(type="scatter", x=[0, 1], y=fg.finite_list([np.nan, 1.0]))], {})
    assert json.loads(f.to_json())["data"][0]["y"] == [None, 1.0]


def test_image_panels(traj: Trajectory):
    h, w = traj.hw
    img = traj.image_v
    seg = fg.seg_overlay(img, traj.pred[0], traj.info.palette)
    assert seg.size == (w, h) and seg.mode == "RGB"
    lab = traj.pred[0].astype(np.int64).copy()
    lab[0, 0] = 255
    ov = np.asarray(fg.seg_overlay(img, lab, traj.info.palette))
    assert np.array_equal(ov[0, 0], img[0, 0])  # ignored pixel keeps the image
    # an ignore index inside the palette (here class 1) is honoured: those pixels keep the image, the others do not
    lab1 = np.ones_like(lab)
    lab1[:, : lab1.shape[1] // 2] = 0
    ov1 = np.asarray(fg.seg_overlay(img, lab1, traj.info.palette, ignore_index=1))
    assert np.array_equal(ov1[lab1 == 1], img[lab1 == 1])
    assert not np.array_equal(ov1[lab1 == 0], img[lab1 == 0])
    adv = np.asarray(fg.adversarial_image(img, traj.delta[2], traj.info.dmax))
    assert np.array_equal(adv, traj.x_adv_at(2))
    pert = np.asarray(fg.perturbation_image(np.zeros((4, 4, 3), np.int8)))
    assert np.all((pert == 127) | (pert == 128))
    pred = np.zeros((4, 4), np.int64)
    clean = pred.copy()
    labels = pred.copy()
    pred[0, 0] = 1  # correct -> wrong
    bg = Image.new("RGB", (4, 4), (100, 100, 100))
    fl = np.asarray(fg.flipped_image(bg, pred, clean, labels, np.ones((4, 4), bool)))
    assert tuple(fl[0, 0]) == fg.FLIP_TO_WRONG and tuple(fl[1, 1]) == (100, 100, 100)
    ff = np.full((4, 4), -1)
    ff[2, 2] = 0
    ffi = np.asarray(fg.first_flip_image(bg, ff, 5))
    assert tuple(ffi[2, 2]) != (100, 100, 100) and tuple(ffi[0, 0]) == (100, 100, 100)
    wi = np.asarray(fg.weight_image(np.array([[0, 1], [128, 255]], np.uint8)))
    assert tuple(wi[0, 0]) == (20, 20, 20)
    hm = np.asarray(fg.heatmap_image(np.array([[0.0, 1e-3], [1.0, 10.0]]), -4, 2))
    assert tuple(hm[0, 0]) == (20, 20, 20) and tuple(hm[1, 1]) != tuple(hm[0, 1])
    assert fg.placeholder_image("no ground truth", (64, 80)).size == (80, 64)
    grid = fg.grid_image([Image.new("RGB", (10, 10))] * 3, cols=2, pad=2)
    assert grid.size == (2 * 10 + 3 * 2, 2 * 10 + 3 * 2)


def test_render_main_and_static(traj: Trajectory):
    out = render_main(traj, 2, probe_yx=(5, 6))
    for name in MAIN_PANELS:
        assert out.get(name) is not None, name
    assert "record **2**" in out["status"]
    assert "Pixel (x=6, y=5)" in out["probe_md"]
    st = render_static(traj)
    assert st["gt"].size == st["clean"].size and "labels = ground truth" in st["legend"]
    # click coordinates round-trip between panels and view pixels
    for name in ("seg", "grad"):
        x, y = view_to_panel(traj, name, (7, 9))
        assert panel_to_view(traj, name, (x, y)) == (7, 9)


def test_map_panels_carry_a_colour_bar_outside_the_click_area(traj: Trajectory):
    from app.colour_bars import BAR_PANELS, bar_height, map_strip

    out = render_main(traj, 2, probe_yx=(5, 6))
    for name in BAR_PANELS:
        h, w = panel_hw(traj, name)
        img = out[name]
        assert img.size == (w, h + bar_height(w)), name  # the map as before, the strip below it
        strip = np.asarray(img)[h:]
        assert np.array_equal(strip, np.asarray(map_strip(name, w, traj.info.expected_records)))
        assert panel_to_view(traj, name, (w / 2, h - 1)) == (traj.hw[0] - 1, traj.hw[1] // 2)  # last map row
        assert panel_to_view(traj, name, (w / 2, h)) is None  # on the colour bar: no probe
        assert panel_to_view(traj, name, (w / 2, h + bar_height(w) - 1)) is None
    assert panel_to_view(traj, "seg", (5, 10_000)) == (traj.hw[0] - 1, 5 * traj.hw[1] // panel_hw(traj, "seg")[1])


def test_colour_bar_ramp_follows_the_map_colours():
    """The ramp of the weight bar runs through the same colours as the weight map: its left end is the map's
    colour at the bottom of the range, its right end at the top, and the zero swatch is the map's zero colour."""
    from app.colour_bars import ZERO_RGB, log_ticks, map_strip

    assert log_ticks(-4, 2) == ((0.0, "1e-4"), (1 / 3, "1e-2"), (2 / 3, "1"), (1.0, ">=1e2"))
    assert log_ticks(-5, 0)[-1] == (1.0, ">=1") and log_ticks(-5, 0)[0] == (0.0, "1e-5")
    strip = np.asarray(map_strip("weight", 384))
    row = strip[6]
    ramp = np.flatnonzero(np.abs(row.astype(int) - np.array([246, 247, 249])).sum(1) > 12)
    assert tuple(row[ramp[0]]) == ZERO_RGB  # the swatch comes first
    lut = fg.colormap("Viridis")
    coloured = [x for x in ramp if tuple(row[x]) != ZERO_RGB]
    assert np.abs(row[coloured[0]].astype(int) - lut[0]).max() <= 2
    assert np.abs(row[coloured[-1]].astype(int) - lut[255]).max() <= 2
    # a stored code at the bottom of the shown range is drawn in the ramp's left-end colour
    from app.trajectory import W_LOG

    lo = fg.WEIGHT_SHOW[0]
    code = np.array([[round(1 + 254 * (lo - W_LOG[0]) / (W_LOG[1] - W_LOG[0]))]], np.uint8)
    drawn = np.asarray(fg.log_code_image(code, W_LOG, fg.WEIGHT_SHOW, "Viridis"))[0, 0]
    assert np.abs(drawn.astype(int) - row[coloured[0]].astype(int)).max() <= 6


def test_display_keeps_source_aspect():
    img, _ = synthetic_image(64)
    wide = np.concatenate([img, img], 1)  # 64 x 128
    model = TinySeg().freeze()
    live = LiveRun(model, prepare(wide, None, model), make_config("ce", "pgd", 4, 1, 0, 0, None))
    t = live.run_all()
    assert t.display_hw[1] == 2 * t.display_hw[0]
    w, h = render_main(t)["seg"].size
    assert w == 2 * h  # the aspect is kept, and a small run is enlarged to at least MIN_PANEL_SIDE (probe mapping)
    assert max(w, h) >= MIN_PANEL_SIDE and (h, w) == panel_hw(t, "seg")


def test_logit_tap_adds_no_model_calls():
    calls = []
    model = TinySeg().freeze()

    def counting(x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return model(x)

    img, _ = synthetic_image(32)
    from attack_engine import AttackConfig, AttackRun

    AttackRun(counting, torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255, None,
              AttackConfig(attack="ce", optimizer="pgd", steps=3)).run()
    n_plain = len(calls)
    calls.clear()
    from app.runner import LiveRun as LR

    class Wrapped(torch.nn.Module):
        info = model.info

        def forward(self, x):
            return counting(x)

    LR(Wrapped(), prepare(img, None, model), make_config("ce", "pgd", 8, 3, 0, 0, None)).run_all()
    assert len(calls) == n_plain
