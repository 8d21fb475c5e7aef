"""The live view's pull (``App.pull``, the page's timer tick) always ends a run on its final record.

Called directly, without a browser: the run's end is forced into the worst moments (while a pull renders an
older record; a final view that fails to render), and the last view before the timer goes off must show the
finished run's last record.
"""

from __future__ import annotations

import pytest

import app  # noqa: F401  (offline environment before gradio)

STEPS = 5


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from app.launch import build_demo
    from app.sources import ExampleItem
    from app.standin import register_standin, write_synthetic_example

    folder = tmp_path_factory.mktemp("pull")
    mid = register_standin()
    ip, mp = write_synthetic_example(folder, 48)
    demo = build_demo(mid, [ExampleItem("synthetic", "Synthetic", ip, {2: mp})], folder / "none")
    yield demo.tsallis_app, mid
    demo.tsallis_janitor.stop()
    demo.close()


def _start(application, mid):
    from app.request import RunRequest
    from app.sessions import Session

    sess = Session()
    application.store.touch(sess)
    application.start(RunRequest(None, None, "synthetic", mid, "ce", "pgd", 8, STEPS, 0, 0, ""), sess)
    return sess


def _pull_until_off(application, sess, limit: int = 2000) -> list[dict]:
    """Tick the pull until it turns the timer off; every answer, in order (a raised tick is recorded as {})."""
    answers, shown = [], 0
    for _ in range(limit):
        try:
            a = application.pull(shown, sess)
        except RuntimeError:
            a = {}
        answers.append(a)
        if a.get("slider") is not None and a["slider"].value is not None:  # the page's slider takes the view
            shown = a["slider"].value
        timer = a.get("live_timer")
        if timer is not None and not timer.active:
            return answers
    raise AssertionError("the pull never turned the timer off")


def _last_painted(answers: list[dict]) -> str:
    painted = [a["status"] for a in answers if "status" in a]
    assert painted, "no view was sent"
    return painted[-1]


def test_run_ending_while_a_pull_renders(built, monkeypatch):
    """The run ends after a pull read 'still running' and before it rendered: the next tick sends the end."""
    application, mid = built
    real = application._main_values
    held = {"done": False}

    def render_after_the_end(sess, *a, **k):
        if k.get("live") and not held["done"] and sess.comp is not None:
            held["done"] = True
            assert sess.comp.ended.wait(60), "the run did not end"
        return real(sess, *a, **k)

    monkeypatch.setattr(application, "_main_values", render_after_the_end)
    sess = _start(application, mid)
    answers = _pull_until_off(application, sess)
    assert held["done"]
    last = _last_painted(answers)
    assert f"record **{STEPS}** of {STEPS + 1}" in last and "finished" in last, last


def test_final_view_failing_once_is_sent_again(built, monkeypatch):
    """A final view that fails to render (the page keeps its outputs) is not taken as sent: the next tick
    renders it again instead of switching the timer off over an older record."""
    application, mid = built
    real = application._main_values
    failed = {"n": 0}

    def fail_first_final(sess, *a, **k):
        if not k.get("live", True) and failed["n"] == 0:
            failed["n"] += 1
            raise RuntimeError("render failed")
        return real(sess, *a, **k)

    sess = _start(application, mid)
    assert sess.comp.ended.wait(60)
    monkeypatch.setattr(application, "_main_values", fail_first_final)
    answers = _pull_until_off(application, sess)
    assert failed["n"] == 1 and answers[0] == {}
    last = _last_painted(answers)
    assert f"record **{STEPS}** of {STEPS + 1}" in last and "finished" in last, last


def test_a_run_ending_in_error_is_logged_without_server_paths():
    import logging
    import threading

    from app.live import ERROR, Computation
    from app.observe import LOGGER_NAME, logger

    class Failing:  # a live run whose second record fails to compute
        def __init__(self) -> None:
            self.traj: list[int] = []
            self.done = False

        def step(self) -> bool:
            if self.traj:
                raise OSError("cannot read /home/alice/.cache/torch/hub/checkpoints/weights.pth")
            self.traj.append(0)
            return True

    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append
    logger().addHandler(handler)
    try:
        c = Computation(Failing(), threading.Semaphore(1), 60.0).start()
        assert c.ended.wait(10)
    finally:
        logging.getLogger(LOGGER_NAME).removeHandler(handler)
    assert c.state == ERROR and c.error == "OSError: cannot read weights.pth"
    errors = [r.fields for r in seen if getattr(r, "event", "") == "error"]
    assert errors == [{"endpoint": "live_run", "error": "OSError: cannot read weights.pth", "records": 1}]


