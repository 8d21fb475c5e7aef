"""The selfie overhead ratios of *this checkout*, one JSON line: run it from two checkouts alternately to compare.

    OMP_WAIT_POLICY=PASSIVE BENCH_CLOCK=cpu python -m bench.overhead_pairs >> pairs.jsonl   # the bench's setting
    OMP_WAIT_POLICY= BENCH_CLOCK=wall python -m bench.overhead_pairs >> pairs.jsonl         # OpenMP's default policy

(An empty ``OMP_WAIT_POLICY`` keeps ``bench`` from setting PASSIVE; libgomp warns and uses its default, which is
what the app runs with.)  Same loops as ``bench.bench_overhead`` (bare, PGD/APGD × telemetry off/on, TsallisPGD,
interleaved rounds of k=4 records); ``R`` rounds (default 40), ``T`` intra-op threads (default 2).  Each variant:
[median, q1, q3] of the per-round ratios to the bare loop, then min/min.  On a shared VM one such run moves by
±0.03; compare medians over several alternating runs (``bench/ANALYSIS.md``, fourth issue-16 session).
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import subprocess

import torch

from attack_engine import AttackConfig, AttackRun, threads
from bench import models as M
from bench.bench_overhead import EPS, VARIANTS, _input
from bench.common import CLOCK_NAME, bare_loop, interleave, record_sampler, set_threads


def main() -> None:
    set_threads(int(os.environ.get("T", "2")))
    model, _ = M.selfie()
    x0 = _input(256)
    with torch.no_grad():
        y = model(x0).argmax(1)
    k, rounds = 4, int(os.environ.get("R", "40"))
    steps = 4 * ((rounds + 2) * k + 4)  # every sample inside APGD's first stage (see bench_overhead)
    samplers = {"bare": functools.partial(bare_loop(model, x0, y, EPS, EPS / 4), k)}
    for v in VARIANTS:
        cfg = AttackConfig(attack="tsallis", optimizer=v.split("+")[0], eps=EPS, steps=steps,
                           telemetry=v.endswith("+tel"))
        samplers[v] = functools.partial(record_sampler(iter(AttackRun(model, x0, None, cfg)), x0), k)
    r = interleave(samplers, rounds, warmup=1)
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    out = {"commit": rev, "clock": CLOCK_NAME, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
           "threads": torch.get_num_threads(), "engine_one_thread": threads.active(), "rounds": rounds, "k": k,
           "bare_ms": round(statistics.median(r["bare"]) * 1e3, 2), "load": os.getloadavg()}
    for v in VARIANTS:
        q = sorted(a / b for a, b in zip(r[v], r["bare"], strict=True))
        out[v] = [round(statistics.median(q), 3), round(q[len(q) // 4], 3), round(q[3 * len(q) // 4], 3),
                  round(min(r[v]) / min(r["bare"]), 3)]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
