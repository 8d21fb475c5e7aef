"""Browser benchmark of the live explorer: Debian Chromium (Playwright) against the app on loopback.

It serves the real app (default model, bundled examples) in this process, wraps :meth:`app.runner.LiveRun.step`
to timestamp every record the server computes, and reads in the page, with a ``MutationObserver`` on the status
line plus the next animation frame, when each record is *painted*.  Both clocks are the machine's wall clock
(``time.time()`` and ``performance.timeOrigin + performance.now()``).

Scenarios (each on a fresh 40-step run of the default model, the default attack, from a fresh page):

* ``stream``  — nothing clicked: distinct records painted per second, the lag of the shown record behind the
  newest computed one (sampled every 20 ms), the delay of the final record after the server finished, and the
  main-thread time of long tasks per painted record.
* ``pause`` / ``stop`` / ``reset`` — the button is clicked 1 s after the first record: time until the status says so,
  and until the server computes no more records.
* ``upload`` — an image is uploaded 1 s after the first record: time until the status says it is checked and its
  clean prediction is shown, and until the server computes no more records.
* ``link``    — a shared link (attack, optimiser, ε, steps, seed of an example) opened at desktop and phone width:
  time until the controls show its settings and whether they still do once the example's shipped run has loaded.
* ``tab``     — 1 s after the first record the "Compare attacks" tab is clicked, then "Explore" (plain mouse clicks at
  the tabs' places, as a person clicks: Playwright's ``locator.click`` would first wait for the page to scroll and
  for two equal animation frames): time from the click until the first frame that shows the tab's content (and
  until the Compare tab's tiles, drawn when it opens, have loaded).
* ``compare_stop`` — on the "Compare attacks" tab, a comparison of all six attacks is started and ■ Stop clicked 1 s
  after its first record: time until the tab's status says so, and until the server computes no more records.
* ``compare_live`` — a whole six-attack comparison: when each attack's first tile is painted after its first
  record, tile images painted per second while computing, how far the painted tiles' record lags the newest
  computed one, and when the final view is painted after the server finished.
* ``scrub``   — after a run: ArrowLeft on the record slider 10 times (time until the status and the segmentation
  image show the new record), a mouse drag across the slider (time from release until the shown record is the
  slider's and stays), and ▶ Play (mean interval between records vs the configured one).

Usage::

    python bench/bench_browser.py [--port 7873] [--steps 40] [--json out.json] [--only tab compare_stop ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import app  # noqa: F401  (offline environment before gradio)

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
CLICK_AFTER_S = 1.0  # controls are clicked this long after the first computed record
RECORD = re.compile(r"record (\d+) of (\d+) recorded")

OBSERVER_JS = """
(() => {
  window.__obs = []; window.__long = []; window.__segs = []; window.__cobs = []; window.__cgrid = [];
  const now = () => performance.timeOrigin + performance.now();
  try { new PerformanceObserver(l => { for (const e of l.getEntries())
        window.__long.push([performance.timeOrigin + e.startTime, e.duration]); })
        .observe({type: 'longtask', buffered: true}); } catch (e) {}
  const hook = () => {
    const el = document.querySelector('#status');
    if (!el) { setTimeout(hook, 50); return; }
    let last = null;
    const note = () => { const t = el.textContent; if (t === last) return; last = t;  // no forced layout
      requestAnimationFrame(() => window.__obs.push([now(), t])); };
    new MutationObserver(note).observe(el, {subtree: true, childList: true, characterData: true});
    note();
    const seg = document.querySelector('#panel_seg');
    if (seg) seg.addEventListener('load', e => { if (e.target.tagName === 'IMG')
        window.__segs.push([now(), e.target.currentSrc]); }, true);
  };
  hook();
  // the Compare tab is mounted when first opened: its grid images are caught at the document, its status hooked
  document.addEventListener('load', e => { if (e.target.tagName === 'IMG' && e.target.closest('#cmp_grid'))
      window.__cgrid.push([now(), e.target.currentSrc]); }, true);
  window.__hookCompare = () => {
    const cs = document.querySelector('#cmp_status');
    if (!cs || cs.__hooked) return !!cs;
    cs.__hooked = true;
    let last = null;
    const note = () => { const t = cs.textContent; if (t === last) return; last = t;
      requestAnimationFrame(() => window.__cobs.push([now(), t])); };
    new MutationObserver(note).observe(cs, {subtree: true, childList: true, characterData: true});
    note();
    return true;
  };
})();
"""


class Tracer:
    """Timestamps of the records the server computes (wraps ``LiveRun.step`` for the whole process)."""

    def __init__(self) -> None:
        from app.runner import LiveRun

        self.times: list[tuple[float, int]] = []
        self.attacks: list[tuple[float, str, int]] = []  # (time, attack, record) of every computed record
        self.lock = threading.Lock()
        orig = LiveRun.step
        tracer = self

        def step(live, *a, **k):
            ok = orig(live, *a, **k)
            if ok and not live.traj.info.source.startswith("_"):
                with tracer.lock:
                    tracer.times.append((time.time(), len(live.traj) - 1))
                    tracer.attacks.append((time.time(), live.cfg.attack, len(live.traj) - 1))
            return ok

        LiveRun.step = step
        from app.ui import App

        self.views: list[tuple[float, float]] = []  # (end time, seconds) of every view the server rendered
        orig_mv = App._main_values

        def main_values(app_, *a, **k):
            t = time.perf_counter()
            out = orig_mv(app_, *a, **k)
            with tracer.lock:
                tracer.views.append((time.time(), time.perf_counter() - t))
            return out

        App._main_values = main_values

    def reset(self) -> None:
        with self.lock:
            self.times, self.views, self.attacks = [], [], []

    def view_ms(self) -> dict:
        with self.lock:
            d = sorted(1000 * v for _, v in self.views)
        if not d:
            return {}
        return {"server_views": len(d), "server_view_ms_median": round(statistics.median(d), 1),
                "server_view_ms_max": round(d[-1], 1)}

    def snapshot(self) -> list[tuple[float, int]]:
        with self.lock:
            return list(self.times)


def _serve(port: int):
    from app.launch import build_demo, launch_kwargs

    demo = build_demo()
    kw = launch_kwargs()
    kw.update(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    demo.launch(**kw)
    return demo


def _shown(obs: list) -> list[tuple[float, int, str]]:
    out = []
    for t, text in obs:
        m = RECORD.search(text)
        if m:
            out.append((t / 1000.0, int(m.group(1)), text))
    return out


def _open(browser, url: str, steps: int):
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.add_init_script(OBSERVER_JS)
    page.goto(url)
    page.wait_for_function("() => /record \\d+ of/.test(document.querySelector('#status')?.innerText || '')",
                           timeout=60_000)
    box = page.locator("#steps input[type=number]")
    box.fill(str(steps))
    box.press("Enter")
    _settle(page)
    return page


def _center(page, sel: str) -> tuple[float, float]:
    b = page.locator(sel).first.bounding_box()
    return b["x"] + b["width"] / 2, b["y"] + b["height"] / 2


def _wait_text(page, pattern: str, timeout_s: float = 120.0, after: str | None = None,
               log: str = "__obs") -> float | None:
    """Browser time (s) at which the status first matched ``pattern`` (regex), polling the observer log
    (``__obs``: the explorer's status, ``__cobs``: the Compare tab's); with ``after``, only texts following one
    that matched ``after`` count."""
    rx, ra = re.compile(pattern), re.compile(after) if after else None
    t_end = time.time() + timeout_s
    while time.time() < t_end:
        armed = ra is None
        for t, text in page.evaluate(f"window.{log}"):
            armed = armed or bool(ra.search(text))
            if armed and rx.search(text):
                return t / 1000.0
        time.sleep(0.05)
    return None


def _settle(page, quiet_s: float = 1.5, timeout_s: float = 30.0) -> None:
    """Wait until the status has not changed for ``quiet_s`` (the page's own load-time updates are over)."""
    t_end = time.time() + timeout_s
    while time.time() < t_end:
        obs = page.evaluate("window.__obs")
        if obs and time.time() - obs[-1][0] / 1000 > quiet_s:
            return
        time.sleep(0.1)


def _start_run(page, tracer: Tracer) -> float:
    page.evaluate("window.__obs.length = 0; window.__long.length = 0; window.__segs.length = 0")
    tracer.reset()
    x, y = _center(page, "#run_btn")
    t0 = time.time()
    page.mouse.click(x, y)
    return t0


def _wait_server_done(tracer: Tracer, quiet_s: float = 2.0, timeout_s: float = 180.0) -> None:
    t_end = time.time() + timeout_s
    while time.time() < t_end:
        ts = tracer.snapshot()
        if ts and time.time() - ts[-1][0] > quiet_s:
            return
        time.sleep(0.1)


def scenario_stream(browser, url: str, tracer: Tracer, steps: int) -> dict:
    page = _open(browser, url, steps)
    t0 = _start_run(page, tracer)
    _wait_text(page, r"finished", 240, after=r"running")
    time.sleep(1.5)
    comp = tracer.snapshot()
    shown = _shown(page.evaluate("window.__obs"))
    longs = page.evaluate("window.__long")
    segs = page.evaluate("window.__segs")
    page.close()
    if not comp or not shown:
        return {"error": "no records"}
    last_k, t_last = comp[-1][1], comp[-1][0]
    t_final = next((t for t, k, _ in shown if k == last_k), None)
    live = [(t, k) for t, k, _ in shown if t <= t_last + 0.001]
    # lag: how long a newer record than the one shown had been available, sampled every 20 ms
    lags, t, i, cur = [], comp[0][0], 0, -1
    seq = sorted((t, k) for t, k, _ in shown)
    while t <= (t_final or t_last):
        while i < len(seq) and seq[i][0] <= t:
            cur = seq[i][1]
            i += 1
        newer = [tc for tc, kc in comp if kc > cur and tc <= t]
        lags.append(t - min(newer) if newer else 0.0)
        t += 0.02
    window = max(t_last - comp[0][0], 1e-6)
    distinct = len({k for _, k in live})
    painted = [t for t, k, _ in shown]
    busy = sum(d for s, d in longs if comp[0][0] * 1000 <= s <= (t_final or t_last) * 1000)
    return {
        "records_computed": len(comp), "server_s": round(t_last - t0, 2),
        "first_paint_s": round(shown[0][0] - t0, 2),
        "final_record_delay_s": None if t_final is None else round(t_final - t_last, 3),
        "max_lag_s": round(max(lags), 3), "p95_lag_s": round(sorted(lags)[int(0.95 * (len(lags) - 1))], 3),
        "distinct_records_per_s": round(distinct / window, 2), "distinct_records_while_computing": distinct,
        "status_updates": len(painted), "seg_images_loaded": len(segs),
        "long_task_ms_per_update": round(busy / max(len(painted), 1), 1),
        "main_thread_busy_share": round(busy / 1000 / max((t_final or t_last) - comp[0][0], 1e-6), 3),
        **tracer.view_ms(),
    }


def scenario_control(browser, url: str, tracer: Tracer, steps: int, which: str) -> dict:
    page = _open(browser, url, steps)
    x, y = _center(page, {"pause": "#pause_btn", "stop": "#stop_btn", "reset": "#reset_btn"}[which])
    _start_run(page, tracer)
    return _click_to_halt(page, tracer, (x, y), {"pause": "Paused", "stop": "Stopped", "reset": r"Reset\."}[which],
                          "__obs")


UPLOAD = Path(__file__).resolve().parents[1] / "assets" / "examples" / "chelsea.jpg"


def scenario_upload(browser, url: str, tracer: Tracer, steps: int) -> dict:
    """An image is uploaded 1 s after the first record: time until the status says it is checked and its clean
    prediction shown (the file is decoded in the sandbox and the model run once), and until the server stops."""
    page = _open(browser, url, steps)
    _start_run(page, tracer)
    return _act_to_halt(page, tracer, lambda: page.locator("#image_in input[type=file]").set_input_files(str(UPLOAD)),
                        "checked and ready", "__obs")


LINK_QUERY = "?example=astronaut&attack=segpgd&opt=pgd&eps=2&steps=5&seed=4"
LINK_WANT = {"#attack input": "SegPGD", "#steps input[type=number]": "5", "#eps input[type=number]": "2"}
LINKED_JS = """(want) => Object.entries(want).every(([sel, v]) => document.querySelector(sel)?.value === v)"""


def scenario_link(browser, url: str, tracer: Tracer, steps: int, shots: Path | None = None) -> dict:
    """A shared link is opened in a fresh page (desktop, then phone width): time from navigation until the
    controls show the linked settings, whether they still do once the page has settled (the example's shipped run
    loads after them), and until the status shows a record."""
    out: dict = {}
    for name, vp in (("desktop", {"width": 1440, "height": 900}), ("phone", {"width": 390, "height": 844})):
        page = browser.new_page(viewport=vp)
        page.add_init_script(OBSERVER_JS)
        t0 = time.time()
        page.goto(url + LINK_QUERY)
        page.wait_for_function(LINKED_JS, arg=LINK_WANT, timeout=60_000, polling=50)
        t_linked = time.time() - t0
        page.wait_for_function("() => /record \\d+ of|selected/.test(document.querySelector('#status')?.innerText "
                               "|| '')", timeout=60_000, polling=50)
        t_status = time.time() - t0
        _settle(page)
        kept = page.evaluate(LINKED_JS, LINK_WANT)
        pgd = page.get_by_label("PGD", exact=True).is_checked()
        if shots is not None:
            shots.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shots / f"link_{name}.png"), full_page=name == "phone")
        out[name] = {"linked_controls_s": round(t_linked, 3), "status_s": round(t_status, 3),
                     "settings_kept_after_settle": bool(kept and pgd),
                     "page_width_px": page.evaluate("document.documentElement.scrollWidth")}
        page.close()
    return out


