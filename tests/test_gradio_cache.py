"""The files the app hands to a browser stay downloadable while another Gradio app on the machine cleans up.

Gradio names a cached copy by the hash of its content (one hash seed per installation), so two Gradio processes
sharing the machine's default cache (``<temp>/gradio``) hand out the *same path* for the same picture; when the
other one shuts down it deletes every file it handed out (``delete_cache``), ours included, and the browser gets
a 403 ("File not allowed") for a panel the page has just been told to show.  Deterministic runs (the stand-in
model, the shipped examples) make identical panels the rule.  This reproduces that with a second process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
from _kit import free_port

import app  # noqa: F401  (offline environment before gradio)

OTHER_APP = r"""
import sys
import gradio as gr
from gradio.route_utils import delete_files_created_by_app
with gr.Blocks() as other:
    img = gr.Image()
copy = img.move_resource_to_block_cache(sys.argv[1])  # the same picture handed out by another Gradio app
delete_files_created_by_app(other, None)  # what its shutdown does
print(copy)
"""


def test_panel_survives_another_gradio_app_closing(tmp_path, monkeypatch):
    from gradio_client import Client

    from app.launch import build_demo
    from app.sources import ExampleItem
    from app.standin import register_standin, write_synthetic_example

    machine_tmp = tmp_path / "tmp"  # the machine's temp folder, as both processes see it
    machine_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(machine_tmp))
    monkeypatch.setenv("GRADIO_TEMP_DIR", "unset-below")  # recorded, so the test's end restores the original
    monkeypatch.delenv("GRADIO_TEMP_DIR")  # no operator choice: the app picks its cache folder
    mid = register_standin()
    ip, mp = write_synthetic_example(tmp_path, 48)
    demo = build_demo(mid, [ExampleItem("synthetic", "Synthetic", ip, {2: mp})], tmp_path / "none")
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        client = Client(url, verbose=False, download_files=False)
        out = client.predict(None, None, "synthetic", mid, "ce", "pgd", 8, 2, 0, 0, "linear:-2:1", api_name="/step")
        files = [o for o in out if isinstance(o, dict) and str(o.get("path", "")).endswith(".jpeg")]
        assert files, "the step handed out no panel image"
        served = files[0]
        assert httpx.get(served["url"], timeout=30).status_code == 200
        source = demo.tsallis_app.frames.dir / Path(served["path"]).name
        assert source.is_file()
        env = {k: v for k, v in os.environ.items() if k != "GRADIO_TEMP_DIR"}
        env.update(TMPDIR=str(machine_tmp), GRADIO_ANALYTICS_ENABLED="False")
        other = subprocess.run([sys.executable, "-c", OTHER_APP, str(source)], env=env, capture_output=True,
                               text=True, timeout=120)
        assert other.returncode == 0, other.stderr[-2000:]
        r = httpx.get(served["url"], timeout=30)
        assert r.status_code == 200, (f"{r.status_code} for a panel just handed out (the other app's copy was "
                                      f"{other.stdout.strip()}, ours {served['path']})")
    finally:
        demo.tsallis_janitor.stop()
        demo.close()
