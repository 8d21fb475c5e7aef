"""Issue 15, items 3 and 9 under load: a soak of ``SESSIONS`` concurrent ``gradio_client`` sessions for
``SOAK_S`` seconds (each uploads its own image, runs short attacks, exports, scrubs), then idle.

After the sessions expire (``TSALLIS_SESSION_TTL``) and the janitor has run (``TSALLIS_JANITOR_S``), the
server's resident memory must be back within 25 % of its warm baseline, and its disk use (Gradio's cache, panels,
exports) within ``TSALLIS_DISK_MB``.  Loopback only; bounded in time (about 3.5 minutes in all).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from PIL import Image
from served import Served

from app.disk import ROOT_NAME, usage

SESSIONS = 16
SOAK_S = 120.0
TTL_S = 15.0
DISK_MB = 40.0
SETTLE_S = 90.0  # at most this long after the soak for expiry + janitor to bring memory and disk back


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc to read the server's memory")
    s = Served(tmp_path_factory.mktemp("soak"), {
        "TSALLIS_ATTACK_CONCURRENCY": "2", "TSALLIS_QUEUE_SIZE": "64", "TSALLIS_MAX_STEPS": "50",
        "TSALLIS_SESSION_TTL": str(TTL_S), "TSALLIS_JANITOR_S": "2", "TSALLIS_DISK_MB": str(DISK_MB)})
    yield s
    s.stop()


def _disk(s: Served) -> tuple[int, int]:
    return usage([s.folder / "gradio", s.folder / "tmp" / ROOT_NAME / str(s.pid)])


def _client_loop(url: str, k: int, img: Path, until: float, tally: dict, errors: list) -> None:
    from gradio_client import Client, handle_file

    try:
        c = Client(url, verbose=False, download_files=False)
        attack = ("ce", "tsallis", "js", "segpgd")[k % 4]
        n = 0
        while time.time() < until:
            args = (handle_file(str(img)), None, "", "standin-tiny", attack, "pgd", 8, 6, 0, 100 * k + n, "")
            c.submit(*args, api_name="/run").result(timeout=120)
            tally["runs"] += 1
            if n % 3 == 0:
                c.predict("", "standin-tiny", attack, "pgd", 8, 6, 0, 100 * k + n, "", api_name="/export")
                tally["exports"] += 1
            c.predict(2, api_name="/scrub")
            n += 1
    except Exception as e:  # reported by the test
        errors.append(f"session {k}: {type(e).__name__}: {str(e)[:200]}")


def test_soak_memory_and_disk_come_back(srv, tmp_path, report_figure):
    from app.standin import synthetic_image

    images = []
    for k in range(SESSIONS + 1):
        img, _ = synthetic_image(96, k)
        p = tmp_path / f"s{k}.png"
        Image.fromarray(img).save(p)
        images.append(p)
    tally = {"runs": 0, "exports": 0}
    errors: list[str] = []
    _client_loop(srv.url, SESSIONS, images[-1], time.time() + 1, tally, errors)  # warm-up: one of everything
    assert not errors, errors
    time.sleep(3)
    base = srv.rss_mb()
    peak = base
    until = time.time() + SOAK_S
    threads = [threading.Thread(target=_client_loop, args=(srv.url, k, images[k], until, tally, errors), daemon=True)
               for k in range(SESSIONS)]
    t0 = time.time()
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads) and time.time() < until + 150:
        peak = max(peak, srv.rss_mb())
        time.sleep(1)
    soak_s = time.time() - t0
    assert not errors, errors[:3]
    assert not any(t.is_alive() for t in threads), "a session did not finish"
    disk_peak = _disk(srv)[0]
    t1, rss = time.time(), srv.rss_mb()
    while time.time() - t1 < SETTLE_S and (rss > 1.25 * base or _disk(srv)[0] > DISK_MB * 2**20):
        time.sleep(2)
        rss = srv.rss_mb()
    settle = time.time() - t1
    time.sleep(2.5)  # one more janitor pass for the disk
    used, files = _disk(srv)
    cleanups = [e for e in srv.events() if e.get("event") == "cleanup"]
    assert rss <= 1.25 * base, f"RSS {rss:.0f} MB after the soak vs {base:.0f} MB warm (peak {peak:.0f} MB)"
    assert used <= DISK_MB * 2**20, f"disk {used / 2**20:.1f} MB > budget {DISK_MB:g} MB"
    assert any(e.get("expired") for e in cleanups), "sessions expired and were cleaned"
    report_figure(f"soak: {SESSIONS} concurrent sessions for {soak_s:.0f} s ({tally['runs']} runs, {tally['exports']} "
                  f"exports); RSS warm {base:.0f} MB, peak {peak:.0f} MB, {rss:.0f} MB {settle:.0f} s after "
                  f"({100 * (rss / base - 1):+.0f} %); disk {disk_peak / 2**20:.1f} MB at the end of the soak, "
                  f"{used / 2**20:.1f} MB / {files} files after clean-up (budget {DISK_MB:g} MB)")
