"""Per-session state and the memory it may keep: a budget per session, one for all sessions, and expiry.

Every recorded run lives in a :class:`Session` (Gradio keeps one per browser tab).  :class:`SessionStore`
knows all of them (weakly) and

* refuses a run whose recording would exceed the per-session budget (``TSALLIS_SESSION_MB``), saying how many
  steps would fit;
* drops a session's runs after ``TSALLIS_SESSION_TTL`` seconds without a request (the session is told why on its
  next request);
* keeps the runs of all sessions within ``TSALLIS_TOTAL_MB`` by dropping the least recently used sessions' runs
  first (those sessions are told so), and refuses a run only when even that cannot make room.
"""

from __future__ import annotations

import secrets
import threading
import time
import weakref
from collections import deque
from typing import TYPE_CHECKING

import numpy as np

from app.limits import Limits
from app.panels import record_bytes as panel_record_bytes
from app.trajectory import HIST_BINS, MAP_SIDE, PROBE_SIDE, SCALARS, TOPK, Trajectory, view_size
from attack_engine.qlens import SUMMARY_BINS

if TYPE_CHECKING:
    from app.runner import LiveRun

_SCALAR_BYTES = 32  # a Python float in a list: object + pointer


class Session:
    """Everything one browser session holds: the recorded run, the live generator, the view position."""

    def __init__(self) -> None:
        self.id = secrets.token_hex(4)  # for logs only; says nothing about the user
        self.traj: Trajectory | None = None
        self.live: LiveRun | None = None
        self.key: str | None = None
        self.view = 0
        self.follow = True
        self.probe: tuple[int, int] | None = None  # (y, x) in view-map pixels
        self.pause = False
        self.playing = False
        self.compare: dict[str, Trajectory] = {}
        self.lock = threading.Lock()
        self.last_used = time.monotonic()
        self.notice = ""  # shown once on the next request (e.g. "your run expired")
        self.input_notes: list[str] = []  # what loading the current run's image changed (downscaled, ...)
        self.active = 0  # requests computing for this session right now (never evicted meanwhile)
        self.comp = None  # the background computation of a live run (app.live.Computation), if one was started
        self.compare_run = None  # the background attack comparison (app.comparison.Comparison), if one was started
        self.sent: tuple | None = None  # what the live view pull last sent (record, records, probe, ended)
        self.final_resends = 0  # how often the pull sent the ended run's final view again (the page lacked it)
        self.charts_at = 0.0  # when the heavy charts (metrics, gradient mass) were last sent (monotonic s)
        self.hist_at = 0.0  # when the confidence histogram was last sent (monotonic s)
        self.tab = "explore"  # the tab the page shows: the live view is pulled only while it is the explorer

    def __deepcopy__(self, memo: dict) -> Session:
        return Session()

    def halt(self, why: str = "stopped") -> None:
        """Stop the background computations (live run, comparison), if any, after the record they are computing."""
        for c in (self.comp, self.compare_run):
            if c is not None:
                c.halt(why)

    def clear_runs(self) -> None:
        self.halt()
        self.traj, self.live, self.key, self.compare = None, None, None, {}
        self.probe, self.playing, self.view, self.input_notes = None, False, 0, []

    def take_notice(self) -> str:
        n, self.notice = self.notice, ""
        return n


# -- sizes ------------------------------------------------------------------------------------------------
def traj_nbytes(t: Trajectory | None) -> int:
    """Bytes held by a recorded run's arrays and scalars."""
    if t is None:
        return 0
    n = sum(a.nbytes for a in (t.image, t.labels, t.clean_pred, t.image_v, t.labels_v, t.clean_pred_v, t.valid_v,
                                t.first_flip))
    for lst in (t.delta, t.pred, t.p_true, t.weight, t.grad, t.topk_cls, t.topk_p, t.hist, t.margin, t.log_ceg,
                t.qsum):
        n += sum(a.nbytes for a in lst if isinstance(a, np.ndarray))
    n += sum(a.nbytes for lst in t.panel_maps.values() for a in lst)  # the panel table's own data
    return n + len(t) * len(SCALARS) * _SCALAR_BYTES


# A running attack's own state (AttackRun + its generator: iterates, gradients, APGD's best points, the loss
# workspace, the clean logits), in bytes per model-input pixel: measured with app.memory.retained_bytes
# (tests/test_memory.py checks it against the resident memory); it is released when the run finishes.  The
# per-class part was measured while the run also kept the last logits for the probe (4 bytes per pixel and class
# that the records' top-k replaced), so it over-charges many-class models a little.
LIVE_BYTES_PER_PIXEL = {"apgd": 242, "pgd": 150}
LIVE_BYTES_PER_PIXEL_CLASS = 16


def estimate_live_bytes(model_hw: tuple[int, int], num_classes: int, optimizer: str) -> int:
    """Bytes a running attack holds besides its recording (an estimate, see :data:`LIVE_BYTES_PER_PIXEL`)."""
    per = LIVE_BYTES_PER_PIXEL.get(optimizer, max(LIVE_BYTES_PER_PIXEL.values()))
    return model_hw[0] * model_hw[1] * (per + LIVE_BYTES_PER_PIXEL_CLASS * num_classes)


