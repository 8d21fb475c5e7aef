"""The numeric core of every attack objective: one stable per-pixel CE and what the objectives are built from.

Every attack (registered in :mod:`attack_engine.objectives`, looked up in :mod:`attack_engine.registry`) is a
function of the per-pixel cross-entropy ``ce = -log p_y`` and, for some, a *detached* per-pixel weight.  Writing
them all as ``w_i * f(ce_i)`` gives

* one numerically stable CE with a closed-form gradient (exact for confident pixels, see :class:`_SoftmaxCEGrad`);
* the gradient weight relative to CE in closed form: ``w_i * f'(ce_i)`` because
  ``dL/dz = w f'(ce) dCE/dz``.

:func:`pixel_terms` evaluates the shared part (CE, p_y, correctness, ``||dCE/dz||``) once and hands it to the
attack's objective as :class:`PixelInputs`.  The objective runs without autograd: since its weight *is*
``(dℓ/dz)/(dCE/dz)``, the gradient of ``ℓ`` is ``weight · dCE/dz``, formed in closed form by one autograd node
(:class:`_Weighted`) or, for the engine's own step, directly (:meth:`PixelTerms.logit_grad`; two classes in log
space).  Ignored pixels (label == ``ignore_index``) give exactly 0 and no gradient.  The objective is evaluated in
float64 on the logits only (cheap next to the model) with autocast disabled, so float16/bfloat16 models and logits
up to ±1e3 give finite values and gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from attack_engine.registry import attack_names, attack_specs, get_attack
from attack_engine.schedules import Schedule


def __getattr__(name: str):
    """``ATTACKS`` and ``ATTACK_TITLES``: live views of the registry (kept for callers of the old constants)."""
    if name == "ATTACKS":
        return attack_names()
    if name == "ATTACK_TITLES":
        return {spec.name: spec.title for spec in attack_specs()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Weighted(torch.autograd.Function):
    """The objective's per-pixel value with the gradient ``g · weight · dCE/dz`` in one node.

    ``weight`` is by definition ``(dℓ/dz)/(dCE/dz)`` (see :mod:`attack_engine.objectives`), so this is the gradient
    of ``ℓ`` without an autograd graph of the objective.  ``grad_of`` maps the incoming per-pixel ``g`` to it in
    closed form from what the forward pass computed (:class:`_SoftmaxCEGrad`; two classes in log space,
    :func:`_binary_grads`), with no ``p_y - 1`` cancellation, so every pixel that float64 can represent keeps
    its gradient.
    """

    @staticmethod
    def forward(ctx, z: torch.Tensor, loss: torch.Tensor, grad_of: Callable[[torch.Tensor], torch.Tensor]):
        ctx.grad_of = grad_of
        return loss.view_as(loss)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        return ctx.grad_of(g), None, None


class _SoftmaxCEGrad:
    """``g * dCE/dz`` from ``e = exp(z - max z)`` (label entry 0), ``s = sum_j e_j`` and ``s_other = sum_{j != y} e_j``.

    The true-class entry is ``-sum_{j != y} p_j`` (no ``p_y - 1``).  The product is formed in ``e``'s dtype and
    rounded once, to the logits' dtype, as it is stored.
    """

    def __init__(self, idx: torch.Tensor, e: torch.Tensor, s: torch.Tensor, s_other: torch.Tensor,
                 z_dtype: torch.dtype) -> None:
        self.idx, self.e, self.s, self.s_other, self.z_dtype = idx, e, s, s_other, z_dtype

    def __call__(self, g: torch.Tensor) -> torch.Tensor:
        coef = (g / self.s).unsqueeze(1)  # dCE/dz_j = p_j = e_j / s for j != y
        e = self.e
        grad = torch.empty_like(e, dtype=self.z_dtype)
        for r in _row_chunks(e):  # small temporaries
            grad[:, :, r] = e[:, :, r] * coef[:, :, r]
        grad.scatter_(1, self.idx, (-self.s_other.unsqueeze(1) * coef).to(grad.dtype))  # dCE/dz_y = -sum_{j != y} p_j
        return grad


_CHUNK_BYTES = 4 << 20


def _row_chunks(t: torch.Tensor) -> list[slice]:
    """Slices along H of a ``[B,C,H,W]`` tensor of about ``_CHUNK_BYTES`` each.

    Temporaries of chunk size are recycled by the allocator, where tensor-sized ones (hundreds of MB at 512² with
    150 classes) are fresh pages every iteration on CPU, and the page faults cost more than the arithmetic.
    """
    b, c, h, w = t.shape
    if t.device.type != "cpu":
        return [slice(0, h)]
    rows = max(1, _CHUNK_BYTES // max(1, b * c * w * t.element_size()))
    return [slice(i, min(i + rows, h)) for i in range(0, h, rows)]


def _max_argmax(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Max over classes ``[B,H,W]`` and the first class reaching it (``argmax``), exact in ``z``'s dtype.

    On CPU a loop over the classes of elementwise ops on ``[B,H,W]`` planes is several times faster than
    ``argmax``/``topk`` over dim 1 of an NCHW tensor.
    """
    c = z.shape[1]
    if z.device.type != "cpu" or c > 1024:
        m, pred = z.max(1)
        return m, pred
    m = z[:, 0].clone()
    pred = torch.zeros(m.shape, dtype=torch.long, device=z.device)
    for k in range(1, c):
        zk = z[:, k]
        pred.masked_fill_(zk > m, k)
        torch.maximum(m, zk, out=m)
    return m, pred


