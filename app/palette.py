"""The app's colours, in one place: Okabe–Ito categorical colours that stay apart under colour-vision deficiency.

Okabe & Ito (2008), "Color Universal Design": eight colours chosen so that people with protanopia or deuteranopia
can still tell them apart.  Every figure takes its categorical colours from here (attack colours are registered
with the attacks, :mod:`attack_engine.objectives`, from the same set); the continuous maps use Viridis, Inferno
and Plasma, which are perceptually uniform and readable without red-green discrimination.

:data:`MUST_DIFFER` lists the colour groups a reader has to tell apart; ``tests/test_palette.py`` checks every
pair of each group under simulated deuteranopia and protanopia (:mod:`app.colour_vision`).
"""

from __future__ import annotations

OKABE_ITO = {
    "orange": "#E69F00",
    "sky blue": "#56B4E9",
    "bluish green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish purple": "#CC79A7",
}

CORRECT = OKABE_ITO["bluish green"]  # pixels still classified correctly
WRONG = OKABE_ITO["vermillion"]  # pixels already wrong
UNCERTAIN = OKABE_ITO["sky blue"]  # correct but not confident (p_y < 0.9)
WEIGHT = OKABE_ITO["blue"]  # the gradient-weight curve
PEAK = OKABE_ITO["reddish purple"]  # p*, where the gradient size peaks
MIOU = OKABE_ITO["sky blue"]
BEST = OKABE_ITO["yellow"]  # the best-iterate star
GREY = "#8c8c8c"  # neutral lines (step size, the current record); readable on light and dark backgrounds
COLORWAY = [OKABE_ITO[k] for k in ("blue", "orange", "bluish green", "vermillion", "reddish purple", "sky blue")]

# the flipped-pixels map, RGB: became wrong / became right / changed between two wrong classes
FLIP_TO_WRONG = (213, 94, 0)  # vermillion
FLIP_TO_RIGHT = (0, 114, 178)  # blue
FLIP_WRONG_TO_WRONG = (240, 228, 66)  # yellow

# grid and axis lines: half-transparent grey, so they read on the light and the dark page
GRID = "rgba(128,128,128,0.22)"
ZEROLINE = "rgba(128,128,128,0.4)"
AXISLINE = "rgba(128,128,128,0.7)"
TRANSPARENT = "rgba(0,0,0,0)"


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02X}{:02X}{:02X}".format(*rgb)


def rgba(colour: str, alpha: float) -> str:
    """``"#RRGGBB"`` with opacity ``alpha``, as a CSS/Plotly ``rgba(...)`` string."""
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha:g})"


MUST_DIFFER: dict[str, tuple[str, ...]] = {
    "histogram: correct / wrong bars": (CORRECT, WRONG),
    "gradient mass: confident-correct / uncertain-correct / already wrong": (CORRECT, UNCERTAIN, WRONG),
    "flipped map: became wrong / became right / wrong to other wrong":
        (_hex(FLIP_TO_WRONG), _hex(FLIP_TO_RIGHT), _hex(FLIP_WRONG_TO_WRONG)),
}
"""Colour groups of areas (bars, stacked areas, map pixels) whose members a reader must tell apart."""

LINES_MUST_DIFFER: dict[str, tuple[str, ...]] = {
    "metrics: pixel accuracy / mIoU (same axis)": (CORRECT, MIOU),
    "histogram: weight curve / p* line / bars": (WEIGHT, PEAK, CORRECT, WRONG),
}
"""Groups with lines in them (also told apart by dash, width and label); the attack colours, a line group too,
are checked from the registry."""
