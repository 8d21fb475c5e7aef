"""Record the paper's reference APGD (``aam-at/tsallis_pgd``) as test fixtures (run once, NOT in the project venv).

The reference library is not a dependency of this project. This script runs in a throwaway venv that reuses
the project's installed torch (its pyproject asks for Python >= 3.13 and torch 2.10; the code runs unchanged on
Python 3.11 with torch 2.13, and ``--ignore-requires-python`` is the only concession)::

    git --git-dir=<mirror of aam-at/tsallis_pgd> archive f8bdbe5 packages/segmentation_attacks | tar -x -C /tmp/ref
    python3.11 -m venv /tmp/refvenv
    echo <project venv>/lib/python3.11/site-packages > /tmp/refvenv/lib/python3.11/site-packages/project.pth
    /tmp/refvenv/bin/pip install hatchling
    /tmp/refvenv/bin/pip install --no-deps --no-build-isolation --ignore-requires-python \\
        /tmp/ref/packages/segmentation_attacks
    /tmp/refvenv/bin/python scripts/record_apgd_fixtures.py

The reference's code is not modified. ``LinfAutoPGDAttack`` is built with its own default ``compile=False``
(the paper's configs set ``torch.compile``, an execution option; eager mode is the library's default path), on
CPU, float32. To observe the run, the script wraps five of the attack's bound methods on the instance (the same
hook the library itself uses when it compiles them), each wrapper calling the original and only recording:
``objective`` (the control objective of every evaluation), ``get_grad_at`` / ``get_loss_at`` (step, stage length
and per-image pixel accuracy of every evaluation), ``project_gradient`` (the per-image step size of every step),
``check_oscillation`` (where the checkpoints fall and the oscillation flag) and ``project_perturbation`` (the
step size a stage ends with).

It runs on the portable CPU setting of ``tests/portable_cpu.py`` (ATen's non-AVX kernels, no oneDNN, MKL in
compatible mode, one thread), as the replay does: the reference's halvings turn on float32 objectives that tie to
the last bit, so recording on one host's native kernels and replaying on another's can differ by a halving.
``--native`` records on this host's own kernels instead (compare with ``tests/apgd_replay.py --native`` on the
same host); ``--out DIR`` writes elsewhere.  The model and images are kept from ``setup.npz`` (``--new-setup``
draws them again).  For every gradient evaluation the recorder also recomputes the gradient in float64 and notes
*sign ties*, input elements where the float32 gradient has the other sign (the Linf step takes the sign, so a
more exact implementation may step them the other way); the test allows for what follows such a tie.

It writes ``tests/fixtures/apgd_reference/``: ``setup.npz`` (the model's weights, clean images, labels, the start
point), ``finals.npz`` (per run the returned iterate and its prediction), ``runs.json`` (per run and evaluation:
step size per image, control objective, pixel accuracy; per checkpoint: oscillation and halving per image; the
final metrics) and ``checkpoints.json`` (the reference's checkpoint positions for every stage length 1..300, from
running its loop). ``tests/test_apgd_reference.py`` replays them with our APGD, without the reference.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import portable_cpu  # noqa: E402  (no torch import; the setting must be in place before torch loads)

NATIVE = "--native" in sys.argv  # this host's own kernels instead of the portable setting (a cross-check)
if not NATIVE:
    os.environ.update(portable_cpu.ENV)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from apgd_replay import FixtureNet  # noqa: E402  (tests/: the model the replay attacks)
from torch import nn  # noqa: E402

OUT = ROOT / "tests" / "fixtures" / "apgd_reference"
REFERENCE_COMMIT = "f8bdbe5"
B, H, W, CLASSES, HIDDEN = 2, 16, 16, 4, 8
EPS_255 = 12  # 2ε, 1.5ε and ε are then exact float32 multiples of float32(ε) (see the test)
STAGES = {30: [9, 9, 12], 100: [30, 30, 40]}
TSALLIS = {"type": "adaptive_tsallis_ce",
           "params": {"variant": "q_linear", "q_start": -2.0, "q_end": 1.0, "end_fraction": 0.0}}


def make_setup() -> dict[str, np.ndarray]:
    g = torch.Generator().manual_seed(20261201)
    w = {"w1": torch.randn(HIDDEN, 3, 3, 3, generator=g) * 0.9, "b1": torch.randn(HIDDEN, generator=g) * 0.3,
         "w2": torch.randn(CLASSES, HIDDEN, 3, 3, generator=g) * 0.35, "b2": torch.randn(CLASSES, generator=g) * 0.2}
    yy, xx = torch.meshgrid(torch.linspace(0, 1, H), torch.linspace(0, 1, W), indexing="ij")
    base = torch.stack([yy, xx, 0.5 * (yy + xx)])
    x0 = (0.15 + 0.7 * base.unsqueeze(0).repeat(B, 1, 1, 1) + 0.12 * torch.rand(B, 3, H, W, generator=g)).clamp(0, 1)
    x0[1] = x0[1].flip(-1)
    x0[:, :, :2, :3] = 0.0  # pixels on the box boundary (clipping matters)
    x0[:, :, -2:, -3:] = 1.0
    with torch.no_grad():
        labels = FixtureNet(w)(x0).argmax(1)
    labels[0, 5:8, 5:9] = 255  # ignored pixels
    labels[1, 10:13, 2:6] = (labels[1, 10:13, 2:6] + 1) % CLASSES  # wrong from the start
    eps1 = 2 * EPS_255 / 255
    x_init = x0 + (2 * torch.rand(B, 3, H, W, generator=g) - 1) * eps1  # unclipped, like the reference's start
    return {**{k: v.numpy() for k, v in w.items()}, "x0": x0.numpy(), "labels": labels.numpy(),
            "x_init": x_init.numpy()}


def build_attack(model: nn.Module, attack: str, iterations: list[int] | int, epsilon: list[float] | float):
    from segmentation_attacks import (
        AnnealedCorrectsWeightedSumGradientAggregator,
        CosineSimilarityWeightedSumGradientAggregator,
        LinfAutoPGDAttack,
        SumGradientAggregator,
    )

    loss = {"ce": "ce", "segpgd": "ce", "cospgd": "ce", "masked_ce": "masked_ce", "js": "js", "tsallis": TSALLIS}[attack]
    agg = {"segpgd": AnnealedCorrectsWeightedSumGradientAggregator(name="annealed_corrects_weighted_sum"),
           "cospgd": CosineSimilarityWeightedSumGradientAggregator(discrete_mode=True, name="cossim_weighted_sum")}
    return LinfAutoPGDAttack(
        model, iterations=iterations, epsilon=epsilon, loss=loss, objective="ce",
        gradient_aggregator=agg.get(attack, SumGradientAggregator(name="sum")), alpha=0.75, rho=0.75,
        ignore_index=255, random_start=True, return_best=True, max_pixel_value=255.0, clip_min=0.0, clip_max=255.0,
        restarts=1, targeted=False, seed=0, verbose=False,
    )


def _float64_copy(model: nn.Module) -> nn.Module:
    m = type(model)({k: v.double() for k, v in model.w.items()})
    m.num_classes = getattr(model, "num_classes", CLASSES)
    return m.eval()


class Recorder:
    """Wraps the attack's bound methods; each wrapper calls the original and records what it saw."""

    def __init__(self, atk) -> None:
        from segmentation_attacks.utils.metrics import attack_success

        self.evals: list[dict] = []  # one per model evaluation: step, stage length, objective, accuracy
        self.steps: list[list[float]] = []  # per-image step size of every step
        self.checks: list[dict] = []  # per checkpoint: iteration index i (0-based), window k, oscillation
        self.marks: list[tuple[int, list[float]]] = []  # (checks so far, step size) at each stage's start and end

        def wrap_eval(fn, has_grad: bool):
            def wrapped(x, y, **kw):
                out = fn(x, y, **kw)
                logits = out[2] if has_grad else out[1]
                err, _ = attack_success(logits, y, ignore_index=atk.ignore_index)
                self.evals.append({"step": int(kw["step"]), "iterations": int(kw["iterations"]),
                                   "acc": (1 - err).tolist(), "grad": has_grad})
                return out
            return wrapped

        objective, pg, pp, co = atk.objective, atk.project_gradient, atk.project_perturbation, atk.check_oscillation

        def obj(logits, y):
            v = objective(logits, y)
            self.evals[-1]["objective"] = v.tolist()
            return v

        def project_gradient(x0, xcurr, g, stepsize=None, **kw):
            self.steps.append(stepsize.tolist())
            return pg(x0, xcurr, g, stepsize=stepsize, **kw)

        def project_perturbation(x0, xcurr, **kw):
            if "stepsize" in kw:  # the stage's first and last projection carry the current step size
                self.marks.append((len(self.checks), kw["stepsize"].tolist()))
            return pp(x0, xcurr, **kw)

        def check_oscillation(x, j, k, threshold=0.75):
            flag = co(x, j, k, threshold=threshold)
            self.checks.append({"i": int(j), "k": int(k), "oscillation": flag.tolist()})
            return flag

        self.ties: list[dict] = []  # per gradient evaluation with sign ties: see :meth:`_sign_ties`
        agg, model64 = atk.gradient_aggregator, _float64_copy(atk.model)
        compute = agg.compute_gradient

        def compute_gradient(x, y, **kw):
            out = compute(x, y, **kw)
            self._sign_ties(atk, compute, model64, out[0], x, y, kw)
            return out

        agg.compute_gradient = compute_gradient
        atk.get_grad_at = wrap_eval(atk.get_grad_at, True)
        atk.get_loss_at = wrap_eval(atk.get_loss_at, False)
        atk.objective = obj
        atk.project_gradient = project_gradient
        atk.project_perturbation = project_perturbation
        atk.check_oscillation = check_oscillation

    def _sign_ties(self, atk, compute, model64, g32, x, y, kw) -> None:
        """Note the input elements where the float32 gradient's sign differs from the same gradient computed in
        float64 (model and loss).  The Linf step takes the sign, so such an element is a rounding-level tie: an
        implementation with other (e.g. more exact) arithmetic may step it the other way.  The attack's model is
        swapped for the float64 copy for this one call and put back."""
        model = atk.model
        atk.model = model64
        try:
            g64 = compute(x.double(), y, **kw)[0]
        finally:
            atk.model = model
        flip = (torch.sign(g32.double()) != torch.sign(g64)) & (g64 != 0)
        for b in range(g32.shape[0]):
            idx = flip[b].nonzero().tolist()
            if idx:
                self.ties.append({"record": len(self.evals), "image": b, "elements": idx[:5], "count": len(idx),
                                  "g32": [float(g32[b][tuple(i)]) for i in idx[:5]],
                                  "g64": [float(g64[b][tuple(i)]) for i in idx[:5]],
                                  "median_abs_g64": float(g64[b].abs().median())})


