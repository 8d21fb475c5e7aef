"""TsallisPGD Explorer's attack library: per-pixel objectives, q-schedules, step-wise PGD/APGD, metrics, models.

No UI code lives here.
"""

from attack_engine.attack import AttackConfig, AttackResult, AttackRun, StepRecord, run_attack
from attack_engine.losses import ATTACK_TITLES, ATTACKS, pixel_loss, pixel_terms
from attack_engine.schedules import Schedule, ScheduleError, parse_schedule

__all__ = [
    "ATTACKS",
    "ATTACK_TITLES",
    "AttackConfig",
    "AttackResult",
    "AttackRun",
    "Schedule",
    "ScheduleError",
    "StepRecord",
    "parse_schedule",
    "pixel_loss",
    "pixel_terms",
    "run_attack",
]

__version__ = "0.1.0"
