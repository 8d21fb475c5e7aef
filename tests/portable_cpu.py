"""A CPU setting on which the APGD fixture replay gives the same bits on any x86-64 host.

The reference's step-size rule compares float32 objectives that often tie to the last bit, so which checkpoint
halves the step depends on the rounding of the convolutions, ``tanh``, ``log_softmax`` and the pixel mean.  Those
kernels are chosen per host: ATen's vector width (AVX2 / AVX-512), oneDNN's JIT ISA, MKL's code path.  The
recorded fixtures were exact on the host that recorded them and off by a halving on another (an AVX-512 Xeon
vs the recording machine).  Pinned here instead:

* ``ATEN_CPU_CAPABILITY=default``: ATen's portable (non-AVX) kernels;
* oneDNN off (``torch.backends.mkldnn.enabled = False``): convolutions go through im2col + MKL ``sgemm``;
* ``MKL_CBWR=COMPATIBLE``: MKL's conditional bitwise reproducibility, the same code path on every x86-64 CPU;
* one thread (reduction order).

Both the recording script (``scripts/record_apgd_fixtures.py``) and the replay (``tests/apgd_replay.py``, run as
a subprocess by ``tests/test_apgd_reference.py``) start with :data:`ENV` and call :func:`configure`.  No torch
import here: the variables must be set before torch loads.
"""

from __future__ import annotations

import os

ENV = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def configure(torch) -> None:
    """Apply the in-process part of the setting; raises if the process did not start with :data:`ENV`."""
    missing = {k: v for k, v in ENV.items() if os.environ.get(k) != v}
    if missing:
        raise RuntimeError(f"start the process with {missing} (read when torch loads)")
    torch.set_num_threads(1)
    torch.backends.mkldnn.enabled = False
    if torch.backends.cpu.get_cpu_capability() != "DEFAULT":
        raise RuntimeError(f"ATen runs {torch.backends.cpu.get_cpu_capability()} kernels, not the portable ones")


def describe(torch) -> dict:
    """The setting as recorded in the fixtures' metadata."""
    return {"env": dict(ENV), "mkldnn": bool(torch.backends.mkldnn.enabled), "threads": torch.get_num_threads(),
            "aten_cpu_capability": torch.backends.cpu.get_cpu_capability()}
