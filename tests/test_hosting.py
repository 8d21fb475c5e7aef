"""Hosting: the Dockerfile's rules, the Space front matter, the limits' environment variables, hosted-mode
refusals (no URLs fetched, no server paths, only listed models, no pickles), per-session memory budget, expiry
and time limit, the ZeroGPU path (with a stand-in ``spaces`` module) and the structured logs.

No Docker engine here: the Dockerfile is parsed and its instructions checked.
"""

from __future__ import annotations

import http.server
import json
import logging
import pickle
import re
import sys
import threading
import time
import types
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import pytest
import tomllib
import yaml
from _kit import free_port

import app  # noqa: F401  (offline environment before gradio)

ROOT = Path(__file__).resolve().parents[1]


# -- packaging -----------------------------------------------------------------------------------------------
def _instructions(text: str) -> list[tuple[str, str]]:
    """Dockerfile -> [(INSTRUCTION, arguments)] with line continuations joined and comments dropped."""
    out, buf = [], ""
    for line in text.splitlines():
        s = line.strip()
        if not buf and (not s or s.startswith("#")):
            continue
        if s.startswith("#"):
            continue
        if s.endswith("\\"):
            buf += s[:-1] + " "
            continue
        buf += s
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def _env(instrs) -> dict[str, str]:
    env = {}
    for word, rest in instrs:
        if word == "ENV":
            for m in re.finditer(r"(\w+)=(\S+)", rest):
                env[m.group(1)] = m.group(2)
    return env


def test_dockerfile_rules():
    instrs = _instructions((ROOT / "Dockerfile").read_text())
    words = [w for w, _ in instrs]
    assert instrs[0] == ("FROM", "python:3.11-slim")
    user_add = next(i for i, (w, r) in enumerate(instrs) if w == "RUN" and "useradd" in r)
    assert re.search(r"useradd .*-u 1000 .*\buser\b", instrs[user_add][1])
    users = [(i, r) for i, (w, r) in enumerate(instrs) if w == "USER"]
    assert users and users[0][0] > user_add and all(r == "user" for _, r in users), "runs as `user` (uid 1000) only"
    env = _env(instrs)
    assert env["HOME"] == "/home/user"
    workdir = [r for w, r in instrs if w == "WORKDIR"]
    assert workdir and workdir[-1] in ("$HOME/app", "/home/user/app")
    copies = [r for w, r in instrs if w in ("COPY", "ADD")]
    assert copies and all(r.startswith("--chown=user") for r in copies), copies
    assert "ADD" not in words
    assert any(w == "EXPOSE" and r.split()[0] == "7860" for w, r in instrs)
    assert env["GRADIO_SERVER_NAME"] == "0.0.0.0" and env.get("GRADIO_SERVER_PORT", "7860") == "7860"
    assert env["GRADIO_ANALYTICS_ENABLED"] == "False" and env["HF_HUB_DISABLE_TELEMETRY"] == "1"
    assert env["TSALLIS_HOSTED"] == "1"
    runs = [r for w, r in instrs if w == "RUN"]
    assert any(r == "bash scripts/setup_env.sh" for r in runs), "installs with the script CI uses"
    assert not any(re.search(r"\bpip3? install\b", r) for r in runs), "no install path besides scripts/setup_env.sh"
    cmd = [r for w, r in instrs if w == "CMD"]
    assert len(cmd) == 1 and json.loads(cmd[0]) in (["bash", "scripts/app.sh"], ["python", "app.py"])
    assert "setup_env.sh" in (ROOT / "scripts/app.sh").read_text() and "python app.py" in (ROOT / "scripts/app.sh").read_text()
    assert "scripts/setup_env.sh" in (ROOT / "scripts/test.sh").read_text() and "scripts/test.sh" in (ROOT / ".ci/run").read_text()
    ignored = {ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln.strip() and not ln.startswith("#")}
    assert {".venv", ".git"} <= ignored
    for needed in ("app", "attack_engine", "assets", "scripts", "requirements.txt", "app.py"):
        assert needed not in ignored and not any(needed.startswith(i.rstrip("/") + "/") for i in ignored), needed


