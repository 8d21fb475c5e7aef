"""Optional GPU: on a Hugging Face ZeroGPU Space the attack runs under ``spaces.GPU``; elsewhere nothing changes.

``spaces`` is not a dependency: it is imported when present (ZeroGPU Spaces pre-install it) and used only when
the Space says it runs on ZeroGPU (``SPACES_ZERO_GPU``).  A ZeroGPU call runs in a worker process that holds a
GPU for at most ``duration`` seconds, so the whole run is computed there in one call (duration from the steps:
:func:`duration_for`) and the finished recording, plain NumPy arrays, comes back to be scrubbed and replayed.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any

from app.limits import get_limits

BASE_S = 20.0  # model load and the clean forward pass


def _spaces() -> Any | None:
    try:
        return importlib.import_module("spaces")
    except ImportError:
        return None


def zero_gpu() -> bool:
    """True on a ZeroGPU Space (``spaces`` importable and ``SPACES_ZERO_GPU`` set)."""
    flag = os.environ.get("SPACES_ZERO_GPU", "").strip().lower() in ("1", "true", "yes")
    return flag and _spaces() is not None


def duration_for(steps: int | float | None) -> int:
    """Seconds to reserve a GPU for a run of ``steps`` steps (capped by the per-request time limit)."""
    lim = get_limits()
    try:
        n = max(1, int(steps or 1))
    except (TypeError, ValueError, OverflowError):
        n = 1
    n = min(n, lim.max_steps)
    return int(min(lim.time_limit_s, BASE_S + lim.gpu_s_per_step * n) + 0.999)


def on_gpu(fn: Callable, steps_of: Callable[..., Any]) -> Callable:
    """``fn`` under ``spaces.GPU(duration=...)`` on ZeroGPU (duration from ``steps_of(*args)``), else ``fn``."""
    if not zero_gpu():
        return fn
    spaces = _spaces()
    return spaces.GPU(duration=lambda *a, **k: duration_for(steps_of(*a, **k)))(fn)


def device() -> str:
    """Where the attack runs: ``TSALLIS_DEVICE`` if set, else ``cuda`` wherever CUDA is visible (inside a ZeroGPU
    call, or on a machine with a GPU), else ``cpu``."""
    forced = os.environ.get("TSALLIS_DEVICE", "").strip()
    if forced:
        return forced
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def local_device() -> str:
    """Where this process runs attacks itself: :func:`device`, except on ZeroGPU (runs go to the GPU worker, the
    main process keeps its models on the CPU as before)."""
    return "cpu" if zero_gpu() else device()


def full_run(model_id: str, prep: Any, cfg: Any, light: bool = False) -> Any:
    """Compute a whole run (in the ZeroGPU worker when there is one) and return its :class:`Trajectory`.

    Arguments and result are picklable (ids, NumPy arrays, dataclasses): ZeroGPU ships them between processes.
    """
    from app.runner import LiveRun
    from attack_engine.models import load_model

    dev = device()
    live = LiveRun(load_model(model_id, device=dev), prep, cfg, light=light, device=dev)
    return live.run_all()


def _steps_of(model_id: str, prep: Any, cfg: Any, light: bool = False) -> int:
    return cfg.steps


# decorated once, at import (ZeroGPU wants its functions known before the app starts)
gpu_full_run = on_gpu(full_run, _steps_of)