def per_record(rec: Recorder, stages: list[int]) -> dict:
    """Align the observations with our StepRecords: per stage its start, then one per step."""
    assert len(rec.marks) == 2 * len(stages) and len(rec.steps) == sum(stages) and len(rec.evals) == sum(stages) + len(stages)
    out = {"step_size": [], "objective": [], "acc": [], "stage": [], "stage_step": [], "checkpoints": []}
    ev = st = 0
    for si, n in enumerate(stages):
        (c0, _), (c1, eta_end) = rec.marks[2 * si], rec.marks[2 * si + 1]
        etas = [*rec.steps[st: st + n], eta_end]  # step size after each record of the stage (none follows the last)
        st += n
        for t in range(n + 1):
            e = rec.evals[ev]
            ev += 1
            assert e["step"] == t and e["iterations"] == n, (e, t, n)
            out["step_size"].append(etas[t])
            out["objective"].append(e["objective"])
            out["acc"].append(e["acc"])
            out["stage"].append(si)
            out["stage_step"].append(t)
        checks = []
        for c in rec.checks[c0:c1]:
            done = c["i"] + 1
            checks.append({"done": done, "k": c["k"], "oscillation": [bool(v) for v in c["oscillation"]],
                           "halved": [a < b for a, b in zip(etas[done], etas[done - 1])]})
        out["checkpoints"].append(checks)
    out["sign_ties"] = rec.ties  # records whose gradient has a rounding-level sign tie (the next iterate may differ)
    return out


