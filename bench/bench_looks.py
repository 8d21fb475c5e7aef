"""What the look changes (issue 13) cost: the chart layouts in the browser and the colour-bar strips on the server.

* ``draw`` — Chromium (Playwright) redraws the histogram, metrics and gradient-mass figures of the first shipped
  run with ``Plotly.react``, record after record, in two layouts: the current one (axis ``automargin``, legends at
  the bottom of the figure, which Plotly reserves room for) and the previous rules (no automargin, legend at
  ``y = -0.22`` of the plot area).  Median time per redraw, interleaved repetitions, and the median paired ratio.
  The Plotly.js is the one bundled with the ``plotly`` Python package (Gradio bundles its own build, not loadable
  on its own), so the figures compare the layouts, not Gradio's exact draw time.
* ``strip`` — server side: the weight-map panel with its colour-bar strip vs without (drawing the strip in and
  the JPEG encoding of the taller image), per panel.

Usage::

    python bench/bench_looks.py [--reps 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import app  # noqa: F401  (offline environment before gradio)

CHARTS = ("hist", "curves", "mass")


def _shipped():
    from app.sources import PRECOMPUTED_DIR
    from app.trajectory import Trajectory

    runs = json.loads((PRECOMPUTED_DIR / "index.json").read_text())["runs"]
    run = next(r for r in runs if not r["file"].startswith("compare"))
    return Trajectory.load(PRECOMPUTED_DIR / run["file"])


def _previous_layout(fig: dict) -> dict:
    """The figure with the layout rules before issue 13: no axis automargin, legend at y = -0.22 of the plot."""
    fig = copy.deepcopy(fig)
    lay = fig["layout"]
    for key, val in lay.items():
        if (key.startswith("xaxis") or key.startswith("yaxis")) and isinstance(val, dict):
            val["automargin"] = False
    lay["legend"] = dict(orientation="h", y=-0.22, x=0)
    return fig


_REDRAW_JS = """async (seq) => { const out = {hist: [], curves: [], mass: []};
  for (const f of seq) for (const n of ['hist', 'curves', 'mass']) {
    const t0 = performance.now(); await Plotly.react(n, f[n].data, f[n].layout); out[n].push(performance.now() - t0); }
  const med = (a) => a.slice().sort((x, y) => x - y)[Math.floor(a.length / 2)];
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, med(v.slice(3))])); }"""


def bench_draw(traj, reps: int) -> dict:
    import plotly
    from playwright.sync_api import sync_playwright

    from app.view import render_main

    seq = []
    for k in range(len(traj)):
        out = render_main(traj, k)
        seq.append({n: out[n].to_dict() for n in CHARTS})
    variants = {"current": seq, "previous": [{n: _previous_layout(f[n]) for n in f} for f in seq]}
    js = (Path(os.path.dirname(plotly.__file__)) / "package_data" / "plotly.min.js").read_text()
    times: dict[str, dict[str, list[float]]] = {v: {n: [] for n in CHARTS} for v in variants}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                    args=["--no-sandbox", "--headless", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.set_content("<html><body>" + "".join(f"<div id='{n}' style='width:512px'></div>" for n in CHARTS)
                         + "</body></html>")
        page.add_script_tag(content=js)
        for _ in range(reps):
            for name, figs in variants.items():
                for n, ms in page.evaluate(_REDRAW_JS, figs).items():
                    times[name][n].append(ms)
        browser.close()
    res = {}
    for n in CHARTS:
        cur, prev = times["current"][n], times["previous"][n]
        res[n] = {"current_ms": round(statistics.median(cur), 1), "previous_ms": round(statistics.median(prev), 1),
                  "paired_ratio": round(statistics.median(a / b for a, b in zip(cur, prev, strict=True)), 2)}
    return res


def bench_strip(traj, n: int = 200) -> dict:
    from app import figures as fg
    from app.colour_bars import with_bar
    from app.panels import fit

    base = fit(fg.weight_image(traj.weight[len(traj) - 1]), traj, "weight")

    def encode(img) -> None:
        img.save(io.BytesIO(), "JPEG", quality=90)

    def per_panel(fn) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        return 1000 * (time.perf_counter() - t0) / n

    without = per_panel(lambda: encode(base))
    with_strip = per_panel(lambda: encode(with_bar(base, "weight")))
    return {"panel_px": list(base.size), "without_ms": round(without, 2), "with_strip_ms": round(with_strip, 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=8)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    traj = _shipped()
    res = {"load": os.getloadavg(), "draw": bench_draw(traj, a.reps), "strip": bench_strip(traj)}
    res["load_after"] = os.getloadavg()
    print(json.dumps(res, indent=1))
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
