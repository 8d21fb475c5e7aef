"""Real-browser test of the "Debug classes" tab on a multi-class model the test builds (tests/_multiclass.py).

Chromium (Debian's, via Playwright) runs 6 PGD steps on a scene with objects of five classes and very different
sizes, opens the tab and checks the three figures and the summary, then scrubs and updates; screenshots go to
``out/screens/debug_*.png``.  Nothing outside loopback may be requested.
"""

from __future__ import annotations

import time

import pytest
from _kit import CHROMIUM, LAUNCH_ARGS, SCREENS, served_demo
from _multiclass import ColourSeg, write_scene

import app  # noqa: F401  (offline environment before gradio)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's /usr/bin/chromium (apt-get install -y chromium)"),
]
MODEL_ID = "colour-seg-browser"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from app.launch import build_demo
    from app.sources import ExampleItem
    from attack_engine.models.registry import ModelEntry, register

    register(ModelEntry(id=MODEL_ID, title="Colour classifier (6 classes, test)", family="custom", num_classes=6,
                        licence="MIT", source="tests/_multiclass.py",
                        loader=lambda device="cpu", **kw: ColourSeg(model_id=MODEL_ID).to(device)))
    folder = tmp_path_factory.mktemp("browser_debug")
    ip, mp = write_scene(folder, 96)
    demo = build_demo(MODEL_ID, [ExampleItem("scene", "Scene (6 classes, with mask)", ip, {6: mp})], folder / "none")
    with served_demo(demo) as url:
        yield url


def _plot_drawn(page, elem: str) -> bool:
    return page.evaluate("(id) => !!document.querySelector('#' + id + ' .js-plotly-plot .main-svg')", elem)


def test_debug_tab_on_a_multi_class_run(served):
    from playwright.sync_api import expect, sync_playwright

    SCREENS.mkdir(parents=True, exist_ok=True)
    outside: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1200})
        page.on("request", lambda r: None if r.url.startswith(("http://127.0.0.1", "data:", "blob:"))
                else outside.append(r.url))
        page.goto(served)
        page.wait_for_selector("#examples .thumbnail-item", timeout=30_000)
        page.locator("#examples .thumbnail-item").first.click()
        expect(page.locator("#status")).to_contain_text("selected", timeout=20_000)
        page.get_by_label("PGD", exact=True).check()
        steps = page.locator("#steps input[type=number]")
        steps.fill("6")
        steps.press("Enter")
        t0 = time.perf_counter()
        page.locator("#run_btn").click()
        expect(page.locator("#status")).to_contain_text("finished", timeout=60_000)
        run_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        page.get_by_role("tab", name="Debug classes").click()
        expect(page.locator("#debug_summary")).to_contain_text("Record 6", timeout=20_000)
        for elem in ("debug_iou", "debug_flips", "debug_sizes"):
            page.wait_for_function("(id) => !!document.querySelector('#' + id + ' .js-plotly-plot .main-svg')",
                                   arg=elem, timeout=20_000)
        tab_s = time.perf_counter() - t0
        summary = page.locator("#debug_summary").inner_text()
        assert "First to fall" in summary and "changed class" in summary and "ground truth" in summary, summary
        assert page.locator("#debug_flips .heatmaplayer").count() == 1, "the flip matrix is a heatmap"
        assert page.locator("#debug_iou .scatterlayer .trace").count() >= 5, "one IoU line per class (plus marks)"
        assert page.locator("#debug_sizes .bars path").count() >= 3
        time.sleep(0.5)
        page.screenshot(path=str(SCREENS / "debug_01_after_run.png"), full_page=True)

        # scrub back on the Explore tab, then update the debug view for that record
        page.get_by_role("tab", name="Explore").click()
        rng = page.locator("#scrub input[type=range]")
        rng.focus()
        for _ in range(4):
            rng.press("ArrowLeft")
        expect(page.locator("#status")).to_contain_text("record 2 of 7", timeout=15_000)
        page.get_by_role("tab", name="Debug classes").click()
        expect(page.locator("#debug_summary")).to_contain_text("Record 2", timeout=15_000)
        page.locator("#debug_update").click()
        expect(page.locator("#debug_summary")).to_contain_text("Record 2", timeout=15_000)
        time.sleep(0.5)
        page.screenshot(path=str(SCREENS / "debug_02_record_2.png"), full_page=True)
        browser.close()
    print(f"\nbrowser debug tab: run of 6 steps {run_s:.2f} s, tab drawn {tab_s:.2f} s after the click")
    assert not outside, f"requests outside loopback: {sorted(set(outside))[:10]}"