def _buffer(workspace: dict | None, key: str, shape: torch.Size, dtype: torch.dtype,
            device: torch.device) -> torch.Tensor:
    """A tensor to overwrite: the workspace's when it fits, else a new one (kept in the workspace)."""
    if workspace is not None:
        t = workspace.get(key)
        if t is not None and t.shape == shape and t.dtype == dtype and t.device == device:
            return t
    t = torch.empty(shape, dtype=dtype, device=device)
    if workspace is not None:
        workspace[key] = t
    return t


def _softmax_parts(zd: torch.Tensor, idx: torch.Tensor, dtype: torch.dtype, workspace: dict | None = None):
    """All the class-sized work of the objective in one go (no grad; ``zd`` the logits in their own dtype).

    Returns ``pred``; ``e = exp(z - m)`` (``m`` the max logit) in ``dtype`` with the label entry set to 0; and, all
    ``[B,H,W]``: ``ey`` (the label entry of ``exp(z - m)``), ``s_other = sum_{j != y} e_j``, ``s = s_other + ey``,
    ``lse = log s + m`` (``torch.logsumexp`` up to rounding, ±inf maxima treated the same way) and ``zy``.
    """
    m, pred = _max_argmax(zd)
    m = m.to(dtype)
    e = _buffer(workspace, "e", zd.shape, dtype, zd.device)
    e.copy_(zd)  # the conversion in place of a fresh tensor per step; exact for every float logits dtype
    e.sub_(m.unsqueeze(1)).exp_()
    ey = e.gather(1, idx).squeeze(1)
    e.scatter_(1, idx, 0.0)
    s_other = e.sum(1)
    s = s_other + ey
    lse = torch.log(s) + m.masked_fill(m.abs() == math.inf, 0.0)
    zy = zd.gather(1, idx).squeeze(1).to(dtype)
    return pred, e, ey, s_other, s, lse, zy


def _sum_sq(e: torch.Tensor) -> torch.Tensor:
    """``sum_j e_j^2`` over classes, ``[B,H,W]``, with chunk-sized temporaries."""
    out = torch.empty(e.shape[0], *e.shape[2:], dtype=e.dtype, device=e.device)
    for r in _row_chunks(e):
        out[:, r] = e[:, :, r].square().sum(1)
    return out


def _log_norm_others(zd: torch.Tensor, idx: torch.Tensor, lse: torch.Tensor, dtype: torch.dtype):
    """``log sum_{j != y} p_j`` and ``0.5 log(sum_{j != y} p_j^2 + (sum_{j != y} p_j)^2)`` without underflow.

    Computed around the largest rival logit ``r = max_{j != y} z_j``: ``p_j = exp(r - lse) exp(z_j - r)``, so the
    sums are at least 1.  A class-sized pass; used only for pixels whose linear values underflow.  ``-inf`` with a
    single class.
    """
    if zd.shape[1] < 2:
        ninf = torch.full(lse.shape, -math.inf, dtype=dtype, device=lse.device)
        return ninf, ninf
    er = torch.empty(zd.shape, dtype=dtype, device=zd.device)
    er.copy_(zd).scatter_(1, idx, -math.inf)
    r = er.amax(1)
    er.sub_(r.unsqueeze(1)).exp_()
    s1 = er.sum(1)
    base = r - lse
    return base + torch.log(s1), base + 0.5 * torch.log(_sum_sq(er) + s1.square())


