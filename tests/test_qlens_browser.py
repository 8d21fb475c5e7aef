"""Real-browser test of the q-lens tab on a shipped run (Debian chromium via Playwright).

From the first page: ★ Best iterate, then the q-lens tab (2 clicks) — the shares table must show the gradient mass
moving from correct to already-wrong pixels between q = −2 and q = 1.  Then the what-if slider (client-side
redraw, compared with the server's numbers), a bar click lighting pixels up, the margin axis and the lesson.
Screenshots go to ``out/screens/qlens_*.png`` (the README's come from ``scripts/qlens_screens.py``).
"""

from __future__ import annotations

import pytest
from _kit import CHROMIUM, LAUNCH_ARGS, SCREENS, served_demo

import app  # noqa: F401  (offline environment before gradio)
from app.sources import PRECOMPUTED_DIR

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's /usr/bin/chromium (apt-get install -y chromium)"),
]


@pytest.fixture(scope="module")
def served():
    from app.launch import build_demo

    with served_demo(build_demo(precomputed_dir=PRECOMPUTED_DIR)) as url:
        yield url


def read_shares(page) -> dict[str, dict[str, float]]:
    """The q-lens shares table: {q text: {conf, unc, wrong}}."""
    return page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('#qlens_shares_table tr[data-q]')]
        .map((r) => [r.dataset.q, {conf: +r.dataset.conf, unc: +r.dataset.unc, wrong: +r.dataset.wrong}]))""")


def set_whatif(page, q: float) -> None:
    page.evaluate("""(q) => { const el = document.querySelector('#qlens_whatif input[type=range]');
        el.value = q; el.dispatchEvent(new Event('input', {bubbles: true})); }""", q)


def click_tallest_bar(page) -> None:
    """A real mouse click on the centre of the histogram's tallest bar."""
    page.locator("#qlens_hist").scroll_into_view_if_needed()
    box = page.evaluate("""() => { let best = null;
        for (const p of document.querySelectorAll('#qlens_hist .bars path')) {
          const r = p.getBoundingClientRect();
          if (!best || r.height > best.height) best = {x: r.x + r.width / 2, y: r.y + r.height / 2, height: r.height};
        } return best; }""")
    assert box and box["height"] > 2, box
    page.mouse.click(box["x"], box["y"])


def open_lens(page) -> None:
    """From the first page: ★ Best iterate (click 1), then the q-lens tab (click 2)."""
    from playwright.sync_api import expect

    expect(page.locator("#status")).to_contain_text("Precomputed run loaded", timeout=60_000)
    page.locator("#best_btn").click()
    expect(page.locator("#status")).to_contain_text("best iterate", timeout=20_000)
    page.get_by_role("tab", name="q-lens").click()
    page.wait_for_selector("#qlens_shares_table tr[data-q='1']", timeout=30_000)
    page.wait_for_selector("#qlens_grid .js-plotly-plot .main-svg", timeout=30_000)
    page.wait_for_selector("#qlens_hist .js-plotly-plot .main-svg", timeout=30_000)


def test_qlens_shows_the_shift_of_gradient_mass(served):
    from playwright.sync_api import expect, sync_playwright

    SCREENS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        page.goto(served)
        open_lens(page)
        status = page.locator("#status").inner_text()
        best = int(status.split("record ")[1].split(" ")[0])
        expect(page.locator("#qlens_note")).to_contain_text(f"Record {best} of", timeout=10_000)
        s = read_shares(page)
        lo, hi = s["-2"], s["1"]
        assert lo["conf"] + lo["unc"] > hi["conf"] + hi["unc"], s
        assert hi["wrong"] > lo["wrong"], s
        assert all(abs(v["conf"] + v["unc"] + v["wrong"] - 1) < 1e-4 for v in s.values())
        page.screenshot(path=str(SCREENS / "qlens_tab.png"), full_page=True)

        # what-if q, drawn in the browser, agrees with the server's shares for the same q
        set_whatif(page, 1.0)
        page.wait_for_function("() => window.__qlensWhatif && window.__qlensWhatif.q === 1", timeout=10_000)
        expect(page.locator("#qlens_hist .gtitle")).to_contain_text("what-if q = 1.00")
        client = page.evaluate("() => window.__qlensWhatif.shares")
        assert [round(v, 3) for v in client] == pytest.approx([hi["conf"], hi["unc"], hi["wrong"]], abs=2e-3)
        set_whatif(page, -2.0)
        page.wait_for_function("() => window.__qlensWhatif.q === -2", timeout=10_000)
        assert page.evaluate("() => window.__qlensWhatif.shares") == pytest.approx(
            [lo["conf"], lo["unc"], lo["wrong"]], abs=2e-3)

        # a bar click lights its pixels up; the mass-band radio does too
        click_tallest_bar(page)
        expect(page.locator("#qlens_note")).to_contain_text("lit up", timeout=15_000)
        page.locator("#qlens_highlight").get_by_label("already wrong").check()
        expect(page.locator("#qlens_note")).to_contain_text("lit up: already wrong", timeout=15_000)

        # the margin axis for this saturated model
        page.locator("#qlens_axis").get_by_label("margin (log-odds): for saturated models").check()
        expect(page.locator("#qlens_hist .xtitle")).to_contain_text("margin", timeout=15_000)
        page.screenshot(path=str(SCREENS / "qlens_margin.png"), full_page=True)

        # the guided lesson: start, next, leave
        page.locator("#qlens_lesson").get_by_text("Guided lesson").click()
        page.locator("#qlens_lesson_start").click()
        expect(page.locator("#qlens_lesson_md")).to_contain_text("Step 1 of 6", timeout=20_000)
        page.locator("#qlens_lesson_next").click()
        expect(page.locator("#qlens_lesson_md")).to_contain_text("Step 2 of 6", timeout=20_000)
        expect(page.locator("#qlens_note")).to_contain_text("Record 8 of", timeout=20_000)
        expect(page.locator("#qlens_note")).to_contain_text("uncertain-correct", timeout=20_000)
        page.locator("#qlens_lesson_leave").click()
        expect(page.locator("#qlens_lesson_md")).to_contain_text("Lesson left", timeout=10_000)
        browser.close()
