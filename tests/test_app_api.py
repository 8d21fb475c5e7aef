"""Every public endpoint, called with ``gradio_client`` against the app served on loopback.

The app runs with the stand-in model (:mod:`app.standin`) and a synthetic example with a mask, plus a
precomputed run for it, so the whole suite takes seconds, not minutes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from _kit import free_port

import app  # noqa: F401  (offline environment before gradio)

ARGS = dict(eps=8, alpha=0, seed=0, sched="linear:-2:1")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from app.launch import build_demo
    from app.runner import LiveRun, make_config, prepare
    from app.sources import ExampleItem
    from app.standin import TinySeg, register_standin, write_synthetic_example
    from app.trajectory import save_group

    folder = tmp_path_factory.mktemp("api")
    mid = register_standin()
    ip, mp = write_synthetic_example(folder, 80)
    pre = folder / "pre"
    pre.mkdir()
    model = TinySeg().freeze()
    t = LiveRun(model, prepare(str(ip), str(mp), model, "synthetic"), make_config("ce", "pgd", 4, 4, 0, 1, None)).run_all()
    t.save(pre / "synthetic__standin.npz")
    group = {name: LiveRun(model, prepare(str(ip), str(mp), model, "synthetic"), make_config(a, "pgd", 4, 4, 0, 1, None),
                           light=True).run_all() for a, name in (("ce", "CE-PGD"), ("tsallis", "TsallisPGD"))}
    save_group(pre / "compare.npz", group, with_image=False)
    (pre / "index.json").write_text(json.dumps({"runs": [{"example": "synthetic", "model": mid,
                                                          "file": "synthetic__standin.npz", "config": t.info.config,
                                                          "compare_file": "compare.npz"}]}))
    examples = [ExampleItem("synthetic", "Synthetic", ip, {2: mp}), ExampleItem("plain", "No precomputed run", ip)]
    demo = build_demo(mid, examples, pre)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield {"url": f"http://127.0.0.1:{port}/", "model": mid, "image": ip, "mask": mp,
           "outputs": demo.tsallis_app.api_outputs, "app": demo.tsallis_app}
    demo.close()


@pytest.fixture()
def client(server):
    from gradio_client import Client

    _OUTPUTS.update(server["outputs"])
    return Client(server["url"], verbose=False)  # a fresh session (its own gr.State) per test


def _run_args(server, ex="synthetic", attack="tsallis", opt="apgd", steps=4, **kw):
    a = {**ARGS, **kw}
    return (None, None, ex, server["model"], attack, opt, a["eps"], steps, a["alpha"], a["seed"], a["sched"])


_OUTPUTS: dict[str, list[str]] = {}  # endpoint -> its output names (the app's api_outputs), set by the server fixture


def named(api: str, out) -> dict:
    """An endpoint's outputs by name (``status``, ``seg``, ``hist``, ...), as the app lists them."""
    names = _OUTPUTS[api.strip("/")]
    assert len(names) == len(out), (api, names, len(out))
    return dict(zip(names, out, strict=True))


def _status(out, api: str = "/step") -> str:
    return named(api, out)["status"]


def test_public_endpoints_are_listed(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/run", "/step", "/pause", "/stop", "/reset", "/scrub", "/probe", "/load_example", "/compare",
            "/compare_start", "/compare_stop", "/compare_show", "/compare_scrub", "/export", "/preview"} <= names


def test_run_streams_the_newest_record_and_records_every_one(server, client):
    job = client.submit(*_run_args(server, steps=4), api_name="/run")
    outs = list(job)
    # APGD 4 steps: 4 + 3 stage starts = 7 records; the updates are the newest record each time, at most one per
    # record (+ the first answer), and the last one is the final record
    assert 2 <= len(outs) <= 1 + 7
    last = named("run", outs[-1])
    assert "finished" in last["status"] and "record **6** of 7" in last["status"]
    imgs = [last[n] for n in ("adv", "pert", "seg", "flipped", "firstflip", "weight", "grad") if last[n]]
    assert len(imgs) == 7 and all(Path(p).stat().st_size > 0 for p in imgs)
    assert last["hist"]["type"] == "plotly" and "correct" in last["hist"]["plot"]
    first = named("run", outs[0])
    assert all(Path(first[n]).exists() for n in ("clean", "clean_seg", "gt"))
    for k in range(7):  # every record was recorded: the slider reaches each
        assert f"record **{k}** of 7" in _status(client.predict(k, api_name="/scrub"), "scrub")


