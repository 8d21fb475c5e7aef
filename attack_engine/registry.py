"""The attack registry: one :class:`AttackSpec` per attack, registered once with :func:`register_attack`.

Everything that differs between attacks lives in its spec: the objective (per-pixel loss and gradient weight
relative to CE), the log of that weight, the textbook ("plain") form, the parameter's symbol and schedule, the
title and the colour.  The engine (:func:`attack_engine.losses.pixel_terms`), the CLI, the evaluation, the app's
figures and the exports read the spec; none of them names an attack.  The six attacks of the paper are
registered in :mod:`attack_engine.objectives`.

A new attack::

    from attack_engine.registry import register_attack

    @register_attack("focal", title="FocalPGD", colour="#17becf", formula="(1 - p_y)^2 · CE")
    def focal(t, param):
        weight = (1 - t.p_true) ** 2      # detached inputs -> detached weight
        return weight * t.ce, weight      # (per-pixel loss, gradient weight relative to CE)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from attack_engine.schedules import Schedule, parse_schedule

Objective = Callable[[Any, "float | None"], tuple[Any, Any]]  # (PixelInputs, param) -> (loss, weight)


@dataclass(frozen=True)
class AttackSpec:
    """One attack.

    Args:
        name: the id used by configs, the CLI and run files.
        title: the name shown to people (``"TsallisPGD"``).
        colour: its colour in every figure (hex).
        objective: ``(inputs, param) -> (loss, weight)`` where ``inputs`` is a
            :class:`~attack_engine.losses.PixelInputs`; ``loss`` the per-pixel ``ℓ_i`` (a function of
            ``inputs.ce``), ``weight`` the gradient weight relative to CE, ``(dℓ/dz) / (dCE/dz)``.  It runs without
            autograd: the engine's gradient of ``ℓ`` *is* ``weight · dCE/dz``, so the weight must be exact.  An objective
            that sets ``inputs.log_weight`` may return ``None`` for the weight (formed as its exp when read).
        log_weight: ``(weight, ce, param) -> log weight``, exact where the weight underflows; default ``log(weight)``.
        plain: textbook form ``(inputs, param) -> ℓ`` with plain autograd (a
            :class:`~attack_engine.losses.PlainInputs`), for ``AttackConfig(numerics="plain")``; optional.
        param: symbol of the attack's parameter (``"q"``, ``"λ"``), ``None`` when it has none.
        schedule: default schedule text when the user chooses the parameter's schedule (``AttackConfig.schedule``).
        param_rule: ``(step, total) -> value`` for a parameter that follows a fixed rule instead.
        formula: the per-pixel quantity in plain text (help texts, explanations).
        weight_formula: the weight curve's label in figures (``"w_q(p) = p^(1−q)"``); default ``"w(p) <title>"``.
        gradient_peak: ``param -> p*``, the confidence where a two-class pixel's gradient size peaks, for attacks
            with a closed form (TsallisPGD: (1−q)/(2−q)); figures mark it.
    """

    name: str
    title: str
    colour: str
    objective: Objective = field(repr=False)
    log_weight: Callable[..., Any] | None = field(default=None, repr=False)
    plain: Callable[..., Any] | None = field(default=None, repr=False)
    param: str | None = None
    schedule: str | None = None
    param_rule: Callable[[int, int], float] | None = field(default=None, repr=False)
    formula: str = ""
    weight_formula: str = ""
    gradient_peak: Callable[[float], float] | None = field(default=None, repr=False)

    @property
    def schedulable(self) -> bool:
        """True when the user picks the parameter's schedule (TsallisPGD's q)."""
        return self.schedule is not None

    def schedule_of(self, text: str | Schedule | None) -> Schedule | None:
        """The schedule this attack runs with (``text`` or the default); ``None`` for attacks without one."""
        if not self.schedulable:
            return None
        return parse_schedule(text if text is not None else self.schedule)

    def param_at(self, step: int, total: int, schedule: float | str | Schedule | None = None) -> float | None:
        """The parameter in force at ``step`` of ``total``: from the schedule (number = fixed), the rule, or None."""
        if self.param_rule is not None:
            return self.param_rule(step, total)
        if not self.schedulable:
            return None
        if schedule is None:
            schedule = self.schedule
        if isinstance(schedule, str):
            schedule = parse_schedule(schedule)
        if isinstance(schedule, Schedule):
            return schedule.value(step, total)
        value = float(schedule)
        if not math.isfinite(value):
            raise ValueError(f"{self.param} must be finite, got {value}")
        return value


_ATTACKS: dict[str, AttackSpec] = {}


def register_attack(name: str, *, title: str, colour: str, **spec: Any) -> Callable[[Objective], Objective]:
    """Decorator: register the objective it wraps as attack ``name`` (other keywords: :class:`AttackSpec`'s)."""

    def wrap(objective: Objective) -> Objective:
        if name in _ATTACKS:
            raise ValueError(f"attack {name!r} is already registered")
        _ATTACKS[name] = AttackSpec(name=name, title=title, colour=colour, objective=objective, **spec)
        return objective

    return wrap


def unregister_attack(name: str) -> None:
    """Remove an attack (tests that register a throwaway one clean up with this)."""
    _ATTACKS.pop(name, None)


def get_attack(name: str) -> AttackSpec:
    """The spec of attack ``name``; ``ValueError`` naming the choices when it is unknown."""
    try:
        return _ATTACKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown attack {name!r}; choose one of {', '.join(_ATTACKS)}") from None


def attack_names() -> tuple[str, ...]:
    """Registered attack ids, in registration order."""
    return tuple(_ATTACKS)


def attack_specs() -> tuple[AttackSpec, ...]:
    return tuple(_ATTACKS.values())


def attack_title(name: str) -> str:
    """The attack's title; an unknown name is returned as it is (old run files)."""
    spec = _ATTACKS.get(name)
    return spec.title if spec else str(name)


def takes_schedule(name: str) -> bool:
    """True when attack ``name`` is registered and its parameter follows a user-chosen schedule."""
    spec = _ATTACKS.get(name)
    return bool(spec and spec.schedulable)


def param_symbol(name: str) -> str:
    """The attack's parameter symbol for labels (``"q"``, ``"λ"``), ``"param"`` when it has none."""
    spec = _ATTACKS.get(name)
    return spec.param if spec and spec.param else "param"
