"""The "Explore" tab's layout: the run buttons, the status line, the record slider and the panel grid.

The grid is built from the panel table (:mod:`app.panels`): one component per entry, row by row, with its
explanation under it.  :func:`build` returns every component by name; :class:`app.ui.App` wires them.
"""

from __future__ import annotations

from itertools import groupby
from typing import Any

import gradio as gr

from app import components as cp
from app.panels import Panel, panels

NO_RUN = "No run yet: pick an example or upload an image, then press **Run** or **Step**."
IMAGE_HEIGHT = 240


def component(p: Panel) -> Any:
    """The Gradio component of a panel entry (a markdown entry starts with its explanation as text)."""
    if p.kind == "image":
        return gr.Image(label=p.label, type="pil", format="jpeg", interactive=False, height=IMAGE_HEIGHT,
                        buttons=["download", "fullscreen"], elem_id=p.component_id,
                        elem_classes=["panel", "smooth"] if p.smooth else ["panel"])
    if p.kind == "plot":
        return gr.Plot(label=p.label, elem_id=p.component_id)
    return gr.Markdown(p.explain, elem_id=p.component_id)


def _column(entries: list[Panel], ui: dict[str, Any]) -> None:
    first = entries[0]
    with gr.Column(scale=first.scale, min_width=160 if first.kind == "image" else 320):
        for p in entries:
            ui[p.name] = component(p)
            if p.explain and p.kind != "markdown":
                gr.Markdown(p.explain, elem_classes=["explain"])


def grid(ui: dict[str, Any]) -> None:
    """The panel rows: entries of one row side by side; those sharing a ``column`` key stacked in one column."""
    entries = sorted(panels(slot="grid"), key=lambda p: p.row)
    for _, row in groupby(entries, key=lambda p: p.row):
        row = list(row)
        with gr.Row():
            keys = list(dict.fromkeys(p.column or p.name for p in row))
            for key in keys:
                _column(sorted((p for p in row if (p.column or p.name) == key), key=lambda p: p.pos), ui)


def _text_slot(slot: str, ui: dict[str, Any], initial: str = "") -> None:
    for p in panels(slot=slot):
        ui[p.name] = gr.Markdown(initial, elem_id=p.elem_id or None)


def build() -> dict[str, Any]:
    """Create the tab's content (inside its ``gr.Tab``); returns the components by name."""
    ui: dict[str, Any] = {}
    with gr.Row(elem_id="controls"):
        for name, label, extra in (("run_btn", "▶ Run", {"variant": "primary"}), ("step_btn", "Step +1", {}),
                                   ("pause_btn", "Pause", {}), ("stop_btn", "■ Stop", {}),
                                   ("reset_btn", "↺ Reset", {})):
            ui[name] = gr.Button(label, elem_id=name, min_width=90, **extra)
    _text_slot("status", ui, NO_RUN)
    with gr.Row(equal_height=True, elem_id="scrub_row"):  # sticky on phones (app.theme)
        ui["slider"] = cp.Slider(0, 1, value=0, step=1, label="Record", scale=5, elem_id="scrub")
        ui["play_btn"] = gr.Button("▶ Play", scale=1, min_width=90, elem_id="play_btn")
        ui["best_btn"] = gr.Button("★ Best iterate", scale=1, min_width=90, elem_id="best_btn")
    _text_slot("legend", ui)
    grid(ui)
    with gr.Row(visible=False):
        ui["probe_x"] = cp.Number(0, precision=0, label="probe x", minimum=0, maximum=1e6)
        ui["probe_y"] = cp.Number(0, precision=0, label="probe y", minimum=0, maximum=1e6)
        ui["probe_btn"] = gr.Button("probe")
    return ui
