"""Pure builders for the q-lens tab: small multiples over q, the what-if-q histogram, colour bars, share tables.

Inputs are a :class:`~app.trajectory.Trajectory` and a record index; the numbers come from
:mod:`attack_engine.qlens` (``|∂L_q/∂z| = p_y^(1-q) |∂CE/∂z|`` per pixel, so no model call).  Maps are
paletted PNGs inside Plotly ``image`` traces (small to send), each row with a colour bar.

The what-if figure carries, in ``layout.meta.qlens``, the record's share summary and curve grid, so the
browser can redraw the weight curve, the gradient-size curve, p* and the shares for any q itself
(:data:`WHATIF_JS`), with no server round trip.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from app.figures import (
    CORRECT,
    GRAD_SHOW,
    PEAK,
    UNCERTAIN,
    WEIGHT,
    WEIGHT_SHOW,
    WRONG,
    Fig,
    _layout,
    colormap,
    finite_list,
    heatmap_image,
    with_marker,
)
from app.trajectory import Trajectory
from attack_engine import qlens
from attack_engine.registry import attack_title, param_symbol

GROUP_COLOURS = (CORRECT, UNCERTAIN, WRONG)
HIGHLIGHT = (255, 0, 255)
P_BINS = 40
MARGIN_BINS = 60
CURVE_POINTS = 241
CMAPS = {"weight": "Viridis", "grad": "Inferno"}
SHOW = {"weight": WEIGHT_SHOW, "grad": GRAD_SHOW}


@dataclass(frozen=True)
class Band:
    """A selection that lights pixels up: a histogram range on axis ``axis`` (``p`` or ``margin``), or a group."""

    axis: str  # "p", "margin" or "group"
    lo: float = 0.0
    hi: float = 0.0

    def label(self) -> str:
        if self.axis == "group":
            return qlens.GROUPS[int(self.lo)]
        name = "p_y" if self.axis == "p" else "margin"
        return f"{self.lo:.3g} ≤ {name} < {self.hi:.3g}"


def parse_band(text: str | None) -> Band | None:
    """``"p:0.4:0.5"``, ``"margin:-10:-5"``, ``"group:2"`` -> :class:`Band`; empty/``none`` -> None.

    Raises ValueError with one readable sentence on anything else."""
    t = (text or "").strip()
    if not t or t == "none":
        return None
    parts = t.split(":")
    try:
        if parts[0] == "group" and len(parts) == 2 and parts[1] in ("0", "1", "2"):
            return Band("group", float(parts[1]))
        if parts[0] in ("p", "margin") and len(parts) == 3:
            lo, hi = float(parts[1]), float(parts[2])
            if math.isfinite(lo) and math.isfinite(hi) and lo < hi:
                return Band(parts[0], lo, hi)
    except ValueError:
        pass
    raise ValueError(f"cannot read the highlight band {t[:40]!r}: expected e.g. p:0.4:0.5, margin:-10:-5 or group:2")


def band_mask(traj: Trajectory, k: int, band: Band | None) -> np.ndarray | None:
    """View pixels selected by ``band`` at record ``k`` (None: nothing selected)."""
    if band is None or not traj.has_lens:
        return None
    log_p, _, groups = traj.lens_inputs_at(k)
    if band.axis == "group":
        return groups == int(band.lo)
    v = np.exp(log_p) if band.axis == "p" else traj.margin_at(k)
    hi_ok = v <= band.hi if band.hi >= (1.0 if band.axis == "p" else np.inf) else v < band.hi
    return (groups >= 0) & (v >= band.lo) & hi_ok


# -- maps ---------------------------------------------------------------------------------------------
def _png_uri(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=False, compress_level=3)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def lens_map_image(log_values: np.ndarray, kind: str, mask: np.ndarray | None = None,
                   probe: tuple[int, int] | None = None) -> Image.Image:
    """A log map (natural log) through the Explore tab's colours; ``mask`` pixels magenta; probe crosshair."""
    lo, hi = SHOW[kind]
    with np.errstate(over="ignore"):
        v = np.where(np.isfinite(log_values), np.exp(np.clip(log_values, -745.0, 700.0)), 0.0)
    img = heatmap_image(np.maximum(v, np.where(v > 0, 10.0 ** lo, 0.0)), lo, hi, log=True, cmap=CMAPS[kind]).convert("RGB")
    if mask is not None and mask.any():
        arr = np.asarray(img).copy()
        arr[mask] = (0.35 * arr[mask] + 0.65 * np.array(HIGHLIGHT)).astype(np.uint8)
        img = Image.fromarray(arr)
    if probe is not None:
        img = with_marker(img, (probe[1], probe[0]))
    return img


