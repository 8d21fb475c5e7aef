"""The served process's log output: JSON lines only.

:func:`configure` (called by :func:`app.launch.main` and any script that serves the app):

* the loggers of the libraries underneath (uvicorn, Gradio, httpx, asyncio, warnings) write JSON lines
  ``{"event": "library", "logger": ..., "message": ...}``: the message cut to 300 characters, an exception as
  its type only (no traceback, no values);
* ``sys.stderr`` (and ``sys.stdout``) become :class:`JsonLines` streams: a line that is already a JSON object passes, any other
  text that a library prints directly (``traceback.print_exc()``, ``print(..., file=sys.stderr)``) becomes one
  ``{"event": "stderr", "text": ...}`` line cut to 300 characters, and a traceback collapses to its last line.

Expected refusals print nothing but their ``rejected`` line (``gr.Error(..., print_exception=False)``).
"""

from __future__ import annotations

import io
import json
import logging
import sys
import time
from typing import Any, TextIO

MAX_TEXT = 300
LIBRARY_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "gradio", "httpx", "httpcore", "asyncio",
                   "py.warnings", "fastapi", "starlette")


def _cut(s: str) -> str:
    return s if len(s) <= MAX_TEXT else s[:MAX_TEXT] + "…"


class LibraryFormatter(logging.Formatter):
    """A foreign log record as one short JSON line (message cut, exception type only)."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            msg = record.getMessage()
        except Exception:  # a record whose arguments do not fit its format string
            msg = str(record.msg)
        out: dict[str, Any] = {"ts": round(record.created, 3), "level": record.levelname.lower(),
                               "event": "library", "logger": record.name, "message": _cut(msg.splitlines()[0]
                                                                                           if msg else "")}
        if record.exc_info and record.exc_info[0] is not None:
            out["exception"] = record.exc_info[0].__name__
        return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


class JsonLines(io.TextIOBase):
    """A text stream that writes only JSON lines to ``target`` (see the module docstring)."""

    def __init__(self, target: TextIO, event: str = "stderr") -> None:
        self.target = target
        self.event = event
        self._buf = ""
        self._in_traceback = False

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self._buf += s
        if len(self._buf) > 1 << 20:  # a gigantic line without newline: keep its head only
            self._buf = self._buf[: 4 * MAX_TEXT] + "\n"
        while "\n" in self._buf:
            line, self._buf = self._buf.split("\n", 1)
            self._line(line)
        return len(s)

    def _line(self, line: str) -> None:
        s = line.strip()
        if not s:
            return
        if s.startswith("{") and s.endswith("}"):
            try:
                json.loads(s)
                self._emit(s)
                return
            except ValueError:
                pass
        if s.startswith("Traceback (most recent call last)"):
            self._in_traceback = True
            return
        if self._in_traceback and (line.startswith((" ", "\t")) or s.startswith(("During handling", "The above",
                                                                                   "^", "~"))):
            return
        was_tb, self._in_traceback = self._in_traceback, False
        self._emit(json.dumps({"ts": round(time.time(), 3), "level": "error" if was_tb else "info",
                               "event": "traceback" if was_tb else self.event, "text": _cut(s)},
                              ensure_ascii=False, separators=(",", ":")))

    def _emit(self, s: str) -> None:
        self.target.write(s + "\n")
        self.target.flush()

    def flush(self) -> None:
        self.target.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.target.fileno()


def configure(stream: TextIO | None = None) -> None:
    """Library loggers to JSON and ``sys.stderr`` through :class:`JsonLines` (idempotent)."""
    if not isinstance(sys.stderr, JsonLines):
        sys.stderr = JsonLines(sys.stderr)
    if not isinstance(sys.stdout, JsonLines):  # Gradio prints its start-up lines
        sys.stdout = JsonLines(sys.stdout, event="stdout")
    out = stream or sys.stderr
    logging.captureWarnings(True)
    handler = logging.StreamHandler(out)
    handler.setFormatter(LibraryFormatter())
    handler._tsallis_library = True
    for name in LIBRARY_LOGGERS:
        log = logging.getLogger(name)
        log.handlers = [h for h in log.handlers if not getattr(h, "_tsallis_library", False)]
        if name in ("uvicorn.error", "uvicorn.access", "httpcore"):
            log.handlers = []
            log.propagate = True  # into "uvicorn" / "httpcore"'s parent below
            continue
        log.handlers = [handler]
        log.propagate = False
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
