"""What a session really keeps in memory, measured by walking its objects, and giving memory back.

:func:`retained_bytes` follows every reference from a session (its recorded runs, the live attack's tensors
and generator frames, Python lists of scalars, ...) and adds up the bytes each object holds, counting each
array / tensor storage / object once and stopping at what sessions share (models, modules, classes,
functions, module globals).  ``tests/test_memory.py`` checks it against the server's resident memory.

:func:`release` runs the garbage collector and returns freed heap pages to the system (glibc ``malloc_trim``;
a no-op elsewhere), so the resident memory falls back after sessions expire.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
import types
from typing import Any

import numpy as np
import torch

_SHARED = (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
           types.CodeType, torch.nn.Module, torch.dtype, torch.device, torch.Generator)
_STOP_NAMES = ("SegModel", "Limits", "SessionStore", "App", "Lock", "RLock", "Event", "Condition")


def _module_dicts() -> set[int]:
    return {id(vars(m)) for m in list(sys.modules.values()) if m is not None and hasattr(m, "__dict__")}


def _tensor_bytes(t: torch.Tensor, seen: set[int]) -> int:
    """Host bytes of a tensor: its storage once (``seen`` holds the storages already counted) plus its header; a
    sparse tensor counts the dense tensors that hold its data, an MKL-DNN one its elements (neither has a plain
    storage); memory on another device counts its header only."""
    if t.layout != torch.strided:
        parts = _sparse_parts(t)
        if parts is None:  # MKL-DNN: opaque, contiguous elements
            return t.numel() * t.element_size() + sys.getsizeof(t)
        return sys.getsizeof(t) + sum(_tensor_bytes(p, seen) - sys.getsizeof(p) for p in parts)
    st = t.untyped_storage()
    key = st.data_ptr()
    if key in seen or st.device.type != "cpu":
        return sys.getsizeof(t)
    seen.add(key)
    return st.nbytes() + sys.getsizeof(t)


def _sparse_parts(t: torch.Tensor) -> tuple[torch.Tensor, ...] | None:
    """The dense tensors of a sparse layout (None for a layout without them)."""
    if t.layout == torch.sparse_coo:
        return t._indices(), t._values()
    if t.layout in (torch.sparse_csr, torch.sparse_bsr):
        return t.crow_indices(), t.col_indices(), t.values()
    if t.layout in (torch.sparse_csc, torch.sparse_bsc):
        return t.ccol_indices(), t.row_indices(), t.values()
    return None


def _array_bytes(a: np.ndarray, seen: set[int]) -> tuple[int, Any]:
    """(bytes, owner to follow): an array that owns its memory counts it (``sys.getsizeof`` includes it), a view
    counts its header and is followed to the object that owns the memory (an array, a tensor, bytes)."""
    if a.base is None:
        key = a.__array_interface__["data"][0]
        if key in seen:  # memory a tensor storage already counted (torch.from_numpy)
            return sys.getsizeof(a) - a.nbytes, None
        seen.add(key)
        return sys.getsizeof(a), None
    return sys.getsizeof(a), a.base


def retained_bytes(root: Any, exclude: tuple[Any, ...] = ()) -> int:
    """Bytes reachable from ``root`` that belong to it (each object once; shared objects not followed)."""
    skip = _module_dicts() | {id(x) for x in exclude}
    seen: set[int] = set()
    storages: set[int] = set()
    total = 0
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or id(obj) in skip:
            continue
        seen.add(id(obj))
        if isinstance(obj, _SHARED) or type(obj).__name__ in _STOP_NAMES:
            continue
        if isinstance(obj, torch.Tensor):
            total += _tensor_bytes(obj, storages)
            continue
        if isinstance(obj, np.ndarray):
            n, owner = _array_bytes(obj, storages)
            total += n
            if owner is not None:
                stack.append(owner)
            if obj.dtype == object:
                stack.extend(obj.ravel().tolist())
            continue
        total += sys.getsizeof(obj)
        if isinstance(obj, (str, bytes, bytearray, int, float, complex, bool, type(None))):
            continue
        if isinstance(obj, types.FrameType):
            stack.extend(obj.f_locals.values())  # not f_globals / f_builtins (shared)
            continue
        stack.extend(gc.get_referents(obj))
    return total


def _libc_trim() -> Any:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None


_TRIM = _libc_trim()


def tune_malloc(arenas: int = 2) -> bool:
    """Fewer glibc malloc arenas (``M_ARENA_MAX``): each worker thread otherwise gets its own heap, whose freed
    pages fragment and stay resident.  Call once at start; True when it took effect."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        return bool(ctypes.CDLL(name).mallopt(-8, int(arenas)))  # M_ARENA_MAX
    except (OSError, AttributeError):
        return False


def release() -> bool:
    """Collect garbage and hand freed heap memory back to the system; True when ``malloc_trim`` ran."""
    gc.collect()
    if _TRIM is None:
        return False
    _TRIM(0)
    return True
