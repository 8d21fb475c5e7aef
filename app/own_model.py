"""Open the explorer on a model of your own: from the command line (``python app.py --model FILE --arch …
--classes …``, the CLI's model flags), from Python (:func:`explore` on an ``nn.Module`` you hold), or, outside
hosted mode, from a checkpoint uploaded on the page (:func:`load_uploaded`).

Every route goes through :mod:`attack_engine.models.custom` (adapter contract, checks, one-line messages) and
registers the model under a ``custom`` id, which the app then offers beside the zoo.
"""

from __future__ import annotations

import argparse
import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from app.sources import ExampleItem
from attack_engine.models.args import add_model_arguments, class_list, is_model_file, model_from_args
from attack_engine.models.base import SegModel
from attack_engine.models.registry import ModelEntry, register

UPLOAD_SUFFIXES = (".pt", ".pth", ".ts", ".zip", ".safetensors", ".bin")


def register_model(model: SegModel, model_id: str | None = None) -> str:
    """Register a built adapter (one instance, moved to the device asked for) and return its id."""
    mid = model_id or model.info.id
    register(ModelEntry(id=mid, title=model.info.title, family="custom", num_classes=model.num_classes,
                        licence=model.info.licence or "user-supplied", source=model.info.source,
                        loader=lambda device="cpu", **kw: model.to(device),
                        description="Your own model (registered by this process)."))
    return mid


# -- command line: python app.py --model FILE --arch … --classes … -------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from attack_engine.argtypes import Parser

    p = Parser(prog="python app.py", description="TsallisPGD Explorer: serve the app (GRADIO_SERVER_NAME / "
                                                 "GRADIO_SERVER_PORT choose the address).")
    add_model_arguments(p, default_help="the bundled selfie model; the zoo is offered beside it")
    return p


def model_id_from_argv(argv: Sequence[str] | None) -> str | None:
    """Parse the app's flags; a checkpoint of your own is loaded and registered. Returns the model id to open
    (``None``: the default). A bad flag or file exits with one line."""
    args = build_parser().parse_args(argv)
    if not args.model:
        return None
    if not is_model_file(args.model):
        from attack_engine.models.registry import get_entry

        try:
            get_entry(args.model)
        except KeyError as e:
            raise SystemExit(f"python app.py: {e.args[0]} (or give a checkpoint file)") from None
        return args.model
    try:
        model = model_from_args(args)
    except Exception as e:  # one line, no traceback
        raise SystemExit(f"python app.py: cannot load --model {Path(args.model).name}: {e}") from None
    return register_model(model, f"custom:{Path(args.model).name}")


# -- Python: app.explore(model, …) ------------------------------------------------------------------------------------
def _as_rgb(img: Any) -> Image.Image:
    if isinstance(img, (str, Path)):
        return Image.open(img).convert("RGB")
    if isinstance(img, Image.Image):
        return img.convert("RGB")
    a = np.asarray(img)
    if a.dtype != np.uint8:
        a = (np.clip(a.astype(np.float64), 0, 1) * 255 + 0.5).astype(np.uint8)
    return Image.fromarray(a).convert("RGB")


def examples_from(images: Sequence[Any], num_classes: int, folder: Path) -> list[ExampleItem]:
    """Example items from images (paths, PIL images, H×W×3 arrays) or ``(image, mask)`` pairs (mask: H×W ids)."""
    out = []
    for i, item in enumerate(images):
        img, mask = item if isinstance(item, tuple) else (item, None)
        ip = folder / f"image_{i}.png"
        _as_rgb(img).save(ip)
        masks = {}
        if mask is not None:
            mp = folder / f"mask_{i}.png"
            m = Image.open(mask) if isinstance(mask, (str, Path)) else Image.fromarray(np.asarray(mask).astype(np.uint8))
            m.save(mp)
            masks[num_classes] = mp
        out.append(ExampleItem(f"yours_{i}", f"Your image {i + 1}" + (" (with labels)" if masks else ""), ip, masks))
    return out


# -- the page: a checkpoint uploaded outside hosted mode ---------------------------------------------------------------
def load_uploaded(path: str | Path, arch: str | None, classes: str | None) -> SegModel:
    """Load an uploaded TorchScript / safetensors / state_dict checkpoint (never unpickling code) and register it.

    Raises ``ValueError`` with one line for anything that does not load or does not keep the contract."""
    from attack_engine.models.custom import load_custom

    path = Path(path)
    if path.suffix.lower() not in UPLOAD_SUFFIXES:
        raise ValueError(f"a model file ends in {', '.join(UPLOAD_SUFFIXES)}; got {path.suffix or 'no suffix'!r}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", path.name)[:60]
    try:
        model = load_custom(path, arch=(arch or "").strip() or None, class_names=class_list(classes), trusted=False,
                            model_id=f"upload:{name}-{digest}", title=f"Uploaded: {name}")
        with torch.no_grad():
            model(torch.rand(1, 3, 64, 64))  # the contract check (channels = classes) now, not at the first run
    except Exception as e:
        msg = str(e).replace(str(path.parent), "").strip() or type(e).__name__
        raise ValueError(f"cannot use {name} as a model: {msg}") from None
    register_model(model)
    return model
