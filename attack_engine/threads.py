"""With sleeping OpenMP workers, the engine's own per-pixel operations run on the calling thread (CPU).

On a CPU an attack iteration is one forward and one backward of the model plus a few dozen small operations of the
engine's own (the objective, the step and projection, metrics, the record) on tensors of one image's pixels.  Each
is large enough for PyTorch to split it over the OpenMP pool, which costs a hand-off to the other threads and back.
How much depends on the runtime's wait policy (measured on a 2-vCPU VM, ``BENCHMARKS.md``):

* ``OMP_WAIT_POLICY=PASSIVE`` (workers sleep between parallel regions: what a shared host wants, and what
  ``python -m bench`` runs with): every hand-off wakes a sleeping thread, ≈ 40 µs of CPU per operation, more than
  the arithmetic of a 65k-element add (≈ 11 µs on one thread).  Here the engine's own ops run on one thread.
* the default policy (workers spin for a while): the hand-off is cheap in wall time (the spinning costs CPU
  instead), and one thread would make the engine's ops slower, so the pool is left alone.

:func:`lean` runs a block with one OpenMP thread *for the calling thread only* (``omp_set_num_threads`` is per
thread, so other threads, e.g. other sessions of the app, keep their pool); :func:`full` restores the caller's
count around the model's forward and backward inside such a block.  A side effect: the engine's own reductions
(per-image means of the objective, APGD's control objective) then do not depend on the thread count.

``TSALLIS_LEAN_THREADS`` = ``1`` / ``0`` forces it on / off (default ``auto``: on when ``OMP_WAIT_POLICY`` is
passive).  It needs the OpenMP runtime PyTorch loaded, found in ``/proc/self/maps`` (Linux); where there is none,
or the runtime does not answer as expected, both context managers are no-ops.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Iterator
from functools import lru_cache

ENV = "TSALLIS_LEAN_THREADS"
_RUNTIMES = ("libgomp", "libomp", "libiomp5")


class _OpenMP:
    """``omp_set_num_threads`` / ``omp_get_max_threads`` of the OpenMP runtime this process runs PyTorch with."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._set = lib.omp_set_num_threads
        self._set.argtypes, self._set.restype = [ctypes.c_int], None
        self._get = lib.omp_get_max_threads
        self._get.argtypes, self._get.restype = [], ctypes.c_int

    def get(self) -> int:
        return int(self._get())

    def set(self, n: int) -> None:
        self._set(int(n))


def _loaded_runtime_path() -> str | None:
    """The OpenMP runtime mapped into this process (the one PyTorch's kernels call), if any (Linux only)."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.rsplit(None, 1)[-1] if "/" in line else ""
                name = os.path.basename(path)
                if any(name.startswith(r) and ".so" in name for r in _RUNTIMES):
                    return path
    except OSError:
        return None
    return None


def wanted() -> bool:
    """``TSALLIS_LEAN_THREADS`` if it says 1/0, else whether the OpenMP workers sleep (``OMP_WAIT_POLICY``)."""
    raw = os.environ.get(ENV, "auto").strip().lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    return os.environ.get("OMP_WAIT_POLICY", "").strip().lower() == "passive"


@lru_cache(maxsize=1)
def _runtime() -> _OpenMP | None:
    """The runtime, checked once: setting 1 in this thread must be what PyTorch then reports, and be undone."""
    if not wanted():
        return None
    import torch

    torch.zeros(2).add_(1)  # make sure the intra-op runtime is loaded and initialised in this process
    path = _loaded_runtime_path()
    if path is None:
        return None
    try:
        omp = _OpenMP(ctypes.CDLL(path))
    except (OSError, AttributeError):
        return None
    before = omp.get()
    if before < 1 or torch.get_num_threads() != before:
        return None
    try:
        omp.set(1)
        ok = torch.get_num_threads() == 1
    finally:
        omp.set(before)
    return omp if ok and torch.get_num_threads() == before else None


def active() -> bool:
    """Whether :func:`lean` takes effect in this process (decided at the first call, then kept)."""
    return _runtime() is not None


@contextlib.contextmanager
def lean(enabled: bool = True) -> Iterator[None]:
    """Run the block with one intra-op thread in this thread (no-op if ``enabled`` is False or unsupported)."""
    omp = _runtime() if enabled else None
    if omp is None:
        yield
        return
    before = omp.get()
    stack = _outer.stack
    stack.append(stack[-1] if stack else before)  # nested: the outermost caller's count
    omp.set(1)
    try:
        yield
    finally:
        _outer.stack.pop()
        omp.set(before)


@contextlib.contextmanager
def full() -> Iterator[None]:
    """Inside :func:`lean`: the caller's thread count again for the block (the model's forward or backward)."""
    omp = _runtime()
    stack = _outer.stack
    if omp is None or not stack:
        yield
        return
    omp.set(stack[-1])
    try:
        yield
    finally:
        omp.set(1)


class _Stack(threading.local):
    """Per thread: the counts :func:`full` restores (the caller's count at the outermost :func:`lean`)."""

    def __init__(self) -> None:
        self.stack: list[int] = []


_outer = _Stack()
