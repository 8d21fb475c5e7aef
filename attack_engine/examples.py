"""The bundled example images (``assets/examples/``, see its ``LICENSES.md``), for the CLI, the app and tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from attack_engine.images import load_image, load_mask

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "assets" / "examples"
VOC_CLASSES = 21


@dataclass(frozen=True)
class Example:
    """One entry of ``manifest.json``; paths are absolute."""

    id: str
    title: str
    image: Path
    licence: str
    source: str
    credit: str
    mask: Path | None = None  # 0 background / 1 person, for the two-class selfie model
    voc_mask: Path | None = None  # 21 Pascal VOC class ids
    notes: str = ""


@lru_cache(maxsize=1)
def _manifest() -> tuple[Example, ...]:
    data = json.loads((EXAMPLES_DIR / "manifest.json").read_text())
    out = []
    for e in data["examples"]:
        out.append(Example(
            id=e["id"], title=e["title"], image=EXAMPLES_DIR / e["image"], licence=e["licence"],
            source=e["source"], credit=e["credit"],
            mask=EXAMPLES_DIR / e["mask"] if e.get("mask") else None,
            voc_mask=EXAMPLES_DIR / e["voc_mask"] if e.get("voc_mask") else None,
            notes=e.get("notes", ""),
        ))
    return tuple(out)


def list_examples() -> list[Example]:
    """Every bundled example, in manifest order."""
    return list(_manifest())


def get_example(example_id: str) -> Example:
    for e in _manifest():
        if e.id == example_id:
            return e
    raise KeyError(f"unknown example {example_id!r}; known: {', '.join(e.id for e in _manifest())}")


def load_example(example_id: str, voc: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """``(image H×W×3 uint8, mask H×W int64 or None)``.

    The mask is the person/background one (0/1) by default, or the 21-class VOC map with ``voc=True``;
    ``None`` when the example has no such ground truth.
    """
    e = get_example(example_id)
    img = load_image(e.image)
    path, n = (e.voc_mask, VOC_CLASSES) if voc else (e.mask, 2)
    mask = load_mask(path, num_classes=n) if path is not None else None
    if mask is not None and mask.shape != img.shape[:2]:
        raise ValueError(f"example {example_id!r}: mask {mask.shape} does not match image {img.shape[:2]}")
    return img, mask
