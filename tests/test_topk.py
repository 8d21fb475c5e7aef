"""Top-k class probabilities on records (``AttackRun(record_topk=k, topk_hw=...)``) and the app's probe built on them.

The probe used to copy every evaluation's logits (``record_logits``) and take the top-k itself; the records now
carry the top-k, and the stored probe must be exactly what the old way stored (checked against it here, with a
model wrapper that keeps the logits as the reference).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _multiclass import ColourSeg, scene

from app.runner import LiveRun, Prepared
from app.trajectory import PROBE_SIDE, TOPK, probe_grid, probe_topk
from attack_engine import AttackConfig, AttackRun
from attack_engine.images import sample_nearest


@pytest.fixture(scope="module")
def inputs():
    img, lab = scene(96)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    return img, lab.astype(np.int64), x


def test_records_carry_the_top_k_of_their_evaluation(inputs):
    _, _, x = inputs
    model = ColourSeg()
    run = AttackRun(model, x, None, AttackConfig(steps=4, optimizer="pgd"), record_topk=3)
    for rec in run:
        with torch.no_grad():
            p = torch.softmax(model(rec.x_adv).float(), 1)  # the logits at the evaluated point, recomputed
        ref = p.topk(3, dim=1)
        assert rec.topk_cls.shape == (1, 3, 96, 96) and rec.topk_cls.dtype == torch.int32
        torch.testing.assert_close(rec.topk_p, ref.values, rtol=1e-5, atol=1e-6)
        picked = p.gather(1, rec.topk_cls.long())  # each listed class has its listed probability
        torch.testing.assert_close(picked, rec.topk_p, rtol=1e-5, atol=1e-6)
        assert (rec.topk_p[:, :-1] >= rec.topk_p[:, 1:]).all()


def test_a_grid_samples_the_same_pixels(inputs):
    _, _, x = inputs
    cfg = AttackConfig(steps=3, optimizer="pgd", seed=2)
    full = list(AttackRun(ColourSeg(), x, None, cfg, record_topk=2))
    grid = list(AttackRun(ColourSeg(), x, None, cfg, record_topk=2, topk_hw=(40, 24)))
    for a, b in zip(full, grid, strict=True):
        assert b.topk_p.shape == (1, 2, 40, 24)
        assert torch.equal(sample_nearest(a.topk_cls, (40, 24)), b.topk_cls)
        torch.testing.assert_close(sample_nearest(a.topk_p, (40, 24)), b.topk_p, rtol=1e-6, atol=1e-7)
        assert torch.equal(a.acc, b.acc) and torch.equal(a.x_adv, b.x_adv)  # the attack itself is unchanged


def test_record_topk_off_capped_and_checked(inputs):
    _, _, x = inputs
    rec = next(iter(AttackRun(ColourSeg(), x, None, AttackConfig(steps=1))))
    assert rec.topk_cls is None and rec.topk_p is None
    rec = next(iter(AttackRun(ColourSeg(), x, None, AttackConfig(steps=1), record_topk=50)))
    assert rec.topk_p.shape[1] == 6  # capped at the class count
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="record_topk"):
            AttackRun(ColourSeg(), x, None, AttackConfig(steps=1), record_topk=bad)
    with pytest.raises(ValueError, match="topk_hw"):
        AttackRun(ColourSeg(), x, None, AttackConfig(steps=1), record_topk=1, topk_hw=(0, 4))


class _Tap(ColourSeg):
    """The colour model, keeping each evaluation's logits (the old probe's input)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        z = super().logits(x)
        self.seen.append(z.detach().clone())
        return z


def test_the_probe_stores_what_it_stored_from_the_logits(inputs):
    img, lab, _ = inputs
    model = _Tap()
    live = LiveRun(model, Prepared(img, lab, "upload", model.info.id), AttackConfig(steps=5, seed=1))
    traj = live.run_all()
    evals = model.seen[1:]  # the first call is the clean prediction
    assert len(evals) == len(traj) == len(traj.topk_p)
    assert traj.probe_hw == probe_grid((96, 96)) == (PROBE_SIDE, PROBE_SIDE) and probe_topk(6) == TOPK
    for k, z in enumerate(evals):  # the old way: softmax of the full logits, nearest to the probe grid, top-k
        p = sample_nearest(torch.softmax(z[0].float(), 0), traj.probe_hw)
        top = p.topk(TOPK, dim=0)
        assert np.array_equal(traj.topk_cls[k], top.indices.numpy().astype(np.uint16)), k
        assert np.array_equal(traj.topk_p[k], np.clip(np.rint(top.values.numpy() * 255.0), 0, 255).astype(np.uint8))
    pr = traj.probe(40, 70)
    assert pr["probs"] and all(len(v) == len(traj) for v in pr["probs"].values())


def test_two_class_and_compare_runs_skip_the_top_k(inputs):
    img, lab, _ = inputs
    two = ColourSeg(names=("a", "b"), colours=((110, 110, 110), (135, 105, 125)), model_id="two")
    live = LiveRun(two, Prepared(img, np.minimum(lab, 1), "upload", "two"), AttackConfig(steps=2))
    assert live.run.record_topk == 0  # two classes: the probe reads both from p_y
    light = LiveRun(ColourSeg(), Prepared(img, lab, "upload", "colour-seg"), AttackConfig(steps=2), light=True)
    assert light.run.record_topk == 0
