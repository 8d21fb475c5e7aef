"""Issue 15: what one anonymous client must not be able to do to a served app (hosted mode, loopback only).

One server process (see ``served.py``: every outbound name lookup and connection is refused and recorded) takes
hostile requests through raw HTTP and ``gradio_client``:

* no route fetches, resolves or proxies an address a request names (``/file=<url>`` in all its spellings,
  ``/proxy=``), checked with the network trapped (item 1);
* text inputs have a size limit and their handlers are queued (item 5); request bodies are bounded;
* the log is JSON lines only, without tracebacks for refusals, request content or file names, and each
  refusal, Gradio's included, has a ``rejected`` line (item 6);
* numbers no float holds, ``None`` where a number goes, bad indices are refused by name, without server paths
  (item 7);
* a comparison runs each attack once however often a client lists it (item 8);
* the share link takes only an http(s) scheme and a valid host from the headers (item 10).
"""

from __future__ import annotations

import json
import time

import pytest
from served import Served, raw_call

CHEAP_TEXT_HANDLERS = ("load_example", "load_linked_example")  # a dict lookup of the (bounded) example id
STEP = ["synthetic", "standin-tiny", "ce", "pgd", 8, 2, 0, 0, ""]  # ex_id .. sched of /step after image, mask


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Served(tmp_path_factory.mktemp("edge"), {"TSALLIS_HOSTED": "1", "TSALLIS_MODELS": "standin-tiny",
                                                  "TSALLIS_MAX_STEPS": "40", "TSALLIS_MAX_UPLOAD_MB": "2"})
    yield s
    s.stop()


def _error(ev_data: tuple) -> str:
    ev, data = ev_data
    assert ev == "error", (ev, data[:300])
    return json.loads(data)["error"]


FETCH_PATHS = [
    "gradio_api/file=http://203.0.113.7/x.png", "gradio_api/file=https://example.com/a.png",
    "gradio_api/file=http%3A%2F%2Fexample.com%2Fa.png", "gradio_api/file=http%253A%252F%252Fexample.com%252Fa",
    "gradio_api/file=//example.com/a.png", "gradio_api/file=HTTP://EXAMPLE.COM/A.PNG",
    "gradio_api/file= http://example.com/a.png", "gradio_api/file/http://example.com/a.png",
    "gradio_api/file=ftp://example.com/a", "gradio_api/file=http://127.0.0.1:9/x",
    "gradio_api/file=http://169.254.169.254/latest/meta-data/", "gradio_api/file=http://[::1]:9/x",
    "gradio_api/proxy=https://example.hf.space/file=x", "file=http://example.com/x.png",
]


def test_no_route_fetches_an_address(srv, report_figure):
    import httpx

    refused = 0
    for p in FETCH_PATHS:
        for method in ("GET", "HEAD"):
            r = httpx.request(method, srv.url + p, timeout=20)
            assert r.status_code in (403, 404), (p, r.status_code)
            refused += 1
    attempts = srv.network_attempts()
    assert attempts == [], f"the server tried to reach the network: {attempts[:5]}"
    ok = httpx.get(srv.url + "gradio_api/info", timeout=10)
    assert ok.status_code == 200, "the server still answers"
    report_figure(f"edge/SSRF: {refused} requests naming an address in file/proxy routes refused, "
                  f"{len(attempts)} name lookups or connections attempted (network trapped)")


