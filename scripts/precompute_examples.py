"""Precompute the instant-replay runs shipped in ``assets/precomputed/`` for the bundled examples.

Usage::

    python scripts/precompute_examples.py                  # every example, default model and config
    python scripts/precompute_examples.py --examples astronaut --steps 30 --map-side 128

Each run is a compressed ``.npz`` (:meth:`app.trajectory.Trajectory.save`) and ``index.json`` lists them, with
their config, so the app can load one when its example is picked.  Re-running this script reproduces the
files (same seed, same model, CPU).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import app  # noqa: F401  (sets the offline/telemetry environment first)
from app.runner import LiveRun, make_config, prepare
from app.sources import PRECOMPUTED_DIR, bundled_examples
from app.trajectory import save_group
from attack_engine import determinism
from attack_engine.models import DEFAULT_MODEL, load_model
from attack_engine.registry import attack_names, attack_title


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--examples", nargs="*", help="example ids (default: all)")
    ap.add_argument("--attack", default="tsallis")
    ap.add_argument("--optimizer", default="apgd")
    ap.add_argument("--eps", type=float, default=8.0, help="ε in /255")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--schedule", default="linear:-2:1")
    ap.add_argument("--map-side", type=int, default=128, help="longest side of the stored per-pixel maps")
    ap.add_argument("--delta-every", type=int, default=8,
                    help="keep the perturbation (incompressible noise) of every n-th record (+ first, best, last)")
    ap.add_argument("--compare", nargs="*", default=list(attack_names()),
                    help="attacks for the shipped comparison (same config, predictions only); none to skip")
    ap.add_argument("--out", type=Path, default=PRECOMPUTED_DIR)
    args = ap.parse_args(argv)
    determinism.apply()  # the app's thread count: a shipped run is what the app's Run recomputes

    model = load_model(args.model)
    cfg = make_config(args.attack, args.optimizer, args.eps, args.steps, 0, args.seed, args.schedule)
    args.out.mkdir(parents=True, exist_ok=True)
    idx_path = args.out / "index.json"
    runs = json.loads(idx_path.read_text())["runs"] if idx_path.exists() else []
    todo = [e for e in bundled_examples() if not args.examples or e.id in args.examples]
    for ex in todo:
        t0 = time.time()
        mask = ex.mask_for(model.info.num_classes, model.info.class_names)
        prep = prepare(str(ex.image), str(mask) if mask else None, model, ex.id)
        traj = LiveRun(model, prep, cfg, map_side=args.map_side).run_all()
        fname = f"{ex.id}__{args.model}.npz"
        traj.save(args.out / fname, delta_every=args.delta_every)
        entry = {"example": ex.id, "model": args.model, "file": fname, "config": traj.info.config,
                 "records": len(traj), "clean_acc": traj.info.clean_acc, "result_acc": traj.info.extra.get("result_acc")}
        if args.compare:
            group = {}
            for a in args.compare:
                c = make_config(a, args.optimizer, args.eps, args.steps, 0, args.seed, args.schedule)
                group[attack_title(a)] = LiveRun(model, prep, c, light=True, map_side=args.map_side).run_all()
            cname = f"compare__{ex.id}__{args.model}.npz"
            save_group(args.out / cname, group, with_image=False)
            entry["compare_file"] = cname
            entry["compare"] = {k: t.info.extra.get("result_acc") for k, t in group.items()}
        runs = [r for r in runs if not (r["example"] == ex.id and r["model"] == args.model)]
        runs.append(entry)
        size = (args.out / fname).stat().st_size
        print(f"{ex.id}: {len(traj)} records, acc {traj.info.clean_acc:.3f} -> "
              f"{traj.info.extra.get('result_acc', float('nan')):.3f}, {size / 1024:.0f} KiB, {time.time() - t0:.0f} s",
              flush=True)
    runs.sort(key=lambda r: (r["model"], r["example"]))
    idx_path.write_text(json.dumps({"runs": runs}, indent=1) + "\n")
    files = [args.out / f for r in runs for f in (r["file"], r.get("compare_file")) if f]
    total = sum(p.stat().st_size for p in files if p.exists())
    print(f"{len(runs)} runs in {idx_path.parent}, {total / 1024 / 1024:.2f} MiB total")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
