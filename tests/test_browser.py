"""Real-browser test: Debian's Chromium (via Playwright) drives the app like a new user would.

It loads the page, picks an example, runs 5 iterations, scrubs back, clicks a pixel, saves screenshots to
``out/screens/`` and fails if a panel stays empty or the page requests anything outside loopback.
Never run ``playwright install``: the test uses ``/usr/bin/chromium`` (``apt-get install -y chromium``).
"""

from __future__ import annotations

import time

import pytest
from _kit import CHROMIUM, LAUNCH_ARGS, SCREENS, loopback, served_demo

import app  # noqa: F401  (offline environment before gradio)

IMAGE_PANELS = ("clean", "adv", "pert", "clean_seg", "seg", "gt", "flipped", "firstflip", "weight", "grad")
PLOTS = ("hist", "curves", "mass", "probe_plot")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's /usr/bin/chromium (apt-get install -y chromium)"),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from app.launch import build_demo
    from app.sources import ExampleItem
    from app.standin import register_standin, write_synthetic_example

    folder = tmp_path_factory.mktemp("browser")
    mid = register_standin()
    ip, mp = write_synthetic_example(folder, 128)
    demo = build_demo(mid, [ExampleItem("synthetic", "Synthetic disc (with mask)", ip, {2: mp})], folder / "none")
    with served_demo(demo) as url:
        yield url


def _panel_loaded(page, name: str) -> bool:
    return page.evaluate(
        """(id) => { const im = document.querySelector('#' + id + ' img');
                     return !!im && im.complete && im.naturalWidth > 0; }""", f"panel_{name}")


def _plot_drawn(page, name: str) -> bool:
    return page.evaluate("(id) => !!document.querySelector('#' + id + ' .js-plotly-plot .main-svg')", name)


def test_new_user_flow(served):
    from playwright.sync_api import expect, sync_playwright

    SCREENS.mkdir(parents=True, exist_ok=True)
    outside: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        ctx = browser.new_context(viewport={"width": 1600, "height": 1100})

        def guard(route):
            if loopback(route.request.url):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        ctx.route("**/*", guard)
        page = ctx.new_page()
        page.on("request", lambda r: None if loopback(r.url) else outside.append(r.url))
        page.goto(served)
        page.wait_for_selector("#examples .thumbnail-item", timeout=30_000)
        page.screenshot(path=str(SCREENS / "01_loaded.png"), full_page=True)

        # pick the example
        page.locator("#examples .thumbnail-item").first.click()
        expect(page.locator("#status")).to_contain_text("selected", timeout=20_000)
        # 5 iterations, PGD (5 steps -> records 0..5)
        page.get_by_label("PGD", exact=True).check()
        steps = page.locator("#steps input[type=number]")
        steps.fill("5")
        steps.press("Enter")
        page.locator("#run_btn").click()
        expect(page.locator("#status")).to_contain_text("finished", timeout=60_000)
        expect(page.locator("#status")).to_contain_text("record 5 of 6", timeout=10_000)
        time.sleep(1.0)
        page.screenshot(path=str(SCREENS / "02_ran_5.png"), full_page=True)

        # every panel shows something
        empty = [n for n in IMAGE_PANELS if not _panel_loaded(page, n)]
        assert not empty, f"empty image panels after the run: {empty}"
        blank = [n for n in ("hist", "curves", "mass") if not _plot_drawn(page, n)]
        assert not blank, f"plots not drawn after the run: {blank}"

        # scrub back two records with the keyboard on the range input
        rng = page.locator("#scrub input[type=range]")
        rng.focus()
        rng.press("ArrowLeft")
        rng.press("ArrowLeft")
        expect(page.locator("#status")).to_contain_text("record 3 of 6", timeout=15_000)
        page.screenshot(path=str(SCREENS / "03_scrubbed.png"), full_page=True)

        # click a pixel on the current segmentation
        seg = page.locator("#panel_seg img")
        box = seg.bounding_box()
        assert box is not None
        seg.click(position={"x": box["width"] * 0.45, "y": box["height"] * 0.5})
        expect(page.locator("#probe_md")).to_contain_text("Pixel (x=", timeout=15_000)
        page.wait_for_function("() => !!document.querySelector('#probe_plot .js-plotly-plot .main-svg')",
                               timeout=15_000)
        time.sleep(0.5)
        page.screenshot(path=str(SCREENS / "04_probe.png"), full_page=True)
        empty = [n for n in IMAGE_PANELS if not _panel_loaded(page, n)]
        blank = [n for n in PLOTS if not _plot_drawn(page, n)]
        assert not empty and not blank, f"empty after probing: images {empty}, plots {blank}"

        # replay from the start with the timer
        page.locator("#play_btn").click()
        expect(page.locator("#status")).to_contain_text("record 5 of 6", timeout=20_000)
        page.screenshot(path=str(SCREENS / "05_replayed.png"), full_page=False)
        browser.close()
    assert not outside, f"the page requested addresses outside loopback: {sorted(set(outside))[:10]}"


def test_shared_link_restores_controls(served):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(served + "?example=synthetic&attack=ce&opt=pgd&eps=4&steps=7&seed=3")
        expect(page.locator("#status")).to_contain_text("selected", timeout=30_000)
        expect(page.locator("#steps input[type=number]")).to_have_value("7", timeout=10_000)
        expect(page.locator("#eps input[type=number]")).to_have_value("4")
        expect(page.locator("#attack input")).to_have_value("CE-PGD")
        page.screenshot(path=str(SCREENS / "06_shared_link.png"))
        browser.close()
