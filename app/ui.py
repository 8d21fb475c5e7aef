"""The explorer's :class:`App`: the page (the tabs' modules under :mod:`app.tabs` build the components), the
handlers and their wiring.  All computing happens in :mod:`attack_engine`; all drawing in the panel table
(:mod:`app.panels`) and :mod:`app.view`; handlers answer by output name (``{"status": ..., "seg": ...}``) and
:meth:`App.on` connects names to components.  Serving it: :mod:`app.launch`.

Public API endpoints (``gradio_client``): ``/run`` (streams the newest record), ``/step``, ``/pause``, ``/stop``,
``/reset``, ``/scrub``, ``/probe``, ``/load_example``, ``/compare`` (streams), ``/compare_start``,
``/compare_stop``, ``/compare_show``, ``/compare_scrub`` (see :mod:`app.tabs.compare`), ``/export``, ``/preview``;
``App.api_outputs`` names each endpoint's outputs in order.
"""

import contextlib
import functools
import inspect
import json
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from app import gpu
from app.disk import DiskBudget, app_root, gradio_cache_dir
from app.export import config_query, evolution_gif, panels_png, parse_query, records_csv, run_card
from app.figures import schedule_preview_figure
from app.frames import FrameStore
from app.inputs import gallery_index, probe_coords, scrub_paths
from app.limits import MAX_ALPHA255, MAX_EPS255, MIN_EPS255, Limits, allowed_models, get_limits
from app.links import share_link
from app.live import ERROR, FINISHED, PAUSED, STOPPED, TIME_LIMIT, Computation
from app.model_menu import model_choices as menu_choices
from app.observe import event
from app.panels import EXPLAIN, get_panel, main_names, panels, static_names
from app.request import RunRequest, takes_request
from app.runner import InputError, LiveRun, Prepared, check_schedule, clean_preview, prepare
from app.sessions import (
    BudgetError,
    Session,
    SessionStore,
    estimate_live_bytes,
    estimate_run_bytes,
    session_nbytes,
    traj_nbytes,
)
from app.sources import PRECOMPUTED_DIR, ExampleItem, bundled_examples, load_precomputed, load_precomputed_compare
from app.tabs import about, controls, explore, share
from app.tabs import qlens as qlens_tab
from app.tabs.compare import CompareTab
from app.tabs.debug import DebugTab
from app.tabs.own_model import OwnModelBox
from app.trajectory import Trajectory
from app.view import panel_to_view, render_main, render_static, render_status
from attack_engine import determinism
from attack_engine.models import DEFAULT_MODEL, ModelUnavailable, load_model
from attack_engine.registry import attack_title, get_attack, takes_schedule
from attack_engine.schedules import ScheduleError

HEADER = ("## TsallisPGD Explorer — watch an adversarial attack on segmentation, pixel by pixel\n"
          "Pick an example (or upload an image), choose an attack and press **Run**: every iteration streams in. "
          "Drag the record slider to scrub, click a pixel to probe it.")
PLAY_INTERVAL_S = 0.35
FINAL_RESENDS = 3  # how often the live pull sends a run's final view again while the page does not show it
LIVE_PULL_S = 0.15  # the live view timer: the page asks for the newest record this often (one request at a time;
# a trace of a streaming page showed 17 ms of script per tick on average, 45 ms at most, and 0.15 s painted more
# records per second than 0.1 or 0.2 s in bench/bench_browser.py)
CHARTS_EVERY_S = 1.0  # while a run streams or replays, the whole-run charts are redrawn at most this often
HIST_EVERY_S = 0.5  # ... and the confidence histogram at most this often (Plotly redraws cost the page most)
# the tabs that show the live run: Explore (everything) and the q-lens (it follows the record slider, so it is sent
# the status line and the slider); on any other tab the live view is not pulled
PULLED_TABS = ("explore", "qlens")
API_VIEW_S = 0.25  # the API's /run sends the newest record at most this often (a slow client gets no backlog)
HALT_WAIT_S = 0.3  # Pause/Stop wait this long for the computing thread to finish its record before answering
REQUEST_INPUTS = ("image_in", "mask_in", "ex_id", "model", "attack", "opt", "eps", "steps", "alpha", "seed",
                  "sched_text")  # the components of a RunRequest, in app.request.FIELDS order
COMPARE_OUTPUTS = ("cmp_status", "cmp_slider", "cmp_grid", "cmp_curves", "cmp_table")  # what CompareTab.values fills (app.tabs.compare)
CONTROLS = ("attack", "opt", "eps", "steps", "alpha", "seed", "sched_text")  # what a shared link / example sets

# -- encoded panel images -------------------------------------------------------------------------------
# -- per-session state (app.sessions.Session) -------------------------------------------------------
def _sess(s: Any) -> Session:
    return s if isinstance(s, Session) else Session()


def _record_index(v: Any) -> int | None:
    """The slider's value as a record index (None when it is none)."""
    try:
        return round(float(v))
    except (TypeError, ValueError, OverflowError):
        return None


def _where(e: BaseException) -> str:
    """``file:line`` of the innermost frame of ``e`` inside this project (for the error log; no values)."""
    tb, last = e.__traceback__, ""
    root = str(Path(__file__).resolve().parents[1])
    while tb is not None:
        f = tb.tb_frame.f_code.co_filename
        if f.startswith(root) and "/.venv/" not in f:
            last = f"{Path(f).relative_to(root)}:{tb.tb_lineno}"
        tb = tb.tb_next
    return last


# -- helpers --------------------------------------------------------------------------------------------
def model_choices(allowed: list[str] | None = None) -> list[tuple[str, str]]:
    """The dropdown: offered models (present / downloaded on first use, with size), then those not offered here."""
    return menu_choices(allowed)


