"""Real-browser tests of the explorer's input handling (issue 13): one message for a refused input, and an upload
checked at once and shown with its clean prediction before Run.  Debian's Chromium via Playwright, 1440×900.

Both fail on the code before the fix: a refusal raised out of a handler bound to many outputs put a red "Error"
badge on each of them (~19 on this page), and an upload changed no panel until Run.
"""

from __future__ import annotations

import contextlib
import time

import pytest
from _kit import CHROMIUM, SCREENS, loopback_page, served_demo

import app  # noqa: F401  (offline environment before gradio)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's /usr/bin/chromium (apt-get install -y chromium)"),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from app.launch import build_demo
    from app.sources import ExampleItem
    from app.standin import register_standin, write_synthetic_example

    folder = tmp_path_factory.mktemp("browser_inputs")
    mid = register_standin()
    ip, mp = write_synthetic_example(folder, 96)
    bad = folder / "not_an_image.png"
    bad.write_text("this text file only pretends to be a PNG\n")
    demo = build_demo(mid, [ExampleItem("synthetic", "Synthetic disc (with mask)", ip, {2: mp})], folder / "none")
    with served_demo(demo) as url:
        yield {"url": url, "image": ip, "bad": bad}


@pytest.fixture()
def page(served):
    with loopback_page(served["url"]) as pg:
        pg.wait_for_selector("#image_in input[type=file]", state="attached", timeout=60_000)
        yield pg


def _badges(page) -> int:
    """Visible "Error" badges (Gradio's status tracker marks each output of an event that raised)."""
    return sum(1 for b in page.locator("span.error").all() if b.is_visible())


def _toasts(page) -> list[str]:
    return page.locator("[data-testid=toast-body]").all_inner_texts()


def _close_toasts(page) -> None:
    for btn in page.locator("[data-testid=toast-close]").all():
        with contextlib.suppress(Exception):  # already gone
            btn.click(timeout=2000)
    time.sleep(0.3)


def _wait(pred, timeout_s: float = 30.0) -> bool:
    t_end = time.time() + timeout_s
    while time.time() < t_end:
        if pred():
            return True
        time.sleep(0.1)
    return False


def test_a_refused_input_gets_one_message_and_no_error_badges(page, served, report_figure):
    page.locator("#image_in input[type=file]").set_input_files(str(served["bad"]))
    assert _wait(lambda: _toasts(page)), "no message for a file that is no image"
    time.sleep(1.0)  # anything else that would show up
    toasts, badges = _toasts(page), _badges(page)
    SCREENS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENS / "rooms_refused_upload.png"))
    assert len(toasts) == 1 and "not a readable image" in toasts[0], toasts
    assert badges == 0, f"{badges} error badges over the panels"
    _close_toasts(page)
    status_before = page.locator("#status").inner_text()
    # Run with the refused file still in the box, then an invalid schedule: one message each, nothing else changes
    page.locator("#run_btn").click()
    assert _wait(lambda: len(_toasts(page)) == 1), _toasts(page)
    time.sleep(1.0)
    assert len(_toasts(page)) == 1 and "not a readable image" in _toasts(page)[0]
    assert _badges(page) == 0 and page.locator("#status").inner_text() == status_before
    _close_toasts(page)
    page.locator("#image_in button[aria-label^='Remove'], #image_in button[aria-label='Clear']").first.click()
    page.locator("#examples img").first.click()
    assert _wait(lambda: "selected" in page.locator("#status").inner_text())
    sched = page.get_by_label("q-schedule text")
    sched.fill("const:1e6")
    sched.press("Enter")
    time.sleep(0.5)
    status_before = page.locator("#status").inner_text()
    page.locator("#run_btn").click()
    assert _wait(lambda: len(_toasts(page)) == 1), _toasts(page)
    time.sleep(1.0)
    toasts, badges = _toasts(page), _badges(page)
    page.screenshot(path=str(SCREENS / "rooms_refused_schedule.png"))
    assert len(toasts) == 1 and "q must stay within" in toasts[0], toasts
    assert badges == 0 and page.locator("#status").inner_text() == status_before
    report_figure(f"refused input (browser): an unreadable upload, Run with it, and a schedule out of range each "
                  f"gave 1 message and {badges} error badges; the status line stayed as it was")


def test_an_upload_is_checked_and_shows_its_clean_prediction_before_run(page, served, report_figure):
    t0 = time.perf_counter()
    page.locator("#image_in input[type=file]").set_input_files(str(served["image"]))

    def shown() -> bool:
        return ("checked and ready" in page.locator("#status").inner_text()
                and page.locator("#panel_clean_seg img").count() > 0 and page.locator("#panel_clean img").count() > 0)

    assert _wait(shown, 60.0), page.locator("#status").inner_text()
    dt = time.perf_counter() - t0
    assert "your upload" in page.locator("body").inner_text()  # the legend: labels = the clean prediction
    assert _badges(page) == 0 and not _toasts(page)
    SCREENS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENS / "rooms_upload_preview.png"))
    page.locator("#run_btn").click()  # and Run then attacks that very image
    assert _wait(lambda: "finished" in page.locator("#status").inner_text(), 120.0)
    assert "your upload" in page.locator("body").inner_text()
    report_figure(f"upload (browser): the clean image and its clean prediction shown {dt:.1f} s after the upload, "
                  "before Run; Run then attacked it")


def test_an_example_without_a_shipped_run_shows_its_clean_prediction(served, report_figure):
    """A shared link (or a gallery pick) of an example that has no shipped run for the model: the clean image and
    the model's clean prediction appear without Run (before, the clean-segmentation panel stayed empty)."""
    with loopback_page(served["url"] + "?example=synthetic&attack=ce&steps=3") as page:
        t0 = time.perf_counter()
        page.wait_for_selector("#status", timeout=60_000)
        assert _wait(lambda: page.locator("#panel_clean_seg img").count() > 0
                     and page.locator("#panel_clean img").count() > 0, 60.0), page.locator("#status").inner_text()
        dt = time.perf_counter() - t0
        assert "selected" in page.locator("#status").inner_text()  # no run was started
        assert page.locator("#panel_seg img").count() == 0  # nothing attacked yet
        assert _badges(page) == 0 and not _toasts(page)
    report_figure(f"shared link to an example without a shipped run: its clean prediction shown {dt:.1f} s after "
                  "the page opened, before Run")
