"""Shared helpers: thread settings, interleaved timing, robust statistics, memory probes, machine facts."""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

THREADS = 2  # every CPU benchmark runs with torch.set_num_threads(THREADS)
# BENCH_CLOCK=cpu: time samples in process CPU seconds (all threads) instead of wall seconds. On a CPU shared with
# other busy processes the wall clock also counts the time this process waits for a core; CPU time counts only the
# work (still inflated somewhat by cache and memory-bandwidth contention). CPU benchmarks only.
CLOCK_NAME = os.environ.get("BENCH_CLOCK", "wall").strip().lower()
if CLOCK_NAME not in ("wall", "cpu"):
    raise SystemExit(f"BENCH_CLOCK must be 'wall' or 'cpu', got {CLOCK_NAME!r}")
clock = time.process_time if CLOCK_NAME == "cpu" else time.perf_counter


def set_threads(n: int = THREADS) -> int:
    torch.set_num_threads(n)
    with contextlib.suppress(RuntimeError):  # already set (or parallel work has started): leave it
        torch.set_num_interop_threads(1)
    return torch.get_num_threads()


# -- statistics ----------------------------------------------------------------------------------------------------
@dataclass
class Stats:
    median: float
    q1: float
    q3: float
    lo: float
    hi: float
    n: int

    @classmethod
    def of(cls, xs: list[float]) -> Stats:
        xs = sorted(xs)
        if len(xs) == 1:
            return cls(xs[0], xs[0], xs[0], xs[0], xs[0], 1)
        q = statistics.quantiles(xs, n=4, method="inclusive")
        return cls(statistics.median(xs), q[0], q[2], xs[0], xs[-1], len(xs))

    def ms(self) -> str:
        """``median [q1–q3] ms``."""
        return f"{1e3 * self.median:.1f} [{1e3 * self.q1:.1f}–{1e3 * self.q3:.1f}]"

    def ratio(self) -> str:
        """``median [q1–q3]`` of a ratio (×)."""
        return f"{self.median:.3f} [{self.q1:.3f}–{self.q3:.3f}]"

    def to_dict(self) -> dict:
        return dict(median=self.median, q1=self.q1, q3=self.q3, min=self.lo, max=self.hi, n=self.n)


def interleave(samplers: dict[str, Callable[[], float]], rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    """Run ``rounds`` rounds; each round calls every sampler once (A B C, then C B A, ...), order alternating.

    Each sampler returns seconds per iteration of one sample.  Returns the samples per name (in round order), so
    that ``paired_ratios`` can divide samples taken next to each other in time.
    """
    names = list(samplers)
    for _ in range(warmup):
        for n in names:
            samplers[n]()
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for n in (names if r % 2 == 0 else names[::-1]):
            out[n].append(samplers[n]())
    return out


def paired_ratios(num: list[float], den: list[float]) -> list[float]:
    """Per-round ratios num_i / den_i (samples of the same round ran back to back)."""
    return [a / b for a, b in zip(num, den, strict=True)]


# -- loops ---------------------------------------------------------------------------------------------------------
def bare_loop(model, x0: torch.Tensor, y: torch.Tensor, eps: float, alpha: float) -> Callable[[int], float]:
    """The floor of an L∞ PGD iteration: forward, float32 pixel-mean CE, backward to the input, sign step, projection.

    Returns ``sample(k)`` that runs k iterations (continuing from where the last sample stopped) and returns
    seconds per iteration.
    """
    state = {"x": x0.clone()}
    sync = _sync_fn(x0)

    def sample(k: int) -> float:
        sync()
        t = clock()
        x = state["x"]
        for _ in range(k):
            xr = x.detach().requires_grad_(True)
            loss = F.cross_entropy(model(xr), y)
            (g,) = torch.autograd.grad(loss, xr)
            x = torch.minimum(torch.maximum(xr.detach() + alpha * g.sign(), x0 - eps), x0 + eps).clamp_(0.0, 1.0)
        sync()
        state["x"] = x
        return (clock() - t) / k

    return sample


def record_sampler(records: Iterator, x0: torch.Tensor) -> Callable[[int], float]:
    """``sample(k)``: pull k records (= k model evaluations, forward + backward each) from a running attack."""
    sync = _sync_fn(x0)

    def sample(k: int) -> float:
        sync()
        t = clock()
        for _ in range(k):
            next(records)
        sync()
        return (clock() - t) / k

    return sample


def _sync_fn(t: torch.Tensor) -> Callable[[], None]:
    if t.device.type == "cuda":
        return torch.cuda.synchronize
    return lambda: None


# -- memory --------------------------------------------------------------------------------------------------------
def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1


def rss_bytes() -> int:
    return 1024 * _status_kb("VmRSS")


def reset_peak() -> bool:
    """Reset the process's peak RSS (Linux ``/proc/self/clear_refs`` = 5); False where not possible."""
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    return 1024 * _status_kb("VmHWM")


# -- machine -------------------------------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict:
    try:
        avail = len(os.sched_getaffinity(0))
    except AttributeError:
        avail = os.cpu_count()
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    return {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "cpus_available": avail,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg": [round(v, 2) for v in load],
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
        "clock": CLOCK_NAME,
        "cuda": torch.cuda.is_available(),
    }


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def cli_main(doc: str, run: Callable[..., dict], markdown: Callable[[dict], str], cases: tuple[str, ...] = ()) -> None:
    """The command line every bench module shares: ``--quick``, ``--json PATH`` (and ``--case`` where ``cases``)."""
    import argparse
    import json

    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    if cases:
        ap.add_argument("--case", action="append", help=f"only these cases ({', '.join(cases)})")
    ap.add_argument("--json", help="write the raw results here")
    a = ap.parse_args()
    res = run(a.quick, a.case) if cases else run(a.quick)
    print(markdown(res))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