def test_final_view_lost_on_its_way_is_sent_again(built):
    """The final view left the handler but the page never got it (its slider still holds an older record): the
    pull sends it again instead of switching the timer off, a bounded number of times."""
    from app.ui import FINAL_RESENDS

    application, mid = built
    sess = _start(application, mid)
    assert sess.comp.ended.wait(60)
    answers = [application.pull(1, sess) for _ in range(FINAL_RESENDS + 3)]  # the page stays on record 1
    finals = [a for a in answers if "status" in a]
    assert len(finals) == 1 + FINAL_RESENDS
    assert all(f"record **{STEPS}** of {STEPS + 1}" in a["status"] for a in finals)
    off = [i for i, a in enumerate(answers) if a.get("live_timer") is not None and not a["live_timer"].active]
    assert off and off[0] == FINAL_RESENDS + 1  # then it gives up: no endless re-sending
    sess = _start(application, mid)
    assert sess.comp.ended.wait(60)
    first, second = application.pull(0, sess), application.pull(STEPS, sess)  # the page got it: timer off
    assert "status" in first and "status" not in second and not second["live_timer"].active


def test_pause_while_streaming_answers_light_and_the_next_tick_brings_the_view(built, monkeypatch):
    """Pause during a streaming run answers with the status line and the slider only (the page paints it at
    once); the timer stays on and its next tick sends the paused run's full view, panels included."""
    import time

    from app.request import RunRequest
    from app.runner import LiveRun
    from app.sessions import Session

    application, mid = built
    real_step = LiveRun.step
    monkeypatch.setattr(LiveRun, "step", lambda self: (time.sleep(0.02), real_step(self))[1])
    sess = Session()
    application.store.touch(sess)
    application.start(RunRequest(None, None, "synthetic", mid, "ce", "pgd", 8, 200, 0, 0, ""), sess)
    while len(sess.comp.live.traj) < 3:
        time.sleep(0.01)
    answer = application.pause(sess)
    assert "Paused" in answer["status"] and answer["live_timer"].active
    assert "seg" not in answer and "curves" not in answer  # no panels, no charts in the answer itself
    answers = _pull_until_off(application, sess)
    full = [a for a in answers if "seg" in a]
    assert full, "no tick sent the paused run's panels"
    n = len(sess.traj)
    assert n < 201 and f"of {n} recorded" in full[-1]["status"] and "Paused" in full[-1]["status"], full[-1]["status"]


def test_the_pull_follows_the_tab_the_page_shows(built):
    """Explore gets whole views, the q-lens (which follows the record slider) the status and slider only, any
    other tab nothing (the timer goes off); showing Explore again sends the newest whole view."""
    from app.panels import main_names

    application, mid = built
    sess = _start(application, mid)
    assert sess.comp.ended.wait(60)
    panels = set(main_names()) - {"status"}
    away = application.tab_shown("compare", sess)
    assert away["live_timer"].active is False
    off = application.pull(0, sess)
    assert off["live_timer"].active is False and not panels & set(off), "a hidden explorer was sent a view"
    lens = application.tab_shown("qlens", sess)
    assert lens["live_timer"].active is True
    a = application.pull(0, sess)
    assert a["slider"].value == STEPS and "status" in a and not panels & set(a)
    back = application.tab_shown("explore", sess)
    assert back["live_timer"].active is True
    whole = application.pull(0, sess)
    assert whole["slider"].value == STEPS and panels <= set(whole), sorted(panels - set(whole))
    assert application.tab_shown("explore", sess) == {"state": sess}, "the final view is shown: nothing to send"


def test_scrubbing_a_computing_run_says_it_runs(built, monkeypatch):
    """A scrub, Best iterate or probe while the run computes shows the record and "running" (it said "paused")."""
    import threading
    import time

    from app.runner import LiveRun

    application, mid = built
    gate, orig, done = threading.Event(), LiveRun.step, []

    def held_step(self):  # two records, then the run waits (still computing) until the test lets it go
        if len(done) >= 2:
            gate.wait(30)
        done.append(orig(self))
        return done[-1]

    monkeypatch.setattr(LiveRun, "step", held_step)
    sess = _start(application, mid)
    while len(done) < 2:
        time.sleep(0.01)
    try:
        for answer in (application.scrub(0, sess), application.goto_best(sess), application.probe(3, 4, sess)):
            assert "running" in answer["status"] and "paused" not in answer["status"], answer["status"]
    finally:
        gate.set()
    assert sess.comp.ended.wait(60)
    assert "finished" in application.scrub(0, sess)["status"]
