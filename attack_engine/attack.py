"""Step-wise L∞ PGD and APGD for segmentation: one loop for all six attacks, one record per iteration.

The optimiser (step, projection, step-size control, best-iterate tracking) is separate from what each
attack changes (a per-pixel objective, :mod:`attack_engine.losses`).  The caller owns the loop::

    run = AttackRun(model, x, config=AttackConfig(attack="tsallis", steps=100))
    for rec in run:                 # one StepRecord per model evaluation; stop/resume at will
        print(rec.iteration, rec.acc)
    result = run.result             # per-image best iterate (lowest pixel accuracy)

``model`` maps an RGB batch in [0, 1] ``[B,3,H,W]`` to logits ``[B,C,H,W]`` (see ``attack_engine.models``).

APGD follows the paper's reference code (``aam-at/tsallis_pgd``, ``autopgd.py``; pinned by recorded fixtures in
``tests/test_apgd_reference.py``): stages (2ε, 1.5ε, ε) over (⌊0.3N⌋, ⌊0.3N⌋, rest) iterations, step size
2ε_stage halved at checkpoints (:func:`apgd_checkpoints`; never at a stage's first) when the control objective
(mean pixel CE) oscillates or stalls, momentum 0.75, q/λ schedules restarting per stage, the max-CE iterate
handed to the next stage, and the result being the per-image iterate of the last stage with the lowest pixel
accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn.functional as F

from attack_engine import threads
from attack_engine.images import sample_nearest
from attack_engine.losses import pixel_terms, plain_pixel_loss
from attack_engine.metrics import ConfusionCounter, accuracy_and_miou
from attack_engine.registry import get_attack
from attack_engine.schedules import Schedule, parse_schedule

Model = Callable[[torch.Tensor], torch.Tensor]
OPTIMIZERS = ("pgd", "apgd")
CONFIDENT = 0.9  # p_y threshold between "confident-correct" and "uncertain-correct" pixels
# Per-image gradient scaling: the image objective is multiplied by a detached positive factor so that the
# largest per-pixel |dL/dz| becomes 2^GRAD_LOG2 before it enters the model's (float32) backward pass. sign(grad)
# is unchanged; pixels whose gradient would underflow float32 (saturated pixels) keep a nonzero contribution.
GRAD_LOG2 = {torch.float16: 0.0}
GRAD_LOG2_DEFAULT = 64.0


@dataclass
class AttackConfig:
    """Everything that defines a run; ``AttackConfig(**cfg.to_dict())`` re-creates it.

    ``eps`` and ``step_size`` are in image units ([0, 1] scale).  ``step_size`` is PGD's fixed step
    (default ε/4); APGD sets its own (2ε per stage).  ``schedule`` is the Tsallis q-schedule text
    (default ``linear:-2:1``; a plain number is a fixed q).  ``ignore_index``: the label id that never counts;
    ``None`` (default) takes the model's (``model.info.ignore_index``, 255 for a bare callable) when the run starts.
    """

    attack: str = "tsallis"
    optimizer: str = "apgd"
    eps: float = 8 / 255
    steps: int = 100
    step_size: float | None = None
    schedule: str | None = None
    seed: int = 0
    random_start: bool = True
    multi_eps: bool = True
    targeted: bool = False
    ignore_index: int | None = None
    telemetry: bool = True
    numerics: str = "stable"  # "plain": textbook float32 objective, no gradient scaling (for comparison only)

    def __post_init__(self) -> None:
        if self.numerics not in ("stable", "plain"):
            raise ValueError(f"numerics must be 'stable' or 'plain', got {self.numerics!r}")
        get_attack(self.attack)  # ValueError naming the registered attacks
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose 'pgd' or 'apgd'")
        if not (isinstance(self.steps, int) and self.steps >= 1):
            raise ValueError(f"steps must be a positive integer, got {self.steps!r}")
        if not (math.isfinite(self.eps) and 0 <= self.eps <= 1):
            raise ValueError(f"eps must be in [0, 1] (image units, e.g. 8/255), got {self.eps!r}")
        if self.step_size is not None and not (math.isfinite(self.step_size) and 0 < self.step_size <= 1):
            raise ValueError(f"step_size must be in (0, 1], got {self.step_size!r}")
        if self.schedule is not None:
            self.schedule = parse_schedule(self.schedule).text()
        if self.ignore_index is not None and (isinstance(self.ignore_index, bool) or not isinstance(self.ignore_index, int)):
            raise ValueError(f"ignore_index must be a whole number or None, got {self.ignore_index!r}")

    @property
    def q_schedule(self) -> Schedule | None:
        """The schedule of the attack's parameter (``schedule`` or the attack's default); None if it takes none."""
        return get_attack(self.attack).schedule_of(self.schedule)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class StepRecord:
    """What a viewer needs about one model evaluation; tensors stay on the model's device.

    Per-image fields are ``[B]``; per-pixel maps ``[B,H,W]``.  Telemetry fields are ``None`` when
    ``AttackConfig.telemetry`` is off.
    """

    index: int  # record number (0 = start point)
    iteration: int  # gradient steps taken so far
    stage: int
    stage_step: int  # step within the stage (the schedule's position)
    stage_total: int
    eps: torch.Tensor  # [B] radius of this stage
    step_size: torch.Tensor  # [B] step size for the next step
    param: float | None  # q (tsallis) or λ (segpgd)
    loss: torch.Tensor  # [B] mean pixel objective of the attack
    ce: torch.Tensor  # [B] mean pixel CE (APGD: its control objective, float32 as in the reference)
    acc: torch.Tensor  # [B] pixel accuracy vs the labels (targeted: share of pixels at the target)
    miou: torch.Tensor  # [B]
    best_acc: torch.Tensor  # [B] best (lowest; targeted: highest) accuracy among eligible iterates, NaN if none yet
    best_index: torch.Tensor  # [B] record index of that iterate, -1 if none yet
    x_adv: torch.Tensor  # [B,3,H,W]
    pred: torch.Tensor  # [B,H,W]
    p_true: torch.Tensor | None = None  # [B,H,W] softmax probability of the label class
    weight: torch.Tensor | None = None  # [B,H,W] gradient weight relative to CE
    grad_logits: torch.Tensor | None = None  # [B,H,W] |dℓ_i/dz_i|
    log_grad_logits: torch.Tensor | None = None  # [B,H,W] natural log of |dℓ_i/dz_i|, finite where it underflows
    grad_input: torch.Tensor | None = None  # [B,H,W] sum over channels of |dL/dx|
    mass: torch.Tensor | None = None  # [B,3] gradient-mass share: confident-correct, uncertain-correct, wrong
    topk_cls: torch.Tensor | None = None  # [B,k,h,w] int32: the k most likely classes (AttackRun(record_topk=k, topk_hw))
    topk_p: torch.Tensor | None = None  # [B,k,h,w] float32: their softmax probabilities, most likely first
    log_p_true: torch.Tensor | None = None  # [B,H,W] log p_y (= -CE), exact where p_y underflows
    log_p_other: torch.Tensor | None = None  # [B,H,W] log(1 - p_y), exact where 1 - p_y rounds to 0
    log_ce_grad: torch.Tensor | None = None  # [B,H,W] log ||dCE/dz_i|| (-inf on ignored pixels): the q-lens input
    x_clean: torch.Tensor | None = field(default=None, repr=False)


@dataclass
class AttackResult:
    """Final outcome: ``x_adv`` is the per-image best iterate."""

    x_adv: torch.Tensor
    pred: torch.Tensor
    acc: torch.Tensor
    miou: torch.Tensor
    clean_acc: torch.Tensor
    clean_miou: torch.Tensor
    best_index: torch.Tensor
    records: int


def apgd_stages(steps: int, multi_eps: bool = True) -> list[tuple[float, int]]:
    """(ε multiplier, iterations) per stage: (2, ⌊0.3N⌋), (1.5, ⌊0.3N⌋), (1, rest); empty stages dropped."""
    if not multi_eps:
        return [(1.0, steps)]
    n1 = int(0.3 * steps)
    stages = [(2.0, n1), (1.5, n1), (1.0, steps - 2 * n1)]
    return [s for s in stages if s[1] > 0]


@dataclass(frozen=True)
class StepSizeRule:
    """APGD's checkpoint schedule and first-checkpoint behaviour.

    ``min_decrement``: the interval between checkpoints shrinks by ``max(⌊0.03 n⌋, min_decrement)``.
    ``halve_at_first``: whether the first checkpoint of a stage can halve (oscillation counted from the
    stage's start point); the reference never halves there.
    """

    name: str
    min_decrement: int
    halve_at_first: bool


REFERENCE_RULE = StepSizeRule("reference", min_decrement=1, halve_at_first=False)


def apgd_checkpoints(n: int, rule: StepSizeRule = REFERENCE_RULE) -> list[int]:
    """Iteration counts (1-based, within a stage of n) after which the step size may be halved.

    The reference's rule: the first after ``k = max(⌊0.22 n⌋, 1)`` iterations, then
    ``k <- max(k - max(⌊0.03 n⌋, 1), max(⌊0.06 n⌋, 1))``.
    """
    k = max(int(0.22 * n), 1)
    dec, kmin = max(int(0.03 * n), rule.min_decrement), max(int(0.06 * n), 1)
    out, pos = [], k
    while pos <= n:
        out.append(pos)
        k = max(k - dec, kmin)
        pos += k
    return out


def expected_records(cfg: AttackConfig) -> int:
    """Records (model evaluations) a run of ``cfg`` yields: steps + 1 for PGD, steps + one per stage for APGD."""
    if cfg.optimizer == "pgd":
        return cfg.steps + 1
    return cfg.steps + len(apgd_stages(cfg.steps, cfg.multi_eps))


def model_ignore_index(model: Model) -> int:
    """The label id a model's pixels are ignored at: its adapter's ``info.ignore_index``, 255 without one."""
    ii = getattr(getattr(model, "info", None), "ignore_index", None)
    return 255 if ii is None else int(ii)


_CONFIDENT_CE = -math.log(CONFIDENT)


def _mass_parts(gz: torch.Tensor, correct: torch.Tensor, conf: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``[B,3]`` sums of ``gz`` over confident-correct, uncertain-correct and wrong (valid) pixels.

    On CPU one weighted ``bincount`` over a per-pixel category (``gz`` is 0 on ignored pixels, which fall in the
    wrong bin); elsewhere masked sums (``bincount`` with weights is not deterministic on CUDA).
    """
    b = gz.shape[0]
    if gz.device.type != "cpu":
        masks = torch.stack([conf, correct ^ conf, valid ^ correct], 1)
        return (gz.unsqueeze(1) * masks).flatten(2).sum(2)
    dt = torch.uint8 if 3 * b <= 256 else torch.int64
    cat = conf.to(dt).add_(correct)  # 0 wrong or ignored, 1 uncertain-correct, 2 confident-correct
    if b > 1:
        cat.add_((torch.arange(b, device=gz.device) * 3).to(dt).view(b, 1, 1))
    counts = torch.bincount(cat.flatten(), weights=gz.flatten(), minlength=3 * b)
    return counts.view(b, 3).flip(1)


def gradient_log_scale(log_grad: torch.Tensor, logits_dtype: torch.dtype) -> tuple[torch.Tensor, float]:
    """``(log scale [B], log N)``: the per-image factor (see ``GRAD_LOG2``) that lifts the largest per-pixel
    ``|d mean(ℓ) / dz|`` (``log_grad`` ``[B,H,W]`` is per pixel, before the mean's ``1/N``) to ``2^GRAD_LOG2``; 0
    (scale 1) where no pixel has a finite gradient."""
    log_n = math.log(log_grad[0].numel())
    top = log_grad.flatten(1).amax(1)  # + log(1/N): the mean's factor
    target = GRAD_LOG2.get(logits_dtype, GRAD_LOG2_DEFAULT) * math.log(2.0) + log_n
    return (target - top).nan_to_num_(0.0, 0.0, 0.0).clamp_(-700, 700), log_n


def _per_image(t: torch.Tensor) -> torch.Tensor:
    return t.view(-1, *([1] * 3))


def _keep_where(take: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Per image ``new`` where ``take`` else ``old``; on CPU the whole tensor itself when all or none are taken
    (no copy: the engine never writes into an iterate or a gradient)."""
    if new.device.type == "cpu":
        if bool(take.all()):
            return new
        if not bool(take.any()):
            return old
    return torch.where(_per_image(take), new, old)


class _BestIterate:
    """Per-image best iterate by attack success (ties go to the later iterate), with its accuracy and prediction."""

    def __init__(self, x: torch.Tensor, pred: torch.Tensor) -> None:
        b, dev = x.shape[0], x.device
        self.success = torch.full((b,), -math.inf, device=dev)
        self.acc = torch.full((b,), math.nan, device=dev)
        self.index = torch.full((b,), -1, dtype=torch.long, device=dev)
        self.x, self.pred = x.clone(), pred.clone()

    def update(self, success: torch.Tensor, acc: torch.Tensor, index: int, x: torch.Tensor, pred: torch.Tensor) -> None:
        better = success >= self.success
        self.success = torch.where(better, success, self.success)
        self.acc = torch.where(better, acc, self.acc)
        self.index = torch.where(better, torch.full_like(self.index, index), self.index)
        if x.device.type == "cpu" and bool(better.all()):  # the usual case (batch 1): keep x itself, no copy
            self.x, self.pred = x, pred
        elif x.device.type != "cpu" or bool(better.any()):  # (the engine never writes into an iterate or prediction)
            self.x = torch.where(_per_image(better), x, self.x)
            self.pred = torch.where(better.view(-1, 1, 1), pred, self.pred)


class AttackRun:
    """One attack on a batch; iterate it for :class:`StepRecord` s, read ``result`` when done.

    Args:
        model: RGB [0, 1] ``[B,3,H,W]`` -> logits ``[B,C,H,W]``, differentiable w.r.t. the input.
        x: clean images ``[B,3,H,W]`` in [0, 1].
        labels: ``[B,H,W]`` ground truth; ``None`` uses the clean prediction (untargeted).
        config: :class:`AttackConfig`; ``run.cfg`` is a copy with the ignore index resolved (the config's, else
            :func:`model_ignore_index`).
        eps: optional per-image radii ``[B]`` overriding ``config.eps``.
        target: targeted mode: class id (int) or ``[B,H,W]`` target labels (``ignore_index`` = leave alone).
        region: targeted mode: optional bool mask ``[B,H,W]`` of the pixels to push to ``target``.
        noise_seeds: optional one seed per image for the random start (each image's noise then depends on its own
            seed only, not on the batch it is in); default: one generator seeded by ``config.seed`` for the batch.
        x_init: optional start point ``[B,3,H,W]`` replacing the random start (projected onto the first ball, as
            the reference's ``xstart``); for reproducing another implementation's run from the same start.
        step_rule: APGD's step-size rule; :data:`REFERENCE_RULE` (the paper's code) unless comparing variants.
        record_topk: put the ``k`` most likely classes of each pixel and their softmax probabilities on every
            record (``StepRecord.topk_cls`` / ``topk_p``; ``k`` is capped at the class count), e.g. for a viewer's
            per-pixel probe; 0 (default): none.
        topk_hw: the grid those are taken on: the pixels nearest to the centres of an ``(h, w)`` grid
            (:func:`attack_engine.images.sample_nearest`); default the full resolution.  A small grid is cheap:
            top-k over every pixel of a many-class model costs about as much on a CPU as its softmax, per record.
    """

    def __init__(
        self,
        model: Model,
        x: torch.Tensor,
        labels: torch.Tensor | None = None,
        config: AttackConfig | None = None,
        *,
        eps: torch.Tensor | None = None,
        target: int | torch.Tensor | None = None,
        region: torch.Tensor | None = None,
        noise_seeds: list[int] | None = None,
        x_init: torch.Tensor | None = None,
        step_rule: StepSizeRule = REFERENCE_RULE,
        record_topk: int = 0,
        topk_hw: tuple[int, int] | None = None,
    ) -> None:
        self.model = model
        cfg = config or AttackConfig()
        self.cfg = cfg if cfg.ignore_index is not None else replace(cfg, ignore_index=model_ignore_index(model))
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"x must be [B,3,H,W], got {tuple(x.shape)}")
        if noise_seeds is not None and len(noise_seeds) != x.shape[0]:
            raise ValueError("need one noise seed per image")
        self.noise_seeds = None if noise_seeds is None else [int(s) for s in noise_seeds]
        if isinstance(record_topk, bool) or not isinstance(record_topk, int) or record_topk < 0:
            raise ValueError(f"record_topk must be a whole number >= 0, got {record_topk!r}")
        self._topk: tuple[torch.Tensor, torch.Tensor] | None = None  # the latest evaluation's (record_topk only)
        self.topk_hw = None if topk_hw is None else (int(topk_hw[0]), int(topk_hw[1]))
        if self.topk_hw is not None and min(self.topk_hw) < 1:
            raise ValueError(f"topk_hw must be two sizes >= 1, got {topk_hw!r}")
        if not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise ValueError("x must be finite and within [0, 1]")
        self.x0 = x.detach()
        b = x.shape[0]
        if x_init is not None and (x_init.shape != x.shape or not torch.isfinite(x_init).all()):
            raise ValueError(f"x_init must be finite with the shape of x {tuple(x.shape)}")
        self.x_init = None if x_init is None else x_init.detach().to(x.device, x.dtype)
        if not isinstance(step_rule, StepSizeRule):
            raise ValueError("step_rule must be a StepSizeRule (e.g. attack_engine.attack.REFERENCE_RULE)")
        self.step_rule = step_rule
        with torch.no_grad():
            clean_logits = model(self.x0)
        self.num_classes = clean_logits.shape[1]
        self.record_topk = min(record_topk, self.num_classes)
        self.clean_pred = clean_logits.argmax(1)
        self.clean_logits = clean_logits
        ii = self.cfg.ignore_index
        if labels is None:
            labels = self.clean_pred.clone()
        elif labels.shape != self.clean_pred.shape:
            raise ValueError(f"labels must be [B,H,W] = {tuple(self.clean_pred.shape)}, got {tuple(labels.shape)}")
        self.labels = labels.to(x.device).long()
        self.attack_labels = self.labels
        if self.cfg.targeted:
            if target is None:
                raise ValueError("targeted mode needs a target class or target label map")
            if isinstance(target, int):
                if not 0 <= target < self.num_classes:
                    raise ValueError(f"target class {target} is outside [0, {self.num_classes})")
                tl = torch.full_like(self.labels, target)
            else:
                tl = target.to(x.device).long()
            if region is not None:
                tl = torch.where(region.to(x.device).bool(), tl, torch.full_like(tl, ii))
            self.attack_labels = tl
        self.sign = -1.0 if self.cfg.targeted else 1.0
        e = torch.full((b,), float(self.cfg.eps), device=x.device) if eps is None else eps.to(x.device).float()
        if e.shape != (b,):
            raise ValueError(f"per-image eps must have shape [{b}]")
        self.eps = e
        self._confusion = ConfusionCounter(self.attack_labels, self.num_classes, ii)
        self.clean_acc, self.clean_miou = self._metrics(self.clean_pred)
        self.records = 0
        self._workspace: dict = {}  # pixel_terms' reusable buffers (each evaluation's backward runs before the next)
        self._control_labels: torch.Tensor | None = None  # APGD's control objective's labels (kept: they never change)
        self._lean_cpu = x.device.type == "cpu"  # the engine's own ops on one thread (attack_engine.threads)
        self.result: AttackResult | None = None

    # -- helpers -------------------------------------------------------------------------------------
    def _metrics(self, pred: torch.Tensor, in_range: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixel accuracy and mIoU of ``pred`` (``in_range``: an argmax of this run's logits, int64)."""
        acc, miou = accuracy_and_miou(self._confusion(pred, in_range))
        return acc.float(), miou.float()

    def _top_classes(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The ``record_topk`` most likely classes per pixel and their softmax probabilities (None when off)."""
        if not self.record_topk:
            return None
        with torch.no_grad():
            z = logits.detach() if self.topk_hw is None else sample_nearest(logits.detach(), self.topk_hw)
            top = torch.softmax(z.float(), 1).topk(self.record_topk, dim=1)
        return top.indices.to(torch.int32), top.values

    def _project(self, x: torch.Tensor, eps: torch.Tensor, owned: bool = False) -> torch.Tensor:
        """``x0 + clip(clip(x, 0, 1) - x0, -eps, eps)`` (in this order: the reference's arithmetic); ``owned``: ``x``
        is a temporary of the caller's and is overwritten (no new tensor)."""
        e = _per_image(eps)
        v = (x.clamp_(0.0, 1.0) if owned else x.clamp(0.0, 1.0)).sub_(self.x0)
        return torch.maximum(torch.minimum(v, e, out=v), -e, out=v).add_(self.x0)

    def _step(self, x: torch.Tensor, eta: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """``x + eta * sign(grad)`` as a new tensor (exact: the product is ±eta or 0)."""
        s = grad.sign()
        return torch.addcmul(x, _per_image(eta), s, out=s)

    def _momentum(self, x: torch.Tensor, x1: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """APGD's ``x + 0.75 (x1 - x) + 0.25 d``, written into the temporaries ``x1`` and ``d`` (same arithmetic)."""
        return x1.sub_(x).mul_(0.75).add_(x).add_(d.mul_(0.25))

    def _control_objective(self, logits: torch.Tensor, terms) -> torch.Tensor:
        """APGD's control objective as the reference computes it: ``F.cross_entropy`` in the logits' dtype (float32
        for half types), mean over all pixels (ignored ones count 0), per image; negated for targeted runs.

        Not our float64 CE: late in a stage the objective moves by float32 rounding steps, and whether it "stalled"
        (condition 2 of the step-size rule) depends on exactly that arithmetic.
        """
        z = logits.detach()
        z = z if z.dtype in (torch.float32, torch.float64) else z.float()
        labels = self._control_labels
        if labels is None:  # the run's labels with every ignored pixel (terms.valid depends on them only) at the index
            ii = self.cfg.ignore_index
            labels = self._control_labels = torch.where(terms.valid, self.attack_labels,
                                                        torch.full_like(self.attack_labels, ii))
        ce = F.cross_entropy(z, labels, ignore_index=self.cfg.ignore_index, reduction="none")
        return self.sign * ce.flatten(1).mean(1)

    def _evaluate(self, x: torch.Tensor, step: int, total: int, last: bool = False, control: bool = False):
        """One forward + backward at ``x``: gradient, the per-pixel terms and per-image scalars.

        ``last``: no step follows this evaluation, so with telemetry off (where no record shows the gradient) the
        backward pass is skipped and ``grad`` is None.  ``control``: also return APGD's control objective (else None).
        """
        cfg = self.cfg
        if last and not cfg.telemetry:
            with torch.no_grad():
                x = x.detach()
                with threads.full():
                    logits = self.model(x)
                self._topk = self._top_classes(logits)
                terms = pixel_terms(
                    cfg.attack, logits, self.attack_labels, step=step, total=total,
                    q=cfg.q_schedule, ignore_index=cfg.ignore_index,
                    with_grad_norm=False, workspace=self._workspace,
                )
                loss_img = terms.loss.flatten(1).mean(1)
                ctrl = self._control_objective(logits, terms) if control else None
            return None, None, terms, loss_img, x, ctrl
        x = x.detach().requires_grad_(True)
        with threads.full():
            logits = self.model(x)
        self._topk = self._top_classes(logits)
        with torch.no_grad():  # the objective's gradient is formed in closed form (PixelTerms.logit_grad)
            terms = pixel_terms(
                cfg.attack, logits, self.attack_labels, step=step, total=total,
                q=cfg.q_schedule, ignore_index=cfg.ignore_index,
                with_grad_norm=cfg.telemetry, workspace=self._workspace,
            )
            ctrl = self._control_objective(logits, terms) if control else None
            loss_img = terms.loss.flatten(1).mean(1)
        if cfg.numerics == "plain":
            plain = plain_pixel_loss(cfg.attack, logits, self.attack_labels, step=step, total=total,
                                     q=cfg.q_schedule,
                                     ignore_index=cfg.ignore_index).flatten(1).mean(1)
            with threads.full():
                (grad,) = torch.autograd.grad((self.sign * plain).sum(), x)
            return grad.detach(), torch.ones_like(plain).double(), terms, loss_img, x.detach(), ctrl
        with torch.no_grad():
            log_scale, log_n = gradient_log_scale(terms.log_grad, logits.dtype)
            grad_z = terms.logit_grad(log_scale - log_n, self.sign)  # of sign * scale * loss_img
        with threads.full():
            (grad,) = torch.autograd.grad(logits, x, grad_z)
        grad = grad.nan_to_num_(nan=0.0)  # guard: an overflow in the model's backward must not poison x
        return grad.detach(), torch.exp(log_scale), terms, loss_img, x.detach(), ctrl

    def _record(self, x, grad, scale, terms, loss_img, acc, miou, *, index, iteration, stage, stage_step, stage_total,
                eps, eta, best_acc, best_index, ce: torch.Tensor | None = None) -> StepRecord:
        ce_img = terms.ce.flatten(1).mean(1) if ce is None else ce
        rec = StepRecord(
            index=index, iteration=iteration, stage=stage, stage_step=stage_step, stage_total=stage_total,
            eps=eps.clone(), step_size=eta.clone(), param=terms.param, loss=loss_img.float(), ce=ce_img.float(),
            acc=acc, miou=miou, best_acc=best_acc.clone(), best_index=best_index.clone(), x_adv=x, pred=terms.pred,
            x_clean=self.x0,
        )
        if self._topk is not None:
            rec.topk_cls, rec.topk_p = self._topk
        if self.cfg.telemetry:
            self._telemetry(rec, terms, grad, scale)
        return rec

    def _telemetry(self, rec: StepRecord, terms, grad: torch.Tensor, scale: torch.Tensor) -> None:
        """The per-pixel maps and gradient-mass shares of a telemetry record (float32)."""
        gz = terms.weight * terms.ce_grad_norm
        conf = (terms.ce <= _CONFIDENT_CE) & terms.valid  # p_y >= CONFIDENT > 1/2: also correct
        parts = _mass_parts(gz, terms.correct, conf, terms.valid)
        total = parts.sum(1, keepdim=True)
        rec.log_p_true = terms.ce.float().neg_()
        rec.p_true = torch.exp(rec.log_p_true)
        rec.weight = terms.weight.float()
        rec.grad_logits = gz.float()
        rec.log_grad_logits = terms.log_grad.float()
        rec.grad_input = (grad.abs().sum(1).double() / _per_image(scale)[:, 0]).float()
        rec.mass = (parts / total.where(total > 0, torch.ones_like(total))).float()
        rec.log_p_other = terms.log_rest.float()
        rec.log_ce_grad = terms.log_ce_grad.float()

    def _success(self, acc: torch.Tensor) -> torch.Tensor:
        """Higher is better for the attacker: 1 - acc (untargeted) or acc (targeted); NaN -> worst."""
        s = acc if self.cfg.targeted else 1.0 - acc
        return torch.nan_to_num(s, nan=-1.0)

    def _random_start(self, radius: torch.Tensor) -> torch.Tensor:
        if not self.cfg.random_start:
            return self.x0.clone()
        if self.noise_seeds is not None:  # per image: the noise of row i depends on noise_seeds[i] only
            shape = self.x0.shape[1:]
            u = torch.stack([torch.rand(shape, generator=torch.Generator().manual_seed(s), dtype=torch.float32)
                             for s in self.noise_seeds]).to(self.x0.device, self.x0.dtype)
            return (self.x0 + (2 * u - 1) * _per_image(radius)).clamp(0.0, 1.0)
        gen = torch.Generator(device="cpu").manual_seed(int(self.cfg.seed))
        u = torch.rand(self.x0.shape, generator=gen, dtype=torch.float32).to(self.x0.device, self.x0.dtype)
        return (self.x0 + (2 * u - 1) * _per_image(radius)).clamp(0.0, 1.0)

    # -- the loops -----------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[StepRecord]:
        if self.result is not None or self.records:
            raise RuntimeError("an AttackRun can be iterated once; create a new one to re-run (same seed = same result)")
        gen = self._pgd() if self.cfg.optimizer == "pgd" else self._apgd()
        # everything the loop computes between two records runs with the engine's thread setting (on CPU:
        # attack_engine.threads; the model's calls restore the pool), and the caller's is back at every yield
        while True:
            with threads.lean(self._lean_cpu):
                rec = next(gen, None)
            if rec is None:
                return
            yield rec

    def run(self, progress: bool = False) -> AttackResult:
        """Consume the whole run (optionally with a tqdm bar) and return the result."""
        from tqdm import tqdm

        for _ in tqdm(self, total=self.expected_records(), desc=f"{self.cfg.attack}/{self.cfg.optimizer}", unit="it",
                      disable=not progress):
            pass
        assert self.result is not None
        return self.result

    def expected_records(self) -> int:
        """How many records iterating this run yields (see :func:`expected_records`)."""
        return expected_records(self.cfg)

    def _finish(self, best: _BestIterate) -> None:
        """The result from the best iterate and the prediction recorded when it was evaluated (no extra forward)."""
        self._workspace.clear()
        acc, miou = self._metrics(best.pred)
        self.result = AttackResult(best.x, best.pred, acc, miou, self.clean_acc, self.clean_miou, best.index,
                                   self.records)

    def _pgd(self) -> Iterator[StepRecord]:
        cfg = self.cfg
        n = cfg.steps
        eta = torch.full_like(self.eps, cfg.step_size) if cfg.step_size is not None else self.eps / 4
        x = self._random_start(self.eps) if self.x_init is None else self._project(self.x_init, self.eps)
        best = _BestIterate(x, self.clean_pred)
        for i in range(n + 1):
            grad, scale, terms, loss_img, x, _ = self._evaluate(x, i, n, last=i == n)
            acc, miou = self._metrics(terms.pred, in_range=True)
            best.update(self._success(acc), acc, self.records, x, terms.pred)
            yield self._record(x, grad, scale, terms, loss_img, acc, miou, index=self.records, iteration=i, stage=0, stage_step=i,
                               stage_total=n, eps=self.eps, eta=eta, best_acc=best.acc, best_index=best.index)
            self.records += 1
            if i < n:
                x = self._project(self._step(x, eta, grad), self.eps, owned=True)
        self._finish(best)

    def _apgd(self) -> Iterator[StepRecord]:
        cfg = self.cfg
        stages = apgd_stages(cfg.steps, cfg.multi_eps)
        x = self._random_start(self.eps * stages[0][0]) if self.x_init is None else self.x_init.clone()
        iteration = 0
        best = _BestIterate(x, self.clean_pred)  # only the last stage (radius ε) is eligible
        for si, (mult, n) in enumerate(stages):
            last = si == len(stages) - 1
            eps = self.eps * mult
            x = self._project(x, eps)
            grad, scale, terms, loss_img, x, obj = self._evaluate(x, 0, n, control=True)
            ctl = _StepControl(2 * eps, obj, n, self.step_rule)
            best_obj, x_best_obj, g_best = obj.clone(), x.clone(), grad.clone()
            acc, miou = self._metrics(terms.pred, in_range=True)
            if last:
                best.update(self._success(acc), acc, self.records, x, terms.pred)
            yield self._record(x, grad, scale, terms, loss_img, acc, miou, index=self.records, iteration=iteration, stage=si,
                               stage_step=0, stage_total=n, eps=eps, eta=ctl.eta, best_acc=best.acc,
                               best_index=best.index, ce=self.sign * obj)
            self.records += 1
            x_prev = x
            for i in range(n):
                d = x - x_prev
                x_prev = x
                x1 = self._project(self._step(x, ctl.eta, grad), eps, owned=True)
                if i > 0:
                    x1 = self._project(self._momentum(x, x1, d), eps, owned=True)
                grad, scale, terms, loss_img, x, obj = self._evaluate(x1, i + 1, n, last=i == n - 1, control=True)
                iteration += 1
                ctl.observe(obj)
                up = obj >= best_obj  # ties go to the later iterate
                best_obj = torch.where(up, obj, best_obj)
                x_best_obj = _keep_where(up, x, x_best_obj)
                if grad is not None:  # None after the stage's last evaluation (telemetry off): no step follows
                    g_best = _keep_where(up, grad, g_best)
                acc, miou = self._metrics(terms.pred, in_range=True)
                if last:
                    best.update(self._success(acc), acc, self.records, x, terms.pred)
                rec = self._record(x, grad, scale, terms, loss_img, acc, miou, index=self.records, iteration=iteration, stage=si,
                                   stage_step=i + 1, stage_total=n, eps=eps, eta=ctl.eta, best_acc=best.acc,
                                   best_index=best.index, ce=self.sign * obj)
                halve = ctl.checkpoint(i + 1, best_obj)
                if halve is not None:  # jump back to the best-objective iterate and its gradient where halved
                    x = torch.where(_per_image(halve), x_best_obj, x)
                    if grad is not None:
                        grad = torch.where(_per_image(halve), g_best, grad)
                    rec.step_size = ctl.eta.clone()
                yield rec
                self.records += 1
            if not last:
                x = self._project(x_best_obj, eps)  # as the reference: the stage returns its max-objective iterate
        self._finish(best)


class _StepControl:
    """APGD's per-image step size for one stage: halved at checkpoints where the objective oscillates or stalls.

    Condition 1 (oscillation): at most ρ·k = 0.75 k of the k objective changes since the last checkpoint were
    increases; at the first checkpoint that window would reach back before the stage's first step, and the
    reference then reports no oscillation (``rule.halve_at_first`` = False).  Condition 2 (stall): not halved at
    the last checkpoint and the best objective did not improve since; it starts off.
    """

    def __init__(self, eta: torch.Tensor, obj0: torch.Tensor, n: int, rule: StepSizeRule) -> None:
        self.eta = eta
        self.rule = rule
        self.checkpoints = set(apgd_checkpoints(n, rule))
        self.obj_prev = obj0
        self.n_incr = torch.zeros_like(obj0)
        self.reduced_last = torch.ones_like(obj0, dtype=torch.bool)
        self.obj_last_check = obj0.clone()  # unused until condition 2 can fire (after the first checkpoint)
        self.k_prev = 0

    def observe(self, obj: torch.Tensor) -> None:
        """Count an increase of the objective after one step."""
        self.n_incr += (obj > self.obj_prev).to(self.n_incr.dtype)
        self.obj_prev = obj

    def checkpoint(self, done: int, best_obj: torch.Tensor) -> torch.Tensor | None:
        """After ``done`` steps of the stage: the per-image halving mask at a checkpoint (eta updated), else None."""
        if done not in self.checkpoints:
            return None
        k, first = done - self.k_prev, self.k_prev == 0
        self.k_prev = done
        if first and not self.rule.halve_at_first:
            oscillating = torch.zeros_like(self.reduced_last)
        else:
            oscillating = self.n_incr <= 0.75 * k
        stalled = (~self.reduced_last) & (self.obj_last_check >= best_obj)
        halve = oscillating | stalled
        self.reduced_last = halve
        self.obj_last_check = best_obj.clone()
        self.n_incr.zero_()
        self.eta = torch.where(halve, self.eta / 2, self.eta)
        return halve


def run_attack(model: Model, x: torch.Tensor, labels: torch.Tensor | None = None, **config) -> AttackResult:
    """Run a whole attack; ``config`` are :class:`AttackConfig` fields.

    Example:
        >>> result = run_attack(model, x, attack="tsallis", steps=100, eps=8/255)
        >>> result.acc, result.clean_acc
    """
    return AttackRun(model, x, labels, AttackConfig(**config)).run()
