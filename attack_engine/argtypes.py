"""Argument types shared by the command lines (``attack`` and ``eval``): each turns bad text into one clear line."""

from __future__ import annotations

import argparse
import math

from attack_engine.registry import attack_names
from attack_engine.schedules import ScheduleError, parse_schedule


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr with exit code 2 (no usage block)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_eps(text: str) -> float:
    """``8/255``, ``0.25/255`` or ``0.0314`` -> float in [0, 1]."""
    try:
        num, _, den = text.strip().partition("/")
        v = float(num) / float(den) if den else float(num)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"cannot read {text!r} as a number; write e.g. 8/255 or 0.0314") from None
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number >= 0")
    if v > 1:
        raise argparse.ArgumentTypeError(f"{text!r} is larger than 1 (image units are [0, 1]); did you mean {text}/255?")
    return v


def schedule_arg(text: str) -> str:
    """A schedule text in its canonical form."""
    try:
        return parse_schedule(text).text()
    except ScheduleError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return v


def attack_arg(text: str) -> str:
    """A registered attack id."""
    if text not in attack_names():
        raise argparse.ArgumentTypeError(f"unknown attack {text!r}; choose from {', '.join(attack_names())}")
    return text