def _front_matter() -> tuple[dict, str]:
    text = (ROOT / "README.md").read_text()
    assert text.startswith("---\n"), "the Space metadata must be the very first thing in README.md"
    _, fm, body = text.split("---\n", 2)
    return yaml.safe_load(fm), body


def test_space_front_matter_matches_requirements():
    fm, body = _front_matter()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", (ROOT / "requirements.txt").read_text(), re.M))
    assert fm["sdk"] == "gradio" and fm["sdk_version"] == pins["gradio"], (fm["sdk_version"], pins["gradio"])
    assert isinstance(fm["python_version"], str) and fm["python_version"] == "3.11"
    docker_from = next(r for w, r in _instructions((ROOT / "Dockerfile").read_text()) if w == "FROM")
    assert docker_from.startswith(f"python:{fm['python_version']}")
    assert (ROOT / fm["app_file"]).is_file() and fm["app_file"] == "app.py"
    assert fm["suggested_hardware"] in ("cpu-basic", "cpu-upgrade", "zero-a10g", "t4-small", "t4-medium", "l4x1")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert fm["license"] == project["license"].lower()
    assert fm["title"] and len(fm.get("short_description", "")) <= 60
    assert body.lstrip().startswith("# TsallisPGD Explorer") and "## Hosting, limits and hosted mode" in body
    for var in ("TSALLIS_MAX_STEPS", "TSALLIS_MAX_SIDE", "TSALLIS_MAX_PIXELS", "TSALLIS_SESSION_MB",
                "TSALLIS_SESSION_TTL", "TSALLIS_QUEUE_SIZE", "TSALLIS_ATTACK_CONCURRENCY", "TSALLIS_TIME_LIMIT",
                "TSALLIS_HOSTED", "TSALLIS_MODELS"):
        assert f"`{var}`" in body, f"{var} is not documented in the README"


# -- limits ---------------------------------------------------------------------------------------------------
def test_limits_from_environment():
    from app.limits import Limits, LimitsError, from_env

    assert from_env({}) == Limits()
    assert from_env({"SPACE_ID": "someone/space"}).hosted and not from_env({"SPACE_ID": "x", "TSALLIS_HOSTED": "0"}).hosted
    lim = from_env({"TSALLIS_MAX_STEPS": "100", "TSALLIS_MAX_SIDE": "512", "TSALLIS_MAX_PIXELS": "1000000",
                    "TSALLIS_SESSION_MB": "64", "TSALLIS_SESSION_TTL": "600", "TSALLIS_QUEUE_SIZE": "8",
                    "TSALLIS_ATTACK_CONCURRENCY": "2", "TSALLIS_TIME_LIMIT": "30", "TSALLIS_HOSTED": "1",
                    "TSALLIS_MODELS": "mediapipe-selfie, mediapipe-selfie-landscape"})
    assert (lim.max_steps, lim.max_side, lim.max_pixels, lim.session_mb, lim.session_ttl_s, lim.queue_size,
            lim.attack_concurrency, lim.time_limit_s, lim.hosted) == (100, 512, 1_000_000, 64, 600, 8, 2, 30, True)
    assert lim.models == ("mediapipe-selfie", "mediapipe-selfie-landscape")
    for var, bad, fragment in [("TSALLIS_MAX_STEPS", "many", "not a number"), ("TSALLIS_MAX_STEPS", "2.5", "whole"),
                               ("TSALLIS_QUEUE_SIZE", "0", "at least 1"), ("TSALLIS_TIME_LIMIT", "nan", "finite"),
                               ("TSALLIS_HOSTED", "maybe", "1 or 0"), ("TSALLIS_MODELS", "../weights.pt", "not paths")]:
        with pytest.raises(LimitsError, match=re.escape(var)) as e:
            from_env({var: bad})
        assert fragment in str(e.value)


