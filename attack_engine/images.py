"""Loading images and label masks, and the resize policy between an upload and a model.

Resize policy: an image is resized (bilinear, antialiased) to the model's input size for the attack
(``ModelInfo.input_size``; models without one run at the image size rounded to ``size_multiple``,
capped at ``max_side``), and results are shown at the upload's size (nearest for label maps).
Label masks are resized with nearest neighbour only.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 40_000_000  # refuse anything larger before decoding (decompression bombs)


class ImageError(ValueError):
    """An input that is not a usable image or mask; the message is meant for the user."""


def _open(src: str | Path | bytes | Image.Image | np.ndarray) -> Image.Image:
    if isinstance(src, Image.Image):
        return src
    if isinstance(src, np.ndarray):
        if src.dtype != np.uint8:
            arr = np.asarray(src, dtype=np.float64)
            if not np.isfinite(arr).all():
                raise ImageError("image array contains NaN or inf")
            if arr.max() <= 1.0:
                arr = arr * 255.0
            src = np.clip(arr, 0, 255).astype(np.uint8)
        return Image.fromarray(src)
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        im = Image.open(io.BytesIO(src) if isinstance(src, bytes) else src)
        if im.width * im.height > MAX_PIXELS:
            raise ImageError(f"image is {im.width}×{im.height}; the limit is {MAX_PIXELS:,} pixels")
        im.load()
    except FileNotFoundError:
        raise ImageError(f"no such file: {src}") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as e:
        if isinstance(e, ImageError):
            raise
        raise ImageError(f"not a readable image ({type(e).__name__}: {e})") from None
    return im


def load_image(src: str | Path | bytes | Image.Image | np.ndarray) -> np.ndarray:
    """Any image (path, bytes, PIL, array) -> ``H×W×3`` uint8 RGB, EXIF-rotated, first frame, alpha on white."""
    im = _open(src)
    if getattr(im, "n_frames", 1) > 1:
        im.seek(0)
    im = ImageOps.exif_transpose(im) or im
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        im = Image.fromarray(arr.astype(np.uint8))
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im)
    im = im.convert("RGB")
    if im.width < 1 or im.height < 1:
        raise ImageError("image is empty")
    return np.asarray(im, dtype=np.uint8).copy()


def load_mask(src: str | Path | bytes | Image.Image | np.ndarray, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """A label mask (palette/grayscale PNG or integer array) -> ``H×W`` int64; unknown ids raise :class:`ImageError`."""
    if isinstance(src, np.ndarray) and src.ndim == 2 and np.issubdtype(src.dtype, np.integer):
        arr = src.astype(np.int64)
    else:
        im = _open(src)
        if im.mode == "RGB" or im.mode == "RGBA":
            rgb = np.asarray(im.convert("RGB"))
            if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])):
                raise ImageError("mask must hold class ids (palette or grayscale PNG), not colours")
            arr = rgb[..., 0].astype(np.int64)
        else:
            arr = np.asarray(im if im.mode in ("P", "L", "I", "I;16") else im.convert("L")).astype(np.int64)
    bad = np.unique(arr[(arr != ignore_index) & ((arr < 0) | (arr >= num_classes))])
    if bad.size:
        raise ImageError(f"mask has class ids {bad[:8].tolist()} outside 0..{num_classes - 1} (ignore = {ignore_index})")
    return arr


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """``H×W×3`` uint8 -> ``[1,3,H,W]`` float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """``[3,H,W]`` or ``[1,3,H,W]`` in [0, 1] -> ``H×W×3`` uint8."""
    x = x.detach().float().cpu()
    if x.dim() == 4:
        x = x[0]
    return (x.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()


def model_size(shape_hw: tuple[int, int], input_size: tuple[int, int] | None, multiple: int = 1, max_side: int = 1024) -> tuple[int, int]:
    """The (H, W) a model runs at for an image of ``shape_hw`` (see the module's resize policy)."""
    if input_size is not None:
        return tuple(input_size)  # type: ignore[return-value]
    h, w = shape_hw
    s = min(1.0, max_side / max(h, w))
    h, w = max(1, round(h * s)), max(1, round(w * s))
    m = max(1, multiple)
    return max(m, round(h / m) * m), max(m, round(w / m) * m)


def resize_image(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear antialiased resize of ``[B,3,H,W]`` to ``size``; identity when already that size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)


def resize_labels(y: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of ``[B,H,W]`` integer labels."""
    if tuple(y.shape[-2:]) == tuple(size):
        return y
    return F.interpolate(y[:, None].float(), size=size, mode="nearest")[:, 0].long()
