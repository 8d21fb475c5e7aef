"""ARCHITECTURE.md's "Recipe: a new panel", done literally: one table entry with its renderer, nothing else.

The throwaway panel ("confident": the pixels whose true-class confidence is at least 0.9) records its own
per-record map (so it shows in the memory estimate), is exported and clickable; the test builds the app and finds
it in the layout, the outputs, the exports, the memory estimate and the click wiring.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import app  # noqa: F401  (offline environment before gradio)

NAME = "confident"
EXPLAIN = "Pixels whose true-class confidence is at least 0.9 (white), at this record."


# -- the recipe: step 1, the renderer (records -> picture, pure) and step 2, the table entry ---------------------
def record_confident(rec, traj) -> np.ndarray:
    """One record's map for the panel: p_y >= 0.9 at the view resolution (nearest pixel), uint8."""
    p = rec.p_true[0].detach().float().cpu().numpy()
    ys = ((np.arange(traj.hw[0]) + 0.5) * p.shape[0] / traj.hw[0]).astype(int)
    xs = ((np.arange(traj.hw[1]) + 0.5) * p.shape[1] / traj.hw[1]).astype(int)
    return (p[ys][:, xs] >= 0.9).astype(np.uint8)


def render_confident(view) -> Image.Image | None:
    maps = view.traj.panel_maps.get(NAME)
    if not maps:  # a run recorded before the panel existed (a shipped run): nothing to show
        return None
    return Image.fromarray(maps[view.k] * 255).convert("RGB")


def _entry():
    """Step 2: the table entry (exported, a GIF tile, clickable, with its own per-record map)."""
    from app.panels import Panel

    return Panel(NAME, "Confident pixels", "image", render_confident, explain=EXPLAIN, clickable=True, marker=True,
                 row=3, export="confident pixels", gif=True, record=record_confident,
                 record_bytes=lambda hw: hw[0] * hw[1])


@pytest.fixture(scope="module")
def confident_panel():
    from app.panels import register_panel, unregister_panel

    panel = register_panel(_entry())
    yield panel
    unregister_panel(NAME)


@pytest.fixture(scope="module")
def built(confident_panel, tmp_path_factory):
    from app.launch import build_demo
    from app.sources import ExampleItem
    from app.standin import register_standin, write_synthetic_example

    folder = tmp_path_factory.mktemp("panels")
    mid = register_standin()
    ip, mp = write_synthetic_example(folder, 64)
    demo = build_demo(mid, [ExampleItem("synthetic", "Synthetic", ip, {2: mp})], folder / "none")
    yield demo, demo.tsallis_app, mid
    demo.close()


def _run(application, mid, steps: int = 3):
    from app.request import RunRequest
    from app.sessions import Session

    sess = Session()
    outs = list(application.run(RunRequest(None, None, "synthetic", mid, "tsallis", "pgd", 8, steps, 0, 0,
                                           "linear:-2:1"), sess))
    return sess, outs


def test_the_new_panel_is_in_the_layout_and_the_outputs(built):
    import gradio as gr

    demo, application, mid = built
    comp = application.ui[NAME]
    assert isinstance(comp, gr.Image) and comp.label == "Confident pixels" and comp.elem_id == f"panel_{NAME}"
    texts = [b.value for b in demo.blocks.values() if isinstance(b, gr.Markdown)]
    assert EXPLAIN in texts, "its explanation sits under it"
    for api in ("run", "step", "scrub", "pause", "probe", "load_example"):
        assert NAME in application.api_outputs[api], api
    sess, outs = _run(application, mid)
    assert all(NAME in o for o in outs[1:]), "every streamed view carries it"
    assert len(sess.traj.panel_maps[NAME]) == len(sess.traj)
    shown = np.asarray(Image.open(outs[-1][NAME]))
    assert shown.shape[:2] == (384, 384)  # sent at the panels' size, like its neighbours


def test_the_new_panel_is_exported(built):
    from app.export import evolution_gif, panel_tiles

    _, application, mid = built
    sess, _ = _run(application, mid)
    titles = [title for title, _ in panel_tiles(sess.traj, 1)]
    assert "confident pixels" in titles and "clean image" in titles
    from app.panels import register_panel, unregister_panel

    frame_w = Image.open(io.BytesIO(evolution_gif(sess.traj))).size[0]
    unregister_panel(NAME)
    try:  # the GIF's frames are one tile narrower without the panel
        assert Image.open(io.BytesIO(evolution_gif(sess.traj))).size[0] < frame_w
    finally:
        register_panel(_entry())


def test_the_new_panel_is_in_the_memory_estimate(built):
    from app.panels import register_panel, unregister_panel
    from app.sessions import estimate_run_bytes, traj_nbytes

    _, application, mid = built
    sess, _ = _run(application, mid)
    t = sess.traj
    with_panel = estimate_run_bytes((64, 64), 2, len(t))
    per_record = t.hw[0] * t.hw[1]
    assert sum(a.nbytes for a in t.panel_maps[NAME]) == len(t) * per_record
    assert traj_nbytes(t) <= with_panel, "the estimate bounds what the run keeps, the panel's maps included"
    unregister_panel(NAME)
    try:
        assert with_panel - estimate_run_bytes((64, 64), 2, len(t)) == len(t) * per_record
    finally:
        register_panel(_entry())


def test_a_click_on_the_new_panel_probes_the_pixel(built):
    import gradio as gr

    demo, application, mid = built
    comp = application.ui[NAME]
    selects = [f for f in demo.fns.values() if any(t[0] == comp._id and t[1] == "select" for t in f.targets)]
    assert len(selects) == 1, "the table's clickable entry is wired to the probe"
    probe_md = application.ui["probe_md"]
    assert probe_md in selects[0].outputs
    sess, _ = _run(application, mid)
    evt = gr.SelectData(comp, {"index": [96, 288], "value": None})  # (x, y) on the 384-px panel of a 64-px run
    out = dict(zip(map(id, selects[0].outputs), selects[0].fn(sess, evt), strict=True))  # in the outputs' order
    assert sess.probe == (48, 16) and str(out[id(probe_md)]).startswith("Pixel (x=16, y=48)")
