"""Item 2: CE-PGD against ``torchattacks.PGD`` (3.5.1): same model, input, ε, step, iterations, start point.

Both start at the clean image (``random_start=False``), ε = 8/255, step 2/255, the same labels (the clean
prediction).  torchattacks gets dense labels ``[B,H,W]`` through its ``nn.CrossEntropyLoss``.

* time per gradient step: torchattacks' whole call divided by its steps vs ours in steady state (records
  pulled from a running :class:`AttackRun`, telemetry off), interleaved, ratio per round;
* whole call for the same number of steps: ``AttackRun(...).run()`` (clean forward, ``steps`` forward+backward
  evaluations, a forward-only evaluation of the final iterate) vs ``atk(x, y)`` followed by one forward for its
  adversarial accuracy;
* the outcome: adversarial pixel accuracy of the final iterate of both, ours also with
  ``numerics="plain"`` (the textbook float32 objective) where the engine has it.
"""

from __future__ import annotations

import dataclasses
import functools

import torch

from attack_engine import AttackConfig, AttackRun
from attack_engine.metrics import confusion_matrix, pixel_accuracy
from bench import models as M
from bench.common import Stats, cli_main, clock, interleave, paired_ratios, record_sampler, set_threads

EPS, ALPHA = 8 / 255, 2 / 255
# builder, side, steps (per-step samples, outcome), rounds (per-step), rounds (whole call), steps of the whole call
# (issue 16's target is the 100-step call on the selfie model; SegFormer's would take minutes per round)
CASES = {
    "selfie-256": (M.selfie, 256, 10, 24, 8, 100),
    "segformer-b0-512": (functools.partial(M.segformer_b0, 150), 512, 3, 3, 1, 3),
}
QUICK = {"selfie-256": (M.selfie, 256, 3, 2, 1, 3)}


def available() -> str | None:
    """torchattacks' version, or None when it is not importable."""
    try:
        import torchattacks
    except Exception:
        return None
    return torchattacks.__version__