def _colorbar_trace(kind: str, y: float, length: float, title: str) -> dict:
    lo, hi = SHOW[kind]
    ticks = list(range(math.ceil(lo), math.floor(hi) + 1))
    cols = colormap(CMAPS[kind])[np.linspace(0, 255, 11).astype(int)]
    scale = [[i / 10, f"rgb({r},{g},{b})"] for i, (r, g, b) in enumerate(cols)]
    return dict(type="scatter", x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip",
                marker=dict(color=[lo], cmin=lo, cmax=hi, colorscale=scale, showscale=True,
                            colorbar=dict(title=dict(text=title, side="right"), y=y, len=length, thickness=12,
                                          x=1.0, tickvals=ticks, ticktext=[f"1e{t}" for t in ticks])))


@dataclass(frozen=True)
class Column:
    """One column of the small multiples: its title, log weight and log |∂L/∂z| maps, and shares."""

    title: str
    q: float | None  # None: the run's own attack
    log_weight: np.ndarray
    log_grad: np.ndarray
    shares: np.ndarray


def own_column(traj: Trajectory, k: int) -> Column:
    """The run's own weights at record ``k`` (any attack), from the stored maps and mass split."""
    attack = traj.info.config.get("attack", "")
    par = traj.get("param", k)
    ptxt = f", {param_symbol(attack)} = {par:.2f}" if math.isfinite(par) else ""
    with np.errstate(divide="ignore"):
        lw, lg = np.log(traj.weight_at(k).astype(np.float64)), np.log(traj.grad_at(k).astype(np.float64))
    shares = np.array([traj.get(n, k) for n in ("mass_cc", "mass_uc", "mass_wrong")])
    return Column(f"this run: {html.escape(attack_title(attack))}<br>{ptxt.lstrip(', ') or '&nbsp;'}", None,
                  lw, lg, shares)


def lens_columns(traj: Trajectory, k: int, qs) -> list[Column]:
    """The run's own column, then TsallisPGD at each q through the lens (shares from the full-resolution summary)."""
    log_p, log_c, groups = traj.lens_inputs_at(k)
    cols = [own_column(traj, k)]
    for q in qs:
        ln = qlens.lens(log_p, log_c, groups, q)
        cols.append(Column(f"q = {q:g}", float(q), ln.log_weight, ln.log_grad,
                           qlens.shares_from_summary(traj.qsum[k], q)))
    return cols


