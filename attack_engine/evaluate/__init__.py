"""Robustness evaluation at scale: ``python -m attack_engine eval`` (and the same under ``torchrun``).

Examples::

    python -m attack_engine eval --data examples --attacks ce,segpgd,cospgd,js,masked_ce,tsallis \\
        --eps 0.25/255,0.5/255,1/255 --steps 100 --out runs/examples
    torchrun --nproc_per_node 4 -m attack_engine eval --model pspnet-voc --data voc:/data/VOCdevkit \\
        --size 512 --steps 300 --seeds 0,1,2 --out runs/voc          # one process per GPU, NCCL
    python -m attack_engine eval --attacks tsallis --tsallis-schedules linear:-2:1,const:-2,const:-1,const:0,const:0.5,const:1 ...
    python -m attack_engine eval report runs/a runs/b --out runs/combined   # ranks over several models

Outputs in ``--out``: ``records/`` (per-image confusion matrices, the resume state), ``run.json``,
``metrics.json``, ``results.csv``, ``summary.csv``, ``worst_case.csv``, ``ranks.csv``, ``per_image.csv``,
``report.md``, ``plot.png`` and ``commands.txt`` (every command that wrote to the folder).
Rerunning a command continues where it stopped; adding attacks, ε or seeds reuses what is done.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from attack_engine.argtypes import Parser, attack_arg, positive_int, schedule_arg
from attack_engine.argtypes import parse_eps as cli_eps
from attack_engine.attack import OPTIMIZERS
from attack_engine.evaluate.datasets import DatasetError, open_dataset, parse_size
from attack_engine.evaluate.report import write_all
from attack_engine.evaluate.runner import EvalConfig, make_methods, metrics_dict, per_image_rows, run_eval, setup_dist
from attack_engine.registry import attack_names

__all__ = ["build_parser", "main"]

DEFAULT_EPS = "0.25/255,0.5/255,1/255"


def _list(conv):
    def parse(text: str):
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError("give at least one value")
        out = [conv(t) for t in items]
        if len(set(out)) != len(out):
            raise argparse.ArgumentTypeError(f"{text!r} lists a value twice")
        return out

    return parse


def parse_eps(text: str) -> float:
    """``8/255``, ``0.25/255`` or ``0.0314`` -> float in [0, 1] (the CLI's ``parse_eps`` plus decimal fractions)."""
    num, sep, den = text.strip().partition("/")
    if sep:
        try:
            v = float(num) / float(den)
        except (ValueError, ZeroDivisionError):
            raise argparse.ArgumentTypeError(f"cannot read {text!r} as a number; write e.g. 0.5/255 or 0.00196") from None
        return cli_eps(repr(v))
    return cli_eps(text)


def _size(text: str) -> tuple[int, int]:
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m attack_engine eval", description=(
        "Robustness evaluation over a dataset: clean and adversarial ACC/mIoU per attack and ε from one "
        "accumulated confusion matrix, average attack ranks, the worst case over attacks and a plot. "
        "Resumable; shards across processes under torchrun. `eval report DIR ... --out OUT` combines runs."))
    p.add_argument("--model", default=None, help="registry id (see `python -m attack_engine models`; default: the bundled "
                   "selfie model) or torchscript:PATH")
    p.add_argument("--data", required=True, help="KIND:PATH with KIND folder, voc, cityscapes, ade20k; or examples / "
                   "examples:all (bundled images)")
    p.add_argument("--split", default="val", help="voc: ImageSets/Segmentation/SPLIT.txt (val, train, train_aug, ...); "
                   "cityscapes/ade20k: val or train (default val)")
    p.add_argument("--labels", choices=("gt", "clean"), default="gt",
                   help="gt: ground-truth masks (default); clean: the model's clean prediction (clean ACC = 100%%)")
    p.add_argument("--voc-boundary", choices=("ignore", "background"), default="ignore",
                   help="VOC 255 boundary pixels: ignore (default) or map to background 0 (Croce's PIR-AT labels)")
    p.add_argument("--ade-classes", type=int, choices=(150, 151), default=None,
                   help="ADE20K labels: 151 = 0 ('other') is a class (PIR-AT); 150 = reduce labels 0->255, k->k-1 "
                   "(mmseg). Default: the model's class count")
    p.add_argument("--size", type=_size, default=None, help="centre-crop size N or HxW (default: the model's input size)")
    p.add_argument("--resize", type=positive_int, default=None,
                   help="resize the short side to this before cropping (default: just cover the crop)")
    p.add_argument("--attacks", type=_list(attack_arg), default=list(attack_names()),
                   help=f"comma list from {','.join(attack_names())} (default all)")
    p.add_argument("--tsallis-schedules", type=_list(schedule_arg), default=None,
                   help="run TsallisPGD once per q-schedule, e.g. linear:-2:1,const:-2,const:-1,const:0,const:0.5,const:1")
    p.add_argument("--eps", type=_list(parse_eps), default=_list(parse_eps)(DEFAULT_EPS), help=f"comma list (default {DEFAULT_EPS})")
    p.add_argument("--steps", type=positive_int, default=300, help="attack iterations (default 300, the paper's)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="apgd")
    p.add_argument("--seeds", type=_list(_int), default=[0], help="comma list of random-start seeds (default 0)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="images per attack batch (each ε adds a copy)")
    p.add_argument("--max-images", type=positive_int, default=None, help="only the first N images")
    p.add_argument("--amp", choices=("off", "bf16", "fp16"), default="off", help="mixed precision for the model (default off)")
    p.add_argument("--device", default="auto", help="auto (GPU LOCAL_RANK if available, else cpu), cpu, cuda")
    p.add_argument("--deterministic", action="store_true",
                   help="GPU: deterministic kernels and no TF32, so reruns repeat exactly (slower); CPU runs always do")
    p.add_argument("--out", required=True, help="output folder (also the resume state)")
    p.add_argument("--title", default=None, help="report title")
    p.add_argument("--no-progress", action="store_true")
    return p


def report_main(argv: list[str]) -> int:
    """``eval report DIR [DIR ...] --out OUT``: one report (and rank table) over several evaluations."""
    p = Parser(prog="python -m attack_engine eval report", description="Combine evaluation folders into one report.")
    p.add_argument("dirs", nargs="+", help="evaluation output folders (each with metrics.json)")
    p.add_argument("--out", required=True)
    p.add_argument("--title", default="Combined robustness evaluation")
    try:
        a = p.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    metrics = []
    for d in a.dirs:
        f = Path(d) / "metrics.json"
        if not f.exists():
            print(f"{p.prog}: error: {f} not found (did that evaluation finish?)", file=sys.stderr)
            return 2
        metrics.append(json.loads(f.read_text()))
    files = write_all(metrics, Path(a.out), a.title)
    print((Path(a.out) / "report.md").read_text())
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m attack_engine eval``; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["report"]:
        return report_main(argv[1:])
    parser = build_parser()
    try:
        a = parser.parse_args(argv)
    except SystemExit as e:  # --help or a bad argument (already printed as one line)
        return e.code if isinstance(e.code, int) else 2
    from attack_engine.models import DEFAULT_MODEL, ModelUnavailable

    prog = parser.prog
    if a.tsallis_schedules and "tsallis" not in a.attacks:
        a.attacks = [*a.attacks, "tsallis"]
    try:
        cfg = EvalConfig(
            model=a.model or DEFAULT_MODEL, data=a.data, methods=make_methods(a.attacks, a.tsallis_schedules),
            eps=a.eps, seeds=a.seeds, steps=a.steps, optimizer=a.optimizer, size=a.size, resize=a.resize,
            labels=a.labels, split=a.split, voc_boundary=a.voc_boundary, ade_classes=a.ade_classes,
            batch_size=a.batch_size, max_images=a.max_images, amp=a.amp, device=a.device, out=Path(a.out),
            progress=not a.no_progress, deterministic=a.deterministic,
        )
        if cfg.deterministic:
            set_deterministic()
        d = setup_dist(cfg.device)
        return _run(cfg, d, argv, a.title)
    except (DatasetError, ValueError, ModelUnavailable, KeyError, OSError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to continue", file=sys.stderr)
        return 130


def set_deterministic() -> None:
    """Deterministic kernels (warn where none exists), no cuDNN autotuning, no TF32."""
    import os

    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


def _run(cfg: EvalConfig, d, argv: list[str], title: str | None) -> int:
    import torch

    from attack_engine.evaluate.models import load_eval_model

    model = load_eval_model(cfg.model, d.device, cfg.size)
    num_classes = int(model.num_classes)
    ade = cfg.ade_classes
    if cfg.data.lower().startswith("ade20k"):
        if ade is None:
            if num_classes not in (150, 151):
                raise ValueError(f"model {cfg.model} has {num_classes} classes; choose --ade-classes 150 or 151")
            ade = num_classes
        elif ade != num_classes:
            raise ValueError(f"--ade-classes {ade} but model {cfg.model} has {num_classes} classes")
        cfg.ade_classes = ade
    dataset = open_dataset(cfg.data, split=cfg.split, voc_boundary=cfg.voc_boundary, ade_classes=ade or 151,
                           require_labels=cfg.labels == "gt")
    amp = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.amp]
    if amp is not None:
        model.with_autocast(amp)
    size = cfg.size or (tuple(model.info.input_size) if model.info.input_size else None)
    if size is None:
        raise ValueError(f"model {cfg.model} has no fixed input size; give --size (e.g. 512)")
    cfg.size = tuple(size)
    res = run_eval(cfg, model, dataset, d)
    if d.main:
        metrics = metrics_dict(cfg, res, dataset, cfg.size)
        out = Path(cfg.out)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
        with (out / "commands.txt").open("a") as fh:
            launcher = f"torchrun --nproc_per_node {d.world} -m attack_engine" if d.backend else "python -m attack_engine"
            fh.write(f"{launcher} eval {shlex.join(argv)}\n")
        t = title or f"Robustness of {cfg.model} on {dataset.kind}"
        files = write_all([metrics], out, t, per_image_rows(res))
        print((out / "report.md").read_text())
        print(f"{res.units_run} unit(s) run, {res.units_skipped} resumed on rank 0; {res.seconds:.1f} s; "
              f"wrote {', '.join(str(f) for f in files)}")
    if d.backend is not None:
        import torch.distributed as tdist

        tdist.destroy_process_group()
    return 0