def _acc(model, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        pred = model(x).argmax(1)
    return float(pixel_accuracy(confusion_matrix(pred, y, model.info.num_classes)).mean())


def _config(steps: int, **kw) -> AttackConfig:
    return AttackConfig(attack="ce", optimizer="pgd", eps=EPS, step_size=ALPHA, steps=steps, random_start=False,
                        telemetry=False, **kw)


def measure_case(name: str, builder, side: int, steps: int, rounds: int, rounds_whole: int, whole_steps: int) -> dict:
    import torchattacks

    model, impl = builder()
    x0 = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model(x0).argmax(1)
    atk = torchattacks.PGD(model, eps=EPS, alpha=ALPHA, steps=steps, random_start=False)

    def theirs_step() -> float:
        t = clock()
        atk(x0, y)
        return (clock() - t) / steps

    run = AttackRun(model, x0, y, _config((rounds + 2) * steps + 2))
    per_step = interleave({"torchattacks": theirs_step,
                           "ours": functools.partial(record_sampler(iter(run), x0), steps)}, rounds, warmup=1)

    atk_whole = torchattacks.PGD(model, eps=EPS, alpha=ALPHA, steps=whole_steps, random_start=False)

    def theirs_whole() -> float:
        t = clock()
        adv = atk_whole(x0, y)
        _acc(model, adv, y)
        return clock() - t

    def ours_whole() -> float:
        t = clock()
        AttackRun(model, x0, y, _config(whole_steps)).run()
        return clock() - t

    whole = interleave({"torchattacks": theirs_whole, "ours": ours_whole}, rounds_whole, warmup=0)

    # outcome with the same start point (the clean image)
    adv_t = atk(x0, y)
    outcome = {"torchattacks_final": _acc(model, adv_t, y), "clean": _acc(model, x0, y)}
    fields = {f.name for f in dataclasses.fields(AttackConfig)}
    for numerics in ("stable", "plain") if "numerics" in fields else ("stable",):
        kw = {"numerics": numerics} if "numerics" in fields else {}
        r = AttackRun(model, x0, y, _config(steps, **kw))
        last = None
        for rec in r:
            last = rec
        res = r.result
        outcome[f"ours_{numerics}_final"] = float(last.acc.mean())
        outcome[f"ours_{numerics}_best"] = float(res.acc.mean())
        diff = (last.x_adv - adv_t).abs()
        outcome[f"ours_{numerics}_max_abs_diff_vs_torchattacks"] = float(diff.max())
        outcome[f"ours_{numerics}_share_values_differing"] = float((diff > 1e-6).float().mean())
    return {
        "model": name, "impl": impl, "classes": model.info.num_classes, "input": [1, 3, side, side], "steps": steps,
        "whole_steps": whole_steps,
        "per_step_seconds": {k: Stats.of(v).to_dict() for k, v in per_step.items()},
        "per_step_ratio": Stats.of(paired_ratios(per_step["ours"], per_step["torchattacks"])).to_dict(),
        "whole_seconds": {k: Stats.of(v).to_dict() for k, v in whole.items()},
        "whole_ratio": Stats.of(paired_ratios(whole["ours"], whole["torchattacks"])).to_dict(),
        "outcome": outcome,
    }


def run(quick: bool = False) -> dict:
    threads = set_threads()
    version = available()
    if version is None:
        return {"skipped": "torchattacks is not installed (pip install --no-deps torchattacks==3.5.1)"}
    res = {"threads": threads, "torchattacks": version, "cases": []}
    for name, args in (QUICK if quick else CASES).items():
        res["cases"].append(measure_case(name, *args))
    return res


def _s(d: dict) -> Stats:
    return Stats(d["median"], d["q1"], d["q3"], d["min"], d["max"], d["n"])


def markdown(res: dict) -> str:
    if "skipped" in res:
        return f"_Skipped: {res['skipped']}._"
    lines = [
        "| model (input, steps per sample) | torchattacks ms/step | ours ms/step | ours/theirs per step | whole call: steps "
        "| theirs s | ours s | ours/theirs whole |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in res["cases"]:
        ps, ws = c["per_step_seconds"], c["whole_seconds"]
        lines.append(
            f"| {c['model']} ({c['input'][-1]}², {c['steps']}) | {_s(ps['torchattacks']).ms()} | {_s(ps['ours']).ms()} "
            f"| {_s(c['per_step_ratio']).ratio()} | {c.get('whole_steps', c['steps'])} "
            f"| {_s(ws['torchattacks']).median:.2f} | {_s(ws['ours']).median:.2f} "
            f"| {_s(c['whole_ratio']).ratio()} |"
        )
    lines += ["", "Adversarial pixel accuracy after the attack, same start point (the clean image):", "",
              "| model | clean | torchattacks (final iterate) | ours, stable numerics: final / best iterate "
              "| ours, plain numerics: final / best | plain vs torchattacks: max abs diff of x_adv, share differing |",
              "|---|---|---|---|---|---|"]
    for c in res["cases"]:
        o = c["outcome"]
        plain = (f"{o['ours_plain_final']:.4f} / {o['ours_plain_best']:.4f}" if "ours_plain_final" in o else "n/a")
        pdiff = (f"{o['ours_plain_max_abs_diff_vs_torchattacks']:.2g}, {o['ours_plain_share_values_differing']:.2%}"
                 if "ours_plain_final" in o else "n/a")
        lines.append(f"| {c['model']} | {o['clean']:.4f} | {o['torchattacks_final']:.4f} "
                     f"| {o['ours_stable_final']:.4f} / {o['ours_stable_best']:.4f} | {plain} | {pdiff} |")
    return "\n".join(lines)


def main() -> None:
    cli_main(__doc__, run, markdown)


if __name__ == "__main__":
    main()
