"""The panel table: one :class:`Panel` entry per explorer panel, and the panel geometry.

Each entry says what the panel is (name, label, kind, explanation), where it goes (scope, row, column), how it is
drawn (its renderer: records -> PIL image / Plotly figure / Markdown, pure), whether a click on it probes a pixel,
whether the exports show it, and what per-record data it keeps besides the :class:`~app.trajectory.Trajectory`'s
own.  The table DRIVES:

* the layout (:mod:`app.tabs.explore` creates one component per entry, row by row),
* the rendering (:func:`app.view.render_main` / :func:`app.view.render_static` call each entry's renderer),
* the exports (:func:`app.export.panels_png` / :func:`app.export.evolution_gif` pick entries with ``export`` /
  ``gif``),
* the memory accounting (:func:`app.sessions.estimate_run_bytes` adds each entry's ``record_bytes``, and a run
  records an entry's ``record`` data: :attr:`Trajectory.panel_maps`),
* the click wiring (every ``clickable`` entry's select event probes the pixel clicked).

A new panel is one :func:`register_panel` call (or one entry in :func:`builtin_panels`) with its renderer; see
ARCHITECTURE.md, "Recipe: a new panel".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from app import figures as fg
from app.colour_bars import BAR_PANELS, with_bar
from app.texts import legend_markdown, probe_markdown, status_markdown
from app.trajectory import Trajectory

DISPLAY_SIDE = 384  # panels are sent at most this size per side (they are ~300 CSS px on screen)
PERTURBATION_SIDE = 256  # noise-like panels (perturbation) are shown at most this size (noise does not compress)
MIN_PANEL_SIDE = 384  # other image panels are sent at least this large (they are at most ~350 CSS px on screen)
EXPLAIN = {
    "clean": "The input the model sees (resized to the model's input size).",
    "adv": "Clean image + perturbation δ at this record: it should look unchanged.",
    "pert": "δ amplified to full contrast: grey = 0, saturated colours = ±ε in a channel.",
    "clean_seg": "The model's prediction on the clean image.",
    "seg": "The prediction on the adversarial image at this record (click a pixel to probe it).",
    "gt": "Ground-truth labels, when the example or your upload has them.",
    "flipped": "Changed vs the clean prediction: vermillion (orange-red) = became wrong, blue = became right, "
               "yellow = wrong→other wrong.",
    "firstflip": "When each pixel first flipped (colour bar: the record); grey = not (yet).",
    "weight": "Gradient weight relative to CE: the attack's |∂L/∂z| divided by CE's at this pixel. For TsallisPGD "
              "w = p_y^(1−q) (≤ 1 for q ≤ 1, smallest on wrong pixels). Colour bar: log scale; the dark swatch = 0.",
    "grad": "|∂L/∂z| = weight × |∂CE/∂z|: the gradient each pixel's logits actually receive (log scale; "
            "the dark swatch = 0).",
    "hist": "**The core picture.** Bars: pixels by their true-class confidence p_y (green = still correct, vermillion "
            "(orange-red) = already wrong). Solid line: the weight relative to CE at that confidence (right axis); dotted: the "
            "gradient size a pixel gets (two classes, scaled), which for TsallisPGD peaks at p* = (1−q)/(2−q) "
            "(dashed). A lower q moves that peak towards confident pixels (p* = 0.75 at q = −2) and starves the "
            "already-wrong ones; q = 1 is plain CE, whose gradient 1−p is largest on pixels that are already wrong. "
            "The **q-lens** tab shows several q at this very record.",
    "curves": "Pixel accuracy, mIoU, loss, q (or λ) and step size over records; ★ = best iterate (lowest accuracy). "
              "Dashed lines: APGD stage boundaries. APGD's stages use ε ×2 and ×1.5 before the final ε; each new "
              "stage restarts from the best iterate, projected to its smaller ε, so accuracy and q jump back there.",
    "mass": "Share of the total gradient Σ|∂L/∂z| that goes to confident-correct (p_y ≥ 0.9), uncertain-correct and "
            "already-wrong pixels.",
    "probe": "Click any pixel in an image panel: its class probabilities, weight and gradient over all records.",
}
"""Each panel's explanation under it (``probe``: the probe's text before a pixel is picked)."""
KINDS = ("image", "plot", "markdown")
SCOPES = ("main", "static")


@dataclass
class View:
    """What a renderer draws: record ``k`` of ``traj``, the probed view pixel, the status note, live or not."""

    traj: Trajectory
    k: int
    probe_yx: tuple[int, int] | None = None
    live: bool = False
    note: str = ""
    _probe: dict | None = field(default=None, repr=False)

    def probe(self) -> dict | None:
        """The probed pixel's series over all records (computed once per view)."""
        if self.probe_yx is None:
            return None
        if self._probe is None:
            y, x = self.probe_yx
            self._probe = self.traj.probe(min(y, self.traj.hw[0] - 1), min(x, self.traj.hw[1] - 1))
        return self._probe


