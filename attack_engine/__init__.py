"""TsallisPGD Explorer's attack library: per-pixel objectives, q-schedules, step-wise PGD/APGD, metrics, models.

No UI code lives here.  Attacks are registered in :mod:`attack_engine.registry` (the six of the paper in
:mod:`attack_engine.objectives`, imported here so that they are always present).
"""

import attack_engine.objectives  # noqa: F401  (registers the six attacks)
from attack_engine.attack import AttackConfig, AttackResult, AttackRun, StepRecord, run_attack
from attack_engine.losses import pixel_loss, pixel_terms
from attack_engine.registry import AttackSpec, attack_names, attack_specs, get_attack, register_attack
from attack_engine.schedules import Schedule, ScheduleError, parse_schedule

__all__ = [
    "ATTACKS",
    "ATTACK_TITLES",
    "AttackConfig",
    "AttackResult",
    "AttackRun",
    "AttackSpec",
    "Schedule",
    "ScheduleError",
    "StepRecord",
    "attack_names",
    "attack_specs",
    "get_attack",
    "parse_schedule",
    "pixel_loss",
    "pixel_terms",
    "register_attack",
    "run_attack",
]

__version__ = "0.1.0"


def __getattr__(name: str):
    """``ATTACKS`` / ``ATTACK_TITLES``: live views of the registry."""
    if name in ("ATTACKS", "ATTACK_TITLES"):
        from attack_engine import losses

        return getattr(losses, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
