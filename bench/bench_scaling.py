"""Item 3: time and peak memory per iteration vs resolution and batch; memory of a stored run in the app.

Time: seconds per PGD iteration (one record of a running :class:`AttackRun`, TsallisPGD, telemetry off), median
of k iterations after one warm-up iteration.

Memory: the process's peak resident set size while the attack object is built and k + 1 iterations run, minus
the resident size just before (model loaded, input allocated): the attack's working memory (autograd graph,
float64 objective, the optimiser's state).  Linux only (``/proc/self/clear_refs`` resets the peak); the value
includes allocator slack and is approximate (±10%).

Cells are run smallest first; a cell whose predicted time (linear in pixels × batch from the cells run so far)
would overrun the time budget is skipped and marked as such.

The stored-run part builds the app's :class:`app.trajectory.Trajectory` (when the app is present) from real
records and reports bytes per record in memory and in the saved ``.npz``; it also reports the size of one full
:class:`attack_engine.StepRecord` with telemetry (what a consumer that kept every record would hold).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import os
import statistics
import tempfile
import time

import numpy as np
import torch
from torch import nn

from attack_engine import AttackConfig, AttackRun
from attack_engine.models.base import SegModel
from bench import models as M
from bench.bench_overhead import _input
from bench.common import cli_main, fmt_bytes, peak_rss_bytes, reset_peak, rss_bytes, set_threads

EPS = 8 / 255
SIDES = (256, 512, 1024)
BATCHES = (1, 4, 16)
# model name -> (builder, cells (side, batch), k, budget seconds)
GRIDS = {
    "selfie": (M.selfie, [(s, b) for b in BATCHES for s in SIDES], 2, 40.0),
    "segformer-b0": (functools.partial(M.segformer_b0, 150), [(256, 1), (256, 4), (512, 1), (512, 4), (1024, 1)], 1,
                     30.0),
}
QUICK = {"selfie": (M.selfie, [(256, 1), (512, 1)], 1, 10.0)}


def measure_cell(model: SegModel, side: int, batch: int, k: int) -> dict:
    x0 = _input(side, batch)
    gc.collect()
    _trim()  # hand freed heap memory back to the OS, so that what the run allocates shows up in the RSS
    base = rss_bytes()
    exact = reset_peak()
    run = AttackRun(model, x0, None, AttackConfig(attack="tsallis", optimizer="pgd", eps=EPS, steps=k + 2,
                                                  telemetry=False))
    it = iter(run)
    next(it)  # warm-up iteration (the start point)
    times = []
    for _ in range(k):
        t = time.perf_counter()
        next(it)
        times.append(time.perf_counter() - t)
    peak = peak_rss_bytes() - base
    del it, run
    gc.collect()
    return {"side": side, "batch": batch, "seconds": statistics.median(times), "all_seconds": times,
            "peak_bytes": peak, "peak_exact": exact}


def _trim() -> None:
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def run_grid(name: str, builder, cells: list[tuple[int, int]], k: int, budget: float) -> dict:
    model, impl = builder()
    order = sorted(cells, key=lambda c: c[0] * c[0] * c[1])
    out, spent, rate = [], 0.0, None  # rate: seconds per (pixel*batch) per iteration, the lowest seen so far
    for side, batch in order:
        work = side * side * batch
        predicted = (k + 2) * rate * work if rate else 0.0
        if rate and spent + predicted > budget:
            out.append({"side": side, "batch": batch, "skipped": f"predicted {predicted:.0f} s would exceed the "
                        f"{budget:.0f} s budget"})
            continue
        t = time.perf_counter()
        cell = measure_cell(model, side, batch, k)
        spent += time.perf_counter() - t
        rate = cell["seconds"] / work if rate is None else min(rate, cell["seconds"] / work)
        out.append(cell)
    return {"model": name, "impl": impl, "classes": model.info.num_classes, "k": k, "cells": out}


# -- the app's stored run --------------------------------------------------------------------------------------------
class _TinySeg(SegModel):
    """Tiny random conv net (any size, ``classes`` outputs): storage cost does not depend on the model."""

    def __init__(self, classes: int) -> None:
        super().__init__(M._info(f"bench-tiny-{classes}", "tiny", classes, 1))
        g = torch.Generator().manual_seed(0)
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, classes, 3, padding=1)
        with torch.no_grad():
            for m in (self.c1, self.c2):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.c2(torch.tanh(self.c1(x))) * 4


def record_bytes(rec) -> int:
    """Bytes of every tensor held by one :class:`StepRecord` (``x_clean`` is shared by all records: not counted)."""
    total = 0
    for f, v in vars(rec).items():
        if isinstance(v, torch.Tensor) and f != "x_clean":
            total += v.numel() * v.element_size()
    return total


def stored_run(sides=(256, 512, 1024), classes: int = 21, steps: int = 6) -> dict:
    """Bytes per record of the app's Trajectory (in memory, saved .npz) and of a full StepRecord, per side."""
    try:
        from app.trajectory import RunInfo, Trajectory, probe_grid, probe_topk
    except Exception as e:  # the app is not there: StepRecord sizes only
        RunInfo = Trajectory = probe_grid = probe_topk = None
        why = f"app.trajectory not importable ({type(e).__name__}: {e})"
    else:
        why = None
    model = _TinySeg(classes).freeze()
    rows = []
    for side in sides:
        x0 = _input(side)
        cfg = AttackConfig(attack="tsallis", optimizer="apgd", eps=EPS, steps=steps, telemetry=True)
        probe = {} if Trajectory is None else {"record_topk": probe_topk(classes), "topk_hw": probe_grid((side, side))}
        run = AttackRun(model, x0, None, cfg, **probe)  # the probe's top-k on records, as the app's LiveRun
        row: dict = {"side": side}
        traj = None
        if Trajectory is not None:
            info = RunInfo(model_id=model.info.id, class_names=list(model.info.class_names),
                           palette=[list(c) for c in model.info.palette], config=run.cfg.to_dict(),
                           model_hw=(side, side), expected_records=run.expected_records(), dmax=2 * EPS)
            img = (x0[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
            traj = Trajectory(info, img, run.labels[0].numpy(), run.clean_pred[0].numpy())
        rec_bytes = []
        for rec in run:
            rec_bytes.append(record_bytes(rec))
            if traj is not None:
                traj.append(rec)
        row["records"] = len(rec_bytes)
        row["steprecord_bytes"] = statistics.median(rec_bytes)
        if traj is not None:
            per = []
            for i in range(len(traj)):
                n = 8 * len(traj.sc)  # scalars (float64 each)
                for name in ("delta", "pred", "p_true", "weight", "grad", "topk_cls", "topk_p", "hist"):
                    lst = getattr(traj, name)
                    if i < len(lst):
                        n += lst[i].nbytes
                per.append(n)
            row["trajectory_bytes"] = statistics.median(per)
            row["view"] = list(traj.hw)
            with tempfile.TemporaryDirectory() as d:
                p = os.path.join(d, "run.npz")
                traj.save(p)
                row["npz_bytes_per_record"] = os.path.getsize(p) / len(traj)
        rows.append(row)
    return {"classes": classes, "steps": steps, "rows": rows, "trajectory": why or "app.trajectory.Trajectory"}


def run(quick: bool = False) -> dict:
    threads = set_threads()
    grids = QUICK if quick else GRIDS
    res = {"threads": threads, "grids": [run_grid(n, *g) for n, g in grids.items()]}
    res["stored"] = stored_run(sides=(256, 512) if quick else (256, 512, 1024), steps=3 if quick else 6)
    return res


def markdown(res: dict) -> str:
    lines = []
    for g in res["grids"]:
        lines += [f"**{g['model']}** ({g['classes']} classes, {g['impl']}; median of {g['k']} iterations; "
                  "peak = attack working memory above the resident size before the run):", "",
                  "| batch | " + " | ".join(f"{s}²: s/iter" + " | " + f"{s}²: peak" for s in SIDES) + " |",
                  "|---|" + "---|---|" * len(SIDES)]
        by = {(c["side"], c["batch"]): c for c in g["cells"]}
        for b in BATCHES:
            if not any((s, b) in by for s in SIDES):
                continue
            cols = []
            for s in SIDES:
                c = by.get((s, b))
                if c is None:
                    cols += ["–", "–"]
                elif "skipped" in c:
                    cols += ["skipped (budget)", "–"]
                else:
                    cols += [f"{c['seconds']:.3f}", fmt_bytes(c["peak_bytes"])]
            lines.append(f"| {b} | " + " | ".join(cols) + " |")
        lines.append("")
    st = res["stored"]
    lines += [f"Stored run ({st['trajectory']}; a {st['classes']}-class model, APGD {st['steps']} steps, telemetry on), "
              "bytes per record:", "",
              "| input | app Trajectory in memory (view size) | app Trajectory saved .npz | full StepRecord (all tensors) |",
              "|---|---|---|---|"]
    for r in st["rows"]:
        tr = (f"{fmt_bytes(r['trajectory_bytes'])} ({r['view'][0]}×{r['view'][1]})" if "trajectory_bytes" in r
              else "n/a")
        npz = fmt_bytes(r["npz_bytes_per_record"]) if "npz_bytes_per_record" in r else "n/a"
        lines.append(f"| {r['side']}² | {tr} | {npz} | {fmt_bytes(r['steprecord_bytes'])} |")
    return "\n".join(lines)


def main() -> None:
    cli_main(__doc__, run, markdown)


if __name__ == "__main__":
    main()
