"""APGD's step-size rule: the reference's (``apgd``) against the one this engine used before 2026-12-01.

The legacy rule (:data:`LEGACY_RULE`, defined here only: the engine ships the reference's) shrinks the checkpoint
interval by ``⌊0.03 n⌋`` (0 for stages shorter than 34 steps, so fewer checkpoints) and can halve at a stage's first
checkpoint; the rest of the loop (control objective, hand-off) is today's, the same for both. Everything else is
the same run: the bundled MediaPipe selfie model, the 5 bundled photos in one batch (labels = clean prediction,
256×256), telemetry off, the same seed (= the same random start) for both rules. Strength = pixel accuracy of the
returned iterate (lower = stronger); the comparison is paired by seed (mean over the 5 photos per seed) with a
two-sided Wilcoxon signed-rank test and a paired t-test per attack, Holm-corrected over the attacks.

    python -m bench.apgd_rule_study --steps 30 --seeds 0-9 --eps 1   # bench/results/apgd_rule_study.{json,md}
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from attack_engine.attack import REFERENCE_RULE, AttackConfig, AttackRun, StepSizeRule
from attack_engine.models import load_model
from attack_engine.registry import attack_names, attack_title
from bench.common import machine_info, set_threads
from bench.saturation import photos

OUT = Path(__file__).resolve().parent / "results"
# The rule this engine used before 2026-12-01: interval decrement ⌊0.03 n⌋ (may be 0), halving at the first checkpoint.
LEGACY_RULE = StepSizeRule("legacy", min_decrement=0, halve_at_first=True)
RULES = {"reference": REFERENCE_RULE, "legacy": LEGACY_RULE}


def parse_seeds(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",")]


def run_all(model, x: torch.Tensor, steps: int, seeds: list[int], eps: float, attacks: list[str]) -> list[dict]:
    with torch.no_grad():
        labels = model(x).argmax(1)
    rows = []
    for name in attacks:
        for seed in seeds:
            for rule_name, rule in RULES.items():  # the two rules back to back: the same load for both
                cfg = AttackConfig(attack=name, optimizer="apgd", steps=steps, eps=eps, seed=seed, telemetry=False)
                t0 = time.perf_counter()
                res = AttackRun(model, x, labels, cfg, step_rule=rule).run()
                rows.append({"attack": name, "seed": seed, "rule": rule_name, "acc": res.acc.tolist(),
                             "miou": res.miou.tolist(), "seconds": time.perf_counter() - t0})
                print(f"{name:10s} seed {seed:2d} {rule_name:9s} acc {statistics.mean(rows[-1]['acc']):.4f} "
                      f"({rows[-1]['seconds']:.1f} s)", flush=True)
    return rows


def holm(pvalues: dict[str, float]) -> dict[str, float]:
    """Holm-Bonferroni adjusted p-values."""
    order = sorted(pvalues, key=pvalues.get)
    out, running = {}, 0.0
    for i, k in enumerate(order):
        running = max(running, min(1.0, (len(order) - i) * pvalues[k]))
        out[k] = running
    return out


def summarise(rows: list[dict], attacks: list[str], seeds: list[int]) -> list[dict]:
    from scipy import stats

    out = []
    for name in attacks:
        by = {(r["rule"], r["seed"]): r for r in rows if r["attack"] == name}
        ref = [statistics.mean(by["reference", s]["acc"]) for s in seeds]
        leg = [statistics.mean(by["legacy", s]["acc"]) for s in seeds]
        diff = [b - a for a, b in zip(ref, leg)]  # legacy - reference: < 0 means the legacy rule is stronger
        per_image = [b - a for s in seeds for a, b in zip(by["reference", s]["acc"], by["legacy", s]["acc"])]
        nonzero = [d for d in diff if d != 0]
        out.append({
            "attack": name, "mean_acc_reference": statistics.mean(ref), "mean_acc_legacy": statistics.mean(leg),
            "mean_diff": statistics.mean(diff), "sd_diff": statistics.stdev(diff) if len(diff) > 1 else 0.0,
            "seeds_legacy_stronger": sum(d < 0 for d in diff), "seeds_reference_stronger": sum(d > 0 for d in diff),
            "seeds_tied": sum(d == 0 for d in diff),
            "runs_legacy_stronger": sum(d < 0 for d in per_image), "runs_reference_stronger": sum(d > 0 for d in per_image),
            "runs": len(per_image),
            "p_wilcoxon": float(stats.wilcoxon(nonzero).pvalue) if len(nonzero) >= 2 else 1.0,
            "p_ttest": float(stats.ttest_rel(leg, ref).pvalue) if len(nonzero) >= 2 else 1.0,
        })
    for key in ("p_wilcoxon", "p_ttest"):
        adj = holm({r["attack"]: r[key] for r in out})
        for r in out:
            r[key + "_holm"] = adj[r["attack"]]
    return out


def markdown(res: dict) -> str:
    a = res["args"]
    lines = [
        f"APGD {a['steps']} steps, ε = {a['eps_255']}/255, seeds {a['seeds'][0]}–{a['seeds'][-1]} "
        f"({len(a['seeds'])}), {res['images']} bundled photos in one batch (labels = clean prediction), "
        f"mediapipe-selfie, telemetry off; {res['wall_s'] / 60:.1f} min wall on {res['machine'].get('cpu', 'cpu')}.",
        "",
        "Mean pixel accuracy of the returned iterate (lower = stronger); Δ = legacy − reference, paired by seed "
        "(mean over the photos); p two-sided, Holm-corrected over the six attacks.",
        "",
        "| attack | reference | legacy | Δ mean ± sd (pp) | seeds legacy / reference stronger / tied | "
        "runs (photo × seed) legacy / reference stronger / of | p Wilcoxon (Holm) | p t-test (Holm) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in res["summary"]:
        lines.append(
            f"| {attack_title(r['attack'])} | {100 * r['mean_acc_reference']:.2f} % | {100 * r['mean_acc_legacy']:.2f} % "
            f"| {100 * r['mean_diff']:+.2f} ± {100 * r['sd_diff']:.2f} | {r['seeds_legacy_stronger']} / "
            f"{r['seeds_reference_stronger']} / {r['seeds_tied']} | {r['runs_legacy_stronger']} / "
            f"{r['runs_reference_stronger']} / {r['runs']} | {r['p_wilcoxon']:.3f} ({r['p_wilcoxon_holm']:.3f}) "
            f"| {r['p_ttest']:.3f} ({r['p_ttest_holm']:.3f}) |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--seeds", default="0-9")
    ap.add_argument("--eps", type=float, default=1.0, help="ε in /255")
    ap.add_argument("--attacks", default=",".join(attack_names()))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(OUT / "apgd_rule_study.json"))
    a = ap.parse_args()
    set_threads(a.threads)
    seeds, attacks = parse_seeds(a.seeds), a.attacks.split(",")
    model = load_model("mediapipe-selfie")
    x, ids = photos(model)
    t0 = time.perf_counter()
    rows = run_all(model, x, a.steps, seeds, a.eps / 255, attacks)
    res = {"args": {"steps": a.steps, "seeds": seeds, "eps_255": a.eps, "attacks": attacks, "threads": a.threads},
           "images": len(ids), "image_ids": ids, "machine": machine_info(), "wall_s": time.perf_counter() - t0,
           "rows": rows, "summary": summarise(rows, attacks, seeds)}
    Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    Path(a.out).with_suffix(".md").write_text(markdown(res) + "\n")
    print(markdown(res))


if __name__ == "__main__":
    main()
