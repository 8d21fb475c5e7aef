"""Simulated colour-vision deficiency and CIELAB colour differences (to check that the palette stays readable).

Dichromacy is simulated with the severity-1.0 matrices of Machado, Oliveira & Fernandes (2009), "A
physiologically-based model for simulation of color vision deficiency" (IEEE TVCG 15(6)), applied to linear
sRGB; differences are CIE76 ΔE*ab in CIELAB (D65).
"""

from __future__ import annotations

import numpy as np

MACHADO_2009 = {
    "normal": np.eye(3),
    "deuteranopia": np.array([[0.367322, 0.860646, -0.227968],
                              [0.280085, 0.672501, 0.047413],
                              [-0.011820, 0.042940, 0.968881]]),
    "protanopia": np.array([[0.152286, 1.052583, -0.204868],
                            [0.114503, 0.786281, 0.099216],
                            [-0.003882, -0.048116, 1.051998]]),
}
_SRGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                         [0.2126729, 0.7151522, 0.0721750],
                         [0.0193339, 0.1191920, 0.9503041]])
_D65 = np.array([0.95047, 1.0, 1.08883])


def rgb_of(colour: str | tuple[int, int, int]) -> np.ndarray:
    """``"#RRGGBB"``, ``"rgb(r,g,b)"`` or an (r, g, b) tuple -> float array of 0..255."""
    if isinstance(colour, str):
        c = colour.strip()
        if c.startswith("#"):
            return np.array([int(c[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.float64)
        return np.array([float(v) for v in c[c.index("(") + 1:c.index(")")].split(",")[:3]])
    return np.asarray(colour, dtype=np.float64)


def to_linear(rgb: np.ndarray) -> np.ndarray:
    """sRGB 0..255 -> linear 0..1 (any shape ending in 3)."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def to_srgb(lin: np.ndarray) -> np.ndarray:
    """Linear 0..1 -> sRGB 0..255 floats (clipped)."""
    c = np.clip(lin, 0.0, 1.0)
    return 255.0 * np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)


def simulate(rgb: np.ndarray, kind: str) -> np.ndarray:
    """sRGB 0..255 (any shape ending in 3) as seen with ``kind`` (a key of :data:`MACHADO_2009`), sRGB 0..255."""
    return to_srgb(to_linear(rgb) @ MACHADO_2009[kind].T)


def to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB 0..255 -> CIELAB (L*, a*, b*) under D65."""
    xyz = to_linear(rgb) @ _SRGB_TO_XYZ.T / _D65
    f = np.where(xyz > 216 / 24389, np.cbrt(xyz), (24389 / 27 * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def delta_e(a: str | tuple, b: str | tuple, kind: str = "normal") -> float:
    """CIE76 ΔE*ab between colours ``a`` and ``b`` as seen with ``kind``."""
    la, lb = (to_lab(simulate(rgb_of(c), kind)) for c in (a, b))
    return float(np.linalg.norm(la - lb))


def simulate_image(pixels: np.ndarray, kind: str) -> np.ndarray:
    """An H×W×3 uint8 image as seen with ``kind`` (for simulated screenshots)."""
    return np.rint(simulate(pixels[..., :3].astype(np.float64), kind)).astype(np.uint8)
