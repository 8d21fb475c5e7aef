"""The left column: examples, the upload boxes, the model and attack controls and the q-schedule editor.

:func:`build` creates the components and returns them by name; :func:`wire_schedule` connects the schedule
editor (preset ↔ text ↔ constant-q slider).  The run handlers that read these controls are in :mod:`app.ui`.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from app import components as cp
from app import figures as fg
from app.limits import MAX_ALPHA255, MAX_EPS255, MAX_SEED, MAX_TEXT, MIN_EPS255
from app.sources import ExampleItem
from attack_engine.registry import attack_specs, takes_schedule
from attack_engine.schedules import PRESETS, ScheduleError, parse_schedule

DEFAULT_STEPS = 30
CUSTOM = "your own (edit the text)"
CONST_PRESET = "constant q (slider)"
Q_SLIDER = (-3.0, 1.5)  # range of the constant-q slider


def build(examples: list[ExampleItem], choices: list[tuple[str, str]], default_model: str | None) -> dict[str, Any]:
    """The examples, the upload boxes and the model menu (inside the column); returns them by name."""
    ui: dict[str, Any] = {}
    ui["gallery"] = gr.Gallery(value=[(str(e.image), e.title) for e in examples], label="Examples", columns=3,
                               height=250, allow_preview=False, object_fit="cover", elem_id="examples")
    ui["ex_id"] = cp.Text(value="", visible=False, label="example id", max_length=MAX_TEXT)
    ui["image_in"] = cp.UploadImage(type="filepath", label="Image (upload, paste, or pick an example)",
                                    sources=["upload", "clipboard"], height=200, elem_id="image_in")
    ui["mask_in"] = cp.MaskFile(label="Ground-truth mask (optional): PNG of class ids", file_types=[".png"],
                                elem_id="mask_in", type="filepath", height=70)
    ui["model"] = gr.Dropdown(choices, value=default_model, label="Model", elem_id="model")
    return ui


def build_attack(max_steps: int) -> dict[str, Any]:
    """The attack, optimiser, ε, steps, step size, seed and the q-schedule editor."""
    ui: dict[str, Any] = {}
    ui["attack"] = gr.Dropdown([(s.title, s.name) for s in attack_specs()], value="tsallis", label="Attack",
                               elem_id="attack")
    ui["opt"] = gr.Radio([("APGD", "apgd"), ("PGD", "pgd")], value="apgd", label="Optimiser")
    with gr.Row():
        ui["eps"] = cp.Slider(MIN_EPS255, MAX_EPS255, value=8, step=0.5, label="ε (/255)", elem_id="eps")
        ui["steps"] = cp.Slider(1, max_steps, value=min(DEFAULT_STEPS, max_steps), step=1, label="Steps",
                                elem_id="steps")
    with gr.Row():
        ui["alpha"] = cp.Slider(0, MAX_ALPHA255, value=0, step=0.25, label="PGD step size (/255, 0 = ε/4)",
                                interactive=False, scale=3)
        ui["seed"] = cp.Number(0, precision=0, label="Seed", minimum=0, maximum=MAX_SEED, scale=1, min_width=80)
    with gr.Group(visible=True) as ui["sched_group"]:
        ui["preset"] = gr.Dropdown([*PRESETS.keys(), CONST_PRESET, CUSTOM], value=next(iter(PRESETS)),
                                   label="q-schedule preset")
        ui["q_slider"] = cp.Slider(*Q_SLIDER, value=0.5, step=0.05, label="constant q", visible=False,
                                   elem_id="q_slider")
        ui["sched_text"] = cp.Text("linear:-2:1", label="q-schedule text", max_length=MAX_TEXT, elem_id="sched_text",
                                   info="const:Q · linear:A:B · cosine:A:B · plinear:P0:P1 · points:t0:q0,t1:q1,…")
    ui["sched_msg"] = gr.Markdown("Schedule `linear:-2:1`", elem_id="sched_msg")
    ui["preview_plot"] = gr.Plot(fg.schedule_preview_figure("tsallis", "linear:-2:1", DEFAULT_STEPS),
                                 label="Schedule preview", show_label=False, elem_id="preview_plot")
    return ui


def wire_schedule(ui: dict[str, Any], guard, preview) -> None:
    """Preset ↔ text ↔ constant-q slider, the schedule preview (API ``/preview``) and the attack-dependent
    visibility of the editor and the step size."""
    fast = dict(queue=False, show_progress="hidden", api_visibility="private")
    preset, q_slider, sched_text, attack_dd, opt_radio = (ui[n] for n in ("preset", "q_slider", "sched_text",
                                                                          "attack", "opt"))
    preset.input(on_preset, [preset, q_slider], [sched_text, q_slider], **fast)
    q_slider.input(lambda q: f"const:{q:g}", [q_slider], [sched_text], **fast)
    edit = dict(show_progress="hidden", concurrency_id="edit", concurrency_limit=2)  # queued: text parsing
    sched_text.change(guard(on_schedule_text, "schedule_text"), [sched_text], [preset, q_slider],
                      api_visibility="private", **edit)
    gr.on([sched_text.change, attack_dd.change, ui["steps"].change, opt_radio.change], guard(preview, "preview"),
          [attack_dd, sched_text, ui["steps"], opt_radio], [ui["preview_plot"], ui["sched_msg"]], api_name="preview",
          **edit)
    attack_dd.change(lambda a: gr.Group(visible=takes_schedule(a)), [attack_dd], [ui["sched_group"]], **fast)
    opt_radio.change(lambda o: gr.Slider(interactive=o == "pgd"), [opt_radio], [ui["alpha"]], **fast)


def _schedule_preset_for(text: str | None) -> str:
    for name, t in PRESETS.items():
        if text and parse_schedule(t).text() == parse_schedule(text).text():
            return name
    if text and text.startswith("const:"):
        return CONST_PRESET
    return CUSTOM


def on_preset(name: str, q: float):
    """Preset picked: its text (constant q: the slider's value, and the slider shown)."""
    if name in PRESETS:
        return PRESETS[name], gr.Slider(visible=False)
    if name == CONST_PRESET:
        return f"const:{q:g}", gr.Slider(visible=True)
    return gr.skip(), gr.Slider(visible=False)


def on_schedule_text(text: str):
    """Schedule text typed: the matching preset, and a ``const:Q`` text moves the constant-q slider to Q."""
    name = _safe_preset(text)
    try:
        sched = parse_schedule(text) if text and text.strip() else None
    except ScheduleError:
        sched = None
    if sched is not None and sched.kind == "const":
        lo, hi = Q_SLIDER
        q = float(sched.values(1)[0])
        return gr.Dropdown(value=name), gr.Slider(value=min(max(q, lo), hi), visible=True)
    return gr.Dropdown(value=name), gr.Slider(visible=name == CONST_PRESET)


def _safe_preset(text: str) -> str:
    try:
        return _schedule_preset_for(text)
    except ScheduleError:
        return CUSTOM
