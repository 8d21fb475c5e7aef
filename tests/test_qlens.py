"""The q-lens against the engine: TsallisPGD at constant q, evaluated at the very iterate another run reached."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import synthetic_batch

from attack_engine import qlens
from attack_engine.attack import AttackConfig, AttackRun
from attack_engine.losses import pixel_terms

QS = (-2.0, -1.0, 0.0, 0.5, 1.0, 1.5)


def _record(model, attack: str, k: int, steps: int = 6):
    x, y = synthetic_batch(2, seed=3)
    cfg = AttackConfig(attack=attack, optimizer="pgd", steps=steps, eps=8 / 255, schedule="linear:-2:1")
    recs = list(AttackRun(model, x, y, cfg))
    return recs[k], y


def _tsallis_at(model, x_adv, y, q: float):
    """Record 0 of a TsallisPGD run at constant q that starts exactly at ``x_adv`` (no random start)."""
    cfg = AttackConfig(attack="tsallis", optimizer="pgd", steps=1, eps=8 / 255, schedule=f"const:{q}",
                       random_start=False)
    return next(iter(AttackRun(model, x_adv, y, cfg)))


@pytest.mark.parametrize("attack", ["ce", "segpgd", "tsallis", "js"])
def test_lens_equals_engine_run_at_constant_q(trained_model, attack):
    rec, y = _record(trained_model, attack, k=4)
    for b in range(2):
        lp, lc, groups = qlens.record_inputs(rec, y, item=b)
        assert (groups == 2).any() and (groups <= 1).any(), "the iterate should have wrong and correct pixels"
        for q in QS:
            ref = _tsallis_at(trained_model, rec.x_adv, y, q)
            assert ref.param == pytest.approx(q)
            lens = qlens.lens(lp, lc, groups, q)
            np.testing.assert_allclose(lens.weight, ref.weight[b].numpy(), rtol=1e-5, atol=1e-30)
            np.testing.assert_allclose(lens.grad, ref.grad_logits[b].numpy(), rtol=1e-5, atol=1e-30)
            fin = np.isfinite(lens.log_grad)
            np.testing.assert_array_equal(fin, np.isfinite(ref.log_grad_logits[b].numpy()))
            np.testing.assert_allclose(lens.log_grad[fin], ref.log_grad_logits[b].numpy()[fin], rtol=1e-6, atol=1e-5)
            np.testing.assert_allclose(lens.shares, ref.mass[b].numpy(), atol=1e-5)


def test_own_weight_is_the_records_weight(trained_model):
    rec, _ = _record(trained_model, "segpgd", k=3)
    lw = qlens.own_log_weight(rec.log_grad_logits[0], rec.log_ce_grad[0])
    w = rec.weight[0].numpy()
    ok = w > 0
    np.testing.assert_allclose(np.exp(lw[ok]), w[ok], rtol=1e-5)


def test_summary_shares_match_exact_shares(trained_model):
    rec, y = _record(trained_model, "ce", k=5)
    lp, lc, groups = qlens.record_inputs(rec, y)
    summ = qlens.share_summary(lp, lc, groups)
    assert summ.shape == (3, qlens.SUMMARY_BINS, 3)
    for q in np.linspace(-3, 1, 17):
        exact = qlens.lens(lp, lc, groups, q).shares
        np.testing.assert_allclose(qlens.shares_from_summary(summ, q), exact, atol=1e-3)


def test_saturated_pixels_keep_their_share():
    """p_y = 1 and p_y = 0 to float64 precision still get a gradient size and a share, in log space."""
    logits = torch.tensor([[800.0, 0.0], [0.0, 900.0], [2.0, 0.0], [0.0, 1.0]]).T.reshape(1, 2, 1, 4).double()
    labels = torch.zeros(1, 1, 4, dtype=torch.long)
    t = pixel_terms("ce", logits, labels, with_grad_norm=True)
    lp, lc = (-t.ce)[0].numpy(), t.log_ce_grad[0].numpy()
    assert np.all(np.isfinite(lc)) and lc[0, 0] == pytest.approx(-800 + 0.5 * np.log(2), abs=1e-9)
    assert t.log_rest[0, 0, 0].item() == pytest.approx(-800, abs=1e-9)
    groups = qlens.pixel_groups(t.correct[0].numpy(), t.valid[0].numpy(), t.p_true[0].numpy())
    s = qlens.lens(lp, lc, groups, -2.0).shares
    assert s.sum() == pytest.approx(1.0) and s[2] > 0


def test_ignored_pixels_have_no_lens_value(trained_model):
    x, y = synthetic_batch(1, seed=5)
    y[0, :4] = 255
    rec = next(iter(AttackRun(trained_model, x, y, AttackConfig(attack="ce", optimizer="pgd", steps=1))))
    lp, lc, groups = qlens.record_inputs(rec, y)
    assert np.all(groups[:4] == qlens.IGNORED) and np.all(np.isneginf(lc[:4]))
    lens = qlens.lens(lp, lc, groups, 0.0)
    assert np.all(np.isneginf(lens.log_grad[:4])) and np.all(lens.weight[:4] == 0)


def test_p_star_is_the_peak_of_the_gradient_size():
    p = np.linspace(1e-6, 1 - 1e-6, 200001)
    for q in (-3.0, -2.0, -1.0, 0.0, 0.5, 0.9):
        assert p[np.argmax(p ** (1 - q) * (1 - p))] == pytest.approx(qlens.p_star(q), abs=1e-4)
    assert qlens.p_star(1.0) == 0.0


@pytest.fixture(scope="module")
def standin_traj(tmp_path_factory):
    from app.runner import LiveRun, make_config, prepare
    from app.standin import TinySeg, write_synthetic_example

    folder = tmp_path_factory.mktemp("qlens")
    ip, mp = write_synthetic_example(folder, 64)
    model = TinySeg().freeze()
    cfg = make_config("tsallis", "pgd", 8, 6, 0, 1, "const:-1")
    return LiveRun(model, prepare(str(ip), str(mp), model, "synthetic"), cfg).run_all()


def test_trajectory_lens_at_its_own_q_matches_the_stored_run(standin_traj, tmp_path):
    t = standin_traj
    assert t.has_lens and len(t.qsum) == len(t)
    for k in range(len(t)):
        own = np.array([t.get(n, k) for n in ("mass_cc", "mass_uc", "mass_wrong")])
        # the summary is from the full-resolution record: its shares at the run's q are the run's own shares
        np.testing.assert_allclose(qlens.shares_from_summary(t.qsum[k], -1.0), own, atol=1e-4)
        lp, lc, groups = t.lens_inputs_at(k)
        lens = qlens.lens(lp, lc, groups, -1.0)  # view maps (float16 margin) vs the stored uint8 log weight
        ok = groups >= 0
        diff = np.abs(np.log10(np.maximum(lens.weight[ok], 1e-6)) - np.log10(np.maximum(t.weight_at(k)[ok], 1e-6)))
        # half a uint8 step of the stored weight + the margin's rounding (2^-8 relative) times (1-q) = 2, in log10
        tol = 4.0 / 254 + 1e-3 + 2.0 * np.abs(t.margin_at(k)[ok]) * 2.0 ** -8 / np.log(10.0)
        assert np.all(diff <= tol)
    t.save(tmp_path / "r.npz")
    back = type(t).load(tmp_path / "r.npz")
    np.testing.assert_array_equal(back.margin[3], t.margin[3])
    np.testing.assert_array_equal(back.qsum[3], t.qsum[3])


def test_figures_and_inputs_of_the_tab(standin_traj):
    from app import qlens_figures as qf
    from app.tabs.qlens import LESSON, parse_qs

    t, k = standin_traj, len(standin_traj) - 1
    assert parse_qs("-2, -1,0 0.5") == [-2.0, -1.0, 0.0, 0.5]
    for bad in ("", "a, b", "1,2,3,4,5,6,7", "9", "nan"):
        with pytest.raises(ValueError):
            parse_qs(bad)
    assert qf.parse_band("p:0.2:0.4") == qf.Band("p", 0.2, 0.4) and qf.parse_band("none") is None
    for bad in ("p:0.4:0.2", "group:7", "x:1:2", "p:a:b"):
        with pytest.raises(ValueError):
            qf.parse_band(bad)
    log_p, _, groups = t.lens_inputs_at(k)
    wrong = qf.band_mask(t, k, qf.parse_band("group:2"))
    np.testing.assert_array_equal(wrong, groups == 2)
    low = qf.band_mask(t, k, qf.parse_band("p:0:0.5"))
    assert np.all(np.exp(log_p[low]) < 0.5) and low.sum() == ((groups >= 0) & (np.exp(log_p) < 0.5)).sum()
    grid = qf.lens_grid_figure(t, k, [-2.0, 1.0], wrong, probe=(3, 4))
    assert sum(d["type"] == "image" for d in grid.data) == 2 * 3  # this run + 2 q, two rows
    fig = qf.whatif_figure(t, k, -2.0, "margin", probe=(3, 4), band=qf.parse_band("margin:-1:1"))
    meta = fig.layout["meta"]["qlens"]
    tr = meta["traces"]
    assert fig.data[tr["ps"]]["x"][0] == pytest.approx(np.log(3.0))  # p* = 0.75 <-> margin log(1-q)
    assert [d["type"] for d in fig.data[:3]] == ["bar"] * 3
    summ = np.full((3, qlens.SUMMARY_BINS, 3), 0.0, dtype=np.float32)
    summ[..., 0] = -np.inf
    for g, b, ls, mu, var in meta["summary"]:
        summ[g, b] = (ls, mu, var)
    np.testing.assert_allclose(qlens.shares_from_summary(summ, 0.3), qlens.shares_from_summary(t.qsum[k], 0.3),
                               atol=1e-5)
    w, g = qf.curves("p", -2.0, np.array([0.25, 0.75, 1.0 - 1e-9]))
    np.testing.assert_allclose(w[:2], [0.25 ** 3, 0.75 ** 3]) and np.testing.assert_allclose(g[1], 1.0)
    assert 5 <= len(LESSON) <= 7 and all(s.text and s.look for s in LESSON)


def test_lesson_claims_hold_on_the_shipped_runs():
    """What each lesson step tells the student to look for is true of the shipped run it loads."""
    from app.sources import PRECOMPUTED_DIR, load_precomputed
    from app.tabs.qlens import LESSON, _record_index

    runs = {s.example: load_precomputed(s.example, "mediapipe-selfie", PRECOMPUTED_DIR) for s in LESSON}
    if any(t is None or not t.has_lens for t in runs.values()):
        pytest.skip("shipped runs without q-lens data")
    at = [(runs[s.example], _record_index(runs[s.example], s.record)) for s in LESSON]
    t, k = at[0]
    m = t.margin_at(k)
    assert np.nanmean(m > 17.0) > 0.5  # p_y = 1 in float32 (1 - p_y < 2^-24) on most pixels at the start
    assert np.nanmax(m) - np.nanmin(m[m > 0]) > 50  # ... yet the margin spreads them out
    shares = lambda i, q: qlens.shares_from_summary(at[i][0].qsum[at[i][1]], q)  # noqa: E731
    assert np.argmax(shares(1, -2.0)) == 1  # step 2: uncertain-correct get most at q = -2
    assert np.argmax(shares(2, 1.0)) == 2  # step 3: already-wrong get most at q = 1
    assert shares(3, 1.0)[2] > shares(3, -2.0)[2] and shares(3, -2.0)[:2].sum() > shares(3, 1.0)[:2].sum()  # step 4
    assert shares(4, -5.0)[0] < 0.25  # step 5: confident-correct stay a small share even at q = -5
    assert at[5][1] == len(at[5][0]) - 1 and at[5][0].get("param", at[5][1]) == pytest.approx(1.0)  # step 6
