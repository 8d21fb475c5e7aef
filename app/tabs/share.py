"""The "Export & share" tab's layout: the export button, the shareable link and the four files.

The handler (:meth:`app.ui.App.export`) writes the files with :mod:`app.export`.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

INTRO = ("Download the recorded run. The **run card** holds the exact input, model and config: "
         "`app.runner.rerun_card(card)` reproduces it. The **link** restores these controls (and the example) in a "
         "new tab.")
OUTPUTS = ("f_card", "f_csv", "f_png", "f_gif", "share")  # what the export handler fills


def build() -> dict[str, Any]:
    """Create the tab; returns its components by name."""
    ui: dict[str, Any] = {}
    with gr.Tab("Export & share", id="export"):
        gr.Markdown(INTRO)
        ui["export_btn"] = gr.Button("⬇ Export current run", variant="primary", elem_id="export_btn")
        ui["share"] = gr.Textbox(label="Shareable link", buttons=["copy"], elem_id="share_link")
        with gr.Row():
            ui["f_card"] = gr.File(label="Run card (JSON)")
            ui["f_csv"] = gr.File(label="Per-record CSV")
        with gr.Row():
            ui["f_png"] = gr.File(label="Panels (PNG)")
            ui["f_gif"] = gr.File(label="Evolution (GIF)")
    return ui