def _click_to_halt(page, tracer: Tracer, xy: tuple[float, float], word: str, log: str) -> dict:
    """:func:`_act_to_halt` with a plain mouse click at ``xy``."""
    return _act_to_halt(page, tracer, lambda: page.mouse.click(*xy), word, log)


def _act_to_halt(page, tracer: Tracer, act: Callable[[], object], word: str, log: str) -> dict:
    """Do ``act`` :data:`CLICK_AFTER_S` after the first computed record; time until the status (``log``) says
    ``word`` and until the server computes no more records.  Closes the page."""
    while not tracer.snapshot():
        time.sleep(0.05)
    time.sleep(CLICK_AFTER_S)
    t_click = time.time()
    n_at_click = len(tracer.snapshot())
    act()
    t_seen = _wait_text(page, word, 120, log=log)
    _wait_server_done(tracer)
    comp = tracer.snapshot()
    after = [t for t, _ in comp if t > t_click]
    page.close()
    return {"shown_s": None if t_seen is None else round(t_seen - t_click, 3),
            "server_stopped_s": round((after[-1] - t_click) if after else 0.0, 3),
            "records_after_click": len(comp) - n_at_click, "records_total": len(comp)}


SHOWN_JS = """(sel) => { window.__shown = null;
  const now = () => performance.timeOrigin + performance.now();
  const look = () => { const e = document.querySelector(sel);
    if (e && e.offsetParent !== null && e.getBoundingClientRect().height > 0)
      setTimeout(() => { window.__shown = now(); }, 0);  // after the frame that shows it
    else requestAnimationFrame(look); };
  requestAnimationFrame(look); }"""