def _objective_dtype(logits: torch.Tensor) -> torch.dtype:
    return torch.float32 if logits.device.type == "mps" else torch.float64


def _safe_labels(labels: torch.Tensor, num_classes: int, ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    valid = (labels != ignore_index) & (labels >= 0) & (labels < num_classes)
    return torch.where(valid, labels, torch.zeros_like(labels)).long(), valid


@dataclass(frozen=True)
class PixelTerms:
    """What one evaluation of an attack objective gives, all ``[B,H,W]`` in the objective's dtype.

    ``loss`` is differentiable (when evaluated with grad enabled on logits that require it); every other field is
    detached.  :meth:`logit_grad` gives the gradient of a per-image weighted sum of ``loss`` without autograd.
    """

    loss: torch.Tensor  # per-pixel ell_i (0 on ignored pixels)
    ce: torch.Tensor  # per-pixel CE (0 on ignored pixels), detached
    inputs: PixelInputs = field(repr=False)  # p_true and correct are its (computed when first asked for)
    valid: torch.Tensor  # bool, not ignored
    param: float | None  # q (tsallis) or λ (segpgd); None otherwise
    pred: torch.Tensor  # argmax class
    ce_grad_norm: torch.Tensor | None  # ||dCE/dz||_2 = ||p - e_y||, exact in float64 (with_grad_norm only)
    log_grad: torch.Tensor  # log |dℓ/dz|, finite where float64 underflows (-inf: zero weight); exact with
    # with_grad_norm, else a lower bound within log(sqrt(2) (C-1)) (enough for gradient scaling)
    log_ce_grad: torch.Tensor | None = None  # log ||dCE/dz|| (-inf on ignored pixels); exact/lower bound as log_grad
    log_rest: torch.Tensor | None = None  # log(1 - p_y) = log sum_{j != y} p_j, finite where 1 - p_y rounds to 0
    _logit_grad: Callable[[torch.Tensor, float], torch.Tensor] | None = field(default=None, repr=False)
    _weight: torch.Tensor | Callable[[], torch.Tensor] | None = field(default=None, repr=False)

    @property
    def weight(self) -> torch.Tensor:
        """Gradient weight relative to CE, ``(dℓ/dz) / (dCE/dz)``, 0 on ignored pixels (formed, and kept, when first
        asked for where the objective gave only its log: :func:`_lazy_weight`)."""
        return self._weight() if callable(self._weight) else self._weight

    def logit_grad(self, log_coef: torch.Tensor, sign: float = 1.0) -> torch.Tensor:
        """``d/dz sum_i c_b ℓ_i`` with ``c_b = sign · exp(log_coef_b)`` per image (``[B]``), in the logits' dtype.

        What ``torch.autograd.grad`` of ``(c * loss.sum((1, 2))).sum()`` would give, formed in closed form as
        ``c · weight · dCE/dz``; with two classes in log space, ``exp(log_coef + log_grad)``, so a pixel whose
        ``|dℓ/dz|`` underflows float64 still gets its share when ``log_coef`` lifts it.  Uses the workspace
        buffer of this evaluation: call it before the next :func:`pixel_terms` with the same workspace.
        """
        return self._logit_grad(log_coef, sign)

    @property
    def p_true(self) -> torch.Tensor:
        """p_y, detached."""
        return self.inputs.p_true

    @property
    def correct(self) -> torch.Tensor:
        """bool, argmax == y (and not ignored)."""
        return self.inputs.correct


@dataclass
class PixelInputs:
    """What an attack's objective may use, all ``[B,H,W]`` in the objective dtype, all detached.

    ``ce`` is the per-pixel CE (0 on ignored pixels).  The objective is evaluated without autograd: its gradient is
    ``weight · dCE/dz`` (the weight it returns is that ratio by definition), formed in closed form by
    :func:`pixel_terms`.  :meth:`p_norm` is computed on demand (one class-sized pass, shared with the telemetry).
    """

    ce: torch.Tensor  # per-pixel CE, 0 on ignored pixels, detached
    valid: torch.Tensor  # bool, not ignored
    validf: torch.Tensor  # valid as 0/1 in the objective dtype
    dtype: torch.dtype
    _e: torch.Tensor = field(repr=False)  # exp(z - max z) with the label entry 0
    _ey: torch.Tensor = field(repr=False)  # label entry of exp(z - max z)
    _s: torch.Tensor = field(repr=False)  # sum_j exp(z_j - max z)
    _sq: torch.Tensor | None = field(default=None, repr=False)
    _p_norm: Callable[[], torch.Tensor] | None = field(default=None, repr=False)  # two classes: closed form
    _pred: torch.Tensor | None = field(default=None, repr=False)  # argmax class and labels, for `correct`
    _labels: _Labels | None = field(default=None, repr=False)
    _cache: dict = field(default_factory=dict, repr=False)
    log_weight: torch.Tensor | None = None  # an objective may leave log(weight) here (exact where weight underflows);
    # then it may return None for the weight, which is formed as exp(log_weight) only when something reads it

    @property
    def ce_detached(self) -> torch.Tensor:
        """``ce`` (every input is detached; kept for objectives written when ``ce`` carried the gradient)."""
        return self.ce

    # p_y and the correct mask are computed when an objective or the telemetry first asks (the default TsallisPGD
    # without telemetry needs neither): two and one pixel-sized operations less per evaluation
    @property
    def p_true(self) -> torch.Tensor:
        """p_y = exp(-ce), detached."""
        if "p_true" not in self._cache:
            with torch.no_grad():
                self._cache["p_true"] = torch.exp(-self.ce)
        return self._cache["p_true"]

    @property
    def correct(self) -> torch.Tensor:
        """bool, argmax == y (and not ignored)."""
        if "correct" not in self._cache:
            lab = self._labels
            hit = self._pred == lab.y
            self._cache["correct"] = hit if lab.all_valid else hit & lab.valid
        return self._cache["correct"]

    def log_valid(self) -> torch.Tensor:
        """``log`` of ``validf``: 0 on valid pixels, ``-inf`` on ignored ones (kept: the labels of a run do not change;
        do not write into it)."""
        return self._labels.log_validf(self.dtype)

    def sum_sq_others(self) -> torch.Tensor:
        """``sum_{j != y} exp(z_j - max z)^2`` (cached)."""
        if self._sq is None:
            with torch.no_grad():
                self._sq = _sum_sq(self._e)
        return self._sq

    def p_norm(self) -> torch.Tensor:
        """``||p||_2`` per pixel, detached."""
        with torch.no_grad():
            if self._p_norm is not None:
                return self._p_norm()
            return torch.sqrt(self.sum_sq_others() + self._ey.square()) / self._s


@dataclass
class PlainInputs:
    """The textbook quantities for an attack's ``plain`` form (plain autograd, the logits' dtype)."""

    z: torch.Tensor  # logits (float32 for half-precision models)
    labels: torch.Tensor  # labels with ignored pixels set to 0
    valid: torch.Tensor  # bool
    ce: torch.Tensor  # F.cross_entropy per pixel, times valid
    correct: torch.Tensor  # argmax == y and valid, in z's dtype (detached)

    def probs(self) -> torch.Tensor:
        return torch.softmax(self.z, 1)

    def onehot(self) -> torch.Tensor:
        return F.one_hot(self.labels, self.z.shape[1]).permute(0, 3, 1, 2).to(self.z.dtype)


def _check_shapes(logits: torch.Tensor, labels: torch.Tensor, step: int, total: int) -> None:
    if logits.dim() != 4 or labels.dim() != 3 or logits.shape[0] != labels.shape[0] or logits.shape[2:] != labels.shape[1:]:
        raise ValueError(f"expected logits [B,C,H,W] and labels [B,H,W], got {tuple(logits.shape)} and {tuple(labels.shape)}")
    if total < 1 or step < 0:
        raise ValueError(f"need total >= 1 and step >= 0, got step={step}, total={total}")


def _log_ce_grad(inputs: PixelInputs, zd: torch.Tensor, idx: torch.Tensor, lse: torch.Tensor, s_other: torch.Tensor,
                 with_grad_norm: bool) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """``||dCE/dz||`` (with_grad_norm, else None), its log and ``log(1 - p_y)``, finite where float64 underflows."""
    dtype, s, validf = inputs.dtype, inputs._s, inputs.validf
    log_s = torch.log(s)
    grad_norm = None
    # log(1 - p_y) = log sum_{j != y} p_j: linear while S does not underflow, else re-centred on the top rival
    ok_rest = s_other >= torch.finfo(dtype).tiny
    log_rest = torch.log(s_other) - log_s
    ok = ok_rest
    if with_grad_norm:
        lin = inputs.sum_sq_others() + s_other.square()
        grad_norm = torch.sqrt(lin) / s * validf
        # log ||p - e_y|| = 0.5 log(sum_j p_j^2 + (sum_j p_j)^2), j != y: linear where the largest e_j^2 is far
        # from underflow (e_j >= s_other / (C-1)), else re-centred on the largest rival logit
        ok = s_other >= (torch.finfo(dtype).tiny ** 0.45) * max(1, zd.shape[1] - 1)
        log_ce_grad = 0.5 * torch.log(lin) - log_s
    others = None if bool(ok.all()) else _log_norm_others(zd, idx, lse, dtype)
    if others is not None:
        log_rest = torch.where(ok_rest, log_rest, others[0])
    if with_grad_norm:
        if others is not None:
            log_ce_grad = torch.where(ok, log_ce_grad, others[1])
    else:
        # lower bound from S = sum_{j != y} p_j alone (no extra class-sized pass): sum_j p_j^2 >= S^2 / (C-1), so
        # ||p - e_y|| >= S sqrt(C / (C-1)), within 0.5 log(2 (C-1) / C) of the exact value (exact for 2 classes)
        c = zd.shape[1]
        log_ce_grad = log_rest + (0.5 * math.log(c / (c - 1)) if c > 1 else 0.0)
    return grad_norm, log_ce_grad, log_rest


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
    workspace: dict | None = None,
) -> PixelTerms:
    """Evaluate attack ``name`` per pixel; see :func:`pixel_loss` for the arguments.

    ``with_grad_norm`` adds the exact per-pixel ``||dCE/dz||`` (for telemetry: ``|dL/dz| = weight * it``).
    ``workspace``: a dict kept by the caller between calls; the logits-sized float64 buffer, ``log_grad`` and the
    two-class path's per-pixel terms (CE, ``log_ce_grad``, ``log_rest``) are then reused instead of being fresh
    memory every call (on CPU their page faults cost more than the arithmetic).  The returned terms live in those
    buffers and backward reads them, so pass the same workspace again only after the previous call's backward has
    run and its terms are no longer read (:class:`~attack_engine.AttackRun` does this: a record keeps copies).
    """
    spec = get_attack(name)
    _check_shapes(logits, labels, step, total)
    with torch.autocast(logits.device.type, enabled=False), torch.no_grad():
        dtype = _objective_dtype(logits)
        lab = _labels(labels, logits.shape[1], ignore_index, workspace)
        binary = logits.shape[1] == 2 and _BINARY_PATH
        zd = logits.detach()
        base = _binary_base(zd, lab, dtype, workspace) if binary else _softmax_base(zd, lab, dtype, workspace)
        validf = lab.validf(dtype)
        ce = base.ce0 if lab.all_valid else base.ce0 * validf
        inputs = PixelInputs(ce, lab.valid, validf, dtype, base.e, base.ey, base.s, _p_norm=base.p_norm,
                             _pred=base.pred, _labels=lab)
        if binary:
            grad_norm, log_ce_grad, log_rest = _binary_norms(base, lab, with_grad_norm, workspace)
        else:
            grad_norm, log_ce_grad, log_rest = _log_ce_grad(inputs, zd, base.idx, base.lse, base.s_other,
                                                            with_grad_norm)
        param = spec.param_at(step, total, q)
        loss, weight = spec.objective(inputs, param)
        loss = lab.mask(loss, 0.0)
        log_weight = inputs.log_weight
        if weight is not None:
            weight = lab.mask(weight, 0.0)
        if log_weight is None:
            log_weight = spec.log_weight(weight, ce, param) if spec.log_weight is not None else torch.log(weight)
        log_ce_grad = lab.mask(log_ce_grad, -math.inf)
        log_grad = lab.mask(torch.add(log_weight, log_ce_grad,
                                      out=_buffer(workspace, "log_grad", ce.shape, dtype, ce.device)), -math.inf)
    weight_of = weight if weight is not None else _lazy_weight(lab, log_weight)
    grad_of, scaled = (_binary_grads(lab, log_grad, logits.dtype, workspace) if binary
                       else _softmax_grads(base.grad, weight_of))
    if torch.is_grad_enabled() and logits.requires_grad:
        loss = _Weighted.apply(logits, loss, grad_of)
    return PixelTerms(loss, ce, inputs, lab.valid, param, base.pred, grad_norm, log_grad, log_ce_grad, log_rest,
                      scaled, weight if weight is not None else weight_of)


