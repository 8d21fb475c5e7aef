"""A small multi-class segmentation model and a matching scene, built by the tests (no weights to download).

``ColourSeg`` scores each class by how close a pixel's (locally averaged) colour is to the class colour, so it
segments :func:`scene` correctly and an attack can move pixels from one class to another; the local averaging
makes small objects easier to flip than large ones, as with real segmentation networks.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from attack_engine.models.base import ModelInfo, SegModel

NAMES = ("background", "road", "car", "person", "sign", "tree")
# Close colours, so that an ε = 8/255 attack can move pixels between classes.
COLOURS = ((110, 110, 110), (135, 105, 125), (105, 110, 140), (140, 100, 100), (135, 135, 95), (100, 135, 100))


class ColourSeg(SegModel):
    """``len(names)`` classes; logits = −sharpness × blurred squared distance to each class colour."""

    def __init__(self, names: Sequence[str] = NAMES, colours: Sequence[Sequence[int]] = COLOURS,
                 model_id: str = "colour-seg", sharpness: float = 3.0) -> None:
        super().__init__(ModelInfo(id=model_id, title=f"Colour classifier ({len(names)} classes, tests)",
                                   class_names=tuple(names), palette=tuple(tuple(c) for c in colours),
                                   licence="MIT", source="tests/_multiclass.py"))
        self.register_buffer("centres", torch.tensor(colours, dtype=torch.float32).view(1, -1, 3, 1, 1) / 255.0)
        self.sharpness = sharpness
        self.blur = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
        self.scale = nn.Parameter(torch.ones(1))  # gives the adapter a parameter (device/dtype come from it)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        d = ((x[:, None] - self.centres) ** 2).sum(2)  # [B,C,H,W]
        return -self.sharpness * self.scale * self.blur(d) * 10.0


def scene(size: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An image of class-coloured objects of very different sizes on a background, and its label map."""
    rng = np.random.default_rng(seed)
    lab = np.zeros((size, size), dtype=np.uint8)
    lab[size * 2 // 3:, :] = 1  # road: a large region
    lab[size // 2: size * 2 // 3 + 6, size // 6: size // 2] = 2  # car: medium
    lab[size // 5: size // 5 + 3, size * 3 // 4: size * 3 // 4 + 3] = 3  # person: tiny
    lab[size // 10: size // 10 + 4, size // 10: size // 10 + 4] = 4  # sign: tiny
    lab[size // 8: size // 2, size * 2 // 5: size * 2 // 5 + 12] = 5  # tree: small/medium
    img = np.asarray(COLOURS, dtype=np.float64)[lab] + rng.normal(0, 3, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8), lab


def write_scene(folder: Path, size: int = 96) -> tuple[Path, Path]:
    """``scene.png`` and its class-id mask ``scene_mask.png`` (a palette PNG)."""
    folder.mkdir(parents=True, exist_ok=True)
    img, lab = scene(size)
    ip, mp = folder / "scene.png", folder / "scene_mask.png"
    Image.fromarray(img).save(ip)
    m = Image.fromarray(lab, "P")
    m.putpalette([v for c in COLOURS for v in c] + [0, 0, 0] * (256 - len(COLOURS)))
    m.save(mp)
    return ip, mp
