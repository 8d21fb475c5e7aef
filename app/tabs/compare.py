"""The "Compare attacks" tab: several attacks on the same image, seed, ε, optimiser and steps, scrubbed together
with one slider (tiles per attack, an accuracy chart, a leaderboard of best iterates).

The runs come from :class:`app.runner.LiveRun` (light: no per-pixel telemetry), the tiles and rows from
:mod:`app.view`, the chart from :mod:`app.figures`; this module checks the inputs through the host app (the
explorer's :class:`app.ui.App`), keeps the runs in the session (``sess.compare``) and wires the components.
"""

from __future__ import annotations

import time
from typing import Any

import gradio as gr
import pandas as pd

from app import components as cp
from app import figures as fg
from app import gpu
from app.inputs import compare_attacks
from app.observe import event
from app.runner import InputError, LiveRun
from app.sessions import Session, session_nbytes
from app.view import LEADERBOARD_HEADERS, compare_tiles, leaderboard_rows
from attack_engine.registry import attack_names, attack_specs, attack_title

EMPTY = "No comparison yet."
INTRO = ("Run several attacks on the same image, seed, ε, optimiser and steps (from the controls on the left), then "
         "scrub them together.")


class CompareTab:
    """Builds the tab inside the app's ``gr.Tabs``, computes comparisons and wires the tab's events.

    ``host`` is the app (:class:`app.ui.App`): it gives the request's session (``_session``), checks inputs
    (``_inputs``, ``_prepare``), admits runs to the memory budget (``_admit``), the ``limits`` and ``guard``.
    """

    def __init__(self, host: Any) -> None:
        self.host = host
        self.events: list = []  # the tab's long-running events (the explorer's Pause / Stop / Reset cancel them)

    # -- layout -----------------------------------------------------------------------------------------
    def build(self) -> None:
        with gr.Tab("Compare attacks", id="compare") as self.tab:
            gr.Markdown(INTRO)
            with gr.Row():
                self.attacks = gr.CheckboxGroup([(s.title, s.name) for s in attack_specs()],
                                                value=list(attack_names()), label="Attacks", scale=4)
                self.run_btn = gr.Button("▶ Run comparison", variant="primary", scale=1, elem_id="cmp_btn")
            self.status = gr.Markdown(EMPTY)
            self.slider = cp.Slider(0, 1, value=0, step=1, label="Shared record slider")
            self.grid = gr.Image(label="Segmentation | flipped pixels, per attack", type="pil", format="jpeg",
                                 interactive=False, elem_id="cmp_grid")
            with gr.Row():
                self.curves = gr.Plot(label="Pixel accuracy, all attacks")
                self.table = gr.Dataframe(headers=LEADERBOARD_HEADERS, interactive=False,
                                          label="Leaderboard: each attack's best iterate (lowest accuracy), lowest "
                                                "first")

    @property
    def outputs(self) -> list:
        """The components :meth:`values` fills, in order (the app's example loader sends them too)."""
        return [self.status, self.slider, self.grid, self.curves, self.table]

    def wire(self, state: gr.State, controls: list) -> None:
        """``controls``: image, mask, example id, model, optimiser, ε, steps, step size, seed, schedule text (the
        explorer's inputs, minus the attack)."""
        g, conc = self.host.guard, self.host.limits.attack_concurrency
        image, mask, ex_id, model, *rest = controls
        outs = [state, *self.outputs]
        self.events.append(self.run_btn.click(
            g(self.compare, "compare"), [image, mask, ex_id, model, self.attacks, *rest, state], outs,
            api_name="compare", concurrency_id="attack", concurrency_limit=conc, show_progress="hidden"))
        self.slider.input(g(self.compare_scrub, "compare_scrub"), [self.slider, state], outs,
                          api_name="compare_scrub", trigger_mode="always_last", queue=False, show_progress="hidden")

    # -- values -----------------------------------------------------------------------------------------
    def values(self, sess: Session, k: int | None, note: str = "") -> list:
        """Values for :attr:`outputs`: the session's comparison at record ``k`` (default: the last)."""
        if not sess.compare:
            return [EMPTY, gr.skip(), None, None, None]
        if not any(len(t) for t in sess.compare.values()):
            return [note, gr.skip(), gr.skip(), gr.skip(), gr.skip()]
        n = max(len(t) for t in sess.compare.values())
        k = n - 1 if k is None else int(min(max(int(k), 0), n - 1))
        series = {name: t.scalars("acc") for name, t in sess.compare.items()}
        df = pd.DataFrame(leaderboard_rows(sess.compare), columns=LEADERBOARD_HEADERS)
        return [note or f"Record {k}", gr.Slider(minimum=0, maximum=max(n - 1, 1), value=k, step=1),
                compare_tiles(sess.compare, k), fg.compare_curves_figure(series, k), df]

    # -- handlers ---------------------------------------------------------------------------------------
    def compare(self, image, mask, ex_id, model_id, attacks, opt, eps, steps, alpha, seed, sched, state):
        """Run several attacks on the same input, seed and ε; stream progress and a leaderboard."""
        host = self.host
        sess = host._session(state)
        t0 = time.monotonic()
        attacks = compare_attacks(attacks)  # each registered attack once, at most one run per attack
        if not attacks:
            raise InputError("tick at least one attack to compare")
        # check everything before touching the session: a refused comparison leaves the previous one in place
        checked = [host._inputs(image, mask, ex_id, model_id, a, opt, eps, steps, alpha, seed, sched)
                   for a in attacks]
        model = checked[0][0]
        prep = host._prepare(model, image, mask, ex_id)
        host._admit(sess, prep, model, [c for _, c, _ in checked], light=True)
        sess.compare = {}
        sess.pause = False
        sess.active += 1
        outcome, done_records = "cancelled", 0
        limit = host.limits.time_limit_s
        try:
            for (_, cfg, _) in checked:
                name = attack_title(cfg.attack)
                if gpu.zero_gpu():
                    sess.compare[name] = gpu.gpu_full_run(model.info.id, prep, cfg, light=True)
                    done_records += len(sess.compare[name])
                    yield [sess, *self.values(sess, None, f"**{name}** done.")]
                    continue
                live = LiveRun(model, prep, cfg, light=True)
                sess.compare[name] = live.traj
                while not sess.pause and time.monotonic() - t0 <= limit and live.step():
                    done_records += 1
                    n = len(live.traj)
                    if n % 4 == 0:
                        yield [sess, f"Running **{name}**: record {n}/{live.traj.info.expected_records}", gr.skip(),
                               gr.skip(), gr.skip(), gr.skip()]
                yield [sess, *self.values(sess, None, f"**{name}** done.")]
                if sess.pause or time.monotonic() - t0 > limit:
                    break
            if time.monotonic() - t0 > limit:
                outcome = "time_limit"
                msg = (f"Comparison stopped at the time limit of {limit:g} s per request: use fewer steps or "
                       "attacks.")
            else:
                outcome = "paused" if sess.pause else "finished"
                msg = "Comparison finished: drag the shared slider."
            if prep.notes:
                msg += "  \nInput: " + "; ".join(prep.notes) + "."
            yield [sess, *self.values(sess, None, msg)]
        except Exception:
            outcome = "error"
            raise
        finally:
            sess.active -= 1
            cfg0 = checked[0][1]
            event("run", endpoint="compare", session=sess.id, model=model.info.id, attacks=attacks,
                  optimizer=cfg0.optimizer, steps=cfg0.steps, eps255=round(cfg0.eps * 255, 3),
                  source="upload" if prep.source == "upload" else "example", model_hw=list(prep.image.shape[:2]),
                  records=done_records, duration_s=round(time.monotonic() - t0, 3), outcome=outcome,
                  session_mb=round(session_nbytes(sess) / 2**20, 2))

    def compare_scrub(self, k, state):
        sess = self.host._session(state)
        return [sess, *self.values(sess, k, f"Record {int(k)} (each run clamped to its length)")]
