"""One typed request: what the explorer's controls ask for, built once from the components' values.

The run controls (image, mask, example, model, attack, optimiser, ε, steps, step size, seed, schedule) travel
together as a :class:`RunRequest` instead of eleven positional arguments per handler.  Its checks live here:
:meth:`RunRequest.config` turns it into an :class:`~attack_engine.AttackConfig` (every number in range, the
schedule text valid) or raises one :class:`~app.runner.InputError` naming the control.

:func:`takes_request` adapts a handler ``fn(req, *rest)`` to Gradio, which passes component values
positionally in the order of :data:`FIELDS` (the public API's parameter order stays the same).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.limits import Limits
from app.runner import make_config
from attack_engine import AttackConfig

FIELDS = ("image", "mask", "example", "model", "attack", "optimizer", "eps", "steps", "alpha", "seed", "schedule")
API_NAMES = ("image", "mask", "ex_id", "model_id", "attack", "opt", "eps", "steps", "alpha", "seed", "sched")
"""The API's parameter names for :data:`FIELDS` (what ``gradio_client`` users see)."""


@dataclass(frozen=True)
class RunRequest:
    """The explorer's run controls, as the components give them (ε and step size in /255)."""

    image: Any = None  # upload path / array / bytes; ignored when ``example`` is set
    mask: Any = None
    example: str | None = None
    model: Any = None
    attack: Any = "tsallis"
    optimizer: Any = "apgd"
    eps: Any = 8
    steps: Any = 30
    alpha: Any = 0
    seed: Any = 0
    schedule: Any = None

    @classmethod
    def from_values(cls, values: tuple | list) -> RunRequest:
        """From component values in :data:`FIELDS` order."""
        if len(values) != len(FIELDS):
            raise TypeError(f"a run request takes {len(FIELDS)} values, got {len(values)}")
        return cls(*values)

    def values(self) -> tuple:
        """The values in :data:`FIELDS` order (the API's parameter order)."""
        return tuple(getattr(self, f) for f in FIELDS)

    def with_attack(self, attack: str) -> RunRequest:
        return dataclasses.replace(self, attack=attack)

    def config(self, limits: Limits | None = None) -> AttackConfig:
        """The checked :class:`AttackConfig`; a bad control raises one ``InputError`` naming it."""
        return make_config(self.attack, self.optimizer, self.eps, self.steps, self.alpha, self.seed, self.schedule,
                           limits)

    def key(self, cfg: AttackConfig) -> str:
        """Identity of the run this request starts: same key = the same input, model and config."""
        h = hashlib.sha1()
        if self.example:
            h.update(f"ex:{self.example}".encode())
        elif isinstance(self.image, np.ndarray):
            h.update(self.image.tobytes())
        elif isinstance(self.image, (bytes, bytearray)):
            h.update(bytes(self.image))
        else:
            h.update(str(self.image).encode())
        h.update(str(self.mask).encode())
        h.update(str(self.model).encode())
        h.update(json.dumps(cfg.to_dict(), sort_keys=True).encode())
        return h.hexdigest()


def takes_request(fn: Callable, fields: tuple[str, ...] = FIELDS) -> Callable:
    """Gradio handler for ``fn(req, *rest)``: the first ``len(fields)`` values become one :class:`RunRequest`
    (fields not given keep their defaults), the rest pass through.  Generators stay generators (streaming)."""

    def build(values: tuple) -> tuple[RunRequest, tuple]:
        return RunRequest(**dict(zip(fields, values[:len(fields)], strict=True))), values[len(fields):]

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def handler(*values):
            req, rest = build(values)
            yield from fn(req, *rest)
    else:
        @functools.wraps(fn)
        def handler(*values):
            req, rest = build(values)
            return fn(req, *rest)

    # Gradio reads the parameter names (the API's) from the signature: the request's fields, then fn's others
    del handler.__wrapped__
    names = dict(zip(FIELDS, API_NAMES, strict=True))
    rest = list(inspect.signature(fn).parameters.values())[1:]
    handler.__signature__ = inspect.Signature(
        [inspect.Parameter(names[f], inspect.Parameter.POSITIONAL_OR_KEYWORD) for f in fields] + rest)
    return handler
