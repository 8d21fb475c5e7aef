"""Pure builders: recorded data -> PIL images (per-pixel panels) and small Plotly figures.

Nothing here touches Gradio or session state; every function is a function of its arguments.
Per-pixel maps are images (cheap to send as PNG/JPEG); Plotly is used for the small charts where
hover values matter.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from plotly.colors import sequential

from app.palette import (
    AXISLINE,
    BEST,
    COLORWAY,
    CORRECT,
    FLIP_TO_RIGHT,
    FLIP_TO_WRONG,
    FLIP_WRONG_TO_WRONG,
    GREY,
    GRID,
    MIOU,
    PEAK,
    TRANSPARENT,
    UNCERTAIN,
    WEIGHT,
    WRONG,
    ZEROLINE,
)
from app.trajectory import G_LOG, HIST_BINS, W_LOG, Trajectory
from attack_engine.losses import pixel_terms
from attack_engine.registry import attack_specs, get_attack, param_symbol, takes_schedule

FONT = dict(family="Inter, system-ui, sans-serif", size=11)
MARGIN = dict(l=48, r=48, t=34, b=36)
AXIS = dict(gridcolor=GRID, zerolinecolor=ZEROLINE, linecolor=AXISLINE)


# -- colour maps ------------------------------------------------------------------------------------
def _hex_or_rgb(c: str) -> tuple[int, int, int]:
    c = c.strip()
    if c.startswith("#"):
        return int(c[1:3], 16), int(c[3:5], 16), int(c[5:7], 16)
    nums = c[c.index("(") + 1 : c.index(")")].split(",")
    return int(float(nums[0])), int(float(nums[1])), int(float(nums[2]))


@lru_cache(maxsize=8)
def colormap(name: str = "Viridis") -> np.ndarray:
    """A 256×3 uint8 lookup table interpolated from a Plotly sequential scale."""
    stops = np.array([_hex_or_rgb(c) for c in getattr(sequential, name)], dtype=np.float64)
    xs = np.linspace(0, 1, len(stops))
    t = np.linspace(0, 1, 256)
    return np.stack([np.interp(t, xs, stops[:, i]) for i in range(3)], 1).round().astype(np.uint8)


def _font(size: int = 12) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # very old Pillow
        return ImageFont.load_default()


# -- lightweight figures ----------------------------------------------------------------------------
def finite_list(a, digits: int = 5) -> list:
    """Array -> JSON-safe list (rounded; NaN/inf -> None)."""
    arr = np.round(np.asarray(a, dtype=np.float64), digits)
    return [float(v) if math.isfinite(v) else None for v in arr.tolist()]


class Fig:
    """A Plotly figure as plain ``data``/``layout`` dicts.

    ``gr.Plot`` sends ``to_json()`` as it would a ``plotly.graph_objects.Figure`` (skipping Plotly's
    per-property validation, which costs ~15 ms a figure).
    """

    def __init__(self, data: list[dict], layout: dict) -> None:
        self.data = data
        self.layout = layout

    def to_dict(self) -> dict:
        return {"data": self.data, "layout": self.layout}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)


# -- image panels -----------------------------------------------------------------------------------
def to_pil(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint8))


def palette_array(palette: Sequence[Sequence[int]], n: int) -> np.ndarray:
    """``(n+1)×3`` uint8; the extra last row is used for out-of-range ids."""
    pal = np.zeros((max(n, 1) + 1, 3), dtype=np.uint8)
    pal[: len(palette)] = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)[:n]
    return pal


def dimmed(image: np.ndarray, scale: float = 0.45, offset: float = 60.0) -> Image.Image:
    """Low-contrast grey RGB version of an image (background of the flip panels)."""
    lum = (image[..., 0].astype(np.uint16) * 77 + image[..., 1].astype(np.uint16) * 150
           + image[..., 2].astype(np.uint16) * 29) >> 8
    g = (lum.astype(np.float32) * scale + offset).clip(0, 255).astype(np.uint8)
    return Image.fromarray(g, "L").convert("RGB")


def background(traj: Trajectory) -> Image.Image:
    """Dimmed grey copy of the run's clean view image (background of the flip panels), drawn once per run."""
    bg = traj.view_cache.get("background")
    if bg is None:
        bg = traj.view_cache["background"] = dimmed(traj.image_v)
    return bg


