"""Issue 15, items 2 and 3: the memory a session is charged for is the memory it really keeps, the total budget
holds, and freed memory goes back to the system.

A child process (clean heap, one thread for torch) builds the app around the stand-in model and keeps
16 sessions alive, each with its own upload: once after two ``/step`` calls (a live attack), once after a
finished run.  The resident-memory growth per session (after ``app.memory.release``) is compared with what the
session store charges (``session_nbytes``) and with the estimate admission uses; then 40 sessions go through a
server whose ``TSALLIS_TOTAL_MB`` is small.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 0.25

CHILD = r"""
import json, sys
import app
from PIL import Image
from app.limits import Limits
from app.memory import release, retained_bytes, tune_malloc
from app.sessions import Session, estimate_live_bytes, estimate_run_bytes, session_nbytes
from app.sources import ExampleItem
from app.standin import register_standin, synthetic_image, write_synthetic_example
from app.request import RunRequest
from app.ui import App
folder, mode, n, side, total_mb = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
tune_malloc()  # what app.launch.main does at start
mid = register_standin()
ip, mp = write_synthetic_example(folder, 64)
a = App(mid, [ExampleItem("synthetic", "S", ip, {2: mp})], None, Limits(max_steps=100, total_mb=total_mb,
                                                                        session_mb=10**5))
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
def upload(k):
    img, _ = synthetic_image(side, k)
    p = f"{folder}/u{k}.png"
    Image.fromarray(img).save(p)
    return p
def work(k, s):
    req = RunRequest(upload(k), None, "", mid, "tsallis", "apgd", 8, 20, 0, k, "linear:-2:1")
    if mode == "step":  # two steps: APGD holds its full state from its second iteration on
        a.step(req, s)
        a.step(req, s)
    else:
        list(a.run(req, s))
for k in range(2):  # warm-up: model, first allocations, code paths
    work(1000 + k, Session())
release()
r0 = rss()
kept = []
for k in range(n):
    s = Session()
    a.store.touch(s)
    work(k, s)
    kept.append(s)
release()
r1 = rss()
t = next(s.traj for s in kept if s.traj is not None)
hw = t.info.model_hw
est = estimate_run_bytes(hw, 2, len(t)) + (estimate_live_bytes(hw, 2, "apgd") if mode == "step" else 0)
charged = [session_nbytes(s) for s in kept]
print(json.dumps({"rss_per_session": (r1 - r0) / n, "charged": sum(charged) / n, "estimate": est,
                  "walked": sum(retained_bytes(s) for s in kept) / n, "store_total": a.store.total_bytes(),
                  "rss_growth": r1 - r0, "kept_runs": sum(s.traj is not None for s in kept), "model_hw": hw,
                  "records": len(t)}))
"""


def _child(tmp_path: Path, mode: str, n: int, side: int, total_mb: float) -> dict:
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc to read resident memory")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), mode, str(n), str(side), str(total_mb)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("mode", ["step", "run"])
def test_charged_memory_is_what_a_session_keeps(tmp_path, mode, report_figure):
    r = _child(tmp_path, mode, 16, 192, 10**6)
    rss, charged, est = r["rss_per_session"], r["charged"], r["estimate"]
    assert abs(charged - rss) <= TOLERANCE * rss, f"charged {charged / 2**20:.2f} MB vs measured {rss / 2**20:.2f} MB"
    assert abs(est - rss) <= TOLERANCE * rss, f"estimated {est / 2**20:.2f} MB vs measured {rss / 2**20:.2f} MB"
    what = "two /step calls (a live APGD attack)" if mode == "step" else f"a finished run ({r['records']} records)"
    report_figure(f"memory per session, {what} on a {r['model_hw'][0]}x{r['model_hw'][1]} upload: measured "
                  f"{rss / 2**20:.2f} MB (RSS growth / 16 sessions), charged {charged / 2**20:.2f} MB "
                  f"({100 * (charged / rss - 1):+.0f} %), estimated {est / 2**20:.2f} MB "
                  f"({100 * (est / rss - 1):+.0f} %), object walk {r['walked'] / 2**20:.2f} MB")


def test_total_budget_holds(tmp_path, report_figure):
    total_mb = 60.0
    r = _child(tmp_path, "step", 40, 192, total_mb)
    assert r["store_total"] <= total_mb * 2**20
    assert r["kept_runs"] < 40, "older sessions' runs gave way"
    growth = r["rss_growth"] / 2**20
    assert growth <= total_mb * (1 + TOLERANCE) + 10, f"RSS grew {growth:.0f} MB with a {total_mb:g} MB budget"
    report_figure(f"memory total: 40 sessions with a live attack each (charged {r['estimate'] * 40 / 2**20:.0f} MB "
                  f"if all were kept) under TSALLIS_TOTAL_MB={total_mb:g}: {r['kept_runs']} kept, charged "
                  f"{r['store_total'] / 2**20:.1f} MB, RSS grew {growth:.1f} MB")


def test_tensors_without_a_plain_storage_count_their_data():
    """A sparse tensor counts the dense tensors holding its data, an MKL-DNN tensor its elements, a meta tensor
    (no host memory) its Python header; a CPU tensor counts its storage once, however often it is held."""
    import torch

    from app.memory import _tensor_bytes

    coo = torch.eye(64).to_sparse()  # 64 values (float32) at 2 x 64 int64 indices
    assert _tensor_bytes(coo, set()) == 64 * 4 + 2 * 64 * 8 + sys.getsizeof(coo)
    csr = torch.eye(64).to_sparse_csr()  # its row pointers, column indices and values: their storages, each once
    held = {p.untyped_storage().data_ptr(): p.untyped_storage().nbytes()
            for p in (csr.crow_indices(), csr.col_indices(), csr.values())}
    assert sum(held.values()) >= 65 * 8 + 64 * 8 + 64 * 4
    assert _tensor_bytes(csr, set()) == sum(held.values()) + sys.getsizeof(csr)
    if torch.backends.mkldnn.is_available():
        mk = torch.eye(64).to_mkldnn()
        assert _tensor_bytes(mk, set()) == 64 * 64 * 4 + sys.getsizeof(mk)
    meta = torch.empty(1 << 20, device="meta")
    assert _tensor_bytes(meta, set()) == sys.getsizeof(meta)
    dense, seen = torch.ones(1000), set()
    assert _tensor_bytes(dense, seen) == 4000 + sys.getsizeof(dense)
    assert _tensor_bytes(dense.view(10, 100), seen) == sys.getsizeof(dense)  # the same storage: counted once
