"""Pure figures of the per-class debugging view (numbers from :mod:`attack_engine.diagnostics` -> Plotly).

Every function is a function of its arguments: no Gradio, no session state.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from app.figures import GREY, WRONG, Fig, _layout, _vline, finite_list
from app.palette import rgba
from attack_engine.diagnostics import SizeBin

MAX_LINES = 10  # classes drawn in the IoU chart (those that fall first); the rest are listed in the summary
MAX_MATRIX = 12  # classes shown in the flip matrix (those with the most flipped pixels)


def _colour(palette: Sequence[Sequence[int]], c: int) -> str:
    if not 0 <= c < len(palette):
        return GREY
    rgb = tuple(int(v) for v in palette[c])
    return "#444444" if sum(rgb) < 60 else "rgb({},{},{})".format(*rgb)


def class_iou_figure(ious: np.ndarray, order: Sequence[tuple[int, int]], class_names: Sequence[str],
                     palette: Sequence[Sequence[int]], k: int | None = None) -> Fig:
    """IoU over records of the classes that fall first (``order`` from :func:`~attack_engine.diagnostics.fall_order`),
    each line in the class's colour, its fall record marked; a dotted line at record ``k``."""
    x = list(range(ious.shape[0]))
    data = []
    for c, fell in list(order)[:MAX_LINES]:
        name = class_names[c] if c < len(class_names) else str(c)
        tag = f"falls at {fell}" if fell >= 0 else "holds"
        data.append(dict(type="scatter", mode="lines", x=x, y=finite_list(ious[:, c], 4), name=f"{name} ({tag})",
                         line=dict(color=_colour(palette, c), width=2),
                         hovertemplate=f"{name}: IoU %{{y:.3f}}<extra>record %{{x}}</extra>"))
        if fell >= 0:
            data.append(dict(type="scatter", mode="markers", x=[fell], y=finite_list([ious[fell, c]], 4),
                             marker=dict(color=_colour(palette, c), size=9, symbol="x"), showlegend=False,
                             hoverinfo="skip"))
    more = len(order) - MAX_LINES
    title = "Per-class IoU over records (first to fall on top)" + (f" · {more} more classes" if more > 0 else "")
    lay = _layout(title, 340, shapes=_vline(k), hovermode="closest",
                  xaxis=dict(title="record"), yaxis=dict(title="IoU", range=[0, 1.02]),
                  legend=dict(orientation="v", x=1.02, y=1, font=dict(size=10)),
                  margin=dict(l=48, r=8, t=34, b=36))
    return Fig(data, lay)


def _matrix_classes(m: np.ndarray, limit: int) -> list[int]:
    off = m - np.diag(np.diag(m))
    weight = off.sum(0) + off.sum(1)
    keep = [int(c) for c in np.argsort(-weight, kind="stable") if weight[c] > 0][:limit]
    return sorted(keep)


def flip_matrix_figure(m: np.ndarray, class_names: Sequence[str], k: int | None = None) -> Fig:
    """Heatmap of pixels that went from class *row* (clean prediction) to class *column* (at record ``k``),
    as a share of all flipped pixels; only the classes involved in the most flips; unchanged pixels blank."""
    keep = _matrix_classes(m, MAX_MATRIX)
    sub = f" · record {k}" if k is not None else ""
    if not keep:
        lay = _layout(f"Class-to-class flips{sub}", 340, annotations=[dict(
            text="no pixel has changed class yet", x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
            font=dict(color=GREY, size=13))], xaxis=dict(visible=False), yaxis=dict(visible=False))
        return Fig([], lay)
    sm = m[np.ix_(keep, keep)].astype(np.float64)
    np.fill_diagonal(sm, np.nan)
    total = max(1.0, float(np.nansum(m - np.diag(np.diag(m)))))
    names = [class_names[c] if c < len(class_names) else str(c) for c in keep]
    share = sm / total
    text = [["" if not np.isfinite(v) or v == 0 else f"{v:.0%}" if v >= 0.01 else "<1%" for v in row] for row in share]
    z = [[None if not np.isfinite(v) else float(v) for v in row] for row in share]
    counts = [[None if not np.isfinite(v) else int(v) for v in row] for row in sm]
    data = [dict(type="heatmap", z=z, x=names, y=names, text=text, texttemplate="%{text}", customdata=counts,
                 colorscale=[[0, rgba(WRONG, 0.04)], [0.05, rgba(WRONG, 0.3)], [1, WRONG]], zmin=0, zmax=max(1e-9, np.nanmax(share)),
                 hovertemplate="%{y} → %{x}: %{customdata} px (%{z:.1%} of flips)<extra></extra>",
                 colorbar=dict(title=dict(text="share", font=dict(size=10)), tickformat=".0%", thickness=10))]
    lay = _layout(f"Class-to-class flips{sub} ({int(total)} px changed class)", 340, hovermode="closest",
                  xaxis=dict(title="now predicted", tickangle=-40, showgrid=False),
                  yaxis=dict(title="clean prediction", autorange="reversed", showgrid=False),
                  margin=dict(l=96, r=8, t=34, b=80))
    return Fig(data, lay)


def size_share_figure(bins: Sequence[SizeBin], reference: str, k: int | None = None) -> Fig:
    """Share of flipped pixels per object size (objects = connected regions of ``reference``), objects per bin
    as bar labels."""
    names = [b.name for b in bins]
    shares = [b.share for b in bins]
    text = [f"{b.objects} obj." if b.objects else "none" for b in bins]
    sub = f" · record {k}" if k is not None else ""
    data = [dict(type="bar", x=names, y=finite_list(shares, 4), text=text, textposition="outside",
                 marker=dict(color=WRONG), customdata=[[b.flipped, b.pixels] for b in bins],
                 hovertemplate="%{x}: %{y:.1%} flipped (%{customdata[0]} of %{customdata[1]} px)<extra></extra>")]
    lay = _layout(f"Flipped share by object size{sub}", 340, hovermode="closest",
                  xaxis=dict(title=f"object size (share of the image)<br>objects: connected regions of the {reference}"),
                  yaxis=dict(title="flipped pixels", tickformat=".0%", range=[0, 1.1]))
    return Fig(data, lay)