Renderer = Callable[[View], Any]  # -> PIL image / Plotly figure / Markdown text, or None (panel left as it is)
Recorder = Callable[[Any, Trajectory], np.ndarray]  # (StepRecord, the run) -> one record's array


@dataclass(frozen=True)
class Panel:
    """One panel of the explorer.

    ``scope``: ``main`` panels change per record, ``static`` ones per run.  ``row`` / ``column``: panels with the
    same row sit side by side; entries of one row sharing a ``column`` key stack in one column of width ``scale``.
    ``slot``: ``grid`` (the panel rows), or ``status`` / ``legend`` for the two text lines around the slider.
    ``cost``: ``charts`` / ``hist`` for the heavy Plotly panels a streamed view redraws only now and then.
    ``export``: the caption in the panels PNG (``""``: not exported); ``gif``: a frame tile of the evolution GIF.
    ``record`` / ``record_bytes``: per-record data this panel needs that the Trajectory does not keep (stored in
    ``traj.panel_maps[name]``) and its size in bytes per record for a view of ``(h, w)`` pixels.
    """

    name: str
    label: str
    kind: str
    render: Renderer
    explain: str = ""
    clickable: bool = False
    scope: str = "main"
    slot: str = "grid"
    row: int = 0
    column: str = ""
    scale: int = 1
    pos: int = 0  # order within its row / column in the layout (the table's order is the outputs' order)
    smooth: bool = False  # photo-like: resized bilinearly (else nearest) and shown smoothed
    noise: bool = False  # noise-like: sent at most PERTURBATION_SIDE per side
    marker: bool = False  # draws the probed pixel's marker
    cost: str = ""
    export: str = ""
    gif: bool = False
    elem_id: str = ""
    record: Recorder | None = None
    record_bytes: Callable[[tuple[int, int]], int] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS or self.scope not in SCOPES:
            raise ValueError(f"panel {self.name!r}: kind must be one of {KINDS}, scope one of {SCOPES}")
        if (self.record is None) != (self.record_bytes is None):
            raise ValueError(f"panel {self.name!r}: give record and record_bytes together")

    @property
    def component_id(self) -> str:
        """The page element id (kept stable for tests and benchmarks)."""
        return self.elem_id or (f"panel_{self.name}" if self.kind == "image" else self.name)


# -- geometry ------------------------------------------------------------------------------------------------
def panel_hw(traj: Trajectory, name: str) -> tuple[int, int]:
    """(H, W) of image panel ``name``'s map as sent to the browser (a colour-bar panel adds its strip below): the
    display size capped at :data:`DISPLAY_SIDE`
    (:data:`PERTURBATION_SIDE` for noise-like panels), and small runs (the 128-px shipped ones) enlarged to
    :data:`MIN_PANEL_SIDE`.

    The browser must never show a clickable panel larger than it was sent: Gradio maps a click to image pixels
    assuming the image is not enlarged (its scale is capped at 1), so an enlarged panel probes the wrong pixel.
    """
    h, w = traj.display_hw
    p = _TABLE.get(name)
    noise = p is not None and p.noise
    cap = PERTURBATION_SIDE if noise else DISPLAY_SIDE
    if max(h, w) > cap:
        s = cap / max(h, w)
        return max(1, round(h * s)), max(1, round(w * s))
    if not noise and max(h, w) < MIN_PANEL_SIDE:
        s = MIN_PANEL_SIDE / max(h, w)
        return max(1, round(h * s)), max(1, round(w * s))
    return h, w


def draw(p: Panel, v: View) -> Any:
    """Panel ``p``'s value for view ``v``: an image panel at its size (:func:`panel_hw`), with the probe's marker
    (``marker`` entries) and its colour bar (:data:`app.colour_bars.BAR_PANELS`); None when there is nothing
    to show."""
    out = p.render(v)
    if out is None or p.kind != "image":
        return out
    out = fit(out, v.traj, p.name)
    if v.probe_yx is not None and p.marker:
        out = fg.with_marker(out, view_to_panel(v.traj, p.name, v.probe_yx))
    if p.name in BAR_PANELS:
        out = with_bar(out, p.name, max(v.traj.info.expected_records, len(v.traj)))
    return out