def _click_until_shown(page, xy: tuple[float, float], sel: str, timeout_s: float = 120.0) -> tuple[float, float]:
    """Click at ``xy`` (a plain mouse click, as a person's: no waiting for the page to be idle first) and return
    (click time, browser time of the first frame in which ``sel`` is laid out and visible), both wall-clock s."""
    page.evaluate(SHOWN_JS, sel)
    t_click = time.time()
    page.mouse.click(*xy)
    t_end = t_click + timeout_s
    while time.time() < t_end:
        t = page.evaluate("window.__shown")
        if t is not None:
            return t_click, t / 1000.0
        time.sleep(0.02)
    raise TimeoutError(f"{sel} not shown within {timeout_s} s")


def scenario_tab(browser, url: str, tracer: Tracer, steps: int) -> dict:
    """While the run streams: click the "Compare attacks" tab, then "Explore"; each time until the first frame
    showing the tab's content (its run button), and for Compare until its tiles image has loaded."""
    page = _open(browser, url, steps)
    page.evaluate("window.scrollTo(0, 0)")
    time.sleep(0.3)
    xy_cmp = _center(page, "button[role=tab]:has-text('Compare attacks')")
    xy_exp = _center(page, "button[role=tab]:has-text('Explore')")
    _start_run(page, tracer)
    while not tracer.snapshot():
        time.sleep(0.05)
    time.sleep(CLICK_AFTER_S)
    out = {}
    for name, xy, sel in (("to_compare_s", xy_cmp, "#cmp_btn"), ("back_to_explore_s", xy_exp, "#run_btn")):
        page.evaluate("window.__cgrid.length = 0")
        t_click, t_shown = _click_until_shown(page, xy, sel)
        out[name] = round(t_shown - t_click, 3)
        # records the server computed after the click: > 0 means the click landed while the run streamed
        out[name.replace("_s", "_records_after_click")] = sum(1 for t, _ in tracer.snapshot() if t > t_click)
        if sel == "#cmp_btn":  # the tab's content (the shipped comparison's tiles), drawn when it opens
            page.wait_for_function("() => window.__cgrid.length > 0", timeout=120_000)
            out["compare_tiles_painted_s"] = round(page.evaluate("window.__cgrid[0][0]") / 1000 - t_click, 3)
        time.sleep(0.5)
    _wait_text(page, r"finished", 240, after=r"running")
    page.close()
    return out