def test_step_then_run_continues_and_scrub_is_instant(server, client):
    out = client.predict(*_run_args(server, steps=3), api_name="/step")
    assert "record **0** of 1" in _status(out)
    out = client.predict(*_run_args(server, steps=3), api_name="/step")
    assert "record **1** of 2" in _status(out)
    outs = list(client.submit(*_run_args(server, steps=3), api_name="/run"))
    assert "record **3** of 4" in _status(outs[-1], "run")  # continued: APGD with 3 steps has one stage: 3 + 1 records
    t = time.perf_counter()
    sc = client.predict(1, api_name="/scrub")
    assert time.perf_counter() - t < 5
    assert "record **1** of 4" in _status(sc, "scrub")
    # changing the config starts a new run
    out = client.predict(*_run_args(server, attack="ce", steps=3), api_name="/step")
    assert "CE-PGD" in _status(out) and "record **0** of 1" in _status(out)


def test_pause_cancels_between_records_and_step_resumes(server, client, report_figure):
    LONG = 500  # the most steps allowed: a run that cannot finish before the checks below on a fast machine
    job = client.submit(*_run_args(server, opt="pgd", steps=LONG), api_name="/run")
    for seen, _ in enumerate(job, 1):  # /run computes in the background: pause early, before 500 steps are done
        if seen >= 2:
            break
    # the UI stays responsive while the attack streams: scrubbing bypasses the queue
    t = time.perf_counter()
    sc = client.predict(0, api_name="/scrub")
    assert time.perf_counter() - t < 3 and "record **0**" in _status(sc, "scrub") and not job.done()
    t_pause = time.perf_counter()  # the run computes on in the background, faster than the client reads
    p = client.predict(api_name="/pause")
    assert "Paused" in _status(p, "pause")
    # /run sends the newest record, never a backlog: the client is done soon after the pause (it had to download
    # every one of ~500 updates before, ~10 s and more on this machine)
    while not job.done() and time.perf_counter() - t_pause < 30:
        time.sleep(0.05)
    done_after = time.perf_counter() - t_pause
    assert job.done() and done_after < 10.0, f"the stream ended {done_after:.1f} s after Pause"  # ~2 s at load 12
    time.sleep(0.5)
    n_paused = int(_status(client.predict(0, api_name="/scrub"), "scrub").split(" of ")[1].split(" recorded")[0])
    assert 3 <= n_paused < LONG + 1
    updates = len(job.outputs())
    assert updates < n_paused, f"{updates} updates for {n_paused} records: the stream was not coalesced"
    report_figure(f"API /run: {updates} updates for {n_paused} computed records; the stream ended {done_after:.2f} s "
                  "after /pause")
    out = client.predict(*_run_args(server, opt="pgd", steps=LONG), api_name="/step")
    assert f"record **{n_paused}** of {n_paused + 1}" in _status(out)
    stop = client.predict(api_name="/stop")
    assert "Stopped" in _status(stop, "stop")
    out = client.predict(*_run_args(server, opt="pgd", steps=LONG), api_name="/step")
    assert "record **0** of 1" in _status(out)  # after Stop, a fresh run
    reset = client.predict(api_name="/reset")
    assert "Reset" in _status(reset, "reset")
    assert "No run yet" in _status(client.predict(0, api_name="/scrub"), "scrub")


def test_probe_pixel(server, client):
    client.predict(*_run_args(server, steps=2), api_name="/step")
    out = named("probe", client.predict(12, 30, api_name="/probe"))
    assert "Pixel (x=12, y=30)" in out["probe_md"]
    assert out["probe_plot"]["type"] == "plotly" and "p(object)" in out["probe_plot"]["plot"]


def test_load_example_with_and_without_precomputed_run(server, client):
    out = named("load_example", client.predict("synthetic", server["model"], api_name="/load_example"))
    status = out["status"]
    assert "Precomputed run loaded" in status and "record **0** of 5" in status
    assert (out["attack"], out["opt"], out["steps"]) == ("ce", "pgd", 4)  # controls follow the shipped config
    assert "Precomputed comparison" in out["cmp_status"] and Path(out["cmp_grid"]).exists()
    assert sorted(r[0] for r in out["cmp_table"]["data"]) == ["CE-PGD", "TsallisPGD"]
    sc = client.predict(4, api_name="/scrub")
    assert "record **4** of 5" in _status(sc, "scrub")
    assert "Record 2" in client.predict(2, api_name="/compare_scrub")[0]
    out = named("load_example", client.predict("plain", server["model"], api_name="/load_example"))
    assert "selected" in out["status"] and out["cmp_status"] == "No comparison yet."