def fit(img: Image.Image, traj: Trajectory, name: str) -> Image.Image:
    """``img`` at :func:`panel_hw` (bilinear for photo-like panels, nearest for maps)."""
    h, w = panel_hw(traj, name)
    if img.size == (w, h):
        return img
    p = _TABLE.get(name)
    return img.resize((w, h), Image.BILINEAR if p is not None and p.smooth else Image.NEAREST)


def view_to_panel(traj: Trajectory, name: str, yx: tuple[int, int]) -> tuple[int, int]:
    """View-map pixel (y, x) -> pixel centre (x, y) on panel ``name``."""
    h, w = panel_hw(traj, name)
    hv, wv = traj.hw
    return int((yx[1] + 0.5) * w / wv), int((yx[0] + 0.5) * h / hv)


def panel_to_view(traj: Trajectory, name: str, xy: tuple[float, float]) -> tuple[int, int] | None:
    """A click at (x, y) on panel ``name`` -> view-map pixel (y, x); None for a click on the panel's colour bar
    (drawn below the map, :mod:`app.colour_bars`)."""
    h, w = panel_hw(traj, name)
    if name in BAR_PANELS and xy[1] >= h:
        return None
    hv, wv = traj.hw
    y = min(max(int(xy[1] * hv / h), 0), hv - 1)
    x = min(max(int(xy[0] * wv / w), 0), wv - 1)
    return y, x


# -- renderers (pure: records -> pictures / text) -------------------------------------------------------------
def _delta(v: View) -> np.ndarray | None:
    return v.traj.delta[v.traj.delta_key(v.k)] if v.traj.delta else None


def _status(v: View) -> str:
    note = v.note
    if v.traj.delta and v.traj.delta_key(v.k) != v.k:
        note = (note + "  \n" if note else "") + ("_This shipped run keeps the perturbation of every few records: "
                                                 f"the adversarial image and δ shown are from record "
                                                 f"{v.traj.delta_key(v.k)}._")
    return status_markdown(v.traj, v.k, v.live, note)


def _adv(v: View) -> Image.Image | None:
    d = _delta(v)
    return None if d is None else fg.adversarial_image(v.traj.image_v, d, v.traj.info.dmax)


def _pert(v: View) -> Image.Image | None:
    d = _delta(v)
    return None if d is None else fg.perturbation_image(d)


def _seg(v: View) -> Image.Image:
    t = v.traj
    return fg.seg_overlay(t.image_v, t.pred[v.k], t.info.palette, ignore_index=t.info.ignore_index)


def _flipped(v: View) -> Image.Image:
    t = v.traj
    return fg.flipped_image(fg.background(t), t.pred[v.k], t.clean_pred_v, t.labels_v, t.valid_v)


def _firstflip(v: View) -> Image.Image:
    t = v.traj
    return fg.first_flip_image(fg.background(t), t.first_flip_at(v.k), max(t.info.expected_records, len(t)))


def _weight(v: View) -> Image.Image | None:
    return fg.weight_image(v.traj.weight[v.k]) if v.traj.has_telemetry else None


def _grad(v: View) -> Image.Image | None:
    return fg.grad_image(v.traj.grad[v.k]) if v.traj.has_telemetry else None


def _hist(v: View) -> dict | None:
    t, k = v.traj, v.k
    if not t.has_telemetry:
        return None
    cfg = t.info.config
    par = t.get("param", k)
    return fg.histogram_figure(t.hist[k], cfg.get("attack", "ce"), int(t.get("stage_step", k)),
                               int(t.get("stage_total", k)), cfg.get("schedule"),
                               None if not math.isfinite(par) else par, k)


def _probe_plot(v: View) -> dict | None:
    pr = v.probe()
    return None if pr is None else fg.probe_figure(pr, v.traj.info.class_names, v.traj.info.palette, v.k)


def _probe_md(v: View) -> str | None:
    pr = v.probe()
    return None if pr is None else probe_markdown(v.traj, pr, v.k)


def _clean(v: View) -> Image.Image:
    return fg.to_pil(v.traj.image_v)


def _clean_seg(v: View) -> Image.Image:
    t = v.traj
    return fg.seg_overlay(t.image_v, t.clean_pred_v, t.info.palette, ignore_index=t.info.ignore_index)


def _gt(v: View) -> Image.Image:
    t = v.traj
    if t.info.has_gt:
        return fg.seg_overlay(t.image_v, t.labels_v, t.info.palette, ignore_index=t.info.ignore_index)
    return fg.placeholder_image("No ground-truth mask: the attack uses the clean prediction as labels.", t.hw)