def _lazy_weight(lab: _Labels, log_weight: torch.Tensor) -> Callable[[], torch.Tensor]:
    """``exp(log_weight)`` (0 on ignored pixels), formed at the first call and kept."""
    kept: list[torch.Tensor] = []

    def weight() -> torch.Tensor:
        if not kept:
            with torch.no_grad():
                kept.append(lab.mask(torch.exp(log_weight), 0.0))
        return kept[0]

    return weight


def _softmax_grads(ce_grad: Callable[[torch.Tensor], torch.Tensor],
                   weight: torch.Tensor | Callable[[], torch.Tensor]):
    """Any number of classes, through the closed-form CE gradient: ``grad_of(g)`` = ``(g · weight) · dCE/dz`` (the
    :class:`_Weighted` backward) and ``scaled`` = :meth:`PixelTerms.logit_grad` (``c_b · weight · dCE/dz``)."""

    def w() -> torch.Tensor:
        return weight() if callable(weight) else weight

    def grad_of(g: torch.Tensor) -> torch.Tensor:
        return ce_grad(g * w())

    def scaled(log_coef: torch.Tensor, sign: float) -> torch.Tensor:
        with torch.no_grad():
            return ce_grad((sign * torch.exp(log_coef)).view(-1, 1, 1) * w())

    return grad_of, scaled