CMP_RUNNING = re.compile(r"Running (\S+) \((\d+) of (\d+)\): (\d+) of (\d+) records")


def _open_compare(browser, url: str, steps: int):
    """A fresh page with the run length set, on the Compare tab (its status hooked)."""
    page = _open(browser, url, steps)
    page.get_by_role("tab", name="Compare attacks").click()
    page.wait_for_function("() => !!window.__hookCompare && window.__hookCompare()", timeout=60_000)
    page.wait_for_function("() => /Precomputed|No comparison/.test("
                           "document.querySelector('#cmp_status')?.textContent || '')", timeout=60_000)
    time.sleep(1.0)
    page.evaluate("window.__cobs.length = 0; window.__cgrid.length = 0")
    return page


def scenario_compare_stop(browser, url: str, tracer: Tracer, steps: int) -> dict:
    page = _open_compare(browser, url, steps)
    tracer.reset()
    stop = _center(page, "#cmp_stop")
    page.mouse.click(*_center(page, "#cmp_btn"))
    return _click_to_halt(page, tracer, stop, "Stopped", "__cobs")


def _compare_lags(computed: list[tuple[float, str, int]], shown: list[tuple[float, str, int]],
                  t_stop: float) -> list[float]:
    """Every 20 ms until ``t_stop``: how long a record newer than the painted one had been computed (s)."""
    order = {(a, k): i for i, (_, a, k) in enumerate(computed)}
    seq = sorted((t, order.get((a, k), -1)) for t, a, k in shown)
    lags, t, i, cur = [], computed[0][0], 0, -1
    while t <= t_stop:
        while i < len(seq) and seq[i][0] <= t:
            cur = max(cur, seq[i][1])
            i += 1
        newer = [tc for j, (tc, _, _) in enumerate(computed) if j > cur and tc <= t]
        lags.append(t - min(newer) if newer else 0.0)
        t += 0.02
    return lags


