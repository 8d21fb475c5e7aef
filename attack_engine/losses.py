"""Per-pixel attack objectives for the six attacks of the TsallisPGD paper.

Every attack here is a function of the per-pixel cross-entropy ``ce = -log p_y`` and, for some, a
*detached* per-pixel weight.  Writing them all as ``w_i * f(ce_i)`` gives

* one numerically stable CE (exact gradient for confident pixels, see :class:`_StableCE`);
* the gradient weight relative to CE in closed form: ``w_i * f'(ce_i)`` because
  ``dL/dz = w f'(ce) dCE/dz``.

Attack names (``ATTACKS``) and their per-pixel quantity ``ell_i``:

===========  =====================================================================================
``ce``       CE-PGD: ``ce``
``segpgd``   SegPGD (Gu et al. 2022): ``((1-λ) [correct] + λ [wrong]) * ce``, λ = step / (2 total)
``cospgd``   CosPGD (Agnihotri et al. 2024): ``p_y / ||p||_2 * ce`` (softmax cosine with one-hot)
``js``       JSPGD (Croce et al. 2024): ``JS(p || e_y)`` in ``[0, log 2]``
``masked_ce`` MaskedPGD (Croce et al. 2024): ``[correct] * ce``
``tsallis``  TsallisPGD (Matyasko et al. 2026): ``(1 - p_y^(1-q)) / (1-q)``, q from a schedule
===========  =====================================================================================

Ignored pixels (label == ``ignore_index``) give exactly 0 and no gradient.  The objective is evaluated
in float64 on the logits only (cheap next to the model) with autocast disabled, so float16/bfloat16
models and logits up to ±1e3 give finite values and gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from attack_engine.schedules import Schedule, parse_schedule

ATTACKS: tuple[str, ...] = ("ce", "segpgd", "cospgd", "js", "masked_ce", "tsallis")
ATTACK_TITLES: dict[str, str] = {
    "ce": "CE-PGD",
    "segpgd": "SegPGD",
    "cospgd": "CosPGD",
    "js": "JSPGD",
    "masked_ce": "MaskedPGD",
    "tsallis": "TsallisPGD",
}
DEFAULT_TSALLIS_SCHEDULE = "linear:-2:1"
# q > 1 makes L_q = (p_y^(1-q) - 1)/(q-1) unbounded; like the reference we floor p_y at 1e-12 there.
_P_FLOOR_LOG = -math.log(1e-12)
_Q_ONE_TOL = 1e-6


class _StableCE(torch.autograd.Function):
    """Per-pixel CE ``lse(z) - z_y`` whose gradient keeps every pixel that float64 can represent.

    Autograd of ``log_softmax`` forms ``p_y - 1``, which rounds to 0 once ``p_y > 1 - eps``.  Here the
    true-class entry is computed as ``-sum_{j != y} p_j`` instead, which has no cancellation.
    ``lse`` (the detached logsumexp over classes) is passed in so that it is computed once.
    """

    @staticmethod
    def forward(ctx, z: torch.Tensor, y: torch.Tensor, lse: torch.Tensor) -> torch.Tensor:  # z [B,C,H,W]
        ctx.save_for_backward(z, y, lse)
        return lse - z.gather(1, y.unsqueeze(1)).squeeze(1)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        z, y, lse = ctx.saved_tensors
        idx = y.unsqueeze(1)
        grad = torch.exp(z - lse.unsqueeze(1)).scatter_(1, idx, 0.0)
        grad.scatter_(1, idx, -grad.sum(1, keepdim=True))
        return grad.mul_(g.unsqueeze(1)), None, None


def _objective_dtype(logits: torch.Tensor) -> torch.dtype:
    return torch.float32 if logits.device.type == "mps" else torch.float64


def _safe_labels(labels: torch.Tensor, num_classes: int, ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    valid = (labels != ignore_index) & (labels >= 0) & (labels < num_classes)
    return torch.where(valid, labels, torch.zeros_like(labels)).long(), valid


@dataclass(frozen=True)
class PixelTerms:
    """What one evaluation of an attack objective gives, all ``[B,H,W]`` in the objective's dtype.

    ``loss`` is differentiable; every other field is detached.
    """

    loss: torch.Tensor  # per-pixel ell_i (0 on ignored pixels)
    ce: torch.Tensor  # per-pixel CE (0 on ignored pixels), detached
    p_true: torch.Tensor  # p_y, detached
    weight: torch.Tensor  # gradient weight relative to CE: (dL/dz) / (dCE/dz)
    correct: torch.Tensor  # bool, argmax == y
    valid: torch.Tensor  # bool, not ignored
    param: float | None  # q (tsallis) or λ (segpgd); None otherwise
    pred: torch.Tensor  # argmax class
    ce_grad_norm: torch.Tensor | None  # ||dCE/dz||_2 = ||p - e_y||, exact in float64 (with_grad_norm only)
    log_grad: torch.Tensor  # log |dℓ/dz|, finite where float64 underflows (-inf: zero weight); exact with
    # with_grad_norm, else a lower bound within log(sqrt(2) (C-1)) (enough for gradient scaling)


def tsallis_of_ce(ce: torch.Tensor, q: float) -> torch.Tensor:
    """L_q as a function of ``ce = -log p_y``: ``(1 - exp(-(1-q) ce)) / (1-q)``; q = 1 gives ``ce``."""
    a = 1.0 - q
    if abs(a) < _Q_ONE_TOL:
        return ce - 0.5 * a * ce * ce  # second-order expansion, continuous at q = 1
    if a < 0:
        ce = ce.clamp(max=_P_FLOOR_LOG)
    return -torch.expm1(-a * ce) / a


def js_of_ce(ce: torch.Tensor) -> torch.Tensor:
    """JS(p || e_y) in nats as a function of p_y = exp(-ce): ``log 2 + p log p / 2 - (1+p) log(1+p) / 2``."""
    p = torch.exp(-ce)
    return math.log(2.0) - 0.5 * p * ce - 0.5 * (1.0 + p) * torch.log1p(p)


def resolve_q(q: float | str | Schedule | None, step: int, total: int) -> float:
    """The q in force at ``step`` of ``total``: ``None`` = paper schedule, number = fixed, text/Schedule."""
    if q is None:
        q = DEFAULT_TSALLIS_SCHEDULE
    if isinstance(q, str):
        q = parse_schedule(q)
    if isinstance(q, Schedule):
        return q.value(step, total)
    q = float(q)
    if not math.isfinite(q):
        raise ValueError(f"q must be finite, got {q}")
    return q


def pixel_terms(
    name: str,
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    step: int = 0,
    total: int = 1,
    q: float | str | Schedule | None = None,
    ignore_index: int = 255,
    with_grad_norm: bool = False,
) -> PixelTerms:
    """Evaluate attack ``name`` per pixel; see :func:`pixel_loss` for the arguments.

    ``with_grad_norm`` adds the exact per-pixel ``||dCE/dz||`` (for telemetry: ``|dL/dz| = weight * it``).
    """
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; choose one of {', '.join(ATTACKS)}")
    if logits.dim() != 4 or labels.dim() != 3 or logits.shape[0] != labels.shape[0] or logits.shape[2:] != labels.shape[1:]:
        raise ValueError(f"expected logits [B,C,H,W] and labels [B,H,W], got {tuple(logits.shape)} and {tuple(labels.shape)}")
    if total < 1 or step < 0:
        raise ValueError(f"need total >= 1 and step >= 0, got step={step}, total={total}")
    with torch.autocast(logits.device.type, enabled=False):
        z = logits.to(_objective_dtype(logits))
        y, valid = _safe_labels(labels, z.shape[1], ignore_index)
        validf = valid.to(z.dtype)
        with torch.no_grad():
            lse = torch.logsumexp(z.detach(), 1)
        ce = _StableCE.apply(z, y, lse) * validf
        with torch.no_grad():
            zd = z.detach()
            cef = ce.detach()
            p_true = torch.exp(-cef)
            if z.shape[1] > 1:
                top = zd.topk(2, dim=1)
                pred = top.indices[:, 0]
                # log of the largest p_j over j != y (the label's rivals); log(1 - p_y) lies within log(C-1) above
                log_rival = torch.where(pred == y, top.values[:, 1], top.values[:, 0]) - lse
            else:
                pred = torch.zeros_like(y)
                log_rival = torch.full_like(lse, -math.inf)
            correct = (pred == y) & valid
            grad_norm = None
            if with_grad_norm or name == "cospgd":
                p = torch.exp(zd - lse.unsqueeze(1))
            if with_grad_norm:
                idx = y.unsqueeze(1)
                others = p.scatter(1, idx, 0.0)
                grad_norm = torch.sqrt(others.square().sum(1) + others.sum(1).square()) * validf
                # the same norm in log space: 0.5 * log(sum_j p_j^2 + (sum_j p_j)^2), j != y
                lo = (zd - lse.unsqueeze(1)).scatter_(1, idx, -math.inf)
                log_ce_grad = 0.5 * torch.logaddexp(torch.logsumexp(2 * lo, 1), 2 * torch.logsumexp(lo, 1))
            else:  # lower bound within log(sqrt(2) (C-1)) of the exact norm, from [B,H,W] tensors only
                log_ce_grad = log_rival + 0.5 * math.log(2.0)
        param: float | None = None
        if name == "ce":
            loss, weight = ce, torch.ones_like(cef)
        elif name == "segpgd":
            param = step / (2.0 * total)
            weight = torch.where(correct, 1.0 - param, param).to(z.dtype)
            loss = weight * ce
        elif name == "cospgd":
            weight = p_true / p.norm(dim=1).clamp_min(1e-300)  # p computed above for cospgd
            loss = weight * ce
        elif name == "masked_ce":
            weight = correct.to(z.dtype)
            loss = weight * ce
        elif name == "js":
            loss = js_of_ce(ce) * validf
            with torch.no_grad():
                pt = torch.exp(-cef)  # dJS/dce = p/2 * log(1 + 1/p), -> 0 as p -> 0
                weight = torch.where(pt > 0, 0.5 * pt * (torch.log1p(pt) + cef), torch.zeros_like(pt))
        else:  # tsallis
            param = resolve_q(q, step, total)
            loss = tsallis_of_ce(ce, param) * validf
            with torch.no_grad():
                a = 1.0 - param
                cw = cef.clamp(max=_P_FLOOR_LOG) if a < 0 else cef
                weight = torch.exp(-a * cw)
                if a < 0:
                    weight = torch.where(cef > _P_FLOOR_LOG, torch.zeros_like(weight), weight)
        weight = weight.detach() * validf
        log_grad = torch.where(valid, _log_weight(name, weight, cef, param) + log_ce_grad, -math.inf)
    return PixelTerms(loss, cef, p_true, weight, correct, valid, param, pred, grad_norm, log_grad)


def _log_weight(name: str, weight: torch.Tensor, ce: torch.Tensor, param: float | None) -> torch.Tensor:
    """log of the gradient weight relative to CE, exact where the weight itself underflows."""
    if name == "tsallis":
        a = 1.0 - float(param)  # type: ignore[arg-type]
        lw = -a * (ce.clamp(max=_P_FLOOR_LOG) if a < 0 else ce)
        return torch.where((ce > _P_FLOOR_LOG) & (a < 0), -math.inf, lw)
    if name == "js":  # log(p/2 * log(1 + 1/p)) with log p = -ce
        return math.log(0.5) - ce + torch.log(ce + torch.log1p(torch.exp(-ce)))
    return torch.log(weight)


def pixel_loss(
    name: str,
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    step: int = 0,
    total: int = 1,
    q: float | str | Schedule | None = None,
    ignore_index: int = 255,
) -> torch.Tensor:
    """Per-pixel quantity ``[B,H,W]`` whose pixel mean an attack ascends at ``step`` of a stage of ``total``.

    Args:
        name: one of :data:`ATTACKS`.
        logits: ``[B,C,H,W]`` model output (any float dtype, differentiable).
        labels: ``[B,H,W]`` integer labels; ``ignore_index`` pixels give exactly 0 and no gradient.
        step, total: position in the stage; drives SegPGD's λ = step/(2 total) and the Tsallis q-schedule.
        q: Tsallis only. ``None`` = paper schedule (linear −2 → 1, q = −2 + 3·step/total); a number = fixed q;
            a schedule text such as ``"cosine:-2:1"`` or a :class:`~attack_engine.schedules.Schedule`.

    Returns:
        ``[B,H,W]`` in float64 (float32 on MPS); detached weights (SegPGD, CosPGD, MaskedPGD) carry no gradient.

    Example:
        >>> loss = pixel_loss("tsallis", logits, labels, step=10, total=100)
        >>> loss.mean().backward()
    """
    return pixel_terms(name, logits, labels, step=step, total=total, q=q, ignore_index=ignore_index).loss


LossFn = Callable[..., torch.Tensor]


def plain_pixel_loss(
    name: str,
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    step: int = 0,
    total: int = 1,
    q: float | str | Schedule | None = None,
    ignore_index: int = 255,
) -> torch.Tensor:
    """The same objectives written the textbook way, in the logits' dtype with plain autograd.

    This mirrors the paper's reference code (softmax clamped at 1e-12, ``F.cross_entropy``, JS through
    ``log m``).  It exists for comparison (``AttackConfig(numerics="plain")``): for confident pixels its
    gradient rounds to exactly zero, which :func:`pixel_loss` avoids.
    """
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; choose one of {', '.join(ATTACKS)}")
    y, valid = _safe_labels(labels, logits.shape[1], ignore_index)
    z = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    ce = F.cross_entropy(z, y, reduction="none") * valid
    with torch.no_grad():
        correct = ((z.argmax(1) == y) & valid).to(z.dtype)
    if name == "ce":
        return ce
    if name == "segpgd":
        lam = step / (2.0 * total)
        return ((1 - lam) * correct + lam * (1 - correct)) * ce
    if name == "masked_ce":
        return correct * ce
    p = torch.softmax(z, 1)
    onehot = F.one_hot(y, z.shape[1]).permute(0, 3, 1, 2).to(z.dtype)
    if name == "cospgd":
        return F.cosine_similarity(p, onehot, dim=1).detach() * ce
    if name == "js":
        m = (p + onehot) / 2
        kl = F.kl_div(m.log(), p, reduction="none") + F.kl_div(m.log(), onehot, reduction="none")
        return (kl / 2).sum(1) * valid
    qq = resolve_q(q, step, total)
    pc = p.clamp_min(1e-12)
    py = pc.gather(1, y.unsqueeze(1)).squeeze(1).clamp_min(1e-12)
    if abs(1 - qq) < _Q_ONE_TOL:
        return -torch.log(py) * valid
    return (1 - py.pow(1 - qq)) / (1 - qq) * valid
