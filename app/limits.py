"""Every limit the app enforces, read once from environment variables (see README, "Hosting, limits and hosted
mode").

=============================  =========  ===================================================================
variable                       default    meaning
=============================  =========  ===================================================================
``TSALLIS_HOSTED``             auto       ``1``: hosted mode (uploads only, listed models only, no URLs, no
                                          pickles); default on when ``SPACE_ID`` is set (a Hugging Face Space)
``TSALLIS_MODELS``             see text   comma-separated model ids offered (default: all registered models;
                                          hosted: the bundled ones and those whose weights are present)
``TSALLIS_MAX_STEPS``          500        most iterations per run
``TSALLIS_MAX_SIDE``           1024       longest image side kept: larger uploads are downscaled (with a notice)
``TSALLIS_MAX_PIXELS``         40000000   larger images are refused before decoding (decompression bombs)
``TSALLIS_MAX_UPLOAD_MB``      25         largest file accepted by the upload route
``TSALLIS_SESSION_MB``         256        memory for the runs one session keeps (main run + comparison)
``TSALLIS_TOTAL_MB``           2048       memory for the runs of all sessions (least recently used dropped)
``TSALLIS_SESSION_TTL``        7200       seconds a session's runs are kept after its last request
``TSALLIS_MAX_SESSIONS``       500        sessions whose state the server keeps (Gradio drops the oldest)
``TSALLIS_QUEUE_SIZE``         32         queued requests at most; more are refused with "queue is full"
``TSALLIS_ATTACK_CONCURRENCY`` 1          attacks (run / step / compare) computed at the same time
``TSALLIS_CONCURRENCY``        2          other queued events (export) at the same time
``TSALLIS_TIME_LIMIT``         300        seconds one request may compute; a longer run pauses (Run continues)
``TSALLIS_GPU_S_PER_STEP``     0.5        ZeroGPU only: seconds reserved per attack step (+ 20 s)
``TSALLIS_DISK_MB``            2048       disk for Gradio's file cache, panels and exports (oldest go first)
``TSALLIS_DECODE_S``           2          seconds an upload may take to decode (in a sandbox process)
``TSALLIS_DECODE_MB``          1024       address space of that sandbox process
``TSALLIS_JANITOR_S``          30         seconds between clean-ups (expired sessions, disk, memory returned)
=============================  =========  ===================================================================

A malformed value stops the app at start-up with one line naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from functools import lru_cache

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

MIN_SIDE = 8  # smaller images are refused (an attack on a handful of pixels shows nothing)
MAX_ASPECT = 20.0  # longer/shorter side; more elongated images are refused
MAX_EPS255 = 32.0  # ε slider range (/255)
MIN_EPS255 = 0.5
MAX_ALPHA255 = 16.0  # PGD step size slider range (/255)
MAX_SEED = 2**31 - 1
Q_RANGE = (-10.0, 3.0)  # q values the losses are tested to stay finite for
MAX_TEXT = 300  # longest schedule / id text accepted


class LimitsError(ValueError):
    """An environment variable with a value the app cannot use."""


@dataclass(frozen=True)
class Limits:
    """The app's limits; :func:`from_env` reads them, tests build their own with :func:`dataclasses.replace`."""

    hosted: bool = False
    models: tuple[str, ...] | None = None  # None: every registered model (hosted: see allowed_models)
    max_steps: int = 500
    max_side: int = 1024
    max_pixels: int = 40_000_000
    max_upload_mb: float = 25.0
    session_mb: float = 256.0
    total_mb: float = 2048.0
    session_ttl_s: float = 7200.0
    max_sessions: int = 500
    queue_size: int = 32
    attack_concurrency: int = 1
    concurrency: int = 2
    time_limit_s: float = 300.0
    gpu_s_per_step: float = 0.5
    disk_mb: float = 2048.0
    decode_s: float = 2.0
    decode_mb: float = 1024.0
    janitor_s: float = 30.0

    @property
    def session_bytes(self) -> int:
        return int(self.session_mb * 2**20)

    @property
    def total_bytes(self) -> int:
        return int(self.total_mb * 2**20)

    def summary(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


_ENV = {  # field -> (variable, type, minimum)
    "max_steps": ("TSALLIS_MAX_STEPS", int, 1),
    "max_side": ("TSALLIS_MAX_SIDE", int, 64),
    "max_pixels": ("TSALLIS_MAX_PIXELS", int, 4096),
    "max_upload_mb": ("TSALLIS_MAX_UPLOAD_MB", float, 0.01),
    "session_mb": ("TSALLIS_SESSION_MB", float, 0.1),
    "total_mb": ("TSALLIS_TOTAL_MB", float, 0.1),
    "session_ttl_s": ("TSALLIS_SESSION_TTL", float, 1.0),
    "max_sessions": ("TSALLIS_MAX_SESSIONS", int, 1),
    "queue_size": ("TSALLIS_QUEUE_SIZE", int, 1),
    "attack_concurrency": ("TSALLIS_ATTACK_CONCURRENCY", int, 1),
    "concurrency": ("TSALLIS_CONCURRENCY", int, 1),
    "time_limit_s": ("TSALLIS_TIME_LIMIT", float, 1.0),
    "gpu_s_per_step": ("TSALLIS_GPU_S_PER_STEP", float, 0.0),
    "disk_mb": ("TSALLIS_DISK_MB", float, 16.0),
    "decode_s": ("TSALLIS_DECODE_S", float, 0.2),
    "decode_mb": ("TSALLIS_DECODE_MB", float, 128.0),
    "janitor_s": ("TSALLIS_JANITOR_S", float, 0.5),
}


def _number(var: str, raw: str, typ: type, lo: float) -> float | int:
    try:
        v = float(raw)
    except ValueError:
        raise LimitsError(f"{var}={raw!r} is not a number") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise LimitsError(f"{var}={raw!r} must be finite")
    if typ is int:
        if v != int(v):
            raise LimitsError(f"{var}={raw!r} must be a whole number")
        v = int(v)
    if v < lo:
        raise LimitsError(f"{var}={raw!r} must be at least {lo:g}")
    return v


def env_flag(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    s = raw.strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise LimitsError(f"{name}={raw!r} must be 1 or 0")


def from_env(env: Mapping[str, str] | None = None) -> Limits:
    """The limits the environment asks for (defaults in :class:`Limits`); raises :class:`LimitsError`."""
    env = os.environ if env is None else env
    kw: dict = {"hosted": env_flag(env, "TSALLIS_HOSTED", default=bool(env.get("SPACE_ID")))}
    for name, (var, typ, lo) in _ENV.items():
        raw = env.get(var)
        if raw is not None and raw.strip():
            kw[name] = _number(var, raw.strip(), typ, lo)
    models = env.get("TSALLIS_MODELS")
    if models is not None and models.strip():
        ids = tuple(m.strip() for m in models.split(",") if m.strip())
        bad = [m for m in ids if "/" in m or "\\" in m or m.startswith(".")]
        if bad:
            raise LimitsError(f"TSALLIS_MODELS names model ids, not paths: {bad}")
        kw["models"] = ids
    return Limits(**kw)


@lru_cache(maxsize=1)
def get_limits() -> Limits:
    """The process's limits (read once)."""
    return from_env()


def allowed_models(limits: Limits, extra: tuple[str, ...] = ()) -> list[str]:
    """Model ids the app offers: ``limits.models`` when set (unknown ids raise), else all registered models
    (hosted: only bundled ones and those whose weights are already here).  ``extra`` ids are always included
    (an app built around an injected model)."""
    from attack_engine.models import list_models

    entries = {e.id: e for e in list_models()}
    if limits.models is not None:
        unknown = [m for m in limits.models if m not in entries]
        if unknown:
            raise LimitsError(f"TSALLIS_MODELS: unknown model ids {unknown}; known: {', '.join(entries)}")
        ids = list(limits.models)
    elif limits.hosted:
        ids = [i for i, e in entries.items() if e.family == "bundled" or (e.family != "custom" and e.available())]
    else:
        ids = list(entries)
    return ids + [m for m in extra if m not in ids]


def apply_hosted_environment(limits: Limits, env: dict | None = None) -> list[str]:
    """In hosted mode, turn off what must never happen on a public server; returns what was changed.

    * ``TSALLIS_TRUST_PICKLE`` is removed: checkpoints are read with ``weights_only`` / safetensors only.
    * Gradio analytics and Hub telemetry stay off.
    """
    env = os.environ if env is None else env
    changed = []
    if not limits.hosted:
        return changed
    if env.pop("TSALLIS_TRUST_PICKLE", None) is not None:
        changed.append("TSALLIS_TRUST_PICKLE removed")
    for k, v in {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1"}.items():
        if env.get(k) != v:
            env[k] = v
            changed.append(f"{k}={v}")
    return changed


__all__ = ["Limits", "LimitsError", "allowed_models", "apply_hosted_environment", "from_env", "get_limits", "replace"]
