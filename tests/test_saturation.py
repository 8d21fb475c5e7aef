"""Saturated models (issue 8): on the bundled selfie model no pixel loses its gradient to rounding."""

from __future__ import annotations

import pytest
import torch

from attack_engine.attack import AttackConfig, AttackRun
from attack_engine.examples import list_examples, load_example
from attack_engine.images import model_size, resize_image, to_tensor
from attack_engine.losses import ATTACKS, pixel_terms, plain_pixel_loss
from attack_engine.models import load_model

OBJECTIVES = [("ce", None), ("tsallis", -2.0), ("tsallis", 0.0), ("tsallis", 0.5), ("tsallis", 1.0)]


@pytest.fixture(scope="module")
def selfie_batch():
    model = load_model("mediapipe-selfie")
    xs = []
    for e in list_examples():
        x = to_tensor(load_example(e.id)[0])
        xs.append(resize_image(x, model_size(tuple(x.shape[-2:]), model.info.input_size)))
    x = torch.cat(xs)
    with torch.no_grad():
        logits = model(x)
    return model, x, logits, logits.argmax(1)


@pytest.mark.parametrize(("name", "q"), OBJECTIVES)
def test_no_pixel_loses_its_gradient(selfie_batch, name, q):
    model, x, logits, labels = selfie_batch
    s = logits[:, 1] - logits[:, 0]
    assert float(s.abs().max()) > 300  # the model really is saturated
    # a plain float32 implementation with logits [0, s] loses a large share of pixels ...
    z = torch.stack([torch.zeros_like(s), s], 1).requires_grad_(True)
    (g,) = torch.autograd.grad(plain_pixel_loss(name, z, labels, q=q).sum(), z)
    plain_zero = float((g.abs().sum(1) == 0).float().mean())
    assert plain_zero > 0.3
    # ... this engine keeps |dℓ/dz| for all of them (log space), ...
    terms = pixel_terms(name, logits, labels, q=q, with_grad_norm=True)
    assert float((~torch.isfinite(terms.log_grad)).float().mean()) <= 0.01
    # ... and the input gradient of the attack step is nonzero at (almost) every pixel
    cfg = AttackConfig(attack=name, schedule=None if q is None else f"const:{q}", optimizer="pgd", steps=1,
                       random_start=False)
    rec = next(iter(AttackRun(model, x, labels, cfg)))
    assert float((rec.grad_input == 0).float().mean()) <= 0.01
    assert torch.isfinite(rec.log_grad_logits).float().mean() >= 0.99


def test_log_grad_matches_linear_where_representable(selfie_batch):
    _, _, logits, labels = selfie_batch
    terms = pixel_terms("tsallis", logits, labels, q=0.5, with_grad_norm=True)
    lin = terms.weight * terms.ce_grad_norm
    ok = lin > 1e-150  # below that the squares inside the linear norm are float64 denormals
    torch.testing.assert_close(terms.log_grad[ok], lin[ok].log(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", ATTACKS)
def test_every_attack_finite_and_no_weaker_than_plain(selfie_batch, name):
    model, x, _, labels = selfie_batch
    x, labels = x[:2], labels[:2]
    ours = AttackRun(model, x, labels, AttackConfig(attack=name, steps=6, telemetry=False)).run()
    plain = AttackRun(model, x, labels, AttackConfig(attack=name, steps=6, telemetry=False, numerics="plain")).run()
    assert torch.isfinite(ours.x_adv).all()
    assert float(ours.acc.mean()) <= float(plain.acc.mean()) + 0.02
