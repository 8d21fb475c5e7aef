"""The "Debug classes" tab: which classes fall first, which classes turn into which, and whether small objects
flip first, for the run in the session at the record on the slider.

Numbers come from :mod:`attack_engine.diagnostics`, figures from :mod:`app.debug_figures`; this module only reads
the session's recorded run and wires the components.  With a two-class model the same views still work (two IoU
lines, a 2×2 matrix) and the summary says there is little to compare.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import gradio as gr
import numpy as np

from app import debug_figures as dfg
from app.trajectory import Trajectory
from attack_engine import diagnostics as dg

EMPTY = "No run yet: run an attack (or pick an example with a shipped run), then open this tab or press **Update**."
HELP = ("**Per-class IoU** over the records, against the run's labels: the classes whose IoU halves first are on "
        "top. **Flips**: pixels whose predicted class changed from the clean prediction (row) to the current record "
        "(column). **Object size**: connected regions of the ground truth (or, without one, of the clean "
        "prediction), binned by their share of the image; attacks on segmentation tend to flip small objects "
        "first.")


class _IoUCache:
    """Per-record class IoU of each run, extended as records arrive (never recomputed for old records)."""

    def __init__(self) -> None:
        self._rows: weakref.WeakKeyDictionary[Trajectory, list[np.ndarray]] = weakref.WeakKeyDictionary()

    def series(self, t: Trajectory) -> np.ndarray:
        rows = self._rows.setdefault(t, [])
        n, ii = t.info.num_classes, t.info.ignore_index
        if len(rows) > len(t):  # a run replaced in place: start over
            rows.clear()
        if len(rows) < len(t):
            rows.extend(dg.class_iou_series(t.pred[len(rows):], t.labels_v, n, ii))
        return np.asarray(rows).reshape(len(t), n)


def _name(names, c: int) -> str:
    return names[c] if 0 <= c < len(names) else str(c)


def summary_text(t: Trajectory, k: int, order: list[tuple[int, int]], m: np.ndarray,
                 bins: list[dg.SizeBin], reference: str) -> str:
    """One short paragraph of what the three figures say."""
    names = t.info.class_names
    fell = [f"{_name(names, c)} (record {r})" for c, r in order if r >= 0]
    held = [_name(names, c) for c, r in order if r < 0]
    parts = [f"**Record {k}** · {len(order)} classes in the labels."]
    if fell:
        parts.append("First to fall (IoU halved): " + ", ".join(fell[:6]) + (" …" if len(fell) > 6 else "") + ".")
    if held:
        parts.append("Holding: " + ", ".join(held[:6]) + (" …" if len(held) > 6 else "") + ".")
    off = m - np.diag(np.diag(m))
    if off.sum() > 0:
        i, j = np.unravel_index(int(np.argmax(off)), off.shape)
        parts.append(f"{int(off.sum())} px changed class; most often {_name(names, i)} → {_name(names, j)} "
                     f"({int(off[i, j])} px).")
    shown = [b for b in bins if b.objects]
    if len(shown) >= 2:
        parts.append(f"Flipped: {shown[0].share:.0%} of {shown[0].name} vs {shown[-1].share:.0%} of {shown[-1].name} "
                     f"objects ({reference}).")
    if t.info.num_classes <= 2:
        parts.append("A two-class model: the matrix has one flip direction each way and the IoU chart two lines; "
                     "pick a multi-class model for class-to-class detail.")
    return " ".join(parts)


def debug_values(t: Trajectory | None, k: int | None, cache: _IoUCache) -> tuple[str, Any, Any, Any]:
    """(summary, IoU figure, flip-matrix figure, size figure) for run ``t`` at record ``k``."""
    if t is None or len(t) == 0:
        return EMPTY, None, None, None
    k = t.clamp(k)
    info = t.info
    n = info.num_classes
    ious = cache.series(t)[: k + 1]
    order = dg.fall_order(ious, t.labels_v, n, info.ignore_index)
    pred = t.pred[k].astype(np.int64)
    m = dg.flip_matrix(t.clean_pred_v, pred, t.valid_v, n)
    reference = "ground truth" if info.has_gt else "clean prediction"
    ref_map = t.labels_v if info.has_gt else t.clean_pred_v
    bins = dg.flip_share_by_size(ref_map, (pred != t.clean_pred_v), t.valid_v, n)
    return (summary_text(t, k, order, m, bins, reference),
            dfg.class_iou_figure(ious, order, info.class_names, info.palette, k),
            dfg.flip_matrix_figure(m, info.class_names, k),
            dfg.size_share_figure(bins, reference, k))


class DebugTab:
    """Builds the tab inside the app's ``gr.Tabs`` and wires it to the session state.

    ``session_of(state)`` returns the request's session (with ``traj`` and ``view``); ``guard(fn, name)`` wraps a
    handler so a failure becomes one message (both from :class:`app.ui.App`).
    """

    def __init__(self, session_of: Callable[[Any], Any], guard: Callable[[Callable, str], Callable]) -> None:
        self.session_of = session_of
        self.guard = guard
        self.cache = _IoUCache()

    def build(self) -> None:
        with gr.Tab("Debug classes", id="debug") as self.tab:
            with gr.Row():
                self.summary = gr.Markdown(EMPTY, elem_id="debug_summary")
                self.update_btn = gr.Button("↻ Update for the current record", scale=0, min_width=220,
                                            elem_id="debug_update")
            self.iou_plot = gr.Plot(label="Per-class IoU", elem_id="debug_iou")
            with gr.Row():
                self.flip_plot = gr.Plot(label="Class-to-class flips", elem_id="debug_flips")
                self.size_plot = gr.Plot(label="Flips by object size", elem_id="debug_sizes")
            gr.Markdown(HELP, elem_classes=["explain"])

    def update(self, state: Any) -> list:
        sess = self.session_of(state)
        return [state, *debug_values(sess.traj, sess.view, self.cache)]

    def wire(self, state: gr.State) -> None:
        outs = [state, self.summary, self.iou_plot, self.flip_plot, self.size_plot]
        fn = self.guard(self.update, "debug")
        kw = dict(queue=False, show_progress="hidden")
        self.tab.select(fn, [state], outs, api_visibility="private", **kw)
        self.update_btn.click(fn, [state], outs, api_name="debug", **kw)
