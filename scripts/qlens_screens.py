"""Screenshots of the q-lens views for the README (``docs/screens/qlens_*.png``), from the real app in Chromium.

Usage::

    python scripts/qlens_screens.py [--port 7884] [--out docs/screens]

Each view is an element screenshot, downscaled to at most 900 px wide and stored as a 256-colour PNG.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import app  # noqa: F401,E402  (offline environment before gradio)


def _save(png: bytes, path: Path, width: int = 900) -> int:
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    if img.width > width:
        img = img.resize((width, round(img.height * width / img.width)), Image.LANCZOS)
    img.quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path.stat().st_size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=7884)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screens")
    a = ap.parse_args()
    from _kit import served_demo
    from playwright.sync_api import expect, sync_playwright
    from test_qlens_browser import LAUNCH_ARGS, click_tallest_bar, open_lens, set_whatif

    from app.launch import build_demo
    from app.sources import PRECOMPUTED_DIR

    a.out.mkdir(parents=True, exist_ok=True)
    sizes = {}
    with served_demo(build_demo(precomputed_dir=PRECOMPUTED_DIR), port=a.port) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)

        def shot(sel: str, name: str) -> None:
            page.wait_for_timeout(800)
            sizes[name] = _save(page.locator(sel).screenshot(), a.out / f"{name}.png")

        page.goto(url)
        expect(page.locator("#status")).to_contain_text("Precomputed run loaded", timeout=60_000)
        page.locator("#scrub").scroll_into_view_if_needed()
        shot("#panel_weight >> xpath=..", "qlens_explore_colorbar")
        open_lens(page)
        shot("#qlens_grid", "qlens_grid")
        shot("#qlens_shares", "qlens_shares")
        set_whatif(page, -2.0)
        page.wait_for_function("() => window.__qlensWhatif && window.__qlensWhatif.q === -2")
        shot("#qlens_hist", "qlens_whatif_q-2")
        set_whatif(page, 1.0)
        page.wait_for_function("() => window.__qlensWhatif.q === 1")
        shot("#qlens_hist", "qlens_whatif_q1")
        click_tallest_bar(page)
        expect(page.locator("#qlens_note")).to_contain_text("lit up", timeout=15_000)
        shot("#qlens_grid", "qlens_linked")
        page.locator("#qlens_axis").get_by_label("margin (log-odds): for saturated models").check()
        expect(page.locator("#qlens_hist .xtitle")).to_contain_text("margin", timeout=15_000)
        shot("#qlens_hist", "qlens_margin")
        page.locator("#qlens_lesson").get_by_text("Guided lesson").click()
        page.locator("#qlens_lesson_start").click()
        page.locator("#qlens_lesson_next").click()
        expect(page.locator("#qlens_lesson_md")).to_contain_text("Step 2 of 6", timeout=20_000)
        shot("#qlens_lesson", "qlens_lesson")
        browser.close()
    for n, s in sizes.items():
        print(f"{n}.png {s / 1024:.0f} KiB")
    print(f"total {sum(sizes.values()) / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
