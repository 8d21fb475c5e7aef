"""Screenshots of the page's look for the README (``docs/screens/looks_*.png``), from the real app in Chromium.

Usage::

    python scripts/looks_screens.py [--port 7931] [--out docs/screens]

Light and dark theme at 1440×900 (the map panels and charts of the first shipped run), the same light view as
seen with deuteranopia (``--cvd protanopia`` adds protanopia; each pixel through the Machado et al. 2009 matrix,
:mod:`app.colour_vision`), and the phone layout at 390×844 scrolled to the gradient-weight map.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import app  # noqa: F401,E402  (offline environment before gradio)

LAUNCH_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage"]


def _save(png: bytes, path: Path, width: int = 720, simulate: str | None = None) -> int:
    import numpy as np
    from PIL import Image

    from app.colour_vision import simulate_image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    if simulate:
        img = Image.fromarray(simulate_image(np.asarray(img), simulate))
    if img.width > width:
        img = img.resize((width, round(img.height * width / img.width)), Image.LANCZOS)
    img.quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path.stat().st_size


def _open(browser, url: str, dark: bool = False, phone: bool = False):
    vp = {"width": 390, "height": 844} if phone else {"width": 1440, "height": 900}
    page = browser.new_page(viewport=vp, device_scale_factor=1, color_scheme="dark" if dark else "light",
                            is_mobile=phone, has_touch=phone)
    page.goto(url + ("?__theme=dark" if dark else ""))
    page.wait_for_function("() => /record \\d+ of/.test(document.querySelector('#status')?.innerText || '')",
                           timeout=90_000)
    page.wait_for_selector("#curves .main-svg", timeout=60_000)
    time.sleep(1.5)
    return page


def _clip(page, first: str, last: str) -> dict:
    """The page region from the top of ``first`` to the bottom of ``last`` (the Explore tab's column)."""
    a, b = page.locator(first).bounding_box(), page.locator(last).bounding_box()
    col = page.locator("#panel_clean").bounding_box()
    top = page.evaluate("() => window.scrollY")  # boxes are in viewport coordinates, the clip in the page's
    x0 = col["x"] - 8
    return {"x": x0, "y": a["y"] + top - 8, "width": 1440 - x0 - 40, "height": b["y"] + b["height"] - a["y"] + 16}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=7931)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screens")
    ap.add_argument("--cvd", nargs="*", default=["deuteranopia"], choices=["deuteranopia", "protanopia"],
                    help="simulated colour-vision deficiencies of the light view")
    a = ap.parse_args()
    from _kit import served_demo
    from playwright.sync_api import sync_playwright

    from app.launch import build_demo
    from app.sources import PRECOMPUTED_DIR

    a.out.mkdir(parents=True, exist_ok=True)
    sizes = {}
    with served_demo(build_demo(precomputed_dir=PRECOMPUTED_DIR), port=a.port) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=LAUNCH_ARGS)
        for dark in (False, True):
            page = _open(browser, url, dark=dark)
            png = page.screenshot(full_page=True, clip=_clip(page, "#panel_flipped", "#curves"))
            name = "looks_dark" if dark else "looks_light"
            sizes[name] = _save(png, a.out / f"{name}.png")
            if not dark:
                for kind in a.cvd:
                    sizes[f"looks_{kind}"] = _save(png, a.out / f"looks_{kind}.png", simulate=kind)
            page.close()
        page = _open(browser, url, phone=True)
        page.locator("#panel_weight").scroll_into_view_if_needed()
        time.sleep(0.8)
        sizes["looks_phone"] = _save(page.screenshot(), a.out / "looks_phone.png", width=390)
        browser.close()
    for name, size in sizes.items():
        print(f"{name}.png  {size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
