"""The background attack comparison (:class:`app.comparison.Comparison`), without a server: attacks in order,
each recording complete and equal to a run computed directly, Stop within a record, the time limit, errors."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import app  # noqa: F401  (offline environment before gradio)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from app.runner import prepare
    from app.standin import TinySeg, write_synthetic_example

    ip, mp = write_synthetic_example(tmp_path_factory.mktemp("cmp"), 48)
    model = TinySeg().freeze()
    return model, prepare(str(ip), str(mp), model, "synthetic")


def _cfgs(steps: int = 3):
    from app.runner import make_config

    return [make_config(a, "pgd", 8, steps, 0, 0, None) for a in ("ce", "js", "tsallis")]


def _comparison(setup, cfgs, time_limit_s=60.0, slow_s=0.0, on_end=None):
    from app.comparison import Comparison
    from app.runner import LiveRun

    model, prep = setup

    def make(cfg):
        live = LiveRun(model, prep, cfg, light=True)
        if slow_s:
            orig = live.step

            def step():
                time.sleep(slow_s)
                return orig()

            live.step = step
        return live

    return Comparison(cfgs, make, threading.BoundedSemaphore(1), time_limit_s, on_end=on_end)


def test_attacks_run_in_order_and_match_a_direct_run(setup):
    from app.live import FINISHED
    from app.runner import LiveRun

    ends = []
    c = _comparison(setup, _cfgs(), on_end=lambda *a: ends.append(a)).start()
    assert c.ended.wait(60)
    assert c.state == FINISHED and list(c.runs) == ["CE-PGD", "JSPGD", "TsallisPGD"]
    assert all(t.finished and len(t) == 4 for t in c.runs.values())
    assert ends == [(FINISHED, 12, ends[0][2])]
    model, prep = setup
    direct = LiveRun(model, prep, _cfgs()[1], light=True).run_all()
    got = c.runs["JSPGD"]
    assert np.array_equal(np.stack(got.pred), np.stack(direct.pred))
    assert got.scalars("acc").tolist() == direct.scalars("acc").tolist()


def test_halt_stops_within_a_record_and_never_starts_the_rest(setup):
    from app.live import STOPPED

    c = _comparison(setup, _cfgs(steps=200), slow_s=0.02).start()
    t_end = time.time() + 30
    while time.time() < t_end and c.progress()[0] < 3:
        time.sleep(0.01)
    t0 = time.perf_counter()
    c.halt(STOPPED, wait_s=5.0)
    dt = time.perf_counter() - t0
    assert not c.active and c.state == STOPPED and dt < 1.0, dt
    n = c.progress()[0]
    assert list(c.runs) == ["CE-PGD"] and 3 <= n < 201 and not c.runs["CE-PGD"].finished
    time.sleep(0.3)
    assert c.progress()[0] == n  # nothing computed after the halt


def test_time_limit_and_errors_end_the_comparison(setup):
    from app.live import ERROR, TIME_LIMIT

    c = _comparison(setup, _cfgs(steps=200), time_limit_s=0.3, slow_s=0.02).start()
    assert c.ended.wait(30) and c.state == TIME_LIMIT and list(c.runs) == ["CE-PGD"]

    def broken(cfg):
        raise RuntimeError("no model today")

    c = _comparison(setup, _cfgs())
    c.make = broken
    c.start()
    assert c.ended.wait(10) and c.state == ERROR and "no model today" in c.error and not c.runs