def lens_grid_figure(traj: Trajectory, k: int, qs, mask: np.ndarray | None = None,
                     probe: tuple[int, int] | None = None) -> Fig:
    """Small multiples: columns = this run + TsallisPGD at each q (same iterate); rows = weight vs CE, |∂L/∂z|."""
    cols = lens_columns(traj, k, qs)
    n = len(cols)
    gap = 0.012
    w = (0.93 - gap * (n - 1)) / n
    data, ann, lay = [], [], {}
    for i, c in enumerate(cols):
        x0 = i * (w + gap)
        for r, (kind, vals) in enumerate((("weight", c.log_weight), ("grad", c.log_grad))):
            ax = i * 2 + r + 1
            xa, ya = f"x{ax}", f"y{ax}"
            data.append(dict(type="image", source=_png_uri(lens_map_image(vals, kind, mask, probe)), xaxis=xa, yaxis=ya,
                             hoverinfo="skip"))
            y0, y1 = (0.5, 0.9) if r == 0 else (0.0, 0.4)
            lay[f"xaxis{ax}"] = dict(domain=[x0, x0 + w], visible=False, anchor=ya, constrain="domain")
            lay[f"yaxis{ax}"] = dict(domain=[y0, y1], visible=False, anchor=xa, autorange="reversed",
                                     scaleanchor=xa, constrain="domain")
        s = c.shares
        ann.append(dict(x=x0 + w / 2, y=1.0, xref="paper", yref="paper", showarrow=False, yanchor="bottom",
                        text=f"<b>{c.title}</b><br><span style='color:{WRONG}'>{100 * s[2]:.0f}% on wrong</span>",
                        font=dict(size=10)))
    for y, t in ((0.7, "weight vs CE"), (0.2, "|∂L/∂z|")):
        ann.append(dict(x=-0.01, y=y, xref="paper", yref="paper", showarrow=False, textangle=-90, text=t,
                        xanchor="right", font=dict(size=11)))
    data.append(_colorbar_trace("weight", 0.7, 0.42, "weight"))
    data.append(_colorbar_trace("grad", 0.2, 0.42, "|∂L/∂z|"))
    title = f"q-lens at record {k}: the same iterate, seen by TsallisPGD at each q"
    lay = {**_layout(title, 430, annotations=ann, hovermode=False), **lay}
    lay["margin"] = dict(l=30, r=70, t=92, b=8)
    return Fig(data, lay)


def shares_table_html(traj: Trajectory, k: int, qs) -> str:
    """HTML table of the gradient-mass split per column (the browser test reads ``data-*``)."""
    rows = []
    for c in lens_columns_shares(traj, k, qs):
        q, title, s = c
        rows.append(f"<tr data-q='{'own' if q is None else f'{q:g}'}' data-conf='{s[0]:.6f}' data-unc='{s[1]:.6f}' "
                    f"data-wrong='{s[2]:.6f}'><td>{html.escape(title)}</td>"
                    + "".join(f"<td style='text-align:right'>{100 * v:.1f}%</td>" for v in s) + "</tr>")
    head = ("<tr><th style='text-align:left'>gradient mass Σ|∂L/∂z| at this iterate</th>"
            + "".join(f"<th><span style='display:inline-block;width:.8em;height:.8em;background:{col};"
                      f"margin-right:.3em;vertical-align:-0.1em'></span>{g}</th>"
                      for g, col in zip(qlens.GROUPS, GROUP_COLOURS, strict=True))
            + "</tr>")
    return f"<table id='qlens_shares_table' style='font-size:0.85em;width:100%'>{head}{''.join(rows)}</table>"


def lens_columns_shares(traj: Trajectory, k: int, qs) -> list[tuple[float | None, str, np.ndarray]]:
    """(q or None, title, shares) per column, without building maps."""
    own = np.array([traj.get(n, k) for n in ("mass_cc", "mass_uc", "mass_wrong")])
    attack = traj.info.config.get("attack", "")
    out = [(None, f"this run ({attack_title(attack)})", own)]
    out += [(float(q), f"TsallisPGD q = {q:g}", qlens.shares_from_summary(traj.qsum[k], q)) for q in qs]
    return out


# -- the what-if histogram ------------------------------------------------------------------------------
def _axis_values(traj: Trajectory, k: int, axis: str) -> tuple[np.ndarray, np.ndarray]:
    """Per valid view pixel: the histogram coordinate and the group."""
    log_p, _, groups = traj.lens_inputs_at(k)
    ok = groups >= 0
    v = np.exp(log_p) if axis == "p" else traj.margin_at(k)
    return v[ok], groups[ok]


def _nice(v: float) -> float:
    """``v`` > 0 rounded up to 1, 2 or 5 times a power of ten."""
    e = 10 ** math.floor(math.log10(v))
    return next(m * e for m in (1, 2, 5, 10) if m * e >= v)