def _paletted(codes: np.ndarray, lut: np.ndarray) -> Image.Image:
    """uint8 codes + a ≤256×3 colour table -> RGB image (the lookup runs in Pillow's C code)."""
    im = Image.fromarray(np.ascontiguousarray(codes, dtype=np.uint8), "P")
    pal = np.zeros((256, 3), dtype=np.uint8)
    pal[: len(lut)] = lut[:256]
    im.putpalette(pal.tobytes())
    return im.convert("RGB")


def _mask(m: np.ndarray) -> Image.Image:
    return Image.fromarray(m.astype(np.uint8) * 255, "L")


def seg_overlay(image: np.ndarray, labels: np.ndarray, palette: Sequence[Sequence[int]], alpha: float = 0.55,
                ignore_index: int = 255) -> Image.Image:
    """Class colours blended over the image; ignored (``ignore_index``) and unknown pixels stay as the image."""
    n = len(palette)
    lab = np.asarray(labels)
    bad = (lab < 0) | (lab >= n) | (lab == ignore_index)
    base = to_pil(image)
    if n <= 256:
        col = _paletted(np.where(bad, 0, lab).astype(np.uint8), palette_array(palette, n)[:n])
    else:
        col = to_pil(palette_array(palette, n)[np.where(bad, n, lab)])
    out = Image.blend(base, col, alpha)
    if bad.any():
        out = Image.composite(base, out, _mask(bad))
    return out


def perturbation_image(delta_code: np.ndarray) -> Image.Image:
    """Stored perturbation codes (int8, ±127 = ±δ_max) amplified to the full range: grey = 0."""
    lut = np.clip(np.rint(127.5 + (np.arange(256) - 256 * (np.arange(256) >= 128)) / 127.0 * 127.5), 0, 255)
    im = Image.fromarray(np.ascontiguousarray(delta_code).view(np.uint8), "RGB")
    return im.point(lut.astype(np.uint8).tolist() * 3)


def adversarial_image(image: np.ndarray, delta_code: np.ndarray, dmax: float) -> Image.Image:
    """clip(image + δ) as an image, from the stored int8 perturbation codes (saturating adds in Pillow)."""
    from PIL import ImageChops

    signed = np.arange(256) - 256 * (np.arange(256) >= 128)
    off = np.rint(signed / 127.0 * dmax * 255.0)
    pos = np.clip(off, 0, 255).astype(np.uint8).tolist() * 3
    neg = np.clip(-off, 0, 255).astype(np.uint8).tolist() * 3
    d = Image.fromarray(np.ascontiguousarray(delta_code).view(np.uint8), "RGB")
    return ImageChops.subtract(ImageChops.add(to_pil(image), d.point(pos)), d.point(neg))


def flipped_image(background: Image.Image, pred: np.ndarray, clean_pred: np.ndarray, labels: np.ndarray,
                  valid: np.ndarray) -> Image.Image:
    """Dimmed image; vermillion = pixel became wrong, blue = became right, yellow = changed between wrong classes."""
    changed = (pred != clean_pred) & valid
    if not changed.any():
        return background.copy()
    was_ok, now_ok = clean_pred == labels, pred == labels
    code = changed * (3 - 2 * was_ok.astype(np.uint8) - now_ok.astype(np.uint8))
    lut = np.array([(0, 0, 0), FLIP_TO_WRONG, FLIP_TO_RIGHT, FLIP_WRONG_TO_WRONG], dtype=np.uint8)
    return Image.composite(_paletted(code, lut), background, _mask(changed))


