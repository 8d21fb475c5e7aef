"""Wiring between the UI's inputs and :mod:`attack_engine`: prepare an image, start a run, record it.

Nothing here computes attack maths; it resizes the input per the engine's resize policy, builds an
:class:`~attack_engine.AttackRun` and copies each :class:`~attack_engine.StepRecord` into a
:class:`~app.trajectory.Trajectory`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from app.trajectory import RunInfo, Trajectory
from attack_engine import AttackConfig, AttackRun
from attack_engine.attack import apgd_stages
from attack_engine.images import load_image, load_mask, model_size, resize_image, resize_labels, to_tensor
from attack_engine.models import SegModel, load_model

MAX_STEPS = 500


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

    @property
    def digest(self) -> str:
        h = hashlib.sha256(self.image.tobytes())
        if self.labels is not None:
            h.update(self.labels.astype(np.int64).tobytes())
        return h.hexdigest()[:16]


def make_config(attack: str, optimizer: str, eps255: float, steps: int, alpha255: float | None, seed: int,
                schedule: str | None) -> AttackConfig:
    """UI values (ε and step size in /255; step size 0/None = default) -> :class:`AttackConfig`."""
    steps = int(steps)
    if not 1 <= steps <= MAX_STEPS:
        raise InputError(f"steps must be between 1 and {MAX_STEPS}, got {steps}")
    alpha = None if not alpha255 or optimizer == "apgd" else float(alpha255) / 255.0
    sched = (schedule or "").strip() or None
    if attack != "tsallis":
        sched = None
    try:
        return AttackConfig(attack=attack, optimizer=optimizer, eps=float(eps255) / 255.0, steps=steps,
                            step_size=alpha, schedule=sched, seed=int(seed))
    except ValueError as e:
        raise InputError(str(e)) from None


def prepare(image, mask, model: SegModel, source: str = "upload") -> Prepared:
    """Any image (+ optional class-id mask) -> model-resolution uint8 image and int labels.

    The resized image is quantised to uint8 so the attack's clean input is exactly what a run card stores.
    """
    if image is None:
        raise InputError("pick an example or upload an image first")
    try:
        img = load_image(image)
        lab = None if mask is None else load_mask(mask, model.info.num_classes, model.info.ignore_index)
    except ValueError as e:
        raise InputError(str(e)) from None
    info = model.info
    hw = model_size(img.shape[:2], info.input_size, info.size_multiple)
    x = resize_image(to_tensor(img), hw)
    x8 = (x[0].permute(1, 2, 0).numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
    labels = None
    if lab is not None:
        if abs(lab.shape[0] / lab.shape[1] - img.shape[0] / img.shape[1]) > 0.02:
            raise InputError(f"mask is {lab.shape[1]}×{lab.shape[0]} but the image is {img.shape[1]}×{img.shape[0]}")
        labels = resize_labels(torch.from_numpy(lab)[None], hw)[0].numpy()
    return Prepared(x8, labels, source, info.id, tuple(img.shape[:2]))


class LogitTap:
    """Wraps a model and keeps the logits of its latest call (no extra computation)."""

    def __init__(self, model: SegModel) -> None:
        self.model = model
        self.last: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        self.last = out.detach()
        return out


class LiveRun:
    """A started attack whose records land in ``traj`` one :meth:`step` at a time."""

    def __init__(self, model: SegModel, prep: Prepared, cfg: AttackConfig, light: bool = False,
                 map_side: int | None = None) -> None:
        self.cfg = cfg
        self.prep = prep
        self.tap = LogitTap(model)
        x = torch.from_numpy(prep.image).permute(2, 0, 1)[None].float().div(255.0)
        labels = None if prep.labels is None else torch.from_numpy(prep.labels)[None].long()
        self.run = AttackRun(self.tap, x, labels, cfg)
        mult = max(m for m, _ in apgd_stages(cfg.steps, cfg.multi_eps)) if cfg.optimizer == "apgd" else 1.0
        info = model.info
        rinfo = RunInfo(
            model_id=info.id, class_names=list(info.class_names), palette=[list(c) for c in info.palette],
            config=cfg.to_dict(), ignore_index=info.ignore_index, source=prep.source, has_gt=prep.labels is not None,
            model_hw=tuple(prep.image.shape[:2]), expected_records=self.run.expected_records(),
            clean_acc=float(self.run.clean_acc[0]), clean_miou=float(self.run.clean_miou[0]),
            dmax=float(cfg.eps) * mult, extra={"source_hw": list(prep.source_hw or prep.image.shape[:2])},
        )
        self.traj = Trajectory(rinfo, prep.image, self.run.labels[0].cpu().numpy(),
                               self.run.clean_pred[0].cpu().numpy(), light=light, map_side=map_side)
        self._it: Iterator | None = iter(self.run)

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
        self.traj.append(rec, self.tap.last)
        if len(self.traj) >= self.traj.info.expected_records:
            # run the generator's tail (best-iterate bookkeeping) so `result` exists
            for _ in self._it:
                pass
            self._finish()
        return True

    def _finish(self) -> None:
        self._it = None
        self.traj.finished = True
        res = self.run.result
        if res is not None:
            self.traj.info.extra.update(result_acc=float(res.acc[0]), result_miou=float(res.miou[0]),
                                        result_best_index=int(res.best_index[0]))

    def run_all(self) -> Trajectory:
        while self.step():
            pass
        return self.traj


def start_run(model_id: str, image, mask, cfg: AttackConfig, source: str = "upload", light: bool = False) -> LiveRun:
    """Load the model (cached by the registry), prepare the input and start a :class:`LiveRun`."""
    model = load_model(model_id)
    return LiveRun(model, prepare(image, mask, model, source), cfg, light=light)


def fmt_pct(v: float) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{100 * v:.1f}%"
