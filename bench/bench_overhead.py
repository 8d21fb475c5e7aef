"""Item 1: cost of an attack iteration against its floor (one forward + one backward of the model).

For each model: seconds per iteration of

* ``bare``: forward, float32 pixel-mean cross-entropy (``F.cross_entropy``), backward to the input, sign step,
  projection onto the ε-ball and [0, 1] (the least any L∞ PGD iteration can do);
* ``pgd`` / ``apgd``: one :class:`attack_engine.AttackRun` record (= one model evaluation: forward, the attack's
  float64 objective, backward, the optimiser's step and bookkeeping), telemetry off and on.

Samples of k iterations are taken round-robin (bare, pgd, pgd+tel, apgd, apgd+tel, then the reverse order, ...)
from long-running loops, so every variant sees the same machine state; the ratio is computed per round
(variant sample / bare sample of the same round) and reported as median [IQR] over rounds.

A diagnostic second table times the objective alone on the model's logits (ours, float64, vs float32
``F.cross_entropy``), forward + backward to the logits.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from attack_engine import AttackConfig, AttackRun, threads
from attack_engine.attack import gradient_log_scale
from attack_engine.losses import pixel_terms
from bench import models as M
from bench.common import Stats, bare_loop, cli_main, clock, interleave, paired_ratios, record_sampler, set_threads

EPS = 8 / 255
VARIANTS = ("pgd", "pgd+tel", "apgd", "apgd+tel")
ATTACK = "tsallis"  # the project's default attack (the most expensive objective: schedule + weights)

# name -> (builder, side, rounds, k)
CASES = {
    "selfie-256": (M.selfie, 256, 40, 4),  # many short rounds: on a shared VM the per-round ratio varies ±0.1
    "segformer-b0-512": (functools.partial(M.segformer_b0, 150), 512, 6, 1),
}
QUICK = {"selfie-256": (M.selfie, 256, 3, 2), "segformer-b0-256": (functools.partial(M.segformer_b0, 150), 256, 2, 1)}


def _input(side: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, side, side, generator=g)


def measure_case(name: str, builder, side: int, rounds: int, k: int, attack: str = ATTACK) -> dict:
    model, impl = builder()
    x0 = _input(side)
    with torch.no_grad():
        y = model(x0).argmax(1)
    # 4x the records sampled: APGD's first stage (0.3 N) then covers every sample, so no sample lands on a stage's
    # last evaluation, which with telemetry off is forward-only (cheaper) and would bias the steady-state time
    steps = 4 * ((rounds + 2) * k + 4)
    samplers = {"bare": functools.partial(bare_loop(model, x0, y, EPS, EPS / 4), k)}
    for v in VARIANTS:
        cfg = AttackConfig(attack=attack, optimizer=v.split("+")[0], eps=EPS, steps=steps, telemetry=v.endswith("+tel"))
        run = AttackRun(model, x0, None, cfg)
        samplers[v] = functools.partial(record_sampler(iter(run), x0), k)
    samples = interleave(samplers, rounds, warmup=1)
    out = {
        "model": name, "impl": impl, "params": M.param_count(model), "classes": model.info.num_classes,
        "input": [1, 3, side, side], "attack": attack, "rounds": rounds, "k": k,
        "seconds": {n: Stats.of(s).to_dict() for n, s in samples.items()},
        "ratio": {v: Stats.of(paired_ratios(samples[v], samples["bare"])).to_dict() for v in VARIANTS},
        # interference only ever adds time: the ratio of the fastest samples is a second, noise-robust estimate
        "ratio_of_minima": {v: min(samples[v]) / min(samples["bare"]) for v in VARIANTS},
        "samples": samples,
    }
    out["objective"] = objective_cost(model, x0, y, attack, rounds=max(6, rounds))
    # what the objective accounts for: (ours - float32 CE) on the logits, relative to the bare iteration
    ob = out["objective"]
    out["objective_share"] = (ob["ours"]["median"] - ob["ce_f32"]["median"]) / out["seconds"]["bare"]["median"]
    return out


def objective_cost(model, x0: torch.Tensor, y: torch.Tensor, attack: str, rounds: int) -> dict:
    """The objective alone on fixed logits, as the attack computes it, against float32 CE (forward + backward).

    * ``ce_f32``: ``F.cross_entropy`` and ``torch.autograd.grad`` to the logits (what the bare loop does);
    * ``ours`` / ``ours+tel``: what one :class:`AttackRun` evaluation does on the logits, telemetry off / on:
      :func:`pixel_terms` without autograd, the per-image gradient scale and ``PixelTerms.logit_grad``;
    * ``ours_autograd``: ``pixel_terms`` with autograd and ``torch.autograd.grad`` of its pixel mean (the library
      path for callers who differentiate the loss themselves; diagnostic).

    All of them run with the thread setting the engine's own ops run with (:func:`attack_engine.threads.lean`:
    one thread when the OpenMP workers sleep, as under ``python -m bench``; else the pool), so the ratio compares
    the arithmetic, not the thread hand-offs.
    """
    with torch.no_grad():
        logits = model(x0)

    def ce() -> float:
        z = logits.detach().requires_grad_(True)
        with threads.lean():
            t = clock()
            torch.autograd.grad(F.cross_entropy(z, y), z)
            return clock() - t

    ws: dict = {}  # as AttackRun does: the objective's per-pixel buffers are reused between calls

    def ours(tel: bool) -> float:
        z = logits.detach()
        with threads.lean(), torch.no_grad():
            t = clock()
            terms = pixel_terms(attack, z, y, step=1, total=10, with_grad_norm=tel, workspace=ws)
            log_scale, log_n = gradient_log_scale(terms.log_grad, z.dtype)
            terms.logit_grad(log_scale - log_n, 1.0)
            if tel:
                terms.weight  # noqa: B018  (telemetry reads the weight)
            return clock() - t

    ws_ag: dict = {}

    def ours_autograd() -> float:
        z = logits.detach().requires_grad_(True)
        with threads.lean():
            t = clock()
            terms = pixel_terms(attack, z, y, step=1, total=10, workspace=ws_ag)
            torch.autograd.grad(terms.loss.flatten(1).mean(1).sum(), z)
            return clock() - t

    s = interleave({"ce_f32": ce, "ours": functools.partial(ours, False), "ours+tel": functools.partial(ours, True),
                    "ours_autograd": ours_autograd}, rounds, warmup=1)
    out = {n: Stats.of(v).to_dict() for n, v in s.items()}
    out["ratio"] = Stats.of(paired_ratios(s["ours"], s["ce_f32"])).to_dict()  # ours / float32 CE, per round
    out["ratio+tel"] = Stats.of(paired_ratios(s["ours+tel"], s["ce_f32"])).to_dict()
    out["ratio_autograd"] = Stats.of(paired_ratios(s["ours_autograd"], s["ce_f32"])).to_dict()
    out["threads"] = "one thread (attack_engine.threads)" if threads.active() else f"{torch.get_num_threads()} threads"
    return out


def run(quick: bool = False, cases: list[str] | None = None) -> dict:
    threads = set_threads()
    table = QUICK if quick else CASES
    res = {"threads": threads, "cases": []}
    for name, (builder, side, rounds, k) in table.items():
        if cases and name not in cases:
            continue
        res["cases"].append(measure_case(name, builder, side, rounds, k))
    return res


def markdown(res: dict) -> str:
    lines = [
        "| model (input, rounds × iterations) | bare ms | PGD ms | PGD / bare | PGD+tel / bare | APGD / bare "
        "| APGD+tel / bare |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in res["cases"]:
        s, r, mn = c["seconds"], c["ratio"], c["ratio_of_minima"]
        cells = " | ".join(f"{Stats(**_st(r[v])).ratio()}; min/min {mn[v]:.3f}" for v in VARIANTS)
        lines.append(f"| {c['model']} ({c['classes']} classes, {c['input'][-1]}², {c['rounds']}×{c['k']}) "
                     f"| {Stats(**_st(s['bare'])).ms()} | {Stats(**_st(s['pgd'])).ms()} | {cells} |")
    lines += ["", "Cells: median [IQR] of the per-round ratios; *min/min* = fastest sample of the variant / fastest bare "
              "sample (interference only adds time, so this is the less noise-sensitive estimate).", "",
              "Objective alone on the model's logits, ms, median [IQR]: float32 CE forward + backward to the logits "
              "vs ours as one attack evaluation computes it (the per-pixel terms without autograd, the per-image "
              "scale, the closed-form logit gradient), on the thread setting the engine's own ops run with; "
              "*autograd*: `pixel_terms` + `torch.autograd.grad` (the library path for callers who differentiate "
              "the loss themselves); last column: the difference to float32 CE as a share of the bare iteration:", "",
              "| model (threads) | float32 `F.cross_entropy` | ours, telemetry off | ours, telemetry on "
              "| ours / CE (off) | ours / CE (on) | autograd path / CE | (ours − CE) / bare |",
              "|---|---|---|---|---|---|---|---|"]
    for c in res["cases"]:
        o = c["objective"]
        ratios = " | ".join(Stats(**_st(o[k])).ratio() if k in o else "–"
                            for k in ("ratio", "ratio+tel", "ratio_autograd"))
        lines.append(f"| {c['model']} ({o.get('threads', '–')}) | {Stats(**_st(o['ce_f32'])).ms()} "
                     f"| {Stats(**_st(o['ours'])).ms()} | {Stats(**_st(o['ours+tel'])).ms()} | {ratios} "
                     f"| {c['objective_share']:+.1%} |")
    return "\n".join(lines)


def _st(d: dict) -> dict:
    return dict(median=d["median"], q1=d["q1"], q3=d["q3"], lo=d["min"], hi=d["max"], n=d["n"])


def main() -> None:
    cli_main(__doc__, run, markdown, tuple(CASES))


if __name__ == "__main__":
    main()