class App:
    """Builds the Blocks; ``model_id``/``examples``/``limits`` can be injected (tests use a stand-in model)."""

    def __init__(self, model_id: str | None = None, examples: list[ExampleItem] | None = None,
                 precomputed_dir: Path = PRECOMPUTED_DIR, limits: Limits | None = None) -> None:
        self.limits = limits or get_limits()
        self.model_id = model_id or DEFAULT_MODEL
        self.models = allowed_models(self.limits, extra=(model_id,) if model_id else ())
        if self.model_id not in self.models and self.models:
            self.model_id = self.models[0]
        self.examples = bundled_examples() if examples is None else examples
        self.ex_by_id = {e.id: e for e in self.examples}
        self.precomputed_dir = precomputed_dir
        self.export_dir = Path(tempfile.mkdtemp(prefix="exports_", dir=app_root()))
        self.frames = FrameStore()
        self.store = SessionStore(self.limits)
        self.disk = DiskBudget([self.frames.dir, self.export_dir], int(self.limits.disk_mb * 2**20),
                               keep_s=min(3600.0, self.limits.session_ttl_s), exports=self.export_dir,
                               shared=tuple(d for d in (gradio_cache_dir(),) if d is not None))
        determinism.apply()  # one thread count + deterministic algorithms for every run (recorded in each run)
        self.slots = threading.BoundedSemaphore(max(1, self.limits.attack_concurrency))  # live-run threads
        self.compare_tab = CompareTab(self)  # the "Compare attacks" tab (app.tabs.compare)
        self.ui: dict[str, Any] = {}  # component name -> component (filled by build: handlers answer by name)
        self.api_outputs: dict[str, list[str]] = {}  # API endpoint -> its output names, in order (for clients)

    def offer_model(self, model_id: str) -> list[tuple[str, str]]:
        """Offer a model registered while running (an upload outside hosted mode); the dropdown's new choices."""
        if model_id not in self.models:
            self.models.append(model_id)
        return model_choices(self.models)

    def default_example(self, model_id: str) -> str | None:
        """The example shown on first load: one with a shipped run for this model, ground truth preferred."""
        from app.sources import find_precomputed

        try:
            info = load_model(model_id, device=gpu.local_device()).info
        except Exception:  # an unavailable model: no default example
            return None
        shipped = [e for e in self.examples if find_precomputed(e.id, model_id, self.precomputed_dir)]
        with_gt = [e for e in shipped if e.mask_for(info.num_classes, info.class_names)]
        pick = (with_gt or shipped or [None])[0]
        return pick.id if pick else None

    # -- guarding every handler -------------------------------------------------------------------------
    def _session(self, state: Any) -> Session:
        """The request's session, registered with the store (its runs dropped here if it expired)."""
        return self.store.touch(_sess(state))

    def guard(self, fn: Callable, name: str, page: bool = False) -> Callable:
        """Wrap a handler: refusals become one ``gr.Error`` (and a ``rejected`` log line), anything unexpected
        an ``error`` log line and a short ``gr.Error``; the session and the server carry on either way.

        ``page=True`` (events only the page sends): the message is one warning toast and every output stays as
        it was; an error raised out of an event marks each of its outputs with an "Error" badge.  API endpoints
        keep raising, so a client gets the message as its error."""

        def fail(e: BaseException) -> gr.Error:
            if isinstance(e, (gr.Error, InputError, BudgetError, ScheduleError, ModelUnavailable)):
                msg = scrub_paths(str(e.message if isinstance(e, gr.Error) else e))
                event("rejected", endpoint=name, error=msg)
                return gr.Error(msg, print_exception=False)  # an expected refusal: no traceback in the log
            event("error", logging.ERROR, endpoint=name, error=scrub_paths(f"{type(e).__name__}: {e}"),
                  where=_where(e))
            return gr.Error(f"something went wrong on the server ({type(e).__name__}); it was logged. "
                            "Your recorded run is unchanged: try again or press Reset.", print_exception=False)

        def answer(e: BaseException) -> dict:
            err = fail(e)
            if not page:
                raise err from None
            gr.Warning(err.message)
            return {}  # nothing changes (App.components: an empty answer skips every output)

        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def gen(*a, **k):
                try:
                    yield from fn(*a, **k)
                except GeneratorExit:
                    raise
                except Exception as e:
                    yield answer(e)

            return gen

        @functools.wraps(fn)
        def plain(*a, **k):
            try:
                return fn(*a, **k)
            except Exception as e:
                return answer(e)

        return plain

    def check_image(self, image) -> None:
        """On upload: the sandboxed decode check (app.decode), so a bomb is refused before Run, and a good
        file's verdict is cached for the run."""
        from app.decode import check_upload

        try:
            check_upload(image, self.limits)
        except ValueError as e:
            raise InputError(f"image: {e}") from None

    def preview_upload(self, image, mask, model_id, state) -> dict:
        """On upload: check the file as Run does (the sandboxed decode, the size limits, the mask against the
        image) and show it with the model's clean prediction at once; the session's previous run gives way."""
        sess = self._session(state)
        if image is None:
            return {}
        self.check_image(image)
        model = self._model(model_id)
        prep = self._prepare(model, RunRequest(image, mask, None, model_id))
        sess.halt(STOPPED)  # the file is accepted: the old run gives way before the model runs on the new image
        clean = clean_preview(model, prep)
        sess.traj, sess.live, sess.key, sess.probe, sess.playing = None, None, None, None, False
        sess.input_notes = list(prep.notes)
        st = render_static(clean)
        static = {n: self.frames.put(v) if isinstance(v, Image.Image) else v for n, v in st.items()}
        note = self._note(sess, "Your image is checked and ready: its clean prediction is shown. Press **Run** or "
                                "**Step** to attack it.")
        return {"state": sess, **{n: None for n in main_names()}, **static, "status": note,
                "probe_md": EXPLAIN["probe"], "slider": gr.Slider(minimum=0, maximum=1, value=0, step=1,
                                                                  label="Record")}

    def preview_example(self, ex_id, model_id, state) -> dict:
        """After an example was selected without a shipped run for this model: its clean prediction (queued, as
        it runs the model; a session that has a run by now is left alone)."""
        sess = self._session(state)
        if sess.traj is not None or not ex_id or ex_id not in self.ex_by_id:
            return {}
        model = self._model(model_id)
        clean = clean_preview(model, self._prepare(model, RunRequest(None, None, ex_id, model_id)))
        if sess.traj is not None:  # a run started while the model computed
            return {}
        st = render_static(clean)
        return {n: self.frames.put(v) if isinstance(v, Image.Image) else v for n, v in st.items()}

    # -- inputs -> a started run ------------------------------------------------------------------------
    def _source(self, req: RunRequest, info) -> tuple[Any, Any, str]:
        ex_id = req.example
        if ex_id:
            ex = self.ex_by_id.get(ex_id) if isinstance(ex_id, str) else None
            if ex is None:
                raise InputError(f"unknown example {str(ex_id)[:60]!r}")
            m = req.mask if req.mask else ex.mask_for(info.num_classes, info.class_names)
            return str(ex.image), (str(m) if m else None), ex_id
        if req.image is None:
            raise InputError("pick an example or upload an image first")
        return req.image, req.mask, "upload"

    def _model(self, model_id: Any):
        if not isinstance(model_id, str) or model_id not in self.models:
            raise InputError(f"model {str(model_id)[:60]!r} is not offered here; choose one of: {', '.join(self.models)}")
        try:
            return load_model(model_id, device=gpu.local_device())  # CUDA when there is a GPU
        except (ModelUnavailable, KeyError) as e:
            raise InputError(f"model {model_id!r} is not available here: {e}") from None

    def _checked(self, req: RunRequest):
        """A checked request: (model, config, run key); raises InputError."""
        cfg = req.config(self.limits)
        model = self._model(req.model)
        return model, cfg, req.key(cfg)

    def _inputs(self, image, mask, ex_id, model_id, attack, opt, eps, steps, alpha, seed, sched):
        """The same as :meth:`_checked` from the controls' values (the Compare tab calls it per attack)."""
        return self._checked(RunRequest(image, mask, ex_id, model_id, attack, opt, eps, steps, alpha, seed, sched))

    def _prepare(self, model, image, mask=None, ex_id=None) -> Prepared:
        """The request's input at model resolution; ``image`` may be a :class:`RunRequest` (then alone)."""
        req = image if isinstance(image, RunRequest) else RunRequest(image, mask, ex_id)
        img, m, src = self._source(req, model.info)
        prep = prepare(img, m, model, src, self.limits)
        ex = self.ex_by_id.get(req.example) if req.example and not req.mask else None
        why = ex.label_note(model.info.num_classes, model.info.class_names) if ex else ""
        prep.notes = (*prep.notes, why) if why else prep.notes  # the status line says which labels are used
        return prep

    def _records(self, cfg) -> int:
        from attack_engine.attack import expected_records

        return expected_records(cfg)

    def _admit(self, sess: Session, prep: Prepared, model, cfgs: list, light: bool) -> None:
        """Check the memory budgets for new runs: a main run keeps the session's comparison (or drops it when
        only that makes it fit), a comparison keeps the main run.  Raises BudgetError."""
        hw, n_cls = prep.image.shape[:2], model.info.num_classes
        new = sum(estimate_run_bytes(hw, n_cls, self._records(c), light) for c in cfgs) + \
            max(estimate_live_bytes(hw, n_cls, c.optimizer) for c in cfgs)  # one attack runs at a time
        keep = traj_nbytes(sess.traj) if light else sum(traj_nbytes(t) for t in sess.compare.values())
        try:
            dropped = self.store.admit(sess, new, keep)
        except BudgetError:
            if light or not sess.compare:
                raise
            dropped = self.store.admit(sess, new, 0)  # the run fits alone: the comparison gives way
            sess.compare = {}
            sess.notice = "The attack comparison was dropped to keep this session within its memory budget."
        if dropped:
            event("evicted", sessions=len(dropped), reasons=sorted({why for _, why in dropped}),
                  total_mb=round(self.store.total_bytes() / 2**20, 1))

    def _start(self, sess: Session, req: RunRequest, light: bool = False) -> tuple[LiveRun, bool]:
        """Continue the session's live run when its inputs are unchanged, else start a new one."""
        model, cfg, key = self._checked(req)
        if not light and sess.live is not None and sess.key == key and not sess.live.done:
            return sess.live, False
        prep = self._prepare(model, req)
        if not light:
            self._admit(sess, prep, model, [cfg], light=False)
        live = LiveRun(model, prep, cfg, light=light)
        if not light:
            self._install(sess, live, key)
        return live, True

    def _install(self, sess: Session, live: LiveRun | None, key: str | None, traj: Trajectory | None = None) -> None:
        sess.live, sess.key, sess.traj = live, key, (live.traj if live is not None else traj)
        sess.view, sess.follow = 0, True
        sess.input_notes = list(live.prep.notes) if live is not None else []
        t = sess.traj
        if sess.probe is not None and t is not None and (sess.probe[0] >= t.hw[0] or sess.probe[1] >= t.hw[1]):
            sess.probe = None

    def _note(self, sess: Session, note: str = "") -> str:
        """The status note plus, once, what loading the input changed and any notice for this session."""
        parts = [p for p in (sess.take_notice(), note) if p]
        if sess.input_notes:
            parts.append("Input: " + "; ".join(sess.input_notes) + ".")
        return "  \n".join(parts)

    # -- named outputs ----------------------------------------------------------------------------------
    def main_outputs(self, sess: Session, **kw: Any) -> dict[str, Any]:
        """``state`` and the session's run at its record, by output name (other tabs send it too)."""
        return {"state": sess, **self._main_values(sess, **kw)}

    def components(self, named: dict[str, Any], outputs: list | None = None) -> Any:
        """A handler's result by output name -> by component, as Gradio takes it (outputs not named stay as
        they are); anything else (a list, a single value) passes unchanged.  With the event's ``outputs``: the
        values in their order (an output not named gets ``gr.skip()``; an empty answer changes nothing)."""
        if not isinstance(named, dict):
            return named
        by = {self.ui[k] if isinstance(k, str) else k: v for k, v in named.items()}
        if outputs is None:
            return by
        ids = {id(c) for c in outputs}
        stray = [k for k in by if id(k) not in ids]
        if stray:
            raise KeyError(f"answer names components that are no outputs of this event: {stray}")
        vals = [by.get(c, gr.skip()) for c in outputs]
        return vals[0] if len(vals) == 1 else vals

    def by_name(self, fn: Callable, outputs: list | None = None) -> Callable:
        """``fn`` answering by output name, as a Gradio handler answering in ``outputs`` order."""
        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def gen(*a, **k):
                for named in fn(*a, **k):
                    yield self.components(named, outputs)

            return gen

        @functools.wraps(fn)
        def plain(*a, **k):
            return self.components(fn(*a, **k), outputs)

        return plain

    # -- rendering to named values ----------------------------------------------------------------------
    def _main_values(self, sess: Session, live: bool = False, note: str = "", panels: bool = True,
                     move_slider: bool = True, charts: bool = True, hist: bool = True) -> dict[str, Any]:
        """Panel name -> value for the main outputs (and ``slider``).  ``move_slider=False`` leaves the slider's
        value where the user put it (its range still grows with the run); ``panels=False`` sends the status line
        only; ``charts=False`` leaves the metrics and gradient-mass charts as they are."""
        with self._view_lock(sess):
            return self._main_values_locked(sess, live, note, panels, move_slider, charts, hist)

    def _view_lock(self, sess: Session):
        """The lock under which the shown run gets its records (none for a finished or loaded run)."""
        live = sess.live or (sess.comp.live if sess.comp is not None else None)
        return live.lock if live is not None and live.traj is sess.traj else contextlib.nullcontext()

    def _main_values_locked(self, sess: Session, live: bool, note: str, panels: bool, move_slider: bool,
                            charts: bool, hist: bool) -> dict[str, Any]:
        t = sess.traj
        note = self._note(sess, note)
        if t is None or len(t) == 0:
            return {"status": note or "No run yet: pick an example or upload an image, then press **Run** or **Step**."}
        k = t.clamp(sess.view)
        sess.view = k
        label = f"Record (0 … {len(t) - 1}; drag to scrub, no recomputation)"
        slider = (gr.Slider(minimum=0, maximum=max(len(t) - 1, 1), value=k, step=1, label=label) if move_slider
                  else gr.Slider(maximum=max(len(t) - 1, 1), label=label))
        if not panels:
            return {"status": render_status(t, k, live, note), "slider": slider}
        out = render_main(t, k, sess.probe, live, note, charts=charts, hist=hist)
        vals = {name: self.frames.put(v) if isinstance(v, Image.Image) else v for name, v in out.items()}
        if sess.probe is None:
            vals.update(probe_plot=None, probe_md=EXPLAIN["probe"])
        return {**vals, "slider": slider}

    def _static_values(self, sess: Session) -> dict[str, Any]:
        if sess.traj is None:
            return {n: "" if get_panel(n).kind == "markdown" else None for n in static_names()}
        st = render_static(sess.traj)
        return {n: self.frames.put(v) if isinstance(v, Image.Image) else v for n, v in st.items()}

    # -- event handlers -----------------------------------------------------------------------------------
    def start(self, req: RunRequest, state):
        """The page's ▶ Run: start (or resume) the run in a background thread and turn on the live view pull
        (:meth:`pull`); returns at once."""
        sess = self._session(state)
        if gpu.zero_gpu():
            last = list(self._run_zero_gpu(sess, req, time.monotonic()))[-1]
            return {**last, "live_timer": gr.Timer(active=False)}
        live, new = self._start(sess, req)
        comp = sess.comp
        if comp is not None and comp.active and comp.live is live:  # already computing this run: keep pulling
            return dict(**self._main_values(sess, live=True), state=sess, live_timer=gr.Timer(active=True))
        if comp is not None:
            comp.halt(STOPPED, wait_s=5.0)
        if sess.compare_run is not None:  # one computation per session: a running comparison stops
            sess.compare_run.halt(STOPPED, wait_s=5.0)
        sess.pause, sess.follow, sess.sent, sess.charts_at = False, True, None, 0.0
        sess.view = max(len(live.traj) - 1, 0)
        sess.active += 1
        t0 = time.monotonic()

        def ended(outcome: str, new_records: int, _seconds: float) -> None:
            sess.active -= 1
            self._log_run("run", sess, live.traj, live.cfg, t0, outcome, new_records)

        sess.comp = Computation(live, self.slots, self.limits.time_limit_s, on_end=ended).start()
        sess.charts_at = sess.hist_at = time.monotonic()
        static = self._static_values(sess) if new else {}
        note = "" if len(live.traj) else "Starting: the first record is being computed…"
        return dict(state=sess, **static, **self._main_values(sess, live=True, note=note, charts=True),
                        live_timer=gr.Timer(active=True))

    def pull(self, shown, state):
        """Live timer tick: the newest record of the computing run, if the page does not show it yet.

        One tick is in flight at a time (the timer's ``trigger_mode="once"``), so the page asks for the next view
        only after it received this one: it shows the latest record instead of working through a backlog.  The
        heavy charts go at most every :data:`CHARTS_EVERY_S`; the last view (run ended) has everything.
        ``shown`` is the record the page's slider holds: the timer goes off only once the page holds the final
        view (a final view lost on its way, e.g. an answer that failed after this handler, is sent again, at most
        :data:`FINAL_RESENDS` times).
        """
        sess = self._session(state)
        comp = sess.comp
        if comp is None or sess.traj is not comp.live.traj or sess.tab not in PULLED_TABS:
            return dict(state=sess, live_timer=gr.Timer(active=False))  # another tab: showing Explore resumes it
        ended = not comp.active
        n = len(comp.live.traj)
        if sess.follow and n:
            sess.view = n - 1
        key = self._pull_key(sess, n, ended)
        if key == sess.sent:
            if not ended:
                return dict(state=sess)  # re-sending an active timer restarts it
            if _record_index(shown) == sess.view or sess.final_resends >= FINAL_RESENDS:
                return dict(state=sess, live_timer=gr.Timer(active=False))
            sess.final_resends += 1
        elif ended:
            sess.final_resends = 0
        explore = sess.tab == "explore"
        charts, hist = self._chart_turn(sess, ended) if explore else (False, False)
        vals = self._main_values(sess, live=not ended, note=self._end_note(comp) if ended else "",
                                 panels=explore and (sess.follow or ended), move_slider=sess.follow or ended,
                                 charts=charts, hist=hist)
        sess.sent = key  # only a rendered view counts as sent: one that raised is rendered again next tick
        return dict(state=sess, **vals)

    @staticmethod
    def _pull_key(sess: Session, n: int, ended: bool) -> tuple:
        """What a live view shows: the pull sends a view only when this changed."""
        return sess.view, n, sess.probe, ended, sess.follow, sess.tab

    def tab_shown(self, tab: str, state):
        """The page switched to ``tab``.  The live view is pulled only while a tab that shows it is open
        (:data:`PULLED_TABS`): elsewhere the page would draw panels no one sees, and a click would wait behind
        those draws.  Back on such a tab the next tick brings the newest record."""
        sess = self._session(state)
        sess.tab = tab
        comp = sess.comp
        if comp is None or sess.traj is not comp.live.traj:
            return dict(state=sess)
        if tab not in PULLED_TABS:
            return dict(state=sess, live_timer=gr.Timer(active=False))
        n = len(comp.live.traj)
        if not comp.active and sess.sent == self._pull_key(sess, n, True):
            return dict(state=sess)  # the page already holds this tab's final view of the ended run
        sess.sent, sess.final_resends = None, 0
        return dict(state=sess, live_timer=gr.Timer(active=True))

    def _chart_turn(self, sess: Session, final: bool) -> tuple[bool, bool]:
        """Whether this streamed view redraws the whole-run charts / the histogram (at most every
        :data:`CHARTS_EVERY_S` / :data:`HIST_EVERY_S`; a final view redraws both)."""
        now = time.monotonic()
        charts = final or now - sess.charts_at >= CHARTS_EVERY_S
        hist = final or now - sess.hist_at >= HIST_EVERY_S
        if charts:
            sess.charts_at = now
        if hist:
            sess.hist_at = now
        return charts, hist

    def _end_note(self, comp: Computation) -> str:
        return {
            FINISHED: "",
            PAUSED: "Paused: **Run** or **Step** continues this run.",
            STOPPED: "Stopped: the recorded run stays for scrubbing; **Run** starts anew.",
            TIME_LIMIT: f"Paused: this run reached the time limit of {self.limits.time_limit_s:g} s. **Run** "
                        "continues it.",
            ERROR: "The run stopped: something went wrong on the server; it was logged. The recorded part stays.",
        }.get(comp.state, "")

    def run(self, req: RunRequest, state):
        """API ``/run``: the attack computed in the background (as the page's Run), streamed as the newest record
        at most every :data:`API_VIEW_S` (resumes a paused run with the same inputs).

        A client that reads slower than the run computes is never sent a backlog: each update is the latest record
        when it is made, and the last one is the final record.  Every record is still recorded (``/scrub``,
        Best iterate and ``/export`` reach all of them); ``/pause`` and ``/stop`` halt the computation at once."""
        sess = self._session(state)
        if gpu.zero_gpu():
            yield from self._run_zero_gpu(sess, req, time.monotonic())
            return
        first = self.start(req, sess)
        first.pop("live_timer", None)
        comp = sess.comp
        yield first
        sent = None
        while comp is not None and sess.comp is comp and sess.traj is comp.live.traj:
            ended = comp.ended.wait(API_VIEW_S)
            n = len(comp.live.traj)
            if sess.follow and n:
                sess.view = n - 1
            if ended:
                yield self.main_outputs(sess, note=self._end_note(comp))
                return
            if n != sent:
                sent = n
                charts, hist = self._chart_turn(sess, False)
                yield self.main_outputs(sess, live=True, panels=sess.follow, charts=charts, hist=hist)

    def _run_zero_gpu(self, sess: Session, req: RunRequest, t0: float):
        """ZeroGPU: compute the whole run in one GPU call, then show it (scrub / replay as usual)."""
        model, cfg, _ = self._checked(req)
        prep = self._prepare(model, req)
        self._admit(sess, prep, model, [cfg], light=False)
        sess.active += 1
        traj, outcome = None, "error"
        try:
            traj = gpu.gpu_full_run(model.info.id, prep, cfg)
            self._install(sess, None, None, traj)
            sess.input_notes = list(prep.notes)
            sess.view = len(traj) - 1
            outcome = "finished"
            note = "Computed on the GPU in one go: drag the slider or press **▶ Play**."
            yield dict(state=sess, **self._static_values(sess), **self._main_values(sess, note=note))
        finally:
            sess.active -= 1
            self._log_run("run", sess, traj, cfg, t0, outcome, len(traj) if traj is not None else 0, device="zerogpu")

    def _log_run(self, endpoint: str, sess: Session, traj: Trajectory | None, cfg, t0: float, outcome: str,
                 new_records: int, **extra) -> None:
        info = traj.info if traj is not None else None
        event("run", endpoint=endpoint, session=sess.id, model=info.model_id if info else None,
              attack=cfg.attack, optimizer=cfg.optimizer, steps=cfg.steps, eps255=round(cfg.eps * 255, 3),
              source="upload" if info is None or info.source == "upload" else "example",
              model_hw=list(info.model_hw) if info else None, records=len(traj) if traj is not None else 0,
              new_records=new_records, duration_s=round(time.monotonic() - t0, 3), outcome=outcome,
              session_mb=round(session_nbytes(sess) / 2**20, 2), **extra)

    def step(self, req: RunRequest, state):
        """Compute exactly one more record (starting a run if needed)."""
        sess = self._session(state)
        t0 = time.monotonic()
        if sess.comp is not None and sess.comp.active:
            sess.comp.halt(PAUSED, wait_s=30.0)
        live, new = self._start(sess, req)
        sess.pause = True
        sess.active += 1
        try:
            with sess.lock:
                live.step()
        finally:
            sess.active -= 1
        sess.view, sess.follow = len(live.traj) - 1, True
        static = self._static_values(sess) if new else {}
        note = "Finished." if live.done else "Stepped one record: **Step** again or **Run** to continue."
        if new or live.done:
            self._log_run("step", sess, live.traj, live.cfg, t0, "finished" if live.done else "stepped", 1)
        return dict(state=sess, **static, **self._main_values(sess, note=note))

    def _halt_for_view(self, sess: Session, why: str) -> gr.Timer:
        """Halt the background computation; the live timer stays on until it has ended (its last view then
        carries the final record), else goes off."""
        comp = sess.comp
        if comp is None or not comp.active:
            return gr.Timer(active=False)
        comp.halt(why, wait_s=HALT_WAIT_S)
        if sess.follow and comp.live.traj is sess.traj and len(sess.traj):
            sess.view = len(sess.traj) - 1
        sess.sent = None
        return gr.Timer(active=comp.active)

    def _halt_answer(self, sess: Session, streamed: bool, timer: gr.Timer, note: str) -> dict:
        """Pause/Stop's answer.  While a run streamed it is the status line and the slider only, so the page paints
        it at once; the live timer stays on and its next tick brings the final view (panels and charts, as at the
        end of a run).  Otherwise the whole view."""
        if streamed:
            return dict(**self.main_outputs(sess, note=note, panels=False), live_timer=gr.Timer(active=True))
        return dict(**self.main_outputs(sess, note=note), live_timer=timer)

    @staticmethod
    def _streams(sess: Session) -> bool:
        return sess.comp is not None and sess.comp.active and sess.traj is sess.comp.live.traj

    def pause(self, state):
        """Pause the run (the computing thread stops after its current record)."""
        sess = self._session(state)
        sess.pause = True
        sess.playing = False
        streamed = self._streams(sess)
        timer = self._halt_for_view(sess, PAUSED)
        return self._halt_answer(sess, streamed, timer, "Paused: **Run** or **Step** continues this run.")

    def stop(self, state):
        sess = self._session(state)
        sess.pause = True
        sess.playing = False
        streamed = self._streams(sess)
        timer = self._halt_for_view(sess, STOPPED)
        sess.live = None
        sess.key = None
        note = "Stopped: the recorded run stays for scrubbing; **Run** starts anew."
        return self._halt_answer(sess, streamed, timer, note)

    def reset(self, state):
        sess = self._session(state)
        sess.pause = True
        sess.halt(STOPPED)
        cleared = {name: None for name in (*main_names(), *static_names())}
        return {**cleared, "state": Session(), "legend": "",
                "status": "Reset. Pick an example or upload an image, then press **Run**.",
                "probe_md": EXPLAIN["probe"], "slider": gr.Slider(minimum=0, maximum=1, value=0, step=1, label="Record"),
                "live_timer": gr.Timer(active=False)}

    def scrub(self, k, state, charts: bool = True):
        """Show record ``k`` of the recorded run (no recomputation); while dragging (``charts=False``) the whole-run
        charts are left for the release."""
        sess = self._session(state)
        if sess.traj is not None and len(sess.traj):
            sess.view = sess.traj.clamp(k)
            sess.follow = sess.view >= len(sess.traj) - 1
        return self.main_outputs(sess, live=self._computing(sess), move_slider=False, charts=charts)

    @staticmethod
    def _computing(sess: Session) -> bool:
        """Whether the shown run is still being computed (a view of it then says "running", not "paused")."""
        comp = sess.comp
        return comp is not None and comp.active and comp.live.traj is sess.traj

    def scrub_drag(self, k, state):
        return self.scrub(k, state, charts=False)

    def goto_best(self, state):
        sess = self._session(state)
        if sess.traj is not None and sess.traj.best_index() >= 0:
            sess.view, sess.follow = sess.traj.best_index(), False
        return self.main_outputs(sess, live=self._computing(sess))

    def probe(self, x, y, state):
        """Probe view pixel (x, y): class probabilities, weight and gradient over all records."""
        sess = self._session(state)
        has_run = sess.traj is not None and len(sess.traj) > 0
        yx = probe_coords(x, y, sess.traj.hw if has_run else (1, 1))  # checked with or without a run
        if has_run:
            sess.probe = yx
        return self.main_outputs(sess, live=self._computing(sess))

    def make_select(self, panel: str) -> Callable:
        def on_select(state, evt: gr.SelectData):
            sess = self._session(state)
            if sess.traj is None or not len(sess.traj) or evt.index is None:
                return self.main_outputs(sess)
            ix = evt.index if isinstance(evt.index, (list, tuple)) and len(evt.index) == 2 else (None, None)
            py, px = probe_coords(ix[0], ix[1], (10**6, 10**6))  # (y, x) back
            yx = panel_to_view(sess.traj, panel, (float(px), float(py)))
            if yx is None:  # a click on the panel's colour bar
                return self.main_outputs(sess)
            return self.probe(yx[1], yx[0], sess)

        return on_select

    def play(self, state):
        sess = self._session(state)
        if sess.traj is None or len(sess.traj) < 2:
            return dict(state=sess, timer=gr.Timer(active=False), play_btn=gr.Button(value="▶ Play"))
        sess.playing = not sess.playing
        if sess.playing and sess.view >= len(sess.traj) - 1:
            sess.view = 0
        sess.follow = False
        return dict(state=sess, timer=gr.Timer(active=sess.playing),
                        play_btn=gr.Button(value="❚❚ Pause replay" if sess.playing else "▶ Play"))

    def tick(self, state):
        sess = self._session(state)
        t = sess.traj
        if not sess.playing or t is None or not len(t):
            return dict(state=sess, timer=gr.Timer(active=False), play_btn=gr.Button(value="▶ Play"))
        sess.view = min(sess.view + 1, len(t) - 1)
        done = sess.view >= len(t) - 1
        if done:
            sess.playing = False
        charts, hist = self._chart_turn(sess, done)
        end = {"timer": gr.Timer(active=False), "play_btn": gr.Button(value="▶ Play")} if done else {}
        return dict(**end, **self.main_outputs(sess, charts=charts, hist=hist))

    def load_example(self, ex_id, model_id, state, shipped: bool = True) -> dict:
        """Select an example; shows its precomputed run instantly when one ships for this model (and
        ``shipped``)."""
        sess = self._session(state)
        ex = self.ex_by_id.get(ex_id)
        if ex is None:
            raise InputError(f"unknown example {str(ex_id)[:60]!r}")
        sess.halt(STOPPED)
        traj = load_precomputed(ex.id, model_id, self.precomputed_dir) if shipped else None
        ctl: dict[str, Any] = {}
        sess.input_notes = []
        if traj is not None:
            sess.traj, sess.live, sess.key = traj, None, None
            sess.view, sess.follow, sess.probe, sess.playing = 0, False, None, False
            c = traj.info.config
            ctl = {"attack": c["attack"], "opt": c["optimizer"], "eps": round(c["eps"] * 255, 3), "steps": c["steps"],
                   "alpha": round((c["step_size"] or 0) * 255, 3), "seed": c["seed"],
                   "sched_text": c.get("schedule") or "linear:-2:1"}
            note = ("Precomputed run loaded: press **▶ Play** or drag the slider. **Run** recomputes it live "
                    "(or with your settings).")
            main = self._main_values(sess, note=note)
            static = self._static_values(sess)
            sess.compare = load_precomputed_compare(ex.id, model_id, traj.image, self.precomputed_dir)
        else:
            sess.compare = {}
            sess.traj, sess.live, sess.key, sess.probe = None, None, None, None
            main = self._main_values(sess, note=f"Example **{ex.title}** selected: press **Run** or **Step**.")
            static = {**self._static_values(Session()), "clean": str(ex.image)}
        cmp = self.compare_tab.loaded(sess, "Precomputed comparison (same config as the shipped run): drag the "
                                            "slider.")
        return {"state": sess, "ex_id": ex.id, "image_in": str(ex.image), **ctl, **static, **main, "mask_in": None,
                **dict(zip(COMPARE_OUTPUTS, cmp, strict=True))}

    def load_linked_example(self, ex_id, model_id, state, request: gr.Request = None):
        """After a shared link set ``ex_id``: load that example (no-op otherwise).

        The link's own settings (already applied by :meth:`on_load`) win: the example's shipped run is shown only
        when it was made with exactly those settings, and the shipped settings never overwrite the controls.
        """
        if not ex_id or ex_id not in self.ex_by_id:
            return {}
        q = parse_query(dict(request.query_params) if request is not None else {})
        linked = {k: v for k, v in q.items() if k in LINK_SETTINGS}
        if not linked:
            return self.load_example(ex_id, model_id, state)
        traj = load_precomputed(ex_id, model_id, self.precomputed_dir)
        out = self.load_example(ex_id, model_id, state, shipped=traj is not None and _made_with(traj, linked))
        for name in CONTROLS:  # the link's settings stay
            out.pop(name, None)
        return out

    def export(self, ex_id, model_id, attack, opt, eps, steps, alpha, seed, sched, state, request: gr.Request):
        """Run card JSON, per-record CSV, panels PNG, evolution GIF and the shareable link."""
        sess = self._session(state)
        req = RunRequest(None, None, ex_id or None, model_id, attack, opt, eps, steps, alpha, seed, sched)
        req.config(self.limits)  # every control checked, by name
        query = config_query(req.example, req.model, req.attack, req.optimizer, req.eps, req.steps, req.alpha,
                             req.seed, req.schedule)
        headers = getattr(request, "headers", None) or {}
        link = share_link(headers, getattr(getattr(request, "url", None), "scheme", None), query)
        t = sess.traj
        if t is None or not len(t):
            return dict(f_card=None, f_csv=None, f_png=None, f_gif=None, share=link)
        self._prune_exports()
        d = self.disk.session_dir(sess.id)  # removed when the session expires (app.janitor)
        stem = f"{t.info.config['attack']}_{t.info.source}_{len(t)}rec"
        card = d / f"{stem}_run_card.json"
        card.write_text(json.dumps(run_card(t), indent=1))
        csv_p = d / f"{stem}_records.csv"
        csv_p.write_text(records_csv(t))
        png = d / f"{stem}_panels_record{t.clamp(sess.view)}.png"
        png.write_bytes(panels_png(t, sess.view, sess.probe))
        gif = d / f"{stem}_evolution.gif"
        gif.write_bytes(evolution_gif(t))
        return dict(f_card=str(card), f_csv=str(csv_p), f_png=str(png), f_gif=str(gif), share=link)

    def _prune_exports(self) -> None:
        """Exports older than an hour (or the session TTL, if shorter) are deleted."""
        cutoff = time.time() - min(3600.0, self.limits.session_ttl_s)
        for d in self.export_dir.iterdir():
            try:
                if d.stat().st_mtime < cutoff:
                    shutil.rmtree(d, ignore_errors=True)
            except OSError:
                pass

    def preview(self, attack, sched, steps, opt):
        """Validate the schedule text and plot q(t) and w_q(p) before anything runs."""
        n = int(min(max(steps or 1, 1), self.limits.max_steps))
        empty = takes_schedule(attack) and not (sched or "").strip()
        try:
            s = check_schedule(get_attack(attack).schedule if empty else sched, n) if takes_schedule(attack) else None
        except InputError as e:  # no preview of an older, valid text: the plot is cleared
            return [None, f"⚠️ {e} (Run refuses this text)"]
        if empty:
            msg = f"The schedule box is empty: runs use the default `{get_attack(attack).schedule}`."
        else:
            msg = f"Schedule `{s}`" if s else f"{attack_title(attack)} has no q-schedule."
        return [schedule_preview_figure(attack, s, n, opt), msg]

    def on_load(self, request: gr.Request):
        """Restore the controls from URL query parameters (the shareable link)."""
        q = parse_query(dict(request.query_params) if request is not None else {})
        model_ids = set(self.models)
        for key, lo, hi in (("eps", MIN_EPS255, MAX_EPS255), ("steps", 1, self.limits.max_steps),
                            ("alpha", 0, MAX_ALPHA255)):
            if key in q and not lo <= q[key] <= hi:
                del q[key]
        named = {k: q[key] for k, key in (("attack", "attack"), ("opt", "opt"), ("eps", "eps"), ("steps", "steps"),
                                          ("alpha", "alpha"), ("seed", "seed"), ("sched_text", "schedule")) if key in q}
        if q.get("model") in model_ids:
            named["model"] = q["model"]
        ex = q.get("example") or self.default_example(q.get("model") if q.get("model") in model_ids else self.model_id)
        if ex in self.ex_by_id:
            named.update(ex_id=ex, image_in=str(self.ex_by_id[ex].image))
        return dict(**named)

    # -- layout -------------------------------------------------------------------------------------------
    def build(self) -> gr.Blocks:
        """The page: the controls column and the tabs (Explore, q-lens, Compare, Debug, Export, About); every
        component lands in :attr:`ui` by name, then the ``_wire_*`` methods connect them."""
        choices = model_choices(self.models)
        ids = [c[1] for c in choices]
        default_model = self.model_id if self.model_id in ids else (ids[0] if ids else None)
        ui = self.ui
        with gr.Blocks(title="TsallisPGD Explorer", delete_cache=(900, 3600)) as demo:
            ui["state"] = gr.State(Session(), time_to_live=self.limits.session_ttl_s)  # deep-copied per session
            gr.Markdown(HEADER)
            with gr.Row():
                with gr.Column(scale=1, min_width=330):
                    ui.update(controls.build(self.examples, choices, default_model))
                    self.own_box = None if self.limits.hosted else OwnModelBox(self.offer_model, self.guard)
                    if self.own_box is not None:
                        self.own_box.build()
                    ui.update(controls.build_attack(self.limits.max_steps))
                with gr.Column(scale=3), gr.Tabs() as self.tabs:
                    with gr.Tab("Explore", id="explore"):
                        ui.update(explore.build())
                    with gr.Tab(qlens_tab.TAB_LABEL, id="qlens") as self.lens_tab:
                        self.lens = qlens_tab.QLensTab()
                        self.lens.layout()
                    self.compare_tab.build()
                    self.debug_tab = DebugTab(self._session, self.guard)
                    self.debug_tab.build()
                    ui.update(share.build())
                    about.build()
            ui.update(timer=gr.Timer(PLAY_INTERVAL_S, active=False), live_timer=gr.Timer(LIVE_PULL_S, active=False),
                      api_run_btn=gr.Button(visible=False), api_ex_btn=gr.Button(visible=False),
                      api_step_btn=gr.Button(visible=False), api_export_btn=gr.Button(visible=False))
            ui.update(zip(COMPARE_OUTPUTS, self.compare_tab.outputs, strict=True))
            for c in (ui["image_in"], ui["mask_in"]):  # what the upload components enforce (see app.components)
                c.hosted = self.limits.hosted
                c.max_upload_mb = self.limits.max_upload_mb
            self._wire_runs()
            self._wire_views()
            self._wire_inputs(demo)
        return demo

    def _wire_runs(self) -> None:
        """Run, Step, Pause, Stop, Reset, the live pull, the API's ``/run`` and the comparison."""
        ui, on, g, req = self.ui, self.on, self.guard, takes_request
        conc = self.limits.attack_concurrency
        fast = dict(queue=False, show_progress="hidden")
        static_out, main_out = list(static_names()), [*main_names(), "slider"]
        ins = [*REQUEST_INPUTS, "state"]
        self.compare_tab.wire(ui["state"], [ui[n] for n in REQUEST_INPUTS if n != "attack"])
        # the page's Run starts a background computation and pulls views with the live timer; /run (the API,
        # a hidden button) streams the records to API clients
        on(ui["run_btn"].click, g(req(self.start), "start", page=True), ins,
           ["state", *static_out, *main_out, "live_timer"], api_visibility="private", concurrency_id="start",
           concurrency_limit=conc, show_progress="hidden", trigger_mode="once")
        on(ui["live_timer"].tick, g(self.pull, "pull"), ["slider", "state"], ["state", "live_timer", *main_out],
           api_visibility="private", **fast)
        for tab in self.tabs.children:  # the live view is pulled only while the Explore tab is shown
            if isinstance(tab, gr.Tab):
                on(tab.select, g(functools.partial(self.tab_shown, tab.id), "tab"), ["state"], ["state", "live_timer"],
                   api_visibility="private", **fast)
        run_evt = on(ui["api_run_btn"].click, g(req(self.run), "run"), ins, ["state", *static_out, *main_out],
                     api_name="run", concurrency_id="attack", concurrency_limit=conc, show_progress="hidden",
                     trigger_mode="once")
        for btn, page in (("api_step_btn", False), ("step_btn", True)):  # /step raises, the page's Step warns (API first: it keeps the name)
            on(ui[btn].click, g(req(self.step), "step", page=page), ins, ["state", *static_out, *main_out],
               concurrency_id="attack", concurrency_limit=conc, show_progress="minimal",
               **({"api_visibility": "private"} if page else {"api_name": "step"}))
        cancels = [run_evt, *self.compare_tab.events]
        halts = ["state", *main_out, "live_timer"]
        on(ui["pause_btn"].click, g(self.pause, "pause"), ["state"], halts, api_name="pause", cancels=cancels, **fast)
        on(ui["stop_btn"].click, g(self.stop, "stop"), ["state"], halts, api_name="stop", cancels=cancels, **fast)
        on(ui["reset_btn"].click, g(self.reset, "reset"), ["state"], ["state", *static_out, *main_out, "live_timer"],
           api_name="reset", cancels=cancels, **fast)

    def _wire_views(self) -> None:
        """The slider, Play, Best iterate, the probe (every clickable panel of the table) and the exports."""
        ui, on, g = self.ui, self.on, self.guard
        fast = dict(queue=False, show_progress="hidden")
        main_out = [*main_names(), "slider"]
        view_out = ["state", *main_out]
        on(ui["slider"].input, g(self.scrub_drag, "scrub"), ["slider", "state"], view_out, api_visibility="private",
           trigger_mode="always_last", **fast)
        on(ui["slider"].release, g(self.scrub, "scrub"), ["slider", "state"], view_out, api_name="scrub",
           trigger_mode="always_last", **fast)
        on(ui["best_btn"].click, g(self.goto_best, "goto_best"), ["state"], view_out, api_visibility="private", **fast)
        on(ui["probe_btn"].click, g(self.probe, "probe"), ["probe_x", "probe_y", "state"], view_out, api_name="probe",
           **fast)
        for p in panels():
            if p.clickable:
                on(ui[p.name].select, g(self.make_select(p.name), "select"), ["state"], view_out,
                   api_visibility="private", **fast)
        on(ui["play_btn"].click, g(self.play, "play"), ["state"], ["state", "timer", "play_btn"],
           api_visibility="private", **fast)
        on(ui["timer"].tick, g(self.tick, "tick"), ["state"], ["state", "timer", "play_btn", *main_out],
           api_visibility="private", show_progress="hidden", concurrency_limit=None, concurrency_id="view")
        for btn, page in (("api_export_btn", False), ("export_btn", True)):
            on(ui[btn].click, g(self.export, "export", page=page), [*REQUEST_INPUTS[2:], "state"], list(share.OUTPUTS),
               concurrency_id="export", **({"api_visibility": "private"} if page else {"api_name": "export"}))
        self.lens.wire(self, state=ui["state"], model_dd=ui["model"], slider=ui["slider"], tabs=self.tabs,
                       tab=self.lens_tab, ex_out=[ui[n] for n in self._example_outputs()],
                       main_out=[ui[n] for n in main_out], guard=g)

    def _example_outputs(self) -> list[str]:
        """What loading an example sets: the controls, the static and main panels, the comparison, the mask."""
        return ["state", "ex_id", "image_in", *CONTROLS, *static_names(), *main_names(), "slider", *COMPARE_OUTPUTS,
                "mask_in"]

    def _wire_inputs(self, demo: gr.Blocks) -> None:
        """Examples (gallery, API ``/load_example``, a shared link), uploads, the model box and the schedule."""
        ui, on, g = self.ui, self.on, self.guard
        fast = dict(queue=False, show_progress="hidden")
        ex_names = self._example_outputs()
        self.debug_tab.wire(ui["state"])
        if self.own_box is not None:
            self.own_box.wire(ui["model"])
        preview = dict(fn=g(self.preview_example, "preview_example", page=True), inputs=["ex_id", "model", "state"],
                       outputs=static_names(), api_visibility="private", show_progress="hidden",
                       concurrency_id="decode", concurrency_limit=2)  # an example without a shipped run: clean prediction
        ex_evt = on(ui["api_ex_btn"].click, g(self.load_example, "load_example"), ["ex_id", "model", "state"],
                    ex_names, api_name="load_example", **fast)
        on(ex_evt.then, **preview)

        def gallery_pick(model_id, state, evt: gr.SelectData):
            return self.load_example(self.examples[gallery_index(evt.index, len(self.examples))].id, model_id, state)

        on(on(ui["gallery"].select, g(gallery_pick, "gallery"), ["model", "state"], ex_names,
              api_visibility="private", **fast).then, **preview)
        up = ui["image_in"].upload(lambda: "", None, [ui["ex_id"]], api_visibility="private", **fast)
        on(up.then, g(self.preview_upload, "upload", page=True), ["image_in", "mask_in", "model", "state"],
           ["state", *static_names(), *main_names(), "slider"], api_visibility="private", show_progress="hidden",
           concurrency_id="decode", concurrency_limit=2)  # the sandboxed decode and the clean prediction
        ui["image_in"].clear(lambda: "", None, [ui["ex_id"]], api_visibility="private", **fast)
        controls.wire_schedule(ui, g, self.preview)
        on(demo.load, g(self.on_load, "on_load"), [], ["model", *CONTROLS, "ex_id", "image_in"],
           api_visibility="private", **fast).then(
            self.by_name(g(self.load_linked_example, "load_linked_example"), [ui[n] for n in ex_names]),
            [ui[n] for n in ("ex_id", "model", "state")], [ui[n] for n in ex_names], api_visibility="private",
            **fast).then(self.by_name(preview["fn"], [ui[n] for n in static_names()]),
                         [ui[n] for n in preview["inputs"]], [ui[n] for n in static_names()],
                         **{k: v for k, v in preview.items() if k not in ("fn", "inputs", "outputs")})

    def on(self, trigger: Callable, fn: Callable, inputs: list[str], outputs: list[str], **kw: Any):
        """Connect ``trigger`` (e.g. ``button.click``) to ``fn`` with components given by name; an API endpoint's
        output names (hidden state left out) are kept in :attr:`api_outputs`."""
        outs = [self.ui[n] for n in outputs]
        evt = trigger(self.by_name(fn, outs), [self.ui[n] for n in inputs], outs, **kw)
        if kw.get("api_name"):
            self.api_outputs[kw["api_name"]] = [n for n in outputs if n != "state"]
        return evt



LINK_SETTINGS = ("attack", "opt", "eps", "steps", "alpha", "seed", "schedule")


def _made_with(traj: Trajectory, linked: dict) -> bool:
    """Whether a recorded run's config has every setting a shared link gives."""
    c = traj.info.config
    have = {"attack": c.get("attack"), "opt": c.get("optimizer"), "eps": round(255 * c.get("eps", 0), 3),
            "steps": c.get("steps"), "alpha": round(255 * (c.get("step_size") or 0), 3), "seed": c.get("seed"),
            "schedule": c.get("schedule") or get_attack(c.get("attack", "ce")).schedule}
    for k, v in linked.items():
        want = round(float(v), 3) if k in ("eps", "alpha") else v
        if have.get(k) != want:
            return False
    return True


