"""The six attacks of the TsallisPGD paper, each one registered objective (see :mod:`attack_engine.registry`).

Every attack is a function of the per-pixel cross-entropy ``ce = -log p_y`` and, for some, a *detached* per-pixel
weight: ``ℓ_i = w_i · f(ce_i)``, so its gradient is ``w_i f'(ce_i) dCE/dz`` and the gradient weight relative to CE
is known in closed form.  An objective gets a :class:`~attack_engine.losses.PixelInputs` (the CE, p_y,
correctness, validity) and returns ``(loss, weight)``; ignored pixels are zeroed by the caller.  One that has the
log of its weight at hand may leave it in ``inputs.log_weight`` (TsallisPGD does), else the engine takes the
attack's ``log_weight`` rule or ``log(weight)``.  It is evaluated
without autograd: the gradient of ``loss`` is formed as ``weight · dCE/dz``, so ``weight`` must be exactly
``dℓ/dce`` with the detached factors held fixed (tests/test_losses.py checks each against autograd of an
independent reference).

===========  =====================================================================================
``ce``       CE-PGD: ``ce``
``segpgd``   SegPGD (Gu et al. 2022): ``((1-λ) [correct] + λ [wrong]) * ce``, λ = step / (2 total)
``cospgd``   CosPGD (Agnihotri et al. 2024): ``p_y / ||p||_2 * ce`` (softmax cosine with one-hot)
``js``       JSPGD (Croce et al. 2024): ``JS(p || e_y)`` in ``[0, log 2]``
``masked_ce`` MaskedPGD (Croce et al. 2024): ``[correct] * ce``
``tsallis``  TsallisPGD (Matyasko et al. 2026): ``(1 - p_y^(1-q)) / (1-q)``, q from a schedule
===========  =====================================================================================

The ``plain`` forms mirror the paper's reference code (softmax clamped at 1e-12, ``F.cross_entropy``, JS through
``log m``) for ``AttackConfig(numerics="plain")``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attack_engine.losses import PixelInputs, PlainInputs
from attack_engine.registry import register_attack
from attack_engine.schedules import q_to_peak

DEFAULT_TSALLIS_SCHEDULE = "linear:-2:1"
# q > 1 makes L_q = (p_y^(1-q) - 1)/(q-1) unbounded; like the reference we floor p_y at 1e-12 there.
P_FLOOR_LOG = -math.log(1e-12)
Q_ONE_TOL = 1e-6


def tsallis_of_ce(ce: torch.Tensor, q: float) -> torch.Tensor:
    """L_q as a function of ``ce = -log p_y``: ``(1 - exp(-(1-q) ce)) / (1-q)``; q = 1 gives ``ce``."""
    a = 1.0 - q
    if abs(a) < Q_ONE_TOL:
        return ce - 0.5 * a * ce * ce  # second-order expansion, continuous at q = 1
    if a < 0:
        ce = ce.clamp(max=P_FLOOR_LOG)
    return torch.expm1(ce * -a) / -a


def js_of_ce(ce: torch.Tensor) -> torch.Tensor:
    """JS(p || e_y) in nats as a function of p_y = exp(-ce): ``log 2 + p log p / 2 - (1+p) log(1+p) / 2``."""
    p = torch.exp(-ce)
    return math.log(2.0) - 0.5 * p * ce - 0.5 * (1.0 + p) * torch.log1p(p)


# -- CE-PGD ----------------------------------------------------------------------------------------------
def _plain_ce(t: PlainInputs, _: float | None) -> torch.Tensor:
    return t.ce


# Colours: the Okabe–Ito set (distinct under deuteranopia and protanopia; checked in tests/test_palette.py).
@register_attack("ce", title="CE-PGD", colour="#0072B2", plain=_plain_ce, formula="CE = −log p_y")
def ce(t: PixelInputs, _: float | None):
    t.log_weight = t.log_valid()  # weight 1 (0 on ignored pixels) and its log, both kept for the run
    return t.ce, t.validf


# -- SegPGD ------------------------------------------------------------------------------------------------
def _segpgd_lambda(step: int, total: int) -> float:
    return step / (2.0 * total)


def _plain_segpgd(t: PlainInputs, lam: float) -> torch.Tensor:
    return ((1 - lam) * t.correct + lam * (1 - t.correct)) * t.ce


@register_attack("segpgd", title="SegPGD", colour="#E69F00", plain=_plain_segpgd, param="λ", param_rule=_segpgd_lambda,
                 formula="((1−λ)[correct] + λ[wrong])·CE, λ = step/(2·total)")
def segpgd(t: PixelInputs, lam: float):
    weight = torch.where(t.correct, 1.0 - lam, lam).to(t.dtype)
    return weight * t.ce, weight


# -- CosPGD ------------------------------------------------------------------------------------------------
def _plain_cospgd(t: PlainInputs, _: float | None) -> torch.Tensor:
    return F.cosine_similarity(t.probs(), t.onehot(), dim=1).detach() * t.ce


@register_attack("cospgd", title="CosPGD", colour="#009E73", plain=_plain_cospgd, formula="p_y/‖p‖₂ · CE")
def cospgd(t: PixelInputs, _: float | None):
    weight = t.p_true / t.p_norm().clamp_min(1e-300)
    return weight * t.ce, weight


# -- JSPGD ---------------------------------------------------------------------------------------------------
def _plain_js(t: PlainInputs, _: float | None) -> torch.Tensor:
    p, onehot = t.probs(), t.onehot()
    m = (p + onehot) / 2
    kl = F.kl_div(m.log(), p, reduction="none") + F.kl_div(m.log(), onehot, reduction="none")
    return (kl / 2).sum(1) * t.valid


def _log_weight_js(weight: torch.Tensor, ce: torch.Tensor, _: float | None) -> torch.Tensor:
    return math.log(0.5) - ce + torch.log(ce + torch.log1p(torch.exp(-ce)))  # log(p/2 log(1 + 1/p)), log p = -ce


@register_attack("js", title="JSPGD", colour="#CC79A7", plain=_plain_js, log_weight=_log_weight_js,
                 formula="JS(p ‖ e_y)")
def js(t: PixelInputs, _: float | None):
    pt = torch.exp(-t.ce)  # dJS/dce = p/2 * log(1 + 1/p), -> 0 as p -> 0
    weight = torch.where(pt > 0, 0.5 * pt * (torch.log1p(pt) + t.ce), torch.zeros_like(pt))
    return js_of_ce(t.ce), weight


# -- MaskedPGD -------------------------------------------------------------------------------------------------
def _plain_masked(t: PlainInputs, _: float | None) -> torch.Tensor:
    return t.correct * t.ce


@register_attack("masked_ce", title="MaskedPGD", colour="#56B4E9", plain=_plain_masked, formula="[correct]·CE")
def masked_ce(t: PixelInputs, _: float | None):
    weight = t.correct.to(t.dtype)
    return weight * t.ce, weight


# -- TsallisPGD ------------------------------------------------------------------------------------------------
def _plain_tsallis(t: PlainInputs, q: float) -> torch.Tensor:
    pc = t.probs().clamp_min(1e-12)
    py = pc.gather(1, t.labels.unsqueeze(1)).squeeze(1).clamp_min(1e-12)
    if abs(1 - q) < Q_ONE_TOL:
        return -torch.log(py) * t.valid
    return (1 - py.pow(1 - q)) / (1 - q) * t.valid


def tsallis_log_weight(ce: torch.Tensor, q: float) -> torch.Tensor:
    """log of TsallisPGD's gradient weight ``p_y^(1-q)`` from ``ce = -log p_y`` (q > 1: p_y floored as in the loss)."""
    a = 1.0 - float(q)
    lw = ce * -a
    if a >= 0:  # no floor below q = 1
        return lw
    return lw.masked_fill_(ce > P_FLOOR_LOG, -math.inf)  # p_y below the floor: L_q is flat there


@register_attack("tsallis", title="TsallisPGD", colour="#D55E00", plain=_plain_tsallis,
                 param="q", schedule=DEFAULT_TSALLIS_SCHEDULE, formula="(1 − p_y^(1−q))/(1 − q), q from a schedule",
                 weight_formula="w_q(p) = p^(1−q)", gradient_peak=q_to_peak)
def tsallis(t: PixelInputs, q: float):
    # the weight is the exact dL_q/dce = p_y^(1-q); within Q_ONE_TOL of q = 1 the loss value is the second-order
    # expansion, whose own derivative 1 - (1-q) ce differs from it by O((1-q)^2 ce^2)
    lw = t.log_weight = tsallis_log_weight(t.ce, q)
    a = 1.0 - q
    loss = torch.expm1(lw).div_(-a) if a >= Q_ONE_TOL else tsallis_of_ce(t.ce, q)  # lw = -(1-q) ce: tsallis_of_ce's
    return loss, None  # the weight p_y^(1-q) = exp(lw), formed where something reads it
