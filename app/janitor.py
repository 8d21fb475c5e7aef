"""The served app's clean-up thread: every ``TSALLIS_JANITOR_S`` seconds it drops the runs of sessions idle
longer than the TTL (and their exports), keeps the disk within ``TSALLIS_DISK_MB`` (:mod:`app.disk`) and hands
freed memory back to the system (:func:`app.memory.release`).  It holds the app weakly and ends with it."""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any

from app.memory import release
from app.observe import event


def sweep(app: Any) -> dict:
    """One clean-up pass over ``app`` (an :class:`app.ui.App`); returns what it did."""
    expired = app.store.expire()
    exports = sum(app.disk.drop_session(sid) for sid in expired)
    disk = app.disk.enforce()
    trimmed = release()
    out = {"expired": len(expired), "exports_removed": exports, **disk, "malloc_trim": trimmed}
    if expired or disk["aged"] or disk["over_budget"]:
        event("cleanup", **out)
    return out


class Janitor:
    """``Janitor(app, every_s).start()``; ``stop()`` ends it (tests)."""

    def __init__(self, app: Any, every_s: float) -> None:
        self._app = weakref.ref(app)
        self.every_s = every_s
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="tsallis-janitor", daemon=True)

    def start(self) -> Janitor:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            app = self._app()
            if app is None:
                return
            try:
                sweep(app)
            except Exception as e:  # the next pass tries again; the server carries on
                event("error", logging.WARNING, endpoint="janitor", error=f"{type(e).__name__}: {e}"[:300])
            del app
