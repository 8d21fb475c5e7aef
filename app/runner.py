"""Wiring between the UI's inputs and :mod:`attack_engine`: prepare an image, start a run, record it.

Nothing here computes attack maths; it resizes the input per the engine's resize policy, builds an
:class:`~attack_engine.AttackRun` and copies each :class:`~attack_engine.StepRecord` into a
:class:`~app.trajectory.Trajectory`.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from app import limits as lm
from app.panels import recorders as panel_recorders
from app.trajectory import RunInfo, Trajectory, probe_grid, probe_topk
from attack_engine import AttackConfig, AttackRun, determinism, threads
from attack_engine.attack import apgd_stages
from attack_engine.images import ImageError, load_mask, model_size, read_image, resize_image, resize_labels, to_tensor
from attack_engine.models import SegModel, load_model
from attack_engine.registry import takes_schedule
from attack_engine.runfile import read_run
from attack_engine.schedules import ScheduleError, parse_schedule


class InputError(ValueError):
    """A user input problem; the message is shown in the app."""


@dataclass
class Prepared:
    """The attack's input at model resolution: ``image`` uint8 ``H×W×3``, ``labels`` or ``None``."""

    image: np.ndarray
    labels: np.ndarray | None
    source: str  # example id or "upload"
    model_id: str
    source_hw: tuple[int, int] | None = None  # size of the original image (display aspect)
    notes: tuple[str, ...] = ()  # what loading changed (downscaled, grayscale, first frame, ...)

    @property
    def digest(self) -> str:
        h = hashlib.sha256(self.image.tobytes())
        if self.labels is not None:
            h.update(self.labels.astype(np.int64).tobytes())
        return h.hexdigest()[:16]


def _number(name: str, v, lo: float, hi: float, whole: bool = False) -> float:
    """A finite number within [lo, hi] (a whole number if asked) or an :class:`InputError` naming it."""
    if isinstance(v, bool) or v is None:
        raise InputError(f"{name} must be a number, got {v!r}")
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {str(v)[:40]!r}") from None
    if not math.isfinite(f):
        raise InputError(f"{name} must be a finite number, got {v}")
    if not lo <= f <= hi:
        raise InputError(f"{name} must be between {lo:g} and {hi:g}, got {f:g}")
    if whole and f != int(f):
        raise InputError(f"{name} must be a whole number, got {f:g}")
    return f