def live_nbytes(live: LiveRun | None) -> int:
    """Bytes a live run holds besides its recording, measured (cached until it records again)."""
    if live is None or live.done:
        return 0
    key = len(live.traj)
    cached = getattr(live, "_mem_bytes", None)
    if cached is None or cached[0] != key:
        from app.memory import retained_bytes

        cached = (key, retained_bytes(live, exclude=(live.traj,)))
        live._mem_bytes = cached
    return cached[1]


def session_nbytes(s: Session) -> int:
    """Bytes a session keeps: its recorded runs and a running attack's state."""
    seen = {id(s.traj)} if s.traj is not None else set()
    n = traj_nbytes(s.traj) + live_nbytes(s.live)
    if s.live is not None and id(s.live.traj) not in seen:
        n += traj_nbytes(s.live.traj)
        seen.add(id(s.live.traj))
    for t in s.compare.values():
        if id(t) not in seen:
            n += traj_nbytes(t)
            seen.add(id(t))
    return n


def estimate_run_bytes(model_hw: tuple[int, int], num_classes: int, records: int, light: bool = False) -> int:
    """Bytes the recording of a run of ``records`` records on a ``model_hw`` input will hold (add
    :func:`estimate_live_bytes` while it runs)."""
    h, w = model_hw
    vh, vw = view_size((h, w), MAP_SIDE)
    v = vh * vw
    base = h * w * (3 + 8 + 8) + v * (3 + 8 + 8 + 1 + 4)
    pred = 1 if num_classes <= 255 else 2
    per = v * pred + len(SCALARS) * _SCALAR_BYTES
    if not light:
        ph, pw = view_size((vh, vw), PROBE_SIDE)
        per += v * (3 + 3 + 3) + 2 * HIST_BINS * 4 + 3 * SUMMARY_BINS * 3 * 4 + (ph * pw * TOPK * 3 if num_classes > 2 else 0)
        per += panel_record_bytes((vh, vw))  # what the panel table's entries record besides the Trajectory
    return base + records * per


def mb(n: float) -> str:
    return f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n / 2**20:.2f} MB"


class BudgetError(ValueError):
    """A run that does not fit in memory; the message says what to change."""


class SessionStore:
    """All live sessions (weak references), their expiry and the memory budgets."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._sessions: weakref.WeakSet[Session] = weakref.WeakSet()
        self._lock = threading.Lock()
        self.evictions: deque[tuple[str, str]] = deque(maxlen=1000)  # (session id, reason), for tests

    def touch(self, s: Session) -> Session:
        """Register ``s``, drop its runs if it sat idle longer than the TTL (it is told on this request)."""
        now = time.monotonic()
        with self._lock:
            self._sessions.add(s)
            idle = now - s.last_used
            if idle > self.limits.session_ttl_s and (s.traj is not None or s.compare):
                s.clear_runs()
                s.notice = (f"Your previous run expired after {idle:.0f} s without activity (runs are kept "
                            f"{self.limits.session_ttl_s:g} s).")
                self.evictions.append((s.id, "expired"))
            s.last_used = now
        return s

    def expire(self) -> list[str]:
        """Drop the runs of every session idle longer than the TTL (each is told on its next request); returns
        their ids.  Runs computing right now are never dropped."""
        now, gone = time.monotonic(), []
        with self._lock:
            for o in list(self._sessions):
                if (now - o.last_used > self.limits.session_ttl_s and not o.active
                        and (o.traj is not None or o.compare or o.live is not None)):
                    o.clear_runs()
                    o.notice = "Your previous run expired (no activity) and was removed."
                    gone.append(o.id)
            self.evictions.extend((sid, "expired") for sid in gone)
        return gone

    def total_bytes(self) -> int:
        with self._lock:
            return sum(session_nbytes(s) for s in list(self._sessions))

    def admit(self, s: Session, new_bytes: int, keep_bytes: int) -> list[tuple[str, str]]:
        """Make room for a new run of ``new_bytes`` in ``s``, which keeps ``keep_bytes`` of its other runs.

        Raises :class:`BudgetError` when the run alone exceeds the session budget or the server cannot make room;
        returns the (session id, reason) of sessions whose runs were dropped.
        """
        lim = self.limits
        if new_bytes + keep_bytes > lim.session_bytes:
            raise BudgetError(f"this run would keep about {mb(new_bytes + keep_bytes)} of results; a session may keep "
                              f"{mb(lim.session_bytes)}: use fewer steps or a smaller image (a model with many "
                              "classes keeps more per pixel while it runs)")
        dropped: list[tuple[str, str]] = []
        now = time.monotonic()
        with self._lock:
            others = [o for o in list(self._sessions) if o is not s]
            for o in others:  # expired first
                if now - o.last_used > lim.session_ttl_s and (o.traj is not None or o.compare):
                    o.clear_runs()
                    o.notice = "Your previous run expired (no activity) and was removed."
                    dropped.append((o.id, "expired"))
            used = sum(session_nbytes(o) for o in others) + keep_bytes
            for o in sorted(others, key=lambda o: o.last_used):  # least recently used first
                if used + new_bytes <= lim.total_bytes:
                    break
                n = session_nbytes(o)
                if n == 0 or o.active:  # never drop a run that is computing right now
                    continue
                o.clear_runs()
                o.notice = "Your recorded run was removed to make room for other users (the server's memory is shared)."
                dropped.append((o.id, "memory"))
                used -= n
            if used + new_bytes > lim.total_bytes:
                raise BudgetError("the server is keeping as many runs as its memory allows; try again in a minute "
                                  "or use fewer steps")
            self.evictions.extend(dropped)
        return dropped