# -- the table --------------------------------------------------------------------------------------------------
def builtin_panels() -> list[Panel]:
    """The explorer's panels; their order is the order of the endpoints' outputs (the layout follows
    ``slot``, ``row``, ``column`` and ``pos``)."""
    img = dict(kind="image")
    return [
        Panel("status", "Status", "markdown", _status, slot="status", elem_id="status"),
        Panel("clean", "Clean image", render=_clean, scope="static", row=1, smooth=True, clickable=True,
              export="clean image", **img),
        Panel("adv", "Adversarial image", render=_adv, row=1, smooth=True, clickable=True, marker=True,
              export="adversarial", **img),
        Panel("pert", "Perturbation (amplified)", render=_pert, row=1, noise=True, export="perturbation (amplified)",
              **img),
        Panel("clean_seg", "Clean segmentation", render=_clean_seg, scope="static", row=2, smooth=True,
              clickable=True, export="clean segmentation", **img),
        Panel("seg", "Current segmentation", render=_seg, row=2, smooth=True, clickable=True, marker=True,
              export="current segmentation", gif=True, **img),
        Panel("gt", "Ground truth", render=_gt, scope="static", row=2, smooth=True, clickable=True,
              export="ground truth", **img),
        Panel("legend", "Legend", "markdown", lambda v: legend_markdown(v.traj), scope="static", slot="legend"),
        Panel("flipped", "Flipped pixels", render=_flipped, row=3, clickable=True, marker=True,
              export="flipped pixels", gif=True, **img),
        Panel("firstflip", "First-flip record", render=_firstflip, row=3, clickable=True,
              export="first-flip record", **img),
        Panel("weight", "Gradient weight vs CE", render=_weight, row=3, clickable=True, marker=True,
              export="weight vs CE", gif=True, **img),
        Panel("grad", "|∂L/∂z|", render=_grad, row=3, clickable=True, marker=True, export="|dL/dz|", **img),
        Panel("hist", "Confidence histogram and weight curve", "plot", _hist, row=4, column="hist", scale=3,
              cost="hist"),
        Panel("curves", "Metrics over iterations", "plot", lambda v: fg.curves_figure(v.traj, v.k), row=5,
              column="curves", scale=3, cost="charts"),
        Panel("mass", "Gradient mass", "plot", lambda v: fg.mass_figure(v.traj, v.k), row=5, column="mass", scale=2,
              cost="charts"),
        Panel("probe_plot", "Pixel probe", "plot", _probe_plot, row=4, column="probe", scale=2, pos=1),
        Panel("probe_md", "Pixel probe (text)", "markdown", _probe_md, row=4, column="probe", scale=2),
    ]


def _explained(p: Panel) -> Panel:
    if p.explain or p.name not in EXPLAIN:
        return p
    from dataclasses import replace

    return replace(p, explain=EXPLAIN[p.name])


_TABLE: dict[str, Panel] = {p.name: _explained(p) for p in builtin_panels()}


def panels(scope: str | None = None, slot: str | None = None) -> list[Panel]:
    """The table's entries (in table order), optionally only those of one scope / slot."""
    return [p for p in _TABLE.values() if (scope is None or p.scope == scope) and (slot is None or p.slot == slot)]


def get_panel(name: str) -> Panel:
    return _TABLE[name]


def register_panel(panel: Panel) -> Panel:
    """Add ``panel`` to the table (after the built-in ones of its row); apps built afterwards show it."""
    if panel.name in _TABLE or panel.name in RESERVED:
        raise ValueError(f"a panel or output named {panel.name!r} exists already")
    _TABLE[panel.name] = panel
    return panel


def unregister_panel(name: str) -> None:
    """Remove a panel added with :func:`register_panel` (built-in ones stay)."""
    if name in {p.name for p in builtin_panels()}:
        raise ValueError(f"{name!r} is a built-in panel")
    _TABLE.pop(name, None)


def main_names() -> tuple[str, ...]:
    return tuple(p.name for p in panels("main"))


def static_names() -> tuple[str, ...]:
    return tuple(p.name for p in panels("static"))


def recorders() -> dict[str, Recorder]:
    """Per-record data the panels need besides the Trajectory's (name -> recorder)."""
    return {p.name: p.record for p in _TABLE.values() if p.record is not None}


def record_bytes(view_hw: tuple[int, int]) -> int:
    """Bytes per record that :func:`recorders` keep for a view of ``view_hw`` pixels."""
    return sum(p.record_bytes(view_hw) for p in _TABLE.values() if p.record_bytes is not None)


RESERVED = ("state", "slider", "timer", "live_timer", "play_btn")  # output names the explorer uses besides panels
