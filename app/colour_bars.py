"""Colour bars drawn into the map panels: a strip under the map with the colour scale and its ticks.

The strip is part of the sent image, so it goes with downloads and exports; :func:`bar_height` tells the click
mapping (:func:`app.view.panel_to_view`) where the map ends.  Strips depend only on the panel width and the
scale, so each is drawn once and pasted (cached).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from app.figures import GRAD_SHOW, WEIGHT_SHOW, colormap

BAR_PANELS = ("weight", "grad", "firstflip")
"""Panels that carry a colour bar."""
ZERO_RGB = (20, 20, 20)  # the maps' colour for exactly 0 (no gradient)
STRIP_BG = (246, 247, 249)
TEXT_RGB = (40, 44, 52)


def bar_height(width: int) -> int:
    """Height of the strip under a map ``width`` pixels wide (about 11 % of the width, at least 30 px: the maps
    are sent at 384 px and shown at about 220-330 CSS px, where its labels read at about 11-16 px)."""
    return max(30, round(0.11 * width))


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # very old Pillow
        return ImageFont.load_default()


def _log_label(e: float) -> str:
    return "1" if e == 0 else f"1e{e:g}"


@lru_cache(maxsize=32)
def _strip(width: int, cmap: str, ticks: tuple[tuple[float, str], ...], zero: bool, note: str) -> Image.Image:
    """The strip: [zero swatch] colour ramp with tick marks and labels at fractions ``ticks`` of the ramp."""
    h = bar_height(width)
    img = Image.new("RGB", (width, h), STRIP_BG)
    d = ImageDraw.Draw(img)
    font = _font(max(10, round(h * 0.42)))
    pad = max(6, width // 40)
    ramp_h = max(6, round(h * 0.3))
    y0 = max(2, round(h * 0.1))
    x0 = pad
    if zero:  # a swatch for "0" before the ramp
        sw = ramp_h
        d.rectangle([x0, y0, x0 + sw, y0 + ramp_h], fill=ZERO_RGB)
        d.text((x0 + sw / 2, y0 + ramp_h + 2), "0", fill=TEXT_RGB, font=font, anchor="ma")
        x0 += sw + pad
    x1 = width - pad - (d.textlength(note, font=font) + pad if note else 0)
    n = max(int(x1 - x0), 2)
    lut = colormap(cmap)[np.linspace(0, 255, n).round().astype(int)]
    ramp = np.repeat(lut[None], ramp_h, 0)
    img.paste(Image.fromarray(ramp.astype(np.uint8), "RGB"), (int(x0), y0))
    for frac, text in ticks:
        x = x0 + frac * (n - 1)
        d.line([(x, y0 + ramp_h), (x, y0 + ramp_h + 2)], fill=TEXT_RGB, width=1)
        anchor = "la" if frac <= 0.02 else "ra" if frac >= 0.98 else "ma"
        d.text((x, y0 + ramp_h + 2), text, fill=TEXT_RGB, font=font, anchor=anchor)
    if note:
        d.text((width - pad, y0 + ramp_h / 2), note, fill=TEXT_RGB, font=font, anchor="rm")
    return img


def log_ticks(lo: float, hi: float) -> tuple[tuple[float, str], ...]:
    """Ticks of a log10 range: both ends and every second decade down from the top; the top one reads ``>=``
    (the map saturates above it)."""
    exps = [float(hi)]
    e = hi - 2
    while e > lo + 0.9:
        exps.append(float(e))
        e -= 2
    exps.append(float(lo))
    return tuple(((x - lo) / (hi - lo), (">=" if x == hi else "") + _log_label(x)) for x in sorted(exps))


def map_strip(name: str, width: int, total: int = 1) -> Image.Image:
    """The strip for panel ``name`` (one of :data:`BAR_PANELS`); ``total`` = records of the run (first-flip map)."""
    if name == "weight":
        return _strip(width, "Viridis", log_ticks(*WEIGHT_SHOW), True, "")
    if name == "grad":
        return _strip(width, "Inferno", log_ticks(*GRAD_SHOW), True, "")
    if name == "firstflip":
        last = max(int(total) - 1, 1)
        mid = last // 2
        return _strip(width, "Plasma", ((0.0, "record 0"), (mid / last, str(mid)), (1.0, str(last))), False, "")
    raise ValueError(f"panel {name!r} has no colour bar")


def with_bar(img: Image.Image, name: str, total: int = 1) -> Image.Image:
    """``img`` (the map, as sent) with its colour-bar strip below."""
    strip = map_strip(name, img.width, total)
    out = Image.new("RGB", (img.width, img.height + strip.height), STRIP_BG)
    out.paste(img.convert("RGB"), (0, 0))
    out.paste(strip, (0, img.height))
    return out
