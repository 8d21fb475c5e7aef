"""A served app in its own process for the edge, decode, disk and soak tests: its stderr (the log) in a file, its
resident memory readable from /proc, and every outbound network attempt trapped.

The server process replaces ``socket.getaddrinfo``, ``socket.socket.connect`` / ``connect_ex`` and
``socket.create_connection`` before anything is imported: a name lookup of anything but the loopback address, or
a connection to anything but the server's own port (Gradio checks that it is up), is refused and written to
``network.jsonl``, so a test fails if any route tries to fetch, resolve or proxy an address a request names.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _kit import free_port

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, os, socket, sys
folder, port = sys.argv[1], int(sys.argv[2])
trap = open(os.path.join(folder, "network.jsonl"), "a", buffering=1)
_gai, _connect, _connect_ex = socket.getaddrinfo, socket.socket.connect, socket.socket.connect_ex
LOOP = ("127.0.0.1", "localhost", "::1")

def _refuse(kind, target):
    trap.write(json.dumps({"kind": kind, "target": str(target)[:200]}) + "\n")
    raise OSError(f"network access refused by the test ({kind})")

def getaddrinfo(host, p, *a, **k):
    h = host.decode() if isinstance(host, bytes) else host
    if h not in LOOP or str(p) != str(port):
        _refuse("getaddrinfo", (h, p))
    return _gai(host, p, *a, **k)

def _check(addr):
    if not (isinstance(addr, tuple) and addr[0] in LOOP and int(addr[1]) == port):
        _refuse("connect", addr)

def connect(self, addr):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _check(addr)
    return _connect(self, addr)

def connect_ex(self, addr):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _check(addr)
    return _connect_ex(self, addr)

socket.getaddrinfo, socket.socket.connect, socket.socket.connect_ex = getaddrinfo, connect, connect_ex
import app
from app.limits import get_limits
from app.logs import configure
from app.sources import ExampleItem
from app.standin import register_standin, write_synthetic_example
from app.launch import build_demo, launch_kwargs
configure()
from app.disk import clean_at_start
from app.memory import tune_malloc
clean_at_start()
tune_malloc()
mid = register_standin()
ip, mp = write_synthetic_example(os.path.join(folder, "example"), 64)
lim = get_limits()
demo = build_demo(mid, [ExampleItem("synthetic", "Synthetic", ip, {2: mp})], None, limits=lim)
kw = launch_kwargs(lim)
kw.update(server_name="127.0.0.1", server_port=port, quiet=True)
demo.launch(**kw)
"""


class Served:
    """A started server: ``url``, ``pid``, ``log`` (its stderr), ``network`` (trapped attempts)."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = folder / "server.log"
        self.network = folder / "network.jsonl"
        full = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
                "HF_HUB_DISABLE_TELEMETRY": "1", "OMP_NUM_THREADS": "1", "TSALLIS_HOSTED": "0",
                "GRADIO_TEMP_DIR": str(folder / "gradio"), "TMPDIR": str(folder / "tmp"), **env}
        (folder / "tmp").mkdir(exist_ok=True)
        self._log_file = open(self.log, "w")  # noqa: SIM115  (closed in stop)
        self.proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(folder), str(self.port)], cwd=ROOT,
                                     env=full, stdout=self._log_file, stderr=self._log_file, text=True)
        self.pid = self.proc.pid
        self._wait()

    def _wait(self, limit_s: float = 90.0) -> None:
        import httpx

        t0 = time.time()
        while time.time() - t0 < limit_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "gradio_api/info", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError("server did not start in time")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
        return float("nan")

    def log_lines(self) -> list[str]:
        return [ln for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()]

    def events(self) -> list[dict]:
        out = []
        for ln in self.log_lines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(ln))
        return out

    def network_attempts(self) -> list[dict]:
        if not self.network.exists():
            return []
        return [json.loads(ln) for ln in self.network.read_text().splitlines() if ln.strip()]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self._log_file.close()


def raw_call(url: str, api: str, data: list | str, timeout: float = 60.0, headers: dict | None = None) -> tuple:
    """POST to ``/gradio_api/call/<api>`` (``data`` as a list, or as the raw JSON text of the body) and read the
    event stream: (last event name, its data as text)."""
    import httpx

    body = data if isinstance(data, str) else json.dumps({"data": data})
    r = httpx.post(f"{url}gradio_api/call/{api}", content=body, timeout=timeout,
                   headers={"content-type": "application/json", **(headers or {})})
    if r.status_code != 200:
        return "http", f"{r.status_code} {r.text[:300]}"
    text = httpx.get(f"{url}gradio_api/call/{api}/{r.json()['event_id']}", timeout=timeout).text
    evs = [ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("event:")]
    datas = [ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("data:")]
    return (evs[-1] if evs else "none"), (datas[-1] if datas else "")
