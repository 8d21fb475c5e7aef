"""Run every CPU benchmark and regenerate ``BENCHMARKS.md`` (``python -m bench`` or ``python bench/run_all.py``).

About 6-11 minutes on the shared 2 CPU cores (the SegFormer-B0 cases are most of it).  Raw numbers go to
``bench/results/run_all.json``.

    python -m bench                   # everything, writes BENCHMARKS.md
    python -m bench --quick           # smoke test (tiny sizes, a few seconds per part; writes to bench/results/)
    python -m bench --only overhead peer
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import bench_overhead, bench_peer, bench_replay, bench_scaling, bench_store  # noqa: E402
from bench.common import THREADS, Stats, machine_info, set_threads  # noqa: E402

PARTS = ("overhead", "replay", "store", "peer", "scaling", "app")
# issue 16: selfie ≤ 1.05 / ≤ 1.15; SegFormer-B0 512² stays ≤ 1.03 / ≤ 1.15
TARGET_OFF, TARGET_ON, TARGET_PEER = {"selfie-256": 1.05}, 1.15, 1.0
TARGET_OFF_DEFAULT = 1.03
TARGET_OBJECTIVE = 2.0
APP_BENCH = ROOT / "bench" / "bench_app.py"
ANALYSIS = ROOT / "bench" / "ANALYSIS.md"


def _s(d: dict) -> Stats:
    return Stats(d["median"], d["q1"], d["q3"], d["min"], d["max"], d["n"])


def run_app_bench(quick: bool, timeout: float = 150.0) -> dict:
    """bench/bench_app.py (written separately) as a subprocess; its stdout is its Markdown table."""
    if not APP_BENCH.exists():
        return {"skipped": "bench/bench_app.py is not present"}
    cmd = [sys.executable, str(APP_BENCH)] + (["--sizes", "256", "--steps", "3"] if quick else [])
    t = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    except subprocess.TimeoutExpired:
        return {"skipped": f"bench/bench_app.py did not finish within {timeout:.0f} s", "cmd": cmd}
    out = {"cmd": cmd, "rc": p.returncode, "stdout": p.stdout.strip(), "wall_s": time.perf_counter() - t}
    if p.returncode != 0:
        out["stderr_tail"] = p.stderr.strip()[-2000:]
    return out


def _met(s: Stats, target: float) -> str:
    """yes: the whole IQR is within the target; no: all of it is above; else the spread decides nothing."""
    if s.q3 <= target:
        return "yes"
    if s.q1 > target:
        return "no"
    return "borderline (IQR spans the target)"


def verdicts(res: dict) -> list[str]:
    rows = ["| measurement | target | measured (median [IQR]) | met? |", "|---|---|---|---|"]
    for c in res.get("overhead", {}).get("cases", []):
        for v in bench_overhead.VARIANTS:
            target = TARGET_ON if v.endswith("+tel") else TARGET_OFF.get(c["model"], TARGET_OFF_DEFAULT)
            s = _s(c["ratio"][v])
            rows.append(f"| {c['model']}: {v.replace('+tel', ' telemetry on') if '+tel' in v else v + ' telemetry off'}"
                        f" / bare | ≤ {target:.2f} | {s.ratio()} | {_met(s, target)} |")
    for c in res.get("overhead", {}).get("cases", []):
        if c["model"].startswith("selfie") and "ratio" in c["objective"]:
            s = _s(c["objective"]["ratio"])
            rows.append(f"| {c['model']}: objective as an attack evaluation computes it (telemetry off) / float32 CE fwd+bwd | "
                        f"≤ {TARGET_OBJECTIVE:.2f} | {s.ratio()} | {_met(s, TARGET_OBJECTIVE)} |")
    for c in res.get("replay", {}).get("cases", []):
        s = _s(c["ratio"])
        rows.append(f"| selfie ({c['variant']}): replay fwd+bwd / static torch module of the same layers | "
                    f"≤ {bench_replay.TARGET:.2f} | {s.ratio()} | {_met(s, bench_replay.TARGET)} |")
    if "store" in res:
        s = _s(res["store"]["ratio"])
        rows.append(f"| default app run: app / engine time per record (telemetry on) | ≤ {bench_store.TARGET:.2f} | "
                    f"{s.ratio()} | {_met(s, bench_store.TARGET)} |")
    for c in res.get("peer", {}).get("cases", []):
        s = _s(c["per_step_ratio"])
        rows.append(f"| {c['model']}: CE-PGD ours / torchattacks, per step | ≤ {TARGET_PEER:.2f} | {s.ratio()} | "
                    f"{_met(s, TARGET_PEER)} |")
        w = _s(c["whole_ratio"])
        rows.append(f"| {c['model']}: CE-PGD ours / torchattacks, whole call ({c.get('whole_steps', c['steps'])} steps) | ≤ {TARGET_PEER:.2f} | "
                    f"{w.ratio()} | {_met(w, TARGET_PEER)} |")
        o = c["outcome"]
        if "ours_plain_final" in o:
            same = abs(o["ours_plain_final"] - o["torchattacks_final"]) < 1e-9
            rows.append(f"| {c['model']}: adversarial accuracy, ours (plain numerics) = torchattacks | equal | "
                        f"{o['ours_plain_final']:.4f} vs {o['torchattacks_final']:.4f} | {'yes' if same else 'no'} |")
    gpu_md = ROOT / "bench" / "results" / "gpu_bench.md"
    rows.append("| GPU: it/s and engine/bare, selfie 256² and SegFormer-B0 512²/1024², batch 1/8, fp32/bf16 | measured "
                f"| {'see section 5' if gpu_md.exists() else 'not run'} | "
                f"{'yes' if gpu_md.exists() else 'no: no GPU was available (section 5)'} |")
    rows += ["", "Each miss is explained, with its profile, under *What bounds the ratios* at the end."]
    return rows


def render(res: dict, argv: list[str]) -> str:
    m = res["machine"]
    cmd = "python -m bench" + ("" if not argv else " " + " ".join(argv))
    L = [
        "# Benchmarks",
        "",
        f"_Generated by `{cmd}` on {res['started']} in {res['wall_s']:.0f} s. Do not edit by hand: edit "
        "`bench/run_all.py` or `bench/ANALYSIS.md` and re-run (`--render-only` re-renders the saved numbers)._",
        "",
        "## Machine and settings",
        "",
        f"* CPU: {m['cpu']}, {m['logical_cpus']} logical CPUs ({m['cpus_available']} available to this process)",
        f"* torch {m['torch']}, `torch.set_num_threads({m['torch_threads']})`, interop threads {m['interop_threads']}, "
        f"`OMP_WAIT_POLICY={m.get('omp_wait_policy')}` (set by `bench/__init__.py` unless given; see the analysis), "
        f"Python {m['python']}, {m['platform']}",
        f"* clock: {'process CPU time (`BENCH_CLOCK=cpu`)' if m.get('clock') == 'cpu' else 'wall time'} for every "
        "CPU timing; ratios are of samples taken side by side.",
        f"* load average (1/5/15 min) at start {m['loadavg']}, at end {res['machine_end']['loadavg']}. "
        "Other processes shared these cores during the run: absolute times are noisy; the ratios are computed from "
        "interleaved samples (A B C … then … C B A, per round) and are the robust numbers.",
        "* Inputs are seeded uniform noise; models have random weights (timing does not depend on the weights), "
        "except the bundled MediaPipe selfie model. Labels are the clean prediction. ε = 8/255.",
        "",
        "Commands:",
        "",
        "```bash",
        ". .venv/bin/activate",
        "pip install --no-deps -r bench/requirements.txt   # torchattacks (peer comparison); optional",
        "python -m bench                                   # all CPU parts, rewrites BENCHMARKS.md (6-11 min, 2 cores)",
        "python -m bench.bench_overhead --case selfie-256  # one part / one case; each module has --help",
        "python bench/gpu_bench.py                         # GPU machine only (see the GPU section)",
        "```",
        "",
        "## Targets",
        "",
        *verdicts(res),
        "",
        "## 1. Overhead against the floor (one forward + one backward)",
        "",
        "Ratio = seconds per iteration of the variant / seconds per iteration of the bare loop "
        "(forward, float32 `F.cross_entropy`, backward to the input, sign step, projection), the same model, input, "
        f"and thread settings, computed per round of interleaved samples; median [IQR] over rounds. Attack: "
        f"{bench_overhead.ATTACK} (the default). One PGD/APGD iteration = one `AttackRun` record = one model "
        "evaluation. Times in ms: median [IQR].",
        "",
    ]
    L += [bench_overhead.markdown(res["overhead"]) if "overhead" in res else "_not run_", ""]
    L += ["### The model against a static module of the same layers", "", bench_replay.__doc__.split("\n\n", 1)[1]
          .replace("\n", " ").strip(), "",
          bench_replay.markdown(res["replay"]) if "replay" in res else "_not run_", ""]
    L += ["### What the app stores per record", "", bench_store.__doc__.split("\n\n", 1)[1].replace("\n", " ").strip(),
          "", bench_store.markdown(res["store"]) if "store" in res else "_not run_", ""]
    L += ["## 2. Against a peer: CE-PGD vs torchattacks.PGD", "",
          "Same model, input, ε = 8/255, step 2/255, no random start on either side (both start at the clean "
          "image), labels = the clean prediction. *Per step*: torchattacks' whole call / its steps vs our steady-state "
          "record time (telemetry off). *Whole call*: `AttackRun(...).run()` = a clean forward (clean metrics, "
          "labels), `steps` forward+backward evaluations and a forward-only evaluation of the final iterate (its "
          "accuracy decides the best iterate) vs `atk(x, y)` + the one forward needed for its adversarial accuracy: "
          "ours does one forward more by design.", ""]
    L += [bench_peer.markdown(res["peer"]) if "peer" in res else "_not run_", ""]
    if res.get("note_peer"):
        L += [f"_Note: {res['note_peer']}._", ""]
    L += ["## 3. Scaling with resolution and batch", "",
          "PGD (TsallisPGD), telemetry off. The selfie adapter resizes any input to its native 256² inside the "
          "model, so its cost grows with the input only through the resizes and the objective; SegFormer-B0 runs "
          "at the input size. Cells that would overrun the part's time budget are skipped (said in the table).", ""]
    L += [bench_scaling.markdown(res["scaling"]) if "scaling" in res else "_not run_", ""]
    L += ["## 4. The app: payload and render time", ""]
    app = res.get("app")
    if app is None:
        L.append("_not run_")
    elif "skipped" in app:
        L.append(f"_Skipped: {app['skipped']}._")
    else:
        L.append(f"From `{' '.join(Path(c).name if i == 1 else c for i, c in enumerate(app['cmd'][1:], 1))}` "
                 f"(rc {app['rc']}, {app['wall_s']:.0f} s):")
        text = app["stdout"] or "_no output_"
        L += ["", text if text.lstrip().startswith("|") else f"```text\n{text}\n```"]
        if app.get("stderr_tail"):
            L += ["", "```", app["stderr_tail"], "```"]
    L += ["", "## 5. GPU", "",
          "Not run by this command (no GPU here), and not run for issue 16 either: no GPU machine was available to "
          "either of its sessions (the device pool's status was \"not drawn\" for the whole session, the second time "
          "on 2026-12-01: \"this workplace lends no device machine through the draw\"). Prepared: on a machine "
          "with an NVIDIA GPU, `python bench/gpu_bench.py` measures the bundled selfie model at 256² and "
          "SegFormer-B0 (150 classes, random weights) at 512² and 1024², batch 1 and 8, fp32 and bf16 autocast, "
          "telemetry off and on: iterations/s, engine/bare ratios as in section 1 and working memory; it writes "
          "`gpu_bench.md`/`.json` to `$OUT` or `bench/out/`. Results, when a run has been made, go to "
          "`bench/results/gpu_bench.md` and appear here. The app and the CLI pick CUDA by themselves when PyTorch "
          "sees a GPU (`--device auto`, `TSALLIS_DEVICE`) and name the device in the status line / first output "
          "line (tested with CUDA mocked, `tests/test_device.py`).", ""]
    gpu_md = ROOT / "bench" / "results" / "gpu_bench.md"
    if gpu_md.exists():
        L += [gpu_md.read_text().strip(), ""]
    qlens_md = ROOT / "bench" / "QLENS_BROWSER.md"  # hand-written results of bench/bench_qlens_browser.py
    if qlens_md.exists():
        L += [qlens_md.read_text().strip(), ""]
    live_md = ROOT / "bench" / "LIVE_BROWSER.md"  # hand-written results of bench/bench_browser.py
    if live_md.exists():
        L += [live_md.read_text().strip(), ""]
    looks_md = ROOT / "bench" / "LOOKS.md"  # hand-written results of bench/bench_looks.py
    if looks_md.exists():
        L += [looks_md.read_text().strip(), ""]
    if ANALYSIS.exists():
        L += [ANALYSIS.read_text().strip(), ""]
    return "\n".join(L) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke test; does not touch BENCHMARKS.md unless --out")
    ap.add_argument("--only", nargs="+", choices=PARTS, help="run only these parts")
    ap.add_argument("--threads", type=int, default=THREADS)
    ap.add_argument("--out", help="Markdown output (default BENCHMARKS.md; with --quick bench/results/quick.md)")
    ap.add_argument("--render-only", action="store_true",
                    help="run nothing: re-render BENCHMARKS.md from bench/results/run_all.json (after editing "
                         "ANALYSIS.md or the layout)")
    a = ap.parse_args(argv)
    if a.render_only:
        res = json.loads((ROOT / "bench" / "results" / "run_all.json").read_text())
        md_path = Path(a.out) if a.out else ROOT / "BENCHMARKS.md"
        md_path.write_text(render(res, res.get("argv", [])))
        print(f"re-rendered {md_path} from bench/results/run_all.json")
        return 0
    threads = set_threads(a.threads)
    parts = a.only or PARTS
    t0 = time.perf_counter()
    res: dict = {"started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine_info(),
                 "threads": threads, "quick": a.quick, "argv": argv, "timings": {}}
    for part in parts:
        t = time.perf_counter()
        print(f"[{t - t0:6.1f} s] {part} …", flush=True)
        if part == "overhead":
            res[part] = bench_overhead.run(a.quick)
        elif part == "peer":
            res[part] = bench_peer.run(a.quick)
        elif part == "scaling":
            res[part] = bench_scaling.run(a.quick)
        elif part == "replay":
            res[part] = bench_replay.run(a.quick)
        elif part == "store":
            res[part] = bench_store.run(a.quick)
        else:
            res[part] = run_app_bench(a.quick)
        res["timings"][part] = time.perf_counter() - t
    res["wall_s"] = time.perf_counter() - t0
    res["machine_end"] = machine_info()
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / ("run_all_quick.json" if a.quick else "run_all.json")).write_text(json.dumps(res, indent=1, default=str))
    md_path = Path(a.out) if a.out else (out_dir / "quick.md" if a.quick else ROOT / "BENCHMARKS.md")
    md_path.write_text(render(res, argv))
    print(f"[{res['wall_s']:6.1f} s] wrote {md_path}; per part: " +
          ", ".join(f"{k} {v:.0f} s" for k, v in res["timings"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