def first_flip_image(background: Image.Image, first_flip: np.ndarray, total: int) -> Image.Image:
    """Pixels coloured by the record at which they first flipped (early = dark purple, late = yellow)."""
    m = first_flip >= 0
    if not m.any():
        return background.copy()
    idx = np.clip(first_flip * 255 // max(total - 1, 1), 0, 255)
    return Image.composite(_paletted(idx, colormap("Plasma")), background, _mask(m))


def heatmap_image(values: np.ndarray, lo: float, hi: float, log: bool = True, cmap: str = "Viridis",
                  zero_color: tuple[int, int, int] = (20, 20, 20)) -> Image.Image:
    """A scalar map through a colour map over [lo, hi] (log10 bounds when ``log``); non-positive -> ``zero_color``."""
    v = np.asarray(values, dtype=np.float32)
    zero = ~(v > 0) if log else ~np.isfinite(v)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = ((np.log10(v) if log else v) - lo) / (hi - lo)
    idx = np.clip(np.nan_to_num(t, nan=0.0, neginf=0.0, posinf=1.0) * 254, 0, 254).astype(np.uint8) + 1
    idx[zero] = 0
    lut = np.concatenate([np.array([zero_color], dtype=np.uint8), colormap(cmap)[np.linspace(0, 255, 255).astype(int)]])
    return _paletted(idx, lut)


@lru_cache(maxsize=16)
def _code_lut(store_lo: float, store_hi: float, show_lo: float, show_hi: float, cmap: str) -> np.ndarray:
    codes = np.arange(256, dtype=np.float64)
    logv = store_lo + (codes - 1) / 254.0 * (store_hi - store_lo)
    t = np.clip((logv - show_lo) / (show_hi - show_lo), 0, 1)
    lut = colormap(cmap)[np.rint(t * 255).astype(np.int64)]
    lut[0] = (20, 20, 20)
    return lut


def log_code_image(codes: np.ndarray, store: tuple[float, float], show: tuple[float, float], cmap: str) -> Image.Image:
    """Log-quantised uint8 codes (see :func:`app.trajectory.quantise_log`) -> colours over log10 range ``show``."""
    return _paletted(codes, _code_lut(store[0], store[1], show[0], show[1], cmap))


WEIGHT_SHOW = (-4.0, 2.0)  # log10 colour range of the weight map
GRAD_SHOW = (-5.0, 0.0)  # log10 colour range of the |dL/dz| map


def weight_image(codes: np.ndarray) -> Image.Image:
    return log_code_image(codes, W_LOG, WEIGHT_SHOW, "Viridis")


def grad_image(codes: np.ndarray) -> Image.Image:
    return log_code_image(codes, G_LOG, GRAD_SHOW, "Inferno")


def with_marker(img: Image.Image, xy: tuple[int, int] | None) -> Image.Image:
    """Draw a crosshair at view pixel ``xy`` = (x, y) (scaled to the image size)."""
    if xy is None:
        return img
    img = img.copy()
    d = ImageDraw.Draw(img)
    x, y = xy
    r = max(4, img.width // 40)
    for c, w in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        d.line([(x - r, y), (x - 2, y)], fill=c, width=w)
        d.line([(x + 2, y), (x + r, y)], fill=c, width=w)
        d.line([(x, y - r), (x, y - 2)], fill=c, width=w)
        d.line([(x, y + 2), (x, y + r)], fill=c, width=w)
    return img


def placeholder_image(text: str, size: tuple[int, int] = (256, 256)) -> Image.Image:
    """A grey tile with centred text (for panels that have nothing to show)."""
    w, h = size[1], size[0]
    img = Image.new("RGB", (w, h), (236, 238, 242))
    d = ImageDraw.Draw(img)
    font = _font(max(12, w // 16))
    lines, line = [], ""
    for word in text.split():
        cand = (line + " " + word).strip()
        if d.textlength(cand, font=font) > w * 0.86 and line:
            lines.append(line)
            line = word
        else:
            line = cand
    lines.append(line)
    lh = font.size + 4 if hasattr(font, "size") else 14
    y0 = h / 2 - lh * len(lines) / 2
    for i, ln in enumerate(lines):
        d.text(((w - d.textlength(ln, font=font)) / 2, y0 + i * lh), ln, fill=(90, 96, 110), font=font)
    return img


def label_tile(img: Image.Image, title: str, sub: str = "", size: int = 13) -> Image.Image:
    """``img`` with a caption strip on top (for exports and the compare grid); ``size``: the title's pixel size
    (the subtitle's is 2 less)."""
    line = size + 4
    bar = 2 * line + 2 if sub else line + 4
    out = Image.new("RGB", (img.width, img.height + bar), (255, 255, 255))
    out.paste(img.convert("RGB"), (0, bar))
    d = ImageDraw.Draw(out)
    d.text((4, 2), title, fill=(20, 20, 20), font=_font(size))
    if sub:
        d.text((4, line + 1), sub, fill=(90, 90, 90), font=_font(size - 2))
    return out


def grid_image(tiles: Sequence[Image.Image], cols: int, pad: int = 6, bg=(255, 255, 255)) -> Image.Image:
    """Tiles (any sizes) in a grid with ``cols`` columns."""
    if not tiles:
        return placeholder_image("nothing to show")
    cols = max(1, min(cols, len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    cw = max(t.width for t in tiles)
    ch = max(t.height for t in tiles)
    out = Image.new("RGB", (cols * cw + (cols + 1) * pad, rows * ch + (rows + 1) * pad), bg)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        out.paste(t.convert("RGB"), (pad + c * (cw + pad), pad + r * (ch + pad)))
    return out


# -- the weight curve -------------------------------------------------------------------------------
@lru_cache(maxsize=256)
def _weight_curve_cached(attack: str, step: int, total: int, schedule: str | None) -> tuple[tuple, tuple]:
    p = torch.linspace(0.0025, 0.9975, 160, dtype=torch.float64)
    logits = torch.stack([torch.log1p(-p), torch.log(p)])[None, :, :, None]  # binary: class 1 has prob p
    labels = torch.ones(1, 160, 1, dtype=torch.long)
    q = schedule if takes_schedule(attack) else None
    t = pixel_terms(attack, logits, labels, step=step, total=total, q=q)
    return tuple(p.tolist()), tuple(t.weight[0, :, 0].tolist())


def weight_curve(attack: str, step: int, total: int, schedule: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The engine's gradient weight (relative to CE) as a function of p_y, for a two-class pixel.

    Computed with :func:`attack_engine.losses.pixel_terms` itself, so it is exactly the engine's definition.
    """
    p, w = _weight_curve_cached(attack, int(step), max(int(total), 1), schedule)
    return np.asarray(p), np.asarray(w)


LEGEND_BELOW = dict(orientation="h", x=0, xanchor="left", y=0, yanchor="bottom", yref="container",
                    font=dict(size=10), tracegroupgap=2)
"""A horizontal legend at the bottom of the figure (not of the plot area): Plotly reserves its height below the
axes, so however many rows it wraps into it never covers the x-axis title."""


def _layout(title: str, height: int, **kw) -> dict:
    """The common layout: transparent backgrounds (the page's colours show, light or dark; ``app.theme`` sets the
    text colour in dark mode), the palette's colours, axis titles that push the margins (``automargin``)."""
    lay = dict(title=dict(text=title, x=0.01, font=dict(size=13)), height=height, margin=MARGIN, font=FONT,
               paper_bgcolor=TRANSPARENT, plot_bgcolor=TRANSPARENT, hovermode="x unified", template="none",
               legend=LEGEND_BELOW, colorway=COLORWAY)
    lay.update(kw)
    for key, val in lay.items():
        if (key.startswith("xaxis") or key.startswith("yaxis")) and isinstance(val, dict):
            lay[key] = axis(val)
    return lay


def axis(spec: dict) -> dict:
    """An axis with the common style; a plain-string ``title`` becomes ``{"text": ...}`` (Plotly.js 3, which
    Gradio bundles, ignores string titles)."""
    out = {**AXIS, "automargin": True, **spec}
    if isinstance(out.get("title"), str):
        out["title"] = dict(text=out["title"])
    return out


def histogram_figure(hist: np.ndarray | None, attack: str, step: int, total: int, schedule: str | None,
                     param: float | None, k: int | None = None) -> Fig:
    """Histogram of p_y (correct stacked on wrong, share of pixels) with the weight curve w(p) on a 2nd axis.

    For attacks with a closed-form gradient peak (TsallisPGD: p* = (1-q)/(2-q), where p^(1-q)(1-p) — the gradient
    size of a two-class pixel — peaks) the dashed line marks it.
    """
    centers = (np.arange(HIST_BINS) + 0.5) / HIST_BINS
    data: list[dict] = []
    if hist is not None:
        tot = max(int(hist.sum()), 1)
        for i, (name, col) in enumerate((("correct", CORRECT), ("wrong", WRONG))):
            data.append(dict(type="bar", x=finite_list(centers, 4), y=finite_list(hist[i] / tot), name=name,
                             marker=dict(color=col), width=1.0 / HIST_BINS,
                             hovertemplate="%{y:.2%} of pixels<extra>" + name + "</extra>"))
    p, w = weight_curve(attack, step, total, schedule)
    spec = get_attack(attack)
    label = f"w(p) {spec.title}"
    has_param = param is not None and math.isfinite(param)
    if spec.weight_formula and has_param:
        label = f"{spec.weight_formula}, {spec.param} = {param:.2f}"
    data.append(dict(type="scatter", x=finite_list(p, 4), y=finite_list(np.maximum(w, 1e-6), 7), yaxis="y2",
                     name=label, mode="lines", line=dict(color=WEIGHT, width=3),
                     hovertemplate="w = %{y:.3g}<extra>weight</extra>"))
    g = w * (1 - p)
    g = g / g.max() if g.max() > 0 else g
    data.append(dict(type="scatter", x=finite_list(p, 4), y=finite_list(np.maximum(g, 1e-6), 7), yaxis="y2",
                     name="w·(1−p): gradient size (2 classes, scaled)", mode="lines",
                     line=dict(color=WEIGHT, width=1.5, dash="dot"), hovertemplate="%{y:.3g}<extra>grad</extra>"))
    shapes, ann = [], []
    if spec.gradient_peak is not None and has_param and param < 2:
        ps = spec.gradient_peak(param)
        if 0 <= ps <= 1:
            shapes.append(dict(type="line", x0=ps, x1=ps, y0=0, y1=1, yref="paper", line=dict(color=PEAK, dash="dash")))
            ann.append(dict(x=ps, y=1.0, yref="paper", yanchor="bottom", text=f"p* = {ps:.2f}", showarrow=False,
                            font=dict(color=PEAK, size=11)))
    sub = f" · record {k}" if k is not None else ""
    lay = _layout(f"Confidence p_y of the true class{sub}", 380, barmode="stack", shapes=shapes, annotations=ann,
                  xaxis=dict(title="p_y (probability of the true class)", range=[0, 1]),
                  yaxis=dict(title="share of pixels", tickformat=".0%", rangemode="tozero"),
                  yaxis2=dict(title="weight vs CE (log)", overlaying="y", side="right", type="log",
                              range=[-4, 2], showgrid=False, color=WEIGHT),
                  hovermode="closest")
    return Fig(data, lay)


def _vline(k: int | None, ref: str = "x") -> list[dict]:
    if k is None:
        return []
    return [dict(type="line", x0=k, x1=k, y0=0, y1=1, xref=ref, yref="paper", line=dict(color=GREY, dash="dot", width=1))]


def curves_figure(traj: Trajectory, k: int | None = None) -> Fig:
    """Pixel accuracy and mIoU, loss, q (or λ) and step size over records, best iterate starred."""
    n = len(traj)
    x = list(range(n))
    acc, miou = traj.scalars("acc"), traj.scalars("miou")
    loss, ce = traj.scalars("loss"), traj.scalars("ce")
    par, eta = traj.scalars("param"), traj.scalars("step_size") * 255
    data = [
        dict(type="scatter", x=x, y=finite_list(acc), name="pixel acc", line=dict(color=CORRECT), xaxis="x", yaxis="y"),
        dict(type="scatter", x=x, y=finite_list(miou), name="mIoU", line=dict(color=MIOU), xaxis="x", yaxis="y"),
        dict(type="scatter", x=x, y=finite_list(loss), name="attack loss", line=dict(color=WRONG), xaxis="x", yaxis="y2"),
        dict(type="scatter", x=x, y=finite_list(ce), name="mean CE", line=dict(color=WRONG, dash="dot"), xaxis="x", yaxis="y2"),
        dict(type="scatter", x=x, y=finite_list(eta, 4), name="step size ×255", line=dict(color=GREY, shape="hv"),
             xaxis="x", yaxis="y4"),
    ]
    if np.isfinite(par).any():
        pname = param_symbol(traj.info.config.get("attack", ""))
        data.append(dict(type="scatter", x=x, y=finite_list(par, 4), name=pname, line=dict(color=WEIGHT), xaxis="x", yaxis="y3"))
    bi = traj.best_index()
    if 0 <= bi < n:
        data.append(dict(type="scatter", x=[bi], y=[round(float(acc[bi]), 5)], mode="markers", name="best iterate",
                         marker=dict(symbol="star", size=14, color=BEST, line=dict(color="black", width=1)),
                         xaxis="x", yaxis="y"))
    dom = [(0.75, 1.0), (0.5, 0.7), (0.25, 0.45), (0.0, 0.2)]
    titles = ["acc / mIoU", "loss", "q / λ", "step ×255"]
    bshapes, bann = stage_marks(traj)
    lay = _layout("Metrics over iterations", 520, shapes=_vline(k) + bshapes, annotations=bann,
                  xaxis=dict(anchor="y4", title="record (model evaluation)", range=[-0.5, max(n, traj.info.expected_records) - 0.5]))
    if bann:  # room above the plot for two rows of stage labels, under the title
        lay["margin"] = {**MARGIN, "t": 40 + 2 * STAGE_ROW_PX}
    for i, (d, t) in enumerate(zip(dom, titles, strict=True)):
        key = "yaxis" if i == 0 else f"yaxis{i + 1}"
        lay[key] = dict(domain=list(d), title=dict(text=t, font=dict(size=10)))
    lay["yaxis"].update(range=[0, 1.02], tickformat=".0%")
    both = np.concatenate([loss, ce])
    if np.nanmin(both, initial=1.0) > 0:
        lay["yaxis2"]["type"] = "log"  # losses spike where q -> 1 (CE of already-wrong pixels)
        fin = both[np.isfinite(both)]
        decades = float(np.log10(fin.max() / fin.min())) if fin.size else 1.0
        lay["yaxis2"]["dtick"] = max(1, math.ceil(decades / 2))  # at most ~3 labels: the subplot is short
    return Fig(data, lay)


STAGE_ROW_PX = 13  # vertical distance between the two rows of stage labels


def stage_marks(traj: Trajectory) -> tuple[list[dict], list[dict]]:
    """Dashed lines where an APGD stage starts (records whose stage differs from the previous one), each labelled
    with the stage's ε above the plot (hover: why): a new stage restarts from the best iterate at a smaller ε, so
    accuracy and q jump back.  Labels alternate between two rows and turn left in the right part of the plot, so
    neighbouring labels never cover each other or the traces."""
    stage, eps = traj.scalars("stage"), traj.scalars("eps")
    span = max(len(traj), traj.info.expected_records, 1)
    shapes, ann = [], []
    for i in range(1, len(stage)):
        if np.isfinite(stage[i]) and stage[i] != stage[i - 1]:
            shapes.append(dict(type="line", x0=i - 0.5, x1=i - 0.5, y0=0, y1=1, xref="x", yref="paper",
                               line=dict(color=GREY, dash="dash", width=1)))
            ann.append(dict(x=i - 0.5, y=1.0, xref="x", yref="paper", yanchor="bottom",
                            xanchor="left" if i < 0.6 * span else "right", yshift=STAGE_ROW_PX * (len(ann) % 2),
                            showarrow=False, font=dict(size=9, color=GREY),
                            text=f"stage {int(stage[i]) + 1}: ε {255 * eps[i]:.3g}/255",
                            hovertext=f"APGD stage {int(stage[i]) + 1} restarts from the best iterate, projected to "
                                      f"its smaller ε ({255 * eps[i]:.3g}/255)"))
    return shapes, ann


def mass_figure(traj: Trajectory, k: int | None = None) -> Fig:
    """Stacked share of the gradient mass Σ|∂L/∂z| on confident-correct, uncertain-correct and wrong pixels."""
    x = list(range(len(traj)))
    data = []
    for key, name, col in (("mass_cc", "confident-correct (p_y ≥ 0.9)", CORRECT),
                           ("mass_uc", "uncertain-correct", UNCERTAIN), ("mass_wrong", "already wrong", WRONG)):
        data.append(dict(type="scatter", x=x, y=finite_list(np.nan_to_num(traj.scalars(key))), name=name,
                         stackgroup="m", mode="lines", line=dict(width=0.5, color=col), fillcolor=col,
                         hovertemplate="%{y:.1%}<extra>" + name + "</extra>"))
    lay = _layout("Where the gradient goes (share of Σ|∂L/∂z|)", 340, shapes=_vline(k),
                  xaxis=dict(title="record", range=[-0.5, max(len(traj), traj.info.expected_records) - 0.5]),
                  yaxis=dict(range=[0, 1], tickformat=".0%", title="share of Σ|∂L/∂z|"))
    return Fig(data, lay)


def probe_figure(probe: dict, class_names: Sequence[str], palette: Sequence[Sequence[int]], k: int | None = None) -> Fig:
    """Class probabilities (top), weight and |∂L/∂z| (bottom, log) of one pixel over records."""
    n = len(probe["pred"])
    x = list(range(n))
    data = []
    lab = probe["label"]
    for cls, pr in sorted(probe.get("probs", {}).items()):
        name = class_names[cls] if 0 <= cls < len(class_names) else str(cls)
        col = "rgb({},{},{})".format(*palette[cls]) if 0 <= cls < len(palette) else GREY
        if col == "rgb(0,0,0)":
            col = "#444444"
        data.append(dict(type="scatter", x=x, y=finite_list(pr, 4),
                         name=f"p({name})" + (" ← label" if cls == lab else ""),
                         line=dict(color=col, width=3 if cls == lab else 1.5), yaxis="y"))
    if "weight" in probe:
        data.append(dict(type="scatter", x=x, y=finite_list(np.maximum(probe["weight"], 1e-9), 9), name="weight vs CE",
                         line=dict(color=WEIGHT), yaxis="y2"))
        data.append(dict(type="scatter", x=x, y=finite_list(np.maximum(probe["grad"], 1e-9), 9), name="|∂L/∂z|",
                         line=dict(color=WRONG, dash="dot"), yaxis="y2"))
    ff = probe.get("first_flip", -1)
    shapes = _vline(k)
    if ff >= 0:
        shapes.append(dict(type="line", x0=ff, x1=ff, y0=0, y1=1, yref="paper", line=dict(color=WRONG, width=1)))
    lay = _layout(f"Pixel (x={probe['x']}, y={probe['y']}) over iterations", 330, shapes=shapes,
                  xaxis=dict(anchor="y2", title="record"),
                  yaxis=dict(domain=[0.52, 1.0], range=[0, 1.02], title=dict(text="probability", font=dict(size=10))),
                  yaxis2=dict(domain=[0.0, 0.42], type="log", title=dict(text="weight, |∂L/∂z|", font=dict(size=10))))
    return Fig(data, lay)


def schedule_preview_figure(attack: str, schedule: str | None, steps: int, optimizer: str = "apgd",
                            multi_eps: bool = True) -> Fig:
    """Before running: q over iterations (left) and w_q(p) = p^(1−q) at five points of a stage (right)."""
    from attack_engine.attack import apgd_stages

    spec = get_attack(attack)
    sched = schedule if spec.schedulable else None
    steps = max(int(steps), 1)
    stages = apgd_stages(steps, multi_eps) if optimizer == "apgd" else [(1.0, steps)]
    data: list[dict] = []
    xs, qs = [], []
    it = 0
    for _, n in stages:
        for s in range(n + 1):
            xs.append(it + s)
            qs.append(spec.param_at(s, n, sched))
        xs.append(None)
        qs.append(None)
        it += n
    pname = spec.param or "(no schedule)"
    data.append(dict(type="scatter", x=xs, y=qs, name=f"{pname} over iterations", line=dict(color=WEIGHT, width=2.5),
                     xaxis="x", yaxis="y", connectgaps=False))
    lut = colormap("Viridis")
    n0 = stages[0][1]
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        s = round(frac * n0)
        p, w = weight_curve(attack, s, n0, sched)
        c = lut[int(frac * 220)]
        lab = f"t={frac:.2f}"
        if spec.schedulable:
            lab += f", {spec.param}={spec.param_at(s, n0, sched):.2f}"
        data.append(dict(type="scatter", x=finite_list(p, 4), y=finite_list(np.maximum(w, 1e-6), 7), name=lab,
                         line=dict(color="rgb({},{},{})".format(*c)), xaxis="x2", yaxis="y2"))
    lay = _layout(f"{spec.title}: {pname} per iteration | weight w(p) at t", 400, hovermode="closest",
                  xaxis=dict(domain=[0, 0.42], title="iteration", anchor="y"),
                  yaxis=dict(title=pname, anchor="x"),
                  xaxis2=dict(domain=[0.56, 1.0], title="p_y", anchor="y2", range=[0, 1]),
                  yaxis2=dict(type="log", title="weight vs CE", anchor="x2", range=[-4, 2]),
                  legend={**LEGEND_BELOW, "font": dict(size=9)})
    lay["title"]["font"] = dict(size=11)
    lay["margin"] = dict(l=40, r=8, t=30, b=20)
    return Fig(data, lay)


def compare_curves_figure(series: dict[str, np.ndarray], k: int | None = None, metric: str = "pixel accuracy") -> Fig:
    """One line per attack (pixel accuracy over records), keyed by attack title, each in its registered colour."""
    colours = {spec.title: spec.colour for spec in attack_specs()}
    data = []
    for i, (name, ys) in enumerate(series.items()):
        data.append(dict(type="scatter", x=list(range(len(ys))), y=finite_list(ys), name=name,
                         line=dict(color=colours.get(name, COLORWAY[i % len(COLORWAY)]),
                                   width=3 if name == "TsallisPGD" else 1.8)))
    lay = _layout(f"{metric} over iterations, all attacks", 340, shapes=_vline(k),
                  xaxis=dict(title="record"), yaxis=dict(tickformat=".0%", title=metric))  # legend: LEGEND_BELOW
    return Fig(data, lay)
