"""Per-class diagnostics (attack_engine.diagnostics) and the debugging tab's values (app.tabs.debug)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _multiclass import ColourSeg, scene

from attack_engine import diagnostics as dg
from attack_engine.metrics import confusion_matrix, per_class_iou


def test_class_iou_matches_the_metrics_module_and_ignores_void():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, (40, 50))
    labels[:5] = 255
    pred = np.where(rng.random((40, 50)) < 0.7, labels % 5, rng.integers(0, 5, (40, 50)))
    pred[:5] = 0  # predictions on void pixels must not count
    ours = dg.class_iou(dg.confusion(pred, labels, 5, dg.valid_mask(labels, 5)))
    ref = per_class_iou(confusion_matrix(torch.from_numpy(pred)[None], torch.from_numpy(labels)[None], 5)).numpy().reshape(-1)
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    series = dg.class_iou_series([labels, pred], labels, 5)
    assert np.allclose(series[0], 1.0) and np.allclose(series[1], ours)


def test_absent_class_is_nan_not_zero():
    labels = np.zeros((4, 4), int)
    iou = dg.class_iou(dg.confusion(labels, labels, 3, dg.valid_mask(labels, 3)))
    assert iou[0] == 1.0 and np.isnan(iou[1:]).all()


def test_flip_matrix_counts_from_to_and_skips_void():
    before = np.array([[0, 0, 1], [1, 2, 2]])
    after = np.array([[0, 1, 1], [2, 2, 0]])
    valid = np.array([[True, True, True], [True, True, False]])
    m = dg.flip_matrix(before, after, valid, 3)
    assert m.sum() == valid.sum()
    assert m[0, 1] == 1 and m[1, 2] == 1 and m[2, 0] == 0  # the (2 -> 0) pixel is void
    assert np.trace(m) == 3


def test_object_sizes_are_4_connected_components_per_class():
    ref = np.zeros((8, 8), int)
    ref[0:2, 0:2] = 1  # 4 px
    ref[2, 2] = 1  # touches the square only diagonally: its own object
    ref[5:8, 5:8] = 2  # 9 px
    comp, sizes = dg.object_sizes(ref, np.ones_like(ref, bool), 3)
    objs = sorted(sizes[1:].tolist())
    assert objs == sorted([4, 1, 9, 64 - 14]), objs
    assert (comp > 0).all()


def test_flip_share_by_size_bins_by_area_share():
    ref = np.zeros((100, 100), int)
    ref[:3, :3] = 1  # 9 px = 0.09 %: tiny
    ref[50:80, 50:80] = 2  # 900 px = 9 %: medium
    flipped = np.zeros_like(ref, bool)
    flipped[:3, :3] = True
    flipped[50:53, 50:80] = True  # 90 of 900
    bins = {b.name: b for b in dg.flip_share_by_size(ref, flipped, np.ones_like(flipped), 3)}
    tiny, medium, large = bins[dg.SIZE_NAMES[0]], bins[dg.SIZE_NAMES[2]], bins[dg.SIZE_NAMES[3]]
    assert (tiny.objects, tiny.pixels, tiny.flipped, tiny.share) == (1, 9, 9, 1.0)
    assert medium.objects == 1 and medium.share == pytest.approx(0.1)
    assert large.objects == 1 and large.flipped == 0  # the background
    assert np.isnan(bins[dg.SIZE_NAMES[1]].share)


def test_fall_order_earliest_first_then_by_drop():
    labels = np.array([[0, 1, 2, 3]])
    ious = np.array([[1.0, 0.8, 0.9, 0.7], [0.9, 0.3, 0.8, 0.7], [0.6, 0.2, 0.4, 0.7]])
    assert dg.fall_order(ious, labels, 4) == [(1, 1), (2, 2), (0, -1), (3, -1)]


# -- the tab's values on recorded runs ------------------------------------------------------------------------------
def _recorded(model, img, lab, steps=8):
    from app.runner import LiveRun, make_config, prepare

    return LiveRun(model, prepare(img, lab, model, "upload"), make_config("ce", "pgd", 8, steps, 0, 0, None)).run_all()


def _json(fig) -> dict:
    return json.loads(fig.to_json())


def test_debug_values_on_a_multi_class_run(tmp_path):
    from _multiclass import write_scene

    from app.tabs.debug import _IoUCache, debug_values

    ip, mp = write_scene(tmp_path)
    t = _recorded(ColourSeg().freeze(), str(ip), str(mp))
    cache = _IoUCache()
    text, iou, flips, sizes = debug_values(t, len(t) - 1, cache)
    assert "First to fall" in text and "ground truth" in text and "px changed class" in text
    d = _json(iou)
    assert len([tr for tr in d["data"] if tr["mode"] == "lines"]) == 6
    hm = _json(flips)["data"][0]
    assert hm["type"] == "heatmap" and len(hm["x"]) >= 2
    bars = _json(sizes)["data"][0]
    shares = dict(zip(bars["x"], bars["y"], strict=True))
    assert shares[dg.SIZE_NAMES[0]] > shares[dg.SIZE_NAMES[3]], "small objects flip more than large ones here"
    # the cache extends, and a shorter prefix is a prefix of the full series
    full = cache.series(t)
    np.testing.assert_allclose(full, dg.class_iou_series(t.pred, t.labels_v, 6), equal_nan=True)


def test_debug_values_degrade_on_two_classes_and_no_run(tmp_path):
    from app.standin import TinySeg, write_synthetic_example
    from app.tabs.debug import EMPTY, _IoUCache, debug_values

    ip, _ = write_synthetic_example(tmp_path, 64)
    t = _recorded(TinySeg().freeze(), str(ip), None, steps=3)
    text, iou, flips, sizes = debug_values(t, 0, _IoUCache())
    assert "two-class model" in text and "clean prediction" in text
    for fig in (iou, flips, sizes):
        _json(fig)  # valid JSON, no NaN
    assert debug_values(None, None, _IoUCache()) == (EMPTY, None, None, None)
    img, lab = scene(48)
    assert img.shape == (48, 48, 3) and lab.max() == 5
