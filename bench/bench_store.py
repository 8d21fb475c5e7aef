"""Records per second in the app against the engine alone: what the app stores per record must not slow the run.

Default run of the app: the bundled selfie model, TsallisPGD with APGD, ε = 8/255, telemetry on, on the first
example image.  ``engine`` pulls records from an :class:`~attack_engine.AttackRun`; ``app`` steps a
:class:`~app.runner.LiveRun` (the same engine plus ``Trajectory.append``: maps to NumPy, quantised, histograms,
the logit tap), which is what the app's ``/run`` computes per record before it renders.  Interleaved samples of
k records from two long-running runs; ratio app / engine per round.
"""

from __future__ import annotations

import functools

import torch

from app.runner import LiveRun, prepare
from attack_engine import AttackConfig, AttackRun
from attack_engine.examples import list_examples, load_example
from attack_engine.models import load_model
from bench.common import Stats, cli_main, clock, interleave, paired_ratios, set_threads

TARGET = 1.10


def _engine_sampler(run: AttackRun):
    it = iter(run)

    def sample(k: int) -> float:
        t = clock()
        for _ in range(k):
            next(it)
        return (clock() - t) / k

    return sample


def _app_sampler(live: LiveRun):
    def sample(k: int) -> float:
        t = clock()
        for _ in range(k):
            live.step()
        return (clock() - t) / k

    return sample


def run(quick: bool = False) -> dict:
    threads = set_threads()
    rounds, k = (3, 2) if quick else (30, 4)
    model = load_model("mediapipe-selfie")
    ex = list_examples()[0]
    image, mask = load_example(ex.id)
    prep = prepare(image, mask, model, ex.id)
    steps = 4 * ((rounds + 2) * k + 4)  # samples stay inside APGD's first stage (see bench_overhead)
    cfg = AttackConfig(attack="tsallis", optimizer="apgd", eps=8 / 255, steps=steps, telemetry=True)
    live = LiveRun(model, prep, cfg)
    x = torch.from_numpy(prep.image).permute(2, 0, 1)[None].float().div(255.0)
    labels = None if prep.labels is None else torch.from_numpy(prep.labels)[None].long()
    engine = AttackRun(model, x, labels, cfg)
    samples = interleave({"engine": functools.partial(_engine_sampler(engine), k),
                          "app": functools.partial(_app_sampler(live), k)}, rounds, warmup=1)
    return {"threads": threads, "example": ex.id, "input": list(prep.image.shape), "rounds": rounds, "k": k,
            "seconds": {n: Stats.of(v).to_dict() for n, v in samples.items()},
            "ratio": Stats.of(paired_ratios(samples["app"], samples["engine"])).to_dict()}


def _st(d: dict) -> Stats:
    return Stats(d["median"], d["q1"], d["q3"], d["min"], d["max"], d["n"])


def markdown(res: dict) -> str:
    s = res["seconds"]
    rate = lambda d: 1.0 / d["median"]  # noqa: E731
    return "\n".join([
        "| default run (example, input, rounds × k) | engine ms/record | app ms/record | engine records/s "
        "| app records/s | app / engine time |", "|---|---|---|---|---|---|",
        f"| {res['example']} ({res['input'][1]}×{res['input'][0]}, {res['rounds']}×{res['k']}) | {_st(s['engine']).ms()} "
        f"| {_st(s['app']).ms()} | {rate(s['engine']):.1f} | {rate(s['app']):.1f} | {_st(res['ratio']).ratio()} |"])


def main() -> None:
    cli_main(__doc__, lambda quick: run(quick), markdown)


if __name__ == "__main__":
    main()
