"""The one contract every segmentation model follows.

* input: RGB in [0, 1], ``[B,3,H,W]``; the adapter does its own normalisation (mean/std, BGR, 0-255);
* output: logits ``[B,C,H,W]`` at the input resolution, differentiable w.r.t. the input;
* eval mode and frozen weights, always (``train()`` is refused);
* metadata: id, class names, palette, ignore index, input-size policy, licence and source;
* device and dtype belong to the adapter (:meth:`SegModel.to`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

ASSETS = Path(__file__).resolve().parents[2] / "assets"


class ModelUnavailable(RuntimeError):
    """The model's weights are not on this machine (and cannot be downloaded): the message says what to do."""


@dataclass(frozen=True)
class ModelInfo:
    """Metadata of a model, shown in the registry, the CLI and the app."""

    id: str
    title: str
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    ignore_index: int = 255
    input_size: tuple[int, int] | None = None  # (H, W) the model is run at; None = any size
    size_multiple: int = 1  # H and W are padded/resized to a multiple of this when input_size is None
    licence: str = ""
    source: str = ""
    notes: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def palette_array(self) -> np.ndarray:
        return np.asarray(self.palette, dtype=np.uint8).reshape(-1, 3)


def default_palette(n: int) -> tuple[tuple[int, int, int], ...]:
    """The Pascal VOC colour map (bit-interleaved), good for any number of classes."""
    out = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out.append((r, g, b))
    return tuple(out)


class SegModel(nn.Module):
    """Base adapter: subclasses implement :meth:`logits` on [0, 1] RGB input.

    Calling the adapter runs ``logits`` (with autocast when ``dtype`` is float16/bfloat16) and checks
    the output contract.  Parameters are frozen and the module stays in eval mode.
    """

    def __init__(self, info: ModelInfo) -> None:
        super().__init__()
        self.info = info
        self.autocast_dtype: torch.dtype | None = None

    # -- contract ------------------------------------------------------------------------------------
    def logits(self, x: torch.Tensor) -> torch.Tensor:  # abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"{self.info.id}: expected RGB input [B,3,H,W] in [0,1], got {tuple(x.shape)}")
        dev = self.device
        x = x.to(dev)
        if self.autocast_dtype is not None:
            with torch.autocast(dev.type, dtype=self.autocast_dtype):
                out = self.logits(x)
        else:
            out = self.logits(x.to(self.param_dtype))
        if out.shape[-2:] != x.shape[-2:]:
            out = nn.functional.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return out

    def freeze(self) -> SegModel:
        super().train(False)
        for p in self.parameters():
            p.requires_grad_(False)
        return self

    def train(self, mode: bool = True) -> SegModel:
        if mode:
            raise RuntimeError(f"{self.info.id}: attack models stay in eval mode; train() is not allowed")
        return super().train(False)

    # -- device / dtype ------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    @property
    def param_dtype(self) -> torch.dtype:
        for t in self.parameters():
            return t.dtype if t.is_floating_point() else torch.float32
        return torch.float32

    def with_autocast(self, dtype: torch.dtype | None) -> SegModel:
        """Run the forward pass under autocast (``torch.bfloat16``/``torch.float16``) or not (``None``)."""
        self.autocast_dtype = dtype
        return self

    @property
    def num_classes(self) -> int:
        return self.info.num_classes


@dataclass
class ModelEntry:
    """One model in the registry (:mod:`attack_engine.models.registry`): metadata and how to build it."""

    id: str
    title: str
    family: str  # "bundled", "mmseg", "segformer", "custom"
    num_classes: int
    licence: str
    source: str
    loader: Callable[..., SegModel] = field(repr=False)
    weights: Callable[[], list[Path]] = field(repr=False, default=lambda: [])  # files that must exist
    description: str = ""
    download_mb: float = 0.0  # size of the weights a first use downloads (0: nothing to download)
    hub: bool = False  # weights come from the Hugging Face Hub (HF_HUB_OFFLINE applies)

    def available(self) -> bool:
        """True when every weight file is on this machine (no download needed)."""
        return all(p.exists() for p in self.weights())
