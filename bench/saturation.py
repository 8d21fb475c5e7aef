"""Saturated models: how many pixels lose their gradient, and what that costs in attack strength and time.

Compares, on the bundled MediaPipe selfie model and the bundled photos (labels = clean prediction):

* ``stable``: this engine — symmetric two-class logits ``[-s/2, s/2]``, the objective in float64 with an
  exact CE gradient, per-image gradient scaling before the model's backward pass;
* ``plain``: a plain float32 implementation of the same formulas, as the reference code builds it —
  logits ``[0, s]``, softmax / ``F.cross_entropy`` autograd in float32, no scaling.

Writes ``bench/results/saturation.json`` and ``bench/results/saturation.md``.

    python -m bench.saturation                 # full protocol: APGD 100 iterations, eps 8/255, seeds 0,1,2
    python -m bench.saturation --steps 20 --seeds 0   # quick look
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch

from attack_engine.attack import AttackConfig, AttackRun
from attack_engine.examples import list_examples, load_example
from attack_engine.images import model_size, resize_image, to_tensor
from attack_engine.losses import pixel_terms, plain_pixel_loss
from attack_engine.models import SegModel, load_model
from attack_engine.registry import attack_names, attack_title

OUT = Path(__file__).resolve().parent / "results"


class ZeroFirstLogits(SegModel):
    """The selfie model with logits ``[0, s]``: all of the signal in one logit (the reference's construction)."""

    def __init__(self, base: SegModel) -> None:
        super().__init__(base.info)
        self.base = base

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        s = self.base.score(x)
        s = s[:, 0] if s.dim() == 4 else s
        return torch.stack([torch.zeros_like(s), s], 1)


def photos(model: SegModel) -> tuple[torch.Tensor, list[str]]:
    ids = [e.id for e in list_examples()]
    xs = []
    for i in ids:
        img, _ = load_example(i)
        x = to_tensor(img)
        xs.append(resize_image(x, model_size(tuple(x.shape[-2:]), model.info.input_size)))
    return torch.cat(xs), ids


def zero_shares(model: SegModel, zero_first: SegModel, x: torch.Tensor) -> list[dict]:
    """Share of pixels whose per-pixel |dℓ/dz| is exactly zero at the clean input, per image."""
    rows = []
    with torch.no_grad():
        labels = model(x).argmax(1)
    for name, q in [("ce", None), ("tsallis", -2.0), ("tsallis", 0.0), ("tsallis", 0.5), ("tsallis", 1.0)]:
        # plain: float32 autograd through [0, s] logits (gradient of the per-pixel loss sum w.r.t. the logits)
        z = zero_first(x).detach().requires_grad_(True)
        plain = plain_pixel_loss(name, z, labels, q=q)
        (g,) = torch.autograd.grad(plain.sum(), z)
        plain_zero = (g.abs().sum(1) == 0).flatten(1).float().mean(1)
        # stable: log-space |dℓ/dz| of this engine (what the viewer shows) ...
        terms = pixel_terms(name, model(x).detach(), labels, q=q, with_grad_norm=True)
        stable_zero = (~torch.isfinite(terms.log_grad)).flatten(1).float().mean(1)
        # ... and the float32 gradient that actually enters the model's backward pass, and the input gradient
        run = AttackRun(model, x, labels, AttackConfig(attack=name, schedule=None if q is None else f"const:{q}",
                                                       optimizer="pgd", steps=1, random_start=False))
        grads = []
        orig = model.logits

        def hooked(inp, orig=orig, grads=grads):
            out = orig(inp)
            if out.requires_grad:
                out.register_hook(lambda gg: grads.append(gg.detach()))
            return out

        model.logits = hooked
        try:
            rec = next(iter(run))
        finally:
            del model.logits
        f32_zero = (grads[0].abs().sum(1) == 0).flatten(1).float().mean(1)
        input_zero = (rec.grad_input == 0).flatten(1).float().mean(1)
        rows.append({"attack": name, "q": q, "plain_zero": plain_zero.tolist(), "stable_zero": stable_zero.tolist(),
                     "stable_f32_logit_grad_zero": f32_zero.tolist(), "stable_input_grad_zero": input_zero.tolist()})
    return rows


def strength(model: SegModel, zero_first: SegModel, x: torch.Tensor, steps: int, seeds: list[int], eps: float,
             attacks: tuple[str, ...] | None = None) -> list[dict]:
    rows = []
    with torch.no_grad():
        labels = model(x).argmax(1)
    for name in attacks or attack_names():
        row = {"attack": name}
        for mode, m, numerics in [("stable", model, "stable"), ("plain", zero_first, "plain")]:
            accs, secs = [], []
            for seed in seeds:
                cfg = AttackConfig(attack=name, optimizer="apgd", steps=steps, eps=eps, seed=seed, telemetry=False,
                                   numerics=numerics)
                t0 = time.perf_counter()
                res = AttackRun(m, x, labels, cfg).run()
                secs.append((time.perf_counter() - t0) / (steps + 3))
                accs.append(res.acc.tolist())
            row[mode] = {"acc_per_seed_image": accs, "mean_acc": float(torch.tensor(accs).mean()),
                         "sec_per_iter": statistics.median(secs)}
            print(f"{name:10s} {mode:6s} mean acc {row[mode]['mean_acc']:.4f}  {row[mode]['sec_per_iter'] * 1e3:.1f} ms/it",
                  flush=True)
        rows.append(row)
    return rows


def timing(model: SegModel, zero_first: SegModel, x: torch.Tensor, reps: int = 7, steps: int = 10) -> dict:
    """Interleaved time per iteration: stable objective vs plain float32 objective (same model, telemetry off)."""
    with torch.no_grad():
        labels = model(x).argmax(1)
    t = {"stable": [], "plain": []}
    for _ in range(reps):
        for mode in ("stable", "plain"):
            cfg = AttackConfig(attack="tsallis", optimizer="pgd", steps=steps, telemetry=False, numerics=mode)
            t0 = time.perf_counter()
            AttackRun(model if mode == "stable" else zero_first, x, labels, cfg).run()
            t[mode].append((time.perf_counter() - t0) / (steps + 1))
    ratio = [a / b for a, b in zip(t["stable"], t["plain"])]
    return {"stable_ms": statistics.median(t["stable"]) * 1e3, "plain_ms": statistics.median(t["plain"]) * 1e3,
            "ratio_median": statistics.median(ratio), "ratio_min": min(ratio), "ratio_max": max(ratio)}


def markdown(res: dict) -> str:
    ids = res["images"]
    lines = ["## Saturated models: pixels that keep their gradient (issue 8)", "",
             f"Bundled MediaPipe selfie model, bundled photos ({', '.join(ids)}), labels = clean prediction, clean input.",
             "Share of pixels whose per-pixel |∂ℓ/∂z| is exactly zero (mean over images, worst image in brackets):", "",
             "| objective | plain float32, logits [0, s] | this engine, log-space |∂ℓ/∂z| | this engine, float32 gradient entering the model | this engine, input-gradient pixels |",
             "|---|---|---|---|---|"]
    for r in res["zero"]:
        name = "CE" if r["attack"] == "ce" else f"Tsallis q={r['q']:g}"
        cells = [f"{statistics.mean(v):.1%} ({max(v):.1%})" for v in
                 (r["plain_zero"], r["stable_zero"], r["stable_f32_logit_grad_zero"], r["stable_input_grad_zero"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    s = res["strength_setup"]
    lines += ["", f"Attack strength: APGD {s['steps']} iterations, ε = {s['eps_255']:g}/255, seeds {s['seeds']}, "
              "mean pixel accuracy over images and seeds (lower = stronger):", "",
              "| attack | plain float32, logits [0, s] | this engine | ms/iter plain | ms/iter engine | "
              "runs (image × seed) where the engine is stronger / weaker / of |", "|---|---|---|---|---|---|"]
    for r in res["strength"]:
        a, b = torch.tensor(r["plain"]["acc_per_seed_image"]), torch.tensor(r["stable"]["acc_per_seed_image"])
        paired = f"{int((b < a - 1e-3).sum())} / {int((b > a + 1e-3).sum())} / {b.numel()}"
        lines.append(f"| {attack_title(r['attack'])} | {r['plain']['mean_acc']:.4f} | {r['stable']['mean_acc']:.4f} | "
                     f"{r['plain']['sec_per_iter'] * 1e3:.0f} | {r['stable']['sec_per_iter'] * 1e3:.0f} | {paired} |")
    t = res["timing"]
    lines += ["", f"Cost (interleaved, TsallisPGD, PGD, telemetry off, batch of {len(ids)} at 256²): engine "
              f"{t['stable_ms']:.1f} ms/iter vs plain {t['plain_ms']:.1f} ms/iter, ratio {t['ratio_median']:.3f} "
              f"(min {t['ratio_min']:.3f}, max {t['ratio_max']:.3f}).", "",
              f"Command: `{res['command']}` ({res['threads']} threads, torch {res['torch']}).", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--eps", type=float, default=8.0, help="in /255")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--attacks", default=",".join(attack_names()), help="comma-separated subset for the strength table")
    ap.add_argument("--tag", default="", help="suffix for the output files (saturation<tag>.json/.md)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = load_model("mediapipe-selfie")
    zero_first = ZeroFirstLogits(model).freeze()
    x, ids = photos(model)
    seeds = [int(s) for s in a.seeds.split(",")]
    res = {"images": ids, "torch": torch.__version__, "threads": a.threads,
           "command": f"python -m bench.saturation --steps {a.steps} --seeds {a.seeds} --eps {a.eps:g} --threads {a.threads}"
                      + (f" --attacks {a.attacks} --tag {a.tag}" if a.tag else ""),
           "strength_setup": {"steps": a.steps, "eps_255": a.eps, "seeds": seeds}}
    res["zero"] = zero_shares(model, zero_first, x)
    res["timing"] = timing(model, zero_first, x)
    res["strength"] = strength(model, zero_first, x, a.steps, seeds, a.eps / 255, tuple(a.attacks.split(",")))
    OUT.mkdir(exist_ok=True)
    md = markdown(res)
    (OUT / f"saturation{a.tag}.json").write_text(json.dumps(res, indent=1))
    (OUT / f"saturation{a.tag}.md").write_text(md)
    print(md)
    assert all(math.isfinite(r["stable"]["mean_acc"]) for r in res["strength"])


if __name__ == "__main__":
    main()
