"""Command line: ``python -m attack_engine {attack,models,eval}``.

Bad arguments get one clear line on stderr (exit code 2), never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from attack_engine import determinism
from attack_engine.argtypes import Parser, parse_eps, positive_int, schedule_arg
from attack_engine.attack import OPTIMIZERS, AttackConfig, AttackRun
from attack_engine.models.args import add_model_arguments, model_from_args
from attack_engine.registry import attack_names, attack_specs, attack_title
from attack_engine.runfile import CLI_V1, RunFile, RunFileError, columns, read_run, record_row, write_run


class CLIError(Exception):
    """A user error: printed as one line."""


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m attack_engine", description="TsallisPGD Explorer attack library: attacks on segmentation models.")
    sub = p.add_subparsers(dest="command", metavar="{attack,models,eval}", parser_class=Parser)

    a = sub.add_parser("attack", help="attack one image and write a run file", description=(
        "Attack one image. Labels are the --mask when given, else the model's clean prediction. "
        "Prints clean and adversarial pixel accuracy / mIoU and writes a run file that reproduces the run."))
    add_model_arguments(a)
    a.add_argument("--image", help="image path, or an example id from assets/examples (e.g. astronaut)")
    a.add_argument("--mask", help="ground-truth label PNG (class ids); default: clean prediction")
    a.add_argument("--attack", choices=attack_names(), default="tsallis",
                   help="; ".join(f"{s.name}={s.title}" for s in attack_specs()))
    a.add_argument("--schedule", type=schedule_arg, default=None,
                   help="schedule of the attack's parameter (TsallisPGD's q): linear:-2:1 (default), cosine:A:B, const:Q, plinear:P0:P1, pcosine:P0:P1, points:t:q,...")
    a.add_argument("--eps", type=parse_eps, default=8 / 255, help="L∞ radius, e.g. 8/255 (default) or 0.0314")
    a.add_argument("--steps", type=positive_int, default=100, help="iterations (default 100)")
    a.add_argument("--optimizer", choices=OPTIMIZERS, default="apgd", help="apgd (paper, default) or pgd")
    a.add_argument("--step-size", type=parse_eps, default=None, help="PGD step, e.g. 2/255 (default eps/4; APGD ignores it)")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--no-random-start", action="store_true", help="start from the clean image")
    a.add_argument("--single-eps", action="store_true", help="APGD without the 2ε/1.5ε/ε stages")
    a.add_argument("--target-class", type=int, default=None, help="targeted mode: push every pixel toward this class")
    a.add_argument("--device", default="auto", help="auto (default: cuda when a GPU is visible, else cpu), cpu, cuda, cuda:1, mps")
    a.add_argument("--threads", type=positive_int, default=None,
                   help="intra-op CPU threads (default: PyTorch's; a re-run uses the run file's)")
    a.add_argument("--out", help="write the run file (JSON, attack_engine/runfile.py) here")
    a.add_argument("--save-adv", help="write the adversarial image (PNG, model resolution) here")
    a.add_argument("--from", "--from-run", dest="from_run", metavar="RUN_FILE",
                   help="re-run a run file (the CLI's or the app's run card; other run flags are ignored)")
    a.add_argument("--no-progress", action="store_true")

    sub.add_parser("models", help="list the models and whether their weights are here")
    e = sub.add_parser("eval", help="robustness evaluation over a dataset", add_help=False)
    e.add_argument("rest", nargs=argparse.REMAINDER)
    return p


def resolve_device(spec: str) -> str:
    """``auto`` -> ``cuda`` when PyTorch sees a GPU, else ``cpu``; anything else unchanged."""
    if spec != "auto":
        return spec
    return "cuda" if torch.cuda.is_available() else "cpu"


def _resolve_image(spec: str):
    from attack_engine.images import load_image

    path = Path(spec)
    if path.exists():
        return load_image(path), None, str(path)
    try:
        from attack_engine.examples import load_example
    except ImportError:
        load_example = None
    if load_example is not None:
        try:
            img, mask = load_example(spec)
            return img, mask, f"example:{spec}"
        except KeyError:
            pass
    raise CLIError(f"image {spec!r} not found (give a file path or an example id)")


@dataclass
class _Job:
    """What to run: from the flags, or from a run file (``--from``)."""

    cfg: AttackConfig
    model_id: str
    image_spec: str | None = None  # a path or example id to read (flags, CLI v1 files)
    mask_spec: str | None = None
    target_class: int | None = None
    stored: RunFile | None = None  # the run file being re-run
    threads: int | None = None


def _job(args: argparse.Namespace) -> _Job:
    """The run's config, model, input and target class: from ``--from`` or the flags."""
    from attack_engine.models import DEFAULT_MODEL

    if args.from_run:
        rf = read_run(args.from_run)
        try:
            cfg = AttackConfig(**rf.config)
        except TypeError as e:
            raise CLIError(f"run file {Path(args.from_run).name!r} has a bad config: {e}") from None
        spec = rf.source.split(":", 1)[1] if rf.image is None and rf.source.startswith("example:") else rf.source
        return _Job(cfg, rf.model, spec if rf.image is None else None, rf.mask if rf.image is None else None,
                    rf.target_class, rf, rf.threads or args.threads)
    if not args.image:
        raise CLIError("--image is required (a path or an example id)")
    if args.target_class is not None and args.target_class < 0:
        raise CLIError("--target-class must be >= 0")
    cfg = AttackConfig(
        attack=args.attack, optimizer=args.optimizer, eps=args.eps, steps=args.steps, step_size=args.step_size,
        schedule=args.schedule, seed=args.seed, random_start=not args.no_random_start,
        multi_eps=not args.single_eps, targeted=args.target_class is not None,
    )
    return _Job(cfg, args.model or DEFAULT_MODEL, args.image, args.mask, args.target_class, None, args.threads)


