"""The PGD/APGD steppers: stage layout, checkpoints, best iterate, determinism, telemetry, attack strength."""

from __future__ import annotations

import pytest
import torch

from attack_engine.attack import AttackConfig, AttackRun, StepSizeRule, apgd_checkpoints, apgd_stages, run_attack
from attack_engine.losses import ATTACKS


def test_apgd_stage_layout_for_300():
    assert apgd_stages(300) == [(2.0, 90), (1.5, 90), (1.0, 120)]
    assert apgd_stages(300, multi_eps=False) == [(1.0, 300)]
    assert apgd_stages(2) == [(1.0, 2)]


def test_apgd_checkpoints_for_paper_stages():
    # first after max(floor(0.22 N), 1), then k <- max(k - max(floor(0.03 N), 1), max(floor(0.06 N), 1))
    assert apgd_checkpoints(90) == [19, 36, 51, 64, 75, 84]
    assert apgd_checkpoints(120) == [26, 49, 69, 86, 100, 111, 119]


def test_apgd_checkpoint_rule_parameters():
    # the rule this engine used before 2026-12-01 (decrement floor(0.03 N), which is 0 below N = 34)
    legacy = StepSizeRule("legacy", min_decrement=0, halve_at_first=True)
    assert apgd_checkpoints(30, legacy) == [6, 12, 18, 24, 30]
    assert apgd_checkpoints(30) == [6, 11, 15, 18, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30]
    assert apgd_checkpoints(120, legacy) == apgd_checkpoints(120)


def test_apgd_records_radii_and_schedule_restart(trained_model, test_batch):
    x, _ = test_batch
    run = AttackRun(trained_model, x[:1], config=AttackConfig(attack="tsallis", steps=20, eps=4 / 255))
    recs = list(run)
    assert len(recs) == run.expected_records() == 20 + 3
    stages = [(r.stage, round(float(r.eps[0]) * 255, 6)) for r in recs]
    assert stages[0] == (0, 8.0) and stages[-1] == (2, 4.0)
    assert sorted({s for s, _ in stages}) == [0, 1, 2]
    starts = [r for r in recs if r.stage_step == 0]
    assert [r.param for r in starts] == [-2.0, -2.0, -2.0]  # q restarts in every stage
    assert recs[-1].param == 1.0  # loss-only evaluation at step == total
    for r in recs:
        delta = (r.x_adv - x[:1]).abs().amax()
        assert delta <= r.eps[0] + 1e-6
        assert r.x_adv.min() >= 0 and r.x_adv.max() <= 1
    # the step size starts at 2 eps per stage and only ever halves
    for s in range(3):
        etas = [float(r.step_size[0]) for r in recs if r.stage == s]
        assert etas[0] == pytest.approx(2 * float(recs[[r.stage for r in recs].index(s)].eps[0]))
        assert all(b in (a, a / 2) or b == pytest.approx(a / 2) for a, b in zip(etas, etas[1:]))


@pytest.mark.parametrize("optimizer", ["pgd", "apgd"])
def test_best_iterate_never_worse_than_last(trained_model, test_batch, optimizer):
    x, y = test_batch
    run = AttackRun(trained_model, x, y, AttackConfig(attack="ce", optimizer=optimizer, steps=12, eps=8 / 255))
    recs = list(run)
    res = run.result
    assert (res.acc <= recs[-1].acc + 1e-6).all()
    assert (recs[-1].best_acc <= recs[-1].acc + 1e-6).all()
    # the reported best acc is the acc of the returned iterate
    torch.testing.assert_close(res.acc, recs[-1].best_acc)
    for i, bi in enumerate(res.best_index.tolist()):
        assert recs[bi].acc[i] == pytest.approx(float(res.acc[i]))


@pytest.mark.parametrize("optimizer", ["pgd", "apgd"])
def test_same_seed_same_result(trained_model, test_batch, optimizer):
    x, y = test_batch
    cfg = dict(attack="tsallis", optimizer=optimizer, steps=8, eps=8 / 255, seed=3)
    a = run_attack(trained_model, x, y, **cfg)
    b = run_attack(trained_model, x, y, **cfg)
    assert torch.equal(a.x_adv, b.x_adv)
    c = run_attack(trained_model, x, y, **{**cfg, "seed": 4})
    assert not torch.equal(a.x_adv, c.x_adv)


def test_telemetry_off_same_trajectory(trained_model, test_batch):
    x, y = test_batch
    on = list(AttackRun(trained_model, x, y, AttackConfig(steps=6, telemetry=True)))
    off = list(AttackRun(trained_model, x, y, AttackConfig(steps=6, telemetry=False)))
    assert all(torch.equal(a.x_adv, b.x_adv) for a, b in zip(on, off))
    assert off[-1].weight is None and off[-1].mass is None
    r = on[-1]
    assert r.weight.shape == r.p_true.shape == r.grad_logits.shape == r.grad_input.shape == x.shape[:1] + x.shape[2:]
    torch.testing.assert_close(r.mass.sum(1), torch.ones(x.shape[0]))
    # tsallis weight is p_y^(1-q) at the record's q
    torch.testing.assert_close(r.weight, r.p_true.pow(1 - r.param), rtol=1e-4, atol=1e-6)


