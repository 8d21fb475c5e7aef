"""The model flags shared by the command lines (``python -m attack_engine attack``, ``python app.py``).

``--model`` is a registry id or a checkpoint file of your own; ``--arch``, ``--classes``, ``--trusted`` describe
that file (see :mod:`attack_engine.models.custom`).  :func:`add_model_arguments` declares them on a parser,
:func:`model_from_args` loads what they name (through the same adapter contract and checks as every model).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from attack_engine.models.base import SegModel
from attack_engine.models.registry import DEFAULT_MODEL, load_model


def add_model_arguments(p: argparse.ArgumentParser, *, default_help: str = "the bundled selfie model") -> None:
    """``--model``, ``--arch``, ``--classes``, ``--trusted`` on ``p``."""
    p.add_argument("--model", default=None,
                   help=f"model id from `python -m attack_engine models` (default: {default_help}), "
                        "or a checkpoint file of your own (TorchScript, .safetensors, or a .pt/.pth state_dict)")
    p.add_argument("--arch", help="your checkpoint: architecture of a state_dict (mmseg:<config>, segformer-b0..b5, "
                                  "a zoo id)")
    p.add_argument("--classes", help="your checkpoint: comma-separated class names")
    p.add_argument("--trusted", action="store_true",
                   help="your checkpoint: allow full unpickling (runs code from the file; only for files you trust)")


def class_list(text: str | None) -> list[str] | None:
    """``"a, b,c"`` -> ``["a", "b", "c"]``; ``None``/blank -> ``None``."""
    if not text or not text.strip():
        return None
    names = [n.strip() for n in text.split(",")]
    if any(not n for n in names):
        raise ValueError(f"--classes {text!r} has an empty class name")
    return names


def is_model_file(spec: str | None) -> bool:
    """True when ``spec`` names an existing file (a checkpoint of your own), not a registry id."""
    return bool(spec) and Path(str(spec)).is_file()


def model_from_args(args: argparse.Namespace, device: str | torch.device = "cpu") -> SegModel:
    """The model ``--model`` names: a registry model, or your checkpoint loaded with ``--arch``/``--classes``."""
    spec = getattr(args, "model", None) or DEFAULT_MODEL
    if not is_model_file(spec):
        return load_model(spec, device=device)
    from attack_engine.models.custom import load_custom

    return load_custom(spec, arch=getattr(args, "arch", None), class_names=class_list(getattr(args, "classes", None)),
                       trusted=True if getattr(args, "trusted", False) else None, device=device).freeze()