def scenario_compare_live(browser, url: str, tracer: Tracer, steps: int) -> dict:
    from attack_engine.registry import attack_title

    page = _open_compare(browser, url, steps)
    tracer.reset()
    t0 = time.time()
    page.mouse.click(*_center(page, "#cmp_btn"))
    t_done = _wait_text(page, r"Comparison finished", 1800, log="__cobs")
    time.sleep(1.5)
    with tracer.lock:
        computed = [(t, attack_title(a), k) for t, a, k in tracer.attacks]
    cobs, grid = page.evaluate("window.__cobs"), page.evaluate("window.__cgrid")
    page.close()
    if not computed or t_done is None:
        return {"error": "the comparison did not finish"}
    shown = []
    for t, text in cobs:
        m = CMP_RUNNING.search(text)
        if m and int(m.group(4)) > 0:
            shown.append((t / 1000.0, m.group(1), int(m.group(4)) - 1))
    t_last = computed[-1][0]
    firsts = {}
    for t, a, _k in computed:
        firsts.setdefault(a, t)
    first_shown = {a: min((t for t, sa, _ in shown if sa == a), default=None) for a in firsts}
    delays = [first_shown[a] - firsts[a] for a in firsts if first_shown[a] is not None]
    paints = [t / 1000.0 for t, _ in grid if computed[0][0] <= t / 1000.0 <= t_last]
    lags = _compare_lags(computed, shown, t_last)
    return {"attacks": len(firsts), "records_computed": len(computed), "server_s": round(t_last - t0, 2),
            "attacks_with_a_tile_while_running": sum(v is not None for v in first_shown.values()),
            "first_tile_after_first_record_max_s": round(max(delays), 3) if delays else None,
            "tile_images_painted_per_s": round(len(paints) / max(t_last - computed[0][0], 1e-6), 2),
            "max_lag_s": round(max(lags), 3) if lags else None,
            "p95_lag_s": round(sorted(lags)[int(0.95 * (len(lags) - 1))], 3) if lags else None,
            "final_view_delay_s": round(t_done - t_last, 3)}