def test_malformed_limit_stops_the_start_with_one_line():
    import os
    import subprocess

    env = {**os.environ, "TSALLIS_MAX_STEPS": "lots", "GRADIO_SERVER_PORT": str(free_port())}
    r = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "TSALLIS_MAX_STEPS='lots' is not a number" in lines[0], r.stderr[-500:]


def test_hosted_model_list():
    from app.limits import Limits, LimitsError, allowed_models
    from app.standin import register_standin
    from attack_engine.models import get_entry

    sid = register_standin()
    hosted = allowed_models(Limits(hosted=True))
    assert "mediapipe-selfie" in hosted and sid not in hosted
    assert all(get_entry(m).family == "bundled" or get_entry(m).available() for m in hosted)
    assert sid in allowed_models(Limits())  # locally every registered model
    assert allowed_models(Limits(hosted=True, models=("mediapipe-selfie",))) == ["mediapipe-selfie"]
    with pytest.raises(LimitsError, match="unknown model"):
        allowed_models(Limits(models=("no-such-model",)))


def test_hosted_mode_never_unpickles(tmp_path, monkeypatch):
    import torch

    from app.limits import Limits, apply_hosted_environment
    from attack_engine.models.checkpoints import UnsafeCheckpoint, read_checkpoint

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.write_text, (marker, "code ran"))

    ckpt = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(2), "payload": Evil()}, ckpt)
    env = {"TSALLIS_TRUST_PICKLE": "1"}
    assert "TSALLIS_TRUST_PICKLE removed" in apply_hosted_environment(Limits(hosted=True), env)
    assert "TSALLIS_TRUST_PICKLE" not in env and env["GRADIO_ANALYTICS_ENABLED"] == "False"
    monkeypatch.delenv("TSALLIS_TRUST_PICKLE", raising=False)
    with pytest.raises(UnsafeCheckpoint):
        read_checkpoint(ckpt)
    assert not marker.exists()


def test_run_card_cannot_name_a_path(tmp_path):
    from app.runner import rerun_card
    from attack_engine.runfile import APP_CARD_V1, FORMAT

    for bad in ("../../etc/passwd", str(tmp_path / "model.pt"), "http://127.0.0.1:1/model"):
        for fmt in (FORMAT, APP_CARD_V1):
            with pytest.raises(KeyError, match="unknown model"):
                rerun_card({"format": fmt, "model": bad, "input": {}, "source": {}, "config": {}})


# -- a hosted server ------------------------------------------------------------------------------------------
class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self):
        _Recorder.hits.append(self.path)
        self.send_response(200)
        self.send_header("content-type", "image/png")
        self.end_headers()
        self.wfile.write(b"\x89PNG\r\n\x1a\n")

    def log_message(self, *a):
        pass


@pytest.fixture(scope="module")
def hosted(tmp_path_factory):
    from app.launch import build_demo, launch_kwargs
    from app.limits import Limits
    from app.observe import JsonFormatter, logger
    from app.sources import ExampleItem
    from app.standin import register_standin, write_synthetic_example

    folder = tmp_path_factory.mktemp("hosted")
    mid = register_standin()
    ip, mp = write_synthetic_example(folder, 64)
    lim = Limits(hosted=True, models=(mid,), max_steps=40, session_ttl_s=2.0)
    demo = build_demo(mid, [ExampleItem("synthetic", "Synthetic", ip, {2: mp})], folder / "none", limits=lim)
    port = free_port()
    kw = launch_kwargs(lim)
    kw.update(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    demo.launch(**kw)
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            lines.append(JsonFormatter().format(record))

    handler = Keep()
    logger().addHandler(handler)
    trap = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=trap.serve_forever, daemon=True).start()
    yield {"url": f"http://127.0.0.1:{port}/", "model": mid, "image": ip, "mask": mp, "demo": demo, "logs": lines,
           "trap": f"http://127.0.0.1:{trap.server_address[1]}", "app": demo.tsallis_app}
    trap.shutdown()
    logger().removeHandler(handler)
    demo.close()


