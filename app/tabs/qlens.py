"""The q-lens tab: the current record seen by TsallisPGD at several q, a what-if q on the histogram, a guided lesson.

``app.ui`` creates it inside a ``gr.Tab`` (:meth:`QLensTab.layout`) and connects it to the session state, the
record slider and the example loader (:meth:`QLensTab.wire`).  Drawing is in :mod:`app.qlens_figures`, the
numbers in :mod:`attack_engine.qlens`; this module only wires.  Dragging the what-if slider redraws the
histogram's curves and shares in the browser (:data:`WHATIF_JS`); the server is asked only when the record,
the q list, the axis or a highlight changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from app import qlens_figures as qf
from app.sessions import Session

TAB_LABEL = "q-lens"
MAX_QS = 6
Q_RANGE = (-5.0, 2.0)
AXES = [("p_y (probability)", "p"), ("margin (log-odds): for saturated models", "margin")]
HIGHLIGHTS = [("none", "none"), ("confident-correct", "group:0"), ("uncertain-correct", "group:1"),
              ("already wrong", "group:2")]

EXPLAIN = """**Read this first.** For every pixel, TsallisPGD's gradient is CE's gradient times a **relative weight**
w = p_y^(1−q) (p_y: the model's probability of the true class). The weight is at most 1 for q ≤ 1 and is *smallest*
on wrong pixels (p_y ≈ 0), so a low q does **not** pour weight onto confident pixels: it *takes weight away* from
pixels that are already wrong. What a pixel actually receives is the **gradient size** w·|∂CE/∂z| ≈ p^(1−q)(1−p)
(two classes), which peaks at **p\\* = (1−q)/(2−q)**: p\\* = 0.75 at q = −2, 0.5 at q = 0, and → 0 at q = 1. Plain CE
(q = 1) has weight 1 everywhere, and its gradient size 1−p is largest on pixels that are *already wrong* — that is
where CE spends most of its gradient, although flipping them further gains nothing. The columns below show this at
the same iterate: no model is re-run, since |∂L_q/∂z| = p_y^(1−q)·|∂CE/∂z| per pixel."""

WHATIF_HELP = ("Drag **what-if q**: the weight curve (solid), the gradient-size curve (dotted, scaled to peak 1), "
               "p\\* (dashed) and the gradient-mass shares in the title are redrawn in your browser. **Click a bar** "
               "to light its pixels up in the maps above; click a pixel in a map to probe it (black line here).")

# Redraw the what-if histogram for q from the data the figure carries (layout.meta.qlens); no server round trip.
WHATIF_JS = """
(q) => {
  const t0 = performance.now();
  const gd = document.querySelector('#qlens_hist .js-plotly-plot');
  const M = gd && gd.layout && gd.layout.meta && gd.layout.meta.qlens;
  if (!M || !window.Plotly) { return []; }
  q = Number(q);
  const a = 1 - q;
  const sp = (x) => (x > 0 ? x + Math.log1p(Math.exp(-x)) : Math.log1p(Math.exp(x)));
  const lw = (lp) => (a >= 0 ? a * lp : (lp < M.floor ? -Infinity : a * Math.max(lp, M.floor)));
  const w = [], lg = [];
  let top = -Infinity;
  for (const x of M.xs) {
    const lp = M.axis === 'p' ? Math.log(Math.max(x, 1e-300)) : -sp(-x);
    const l1p = M.axis === 'p' ? Math.log1p(-Math.min(x, 1 - 1e-16)) : -sp(x);
    const v = lw(lp);
    w.push(Math.max(Math.exp(v), 1e-6));
    lg.push(v + l1p);
    if (v + l1p > top) top = v + l1p;
  }
  const g = lg.map((v) => Math.max(Math.exp(v - top), 1e-6));
  const parts = [-Infinity, -Infinity, -Infinity];
  const lae = (x, y) => (x === -Infinity ? y : (y === -Infinity ? x : Math.max(x, y) + Math.log1p(Math.exp(-Math.abs(x - y)))));
  for (const [gi, b, ls, mu, vr] of M.summary) {
    const m = a < 0 ? Math.max(mu, M.floor) : mu;
    parts[gi] = lae(parts[gi], ls + a * m + (b > 0 ? 0.5 * a * a * vr : 0));
  }
  const mx = Math.max(...parts);
  const e = parts.map((v) => (Number.isFinite(v) ? Math.exp(v - mx) : 0));
  const tot = e[0] + e[1] + e[2];
  const s = e.map((v) => (tot > 0 ? v / tot : 0));
  const pstar = q < 2 ? Math.max(0, (1 - q) / (2 - q)) : 0;
  const px = q < 1 ? (M.axis === 'p' ? pstar : Math.log(1 - q)) : null;
  const pc = (v) => (100 * v).toFixed(0) + '%';
  const title = 'what-if q = ' + q.toFixed(2) + ' · p* = ' + pstar.toFixed(2) + ' · gradient mass: confident-correct ' +
    pc(s[0]) + ' · uncertain-correct ' + pc(s[1]) + ' · already wrong ' + pc(s[2]);
  const T = M.traces;
  window.Plotly.update(gd, {y: [w, g, [1e-6, 100]], x: [M.xs, M.xs, [px, px]]}, {'title.text': title}, [T.w, T.g, T.ps]);
  window.__qlensWhatif = {q: q, shares: s, ms: performance.now() - t0};
  return [];
}
"""

# On opening the tab: bar clicks -> the band box; map clicks -> the probe box (bound once per plot element).
BIND_JS = """
() => {
  const setBox = (id, text) => {
    const el = document.querySelector('#' + id + ' textarea, #' + id + ' input');
    if (!el) return;
    el.value = text;
    el.dispatchEvent(new Event('input', {bubbles: true}));
  };
  const bind = () => {
    const h = document.querySelector('#qlens_hist .js-plotly-plot');
    if (h && h.on && !h.__qlensBound) {
      h.__qlensBound = true;
      h.on('plotly_click', (ev) => {
        const pt = ev.points && ev.points.find((p) => p.data.type === 'bar');
        const M = h.layout.meta && h.layout.meta.qlens;
        if (!pt || !M) return;
        const w = pt.data.width;
        setBox('qlens_band', M.axis + ':' + (pt.x - w / 2) + ':' + (pt.x + w / 2));
      });
    }
    const m = document.querySelector('#qlens_grid .js-plotly-plot');
    if (m && m.on && !m.__qlensBound) {
      m.__qlensBound = true;
      m.on('plotly_click', (ev) => {
        const pt = ev.points && ev.points[0];
        if (pt && pt.data.type === 'image') setBox('qlens_probe', Math.floor(pt.y) + ',' + Math.floor(pt.x) + ',' + Date.now());
      });
    }
  };
  let n = 0;
  const iv = setInterval(() => { bind(); if (++n > 40) clearInterval(iv); }, 250);
  return [];
}
"""

CSS = "#qlens_band, #qlens_probe {display: none !important}"


@dataclass(frozen=True)
class LessonStep:
    """One step of the guided lesson: what to do, what to look for, and the preset it applies."""

    text: str
    look: str
    example: str
    record: str  # "first", "last", "best" or an integer
    whatif: float
    axis: str = "p"
    highlight: str = "none"
    qs: str = "-2, -1, 0, 0.5, 1"


LESSON = (
    LessonStep("The attack has just started (record 0, the random start): almost every pixel is still correct, and "
               "this model is so sure of itself that p_y is 1 to float precision on most of them.",
               "On the p_y axis all pixels sit in the last bar. The margin axis (log p_y − log(1 − p_y)) is selected "
               "here: the same pixels spread over a wide range — that structure is what the attack works with.",
               "astronaut", "first", -2.0, axis="margin"),
    LessonStep("Later in the first APGD stage q is still low. Keep what-if q at −2: the solid weight curve p_y^3 is "
               "below 1 everywhere and tiny near p_y = 0.",
               "The dashed p* = 0.75 line: the gradient size p^3(1−p) peaks there. The highlighted uncertain-correct "
               "pixels receive most of the gradient mass (see the title).",
               "astronaut", "8", -2.0, highlight="group:1"),
    LessonStep("Same iterate, now drag what-if q to 1 (plain CE): weight 1 everywhere.",
               "The dotted gradient-size curve 1 − p is now largest at p_y → 0, on pixels that are already wrong "
               "(highlighted): CE spends most of its gradient there, although they are already lost.",
               "astronaut", "8", 1.0, highlight="group:2"),
    LessonStep("The q-lens columns put the two side by side at this very iterate: q = −2, −1, 0, 0.5, 1.",
               "Read the table: from q = −2 to q = 1 the share of already-wrong pixels grows and the share of "
               "correct pixels shrinks. The maps show where: bright |∂L/∂z| moves from object borders onto the "
               "flipped regions.",
               "astronaut", "8", 0.0),
    LessonStep("A low q does not mean 'weight on confident pixels'. Highlight the confident-correct pixels and drag "
               "what-if q down to −5.",
               "Their share stays small: their weight p_y^(1−q) ≈ 1 is no larger than anyone else's, and their CE "
               "gradient 1 − p_y is tiny. What a lower q does is move p* towards 1 and starve the wrong pixels.",
               "astronaut", "8", -5.0, highlight="group:0"),
    LessonStep("The end of the run, where the schedule has reached q = 1, on another photo.",
               "Most pixels are wrong now; compare the 'this run' column with the q columns, and switch to the margin "
               "axis to see how far below 0 the flipped pixels' margins went.",
               "chelsea", "last", 1.0, axis="margin"),
)


def parse_qs(text: str | None) -> list[float]:
    """``"-2, -1, 0"`` -> q values (1 to :data:`MAX_QS`, each in :data:`Q_RANGE`); raises ValueError with one
    readable sentence otherwise."""
    parts = [p for p in (text or "").replace(";", ",").replace(" ", ",").split(",") if p]
    try:
        qs = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"q values must be numbers separated by commas, got {str(text)[:60]!r}") from None
    if not 1 <= len(qs) <= MAX_QS:
        raise ValueError(f"give 1 to {MAX_QS} q values, got {len(qs)}")
    if not all(math.isfinite(q) and Q_RANGE[0] <= q <= Q_RANGE[1] for q in qs):
        raise ValueError(f"each q must be between {Q_RANGE[0]:g} and {Q_RANGE[1]:g}")
    return qs


def _record_index(traj, spec: str) -> int:
    if spec == "first":
        return 0
    if spec == "last":
        return len(traj) - 1
    if spec == "best":
        return max(traj.best_index(), 0)
    return traj.clamp(int(spec))


class QLensTab:
    """Components of the tab (built by :meth:`layout`) and their wiring (:meth:`wire`)."""

    def layout(self) -> None:
        gr.Markdown(EXPLAIN, elem_classes=["explain"])
        with gr.Row():
            self.qs = gr.Textbox("-2, -1, 0, 0.5, 1", label="q values for the columns (comma-separated)",
                                 elem_id="qlens_qs", scale=3)
            self.highlight = gr.Radio(HIGHLIGHTS, value="none", label="Light up pixels of a gradient-mass band",
                                      elem_id="qlens_highlight", scale=4)
        self.note = gr.Markdown("", elem_id="qlens_note")
        self.grid = gr.Plot(label="q-lens: weight vs CE (top) and |∂L/∂z| (bottom) per q", elem_id="qlens_grid")
        self.shares = gr.HTML("", elem_id="qlens_shares")
        with gr.Row():
            self.whatif = gr.Slider(-5, 1.5, value=-2.0, step=0.05, label="what-if q (redrawn in the browser)",
                                    elem_id="qlens_whatif", scale=3)
            self.axis = gr.Radio(AXES, value="p", label="Histogram axis", elem_id="qlens_axis", scale=2)
        self.hist = gr.Plot(label="Pixels by confidence, with the what-if q's curves", elem_id="qlens_hist")
        gr.Markdown(WHATIF_HELP, elem_classes=["explain"])
        self.band = gr.Textbox("", elem_id="qlens_band", label="band", container=False)
        self.probe = gr.Textbox("", elem_id="qlens_probe", label="probe", container=False)
        with gr.Accordion("Guided lesson: how q moves the gradient (6 steps on the shipped runs)", open=False,
                          elem_id="qlens_lesson"):
            self.lesson_md = gr.Markdown("Press **Start** — each step loads a preset; leave whenever you like and "
                                         "explore from there.", elem_id="qlens_lesson_md")
            with gr.Row():
                self.start = gr.Button("Start / restart", elem_id="qlens_lesson_start")
                self.back = gr.Button("◀ Back", elem_id="qlens_lesson_back")
                self.next = gr.Button("Next ▶", elem_id="qlens_lesson_next")
                self.leave = gr.Button("Leave the lesson", elem_id="qlens_lesson_leave")
        self.step = gr.State(-1)
        self.open = gr.State(False)

    # -- rendering ------------------------------------------------------------------------------------------
    def render(self, sess: Session, qs_text: str, whatif: float, axis: str, band_text: str) -> list:
        """[note, grid, shares, hist] for the session's current record."""
        t = sess.traj
        if t is None or not len(t):
            return ["No run yet: pick an example (its shipped run loads at once) or press **Run**.", None, "", None]
        if not t.has_lens:
            return ["This run was recorded without the q-lens data (an older file): press **Run** to record it "
                    "again.", None, "", None]
        try:
            qs = parse_qs(qs_text)
            band = qf.parse_band(band_text)
        except ValueError as e:
            raise gr.Error(str(e)) from None
        k = t.clamp(sess.view)
        axis = axis if axis in ("p", "margin") else "p"
        q = float(whatif) if isinstance(whatif, (int, float)) and math.isfinite(whatif) else -2.0
        mask = qf.band_mask(t, k, band)
        note = f"Record **{k}** of {len(t)}" + (f" · lit up: {band.label()} ({int(mask.sum())} pixels)"
                                                 if mask is not None else "")
        return [note, qf.lens_grid_figure(t, k, qs, mask, sess.probe), qf.shares_table_html(t, k, qs),
                qf.whatif_figure(t, k, q, axis, sess.probe, band)]

    # -- wiring ---------------------------------------------------------------------------------------------
    def wire(self, app: Any, *, state, model_dd, slider, tabs, tab, ex_out: list, main_out: list,
             guard: Callable[[Callable, str], Callable]) -> None:
        """Connect to the app: tab selection, the record slider, the example loader and the main outputs."""
        ins = [state, self.qs, self.whatif, self.axis, self.band]
        outs = [self.note, self.grid, self.shares, self.hist]
        fast = dict(queue=False, show_progress="hidden", api_visibility="private")

        def show(state, qs, whatif, axis, band):
            return self.render(app._session(state), qs, whatif, axis, band)

        def show_if_open(is_open, state, qs, whatif, axis, band):
            return show(state, qs, whatif, axis, band) if is_open else [gr.skip()] * len(outs)

        g = guard
        tab.select(lambda: True, None, [self.open], js=BIND_JS, **fast).then(g(show, "qlens"), ins, outs, **fast)
        for other in getattr(tabs, "children", []):
            if other is not tab and isinstance(other, gr.Tab):
                other.select(lambda: False, None, [self.open], **fast)
        slider.change(g(show_if_open, "qlens"), [self.open, *ins], outs, **fast)
        for c in (self.qs, self.axis, self.band):
            c.change(g(show, "qlens"), ins, outs, **fast)
        self.highlight.input(lambda h: "" if h == "none" else h, [self.highlight], [self.band], **fast)
        self.whatif.input(None, [self.whatif], None, js=WHATIF_JS)
        self.probe.change(g(self._probe_fn(app), "qlens_probe"), [self.probe, state], [state], **fast).then(
            g(show, "qlens"), ins, outs, **fast)
        self._wire_lesson(app, state, model_dd, ex_out, main_out, ins, outs, g, fast)

    @staticmethod
    def _probe_fn(app: Any) -> Callable:
        def probe(text, state):
            sess = app._session(state)
            try:
                y, x = (int(v) for v in str(text).split(",")[:2])
            except ValueError:
                return sess
            if sess.traj is not None and 0 <= y < sess.traj.hw[0] and 0 <= x < sess.traj.hw[1]:
                sess.probe = (y, x)
            return sess

        return probe

    def _wire_lesson(self, app, state, model_dd, ex_out, main_out, ins, outs, g, fast) -> None:
        preset_out = [self.step, self.lesson_md, self.qs, self.whatif, self.axis, self.highlight, self.band]

        def goto(delta: int | None) -> Callable:
            def fn(step):
                i = 0 if delta is None else min(max(int(step) + delta, 0), len(LESSON) - 1)
                s = LESSON[i]
                md = (f"**Step {i + 1} of {len(LESSON)}.** {s.text}  \n*What to look for:* {s.look}  \n"
                      f"<small>Preset: example `{s.example}`, record {s.record}, what-if q = {s.whatif:g}. "
                      "Leave the lesson any time: everything stays as it is.</small>")
                band = "" if s.highlight == "none" else s.highlight
                return [i, md, s.qs, s.whatif, s.axis, s.highlight, band]

            return fn

        def load(step, model_id, state):
            sess = app._session(state)
            s = LESSON[int(step)]
            t = sess.traj
            if t is not None and t.info.source == s.example and sess.live is None:
                return [gr.skip()] * len(ex_out)
            return app.components(app.load_example(s.example, model_id, sess))

        def place(step, state):
            sess = app._session(state)
            if sess.traj is not None and len(sess.traj):
                sess.view, sess.follow = _record_index(sess.traj, LESSON[int(step)].record), False
            return app.components(app.main_outputs(sess))

        for btn, delta in ((self.start, None), (self.back, -1), (self.next, 1)):
            btn.click(goto(delta), [self.step], preset_out, **fast).then(
                g(load, "lesson"), [self.step, model_dd, state], ex_out, **fast).then(
                g(place, "lesson"), [self.step, state], [state, *main_out], **fast).then(
                g(lambda *a: self.render(app._session(a[0]), *a[1:]), "qlens"), ins, outs, **fast)
        self.leave.click(lambda: [-1, "Lesson left: explore freely. **Start** begins again."], None,
                         [self.step, self.lesson_md], **fast)