def record_run(setup: dict[str, np.ndarray], attack: str, steps: int) -> tuple[dict, dict]:
    from segmentation_attacks.utils.metrics import attack_success

    w = {k: torch.from_numpy(setup[k]) for k in ("w1", "b1", "w2", "b2")}
    model = FixtureNet(w).eval()
    x0, y = torch.from_numpy(setup["x0"]), torch.from_numpy(setup["labels"]).long()
    stages = STAGES[steps]
    atk = build_attack(model, attack, stages, [2.0 * EPS_255, 1.5 * EPS_255, float(EPS_255)])
    rec = Recorder(atk)
    x_adv = atk.perturb(x0, y, xstart=torch.from_numpy(setup["x_init"]))
    run = per_record(rec, stages)
    with torch.no_grad():
        logits = model(x_adv)
    err, err_mean = attack_success(logits, y, ignore_index=255)
    run["final"] = {"acc": (1 - err).tolist(), "mean_class_acc": (1 - err_mean).tolist()}
    run["stages"] = stages
    return run, {"x_adv": x_adv.numpy(), "pred": logits.argmax(1).numpy().astype(np.int8)}


def reference_checkpoints(n_max: int = 300) -> dict[str, list[int]]:
    """Run the reference's single-stage loop for every stage length and note where it checks (1-based)."""
    w = {"w1": torch.ones(1, 3, 1, 1), "b1": torch.zeros(1), "w2": torch.ones(2, 1, 1, 1), "b2": torch.zeros(2)}

    class Px(FixtureNet):
        def forward(self, x):
            return F.conv2d(torch.tanh(F.conv2d(x, self.w["w1"], self.w["b1"])), self.w["w2"], self.w["b2"])

    model = Px(w)
    model.num_classes = 2
    x0, y = torch.full((1, 3, 1, 1), 0.5), torch.zeros(1, 1, 1, dtype=torch.long)
    out = {}
    for n in range(1, n_max + 1):
        atk = build_attack(model, "ce", n, 8.0)
        rec = Recorder(atk)
        atk.perturb(x0, y, xstart=x0)
        out[str(n)] = [c["i"] + 1 for c in rec.checks]
    return out


def sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def main() -> None:
    import segmentation_attacks

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT, help="where to write the fixtures (default: the tests')")
    ap.add_argument("--native", action="store_true", help="record on this host's own kernels, not the portable "
                    "setting of tests/portable_cpu.py (for a cross-check with an in-process replay)")
    ap.add_argument("--new-setup", action="store_true", help="draw the model and images again instead of reusing "
                    "tests/fixtures/apgd_reference/setup.npz")
    args = ap.parse_args()
    if NATIVE:
        torch.set_num_threads(1)
    else:
        portable_cpu.configure(torch)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    # the inputs stay fixed across re-recordings (drawing them again depends on the host's kernels too)
    fresh = args.new_setup or not (OUT / "setup.npz").exists()
    setup = make_setup() if fresh else dict(np.load(OUT / "setup.npz"))
    if args.new_setup or not (out / "setup.npz").exists():
        np.savez_compressed(out / "setup.npz", **setup)
    src = Path(segmentation_attacks.__file__).parent
    runs, finals = {}, {}
    for steps in STAGES:
        for attack in ("ce", "segpgd", "cospgd", "masked_ce", "js", "tsallis"):
            key = f"{attack}_n{steps}"
            runs[key], fin = record_run(setup, attack, steps)
            finals.update({f"{key}_{k}": v for k, v in fin.items()})
            halvings = sum(sum(c["halved"]) for s in runs[key]["checkpoints"] for c in s)
            ties = [(t["record"], t["image"], t["count"]) for t in runs[key]["sign_ties"]]
            print(f"{key}: final acc {runs[key]['final']['acc']}, {halvings} halvings, sign ties (record, image, "
                  f"elements): {ties}")
    np.savez_compressed(out / "finals.npz", **finals)
    meta = {
        "reference": f"github.com/aam-at/tsallis_pgd@{REFERENCE_COMMIT} packages/segmentation_attacks",
        "reference_sha256": {p: sha256(src / p) for p in ("autopgd.py", "base.py", "norms.py", "utils/math_ops.py",
                                                          "utils/metrics.py", "utils/losses/factory.py",
                                                          "utils/losses/tsallis.py", "utils/losses/divergence.py",
                                                          "gradient_aggregator/base.py")},
        "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
        "eps_255": EPS_255, "compile": False, "device": "cpu", "dtype": "float32",
        "tsallis_loss": TSALLIS, "cpu_setting": "native" if NATIVE else portable_cpu.describe(torch),
    }
    (out / "runs.json").write_text(json.dumps({"meta": meta, "runs": runs}, separators=(",", ":")) + "\n")
    (out / "checkpoints.json").write_text(json.dumps(reference_checkpoints(), separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
