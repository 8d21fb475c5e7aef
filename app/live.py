"""A live run computed in a background thread, so the browser pulls views at its own pace.

The explorer's ▶ Run starts a :class:`Computation` and returns at once; a ``gr.Timer`` in the page then asks for
the newest record (:func:`newest_view`), one request at a time, so the page shows the latest record instead of
replaying a queue of every one, and Pause / Stop / Reset / tabs never wait behind a stream.  Every record is still
computed and recorded (slider, best iterate and exports reach all of them).

Compute slots: at most ``slots`` computations run at once across all sessions (``TSALLIS_ATTACK_CONCURRENCY``);
a run started while all are busy waits for one, and says so.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from app.inputs import scrub_paths
from app.observe import event
from app.runner import LiveRun

WAITING, RUNNING, PAUSED, STOPPED, FINISHED, TIME_LIMIT, ERROR = (
    "waiting", "running", "paused", "stopped", "finished", "time_limit", "error")


@dataclass
class Computation:
    """``live`` stepped in a daemon thread until it is done, :meth:`halt` is called or ``time_limit_s`` passes.

    ``on_end(outcome, new_records, seconds)`` runs in the thread when it ends (the app logs the run there).
    """

    live: LiveRun
    slots: threading.Semaphore
    time_limit_s: float
    on_end: Callable[[str, int, float], None] | None = None
    state: str = WAITING
    error: str = ""  # what ended the run in ERROR (server paths scrubbed); also logged as an ``error`` event
    ended: threading.Event = field(default_factory=threading.Event)
    _halt: str = ""
    _thread: threading.Thread | None = None

    def start(self) -> Computation:
        self._thread = threading.Thread(target=self._loop, name="tsallis-live-run", daemon=True)
        self._thread.start()
        return self

    @property
    def active(self) -> bool:
        return not self.ended.is_set()

    def halt(self, why: str = PAUSED, wait_s: float = 0.0) -> None:
        """Ask the thread to stop after the record it is computing; optionally wait for it (at most ``wait_s``)."""
        if not self._halt:
            self._halt = why
        if wait_s > 0:
            self.ended.wait(wait_s)

    def _loop(self) -> None:
        t0, n0 = time.monotonic(), len(self.live.traj)
        outcome = STOPPED
        try:
            while not self.slots.acquire(timeout=0.1):
                if self._halt:
                    outcome = self._halt
                    return
            try:
                self.state = RUNNING
                outcome = self._compute(t0)
            finally:
                self.slots.release()
        except Exception as e:  # the page's next view says the run stopped; the recorded part stays
            outcome, self.error = ERROR, scrub_paths(f"{type(e).__name__}: {e}")
            event("error", logging.ERROR, endpoint="live_run", error=self.error, records=len(self.live.traj))
        finally:
            self.state = outcome
            self.ended.set()
            if self.on_end is not None:
                self.on_end(outcome, len(self.live.traj) - n0, time.monotonic() - t0)

    def _compute(self, t0: float) -> str:
        while not self._halt:
            if time.monotonic() - t0 > self.time_limit_s:
                return TIME_LIMIT
            if not self.live.step():
                return FINISHED
            if self.live.done:
                return FINISHED
        return self._halt
