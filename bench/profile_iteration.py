"""Where an attack iteration's time goes beyond the bare loop: torch.profiler over k iterations of each.

    python -m bench.profile_iteration --model selfie --side 256 --k 10
    python -m bench.profile_iteration --model segformer-b0 --side 512 --k 2 --telemetry

Prints the top operators (self CPU time) of the bare loop and of PGD (TsallisPGD), and the per-iteration
difference per operator (PGD minus bare), which is what the attack adds.  Profiling inflates small ops; use it
to rank causes, and the interleaved timings of ``bench_overhead`` for the ratios.  Not part of ``python -m bench``.
"""

from __future__ import annotations

import argparse
import functools
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from attack_engine import AttackConfig, AttackRun
from bench import models as M
from bench.bench_overhead import _input
from bench.common import bare_loop, record_sampler, set_threads

BUILDERS = {"selfie": M.selfie, "segformer-b0": functools.partial(M.segformer_b0, 150),
            "pspnet-r50": functools.partial(M.pspnet_r50, 21)}


def self_times(fn, k: int) -> tuple[dict[str, float], float]:
    """Self CPU seconds per iteration by operator name, and aten operator calls per iteration."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn(k)
    out: dict[str, float] = defaultdict(float)
    calls = 0
    for e in prof.key_averages():
        out[e.key] += e.self_cpu_time_total / 1e6 / k
        if e.key.startswith("aten::"):
            calls += e.count
    return dict(out), calls / k


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=list(BUILDERS), default="selfie")
    ap.add_argument("--side", type=int, default=256)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--telemetry", action="store_true")
    ap.add_argument("--optimizer", choices=("pgd", "apgd"), default="pgd")
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    set_threads(a.threads)
    model, impl = BUILDERS[a.model]()
    x0 = _input(a.side)
    with torch.no_grad():
        y = model(x0).argmax(1)
    eps = 8 / 255
    bare = bare_loop(model, x0, y, eps, eps / 4)
    run = AttackRun(model, x0, None, AttackConfig(optimizer=a.optimizer, eps=eps, steps=3 * a.k + 5,
                                                  telemetry=a.telemetry))
    ours = record_sampler(iter(run), x0)
    bare(2)
    ours(2)
    (tb, nb), (to, no) = self_times(bare, a.k), self_times(ours, a.k)
    print(f"{a.model} ({impl}) {a.side}², {a.optimizer}, telemetry {'on' if a.telemetry else 'off'}, "
          f"{torch.get_num_threads()} threads; self CPU ms per iteration (profiled)")
    print(f"total: bare {1e3 * sum(tb.values()):.1f} ms in {nb:.0f} aten calls, "
          f"ours {1e3 * sum(to.values()):.1f} ms in {no:.0f} aten calls")
    diff = sorted(((to.get(n, 0.0) - tb.get(n, 0.0), n) for n in set(tb) | set(to)), reverse=True)
    print(f"\n{'operator':58s} {'bare':>8s} {'ours':>8s} {'ours-bare':>10s}")
    for d, n in diff[: a.top]:
        print(f"{n[:58]:58s} {1e3 * tb.get(n, 0):8.2f} {1e3 * to.get(n, 0):8.2f} {1e3 * d:10.2f}")


if __name__ == "__main__":
    main()