def margin_range(traj: Trajectory, k: int) -> tuple[float, float]:
    """Range of the margin axis at record ``k``: the data's, rounded out to nice numbers, at least [-8, 8]."""
    m = traj.margin_at(k)
    if not np.isfinite(m).any():
        return -8.0, 8.0
    return -_nice(max(8.0, -float(np.nanmin(m)))), _nice(max(8.0, float(np.nanmax(m))))


def curves(axis: str, q: float, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weight ``p^(1-q)`` and the gradient size ``p^(1-q)(1-p)`` scaled to peak 1, over ``xs`` on ``axis``."""
    if axis == "p":
        lp, l1p = np.log(np.clip(xs, 1e-300, None)), np.log1p(-np.clip(xs, None, 1 - 1e-16))
    else:
        lp, l1p = -np.logaddexp(0.0, -xs), -np.logaddexp(0.0, xs)
    lw = qlens.log_weight(lp, q)
    lg = lw + l1p
    return np.exp(lw), np.exp(lg - np.max(lg))


def p_star_x(axis: str, q: float) -> float | None:
    """Where p* sits on ``axis`` (p* = (1-q)/(2-q); on the margin axis log(p*/(1-p*)) = log(1-q))."""
    if q >= 1:
        return None
    return qlens.p_star(q) if axis == "p" else math.log(1.0 - q)


def shares_text(q: float, s: np.ndarray) -> str:
    return (f"what-if q = {q:.2f} · p* = {qlens.p_star(q):.2f} · gradient mass: confident-correct {100 * s[0]:.0f}% · "
            f"uncertain-correct {100 * s[1]:.0f}% · already wrong {100 * s[2]:.0f}%")


def whatif_figure(traj: Trajectory, k: int, q: float, axis: str = "p", probe: tuple[int, int] | None = None,
                  band: Band | None = None) -> Fig:
    """Pixels by p_y (or margin), correct/uncertain/wrong stacked; weight and gradient-size curves for ``q``,
    the p* marker, the probed pixel and a selected band; the data for the client-side redraw in ``meta``."""
    v, g = _axis_values(traj, k, axis)
    lo, lim = margin_range(traj, k) if axis == "margin" else (0.0, 1.0)
    nb = P_BINS if axis == "p" else MARGIN_BINS
    edges = np.linspace(lo, lim, nb + 1)
    centers, width = (edges[:-1] + edges[1:]) / 2, (lim - lo) / nb
    tot = max(len(v), 1)
    data: list[dict] = []
    for gi, (name, col) in enumerate(zip(qlens.GROUPS, GROUP_COLOURS, strict=True)):
        h, _ = np.histogram(np.clip(v[g == gi], lo, lim), bins=edges)
        data.append(dict(type="bar", x=finite_list(centers, 4), y=finite_list(h / tot), name=name, width=width,
                         marker=dict(color=col), customdata=finite_list(edges[:-1], 4),
                         hovertemplate="%{y:.2%} of pixels<extra>" + name + "</extra>"))
    xs = np.linspace(lo + 1e-4 * (lim - lo), lim - 1e-4 * (lim - lo), CURVE_POINTS)
    wq, gq = curves(axis, q, xs)
    data.append(dict(type="scatter", x=finite_list(xs, 5), y=finite_list(np.maximum(wq, 1e-6), 7), yaxis="y2",
                     mode="lines", name="weight vs CE: p_y^(1−q)", line=dict(color=WEIGHT, width=3)))
    data.append(dict(type="scatter", x=finite_list(xs, 5), y=finite_list(np.maximum(gq, 1e-6), 7), yaxis="y2",
                     mode="lines", name="gradient size p^(1−q)(1−p), peak = 1", line=dict(color=WEIGHT, dash="dot")))
    ps = p_star_x(axis, q)
    data.append(dict(type="scatter", x=[ps, ps] if ps is not None else [None, None], y=[1e-6, 100], yaxis="y2",
                     mode="lines", name="p*: where the gradient size peaks", line=dict(color=PEAK, dash="dash")))
    shapes = []
    if probe is not None:
        pv = _probe_value(traj, k, axis, probe)
        if pv is not None:
            data.append(dict(type="scatter", x=[pv, pv], y=[1e-6, 100], yaxis="y2", mode="lines", name="probed pixel",
                             line=dict(color="black", width=2)))
    if band is not None and band.axis == axis:
        shapes.append(dict(type="rect", x0=band.lo, x1=band.hi, y0=0, y1=1, yref="paper", line=dict(width=0),
                           fillcolor="rgba(255,0,255,0.15)"))
    s = qlens.shares_from_summary(traj.qsum[k], q)
    xt = ("p_y (probability of the true class)" if axis == "p"
          else "margin log p_y − log(1 − p_y) (log-odds; shows the structure of saturated 0/1 spikes)")
    lay = _layout(shares_text(q, s), 360, barmode="stack", shapes=shapes, hovermode="closest",
                  xaxis=dict(title=dict(text=xt), range=[lo, lim]),
                  yaxis=dict(title=dict(text="share of pixels"), tickformat=".0%", rangemode="tozero"),
                  yaxis2=dict(title=dict(text="weight / gradient size (log)"), overlaying="y", side="right", type="log",
                              range=[-4, 0.3], showgrid=False, color=WEIGHT))
    lay["title"]["font"] = dict(size=12)
    lay["legend"] = dict(orientation="h", y=-0.3, x=0)
    lay["meta"] = {"qlens": {"axis": axis, "xs": finite_list(xs, 5), "summary": summary_payload(traj.qsum[k]),
                             "lo": qlens.SUMMARY_LO, "step": qlens.SUMMARY_STEP, "floor": qlens.P_FLOOR_LOG,
                             "traces": {"w": 3, "g": 4, "ps": 5}}}
    return Fig(data, lay)


def _probe_value(traj: Trajectory, k: int, axis: str, probe: tuple[int, int]) -> float | None:
    y, x = probe
    log_p, _, groups = traj.lens_inputs_at(k)
    if not (0 <= y < groups.shape[0] and 0 <= x < groups.shape[1]) or groups[y, x] < 0:
        return None
    return float(np.exp(log_p[y, x])) if axis == "p" else float(traj.margin_at(k)[y, x])


def summary_payload(summary: np.ndarray) -> list[list[float]]:
    """Non-empty cells of a share summary as ``[group, bin, log Σc, mean, variance]`` rows (for the browser)."""
    s = np.asarray(summary, dtype=np.float64)
    g, b = np.nonzero(np.isfinite(s[..., 0]))
    return [[int(gi), int(bi), round(float(s[gi, bi, 0]), 6), round(float(s[gi, bi, 1]), 6),
             round(float(s[gi, bi, 2]), 8)] for gi, bi in zip(g, b, strict=True)]


def colorbar_html(cmap: str, left: str, right: str, note: str = "") -> str:
    """A small horizontal colour bar (inline HTML) with its end labels, for an image panel's caption."""
    cols = colormap(cmap)[np.linspace(0, 255, 9).astype(int)]
    stops = ", ".join(f"rgb({r},{g},{b})" for r, g, b in cols)
    return (f"<span class='cbar'>{left} <span style='display:inline-block;width:80px;height:9px;vertical-align:middle;"
            f"background:linear-gradient(90deg, {stops});border:1px solid #999'></span> {right}"
            + (f" · {note}" if note else "") + "</span>")


def map_colorbar(kind: str) -> str:
    """The colour bar of the Explore tab's weight or |∂L/∂z| panel (the same colours as the q-lens maps)."""
    lo, hi = SHOW[kind]
    return colorbar_html(CMAPS[kind], f"1e{lo:g}", f"≥ 1e{hi:g}", "dark grey = 0")