def test_caller_owns_the_loop(trained_model, test_batch):
    x, y = test_batch
    run = AttackRun(trained_model, x, y, AttackConfig(optimizer="pgd", steps=5))
    it = iter(run)
    first = next(it)
    assert first.index == 0 and run.result is None
    rest = list(it)  # resume
    assert [r.index for r in rest] == [1, 2, 3, 4, 5] and run.result is not None
    with pytest.raises(RuntimeError):
        list(run)


def test_per_image_eps(trained_model, test_batch):
    x, y = test_batch
    eps = torch.tensor([0.0, 2 / 255, 4 / 255, 8 / 255])
    run = AttackRun(trained_model, x, y, AttackConfig(optimizer="pgd", steps=4), eps=eps)
    for r in run:
        d = (r.x_adv - x).abs().flatten(1).amax(1)
        assert (d <= eps + 1e-6).all()
    assert torch.equal(run.result.x_adv[0], x[0])


@pytest.mark.parametrize("attack", ATTACKS)
def test_every_attack_lowers_accuracy(trained_model, test_batch, attack):
    x, y = test_batch
    res = run_attack(trained_model, x, y, attack=attack, optimizer="apgd", steps=20, eps=16 / 255)
    assert float(res.clean_acc.mean()) > 0.95
    assert float(res.acc.mean()) < float(res.clean_acc.mean()) - 0.3, (attack, res.acc)


def test_targeted_mode_pushes_to_target(trained_model, test_batch):
    x, y = test_batch
    region = torch.zeros_like(y, dtype=torch.bool)
    region[:, 8:24, 8:24] = True
    run = AttackRun(trained_model, x, y, AttackConfig(attack="ce", steps=20, eps=16 / 255, targeted=True),
                    target=1, region=region)
    start_share = float(run.clean_acc.mean())
    res = run.run()
    assert float(res.acc.mean()) > start_share + 0.4  # share of region pixels predicted as class 1


def test_bad_config_is_refused(trained_model, test_batch):
    x, _ = test_batch
    for bad in [dict(attack="x"), dict(optimizer="sgd"), dict(steps=0), dict(eps=2.0), dict(eps=float("nan")),
                dict(step_size=0.0), dict(schedule="linear:1")]:
        with pytest.raises(ValueError):
            AttackConfig(**bad)
    with pytest.raises(ValueError, match="within"):
        AttackRun(trained_model, x * 2, None)


@pytest.mark.parametrize("batch", [1, 3, 90])  # 90: more category bins than uint8 holds
def test_gradient_mass_parts_equal_masked_sums(batch):
    """The CPU bincount of the gradient-mass shares = the masked sums (ignored pixels carry gz = 0)."""
    from attack_engine.attack import _mass_parts

    g = torch.Generator().manual_seed(batch)
    valid = torch.rand(batch, 7, 9, generator=g) > 0.1
    gz = torch.rand(batch, 7, 9, generator=g, dtype=torch.float64) * valid
    correct = (torch.rand(batch, 7, 9, generator=g) > 0.4) & valid
    conf = correct & (torch.rand(batch, 7, 9, generator=g) > 0.5)
    masks = torch.stack([conf, correct ^ conf, valid ^ correct], 1)
    ref = (gz.unsqueeze(1) * masks).flatten(2).sum(2)
    torch.testing.assert_close(_mass_parts(gz, correct, conf, valid), ref, rtol=1e-13, atol=0)


@pytest.mark.parametrize("attack", ["tsallis", "segpgd", "ce"])
@pytest.mark.parametrize("optimizer", ["pgd", "apgd"])
def test_reused_workspace_buffers_change_no_record(attack, optimizer):
    """The run's workspace reuses the objective's per-pixel buffers between evaluations: every record field equals
    a run where each evaluation computes into fresh tensors (a buffer read after the next evaluation overwrote it
    would show here).  The bundled two-class model, where the buffers are used, telemetry on."""
    from attack_engine.models import load_model

    model = load_model("mediapipe-selfie")
    x = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(5))
    cfg = AttackConfig(attack=attack, optimizer=optimizer, steps=7, telemetry=True)
    runs = []
    for reuse in (True, False):
        run = AttackRun(model, x, None, cfg)
        recs, kept = [], []
        for rec in run:
            recs.append(rec)
            kept.append({k: v for k, v in run._workspace.items() if isinstance(v, torch.Tensor)})
            if not reuse:  # the next evaluation starts from an empty workspace: fresh buffers, labels re-derived
                run._workspace.clear()
        runs.append((run, recs, kept))
    (a, ra, kept_a), (b, rb, kept_b) = runs
    assert {"binary_t", "binary_ce", "log_grad"} <= set(kept_a[0])
    assert all(kept_a[-1][k] is t for k, t in kept_a[0].items())  # one set of buffers for the whole run
    assert all(kept_b[1][k] is not t for k, t in kept_b[0].items())  # the cleared run's buffers are new each time
    for p, q in zip(ra, rb, strict=True):
        for name, v in vars(p).items():
            if isinstance(v, torch.Tensor):
                assert torch.equal(v, vars(q)[name]) or torch.allclose(v, vars(q)[name], equal_nan=True, rtol=0,
                                                                         atol=0), (p.index, name)  # NaN = NaN
    assert torch.equal(a.result.x_adv, b.result.x_adv)
