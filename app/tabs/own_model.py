""""Your own model" box under the model dropdown (built only outside hosted mode): upload a TorchScript,
``.safetensors`` or ``.pt``/``.pth`` state_dict checkpoint, say its architecture and classes, and it joins the
dropdown.  Loading goes through :func:`app.own_model.load_uploaded` (no unpickling of code, contract checked).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from app.own_model import UPLOAD_SUFFIXES, load_uploaded
from app.runner import InputError

HELP = ("TorchScript (any architecture), or a state_dict (`.safetensors`, `.pt`/`.pth` tensors only) with its "
        "architecture: `segformer-b0`…`b5`, `mmseg:<config name>` or a zoo id. Class names: comma-separated "
        "(their number sets the head size; default: read from the file). Only on this machine, never on a hosted demo.")


class OwnModelBox:
    """``offer(model_id)`` adds a registered model to the app's offered list and returns the dropdown choices;
    ``guard(fn, name)`` turns failures into one message."""

    def __init__(self, offer: Callable[[str], list], guard: Callable[[Callable, str], Callable]) -> None:
        self.offer = offer
        self.guard = guard
        self.model_dd: gr.Dropdown | None = None

    def build(self) -> None:
        with gr.Accordion("Your own model (TorchScript / safetensors)", open=False, elem_id="own_model"):
            self.file = gr.File(label="Checkpoint", file_types=list(UPLOAD_SUFFIXES), type="filepath",
                                elem_id="own_model_file", height=70)
            with gr.Row():
                self.arch = gr.Textbox(label="Architecture (state_dict only)", placeholder="segformer-b0",
                                       max_length=200, elem_id="own_model_arch")
                self.classes = gr.Textbox(label="Class names", placeholder="background, person, car",
                                          max_length=4000, elem_id="own_model_classes")
            self.load_btn = gr.Button("Load model", elem_id="own_model_load")
            self.status = gr.Markdown(HELP, elem_id="own_model_status")

    def load(self, file: Any, arch: str | None, classes: str | None) -> list:
        if not file:
            raise InputError("choose a checkpoint file first")
        try:
            model = load_uploaded(file, arch, classes)
        except ValueError as e:
            raise InputError(str(e)) from None
        info = model.info
        note = (f"Loaded **{info.title}**: {info.num_classes} classes "
                f"({', '.join(info.class_names[:8])}{' …' if info.num_classes > 8 else ''}). It is selected above.")
        choices = self.offer(info.id)
        if self.model_dd is not None:  # the server checks a submitted value against the component's own choices
            self.model_dd.choices = choices
        return [gr.Dropdown(choices=choices, value=info.id), note]

    def wire(self, model_dd: gr.Dropdown) -> None:
        self.model_dd = model_dd
        self.load_btn.click(self.guard(self.load, "load_model"), [self.file, self.arch, self.classes],
                            [model_dd, self.status], api_name="load_model", concurrency_id="attack")
