"""q-schedules: values at known steps, the text form, and clear errors."""

from __future__ import annotations

import math

import pytest

from attack_engine.schedules import KINDS, PRESETS, ScheduleError, parse_schedule, peak_to_q, q_to_peak


def test_paper_linear_schedule_values():
    s = parse_schedule("linear:-2:1")
    assert [s.value(k, 90) for k in (0, 30, 60, 89, 90)] == pytest.approx([-2.0, -1.0, 0.0, 1 - 3 / 90, 1.0])
    assert s.value(200, 90) == 1.0  # progress is clamped


def test_cosine_schedule_values():
    s = parse_schedule("cosine:-2:1")
    assert s.value(0, 10) == pytest.approx(-2.0)
    assert s.value(5, 10) == pytest.approx(-0.5)
    assert s.value(10, 10) == pytest.approx(1.0)
    t = 0.3
    assert s.at_progress(t) == pytest.approx(1 + (-3) * (1 + math.cos(math.pi * t)) / 2)


def test_peak_map_and_p_schedules():
    for q, p in [(-2, 0.75), (-1, 2 / 3), (0, 0.5), (0.5, 1 / 3)]:
        assert q_to_peak(q) == pytest.approx(p)
        assert peak_to_q(p) == pytest.approx(q)
    s = parse_schedule("plinear:0.9:0.1")
    assert s.value(0, 4) == pytest.approx(-8.0)
    assert s.value(4, 4) == pytest.approx((1 - 0.2) / 0.9)
    assert s.value(2, 4) == pytest.approx(peak_to_q(0.5))
    c = parse_schedule("pcosine:0.9:0.1")
    assert c.value(0, 4) == pytest.approx(-8.0) and c.value(2, 4) == pytest.approx(0.0)


def test_const_and_points():
    assert parse_schedule("const:0.5").value(7, 9) == 0.5
    assert parse_schedule("0.25").value(0, 1) == 0.25
    assert parse_schedule(-1).value(0, 1) == -1.0
    s = parse_schedule("points:0:-2,0.5:0,1:1")
    assert [s.at_progress(t) for t in (0, 0.25, 0.5, 0.75, 1)] == pytest.approx([-2, -1, 0, 0.5, 1])


@pytest.mark.parametrize("text", ["linear:-2:1", "cosine:-2:1", "const:0.5", "plinear:0.9:0.1", "pcosine:0.8:0.2",
                                  "points:0:-2,0.5:0,1:1", *PRESETS.values()])
def test_text_round_trip(text):
    s = parse_schedule(text)
    assert s.kind in KINDS
    assert parse_schedule(s.text()) == s


@pytest.mark.parametrize(("text", "msg"), [
    ("", "empty"), ("foo:1", "unknown kind"), ("linear:1", "takes 2"), ("linear:a:1", "not a number"),
    ("const:nan", "finite"), ("points:0.5:1,0.2:0", "ascending"), ("points:", "at least one"),
    ("plinear:1.5:0.1", "p\\*"), ("points:0-2", "t:q"),
])
def test_bad_text_gives_clear_error(text, msg):
    with pytest.raises(ScheduleError, match=msg):
        parse_schedule(text)