def test_compare_and_shared_slider(server, client):
    outs = list(client.submit(None, None, "synthetic", server["model"], ["ce", "tsallis", "js"], "pgd", 8, 3, 0, 0,
                              "linear:-2:1", api_name="/compare"))
    status, _slider, grid, curves, table = outs[-1]
    assert "finished" in status and curves["type"] == "plotly"
    assert Path(grid).stat().st_size > 0
    names = [r[0] for r in table["data"]]
    assert sorted(names) == ["CE-PGD", "JSPGD", "TsallisPGD"]
    accs = [r[1] for r in table["data"]]
    assert accs == sorted(accs)  # leaderboard: lowest (best for the attacker) first
    assert all(r[3] >= 0 for r in table["data"])  # best record index
    cs = client.predict(1, api_name="/compare_scrub")
    assert "Record 1" in cs[0] and '"x0":1' in cs[3]["plot"]


def test_compare_start_and_stop(server, client, monkeypatch):
    """What the page does: /compare_start returns at once, the comparison computes in the background, /compare_stop
    ends it after the record being computed; the recorded part stays for the shared slider."""
    from app.runner import LiveRun

    orig = LiveRun.step
    monkeypatch.setattr(LiveRun, "step", lambda self: (time.sleep(0.01), orig(self))[1])  # ≥ 4 s per attack
    args = (None, None, "synthetic", server["model"], ["ce", "tsallis", "js"], "pgd", 8, 400, 0, 0, "")
    t0 = time.perf_counter()
    started = client.predict(*args, api_name="/compare_start")
    assert time.perf_counter() - t0 < 10 and ("Preparing" in started[0] or "Running" in started[0]), started[0]
    time.sleep(1.0)
    stop = client.predict(api_name="/compare_stop")
    assert "Stopped: 0 of 3 attacks finished" in stop[0] or "Stopping" in stop[0], stop[0]
    time.sleep(1.0)
    sess = [s for s in server["app"].store._sessions if s.compare_run is not None and s.compare_run.state == "stopped"]
    assert len(sess) == 1 and not sess[0].compare_run.active
    c = sess[0].compare_run
    n = c.progress()[0]
    assert 1 <= n < 401 and list(c.runs) == ["CE-PGD"] and not c.runs["CE-PGD"].finished, (n, list(c.runs))
    time.sleep(0.5)
    assert c.progress()[0] == n  # nothing computed after Stop
    cs = client.predict(0, api_name="/compare_scrub")
    assert "Record 0" in cs[0] and [r[0] for r in cs[4]["data"]] == ["CE-PGD"]


def test_export_files_and_link(server, client):
    client.submit(*_run_args(server, steps=3), api_name="/run").result()
    card, csv_p, png, gif, link = client.predict("synthetic", server["model"], "tsallis", "apgd", 8, 3, 0, 0,
                                                 "linear:-2:1", api_name="/export")
    c = json.loads(Path(card).read_text())
    assert c["config"]["attack"] == "tsallis" and c["records"] == 4 and c["finished"]
    lines = Path(csv_p).read_text().splitlines()
    assert lines[0].startswith("index,iteration") and len(lines) == 1 + 4
    from PIL import Image

    assert Image.open(png).format == "PNG"
    g = Image.open(gif)
    assert g.format == "GIF" and g.n_frames == 4
    assert link.startswith("http://127.0.0.1:") and "example=synthetic" in link and "attack=tsallis" in link


def test_preview_validates_schedule(client):
    fig, msg = client.predict("tsallis", "points:0:-2,0.5:0,1:1", 20, "apgd", api_name="/preview")
    assert fig["type"] == "plotly" and "points:0:-2,0.5:0,1:1" in msg
    _, msg = client.predict("tsallis", "linear:-2:oops", 20, "apgd", api_name="/preview")
    assert msg.startswith("⚠️") and "not a number" in msg


def test_bad_inputs_give_readable_errors(server, client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="pick an example or upload"):
        client.predict(*_run_args(server, ex=""), api_name="/step")
    with pytest.raises(AppError, match="schedule"):
        client.predict(*_run_args(server, sched="cosine:1"), api_name="/step")


def test_uploaded_image_and_mask(server, client):
    from gradio_client import handle_file

    out = client.predict(handle_file(str(server["image"])), handle_file(str(server["mask"])), "", server["model"],
                         "masked_ce", "pgd", 8, 2, 2, 0, "", api_name="/step")
    legend = named("step", out)["legend"]
    assert "MaskedPGD" in _status(out) and "your upload" in legend and "ground truth" in legend
    out = client.predict(handle_file(str(server["image"])), None, "", server["model"], "cospgd", "pgd", 8, 2, 0, 0, "",
                         api_name="/step")
    assert "clean prediction" in named("step", out)["legend"]  # no mask: labels = clean prediction
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="mask"):
        client.predict(handle_file(str(server["image"])), handle_file(str(server["image"])), "", server["model"],
                       "ce", "pgd", 8, 2, 0, 0, "", api_name="/step")
