"""Checks of the handler inputs that Gradio's components do not check themselves, and the path scrubbing of
user-facing messages.  Every problem raises one :class:`~app.runner.InputError` naming the control."""

from __future__ import annotations

import math
import re

from app.runner import InputError
from attack_engine.registry import attack_names


def compare_attacks(attacks: object) -> list[str]:
    """The attacks a comparison runs: known names only, each once, in the order given (so at most one run per
    attack, however long the list a client sends)."""
    if not isinstance(attacks, (list, tuple)):
        return []
    return list(dict.fromkeys(a for a in attacks if isinstance(a, str) and a in attack_names()))


def whole(name: str, v: object, lo: int, hi: int) -> int:
    """A whole number within [lo, hi], else an InputError naming ``name``."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InputError(f"{name} must be a number, got {str(v)[:40]!r}")
    if isinstance(v, float) and not math.isfinite(v):
        raise InputError(f"{name} must be a finite number, got {v}")
    if not lo <= v <= hi:
        raise InputError(f"{name} must be between {lo} and {hi}")
    return int(v)


def probe_coords(x: object, y: object, hw: tuple[int, int]) -> tuple[int, int]:
    """(y, x) inside a view of ``hw``: numbers, clamped to the view; None or text is refused."""
    xi = whole("probe x", x, -(10**6), 10**6)
    yi = whole("probe y", y, -(10**6), 10**6)
    return min(max(yi, 0), hw[0] - 1), min(max(xi, 0), hw[1] - 1)


def gallery_index(index: object, n: int) -> int:
    """An index into the example gallery of ``n`` items."""
    if isinstance(index, (list, tuple)) and index:
        index = index[0]
    if n < 1:
        raise InputError("there are no examples to pick")
    return whole("example index", index, 0, n - 1)


_ABS = re.compile(r"(?<![\w:/.~])(?:~/|/)(?:[\w.@+-]+/)*([\w.@+-]*[A-Za-z_][\w.@+-]*)")


def scrub_paths(msg: str) -> str:
    """``msg`` with every absolute or ``~/`` path (home, working, cache, temp folders) reduced to its last
    component, so no server folder shows; web addresses and fractions like ``8/255`` are left alone."""
    return _ABS.sub(lambda m: m.group(1), msg)