def _slider_value(page) -> int:
    return int(float(page.locator("#scrub input[type=range]").input_value()))


def scenario_scrub(browser, url: str, tracer: Tracer, steps: int, play_interval: float) -> dict:
    page = _open(browser, url, steps)
    _start_run(page, tracer)
    _wait_text(page, r"finished", 240, after=r"running")
    time.sleep(1.5)
    rng = page.locator("#scrub input[type=range]")
    rng.focus()
    paints = []
    for _ in range(10):
        k = _slider_value(page) - 1
        page.evaluate("window.__obs.length = 0; window.__segs.length = 0")
        t0 = time.time()
        rng.press("ArrowLeft")
        t_s = _wait_text(page, rf"record {k} of", 20)
        page.wait_for_function("() => { const i = document.querySelector('#panel_seg img'); "
                               "return !!i && i.complete && i.naturalWidth > 0; }", timeout=20_000)
        segs = page.evaluate("window.__segs")
        t_img = segs[-1][0] / 1000 if segs else t_s
        paints.append(max(t_s or 99, t_img or 0) - t0)
        time.sleep(0.25)
    # drag: from the right end to ~a third, in small moves over about a second
    b = page.locator("#scrub input[type=range]").bounding_box()
    y = b["y"] + b["height"] / 2
    x1, x2 = b["x"] + b["width"] - 4, b["x"] + b["width"] * 0.33
    page.mouse.move(x1, y)
    page.mouse.down()
    for i in range(1, 31):
        page.mouse.move(x1 + (x2 - x1) * i / 30, y)
        time.sleep(0.033)
    page.evaluate("window.__obs.length = 0")
    t_rel = time.time()
    page.mouse.up()
    target = _slider_value(page)
    settle = None
    t_end = time.time() + 60
    while time.time() < t_end:
        shown = _shown(page.evaluate("window.__obs"))
        if shown and shown[-1][1] == target and time.time() - shown[-1][0] > 1.0:
            settle = shown[-1][0] - t_rel
            break
        if not shown and time.time() - t_rel > 3:
            cur = RECORD.search(page.locator("#status").inner_text())
            if cur and int(cur.group(1)) == target:
                settle = 0.0
                break
        time.sleep(0.1)
    # play from the start
    rng.focus()
    rng.press("Home")
    _wait_text(page, r"record 0 of", 20)
    time.sleep(1.0)
    last = int(float(page.locator("#scrub input[type=range]").get_attribute("max") or 1))
    page.evaluate("window.__obs.length = 0")
    page.locator("#play_btn").click()
    _wait_text(page, rf"record {last} of", 120, after=r"record 1 of")
    time.sleep(0.5)
    shown = _shown(page.evaluate("window.__obs"))
    first: dict[int, float] = {}
    for t, k, _ in shown:  # when each record first appeared (a view can change the status text more than once)
        first.setdefault(k, t)
    ts = sorted(first.values())
    gaps = [b - a for a, b in zip(ts, ts[1:], strict=False)][1:]  # the first gap includes the click
    page.close()
    return {"scrub_paint_median_s": round(statistics.median(paints), 3), "scrub_paint_max_s": round(max(paints), 3),
            "drag_settle_s": None if settle is None else round(settle, 3), "drag_target": target,
            "play_interval_mean_s": round(statistics.mean(gaps), 3) if gaps else None,
            "play_interval_configured_s": play_interval, "play_frames": len(ts)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=int(os.environ.get("BENCH_PORT", "7873")))
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--screens", type=Path, help="folder for the link scenario's screenshots")
    ap.add_argument("--only", nargs="*", default=["stream", "pause", "stop", "reset", "upload", "link", "tab", "scrub",
                                                  "compare_stop", "compare_live"])
    a = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    from app import ui

    tracer = Tracer()
    demo = _serve(a.port)
    url = f"http://127.0.0.1:{a.port}/"
    res: dict = {"uptime_before": os.popen("uptime").read().strip(), "steps": a.steps}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            for sc in a.only:
                t = time.time()
                if sc == "stream":
                    res[sc] = scenario_stream(browser, url, tracer, a.steps)
                elif sc in ("pause", "stop", "reset"):
                    res[sc] = scenario_control(browser, url, tracer, a.steps, sc)
                elif sc == "upload":
                    res[sc] = scenario_upload(browser, url, tracer, a.steps)
                elif sc == "link":
                    res[sc] = scenario_link(browser, url, tracer, a.steps, a.screens)
                elif sc == "tab":
                    res[sc] = scenario_tab(browser, url, tracer, a.steps)
                elif sc == "compare_stop":
                    res[sc] = scenario_compare_stop(browser, url, tracer, a.steps)
                elif sc == "compare_live":
                    res[sc] = scenario_compare_live(browser, url, tracer, a.steps)
                elif sc == "scrub":
                    res[sc] = scenario_scrub(browser, url, tracer, a.steps, ui.PLAY_INTERVAL_S)
                res[sc]["wall_s"] = round(time.time() - t, 1)
                res.setdefault("all_runs", []).append({"scenario": sc, **res[sc]})  # a repeated scenario: every run
                print(sc, json.dumps(res[sc]), flush=True)
            browser.close()
    finally:
        demo.close()
    res["uptime_after"] = os.popen("uptime").read().strip()
    print(json.dumps(res, indent=1))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