def check_schedule(text: str | None, steps: int) -> str | None:
    """Canonical schedule text; malformed texts and q outside :data:`app.limits.Q_RANGE` raise InputError."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise InputError(f"the q-schedule must be text like 'linear:-2:1', got {type(text).__name__}")
    if len(text) > lm.MAX_TEXT:
        raise InputError(f"the q-schedule text is {len(text)} characters long; at most {lm.MAX_TEXT} are accepted")
    try:
        sched = parse_schedule(text)
    except ScheduleError as e:
        raise InputError(str(e)) from None
    lo, hi = lm.Q_RANGE
    qs = sched.values(max(1, steps))
    if sched.kind == "points":
        qs += [q for _, q in sched.points]
    bad = [q for q in qs if not (math.isfinite(q) and lo <= q <= hi)]
    if bad:
        raise InputError(f"schedule {sched.text()!r} reaches q = {bad[0]:.4g}; q must stay within [{lo:g}, {hi:g}]")
    return sched.text()


def make_config(attack: str, optimizer: str, eps255: float, steps: int, alpha255: float | None, seed: int,
                schedule: str | None, limits: lm.Limits | None = None) -> AttackConfig:
    """UI values (ε and step size in /255; step size 0/None = default) -> :class:`AttackConfig`.

    Every value is checked (finite, in range, whole where it must be) and a problem raises one
    :class:`InputError` naming the control.
    """
    lim = limits or lm.get_limits()
    steps = int(_number("Steps", steps, 1, lim.max_steps, whole=True))
    eps = _number("ε (/255)", eps255, lm.MIN_EPS255, lm.MAX_EPS255)
    alpha = 0.0 if alpha255 is None else _number("PGD step size (/255)", alpha255, 0, lm.MAX_ALPHA255)
    seed = int(_number("Seed", seed, 0, lm.MAX_SEED, whole=True))
    if not isinstance(attack, str) or not isinstance(optimizer, str):
        raise InputError("attack and optimiser must be names")
    alpha = None if not alpha or optimizer == "apgd" else alpha / 255.0
    if isinstance(schedule, str) and len(schedule) > lm.MAX_TEXT:
        raise InputError(f"the q-schedule text is {len(schedule)} characters long; at most {lm.MAX_TEXT} are accepted")
    sched = (schedule or "").strip() if isinstance(schedule, str) else schedule
    sched = check_schedule(sched, steps) if takes_schedule(attack) and sched else None
    try:
        return AttackConfig(attack=attack, optimizer=optimizer, eps=eps / 255.0, steps=steps,
                            step_size=alpha, schedule=sched, seed=seed)
    except ValueError as e:
        raise InputError(str(e)) from None


def prepare(image, mask, model: SegModel, source: str = "upload", limits: lm.Limits | None = None) -> Prepared:
    """Any image (+ optional class-id mask) -> model-resolution uint8 image and int labels.

    The resized image is quantised to uint8 so the attack's clean input is exactly what a run card stores.
    Unusable inputs raise one :class:`InputError`; what loading changed is in ``Prepared.notes``.
    """
    lim = limits or lm.get_limits()
    if image is None:
        raise InputError("pick an example or upload an image first")
    info = model.info
    if source == "upload":  # decoded first in a sandbox with a time and memory limit (app.decode)
        from app.decode import check_upload

        for what, src in (("image", image), ("mask", mask)):
            try:
                check_upload(src, lim)
            except ImageError as e:
                raise InputError(f"{what}: {e}") from None
    try:
        loaded = read_image(image, max_pixels=lim.max_pixels, max_side=lim.max_side, min_side=lm.MIN_SIDE,
                            max_aspect=lm.MAX_ASPECT)
    except ImageError as e:
        raise InputError(f"image: {e}") from None
    img = loaded.array
    try:
        lab = None if mask is None else load_mask(mask, info.num_classes, info.ignore_index, max_pixels=lim.max_pixels)
    except ImageError as e:
        raise InputError(f"mask: {e}") from None
    hw = model_size(img.shape[:2], info.input_size, info.size_multiple, max_side=lim.max_side)
    x = resize_image(to_tensor(img), hw)
    x8 = (x[0].permute(1, 2, 0).numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
    labels = None
    if lab is not None:
        sh, sw = loaded.source_hw
        if lab.shape != (sh, sw):
            raise InputError(f"mask is {lab.shape[1]}×{lab.shape[0]} but the image is {sw}×{sh}: the mask must have "
                             "the image's size (one class id per pixel)")
        valid = (lab != info.ignore_index)
        if not valid.any():
            raise InputError(f"mask has no labelled pixel (every pixel is the ignore id {info.ignore_index})")
        labels = resize_labels(torch.from_numpy(lab)[None], hw)[0].numpy()
        if not (labels != info.ignore_index).any():
            raise InputError("mask's labelled pixels vanish at the model's input size; label a larger area")
    return Prepared(x8, labels, source, info.id, tuple(img.shape[:2]), tuple(loaded.notes))


def model_input(prep: Prepared) -> torch.Tensor:
    """The prepared 8-bit image as the model's ``[1,3,H,W]`` float input in [0, 1], for the preview and the run alike.

    Equal in value to ``images.to_tensor(prep.image)`` but not in memory order: ``prep.image`` is a view of a
    channels-first array, so this is a plain NCHW tensor, where ``to_tensor``'s contiguous copy gives a channels-last
    one, on which the convolutions round differently.  The shipped runs and run cards were recorded with this one.
    """
    return torch.from_numpy(prep.image).permute(2, 0, 1)[None].float().div(255.0)


def clean_preview(model: SegModel, prep: Prepared) -> Trajectory:
    """The prepared input and the model's clean prediction as a record-less (light) :class:`Trajectory`: what the
    static panels draw before a run (an upload is shown with its clean prediction at once)."""
    with torch.no_grad():  # the model's own forward: its device, dtype / autocast and the resize to the input
        pred = model(model_input(prep)).argmax(1)[0].cpu().numpy()
    info = model.info
    rinfo = RunInfo(model_id=info.id, class_names=list(info.class_names), palette=[list(c) for c in info.palette],
                    config={}, ignore_index=info.ignore_index, source=prep.source, has_gt=prep.labels is not None,
                    model_hw=tuple(prep.image.shape[:2]),
                    extra={"source_hw": list(prep.source_hw or prep.image.shape[:2])})
    labels = prep.labels if prep.labels is not None else pred
    return Trajectory(rinfo, prep.image, labels, pred, light=True)


class LiveRun:
    """A started attack whose records land in ``traj`` one :meth:`step` at a time."""

    def __init__(self, model: SegModel, prep: Prepared, cfg: AttackConfig, light: bool = False,
                 map_side: int | None = None, device: str | torch.device | None = None,
                 target: int | None = None) -> None:
        self.cfg = cfg
        self.prep = prep
        x = model_input(prep)
        labels = None if prep.labels is None else torch.from_numpy(prep.labels)[None].long()
        device = device if device is not None else getattr(model, "device", None)  # the model's, by default
        if device is not None:
            x = x.to(device)
            labels = None if labels is None else labels.to(device)
        self.run: AttackRun | None = AttackRun(model, x, labels, cfg, target=target,
                                               record_topk=0 if light else probe_topk(model.info.num_classes),
                                               topk_hw=probe_grid(tuple(x.shape[-2:]), map_side))
        mult = max(m for m, _ in apgd_stages(cfg.steps, cfg.multi_eps)) if cfg.optimizer == "apgd" else 1.0
        info = model.info
        rinfo = RunInfo(
            model_id=info.id, class_names=list(info.class_names), palette=[list(c) for c in info.palette],
            config=self.run.cfg.to_dict(), ignore_index=self.run.cfg.ignore_index, source=prep.source, has_gt=prep.labels is not None,
            model_hw=tuple(prep.image.shape[:2]), expected_records=self.run.expected_records(),
            clean_acc=float(self.run.clean_acc[0]), clean_miou=float(self.run.clean_miou[0]),
            dmax=float(cfg.eps) * mult, extra={"source_hw": list(prep.source_hw or prep.image.shape[:2]),
                                               "device": str(x.device), "compute": determinism.fingerprint(),
                                               **({} if target is None else {"target_class": int(target)})},
        )
        self.traj = Trajectory(rinfo, prep.image, self.run.labels[0].cpu().numpy(),
                               self.run.clean_pred[0].cpu().numpy(), light=light, map_side=map_side,
                               recorders=panel_recorders())
        self._it: Iterator | None = iter(self.run)
        self.lock = threading.RLock()  # held while a record is added: readers (views) take it to see whole records

    @property
    def done(self) -> bool:
        return self._it is None

    def step(self) -> bool:
        """Compute and record one more record; False when the run had already finished."""
        if self._it is None:
            return False
        try:
            rec = next(self._it)
        except StopIteration:
            self._finish()
            return False
        with self.lock, threads.lean():  # (one thread for its small ops when OpenMP workers sleep)
            self.traj.append(rec)
        if len(self.traj) >= self.traj.info.expected_records:
            # run the generator's tail (best-iterate bookkeeping) so `result` exists
            for _ in self._it:
                pass
            self._finish()
        return True

    def _finish(self) -> None:
        with self.lock:
            self._finish_locked()

    def _finish_locked(self) -> None:
        self._it = None
        self.traj.finished = True
        res = self.run.result if self.run is not None else None
        if res is not None:
            self.traj.info.extra.update(result_acc=float(res.acc[0]), result_miou=float(res.miou[0]),
                                        result_best_index=int(res.best_index[0]))
        self.run = None  # the attack's tensors are not needed any more: memory goes back

    def run_all(self) -> Trajectory:
        while self.step():
            pass
        return self.traj


def start_run(model_id: str, image, mask, cfg: AttackConfig, source: str = "upload", light: bool = False,
              device: str = "cpu") -> LiveRun:
    """Load the model (cached by the registry) on ``device``, prepare the input and start a :class:`LiveRun`."""
    model = load_model(model_id, device=device)
    return LiveRun(model, prepare(image, mask, model, source), cfg, light=light)


def rerun_card(card: dict | str | Path, records: int | None = None) -> Trajectory:
    """Run a run file again (the app's run card or the CLI's ``attack --out``) on its exact input with its model.

    ``records`` limits the run (default: as many records as the file has).  On the same machine type the
    per-record scalars equal the file's: the re-run computes with the file's thread count and deterministic
    algorithms (:mod:`attack_engine.determinism`).
    """
    rf = read_run(card)
    model = load_model(rf.model)
    if rf.image is None:
        raise ValueError(f"this run file ({rf.format}) names its image instead of storing it; re-run it with "
                         "python -m attack_engine attack --from")
    cfg = AttackConfig(**rf.config)
    prep = Prepared(rf.image, rf.labels, rf.example or "upload", model.info.id)
    with determinism.using(rf.threads):  # the file's thread count
        live = LiveRun(model, prep, cfg, target=rf.target_class)
        limit = records if records is not None else rf.records or live.traj.info.expected_records
        while len(live.traj) < limit and live.step():
            pass
    return live.traj
