"""Every attack objective against an independent implementation of its formula (paper.md §1, §4) and autograd."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from attack_engine.losses import ATTACKS, pixel_loss, pixel_terms
from attack_engine.registry import attack_specs

II = 255


def reference(name: str, z: torch.Tensor, y: torch.Tensor, step: int, total: int, q: float | None) -> torch.Tensor:
    """Direct transcription of the formulas, float64, plain autograd."""
    valid = y != II
    ys = torch.where(valid, y, 0)
    ce = F.cross_entropy(z, ys, reduction="none") * valid
    p = torch.softmax(z, 1)
    py = p.gather(1, ys[:, None])[:, 0]
    corr = (z.argmax(1) == ys).to(z.dtype).detach()
    if name == "ce":
        return ce
    if name == "segpgd":
        lam = step / (2 * total)
        return ((1 - lam) * corr + lam * (1 - corr)) * ce
    if name == "cospgd":
        onehot = F.one_hot(ys, z.shape[1]).permute(0, 3, 1, 2).to(z.dtype)
        return F.cosine_similarity(p, onehot, dim=1).detach() * ce
    if name == "masked_ce":
        return corr * ce
    if name == "js":
        onehot = F.one_hot(ys, z.shape[1]).permute(0, 3, 1, 2).to(z.dtype)
        m = (p + onehot) / 2
        kl_pm = (p * (p.log() - m.log())).sum(1)
        kl_qm = (onehot * (onehot.clamp_min(1e-300).log() - m.log())).sum(1)
        return 0.5 * (kl_pm + kl_qm) * valid
    if name != "tsallis":
        raise KeyError(f"attack {name!r} has no test reference: add its formula here (ARCHITECTURE.md, new attack)")
    qq = -2 + 3 * step / total if q is None else q
    if qq == 1:
        return -py.log() * valid
    return (1 - py.pow(1 - qq)) / (1 - qq) * valid


def random_case(seed: int = 0, b: int = 2, c: int = 5, h: int = 6, w: int = 7, scale: float = 3.0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, c, h, w, generator=g, dtype=torch.float64) * scale
    y = torch.randint(0, c, (b, h, w), generator=g)
    y[0, 0, :3] = II
    y[1, 2, 4] = II
    return z, y


def test_every_registered_attack_is_tested_against_a_reference():
    """Step 2 of the new-attack recipe: each attack of attack_engine/objectives.py has a reference above."""
    builtin = [s.name for s in attack_specs() if s.objective.__module__ == "attack_engine.objectives"]
    assert builtin == list(ATTACKS)
    z, y = random_case()
    for name in builtin:
        reference(name, z, y, 1, 4, None)  # raises KeyError for an attack without a reference


CASES = [(n, None) for n in ATTACKS] + [("tsallis", q) for q in (-2.0, 0.0, 0.5, 1.0, 2.0)]


@pytest.mark.parametrize(("name", "q"), CASES)
@pytest.mark.parametrize("classes", [5, 2])  # 2: the closed-form two-class path
def test_value_and_gradient_match_formula(name, q, classes):
    for step, total in [(0, 10), (3, 10), (9, 10)]:
        z, y = random_case(step, c=classes)
        z1 = z.clone().requires_grad_(True)
        z2 = z.clone().requires_grad_(True)
        ours = pixel_loss(name, z1, y, step=step, total=total, q=q)
        ref = reference(name, z2, y, step, total, q)
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-12)
        w = torch.randn(ours.shape, dtype=torch.float64)
        (g1,) = torch.autograd.grad((ours * w).sum(), z1)
        (g2,) = torch.autograd.grad((ref * w).sum(), z2)
        torch.testing.assert_close(g1, g2, rtol=1e-5, atol=1e-12)


def test_float32_logits_agree_with_float64_reference():
    z, y = random_case(3)
    z32 = z.float().requires_grad_(True)
    ours = pixel_loss("tsallis", z32, y, step=4, total=10)
    ref = reference("tsallis", z32.detach().double().requires_grad_(True), y, 4, 10, None)
    torch.testing.assert_close(ours, ref.detach(), rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("q", [-2.0, -1.0, 0.0, 0.5, 0.99, 1.5])
def test_tsallis_gradient_is_weighted_ce_gradient(q):
    z, y = random_case(1)
    z1 = z.clone().requires_grad_(True)
    z2 = z.clone().requires_grad_(True)
    (gt,) = torch.autograd.grad(pixel_loss("tsallis", z1, y, q=q).sum(), z1)
    (gc,) = torch.autograd.grad(pixel_loss("ce", z2, y).sum(), z2)
    py = torch.softmax(z, 1).gather(1, torch.where(y == II, 0, y)[:, None])[:, 0]
    torch.testing.assert_close(gt, py.pow(1 - q)[:, None] * gc, rtol=1e-9, atol=1e-14)
    terms = pixel_terms("tsallis", z, y, q=q)
    torch.testing.assert_close(terms.weight, py.pow(1 - q) * (y != II), rtol=1e-9, atol=0)


def test_weights_of_baselines():
    z, y = random_case(2)
    valid = y != II
    ys = torch.where(valid, y, 0)
    p = torch.softmax(z, 1)
    py = p.gather(1, ys[:, None])[:, 0]
    correct = (z.argmax(1) == ys) & valid
    seg = pixel_terms("segpgd", z, y, step=30, total=90)
    assert seg.param == pytest.approx(30 / 180)
    torch.testing.assert_close(seg.weight, torch.where(correct, 1 - 30 / 180, 30 / 180).double() * valid)
    cos = pixel_terms("cospgd", z, y)
    torch.testing.assert_close(cos.weight, py / p.norm(dim=1) * valid)
    masked = pixel_terms("masked_ce", z, y)
    assert (masked.loss[~correct] == 0).all() and (masked.weight[~correct] == 0).all()
    assert (masked.loss[correct] > 0).all()
    js = pixel_terms("js", z, y)
    assert (js.loss >= 0).all() and (js.loss <= math.log(2) + 1e-12).all()
    # JS weight relative to CE is d JS / d CE, check against autograd
    zz = z.clone().requires_grad_(True)
    (gj,) = torch.autograd.grad(pixel_loss("js", zz, y).sum(), zz)
    zc = z.clone().requires_grad_(True)
    (gc,) = torch.autograd.grad(pixel_loss("ce", zc, y).sum(), zc)
    torch.testing.assert_close(gj, js.weight[:, None] * gc, rtol=1e-8, atol=1e-14)


def test_segpgd_lambda_schedule_and_tsallis_default_schedule():
    z, y = random_case(4)
    assert [pixel_terms("segpgd", z, y, step=s, total=90).param for s in (0, 45, 89)] == [0, 0.25, 89 / 180]
    qs = [pixel_terms("tsallis", z, y, step=s, total=90).param for s in (0, 30, 60, 89)]
    assert qs == pytest.approx([-2.0, -1.0, 0.0, 1 - 3 / 90])


@pytest.mark.parametrize("name", ATTACKS)
def test_ignored_pixels_are_zero_with_no_gradient(name):
    z, y = random_case(5)
    y[:, :, :2] = II
    zz = z.clone().requires_grad_(True)
    loss = pixel_loss(name, zz, y, step=2, total=5)
    assert (loss[y == II] == 0).all()
    (g,) = torch.autograd.grad(loss.sum(), zz)
    assert (g.permute(0, 2, 3, 1)[y == II] == 0).all()
    assert g.abs().sum() > 0


def test_tsallis_continuous_at_q_one():
    z, y = random_case(6)
    at_one = pixel_loss("tsallis", z, y, q=1.0)
    torch.testing.assert_close(at_one, pixel_loss("ce", z, y), rtol=0, atol=0)
    for eps in (1e-3, 1e-5, 1e-7):
        for q in (1 - eps, 1 + eps):
            torch.testing.assert_close(pixel_loss("tsallis", z, y, q=q), at_one, rtol=20 * eps, atol=1e-9)


@pytest.mark.parametrize("name", ATTACKS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_finite_for_extreme_logits_and_q(name, dtype):
    g = torch.Generator().manual_seed(0)
    z = (torch.randn(2, 4, 5, 5, generator=g) * 1e3).clamp(-1e3, 1e3)
    z[0, :, 0, 0] = torch.tensor([1e3, -1e3, 0, 0])
    y = torch.randint(0, 4, (2, 5, 5), generator=g)
    qs = [-10.0, -2.0, 0.0, 0.5, 1.0, 1.5, 3.0] if name == "tsallis" else [None]
    for q in qs:
        zz = z.to(dtype).requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype != torch.float32):
            loss = pixel_loss(name, zz, y, q=q, step=1, total=3)
        (gr,) = torch.autograd.grad(loss.mean(), zz)
        assert torch.isfinite(loss).all() and torch.isfinite(gr).all(), (name, q, dtype)


def test_confident_pixels_keep_their_gradient():
    """p_y - 1 rounds to 0 in float32 autograd for logit gaps > ~17; ours stays exact (float64 range)."""
    z = torch.zeros(1, 2, 1, 4)
    gaps = torch.tensor([20.0, 40.0, 80.0, 300.0])
    z[0, 0, 0] = -gaps / 2
    z[0, 1, 0] = gaps / 2
    y = torch.ones(1, 1, 4, dtype=torch.long)
    zz = z.clone().requires_grad_(True)
    F.cross_entropy(zz, y, reduction="none").sum().backward()
    assert (zz.grad[0, 1, 0] == 0).sum() >= 3  # plain float32 loses them
    terms = pixel_terms("ce", z.double(), y, with_grad_norm=True)
    expected = math.sqrt(2) * torch.sigmoid(-gaps.double())
    torch.testing.assert_close(terms.ce_grad_norm[0, 0], expected, rtol=1e-9, atol=0)


def test_bad_arguments():
    z, y = random_case(0)
    with pytest.raises(ValueError, match="unknown attack"):
        pixel_loss("nope", z, y)
    with pytest.raises(ValueError, match="expected logits"):
        pixel_loss("ce", z[0], y)
    with pytest.raises(ValueError):
        pixel_loss("tsallis", z, y, q="linear:1")


def test_confident_ce_value_is_exact():
    """CE of a confident pixel is log(1 + sum_{j != y} e^{z_j - z_y}), not rounded to 0."""
    gaps = torch.tensor([10.0, 40.0, 80.0, 600.0], dtype=torch.float64)
    z = torch.stack([-gaps / 2, gaps / 2]).view(1, 2, 1, 4)
    y = torch.ones(1, 1, 4, dtype=torch.long)
    torch.testing.assert_close(pixel_loss("ce", z, y)[0, 0], torch.log1p(torch.exp(-gaps)), rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", ATTACKS)
@pytest.mark.parametrize("gap", [3.0, 40.0, 700.0])
def test_two_class_closed_form_matches_general_path(monkeypatch, name, gap):
    """The two-class fast path (softplus of the logit gap) against the general softmax path, every field."""
    g = torch.Generator().manual_seed(7)
    z = torch.randn(2, 2, 5, 6, generator=g, dtype=torch.float64) * gap
    z[0, :, 0, 0] = torch.tensor([0.0, 0.0], dtype=torch.float64)  # a tie: argmax picks class 0
    y = torch.randint(0, 2, (2, 5, 6), generator=g)
    y[1, 1, :2] = II
    out = {}
    for fast in (True, False):
        monkeypatch.setattr("attack_engine.losses._BINARY_PATH", fast)
        zz = z.float().clone().requires_grad_(True)
        t = pixel_terms(name, zz, y, step=2, total=7, with_grad_norm=True)
        w = torch.linspace(-1, 2, t.loss.numel(), dtype=torch.float64).view_as(t.loss)
        (gr,) = torch.autograd.grad((t.loss * w).sum(), zz)
        out[fast] = (t, gr)
    (a, ga), (b, gb) = out[True], out[False]
    for f in ("loss", "ce", "p_true", "weight", "log_grad"):
        torch.testing.assert_close(getattr(a, f).detach(), getattr(b, f).detach(), rtol=1e-12, atol=1e-300, msg=f)
    # the general path's linear norm squares p_other, which underflows below ~1e-154; the closed form does not
    ok = b.ce_grad_norm > 1e-150
    torch.testing.assert_close(a.ce_grad_norm[ok], b.ce_grad_norm[ok], rtol=1e-12, atol=0)
    assert (a.ce_grad_norm[~ok] < 1e-140).all()
    assert torch.equal(a.pred, b.pred) and torch.equal(a.correct, b.correct)
    torch.testing.assert_close(ga, gb, rtol=1e-6, atol=1e-30)
    assert not a.ce.requires_grad and a.loss.requires_grad


@pytest.mark.parametrize("name", ATTACKS)
@pytest.mark.parametrize("classes", [5, 2])
def test_logit_grad_is_autograd_of_the_weighted_loss(name, classes):
    """PixelTerms.logit_grad (the engine's step, no autograd) = autograd of sum_b c_b sum_i ℓ_i, ignored pixels 0."""
    z, y = random_case(8, c=classes, scale=6.0)
    log_coef = torch.tensor([3.0, -2.0], dtype=torch.float64)
    for sign in (1.0, -1.0):
        zz = z.clone().requires_grad_(True)
        t = pixel_terms(name, zz, y, step=2, total=7)
        c = sign * torch.exp(log_coef)
        (ref,) = torch.autograd.grad((c * t.loss.sum((1, 2))).sum(), zz)
        with torch.no_grad():
            direct = pixel_terms(name, z, y, step=2, total=7).logit_grad(log_coef, sign)
        assert direct.dtype == z.dtype and direct.shape == z.shape
        torch.testing.assert_close(direct, ref, rtol=1e-12, atol=1e-300)
        assert (direct.permute(0, 2, 3, 1)[y == II] == 0).all()


def test_two_class_logit_grad_survives_float64_underflow():
    """Every pixel saturated beyond float64 (|dℓ/dz| < 1e-308): the log-space step still lifts each one to float32."""
    gaps = torch.tensor([760.0, 770.0, 780.0, 790.0], dtype=torch.float64)
    z = torch.stack([-gaps / 2, gaps / 2]).view(1, 2, 1, 4).float()
    y = torch.ones(1, 1, 4, dtype=torch.long)
    with torch.no_grad():
        t = pixel_terms("tsallis", z, y, q=0.5)
        top = float(t.log_grad.max())
        assert (t.weight * torch.exp(t.log_ce_grad) == 0).all()  # linear |dℓ/dz| underflows everywhere
        g = t.logit_grad(torch.tensor([60.0 - top], dtype=torch.float64))
    assert (g[0, 1] < 0).all() and (g[0, 0] > 0).all() and torch.equal(g[0, 0], -g[0, 1])
    expected = torch.exp(t.log_grad[0, 0] + 60.0 - top - 0.5 * math.log(2.0))
    torch.testing.assert_close(g[0, 0, 0].double(), expected, rtol=1e-6, atol=0)
