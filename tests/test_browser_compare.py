"""Real-browser tests of the Compare tab (issue 13), on Debian's Chromium via Playwright at 1440×900.

The app is served with the stand-in model on a 384-px synthetic example (maps stored at 384 px, as a live run of
a real model stores them), with a shipped run and a shipped two-attack comparison.  Each test fails on the code
before the fix (no Stop, tiles only after each attack ended, titles shrunk to ~5 px, three leaderboard columns
cut).
"""

from __future__ import annotations

import re
import time

import pytest
from _kit import CHROMIUM, SCREENS, served_demo, shipped_synthetic_demo, wait_text

import app  # noqa: F401  (offline environment before gradio)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's /usr/bin/chromium (apt-get install -y chromium)"),
]

STEPS = 20  # PGD steps per attack: 21 records
ALL = 6


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    demo = shipped_synthetic_demo(tmp_path_factory.mktemp("browser_compare"), 384, ("ce", "pgd", 8, 3, 0, 0, None),
                                  compare=(("ce", "CE-PGD"), ("tsallis", "TsallisPGD")))
    with served_demo(demo) as url:
        yield url, demo.tsallis_app


@pytest.fixture()
def slow(monkeypatch):
    """Each record takes ≥ 40 ms more, so an attack lasts about a second on any machine."""
    from app.runner import LiveRun

    orig = LiveRun.step

    def slow_step(self):
        time.sleep(0.04)
        return orig(self)

    monkeypatch.setattr(LiveRun, "step", slow_step)


SAMPLE_JS = """() => [document.querySelector('#cmp_status')?.innerText || '',
                      document.querySelector('#cmp_grid img')?.getAttribute('src') || '',
                      document.querySelector('#cmp_table')?.innerText || '']"""


def _wait_cmp(page, pattern: str, timeout_s: float = 60.0) -> str:
    return wait_text(page, "#cmp_status", pattern, timeout_s, poll_s=0.05)


def _open_compare(page, url: str) -> None:
    """The page with the shipped example, PGD with :data:`STEPS` steps, on the Compare tab."""
    page.goto(url + "?example=synthetic")
    page.wait_for_function("() => /record \\d+ of/.test(document.querySelector('#status')?.innerText || '')",
                           timeout=30_000)
    page.get_by_label("PGD", exact=True).check()
    steps = page.locator("#steps input[type=number]")
    steps.fill(str(STEPS))
    steps.press("Enter")
    time.sleep(0.5)
    page.get_by_role("tab", name="Compare attacks").click()
    _wait_cmp(page, "Precomputed comparison", 20)


def test_tiles_grow_while_each_attack_runs(served, page, slow):
    url, _ = served
    _open_compare(page, url)
    page.locator("#cmp_btn").click()
    samples, shot = [], False
    t_end = time.time() + 120
    while time.time() < t_end:
        status, src, table = page.evaluate(SAMPLE_JS)
        samples.append((status, src, table))
        if not shot and re.search(r"Running\W+CosPGD\b", status):
            page.screenshot(path=str(SCREENS / "compare_01_running.png"))
            shot = True
        if "finished" in status:
            break
        time.sleep(0.1)
    first = [(src, table) for status, src, table in samples if re.search(r"Running\W+CE-PGD\b", status) and src]
    srcs = {src for src, _ in first}
    assert len(srcs) >= 2, f"the tiles did not change while the first attack ran ({len(first)} samples)"
    assert any(re.search(rf"CE-PGD.*\b\d+/{STEPS + 1}\b", table, re.S) for _, table in first), \
        "the leaderboard had no row for the running attack"
    assert "finished" in samples[-1][0], samples[-1][0]


def test_after_a_live_run_titles_are_readable_and_the_leaderboard_fits(served, page):
    url, _ = served
    _open_compare(page, url)
    page.locator("#cmp_btn").click()
    _wait_cmp(page, "finished", 120)
    time.sleep(1.0)
    page.screenshot(path=str(SCREENS / "compare_02_finished.png"))
    page.screenshot(path=str(SCREENS / "compare_03_finished_full.png"), full_page=True)
    # the tile titles are drawn at their size (about 1:1), not shrunk with a 2,300-px grid
    from app import view

    natural, shown = page.evaluate("() => { const i = document.querySelector('#cmp_grid img'); "
                                   "return [i.naturalWidth, i.getBoundingClientRect().width]; }")
    title_px = getattr(view, "TILE_TITLE_PX", 13) * shown / natural
    problems = [] if title_px >= 12 else [f"tile titles {title_px:.1f} px on screen (grid {natural} px shown at "
                                          f"{shown:.0f} px)"]
    # every leaderboard column is inside the table's box and its header text is not cut
    cut = page.evaluate("""() => { const box = document.querySelector('#cmp_table').getBoundingClientRect();
        return Array.from(document.querySelectorAll('#cmp_table th[role=columnheader]')).filter(th => {
            const r = th.getBoundingClientRect(); const t = th.querySelector('.cell-wrap') || th;
            return r.left < box.left - 1 || r.right > box.right + 1 || t.scrollWidth > t.clientWidth + 1;
        }).map(th => th.innerText.trim()); }""")
    n_cols = page.locator("#cmp_table th[role=columnheader]").count()
    if n_cols != 7 or cut:
        problems.append(f"leaderboard: {n_cols} columns, cut at 1440 px: {cut}")
    assert not problems, problems
    rows = page.locator("#cmp_table").inner_text()
    assert all(name in rows for name in ("CE-PGD", "SegPGD", "CosPGD", "JSPGD", "MaskedPGD", "TsallisPGD"))


def test_stop_ends_a_running_comparison(served, page, slow):
    url, demo_app = served
    _open_compare(page, url)
    stop = page.locator("#cmp_stop")
    assert stop.is_disabled(), "■ Stop should be off while no comparison runs"
    page.locator("#cmp_btn").click()
    _wait_cmp(page, r"Running\W+CE-PGD\b", 60)
    assert stop.is_enabled()
    page.get_by_role("tab", name="Explore").click()  # the comparison goes on behind another tab
    time.sleep(0.5)
    page.get_by_role("tab", name="Compare attacks").click()
    _wait_cmp(page, r"Running\W+SegPGD\b", 60)
    page.locator("#cmp_stop").click()
    s = _wait_cmp(page, "Stopped", 10)
    assert "1 of 6 attacks finished" in s, s
    page.wait_for_function("() => document.querySelector('#cmp_stop')?.disabled === true", timeout=5_000)
    page.screenshot(path=str(SCREENS / "compare_04_stopped.png"))
    from app.live import STOPPED

    runs = [sess.compare_run for sess in list(demo_app.store._sessions)
            if getattr(sess, "compare_run", None) is not None]
    assert runs and not any(r.active for r in runs)
    stopped = [r for r in runs if r.state == STOPPED]
    assert len(stopped) == 1, [r.state for r in runs]
    c = stopped[0]
    done = c.progress()[0]
    time.sleep(1.0)
    assert c.progress()[0] == done, "the server kept computing after Stop"
    assert list(c.runs) == ["CE-PGD", "SegPGD"] and not c.runs["SegPGD"].finished
    # what was recorded stays for the shared slider
    assert "CE-PGD" in page.locator("#cmp_table").inner_text()
