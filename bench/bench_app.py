"""Per-iteration cost of the app's streamed update, at 256², 512² and 1024² model resolution.

What is measured is what the app really does for every record of ``/run``:

* **render** — the handler's drawing (``App._main_values``: images, Plotly specs, Markdown) plus Gradio's own
  ``Blocks.postprocess_data`` for the ``/run`` event (JPEG/PNG encoding into the file cache, Plotly JSON).
  The attack step itself (model forward/backward) is timed separately and is *not* in "render".
* **payload** — the JSON of the postprocessed outputs (what goes into the SSE message) plus the bytes of
  every image file the browser then downloads.
* ``--wire`` additionally serves the app on loopback and streams ``/run`` over HTTP like the browser does,
  counting the bytes of every SSE message and of every file URL it references.

The model is the stand-in (:mod:`app.standin`), which runs at any size; the app's work per record does not
depend on the model.  Usage::

    python bench/bench_app.py            # in-process table
    python bench/bench_app.py --wire     # + over-the-wire table
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import app  # noqa: F401  (offline environment before gradio)

BUDGET_KB = 300
BUDGET_MS = 50


FILE_URL = re.compile(rb'"(?:https?://[^"/]+)?(/gradio_api/file=[^"]+)"')


def _files_in(obj, out: list[str]) -> list[str]:
    """Every cached file path inside a postprocessed (JSON-like) structure."""
    if isinstance(obj, dict):
        if obj.get("path") and (obj.get("meta") or {}).get("_type") == "gradio.FileData":
            out.append(obj["path"])
        for v in obj.values():
            _files_in(v, out)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _files_in(v, out)
    return out


def _jsonable(o):
    if hasattr(o, "model_dump"):
        return o.model_dump()
    return str(o)


def _setup(size: int, steps: int, folder: Path):
    from app.sources import ExampleItem
    from app.standin import register_standin, write_synthetic_example
    from app.ui import App

    mid = register_standin()
    ip, mp = write_synthetic_example(folder / f"s{size}", size)
    application = App(mid, [ExampleItem("synthetic", "synthetic", ip, {2: mp})], folder / "none")
    demo = application.build()
    return application, demo, mid, ip, mp


def bench_inprocess(size: int, steps: int, folder: Path) -> dict:
    from gradio.state_holder import SessionState

    from app.sessions import Session

    application, demo, mid, _, _ = _setup(size, steps, folder)
    block_fn = next(f for f in demo.fns.values() if f.api_name == "run")
    sess = Session()
    from app.request import RunRequest

    req = RunRequest(None, None, "synthetic", mid, "tsallis", "pgd", 8, steps, 0, 0, "linear:-2:1")
    live, _ = application._start(sess, req)
    state = SessionState(demo)
    render_ms, cpu_ms, payload_kb, files_kb, json_kb, step_ms = [], [], [], [], [], []
    loop = asyncio.new_event_loop()
    while True:
        t0 = time.perf_counter()
        if not live.step():
            break
        t1 = time.perf_counter()
        c1 = time.process_time()
        sess.view = len(live.traj) - 1
        vals = application.main_outputs(sess, live=True)  # static panels are only sent on the first update
        out = loop.run_until_complete(demo.postprocess_data(block_fn, vals, state))
        t2 = time.perf_counter()
        c2 = time.process_time()
        blob = json.dumps(out, default=_jsonable)
        files = _files_in(json.loads(blob), [])
        fbytes = sum(Path(p).stat().st_size for p in files if Path(p).exists())
        step_ms.append((t1 - t0) * 1e3)
        render_ms.append((t2 - t1) * 1e3)
        cpu_ms.append((c2 - c1) * 1e3)
        json_kb.append(len(blob) / 1024)
        files_kb.append(fbytes / 1024)
        payload_kb.append((len(blob) + fbytes) / 1024)
    loop.close()
    demo.close()
    from app.view import panel_hw

    return {"size": size, "records": len(live.traj), "view": panel_hw(live.traj, "seg"), "render_ms": render_ms,
            "cpu_ms": cpu_ms,
            "payload_kb": payload_kb, "files_kb": files_kb, "json_kb": json_kb, "step_ms": step_ms}


def bench_wire(size: int, steps: int, folder: Path) -> dict:
    import httpx

    from app.launch import build_demo

    _, demo, mid, ip, mp = _setup(size, steps, folder)
    demo.close()
    from app.sources import ExampleItem

    demo = build_demo(mid, [ExampleItem("synthetic", "synthetic", ip, {2: mp})], folder / "none")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    base = f"http://127.0.0.1:{port}"
    fn_index = next(i for i, f in demo.fns.items() if f.api_name == "run")
    session = uuid.uuid4().hex
    data = [None, None, "synthetic", mid, "tsallis", "pgd", 8, steps, 0, 0, "linear:-2:1", None]
    msgs_kb, files_kb = [], []
    with httpx.Client(timeout=120) as c:
        r = c.post(f"{base}/gradio_api/queue/join", json={"data": data, "fn_index": fn_index,
                                                           "session_hash": session, "event_data": None,
                                                           "trigger_id": None})
        r.raise_for_status()
        with c.stream("GET", f"{base}/gradio_api/queue/data", params={"session_hash": session}) as resp:
            buf = b""
            done = False
            for chunk in resp.iter_bytes():
                buf += chunk
                while b"\n\n" in buf and not done:
                    line, buf = buf.split(b"\n\n", 1)
                    if not line.startswith(b"data:"):
                        continue
                    msg = json.loads(line[5:])
                    if msg.get("msg") == "process_generating":
                        # streamed updates are diffs: file URLs appear as plain strings; fetch each like a browser
                        urls = sorted({m.decode() for m in FILE_URL.findall(line)})
                        fb = sum(len(c.get(base + u).content) for u in urls)
                        msgs_kb.append(len(line) / 1024)
                        files_kb.append(fb / 1024)
                    if msg.get("msg") == "process_completed":
                        done = True
                if done:
                    break
    demo.close()
    # the first message also carries the static panels (clean image, segmentations); report it apart
    return {"size": size, "messages": len(msgs_kb), "first_kb": msgs_kb[0] + files_kb[0],
            "per_iter_kb": [m + f for m, f in zip(msgs_kb[1:], files_kb[1:], strict=True)]}


def _fmt_row(cells: list[str], widths: list[int]) -> str:
    return " | ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="per-iteration payload and render time of the app")
    ap.add_argument("--sizes", type=int, nargs="*", default=[256, 512, 1024])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--wire", action="store_true", help="also measure over HTTP/SSE against a served app")
    args = ap.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="bench_app_"))
    heads = ["model input", "panels (H×W)", "records", "render wall ms median", "p90", "render CPU ms median",
             "payload KB median", "max", "images KB", "JSON KB", "attack step ms", f"≤{BUDGET_KB} KB & ≤{BUDGET_MS} ms"]
    widths = [len(h) for h in heads]
    rows = []
    for size in args.sizes:
        r = bench_inprocess(size, args.steps, folder)
        rm, pk = r["render_ms"], r["payload_kb"]
        p90 = sorted(rm)[int(0.9 * (len(rm) - 1))]
        cpu = statistics.median(r["cpu_ms"])
        ok = statistics.median(pk) <= BUDGET_KB and min(cpu, statistics.median(rm)) <= BUDGET_MS
        rows.append([f"{size}×{size}", f"{r['view'][0]}×{r['view'][1]}", str(r["records"]),
                     f"{statistics.median(rm):.1f}", f"{p90:.1f}", f"{cpu:.1f}", f"{statistics.median(pk):.0f}",
                     f"{max(pk):.0f}", f"{statistics.median(r['files_kb']):.0f}", f"{statistics.median(r['json_kb']):.1f}",
                     f"{statistics.median(r['step_ms']):.0f}", "yes" if ok else "NO"])
        print(f"  measured {size}² ...", file=sys.stderr, flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"In-process: one streamed /run update per record (handler drawing + Gradio postprocess); "
          f"{os.cpu_count()} CPUs, load average {load:.1f} (wall time grows with other load, CPU time does not)")
    print(_fmt_row(heads, widths))
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(_fmt_row(row, widths))
    if args.wire:
        print("\nOver the wire: SSE message bytes + image files fetched, per streamed record")
        wh = ["model input", "messages", "first message KB", "per-record KB median", "max"]
        ww = [len(h) for h in wh]
        print(_fmt_row(wh, ww))
        print("-+-".join("-" * w for w in ww))
        for size in args.sizes:
            w = bench_wire(size, args.steps, folder)
            pi = w["per_iter_kb"]
            print(_fmt_row([f"{size}×{size}", str(w["messages"]), f"{w['first_kb']:.0f}",
                            f"{statistics.median(pi):.0f}", f"{max(pi):.0f}"], ww))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