def test_text_inputs_are_bounded_and_queued(srv, report_figure):
    from gradio_client import Client

    t0 = time.perf_counter()
    msg = _error(raw_call(srv.url, "preview", ["tsallis", "points:" + "0:1," * 300_000, 10, "pgd"]))
    dt = time.perf_counter() - t0
    assert "q-schedule text" in msg and "at most" in msg, msg
    assert dt < 5.0, f"a 1.2 MB schedule took {dt:.1f} s to refuse"
    import httpx

    r = httpx.post(srv.url + "gradio_api/call/preview", content=b'{"data": ["' + b"x" * (4 * 2**20) + b'"]}',
                   headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 413, r.status_code
    cfg = Client(srv.url, verbose=False).config
    by_id = {c["id"]: c for c in cfg["components"]}
    texts = [c for c in cfg["components"] if c.get("type") == "textbox" and c["props"].get("label") in
             ("q-schedule text", "example id")]
    assert len(texts) == 2 and all(c["props"].get("max_length") for c in texts)
    unqueued = []
    text_ids = {c["id"] for c in texts}
    for dep in cfg["dependencies"]:
        parses_text = any(i in text_ids for i in dep["inputs"]) and dep.get("api_name") not in CHEAP_TEXT_HANDLERS
        if parses_text and dep.get("queue") is False:
            unqueued.append([by_id[t[0]]["props"].get("label") for t in dep.get("targets", [])])
    assert not unqueued, f"handlers of text inputs without the queue: {unqueued}"
    report_figure(f"edge/text: a 1.2 MB schedule refused by its length in {dt:.2f} s; a 4 MB body refused "
                  "with 413; both text inputs carry a length limit; their parsing handlers are queued")


def test_refusals_by_name(srv, report_figure):
    cases = {
        "Steps, 10**400": (raw_call(srv.url, "step", '{"data": [null, null, "synthetic", "standin-tiny", "ce", '
                                    '"pgd", 8, 1' + "0" * 400 + ', 0, 0, ""]}'), "Steps must be"),
        "Seed, 10**400": (raw_call(srv.url, "step", [None, None, *STEP[:7], 10**400, ""]), "Seed must be"),
        "Seed None on export": (raw_call(srv.url, "export", ["synthetic", "standin-tiny", "ce", "pgd", 8, 2, 0,
                                                             None, ""]), "Seed must be a number"),
        "probe None": (raw_call(srv.url, "probe", [None, None]), "probe x must be a number"),
        "eps text": (raw_call(srv.url, "step", [None, None, *STEP[:4], "8", *STEP[5:]]), "must be a number"),
        "model not offered": (raw_call(srv.url, "step", [None, None, "synthetic", "x" * 5000, *STEP[2:]]),
                              "not in the list of choices"),
        "example id too long": (raw_call(srv.url, "step", [None, None, "e" * 5000, *STEP[1:]]), "at most"),
    }
    for name, (got, want) in cases.items():
        msg = _error(got)
        assert want in msg, (name, msg)
        assert "Could not preprocess" not in msg and "went wrong" not in msg, (name, msg)
        assert "/" not in msg.replace("(/255)", "") and "~" not in msg, (name, msg)
        assert len(msg) < 400, (name, len(msg))
    ok = raw_call(srv.url, "step", [None, None, *STEP])
    assert ok[0] == "complete", ok
    report_figure(f"edge/names: {len(cases)} malformed values (10**400, None, text for a number, a 5000-character "
                  "id) refused naming the control, no server path in any message; the next request works")


def test_compare_runs_each_attack_once(srv, report_figure):
    t0 = time.perf_counter()
    ev, _ = raw_call(srv.url, "compare", [None, None, "synthetic", "standin-tiny", ["ce"] * 40 + ["js"] * 40,
                                          "pgd", 8, 3, 0, 0, "", ], timeout=120)
    dt = time.perf_counter() - t0
    assert ev == "complete"
    time.sleep(0.3)
    runs = [e for e in srv.events() if e.get("event") == "run" and e.get("endpoint") == "compare"]
    assert runs and runs[-1]["attacks"] == ["ce", "js"], runs[-1:]
    assert runs[-1]["records"] == 2 * (3 + 1), runs[-1]
    report_figure(f"edge/compare: 80 listed attacks (40 x ce, 40 x js) ran as 2 runs of 4 records in {dt:.2f} s")


def test_share_link_only_from_valid_scheme_and_host(srv, report_figure):
    bad = [{"x-forwarded-proto": "javascript", "x-forwarded-host": "alert(1)"},
           {"x-forwarded-proto": "javascript", "x-forwarded-host": "example.com"},
           {"x-forwarded-proto": "https", "x-forwarded-host": "evil.com/x?y=<script>"},
           {"x-forwarded-proto": "https", "x-forwarded-host": "user@evil.com"},
           {"x-forwarded-proto": "data", "x-forwarded-host": "text/html,<b>"},
           {"x-forwarded-proto": "https", "x-forwarded-host": "a b.com"}]
    args = ["synthetic", "standin-tiny", "ce", "pgd", 8, 2, 0, 0, ""]
    for h in bad:
        ev, data = raw_call(srv.url, "export", args, headers=h)
        assert ev == "complete", data
        link = json.loads(data)[-1]
        assert link.startswith("?") and "example=synthetic" in link, (h, link)
    ev, data = raw_call(srv.url, "export", args, headers={"x-forwarded-proto": "https",
                                                           "x-forwarded-host": "demo.example.org"})
    assert json.loads(data)[-1].startswith("https://demo.example.org/?"), data
    report_figure(f"edge/share link: {len(bad)} forged forwarded headers gave a relative link; a valid https host "
                  "kept")


def test_log_is_json_only_without_content(srv, report_figure):
    """Runs last in this module: every line the server wrote so far."""
    import numpy as np
    from PIL import Image

    from app.standin import synthetic_image

    img, _ = synthetic_image(48, 3)
    p = srv.folder / "my_secret_holiday_photo.png"
    Image.fromarray(np.asarray(img)).save(p)
    import httpx

    with open(p, "rb") as fh:
        server_path = httpx.post(srv.url + "gradio_api/upload", files={"files": (p.name, fh, "image/png")},
                                 timeout=30).json()[0]
    fd = {"path": server_path, "meta": {"_type": "gradio.FileData"}, "orig_name": p.name}
    assert raw_call(srv.url, "step", [fd, None, "", "standin-tiny", "ce", "pgd", 8, 2, 0, 0, ""])[0] == "complete"
    for f in (srv.folder / "gradio").rglob(p.name):  # what Gradio does an hour later: the upload is deleted
        f.unlink()
    msg = _error(raw_call(srv.url, "step", [fd, None, "", "standin-tiny", "js", "pgd", 8, 2, 0, 0, ""]))
    assert "upload it again" in msg and p.stem not in msg, msg
    raw_call(srv.url, "preview", ["tsallis", "z" * 3_000_000, 10, "pgd"])
    raw_call(srv.url, "step", [None, None, "synthetic", "m" * 1_000_000, *STEP[2:]])
    time.sleep(0.5)
    lines = srv.log_lines()
    bad = [ln[:200] for ln in lines if not _is_json(ln)]
    assert not bad, f"{len(bad)} of {len(lines)} log lines are not JSON: {bad[:5]}"
    events = [json.loads(ln) for ln in lines]
    text = "\n".join(lines)
    assert "Traceback" not in text and '"event":"traceback"' not in text
    assert "my_secret_holiday_photo" not in text and "zzzzzzzzzz" not in text and "mmmmmmmmmm" not in text
    assert max(len(ln) for ln in lines) < 2000
    rejected = [e for e in events if e.get("event") == "rejected"]
    assert len(rejected) >= 10, len(rejected)
    assert any(e.get("status") == 403 for e in rejected), "route refusals get a rejected line"
    assert any("list of choices" in (e.get("error") or "") for e in rejected), "Gradio's refusals too"
    report_figure(f"edge/logs: {len(lines)} log lines, all JSON ({len(rejected)} rejected), no traceback, "
                  f"longest {max(len(ln) for ln in lines)} characters, no file name or request content")


def _is_json(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def test_messages_show_no_server_paths_in_normal_mode(tmp_path):
    """A refusal whose text names server folders (a weights cache, the working directory) reaches the user and
    the log with file names only."""
    import os
    from pathlib import Path

    import gradio as gr

    from app.limits import Limits
    from app.ui import App
    from attack_engine.models import ModelUnavailable

    a = App(limits=Limits(hosted=False), examples=[], precomputed_dir=tmp_path)
    home, cwd = str(Path.home()), os.getcwd()

    def fails():
        raise ModelUnavailable(f"weights not found at {home}/.cache/tsallis/segformer.safetensors "
                               f"(looked in {cwd}/assets/models and ~/.cache/huggingface/hub)")

    with pytest.raises(gr.Error) as e:
        a.guard(fails, "run")()
    msg = str(e.value.message)
    assert "segformer.safetensors" in msg and home not in msg and cwd not in msg and "~/" not in msg, msg
