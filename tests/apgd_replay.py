"""Replay the recorded reference APGD runs with our APGD; run as ``python tests/apgd_replay.py OUT.npz``.

``tests/test_apgd_reference.py`` starts this in a subprocess whose environment already holds the portable CPU
setting of :mod:`portable_cpu` (the fixtures were recorded on it; torch reads it when it loads, here at import) and compares what it writes with the fixtures.  Per run
key (``ce_n30`` …, and ``tsallis_n30_telemetry`` with telemetry on) it saves the per-record step size, control
objective, pixel accuracy, stage and stage step, and the result's accuracy, prediction and iterate.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

FIX = Path(__file__).parent / "fixtures" / "apgd_reference"


class FixtureNet(nn.Module):
    """The recorded model: conv3x3(3→8) → tanh → conv3x3(8→4), defined by the weights in ``setup.npz``.
    ``scripts/record_apgd_fixtures.py`` imports it, so recording and replay attack the same module."""

    def __init__(self, w: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.w = w
        self.num_classes = w["w2"].shape[0]  # the reference's CosPGD reads it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(F.conv2d(x, self.w["w1"], self.w["b1"], padding=1))
        return F.conv2d(h, self.w["w2"], self.w["b2"], padding=1)


def replay(key: str, setup: dict, eps_255: float, telemetry: bool = False) -> dict:
    """One recorded run replayed with our APGD from the recorded start point."""
    from attack_engine.attack import AttackConfig, AttackRun

    attack, n = key.rsplit("_n", 1)
    cfg = AttackConfig(attack=attack, optimizer="apgd", steps=int(n), eps=eps_255 / 255, telemetry=telemetry,
                       schedule="linear:-2:1" if attack == "tsallis" else None)
    w = {k: torch.from_numpy(setup[k]) for k in ("w1", "b1", "w2", "b2")}
    run = AttackRun(FixtureNet(w), torch.from_numpy(setup["x0"]),
                    torch.from_numpy(setup["labels"]).long(), cfg, x_init=torch.from_numpy(setup["x_init"]))
    recs = list(run)
    res = run.result
    return {"step_size": torch.stack([r.step_size for r in recs]).double().numpy(),
            "ce": torch.stack([r.ce for r in recs]).double().numpy(),
            "acc": torch.stack([r.acc for r in recs]).double().numpy(),
            "stage": [r.stage for r in recs], "stage_step": [r.stage_step for r in recs],
            "res_acc": res.acc.double().numpy(), "res_pred": res.pred.numpy(), "res_x_adv": res.x_adv.numpy()}


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="the .npz to write (and a .json beside it)")
    ap.add_argument("--fixtures", type=Path, default=FIX, help="recorded runs to replay (default: the tests')")
    ap.add_argument("--native", action="store_true", help="on this host's own kernels (fixtures recorded with "
                    "scripts/record_apgd_fixtures.py --native on the same host)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    import portable_cpu

    if args.native:
        torch.set_num_threads(1)
    else:
        portable_cpu.configure(torch)
    import numpy as np

    runs = json.loads((args.fixtures / "runs.json").read_text())
    setup = dict(np.load(args.fixtures / "setup.npz"))
    eps = runs["meta"]["eps_255"]
    arrays, lists = {}, {}
    jobs = [(k, k, False) for k in sorted(runs["runs"])] + [("tsallis_n30_telemetry", "tsallis_n30", True)]
    for name, key, tel in jobs:
        for field, v in replay(key, setup, eps, telemetry=tel).items():
            if isinstance(v, list):
                lists[f"{name}/{field}"] = v
            else:
                arrays[f"{name}/{field}"] = v
    np.savez(args.out, **arrays)
    setting = "native" if args.native else portable_cpu.describe(torch)
    args.out.with_suffix(".json").write_text(json.dumps({"lists": lists, "setting": setting}))


if __name__ == "__main__":
    main(sys.argv[1:])