def _binary_grads(lab: _Labels, log_grad: torch.Tensor, z_dtype: torch.dtype, workspace: dict | None = None):
    """Two classes, ``|dℓ/dz_j| = exp(log_grad) / sqrt(2)`` for both entries, signed by the labels' exact ``±1``
    pattern (cached per run): ``grad_of(g)`` (the :class:`_Weighted` backward, per-pixel ``g``) and ``scaled`` =
    :meth:`PixelTerms.logit_grad`, where ``exp(log_coef + log_grad - log sqrt 2)`` is rounded once, to the logits'
    dtype.  The float64 and the rounded magnitudes go through workspace buffers; the result is a new tensor."""
    half_log2 = 0.5 * math.log(2.0)

    def signed(log_add: float | torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        m = torch.add(log_grad, log_add, out=_buffer(workspace, "binary_m", log_grad.shape, log_grad.dtype,
                                                      log_grad.device)).exp_()
        if g is not None:
            m.mul_(g)
        # rounded into a buffer first: a mixed-dtype product with out= gives the same bits but runs ≈ 3× slower
        r = _buffer(workspace, "binary_m_z", m.shape, z_dtype, m.device).copy_(m)
        return r.unsqueeze(1) * lab.binary_pm(z_dtype)

    def grad_of(g: torch.Tensor) -> torch.Tensor:
        return signed(-half_log2, g)

    def scaled(log_coef: torch.Tensor, sign: float) -> torch.Tensor:
        with torch.no_grad():
            out = signed((log_coef - half_log2).view(-1, 1, 1))
            return out.neg_() if sign < 0 else out

    return grad_of, scaled


@dataclass
class _Labels:
    """Labels made safe to index with (ignored -> 0), the valid mask, and whether every pixel is valid."""

    y: torch.Tensor
    valid: torch.Tensor
    all_valid: bool  # known without a host sync only when cached in a workspace; False = "not known"
    sign: torch.Tensor | None = None  # two classes: +1 where the label is 0, -1 where it is 1 (objective dtype)
    _validf: torch.Tensor | None = None
    _pm: torch.Tensor | None = None
    _log_validf: torch.Tensor | None = None

    def validf(self, dtype: torch.dtype) -> torch.Tensor:
        """``valid`` as 0/1 in ``dtype`` (kept: the labels of a run do not change)."""
        if self._validf is None or self._validf.dtype != dtype:
            self._validf = self.valid.to(dtype)
        return self._validf

    def log_validf(self, dtype: torch.dtype) -> torch.Tensor:
        """``log(valid)`` in ``dtype``: 0 or ``-inf`` (kept)."""
        if self._log_validf is None or self._log_validf.dtype != dtype:
            self._log_validf = torch.log(self.validf(dtype))
        return self._log_validf

    def mask(self, x: torch.Tensor, fill: float) -> torch.Tensor:
        """``x`` on valid pixels, ``fill`` elsewhere."""
        return x if self.all_valid else torch.where(self.valid, x, fill)

    def binary_sign(self, dtype: torch.dtype) -> torch.Tensor:
        if self.sign is None or self.sign.dtype != dtype:
            self.sign = torch.where(self.y == 0, 1.0, -1.0).to(dtype)
        return self.sign

    def binary_pm(self, dtype: torch.dtype) -> torch.Tensor:
        """Two classes: ``sign(dCE/dz)`` as ``[B,2,H,W]`` (-1 at the label, +1 at the other class, 0 if ignored)."""
        pm = self._pm
        if pm is None or pm.dtype != dtype:
            s = self.binary_sign(dtype) * self.valid
            pm = self._pm = torch.stack([-s, s], 1)
        return pm


def _labels(labels: torch.Tensor, num_classes: int, ignore_index: int, workspace: dict | None) -> _Labels:
    """:func:`_safe_labels`, cached in the workspace for the same (unmodified) label tensor across iterations."""
    key = (labels, labels._version, num_classes, ignore_index)
    if workspace is not None:
        hit = workspace.get("labels")
        if hit is not None and hit[0][0] is labels and hit[0][1:] == key[1:]:
            return hit[1]
    y, valid = _safe_labels(labels, num_classes, ignore_index)
    lab = _Labels(y, valid, workspace is not None and bool(valid.all()))  # one sync per run, not per step
    if workspace is not None:
        workspace["labels"] = (key, lab)
    return lab


@dataclass
class _Base:
    """The CE's class-sized work: value (not yet masked), prediction, closed-form gradient, what the rest needs."""

    ce0: torch.Tensor
    pred: torch.Tensor
    grad: Callable[[torch.Tensor], torch.Tensor] | None  # g -> g dCE/dz (softmax path)
    e: torch.Tensor | None = None  # softmax path (see PixelInputs)
    ey: torch.Tensor | None = None
    s: torch.Tensor | None = None
    s_other: torch.Tensor | None = None
    lse: torch.Tensor | None = None
    idx: torch.Tensor | None = None
    log_po: torch.Tensor | None = None  # two classes: log p_other = log(1 - p_y)
    p_norm: Callable[[], torch.Tensor] | None = None


_BINARY_PATH = True  # tests switch it off to check the two-class closed form against the general path
_SOFTPLUS_LINEAR = 700.0  # softplus(t) = t beyond this (exp(-700) is below float64 resolution of t)


def _softmax_base(zd: torch.Tensor, lab: _Labels, dtype: torch.dtype, workspace: dict | None) -> _Base:
    """Any number of classes: one pass of class-sized work (:func:`_softmax_parts`)."""
    idx = lab.y.unsqueeze(1)
    pred, e, ey, s_other, s, lse, zy = _softmax_parts(zd, idx, dtype, workspace)
    # where the label holds the max logit, CE = log(1 + s_other) exactly (lse - z_y would round tiny CEs to 0)
    ce0 = torch.where(ey == 1.0, torch.log1p(s_other), lse - zy)
    return _Base(ce0, pred, _SoftmaxCEGrad(idx, e, s, s_other, zd.dtype), e, ey, s, s_other, lse, idx)


def _binary_base(z: torch.Tensor, lab: _Labels, dtype: torch.dtype, workspace: dict | None = None) -> _Base:
    """Two classes in closed form on ``t = z_other - z_y``: ``CE = softplus(t)``, ``p_other = sigmoid(t)``.

    ``log p_other = t - softplus(t)`` is exact down to the float64 range (no ``1 - p`` anywhere), and
    ``||dCE/dz|| = sqrt(2) p_other`` exactly.  A handful of per-pixel operations instead of the class loop.
    """
    shape = z[:, 0].shape  # t and CE in workspace buffers (a fresh 512 KB tensor costs page faults on a CPU)
    t = _buffer(workspace, "binary_t", shape, dtype, z.device).copy_(z[:, 1]).sub_(z[:, 0])  # z_1 - z_0, exact
    pred = torch.gt(t, 0, out=torch.empty(t.shape, dtype=torch.long, device=t.device))  # argmax, ties to class 0
    sign = lab.binary_sign(dtype)
    t.mul_(sign)  # z_other - z_y
    sp = torch._C._nn.softplus(t, 1.0, _SOFTPLUS_LINEAR, out=_buffer(workspace, "binary_ce", shape, dtype, z.device))
    log_po = t.sub_(sp)  # t is not needed any more
    base = _Base(sp, pred, None, log_po=log_po)

    def p_norm() -> torch.Tensor:  # ||p||_2 = sqrt(p_y^2 + p_other^2)
        return torch.sqrt(torch.exp(-sp).square() + torch.exp(log_po).square())

    base.p_norm = p_norm
    return base


def _binary_norms(base: _Base, lab: _Labels, with_grad_norm: bool, workspace: dict | None = None):
    """Two classes: ``||dCE/dz|| = sqrt(2) p_other`` (telemetry), its log and ``log(1 - p_y) = log p_other``."""
    lp = base.log_po
    grad_norm = lab.mask(torch.exp(lp) * math.sqrt(2.0), 0.0) if with_grad_norm else None
    log_ce_grad = torch.add(lp, 0.5 * math.log(2.0), out=_buffer(workspace, "binary_lcg", lp.shape, lp.dtype, lp.device))
    return grad_norm, log_ce_grad, lp


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
        name: a registered attack (:func:`attack_engine.registry.attack_names`).
        logits: ``[B,C,H,W]`` model output (any float dtype, differentiable).
        labels: ``[B,H,W]`` integer labels; ``ignore_index`` pixels give exactly 0 and no gradient.
        step, total: position in the stage; drives SegPGD's λ = step/(2 total) and the Tsallis q-schedule.
        q: the parameter's schedule for attacks that take one (TsallisPGD). ``None`` = the attack's default
            (paper: linear −2 → 1, q = −2 + 3·step/total); a number = fixed q; a schedule text such as
            ``"cosine:-2:1"`` or a :class:`~attack_engine.schedules.Schedule`.

    Returns:
        ``[B,H,W]`` in float64 (float32 on MPS); detached weights (SegPGD, CosPGD, MaskedPGD) carry no gradient.

    Example:
        >>> loss = pixel_loss("tsallis", logits, labels, step=10, total=100)
        >>> loss.mean().backward()
    """
    return pixel_terms(name, logits, labels, step=step, total=total, q=q, ignore_index=ignore_index).loss


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
    """The same objectives written the textbook way (the attack's ``plain`` form), in the logits' dtype.

    This mirrors the paper's reference code (softmax clamped at 1e-12, ``F.cross_entropy``, JS through
    ``log m``).  It exists for comparison (``AttackConfig(numerics="plain")``): for confident pixels its
    gradient rounds to exactly zero, which :func:`pixel_loss` avoids.
    """
    spec = get_attack(name)
    if spec.plain is None:
        raise ValueError(f"attack {name!r} has no plain form; use numerics='stable'")
    y, valid = _safe_labels(labels, logits.shape[1], ignore_index)
    z = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    ce = F.cross_entropy(z, y, reduction="none") * valid
    with torch.no_grad():
        correct = ((z.argmax(1) == y) & valid).to(z.dtype)
    return spec.plain(PlainInputs(z, y, valid, ce, correct), spec.param_at(step, total, q))
