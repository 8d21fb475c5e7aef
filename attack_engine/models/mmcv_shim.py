"""A small ``mmcv.ops`` stand-in so mmsegmentation 1.2.2 imports with **mmcv-lite** (no compiled ``mmcv._ext``).

mmseg imports ``mmcv.ops`` at import time (point_sample, sigmoid_focal_loss, ...), and the real
``mmcv/ops/__init__.py`` loads the compiled extension, which mmcv-lite does not have.  :func:`apply` registers a
bare ``mmcv.ops`` package instead (its ``__path__`` still points at mmcv's ops folder, so pure-Python submodules
resolve), exposes the pure-PyTorch ``point_sample`` / ``bilinear_grid_sample``, and puts stand-ins for the
compiled-only ops that raise a clear error when used.  With full mmcv (``mmcv._ext`` present) it does nothing.

Call :func:`apply` before the first ``import mmseg``.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

# Ops that mmseg (or its configs) may reference and that need mmcv's compiled extension.
COMPILED_ONLY = (
    "sigmoid_focal_loss", "softmax_focal_loss", "SigmoidFocalLoss", "SoftmaxFocalLoss",
    "CrissCrossAttention", "PSAMask", "DeformConv2d", "DeformConv2dPack", "ModulatedDeformConv2d",
    "ModulatedDeformConv2dPack", "MultiScaleDeformableAttention", "CARAFEPack", "nms", "batched_nms",
    "roi_align", "RoIAlign", "roi_pool", "RoIPool",
)
# Pure-PyTorch functions taken from mmcv/ops/point_sample.py (no compiled code in that file).
PURE = ("point_sample", "bilinear_grid_sample", "rel_roi_point_to_rel_img_point", "SimpleRoIAlign")

_MARK = "_tsallis_mmcv_ops_shim"


class CompiledOpUnavailable(RuntimeError):
    """An mmcv op that needs the compiled ``mmcv._ext`` was used with mmcv-lite."""


def _message(name: str) -> str:
    return (f"mmcv.ops.{name} needs mmcv's compiled ops (mmcv._ext), which mmcv-lite does not have. Pick a model "
            "that does not use it, or install full mmcv 2.1.0 built from source (see requirements-mm.txt).")


def _stand_in(name: str) -> Any:
    if name[:1].isupper():
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            raise CompiledOpUnavailable(_message(name))

        return type(name, (), {"__init__": __init__, "__doc__": _message(name), "__module__": "mmcv.ops"})

    def fn(*args: Any, **kwargs: Any) -> Any:
        raise CompiledOpUnavailable(_message(name))

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = _message(name)
    return fn


def has_full_mmcv() -> bool:
    """True when the compiled ``mmcv._ext`` is installed (full mmcv, not mmcv-lite)."""
    try:
        return importlib.util.find_spec("mmcv._ext") is not None
    except (ImportError, ValueError):
        return False


def is_applied() -> bool:
    mod = sys.modules.get("mmcv.ops")
    return bool(mod is not None and getattr(mod, _MARK, False))


def apply() -> bool:
    """Install the shim when needed; returns True when the shim is (now) in place, False with full mmcv.

    Raises ``ImportError`` when mmcv (lite or full) is not installed at all.
    """
    if is_applied():
        return True
    if "mmcv.ops" in sys.modules or has_full_mmcv():
        return False
    import mmcv

    ops_dir = Path(mmcv.__file__).resolve().parent / "ops"
    mod = types.ModuleType("mmcv.ops", "Stand-in for mmcv.ops under mmcv-lite (attack_engine.models.mmcv_shim).")
    mod.__path__ = [str(ops_dir)]
    mod.__package__ = "mmcv.ops"
    mod.__file__ = __file__
    setattr(mod, _MARK, True)
    sys.modules["mmcv.ops"] = mod
    mmcv.ops = mod
    try:
        from mmcv.ops import point_sample as pure  # the submodule file, found through __path__
    except Exception:
        del sys.modules["mmcv.ops"]
        raise
    for name in PURE:
        setattr(mod, name, getattr(pure, name))
    for name in COMPILED_ONLY:
        if not hasattr(mod, name):
            setattr(mod, name, _stand_in(name))
    return True