def _open_model(model_id: str, args: argparse.Namespace):
    """A registry model, or a checkpoint file of the user's own (``--arch``, ``--classes``, ``--trusted``)."""
    return model_from_args(argparse.Namespace(**{**vars(args), "model": model_id}), device=args.device)


def _labels(mask_spec: str | None, example_mask, img, info, size) -> tuple[np.ndarray | None, str | None]:
    """The labels at model resolution and where they came from; ``None`` = the clean prediction."""
    from attack_engine.images import load_mask, resize_labels

    if mask_spec:
        labels_np, mask_ref = load_mask(mask_spec, info.num_classes, info.ignore_index), mask_spec
    elif example_mask is not None:
        labels_np, mask_ref = example_mask, "example"
    else:
        return None, None
    if labels_np.shape != img.shape[:2]:
        raise CLIError(f"mask is {labels_np.shape[1]}×{labels_np.shape[0]} but the image is {img.shape[1]}×{img.shape[0]}")
    return resize_labels(torch.from_numpy(labels_np)[None], size)[0].numpy().astype(np.int64), mask_ref


def _input(job: _Job, info) -> tuple[torch.Tensor, np.ndarray, np.ndarray | None, str, str | None]:
    """The attack's clean input ``[1,3,H,W]`` at model resolution, its 8-bit copy (what the run file stores), the
    labels and where image and labels came from.

    A fresh run attacks the 8-bit image, so its run file holds the exact input; a CLI v1 file is re-run on the
    float image it named, as it was made.
    """
    from attack_engine.images import model_size, resize_image, to_tensor, to_uint8

    rf = job.stored
    if rf is not None and rf.image is not None:
        hw = tuple(rf.image.shape[:2])
        if model_size(hw, info.input_size, info.size_multiple) != hw:
            raise CLIError(f"the run file's input is {hw[1]}×{hw[0]}, which model {job.model_id} does not take")
        return to_tensor(rf.image), rf.image, rf.labels, rf.source, rf.mask
    img, example_mask, image_ref = _resolve_image(job.image_spec)
    size = model_size(tuple(img.shape[:2]), info.input_size, info.size_multiple)
    x = resize_image(to_tensor(img), size)
    x8 = to_uint8(x)
    labels, mask_ref = _labels(job.mask_spec, example_mask, img, info, size)
    return (x if rf is not None else to_tensor(x8)), x8, labels, image_ref, mask_ref


