"""Structured logs: one JSON object per line on stderr (logger ``tsallis.app``).

Events: ``start`` (limits, models), ``run`` (one per attack request: model, attack, optimiser, steps, records,
duration, outcome), ``rejected`` (an input refused, with the message the user saw), ``error`` (an unexpected
failure), ``evicted`` (stored runs dropped for memory or expiry).  Nothing from a user's image is logged: no
pixels, no file names, no hashes of the content; sessions appear as random ids.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from typing import Any

LOGGER_NAME = "tsallis.app"
_MAX_FIELD = 300  # characters kept of any text field


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": round(record.created, 3), "level": record.levelname.lower(),
                               "event": getattr(record, "event", record.getMessage())}
        for k, v in (getattr(record, "fields", None) or {}).items():
            out[k] = _clean(v)
        return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


def _clean(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 4) if math.isfinite(v) else None
    if isinstance(v, str):
        return v if len(v) <= _MAX_FIELD else v[:_MAX_FIELD] + "…"
    if isinstance(v, (bool, int)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v[:50]]
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in list(v.items())[:50]}
    return _clean(str(v))


def logger() -> logging.Logger:
    """The app's logger, with a JSON-lines handler on stderr added once (``TSALLIS_LOG_LEVEL``, default INFO)."""
    log = logging.getLogger(LOGGER_NAME)
    if not any(getattr(h, "_tsallis", False) for h in log.handlers):
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(JsonFormatter())
        h._tsallis = True
        log.addHandler(h)
        log.setLevel(os.environ.get("TSALLIS_LOG_LEVEL", "INFO").upper())
        log.propagate = False
    return log


def event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one structured event."""
    logger().log(level, name, extra={"event": name, "fields": fields})
