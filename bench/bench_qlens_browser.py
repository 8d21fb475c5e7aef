"""Browser benchmark of the q-lens what-if slider: Debian Chromium (Playwright) against the app on loopback.

It serves the real app (default model, shipped runs), opens the first page, presses ★ Best iterate and the
q-lens tab, then sets the what-if q slider to a sequence of values the way a drag does (the range input's value
plus an ``input`` event).  For each value it measures, in the page, the time from the event until the histogram's
title shows the new q and the next animation frame has run (= painted), and the handler's own time (compute +
``Plotly.update``).  It also checks that the shares the browser computed equal the server's
(:func:`attack_engine.qlens.shares_from_summary` of the same record) and that no request reached the server
during the drag (no round trip).  Both axes (p_y and margin) are measured.

Usage::

    python bench/bench_qlens_browser.py [--port 7884] [--values 60] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import app  # noqa: F401  (offline environment before gradio)

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-dev-shm-usage"]
TARGET_S = 0.1

MEASURE_JS = """
async (q) => {
  const el = document.querySelector('#qlens_whatif input[type=range]');
  const title = () => (document.querySelector('#qlens_hist .gtitle') || {}).textContent || '';
  const want = 'what-if q = ' + Number(q).toFixed(2) + ' ';
  const t0 = performance.now();
  el.value = q;
  el.dispatchEvent(new Event('input', {bubbles: true}));
  await new Promise((resolve, reject) => {
    const check = () => {
      if (title().startsWith(want)) { requestAnimationFrame(() => resolve()); return; }
      if (performance.now() - t0 > 5000) { reject(new Error('no redraw for q=' + q)); return; }
      requestAnimationFrame(check);
    };
    check();
  });
  return {total_ms: performance.now() - t0, handler_ms: window.__qlensWhatif.ms, shares: window.__qlensWhatif.shares};
}
"""


def _values(n: int) -> list[float]:
    """A back-and-forth drag over [-3, 1] in the slider's 0.05 steps (never the same value twice in a row)."""
    grid = [round(-3 + 0.05 * i, 2) for i in range(81)]
    out, i, d = [], 40, 7
    while len(out) < n:
        i += d
        if not 0 <= i < len(grid):
            d, i = -d, i - 2 * d
        out.append(grid[i])
    return out


def run(port: int, n: int) -> dict:
    from playwright.sync_api import sync_playwright

    from app.launch import build_demo, launch_kwargs
    from app.sources import PRECOMPUTED_DIR
    from attack_engine import qlens

    demo = build_demo(precomputed_dir=PRECOMPUTED_DIR)
    kw = launch_kwargs()
    kw.update(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    demo.launch(**kw)
    appl = demo.tsallis_app
    res: dict = {"load": os.getloadavg(), "target_s": TARGET_S, "axes": {}}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(f"http://127.0.0.1:{port}/")
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            from test_qlens_browser import open_lens

            open_lens(page)
            res["chromium"] = browser.version
            for axis, label in (("p", "p_y (probability)"), ("margin", "margin (log-odds): for saturated models")):
                if axis == "margin":
                    page.locator("#qlens_axis").get_by_label(label).check()
                    page.wait_for_function("() => { const t = document.querySelector('#qlens_hist .xtitle');"
                                           " return t && t.textContent.includes('margin'); }", timeout=20_000)
                page.wait_for_timeout(500)
                sess = max(appl.store._sessions, key=lambda s: s.last_used)  # the page's session
                summary = sess.traj.qsum[sess.traj.clamp(sess.view)]
                page.evaluate(MEASURE_JS, 0.5)  # warm-up
                before = len(requests)
                samples, err = [], 0.0
                for q in _values(n):
                    r = page.evaluate(MEASURE_JS, q)
                    samples.append(r)
                    err = max(err, max(abs(a - b) for a, b in zip(r["shares"], qlens.shares_from_summary(summary, q),
                                                                   strict=True)))
                tot = [s["total_ms"] / 1e3 for s in samples]
                hand = [s["handler_ms"] / 1e3 for s in samples]
                res["axes"][axis] = {
                    "n": len(tot), "median_s": statistics.median(tot), "p90_s": sorted(tot)[int(0.9 * len(tot)) - 1],
                    "max_s": max(tot), "handler_median_s": statistics.median(hand),
                    "max_share_error_vs_server": err, "requests_during_drag": len(requests) - before,
                }
            browser.close()
    finally:
        demo.close()
    return res


def markdown(res: dict) -> str:
    lines = [f"What-if q redraw in the browser (Chromium {res.get('chromium', '?')}, load average "
             f"{', '.join(f'{v:.1f}' for v in res['load'])}; target ≤ {1e3 * res['target_s']:.0f} ms):", "",
             "| axis | values | median | p90 | max | handler (median) | max share error vs server | requests during drag |",
             "|---|---|---|---|---|---|---|---|"]
    for axis, r in res["axes"].items():
        lines.append(f"| {axis} | {r['n']} | {1e3 * r['median_s']:.1f} ms | {1e3 * r['p90_s']:.1f} ms | "
                     f"{1e3 * r['max_s']:.1f} ms | {1e3 * r['handler_median_s']:.1f} ms | "
                     f"{r['max_share_error_vs_server']:.1e} | {r['requests_during_drag']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=7884)
    ap.add_argument("--values", type=int, default=60)
    ap.add_argument("--json", help="write the raw results here")
    a = ap.parse_args()
    res = run(a.port, a.values)
    print(markdown(res))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
