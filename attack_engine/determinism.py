"""Same seed and settings -> the same records on the same machine.

The attack's random start uses its own seeded generator, so what still varies between two runs of one config is
how CPU kernels split their sums over threads: a run made with 8 intra-op threads and its re-run with 2 differ in
the last bits of a reduction, and an attack amplifies that within a few records.  The app and the script that makes
the shipped runs therefore compute with one thread count (``TSALLIS_TORCH_THREADS``, default
:data:`DEFAULT_THREADS`) and deterministic algorithms; the CLI computes with deterministic algorithms and its own
thread count.  Every run file records :func:`fingerprint` (:mod:`attack_engine.runfile`), and a re-run
(``python -m attack_engine attack --from``, ``app.runner.rerun_card``) computes with the file's settings.
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator

import numpy as np
import torch

from attack_engine import threads

DEFAULT_THREADS = 2
THREADS_ENV = "TSALLIS_TORCH_THREADS"


def compute_threads() -> int:
    """The intra-op thread count runs use: ``TSALLIS_TORCH_THREADS`` if it is a whole number ≥ 1, else 2."""
    raw = os.environ.get(THREADS_ENV, "")
    try:
        n = int(raw)
    except ValueError:
        n = DEFAULT_THREADS
    return n if n >= 1 else DEFAULT_THREADS


def apply(threads: int | None = None) -> dict:
    """Set the thread count (default :func:`compute_threads`) and deterministic algorithms; the fingerprint."""
    torch.set_num_threads(int(threads or compute_threads()))
    torch.use_deterministic_algorithms(True, warn_only=True)
    return fingerprint()


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or the platform's processor string where that is not readable."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def cpu_kernels() -> str:
    """Which CPU kernels compute: ATen's vector ISA (``AVX2``, ``AVX512``, ``DEFAULT``), then ``no-onednn`` when
    oneDNN is off and ``mkl-<mode>`` when MKL runs in a fixed mode (``MKL_CBWR``)."""
    parts = [torch.backends.cpu.get_cpu_capability()]
    if not torch.backends.mkldnn.enabled:
        parts.append("no-onednn")
    if os.environ.get("MKL_CBWR"):
        parts.append(f"mkl-{os.environ['MKL_CBWR'].lower()}")
    return "/".join(parts)


def fingerprint() -> dict:
    """What a re-run must match to give the same records: threads, deterministic mode, versions, machine, the CPU
    and its kernels (:func:`cpu_model`, :func:`cpu_kernels`: an AVX2 and an AVX-512 host differ in the last bits,
    and an attack amplifies that), and ``engine_one_thread`` where the engine's own ops ran on one thread
    (:mod:`attack_engine.threads`; absent = no)."""
    fp = {"torch_threads": torch.get_num_threads(), "deterministic": torch.are_deterministic_algorithms_enabled(),
          "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
          "machine": platform.machine(), "system": platform.system(), "cpu": cpu_model(), "cpu_kernels": cpu_kernels()}
    if threads.active():
        fp["engine_one_thread"] = True
    return fp


@contextlib.contextmanager
def using(threads: int | None) -> Iterator[None]:
    """Compute with ``threads`` intra-op threads (default :func:`compute_threads`) and deterministic algorithms
    inside the block only."""
    before, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    apply(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
        torch.use_deterministic_algorithms(det, warn_only=True)
