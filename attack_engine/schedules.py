"""q-schedules for TsallisPGD and their one-line text form.

A schedule maps the position ``step`` in a stage of ``total`` iterations to q, with progress
``t = clamp(step / total, 0, 1)`` (the paper's convention: gradient steps see t in [0, 1 - 1/total]).

Text forms (shared by the CLI, the app and saved runs):

=================================  ===========================================================
``const:Q``                        q = Q
``linear:A:B``                     q = A + (B - A) t                  (paper: ``linear:-2:1``)
``cosine:A:B``                     q = B + (A - B) (1 + cos(pi t)) / 2
``plinear:P0:P1``                  p* = P0 + (P1 - P0) t, q = (1 - 2p*) / (1 - p*)
``pcosine:P0:P1``                  p* cosine from P0 to P1, same map
``points:T0:Q0,T1:Q1,...``         piecewise linear through (t, q); t ascending in [0, 1]
=================================  ===========================================================

p* = (1-q)/(2-q) is the confidence at which the Tsallis gradient magnitude p^(1-q)(1-p) peaks.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

KINDS = ("const", "linear", "cosine", "plinear", "pcosine", "points")


class ScheduleError(ValueError):
    """A schedule text that cannot be parsed."""


def q_to_peak(q: float) -> float:
    """Gradient-peak confidence p* = (1-q)/(2-q) (valid for q < 2)."""
    return (1.0 - q) / (2.0 - q)


def peak_to_q(p: float) -> float:
    """Inverse of :func:`q_to_peak`: q = (1-2p)/(1-p), p in [0, 1)."""
    return (1.0 - 2.0 * p) / (1.0 - p)


@dataclass(frozen=True)
class Schedule:
    """A q-schedule: ``kind`` in :data:`KINDS` and its parameters (see module docstring)."""

    kind: str
    params: tuple[float, ...]
    points: tuple[tuple[float, float], ...] = ()

    def at_progress(self, t: float) -> float:
        t = min(max(t, 0.0), 1.0)
        if self.kind == "const":
            return self.params[0]
        if self.kind in ("linear", "plinear"):
            a, b = self.params
            v = a + (b - a) * t
        elif self.kind in ("cosine", "pcosine"):
            a, b = self.params
            v = b + (a - b) * (1.0 + math.cos(math.pi * t)) / 2.0
        else:  # points
            pts = self.points
            if t <= pts[0][0]:
                return pts[0][1]
            for (t0, q0), (t1, q1) in itertools.pairwise(pts):
                if t <= t1:
                    return q0 if t1 == t0 else q0 + (q1 - q0) * (t - t0) / (t1 - t0)
            return pts[-1][1]
        return peak_to_q(v) if self.kind.startswith("p") else v

    def value(self, step: int, total: int) -> float:
        """q at iteration ``step`` of a stage of ``total`` iterations."""
        if total < 1:
            raise ValueError(f"total must be >= 1, got {total}")
        return self.at_progress(step / total)

    def values(self, total: int) -> list[float]:
        """q for steps 0..total (the last is the loss-only evaluation)."""
        return [self.value(s, total) for s in range(total + 1)]

    def text(self) -> str:
        """The canonical text form; ``parse_schedule(s.text()) == s``."""
        if self.kind == "points":
            return "points:" + ",".join(f"{_fmt(t)}:{_fmt(q)}" for t, q in self.points)
        return ":".join([self.kind, *(_fmt(v) for v in self.params)])

    def __str__(self) -> str:
        return self.text()


def _fmt(v: float) -> str:
    return repr(float(v)).removesuffix(".0") if float(v).is_integer() else repr(float(v))


def _num(s: str, what: str, text: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise ScheduleError(f"schedule {text!r}: {what} {s!r} is not a number") from None
    if not math.isfinite(v):
        raise ScheduleError(f"schedule {text!r}: {what} must be finite, got {s!r}")
    return v


def parse_schedule(text: str | Schedule | float | int) -> Schedule:
    """Parse a schedule text such as ``linear:-2:1``, ``const:0.5`` or ``points:0:-2,0.5:0,1:1``.

    A bare number means a constant q.  Raises :class:`ScheduleError` with a readable message.
    """
    if isinstance(text, Schedule):
        return text
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return Schedule("const", (_num(str(text), "q", str(text)),))
    if not isinstance(text, str):
        raise ScheduleError(f"schedule must be text like 'linear:-2:1', got {type(text).__name__}")
    raw = text.strip()
    if not raw:
        raise ScheduleError("schedule is empty; try 'linear:-2:1' or 'const:0.5'")
    kind, _, rest = raw.partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        try:
            return Schedule("const", (_num(raw, "q", raw),))
        except ScheduleError:
            raise ScheduleError(f"schedule {raw!r}: unknown kind {kind!r}; use one of {', '.join(KINDS)}") from None
    if kind == "points":
        pts = []
        for item in filter(None, (p.strip() for p in rest.split(","))):
            t, sep, q = item.partition(":")
            if not sep:
                raise ScheduleError(f"schedule {raw!r}: point {item!r} must be 't:q'")
            pts.append((_num(t, "t", raw), _num(q, "q", raw)))
        if not pts:
            raise ScheduleError(f"schedule {raw!r}: give at least one point 't:q', e.g. points:0:-2,1:1")
        ts = [t for t, _ in pts]
        if any(t < 0 or t > 1 for t in ts) or any(b < a for a, b in itertools.pairwise(ts)):
            raise ScheduleError(f"schedule {raw!r}: point positions t must be ascending within [0, 1]")
        return Schedule("points", (), tuple(pts))
    parts = [p for p in rest.split(":")] if rest else []
    want = 1 if kind == "const" else 2
    if len(parts) != want:
        example = {"const": "const:0.5", "linear": "linear:-2:1", "cosine": "cosine:-2:1"}.get(kind, f"{kind}:0.9:0.1")
        raise ScheduleError(f"schedule {raw!r}: {kind} takes {want} value(s), e.g. {example}")
    vals = tuple(_num(p, "value", raw) for p in parts)
    if kind.startswith("p") and any(not 0.0 <= v < 1.0 for v in vals):
        raise ScheduleError(f"schedule {raw!r}: peak confidences p* must lie in [0, 1)")
    return Schedule(kind, vals)


PRESETS: dict[str, str] = {
    "paper: linear -2 → 1": "linear:-2:1",
    "cosine -2 → 1": "cosine:-2:1",
    "p*-linear 0.9 → 0.1": "plinear:0.9:0.1",
    "p*-cosine 0.9 → 0.1": "pcosine:0.9:0.1",
    "constant q = 0.5": "const:0.5",
    "constant q = 1 (CE)": "const:1",
}
