"""The "Compare attacks" tab: several attacks on the same image, seed, ε, optimiser and steps, scrubbed together
with one slider (tiles per attack, a leaderboard of best iterates, an accuracy chart).

The page's ▶ Run comparison starts an :class:`app.comparison.Comparison` (a background thread, one attack after
another) and returns at once; a timer then pulls the newest tiles and leaderboard, one request at a time, so the
tiles grow while each attack runs and ■ Stop acts at once.  API clients get ``/compare``, which streams the same
computation.  Tiles and rows come from :mod:`app.view`, the chart from :mod:`app.figures`; the inputs are
checked through the host app (:class:`app.ui.App`).
"""

from __future__ import annotations

import time
import weakref
from typing import Any

import gradio as gr
import pandas as pd

from app import components as cp
from app import figures as fg
from app import gpu
from app.comparison import Comparison
from app.inputs import compare_attacks
from app.live import ERROR, FINISHED, PAUSED, STOPPED, TIME_LIMIT, WAITING
from app.observe import event
from app.panels import EXPLAIN
from app.runner import InputError, LiveRun
from app.sessions import Session, session_nbytes
from app.view import LEADERBOARD_HEADERS, compare_tiles, leaderboard_rows
from attack_engine.registry import attack_names, attack_specs, attack_title

EMPTY = "No comparison yet."
INTRO = ("Run several attacks on the same image, seed, ε, optimiser and steps (from the controls on the left), then "
         "scrub them together.")
PULL_S = 0.2  # the page asks for the newest tiles this often while a comparison runs (one request at a time)
CHART_EVERY_S = 1.0  # ... and redraws the accuracy chart at most this often (the last view always has it)
HALT_WAIT_S = 0.3  # Stop waits this long for the running attack to finish its record
API_EVERY_S = 0.5  # /compare (API) yields progress at most this often


