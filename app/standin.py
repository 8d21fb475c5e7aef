"""A tiny deterministic stand-in segmentation model and a synthetic example, for tests and benchmarks only.

``register_standin()`` adds it to the model registry (id :data:`STANDIN_ID`); the app never uses it unless
asked to (``build_demo(model_id=STANDIN_ID, ...)``).  It is a two-layer conv net with seeded weights on top
of a hand-made "bright, saturated blob vs the rest" feature, so its predictions have structure and an
attack flips pixels near object borders first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from attack_engine.models.base import ModelInfo, SegModel, default_palette
from attack_engine.models.registry import ModelEntry, get_entry, register

STANDIN_ID = "standin-tiny"


class TinySeg(SegModel):
    """2 classes ("background", "object"), any input size, ~0.5k parameters."""

    def __init__(self, num_classes: int = 2, seed: int = 0) -> None:
        names = ("background", "object", *(f"class {i}" for i in range(2, num_classes)))
        super().__init__(ModelInfo(id=STANDIN_ID if num_classes == 2 else f"{STANDIN_ID}-{num_classes}",
                                   title=f"Stand-in tiny net ({num_classes} classes, tests only)",
                                   class_names=names, palette=default_palette(num_classes), licence="MIT",
                                   source="app/standin.py"))
        g = torch.Generator().manual_seed(seed)
        self.c1 = nn.Conv2d(4, 6, 3, padding=1)
        self.c2 = nn.Conv2d(6, num_classes, 3, padding=1)
        with torch.no_grad():
            for m in (self.c1, self.c2):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.6)
                m.bias.zero_()
            self.c2.bias.copy_(torch.linspace(0.5, -0.5, num_classes))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        sat = x.max(1, keepdim=True).values - x.min(1, keepdim=True).values
        feat = torch.cat([x - 0.5, sat - 0.3], 1)
        h = torch.tanh(self.c1(feat))
        out = self.c2(h)
        blob = nn.functional.avg_pool2d(sat + x.mean(1, keepdim=True) - 0.8, 5, 1, 2) * 3.0
        return out + torch.cat([-blob, blob, torch.zeros_like(blob).expand(-1, out.shape[1] - 2, -1, -1)], 1)


def register_standin() -> str:
    """Register the stand-in (idempotent) and return its id."""
    try:
        get_entry(STANDIN_ID)
    except KeyError:
        register(ModelEntry(
            id=STANDIN_ID, title="Stand-in tiny net (tests only)", family="custom", num_classes=2,
            licence="MIT", source="app/standin.py", loader=lambda device="cpu", **kw: TinySeg().to(device),
            description="Deterministic two-class toy model for tests and benchmarks.",
        ))
    return STANDIN_ID


def synthetic_image(size: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An image with a saturated disc on a textured background and its mask (1 = disc)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.stack([0.35 + 0.2 * xx, 0.4 + 0.1 * yy, 0.45 - 0.1 * xx], -1)
    img += rng.normal(0, 0.03, img.shape)
    disc = (yy - 0.5) ** 2 + (xx - 0.45) ** 2 < 0.28**2
    img[disc] = np.array([0.9, 0.35, 0.2]) + rng.normal(0, 0.05, (int(disc.sum()), 3))
    return (np.clip(img, 0, 1) * 255).astype(np.uint8), disc.astype(np.uint8)


def write_synthetic_example(folder: str | Path, size: int = 96, seed: int = 0) -> tuple[Path, Path]:
    """Write ``synthetic.png`` and its palette mask ``synthetic_mask.png``; returns both paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    img, mask = synthetic_image(size, seed)
    ip, mp = folder / "synthetic.png", folder / "synthetic_mask.png"
    Image.fromarray(img).save(ip)
    m = Image.fromarray(mask, "P")
    m.putpalette([0, 0, 0, 192, 128, 255] + [0, 0, 0] * 254)
    m.save(mp)
    return ip, mp
