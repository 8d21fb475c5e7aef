"""Our APGD against fixtures recorded from the paper's reference code (``scripts/record_apgd_fixtures.py``).

The reference (``aam-at/tsallis_pgd``, ``LinfAutoPGDAttack``) ran on a small fixed model from a fixed start point
for the six attacks at N = 30 (stages 9/9/12) and N = 100 (30/30/40). Replaying the same model and start here,
the per-image step sizes and halving events must match exactly, the control objective (mean pixel CE) to 1e-6
relative, and the returned iterate, its prediction and pixel accuracy too. The checkpoint positions for every
stage length 1..300 come from running the reference's loop, not from re-deriving its formula.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attack_engine.attack import AttackConfig, AttackRun, apgd_checkpoints, apgd_stages

FIX = Path(__file__).parent / "fixtures" / "apgd_reference"
RUNS = json.loads((FIX / "runs.json").read_text())
SETUP = dict(np.load(FIX / "setup.npz"))
FINALS = dict(np.load(FIX / "finals.npz"))


class FixtureNet(nn.Module):
    """The recorded model: conv3x3 → tanh → conv3x3 with the weights from ``setup.npz``."""

    def __init__(self) -> None:
        super().__init__()
        self.w = {k: torch.from_numpy(SETUP[k]) for k in ("w1", "b1", "w2", "b2")}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(F.conv2d(x, self.w["w1"], self.w["b1"], padding=1))
        return F.conv2d(h, self.w["w2"], self.w["b2"], padding=1)


def _replay(key: str, telemetry: bool = False):
    attack, n = key.rsplit("_n", 1)
    eps = RUNS["meta"]["eps_255"] / 255
    cfg = AttackConfig(attack=attack, optimizer="apgd", steps=int(n), eps=eps, telemetry=telemetry,
                       schedule="linear:-2:1" if attack == "tsallis" else None)
    run = AttackRun(FixtureNet(), torch.from_numpy(SETUP["x0"]), torch.from_numpy(SETUP["labels"]).long(), cfg,
                    x_init=torch.from_numpy(SETUP["x_init"]))
    return run, list(run)


def test_fixture_radii_are_exact_multiples():
    # the reference computes 2ε, 1.5ε from pixel units (24/255, 18/255), we from float32(ε): equal for ε = 12/255
    e = torch.tensor(RUNS["meta"]["eps_255"] / 255)
    assert float(e * 2) == float(torch.tensor(2 * RUNS["meta"]["eps_255"] / 255))
    assert float(e * 1.5) == float(torch.tensor(1.5 * RUNS["meta"]["eps_255"] / 255))


@pytest.mark.parametrize("key", sorted(RUNS["runs"]))
def test_apgd_matches_reference(key):
    ref = RUNS["runs"][key]
    run, recs = _replay(key)
    assert [n for _, n in apgd_stages(run.cfg.steps)] == ref["stages"]
    assert len(recs) == len(ref["step_size"])
    assert [r.stage for r in recs] == ref["stage"] and [r.stage_step for r in recs] == ref["stage_step"]
    for t, r in enumerate(recs):  # per-image step size after each evaluation: exactly the reference's
        assert r.step_size.tolist() == ref["step_size"][t], f"record {t}"
    ce = torch.stack([r.ce for r in recs]).double()
    torch.testing.assert_close(ce, torch.tensor(ref["objective"], dtype=torch.float64), rtol=1e-6, atol=0)
    acc = torch.stack([r.acc for r in recs]).double()
    torch.testing.assert_close(acc, torch.tensor(ref["acc"], dtype=torch.float64), rtol=0, atol=1e-6)
    # halving events: where (stage, step) our step size drops == where the reference halved, nowhere else
    ours = {(r.stage, r.stage_step, b) for p, r in zip(recs, recs[1:]) if r.stage == p.stage
            for b in range(r.step_size.numel()) if r.step_size[b] < p.step_size[b]}
    theirs = {(s, c["done"], b) for s, checks in enumerate(ref["checkpoints"]) for c in checks
              for b, h in enumerate(c["halved"]) if h}
    assert ours == theirs and theirs  # non-empty: the fixture exercises halving
    for s, (_, n) in enumerate(apgd_stages(run.cfg.steps)):
        assert [c["done"] for c in ref["checkpoints"][s]] == apgd_checkpoints(n)
        assert not any(ref["checkpoints"][s][0]["halved"])  # never at a stage's first checkpoint
    res = run.result
    torch.testing.assert_close(res.acc.double(), torch.tensor(ref["final"]["acc"], dtype=torch.float64),
                               rtol=0, atol=1e-6)
    assert torch.equal(res.pred, torch.from_numpy(FINALS[f"{key}_pred"]).long())
    torch.testing.assert_close(res.x_adv, torch.from_numpy(FINALS[f"{key}_x_adv"]), rtol=0, atol=1e-7)


def test_telemetry_does_not_change_the_run():
    ref = RUNS["runs"]["tsallis_n30"]
    run, recs = _replay("tsallis_n30", telemetry=True)
    assert [r.step_size.tolist() for r in recs] == ref["step_size"]
    assert torch.equal(run.result.pred, torch.from_numpy(FINALS["tsallis_n30_pred"]).long())


def test_checkpoints_equal_reference_for_every_stage_length():
    recorded = json.loads((FIX / "checkpoints.json").read_text())
    assert sorted(map(int, recorded)) == list(range(1, 301))
    for n in range(1, 301):
        assert apgd_checkpoints(n) == recorded[str(n)], n
    assert recorded["30"] == [6, 11, 15, 18, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30]


def test_x_init_is_validated(trained_model, test_batch):
    x, _ = test_batch
    with pytest.raises(ValueError, match="x_init"):
        AttackRun(trained_model, x, x_init=x[:1])
    with pytest.raises(ValueError, match="x_init"):
        AttackRun(trained_model, x, x_init=torch.full_like(x, float("nan")))