class CompareTab:
    """Builds the tab inside the app's ``gr.Tabs``, computes comparisons and wires the tab's events.

    ``host`` is the app (:class:`app.ui.App`): it gives the request's session (``_session``), checks inputs
    (``_inputs``, ``_prepare``), admits runs to the memory budget (``_admit``), the ``limits``, compute ``slots``
    and ``guard``.
    """

    def __init__(self, host: Any) -> None:
        self.host = host
        self.events: list = []  # the tab's long-running events (the explorer's Pause / Stop / Reset cancel them)
        # what the page's tab shows per session (see :meth:`_key`): opening the tab redraws only what changed
        self._shown: weakref.WeakKeyDictionary[Session, tuple] = weakref.WeakKeyDictionary()

    # -- layout -----------------------------------------------------------------------------------------
    def build(self) -> None:
        with gr.Tab("Compare attacks", id="compare") as self.tab:
            gr.Markdown(INTRO)
            with gr.Row():
                self.attacks = gr.CheckboxGroup([(s.title, s.name) for s in attack_specs()],
                                                value=list(attack_names()), label="Attacks", scale=4)
                with gr.Column(scale=1, min_width=170):
                    self.run_btn = gr.Button("▶ Run comparison", variant="primary", elem_id="cmp_btn")
                    self.stop_btn = gr.Button("■ Stop", elem_id="cmp_stop", interactive=False)  # on while one runs
            self.status = gr.Markdown(EMPTY, elem_id="cmp_status")
            self.slider = cp.Slider(0, 1, value=0, step=1, label="Shared record slider", elem_id="cmp_slider")
            gr.Markdown("**Per attack:** segmentation | flipped pixels at the slider's record. Flipped: "
                        + EXPLAIN["flipped"], elem_classes=["explain"])
            self.grid = gr.Image(label="Segmentation | flipped pixels, per attack", show_label=False, type="pil",
                                 format="jpeg", interactive=False, elem_id="cmp_grid")
            self.table = gr.Dataframe(headers=LEADERBOARD_HEADERS, interactive=False, elem_id="cmp_table",
                                      label="Leaderboard: each attack's best iterate (lowest accuracy), lowest first")
            self.curves = gr.Plot(label="Pixel accuracy, all attacks", elem_id="cmp_curves")

    @property
    def outputs(self) -> list:
        """The components :meth:`values` fills, in order (the app's example loader sends them too)."""
        return [self.status, self.slider, self.grid, self.curves, self.table]

    def wire(self, state: gr.State, controls: list) -> None:
        """``controls``: image, mask, example id, model, optimiser, ε, steps, step size, seed, schedule text (the
        explorer's inputs, minus the attack)."""
        g, conc = self.host.guard, self.host.limits.attack_concurrency
        # outside the tab, so the pull goes on while another tab is shown (wire is called in the Blocks, after
        # the tabs)
        self.timer = gr.Timer(PULL_S, active=False)
        self.api_btn = gr.Button(visible=False)
        image, mask, ex_id, model, *rest = controls
        inputs = [image, mask, ex_id, model, self.attacks, *rest, state]
        outs = [state, *self.outputs]
        fast = dict(queue=False, show_progress="hidden")
        live_outs = [*outs, self.timer, self.stop_btn]
        self.run_btn.click(g(self.start, "compare_start"), inputs, live_outs, api_name="compare_start",
                           concurrency_id="compare_start", concurrency_limit=conc, show_progress="hidden",
                           trigger_mode="once")
        self.timer.tick(g(self.pull, "compare_pull"), [state], live_outs, api_visibility="private",
                        **fast)
        self.stop_btn.click(g(self.stop, "compare_stop"), [state], live_outs, api_name="compare_stop",
                            **fast)
        self.events.append(self.api_btn.click(
            g(self.compare, "compare"), inputs, outs, api_name="compare", concurrency_id="attack",
            concurrency_limit=conc, show_progress="hidden"))
        self.tab.select(g(self.show, "compare_show"), [state], outs, api_name="compare_show", **fast)
        self.slider.input(g(self.compare_scrub, "compare_scrub"), [self.slider, state], outs,
                          api_name="compare_scrub", trigger_mode="always_last", **fast)

    # -- values -----------------------------------------------------------------------------------------
    @staticmethod
    def _key(sess: Session) -> tuple:
        return id(sess.compare), tuple(len(t) for t in sess.compare.copy().values())

    def loaded(self, sess: Session, note: str) -> list:
        """Values for :attr:`outputs` when the session's comparison was replaced (an example loaded).  The hidden
        tab is filled at once: drawing it only when opened was measured slower to show (bench/LIVE_BROWSER.md)."""
        return self.values(sess, None, note)

    def show(self, state) -> list:
        """The tab was opened: draw the comparison if the page does not show it yet (a running one: its newest
        view); nothing when it does."""
        sess = self.host._session(state)
        c = sess.compare_run
        if c is not None and sess.compare is c.runs and c.active:
            c.sent = None
            return [sess, *self._live_values(sess, c, chart=True)]
        if self._shown.get(sess) == self._key(sess):
            return [sess, *[gr.skip()] * len(self.outputs)]
        note = "Precomputed comparison (same config as the shipped run): drag the slider." if sess.compare else ""
        return [sess, *self.values(sess, None, note)]

    def values(self, sess: Session, k: int | None, note: str = "", chart: bool = True,
               pending: tuple[str, ...] = ()) -> list:
        """Values for :attr:`outputs`: the session's comparison at record ``k`` (default: the last); ``chart=False``
        leaves the accuracy chart as it is; ``pending``: attacks not started yet.  Notes that the page now shows
        this comparison (so opening the tab again redraws nothing)."""
        runs = sess.compare.copy()  # a running comparison adds attacks from its thread
        if not runs and not pending:
            return [EMPTY, gr.skip(), None, None, None]
        if not any(len(t) for t in runs.values()):
            return [note, gr.skip(), gr.skip(), gr.skip(), gr.skip()]
        n = max(len(t) for t in runs.values())
        k = n - 1 if k is None else int(min(max(int(k), 0), n - 1))
        df = pd.DataFrame(leaderboard_rows(runs), columns=LEADERBOARD_HEADERS)
        self._shown[sess] = self._key(sess)
        curves = fg.compare_curves_figure({name: t.scalars("acc") for name, t in runs.items()}, k) if chart \
            else gr.skip()
        return [note or f"Record {k}", gr.Slider(minimum=0, maximum=max(n - 1, 1), value=k, step=1),
                compare_tiles(runs, k, pending), curves, df]

    def _live_values(self, sess: Session, c: Comparison, chart: bool, tiles: bool = True) -> list:
        """The running comparison's view (newest records unless the slider was moved); ``tiles=False``: the status
        only."""
        note = self._status(c)
        if not tiles:
            return [note, gr.skip(), gr.skip(), gr.skip(), gr.skip()]
        started = set(c.runs.copy())
        pending = () if not c.active else tuple(attack_title(cfg.attack) for cfg in c.cfgs
                                                if attack_title(cfg.attack) not in started)
        with c.lock():
            return self.values(sess, c.view, note, chart=chart, pending=pending)

    def _status(self, c: Comparison) -> str:
        total = len(c.cfgs)
        if c.active:
            name, i = c.running_title(), len(c.runs)
            cur = c.current
            if not name or cur is None:
                nxt = c.preparing or "the first attack"
                return f"Preparing **{nxt}** ({i + 1} of {total}): the clean prediction…"
            if cur.state == WAITING:
                return f"**{name}** ({i} of {total}) is waiting for a free compute slot (other runs are computing)…"
            return (f"Running **{name}** ({i} of {total}): {len(cur.live.traj)} of "
                    f"{cur.live.traj.info.expected_records} records. **■ Stop** ends the comparison.")
        done = sum(1 for t in c.runs.copy().values() if t.finished)
        stopped = f"Stopped: {done} of {total} attacks finished; the recorded part stays for scrubbing."
        msg = {
            FINISHED: "Comparison finished: drag the shared slider.",
            STOPPED: stopped,
            PAUSED: stopped,
            TIME_LIMIT: f"Comparison stopped at the time limit of {self.host.limits.time_limit_s:g} s per request: "
                        "use fewer steps or attacks.",
            ERROR: "The comparison stopped: something went wrong on the server; it was logged. The recorded part "
                   "stays.",
        }.get(c.state, "")
        return msg + ("  \nInput: " + "; ".join(c.notes) + "." if c.notes else "")

    # -- starting ---------------------------------------------------------------------------------------
    def _checked(self, sess: Session, image, mask, ex_id, model_id, attacks, opt, eps, steps, alpha, seed,
                 sched) -> tuple[list[str], Any, Any, list]:
        """(attack names, model, prepared input, configs), all checked and admitted to the memory budget, before
        anything in the session changes: a refused comparison leaves the previous one in place."""
        host = self.host
        names = compare_attacks(attacks)  # each registered attack once, at most one run per attack
        if not names:
            raise InputError("tick at least one attack to compare")
        checked = [host._inputs(image, mask, ex_id, model_id, a, opt, eps, steps, alpha, seed, sched)
                   for a in names]
        model = checked[0][0]
        prep = host._prepare(model, image, mask, ex_id)
        cfgs = [c for _, c, _ in checked]
        host._admit(sess, prep, model, cfgs, light=True)
        return names, model, prep, cfgs

    def _begin(self, sess: Session, image, mask, ex_id, model_id, attacks, opt, eps, steps, alpha, seed,
               sched) -> Comparison:
        """Check every input, admit the runs, halt what the session computes and start the comparison."""
        host = self.host
        t0 = time.monotonic()
        attacks, model, prep, cfgs = self._checked(sess, image, mask, ex_id, model_id, attacks, opt, eps, steps,
                                                   alpha, seed, sched)
        for old in (sess.compare_run, sess.comp):  # one computation per session: the explorer's run pauses
            if old is not None and old.active:
                old.halt(PAUSED if old is sess.comp else STOPPED, wait_s=5.0)

        def ended(outcome: str, records: int, seconds: float) -> None:
            sess.active -= 1
            cfg0 = cfgs[0]
            event("run", endpoint="compare", session=sess.id, model=model.info.id, attacks=attacks,
                  optimizer=cfg0.optimizer, steps=cfg0.steps, eps255=round(cfg0.eps * 255, 3),
                  source="upload" if prep.source == "upload" else "example", model_hw=list(prep.image.shape[:2]),
                  records=records, duration_s=round(time.monotonic() - t0, 3), outcome=outcome,
                  session_mb=round(session_nbytes(sess) / 2**20, 2))

        c = Comparison(cfgs, lambda cfg: LiveRun(model, prep, cfg, light=True), host.slots,
                       host.limits.time_limit_s, on_end=ended, notes=tuple(prep.notes))
        sess.compare, sess.compare_run = c.runs, c
        sess.active += 1
        c.charts_at = time.monotonic()
        return c.start()

    def start(self, image, mask, ex_id, model_id, attacks, opt, eps, steps, alpha, seed, sched, state):
        """The page's ▶ Run comparison: start it in the background and turn on the pull timer; returns at once."""
        sess = self.host._session(state)
        if gpu.zero_gpu():  # one GPU call per attack, shown when all are done
            *vals, = list(self.compare(image, mask, ex_id, model_id, attacks, opt, eps, steps, alpha, seed, sched,
                                       sess))[-1]
            return [*vals, gr.Timer(active=False), _stop_button(False)]
        c = self._begin(sess, image, mask, ex_id, model_id, attacks, opt, eps, steps, alpha, seed, sched)
        return [sess, *self._live_values(sess, c, chart=False, tiles=False), gr.Timer(active=True), _stop_button(True)]

    def pull(self, state):
        """Timer tick: the newest tiles and leaderboard of the running comparison, if the page lacks them; the
        accuracy chart at most every :data:`CHART_EVERY_S`.  The last view (comparison ended) has everything and
        turns the timer off."""
        sess = self.host._session(state)
        c = sess.compare_run
        skip = [gr.skip()] * len(self.outputs)
        if c is None or sess.compare is not c.runs:
            return [sess, *skip, gr.Timer(active=False), _stop_button(False)]
        ended = not c.active
        key = (*c.progress(), c.view)
        timer = gr.Timer(active=False) if ended else gr.skip()  # re-sending an active timer restarts its interval
        stop = _stop_button(False) if ended else gr.skip()
        if key == c.sent:
            return [sess, *skip, timer, stop]
        c.sent = key
        now = time.monotonic()
        chart = ended or now - c.charts_at >= CHART_EVERY_S
        if chart:
            c.charts_at = now
        return [sess, *self._live_values(sess, c, chart=chart), timer, stop]

    def stop(self, state):
        """■ Stop: end the running comparison after the record being computed; what was recorded stays."""
        sess = self.host._session(state)
        c = sess.compare_run
        if c is None or sess.compare is not c.runs or not c.active:
            return [sess, *[gr.skip()] * len(self.outputs), gr.Timer(active=False), _stop_button(False)]
        c.halt(STOPPED, wait_s=HALT_WAIT_S)
        c.sent = None
        # the status at once (the page paints it before any image or chart); the timer's next pull brings the last
        # tiles, leaderboard and chart
        return [sess, "Stopping…" if c.active else self._status(c), gr.skip(), gr.skip(), gr.skip(), gr.skip(),
                gr.Timer(active=True), gr.skip()]

    def compare(self, image, mask, ex_id, model_id, attacks, opt, eps, steps, alpha, seed, sched, state):
        """API ``/compare``: run the attacks and stream progress, each attack's tiles as it ends, and the final
        leaderboard.  Cancelling the request stops the comparison."""
        sess = self.host._session(state)
        if gpu.zero_gpu():
            yield from self._compare_zero_gpu(sess, image, mask, ex_id, model_id, attacks, opt, eps, steps, alpha,
                                              seed, sched)
            return
        c = self._begin(sess, image, mask, ex_id, model_id, attacks, opt, eps, steps, alpha, seed, sched)
        try:
            finished, last = 0, 0.0
            while not c.ended.wait(API_EVERY_S / 5):
                done = sum(1 for t in c.runs.copy().values() if t.finished)
                if done != finished or time.monotonic() - last >= API_EVERY_S:
                    yield [sess, *self._live_values(sess, c, chart=done != finished, tiles=done != finished)]
                    finished, last = done, time.monotonic()
            yield [sess, *self._live_values(sess, c, chart=True)]
        finally:
            c.halt(STOPPED)  # a cancelled request (GeneratorExit) ends the computation too

    def _compare_zero_gpu(self, sess: Session, image, mask, ex_id, model_id, attacks, opt, eps, steps, alpha, seed,
                          sched):
        """ZeroGPU: each attack in one GPU call, in order."""
        t0 = time.monotonic()
        attacks, model, prep, cfgs = self._checked(sess, image, mask, ex_id, model_id, attacks, opt, eps, steps,
                                                   alpha, seed, sched)
        sess.compare, sess.compare_run = {}, None
        records = 0
        for cfg in cfgs:
            name = attack_title(cfg.attack)
            sess.compare[name] = gpu.gpu_full_run(model.info.id, prep, cfg, light=True)
            records += len(sess.compare[name])
            yield [sess, *self.values(sess, None, f"**{name}** done.")]
        event("run", endpoint="compare", session=sess.id, model=model.info.id, attacks=attacks, records=records,
              duration_s=round(time.monotonic() - t0, 3), outcome=FINISHED, device="zerogpu")
        yield [sess, *self.values(sess, None, "Comparison finished: drag the shared slider.")]

    def compare_scrub(self, k, state):
        """The shared slider: every attack at record ``k`` (while a comparison runs, the view stays there until the
        slider is back at the newest record)."""
        sess = self.host._session(state)
        c = sess.compare_run
        if c is not None and sess.compare is c.runs and c.active:
            n = max((len(t) for t in c.runs.copy().values()), default=0)
            c.view = None if int(k) >= n - 1 else int(k)
            with c.lock():
                return [sess, *self.values(sess, k, f"Record {int(k)} (each run clamped to its length)")]
        return [sess, *self.values(sess, k, f"Record {int(k)} (each run clamped to its length)")]


def _stop_button(on: bool) -> gr.Button:
    """■ Stop is clickable only while a comparison runs."""
    return gr.Button(interactive=on)
