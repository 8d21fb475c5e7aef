"""Loading images and label masks, and the resize policy between an upload and a model.

Resize policy: an image is resized (bilinear, antialiased) to the model's input size for the attack
(``ModelInfo.input_size``; models without one run at the image size rounded to ``size_multiple``,
capped at ``max_side``), and results are shown at the upload's size (nearest for label maps).
Label masks are resized with nearest neighbour only.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 40_000_000  # refuse anything larger before decoding (decompression bombs)
_INT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


class ImageError(ValueError):
    """An input that is not a usable image or mask; the message is meant for the user."""


@dataclass
class LoadedImage:
    """:func:`read_image`'s result: ``array`` ``H×W×3`` uint8 RGB, the size before any downscaling (after EXIF
    rotation) and one line per conversion made (``notes``: grayscale, transparency, 16-bit, downscaled, ...)."""

    array: np.ndarray
    source_hw: tuple[int, int]
    notes: list[str] = field(default_factory=list)


def _array_image(src: np.ndarray, max_pixels: int) -> Image.Image:
    """A numeric array -> PIL image, refusing shapes, sizes and values that are not an image."""
    if src.dtype.kind not in "buif":
        raise ImageError(f"image array has dtype {src.dtype}; expected numbers")
    if src.ndim == 3 and src.shape[2] == 1:
        src = src[..., 0]
    if not (src.ndim == 2 or (src.ndim == 3 and src.shape[2] in (3, 4))):
        raise ImageError(f"image array has shape {src.shape}; expected H×W, H×W×3 or H×W×4")
    if src.shape[0] < 1 or src.shape[1] < 1:
        raise ImageError(f"image array is empty ({src.shape[1] if src.ndim > 1 else 0}×{src.shape[0]})")
    if src.shape[0] * src.shape[1] > max_pixels:
        raise ImageError(f"image is {src.shape[1]}×{src.shape[0]}; the limit is {max_pixels:,} pixels")
    if src.dtype != np.uint8:
        arr = np.asarray(src, dtype=np.float64)
        if not np.isfinite(arr).all():
            raise ImageError("image array contains NaN or inf")
        if src.dtype.kind == "b" or arr.max() <= 1.0:
            arr = arr * 255.0
        src = np.clip(arr, 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(src))


def _open(src: str | Path | bytes | Image.Image | np.ndarray, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open without decoding pixels (files/bytes), checking the size from the header first."""
    if isinstance(src, Image.Image):
        return src
    if isinstance(src, np.ndarray):
        return _array_image(src, max_pixels)
    if not isinstance(src, (str, Path, bytes, bytearray)):
        raise ImageError(f"expected an image file, got {type(src).__name__}")
    Image.MAX_IMAGE_PIXELS = max(MAX_PIXELS, max_pixels)
    try:
        im = Image.open(io.BytesIO(bytes(src)) if isinstance(src, (bytes, bytearray)) else src)
    except FileNotFoundError:
        raise ImageError("the file is no longer there (an upload is kept for a limited time): upload it again") from None
    except IsADirectoryError:
        raise ImageError("expected an image file, got a folder") from None
    except Image.DecompressionBombError:
        raise ImageError(f"image is too large: the limit is {max_pixels:,} pixels") from None
    except UnidentifiedImageError:
        raise ImageError("not a readable image (the file's content is no image format this app reads)") from None
    except Exception as e:  # a malformed header can raise almost anything inside a PIL plugin
        raise ImageError(f"not a readable image ({type(e).__name__})") from None
    w, h = im.size
    if w < 1 or h < 1:
        raise ImageError(f"image is empty ({w}×{h})")
    if w * h > max_pixels:
        raise ImageError(f"image is {w}×{h} = {w * h:,} pixels; the limit is {max_pixels:,}")
    if im.format == "PNG":  # PNG chunks carry checksums: a damaged file is refused, not decoded into garbage
        try:
            Image.open(io.BytesIO(bytes(src)) if isinstance(src, (bytes, bytearray)) else src).verify()
        except Exception as e:
            raise ImageError(f"image file is truncated or corrupt ({type(e).__name__})") from None
    return im


def _load(im: Image.Image) -> None:
    try:
        im.load()
    except Image.DecompressionBombError:
        raise ImageError("image is too large to decode") from None
    except MemoryError:
        raise ImageError("image is too large to decode in the memory available") from None
    except Exception as e:
        what = "truncated or corrupt" if isinstance(e, (OSError, EOFError, SyntaxError)) else "not decodable"
        raise ImageError(f"image file is {what} ({type(e).__name__})") from None


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # a broken EXIF block: ignore it
        return 1


