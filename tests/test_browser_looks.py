"""Real-browser tests of the page's look (issue 13): dark mode, the phone layout, labels that do not overlap, and
the map colour bars with the probe click, on Debian's Chromium via Playwright.

Served like ``tests/test_browser_live.py``: the stand-in model with a synthetic example that has a shipped APGD run
(64-px maps shown enlarged, three stages), so the stage labels, the histogram and the colour-bar panels are all
drawn.  Screenshots go to ``out/screens/looks_*.png``.
"""

from __future__ import annotations

import io
import re
import time

import numpy as np
import pytest
from _kit import CHROMIUM, LAUNCH_ARGS, SCREENS, loopback, served_demo, shipped_synthetic_demo

import app  # noqa: F401  (offline environment before gradio)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's /usr/bin/chromium (apt-get install -y chromium)"),
]

PLOTS = ("hist", "curves", "mass")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    demo = shipped_synthetic_demo(tmp_path_factory.mktemp("browser_looks"), 128,
                                  ("tsallis", "apgd", 8.0, 10, 0, 0, "linear:-2:1"))
    with served_demo(demo) as url:
        yield url


@pytest.fixture()
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield b
        b.close()


def _page(browser, **ctx_kw):
    outside: list[str] = []
    ctx = browser.new_context(device_scale_factor=1, **ctx_kw)
    ctx.route("**/*", lambda r: r.continue_() if loopback(r.request.url) else (outside.append(r.request.url),
                                                                               r.abort()))
    pg = ctx.new_page()
    pg.outside = outside
    return pg


def _open(page, url: str, query: str = "") -> None:
    page.goto(url + "?example=synthetic" + query)
    page.wait_for_function("() => /record \\d+ of/.test(document.querySelector('#status')?.innerText || '')",
                           timeout=60_000)
    for el in PLOTS:
        page.wait_for_selector(f"#{el} .main-svg", timeout=30_000)
    time.sleep(1.0)
    assert not page.outside, page.outside[:5]


def _luminance(png: bytes) -> np.ndarray:
    from PIL import Image

    a = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)
    return a @ np.array([0.2126, 0.7152, 0.0722])


def test_plots_follow_the_dark_theme(served, browser):
    page = _page(browser, viewport={"width": 1440, "height": 900}, color_scheme="dark")
    _open(page, served, "&__theme=dark")
    assert page.evaluate("() => !!document.querySelector('.dark')"), "the page did not switch to its dark theme"
    page.screenshot(path=str(SCREENS / "looks_dark.png"))
    for el in PLOTS:
        lum = _luminance(page.locator(f"#{el} .js-plotly-plot").screenshot())
        assert np.median(lum) < 80, f"#{el}: the plot is drawn on a light background (median luminance " \
                                    f"{np.median(lum):.0f}) on the dark page"
        # axis tick labels are light on the dark page (readable), not Plotly's default dark grey
        fills = page.evaluate("(id) => Array.from(document.querySelectorAll('#' + id + ' .xtick text'))"
                              ".map(t => getComputedStyle(t).fill)", el)
        assert fills, el
        rgb = [int(v) for v in re.findall(r"\d+", fills[0])[:3]]
        assert sum(rgb) / 3 > 150, f"#{el}: tick labels drawn in {fills[0]} on the dark page"


def test_plots_stay_light_in_the_light_theme(served, browser):
    page = _page(browser, viewport={"width": 1440, "height": 900}, color_scheme="light")
    _open(page, served)
    page.screenshot(path=str(SCREENS / "looks_light.png"))
    for el in PLOTS:
        lum = _luminance(page.locator(f"#{el} .js-plotly-plot").screenshot())
        assert np.median(lum) > 200, f"#{el}: median luminance {np.median(lum):.0f} on the light page"


def _in_view(box: dict, height: float) -> bool:
    return box is not None and box["y"] >= -1 and box["y"] + box["height"] <= height + 1