def _attack(run: AttackRun, progress: bool) -> tuple[list[dict], float]:
    from tqdm import tqdm

    t0 = time.perf_counter()
    rows = [record_row(rec) for rec in tqdm(run, total=run.expected_records(), unit="it", disable=not progress,
                                            desc=f"{attack_title(run.cfg.attack)} ({run.cfg.optimizer})")]
    return rows, time.perf_counter() - t0


def _report(run: AttackRun, model_id: str, image_ref: str, mask_ref: str | None, device, seconds: float) -> None:
    cfg, res = run.cfg, run.result
    h, w = run.x0.shape[-2:]
    what = "target-class share" if cfg.targeted else "pixel accuracy"
    print(f"model {model_id} | image {image_ref} at {w}×{h} | labels: {mask_ref or 'clean prediction'} | device {device}")
    print(f"{attack_title(cfg.attack)} {cfg.optimizer.upper()} eps={cfg.eps * 255:.4g}/255 steps={cfg.steps} seed={cfg.seed}"
          + (f" schedule={cfg.q_schedule.text()}" if cfg.q_schedule is not None else ""))
    print(f"clean:       {what} {float(res.clean_acc[0]):.4f}  mIoU {float(res.clean_miou[0]):.4f}")
    print(f"adversarial: {what} {float(res.acc[0]):.4f}  mIoU {float(res.miou[0]):.4f}  "
          f"(best record {int(res.best_index[0])}, {seconds:.1f} s)")


def cmd_attack(args: argparse.Namespace) -> int:
    from attack_engine.images import to_uint8

    job = _job(args)
    args.device = resolve_device(args.device)
    model = _open_model(job.model_id, args)
    x, x8, labels, image_ref, mask_ref = _input(job, model.info)
    y = None if labels is None else torch.from_numpy(labels)[None].to(model.device)
    with determinism.using(job.threads or torch.get_num_threads()):
        run = AttackRun(model, x.to(model.device), y, job.cfg, target=job.target_class)
        rows, seconds = _attack(run, not args.no_progress)
        compute = determinism.fingerprint()
    res = run.result
    _report(run, job.model_id, image_ref, mask_ref, model.device, seconds)
    if args.save_adv:
        from PIL import Image

        Image.fromarray(to_uint8(res.x_adv)).save(args.save_adv)
    if args.out:
        if job.stored is not None and job.stored.format == CLI_V1:
            print("note: a tsallispgd-run/1 file is re-run on the image file it names; the new run file stores "
                  "that input rounded to 8 bits (a re-run of it attacks the 8-bit image)")
        write_run(RunFile(
            model=job.model_id, config=run.cfg.to_dict(), image=x8, labels=labels, source=image_ref, mask=mask_ref,
            target_class=job.target_class, compute=compute, device=str(model.device), records=len(rows),
            expected_records=run.expected_records(), finished=True, per_record=columns(rows), seconds=round(seconds, 3),
            metrics={"clean_acc": float(res.clean_acc[0]), "clean_miou": float(res.clean_miou[0]),
                     "result_acc": float(res.acc[0]), "result_miou": float(res.miou[0]),
                     "best_index": int(res.best_index[0]), "last_acc": rows[-1]["acc"], "last_miou": rows[-1]["miou"]},
        ), args.out)
        print(f"run file: {args.out}")
    return 0


def cmd_models(_: argparse.Namespace) -> int:
    from attack_engine.models import list_models

    rows = [(e.id, e.family, str(e.num_classes), "yes" if e.available() else "no", e.licence, e.title) for e in list_models()]
    head = ("id", "family", "classes", "weights here", "licence", "title")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["eval"]:
        try:
            from attack_engine.evaluate import main as eval_main
        except ImportError as e:
            print(f"python -m attack_engine eval: not available ({e})", file=sys.stderr)
            return 2
        return eval_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from attack_engine.images import ImageError
    from attack_engine.models import ModelUnavailable

    try:
        return {"attack": cmd_attack, "models": cmd_models}[args.command](args)
    except (CLIError, RunFileError, ValueError, ImageError, ModelUnavailable, KeyError, OSError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"{parser.prog} {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