def _raw(url: str, api: str, data: list) -> tuple[str, str]:
    import httpx

    r = httpx.post(f"{url}gradio_api/call/{api}", json={"data": data}, timeout=30)
    r.raise_for_status()
    text = httpx.get(f"{url}gradio_api/call/{api}/{r.json()['event_id']}", timeout=60).text
    ev = [ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("event:")][-1]
    data_ = [ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("data:")][-1]
    return ev, data_


def test_hosted_refusals(hosted, report_figure):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    h = hosted
    m = h["model"]
    refusals = 0

    def refused(ev_data, fragment):
        nonlocal refusals
        ev, data = ev_data
        assert ev == "error", data[:300]
        msg = json.loads(data)["error"]
        assert fragment in msg, msg
        refusals += 1

    # a web address where a file goes: refused before anything is fetched (no SSRF), as image and as mask
    for target in (f"{h['trap']}/probe.png", "http://169.254.169.254/latest/meta-data/", "https://example.com/x.png"):
        fd = {"path": target, "meta": {"_type": "gradio.FileData"}, "orig_name": "x.png"}
        refused(_raw(h["url"], "step", [fd, None, "", m, "ce", "pgd", 8, 2, 0, 0, ""]), "not web addresses")
        refused(_raw(h["url"], "step", [None, fd, "synthetic", m, "ce", "pgd", 8, 2, 0, 0, ""]), "not web addresses")
    time.sleep(0.3)
    assert _Recorder.hits == [], f"the server fetched a user-given address: {_Recorder.hits}"
    # server paths: only files Gradio received are accepted
    for path in ("/etc/passwd", str(h["image"]), "../../../etc/hostname"):
        fd = {"path": path, "meta": {"_type": "gradio.FileData"}}
        refused(_raw(h["url"], "step", [fd, None, "", m, "ce", "pgd", 8, 2, 0, 0, ""]), "not uploaded by a user")
    # only the offered models (the menu lists the others as "not offered on this host"); ids are never paths
    refused(_raw(h["url"], "step", [None, None, "synthetic", "mediapipe-selfie", "ce", "pgd", 8, 2, 0, 0, ""]),
            "not offered here")
    for model in ("/etc/passwd", "../assets/models/selfie_segmentation.tflite"):
        refused(_raw(h["url"], "step", [None, None, "synthetic", model, "ce", "pgd", 8, 2, 0, 0, ""]),
                "not in the list of choices")
    # example ids are looked up, never opened
    for ex in ("../../etc/passwd", "/etc/passwd", "synthetic/../../x"):
        refused(_raw(h["url"], "load_example", [ex, m]), "unknown example")
        refused(_raw(h["url"], "step", [None, None, ex, m, "ce", "pgd", 8, 2, 0, 0, ""]), "unknown example")
    # no endpoint takes a model file: the only file inputs are the image and the mask
    api = Client(h["url"], verbose=False).view_api(print_info=False, return_format="dict")["named_endpoints"]
    file_params = {(ep, p["parameter_name"]) for ep, info in api.items() for p in info["parameters"]
                   if "FileData" in json.dumps(p.get("type", {}))}
    assert {n for _, n in file_params} <= {"image", "mask"}, file_params
    # the next normal request works
    c = Client(h["url"], verbose=False)
    out = c.predict(None, None, "synthetic", m, "ce", "pgd", 8, 2, 0, 0, "", api_name="/step")
    assert "record **0**" in out[4]
    with pytest.raises(AppError, match="not offered here"):
        c.predict(None, None, "synthetic", "mediapipe-selfie", "ce", "pgd", 8, 2, 0, 0, "", api_name="/step")
    report_figure(f"hosted mode: {refusals} refusals (URLs as image/mask, server paths, unlisted or path-like "
                  f"model ids, path-like example ids), {len(_Recorder.hits)} outbound fetches, "
                  f"file inputs = {sorted({n for _, n in file_params})}")