def test_phone_keeps_the_slider_and_the_panel_in_view(served, browser):
    """At 390×844 the record slider and the panel one scrolls to are on screen together, for every panel."""
    page = _page(browser, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    _open(page, served)
    for i, sel in enumerate(("#panel_adv", "#panel_seg", "#panel_flipped", "#panel_weight", "#hist", "#curves")):
        page.locator(sel).scroll_into_view_if_needed()
        time.sleep(0.3)
        slider = page.locator("#scrub").bounding_box()
        panel = page.locator(sel).bounding_box()
        assert _in_view(panel, 844), f"{sel} not on screen after scrolling to it: {panel}"
        assert _in_view(slider, 844), f"the record slider is off screen ({slider}) while {sel} is shown ({panel})"
        if sel == "#panel_weight":
            page.screenshot(path=str(SCREENS / "looks_phone.png"))
        if i == 2:  # the slider still works from there: a key press moves the record
            rng = page.locator("#scrub input[type=range]")
            rng.focus()
            rng.press("End")
            page.wait_for_function("() => /record \\d+ of/.test(document.querySelector('#status').innerText)"
                                   " && !/record 0 of/.test(document.querySelector('#status').innerText)",
                                   timeout=15_000)


def _boxes(page, el: str, selector: str) -> list[dict]:
    return page.evaluate("([id, sel]) => Array.from(document.querySelectorAll('#' + id + ' ' + sel))"
                         ".map(e => e.getBoundingClientRect().toJSON()).filter(b => b.width > 0 && b.height > 0)",
                         [el, selector])


def _overlap(a: dict, b: dict, tol: float = 0.5) -> bool:
    return (min(a["right"], b["right"]) - max(a["left"], b["left"]) > tol
            and min(a["bottom"], b["bottom"]) - max(a["top"], b["top"]) > tol)


def test_legends_and_stage_labels_do_not_overlap(served, browser):
    page = _page(browser, viewport={"width": 1440, "height": 900})
    _open(page, served)
    for el in PLOTS:
        legend = _boxes(page, el, ".legend .bg")
        assert legend, el
        for part in (".g-xtitle", ".xtick text", ".g-ytitle", ".g-y2title"):
            for b in _boxes(page, el, part):
                assert not _overlap(legend[0], b), f"#{el}: the legend covers {part} ({legend[0]} vs {b})"
        for ax in ("xtick", "ytick", "y2tick", "y3tick", "y4tick"):  # tick labels of one axis never collide
            ticks = _boxes(page, el, f".{ax} text")
            for i, a in enumerate(ticks):
                for b in ticks[i + 1:]:
                    assert not _overlap(a, b, tol=1.0), f"#{el}: {ax} labels overlap ({a} vs {b})"
    for el in (*PLOTS, "preview_plot"):  # titles fit in their figure (not cut at its edges)
        fig = page.locator(f"#{el}").bounding_box()  # the block: what is not inside it is cut off
        for part in (".gtitle", ".g-xtitle", ".g-x2title"):
            for t in _boxes(page, el, part):
                assert fig["x"] - 1 <= t["left"] and t["right"] <= fig["x"] + fig["width"] + 1, \
                    f"#{el}: {part} runs past the figure ({t} vs {fig})"
    labels = _boxes(page, "curves", ".annotation")
    assert len(labels) >= 2, "the metrics plot lost its APGD stage labels"
    for a, b in zip(labels, labels[1:], strict=False):
        assert not _overlap(a, b), f"stage labels overlap: {a} vs {b}"
    plot_top = min(b["top"] for b in _boxes(page, "curves", ".draglayer .nsewdrag"))
    title = _boxes(page, "curves", ".gtitle")
    for a in labels:
        assert a["bottom"] <= plot_top + 1, f"a stage label reaches into the traces: {a} (plot top {plot_top})"
        assert not title or not _overlap(a, title[0]), f"a stage label covers the title: {a}"
    page.locator("#hist").screenshot(path=str(SCREENS / "looks_hist.png"))
    page.locator("#curves").screenshot(path=str(SCREENS / "looks_curves.png"))


def test_map_colour_bar_is_drawn_and_clicks_on_it_do_not_probe(served, browser):
    """The weight map carries its colour bar below the map; a click on the map probes the pixel under it, a click
    on the bar changes nothing."""
    page = _page(browser, viewport={"width": 1440, "height": 900})
    _open(page, served)
    page.wait_for_function("() => { const i = document.querySelector('#panel_weight img'); "
                           "return i && i.complete && i.naturalWidth > 0; }", timeout=20_000)
    nat = page.evaluate("() => { const i = document.querySelector('#panel_weight img');"
                        " return [i.naturalWidth, i.naturalHeight]; }")
    assert nat[1] > nat[0], f"the weight panel has no strip below its (square) map: {nat}"
    box = page.evaluate("""() => { const i = document.querySelector('#panel_weight img');
        const r = i.getBoundingClientRect(); const s = Math.min(r.width / i.naturalWidth, r.height / i.naturalHeight);
        const w = i.naturalWidth * s, h = i.naturalHeight * s;
        return {x: (r.width - w) / 2, y: (r.height - h) / 2, w, h}; }""")
    map_h = box["h"] * nat[0] / nat[1]  # the map is square (64×64 view); the rest is the bar
    img = page.locator("#panel_weight img")

    def probed() -> tuple[int, int] | None:
        m = re.search(r"Pixel \(x=(\d+), y=(\d+)\)", page.locator("#probe_md").inner_text())
        return (int(m.group(1)), int(m.group(2))) if m else None

    fx, fy = 0.3, 0.8
    img.click(position={"x": box["x"] + fx * box["w"], "y": box["y"] + fy * map_h})
    want = (int(fx * 64), int(fy * 64))
    t_end = time.time() + 15
    while time.time() < t_end and (probed() is None or max(abs(a - b) for a, b in zip(probed(), want,
                                                                                        strict=True)) > 1):
        time.sleep(0.1)
    got = probed()
    assert got is not None and max(abs(a - b) for a, b in zip(got, want, strict=True)) <= 1, (got, want)
    img.click(position={"x": box["x"] + 0.5 * box["w"], "y": box["y"] + map_h + 0.5 * (box["h"] - map_h)})
    time.sleep(2.0)
    assert probed() == got, f"a click on the colour bar moved the probe to {probed()}"
    page.locator("#panel_weight").screenshot(path=str(SCREENS / "looks_weight_bar.png"))