def read_image(src: str | Path | bytes | Image.Image | np.ndarray, *, max_pixels: int = MAX_PIXELS,
               max_side: int | None = None, min_side: int = 1, max_aspect: float | None = None) -> LoadedImage:
    """Any image (path, bytes, PIL, array) -> :class:`LoadedImage`; anything unusable raises :class:`ImageError`.

    EXIF rotation is applied, the first frame of an animation taken, transparency flattened onto white, 16-bit and
    float images stretched to 8 bits, CMYK/grayscale/palette converted to RGB.  Images larger than
    ``max_pixels`` are refused before decoding; a longer side above ``max_side`` is downscaled (JPEGs decode at a
    reduced scale, so a large photo never occupies full-size memory).  Images with a side under ``min_side`` or
    sides more unequal than ``max_aspect`` are refused.
    """
    im = _open(src, max_pixels)
    notes: list[str] = []
    orient = _orientation(im)
    w0, h0 = im.size
    if orient in (5, 6, 7, 8):
        w0, h0 = h0, w0
    n_frames = 1
    try:
        n_frames = int(getattr(im, "n_frames", 1) or 1)
    except Exception:
        raise ImageError("image file is truncated or corrupt (frames)") from None
    if n_frames > 1:
        try:
            im.seek(0)
        except Exception:
            raise ImageError("image file is truncated or corrupt (first frame)") from None
        notes.append(f"{'animated' if getattr(im, 'is_animated', False) else 'multi-frame'} image: "
                     f"the first of {n_frames} frames is used")
    if max_side and im.format == "JPEG" and max(im.size) > max_side:
        im.draft(im.mode, (max_side, max_side))  # DCT-domain downscale while decoding (at least the size asked)
    _load(im)
    if orient != 1:
        try:
            im = ImageOps.exif_transpose(im) or im
            notes.append("rotated as its EXIF orientation says")
        except Exception:
            notes.append("EXIF orientation unreadable: used as stored")
    mode = im.mode
    try:
        if mode in _INT_MODES:
            arr = np.asarray(im, dtype=np.float64)
            if not np.isfinite(arr).all():
                raise ImageError("image contains NaN or inf values")
            lo, hi = float(arr.min()), float(arr.max())
            arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
            im = Image.fromarray(arr.astype(np.uint8))
            notes.append(f"{'float' if mode == 'F' else '16/32-bit'} grayscale stretched to 8 bits")
        if mode in _ALPHA_MODES or (mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
            im = Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im)
            notes.append("transparency flattened onto white")
        elif mode == "CMYK":
            notes.append("CMYK converted to RGB")
        elif mode in ("L", "1"):
            notes.append("grayscale converted to RGB")
        elif mode == "P":
            notes.append("palette image converted to RGB")
        im = im.convert("RGB")
    except ImageError:
        raise
    except Exception as e:
        raise ImageError(f"image colour mode {mode} cannot be converted to RGB ({type(e).__name__})") from None
    w, h = im.size
    if min(w, h) < min_side:
        raise ImageError(f"image is {w}×{h}; each side must be at least {min_side} pixels")
    if max_aspect and max(w, h) / min(w, h) > max_aspect:
        raise ImageError(f"image is {w}×{h}; the longer side may be at most {max_aspect:g}× the shorter")
    if max_side and max(w, h) > max_side:
        s = max_side / max(w, h)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        im = im.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)
        notes.append(f"downscaled from {w0}×{h0} to {size[0]}×{size[1]} (at most {max_side} px per side)")
    elif im.size != (w0, h0):  # a JPEG draft decoded smaller than the cap asked for: say so too
        notes.append(f"downscaled from {w0}×{h0} to {w}×{h} (at most {max_side} px per side)")
    return LoadedImage(np.asarray(im, dtype=np.uint8).copy(), (h0, w0), notes)


def load_image(src: str | Path | bytes | Image.Image | np.ndarray, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Any image (path, bytes, PIL, array) -> ``H×W×3`` uint8 RGB, EXIF-rotated, first frame, alpha on white.

    Raises :class:`ImageError` (and nothing else) for anything that is not a usable image.
    """
    return read_image(src, max_pixels=max_pixels).array


def load_mask(src: str | Path | bytes | Image.Image | np.ndarray, num_classes: int, ignore_index: int = 255,
              max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A label mask (palette/grayscale PNG or integer array) -> ``H×W`` int64; unknown ids raise :class:`ImageError`."""
    if isinstance(src, np.ndarray) and src.ndim == 2 and np.issubdtype(src.dtype, np.integer):
        if src.size == 0 or src.size > max_pixels:
            raise ImageError(f"mask is {src.shape[1]}×{src.shape[0]}; it must have between 1 and {max_pixels:,} pixels")
        arr = src.astype(np.int64)
    else:
        im = _open(src, max_pixels)
        if getattr(im, "n_frames", 1) > 1:
            raise ImageError("mask must be a single image, not an animation")
        _load(im)
        if im.mode in ("RGB", "RGBA"):
            rgb = np.asarray(im.convert("RGB"))
            if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])):
                raise ImageError("mask must hold class ids (palette or grayscale PNG), not colours")
            arr = rgb[..., 0].astype(np.int64)
        elif im.mode in ("1", "P", "L", "I", "I;16", "I;16B", "I;16L", "I;16N"):
            arr = np.asarray(im).astype(np.int64)
        elif im.mode == "F":
            f = np.asarray(im, dtype=np.float64)
            if not np.isfinite(f).all() or not np.array_equal(f, np.round(f)):
                raise ImageError("mask must hold whole-number class ids (this one has fractions, NaN or inf)")
            arr = f.astype(np.int64)
        else:
            try:
                arr = np.asarray(im.convert("L")).astype(np.int64)
            except Exception as e:
                raise ImageError(f"mask colour mode {im.mode} is not a class-id image ({type(e).__name__})") from None
    bad = np.unique(arr[(arr != ignore_index) & ((arr < 0) | (arr >= num_classes))])
    if bad.size:
        raise ImageError(f"mask has class ids {bad[:8].tolist()} outside 0..{num_classes - 1} (ignore = {ignore_index})")
    return arr


def sample_nearest(t: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """``[..., H, W]`` any dtype -> the pixels nearest to the centres of an ``hw`` grid (no copy when already ``hw``)."""
    h, w = t.shape[-2:]
    if (h, w) == tuple(hw):
        return t
    ys = ((torch.arange(hw[0], device=t.device) + 0.5) * h / hw[0]).long().clamp(max=h - 1)
    xs = ((torch.arange(hw[1], device=t.device) + 0.5) * w / hw[1]).long().clamp(max=w - 1)
    return t[..., ys[:, None], xs[None, :]]


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
        return tuple(input_size)
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