def test_query_parameters_cannot_name_paths(hosted):

    a = hosted["app"]
    req = types.SimpleNamespace(query_params={"example": "../../etc/passwd", "model": "/etc/passwd",
                                              "steps": "1e9", "eps": "nan", "schedule": "const:1e6",
                                              "attack": "x"})
    out = a.on_load(req)  # output name -> value; an output not named stays as it is
    assert not {"model", "attack", "eps", "steps", "ex_id", "image_in"} & set(out), out
    ok = a.on_load(types.SimpleNamespace(query_params={"example": "synthetic", "steps": "7", "eps": "4"}))
    assert ok["ex_id"] == "synthetic" and ok["steps"] == 7 and ok["eps"] == 4.0


def test_structured_logs(hosted, report_figure):
    from gradio_client import Client, handle_file

    h = hosted
    c = Client(h["url"], verbose=False)
    list(c.submit(handle_file(str(h["image"])), None, "", h["model"], "tsallis", "pgd", 8, 3, 0, 0, "linear:-2:1",
                  api_name="/run"))
    with pytest.raises(Exception, match="Steps must be"):
        c.predict(None, None, "synthetic", h["model"], "ce", "pgd", 8, 999, 0, 0, "", api_name="/step")
    time.sleep(0.3)
    events = [json.loads(ln) for ln in h["logs"]]
    runs = [e for e in events if e["event"] == "run" and e["endpoint"] == "run"]
    assert runs, events[-5:]
    r = runs[-1]
    assert {"model", "attack", "optimizer", "steps", "duration_s", "outcome", "records", "session"} <= set(r)
    assert r["model"] == h["model"] and r["attack"] == "tsallis" and r["steps"] == 3 and r["outcome"] == "finished"
    assert r["records"] == 4 and r["source"] == "upload" and r["duration_s"] >= 0
    rej = [e for e in events if e["event"] == "rejected"]
    assert any("Steps must be" in e["error"] for e in rej)
    text = "\n".join(h["logs"])
    assert h["image"].name not in text and "synthetic.png" not in text and "base64" not in text
    assert max(len(ln) for ln in h["logs"]) < 2000
    report_figure(f"structured logs: {len(events)} JSON lines ({len(runs)} run, {len(rej)} rejected), none with "
                  "image content or file names")


# -- budgets, expiry, time limit (the app's handlers called directly: no HTTP needed) ---------------------------
def _app(tmp_path, **limits):
    from app.limits import Limits
    from app.sources import ExampleItem
    from app.standin import register_standin, write_synthetic_example
    from app.ui import App

    mid = register_standin()
    ip, mp = write_synthetic_example(tmp_path, 64)
    a = App(mid, [ExampleItem("synthetic", "Synthetic", ip, {2: mp})], tmp_path / "none", Limits(**limits))
    return a, mid


def _step_args(mid, steps=5, attack="ce"):
    from app.request import RunRequest

    return (RunRequest(None, None, "synthetic", mid, attack, "pgd", 8, steps, 0, 0, ""),)


