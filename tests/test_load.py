"""Load: 10 concurrent ``gradio_client`` sessions on loopback against the app in its own process.

Each session uploads its own image and runs its own attack; the test checks that every session gets its own
results (the exported run card holds exactly that session's image and config, and re-running it reproduces the
per-record accuracies), that the queue limits hold (requests beyond the queue size are refused with "queue is
full" and succeed on retry; never more attacks run at once than the concurrency limit, from the server's own
run logs), and that the server's resident memory stays bounded over two waves of sessions.  Bounded in count
(2 waves × 10 sessions, at most 40 tries each) and time (150 s), loopback only.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from _kit import free_port
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SESSIONS = 10
WAVES = 2
CONCURRENCY = 2
QUEUE = 4
STEPS = 12
DEADLINE_S = 150.0
RSS_GROWTH_MB = 300.0  # allowed peak above the warmed-up server's resident memory
WAVE_DRIFT_MB = 80.0  # allowed growth of the settled memory from the first wave to the second

SERVER = """
import sys
import app
from app.limits import get_limits
from app.sources import ExampleItem
from app.standin import register_standin, write_synthetic_example
from app.launch import build_demo, launch_kwargs
folder, port = sys.argv[1], int(sys.argv[2])
mid = register_standin()
ip, mp = write_synthetic_example(folder, 64)
lim = get_limits()
demo = build_demo(mid, [ExampleItem("synthetic", "Synthetic", ip, {2: mp})], None, limits=lim)
kw = launch_kwargs(lim)
kw.update(server_name="127.0.0.1", server_port=port, quiet=True)
print("READY", flush=True)
demo.launch(**kw)
"""


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc to read the server's memory")
    folder = tmp_path_factory.mktemp("load")
    port = free_port()
    env = {**os.environ, "TSALLIS_QUEUE_SIZE": str(QUEUE), "TSALLIS_ATTACK_CONCURRENCY": str(CONCURRENCY),
           "TSALLIS_MAX_STEPS": "50", "TSALLIS_HOSTED": "0", "GRADIO_ANALYTICS_ENABLED": "False",
           "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "OMP_NUM_THREADS": "1"}
    log = open(folder / "server.log", "w")  # noqa: SIM115  (closed below)
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(folder), str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=log, text=True)
    url = f"http://127.0.0.1:{port}/"
    import httpx

    t0 = time.time()
    while time.time() - t0 < 90:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {(folder / 'server.log').read_text()[-2000:]}")
        try:
            if httpx.get(url + "gradio_api/info", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        proc.kill()
        raise RuntimeError("server did not start in 90 s")
    yield {"url": url, "pid": proc.pid, "log": folder / "server.log", "folder": folder}
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def _image(seed: int, folder: Path) -> tuple[Path, np.ndarray]:
    from app.standin import synthetic_image

    img, _ = synthetic_image(64, seed)
    p = folder / f"session_{seed}.png"
    Image.fromarray(img).save(p)
    return p, img


def _queued(c, args: tuple, api: str, k: int, deadline: float, tally: dict):
    """Submit until the queue takes it (a refusal says "queue is full"); bounded in tries and time."""
    for _ in range(40):
        job = c.submit(*args, api_name=api)
        try:
            job.result(timeout=max(1.0, deadline - time.time()))
            return job
        except Exception as e:
            if "queue is full" not in str(e).lower() or time.time() > deadline:
                raise
            tally["full"] += 1
            time.sleep(0.4 + 0.1 * (k % 5))
    raise RuntimeError(f"session {k}: the queue never took {api}")


def _session(url: str, k: int, img_path: Path, barrier: threading.Barrier, deadline: float, out: dict) -> None:
    import httpx
    from gradio_client import Client, handle_file

    c = Client(url, verbose=False, download_files=False)  # outputs stay on the server (no 100s of downloads)
    attack = ("ce", "tsallis", "js")[k % 3]
    args = (handle_file(str(img_path)), None, "", "standin-tiny", attack, "pgd", 8, STEPS, 0, 1000 + k, "linear:-2:1")
    tally = {"full": 0}
    barrier.wait(timeout=60)
    status = _queued(c, args, "/run", k, deadline, tally).outputs()[-1][4]
    export = ("", "standin-tiny", attack, "pgd", 8, STEPS, 0, 1000 + k, "linear:-2:1")
    card = _queued(c, export, "/export", k, deadline, tally).outputs()[-1][0]
    text = httpx.get(card["url"], timeout=30).text
    out[k] = {"status": status, "card": json.loads(text), "queue_full": tally["full"], "attack": attack}


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    points = sorted([(a + 0.02, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    cur = best = 0
    for _, d in points:
        cur += d
        best = max(best, cur)
    return best


def test_concurrent_sessions_queue_and_memory(server, report_figure, tmp_path):
    from gradio_client import Client

    from app.runner import rerun_card
    from app.standin import register_standin

    register_standin()
    pid, url = server["pid"], server["url"]
    warm = Client(url, verbose=False)  # warm-up: first model load and first render happen here
    warm.predict(None, None, "synthetic", "standin-tiny", "ce", "pgd", 8, 2, 0, 0, "", api_name="/step")
    time.sleep(0.5)
    base = _rss_mb(pid)
    samples: list[float] = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(_rss_mb(pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    deadline = time.time() + DEADLINE_S
    results: dict[int, dict] = {}
    settled = []
    images = {}
    t0 = time.perf_counter()
    try:
        for wave in range(WAVES):
            barrier = threading.Barrier(SESSIONS)
            errors: list[BaseException] = []
            threads = []
            for i in range(SESSIONS):
                k = wave * SESSIONS + i
                p, img = _image(k, tmp_path)
                images[k] = img

                def target(k=k, p=p, barrier=barrier, errors=errors):
                    try:
                        _session(url, k, p, barrier, deadline, results)
                    except BaseException as e:  # reported below
                        errors.append(e)

                threads.append(threading.Thread(target=target, daemon=True))
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=max(1.0, deadline - time.time()))
            assert not errors, errors[:3]
            assert not any(t.is_alive() for t in threads), "a session did not finish in time"
            time.sleep(0.5)
            settled.append(_rss_mb(pid))
    finally:
        stop.set()
        sampler.join(timeout=2)
    dt = time.perf_counter() - t0
    assert len(results) == WAVES * SESSIONS

    # every session got its own results: its image, its config, and the run its card re-runs to
    for k, r in results.items():
        card = r["card"]
        got = np.asarray(Image.open(io.BytesIO(base64.b64decode(card["input"]["image_png"]))).convert("RGB"))
        assert np.array_equal(got, images[k]), f"session {k} got another session's image"
        assert card["config"]["seed"] == 1000 + k and card["config"]["attack"] == r["attack"]
        assert card["records"] == STEPS + 1 and card["finished"] and "finished" in r["status"]
        again = rerun_card(card)
        assert again.scalars("acc").tolist() == card["per_record"]["acc"], k

    # queue limits: excess requests were refused and retried; never more attacks at once than allowed
    full = sum(r["queue_full"] for r in results.values())
    assert full >= 1, "with 10 simultaneous runs and a queue of 4 + 2 running, some must be refused"
    runs = []
    for line in server["log"].read_text().splitlines():
        if line.startswith("{"):
            e = json.loads(line)
            if e.get("event") == "run" and e.get("endpoint") == "run" and e.get("records", 0) > 3:
                runs.append((e["ts"] - e["duration_s"], e["ts"]))
    assert len(runs) == WAVES * SESSIONS, len(runs)
    overlap = _max_overlap(runs)
    assert overlap <= CONCURRENCY, f"{overlap} attacks ran at once; the limit is {CONCURRENCY}"

    # memory stays bounded
    peak = max(samples)
    assert peak - base < RSS_GROWTH_MB, f"server RSS grew from {base:.0f} MB to {peak:.0f} MB"
    assert settled[-1] - settled[0] < WAVE_DRIFT_MB, f"settled RSS drifted {settled} MB between waves"
    report_figure(f"load: {WAVES} waves x {SESSIONS} concurrent sessions (own image each), {len(results)} runs of "
                  f"{STEPS} steps + exports in {dt:.1f} s; {full} 'queue is full' refusals (queue {QUEUE}, "
                  f"{CONCURRENCY} at once), max {overlap} attacks at once; server RSS {base:.0f} MB warm -> peak "
                  f"{peak:.0f} MB, settled {', '.join(f'{s:.0f}' for s in settled)} MB after each wave")
