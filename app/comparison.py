"""An attack comparison computed in a background thread: the attacks run one after another, each as an
:class:`app.live.Computation`, so the page pulls the newest tiles at its own pace and Stop acts at once.

The runs land in :attr:`Comparison.runs` (attack title -> recording) as each one starts; the session shows that
dict as its comparison.  Only one attack's state is alive at a time (the memory budget assumes so).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from app.inputs import scrub_paths
from app.live import ERROR, FINISHED, STOPPED, TIME_LIMIT, WAITING, Computation
from app.observe import event
from app.runner import LiveRun
from app.trajectory import Trajectory
from attack_engine.registry import attack_title


@dataclass
class Comparison:
    """``cfgs`` computed in order; ``make(cfg)`` builds each attack's :class:`~app.runner.LiveRun` (in the thread).

    ``time_limit_s`` bounds the whole comparison; ``on_end(outcome, records, seconds)`` runs in the thread when it
    ends.  ``view``, ``sent`` and ``charts_at`` are the page's view state while it streams (see
    :class:`app.tabs.compare.CompareTab`).
    """

    cfgs: list
    make: Callable[[object], LiveRun]
    slots: threading.Semaphore
    time_limit_s: float
    on_end: Callable[[str, int, float], None] | None = None
    notes: tuple[str, ...] = ()  # what loading the input changed (shown with the final status)
    runs: dict[str, Trajectory] = field(default_factory=dict)
    state: str = WAITING
    error: str = ""
    ended: threading.Event = field(default_factory=threading.Event)
    current: Computation | None = None
    preparing: str = ""  # the attack whose run is being built (between two attacks)
    records: int = 0  # records computed by the finished attacks (the running one adds its own)
    view: int | None = None  # None: the page follows the newest record
    sent: tuple | None = None
    charts_at: float = 0.0
    _halt: str = ""
    _thread: threading.Thread | None = None

    def start(self) -> Comparison:
        self._thread = threading.Thread(target=self._loop, name="tsallis-compare", daemon=True)
        self._thread.start()
        return self

    @property
    def active(self) -> bool:
        return not self.ended.is_set()

    def halt(self, why: str = STOPPED, wait_s: float = 0.0) -> None:
        """Stop after the record being computed (the attacks not started yet never start); wait at most
        ``wait_s`` for the thread to end."""
        if not self._halt:
            self._halt = why
        cur = self.current
        if cur is not None:
            cur.halt(why)
        if wait_s > 0:
            self.ended.wait(wait_s)

    def lock(self):
        """The lock under which the running attack adds a record (hold it to read whole records)."""
        cur = self.current
        return cur.live.lock if cur is not None and cur.active else contextlib.nullcontext()

    def progress(self) -> tuple[int, int, str]:
        """(records computed so far, attacks started, state): changes whenever there is something new to show."""
        cur = self.current
        running = len(cur.live.traj) if cur is not None and cur.active else 0
        return self.records + running, len(self.runs), self.state

    def running_title(self) -> str:
        cur = self.current
        return attack_title(cur.live.cfg.attack) if cur is not None and cur.active else ""

    def _loop(self) -> None:
        t0 = time.monotonic()
        outcome = FINISHED
        try:
            for cfg in self.cfgs:
                outcome = self._one(cfg, t0)
                if outcome != FINISHED:
                    break
        except Exception as e:  # the status says the comparison stopped; the recorded part stays
            outcome, self.error = ERROR, scrub_paths(f"{type(e).__name__}: {e}")
            event("error", logging.ERROR, endpoint="compare_run", error=self.error, records=self.records)
        finally:
            self.state = outcome
            self.ended.set()
            if self.on_end is not None:
                self.on_end(outcome, self.records, time.monotonic() - t0)

    def _one(self, cfg, t0: float) -> str:
        """Compute one attack to its end; its outcome."""
        left = self.time_limit_s - (time.monotonic() - t0)
        if self._halt or left <= 0:
            return self._halt or TIME_LIMIT
        self.preparing = attack_title(cfg.attack)
        live = self.make(cfg)
        if self._halt:
            return self._halt
        self.runs[attack_title(cfg.attack)] = live.traj
        comp = Computation(live, self.slots, left)
        self.current = comp
        if self._halt:  # a halt that came while the run was being built
            comp.halt(self._halt)
        self.state = comp.state
        comp.start()
        while not comp.ended.wait(0.05):
            self.state = comp.state
        self.records += len(live.traj)
        if comp.state == ERROR:
            self.error = comp.error
        return comp.state