def test_session_memory_budget_and_total_budget(tmp_path, report_figure):
    from app.runner import InputError
    from app.sessions import BudgetError, Session, estimate_live_bytes, estimate_run_bytes, session_nbytes

    # a 10-step PGD run on the 64×64 example: its recording plus the attack's state while it runs
    e_rec, e_live = estimate_run_bytes((64, 64), 2, 11), estimate_live_bytes((64, 64), 2, "pgd")
    e10 = e_rec + e_live
    total_budget = 2.5 * e_rec + e_live  # two finished runs fit, a third running one only if one gives way
    a, mid = _app(tmp_path, session_mb=2 * e10 / 2**20, total_mb=total_budget / 2**20, max_steps=500)
    s1 = Session()
    list(a.run(*_step_args(mid, steps=10), s1))
    assert s1.live is None or s1.live.done
    assert 0 < session_nbytes(s1) <= e10, "the estimate bounds what a finished run keeps"
    before = a.scrub(0, s1)["status"]
    with pytest.raises(BudgetError, match="use fewer steps"):
        a.step(*_step_args(mid, steps=400), s1)
    assert a.scrub(0, s1)["status"] == before, "a refused run leaves the recorded one in place"
    # total budget: other sessions' runs give way, least recently used first, and are told so
    s2, s3 = Session(), Session()
    list(a.run(*_step_args(mid, steps=10), s2))
    assert s1.traj is not None, "two runs fit"
    list(a.run(*_step_args(mid, steps=10), s3))
    assert s1.traj is None and s2.traj is not None and s3.traj is not None, "the least recently used gave way"
    total = a.store.total_bytes()
    assert total <= total_budget
    assert "removed to make room" in a.scrub(0, s1)["status"]
    with pytest.raises(InputError):
        a.step(replace(_step_args(mid)[0], example=""), s1)
    report_figure(f"memory budget: 10-step run estimated {e10 / 1024:.0f} KiB (kept {session_nbytes(s2) / 1024:.0f} "
                  f"KiB); 400 steps refused; 3rd session evicted the least recently used; total kept "
                  f"{total / 1024:.0f} KiB <= {total_budget / 1024:.0f} KiB")


def test_session_expiry(tmp_path):
    from app.sessions import Session

    a, mid = _app(tmp_path, session_ttl_s=1.0)
    s = Session()
    a.step(*_step_args(mid), s)
    assert s.traj is not None
    time.sleep(1.3)
    status = a.scrub(0, s)["status"]
    assert "expired" in status and s.traj is None


def test_time_limit_pauses_a_long_run(tmp_path):
    from app.sessions import Session

    a, mid = _app(tmp_path, time_limit_s=0.4, max_steps=500)
    s = Session()
    t0 = time.perf_counter()
    outs = list(a.run(*_step_args(mid, steps=500), s))
    assert time.perf_counter() - t0 < 15
    assert "time limit of 0.4 s" in outs[-1]["status"] and not s.live.done and len(s.traj) < 501
    n = len(s.traj)
    list(a.run(*_step_args(mid, steps=500), s))  # Run continues the same run
    assert len(s.traj) > n


def test_zero_gpu_path_with_a_stand_in_spaces_module(tmp_path, monkeypatch):
    import importlib

    import app.gpu as gpu
    from app.sessions import Session
    from app.trajectory import Trajectory

    calls = []

    def GPU(duration):
        def deco(fn):
            def wrapped(*a, **k):
                calls.append(duration(*a, **k))
                out = fn(*a, **k)
                return pickle.loads(pickle.dumps(out))  # ZeroGPU ships results between processes

            return wrapped

        return deco

    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=GPU))
    assert not gpu.zero_gpu(), "without SPACES_ZERO_GPU nothing changes"
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    try:
        importlib.reload(gpu)
        assert gpu.zero_gpu()
        a, mid = _app(tmp_path)
        s = Session()
        outs = list(a.run(*_step_args(mid, steps=6, attack="tsallis"), s))
        assert calls == [gpu.duration_for(6)] == [int(gpu.BASE_S + 0.5 * 6 + 0.999)]
        assert isinstance(s.traj, Trajectory) and s.traj.finished and len(s.traj) == 7
        assert "GPU" in outs[-1]["status"] and "record **6**" in outs[-1]["status"]
        cmp = list(a.compare_tab.compare(None, None, "synthetic", mid, ["ce", "js"], "pgd", 8, 4, 0, 0, "", s))
        assert len(calls) == 3 and "finished" in cmp[-1][1]
    finally:
        monkeypatch.delenv("SPACES_ZERO_GPU")
        importlib.reload(gpu)
    assert not gpu.zero_gpu()
