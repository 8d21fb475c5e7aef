"""Debug your own model in the explorer, by each of the three routes, each running an attack in it:

1. ``python app.py --model FILE --classes …`` (the CLI's model flags), as a real process on a free port;
2. ``app.explore(module, class_names=…, palette=…, images=…)`` on an ``nn.Module`` held in Python;
3. the page's "Your own model" box (outside hosted mode): a TorchScript and a ``.safetensors`` SegFormer upload.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from _kit import free_port
from _multiclass import COLOURS, NAMES, ColourSeg, scene, write_scene
from torch import nn

import app
from app.limits import Limits
from attack_engine.models import load_model

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


class PlainColourNet(nn.Module):
    """A plain ``nn.Module`` (not an adapter; scriptable): RGB in, the 6-class logits of :class:`ColourSeg` out."""

    def __init__(self) -> None:
        super().__init__()
        ref = ColourSeg()
        self.register_buffer("centres", ref.centres.clone())
        self.blur = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
        self.gain = float(ref.sharpness * 10.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = ((x.unsqueeze(1) - self.centres) ** 2).sum(2)
        return -self.gain * self.blur(d)


def _texts(out) -> str:
    return " ".join(str(v) for v in out if isinstance(v, str))


def _run_and_check(url: str, model_id: str, example: str, steps: int = 3) -> str:
    from gradio_client import Client

    c = Client(url, verbose=False)
    outs = list(c.submit(None, None, example, model_id, "tsallis", "pgd", 8, steps, 0, 0, "linear:-2:1",
                         api_name="/run"))
    text = _texts(outs[-1])
    assert "finished" in text and f"record **{steps}** of {steps + 1}" in text, text[:400]
    return text


def _torchscript(path: Path) -> Path:
    torch.jit.save(torch.jit.script(PlainColourNet().eval()), str(path))
    return path


def test_route_1_app_py_with_the_cli_model_flags(tmp_path):
    f = _torchscript(tmp_path / "colours.pt")
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port), "TSALLIS_OFFLINE": "1",
           "HF_HUB_OFFLINE": "1", "TSALLIS_HOSTED": "0"}
    env.pop("SPACE_ID", None)
    proc = subprocess.Popen([sys.executable, "app.py", "--model", str(f), "--classes", ",".join(NAMES)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"app.py exited: {proc.stdout.read()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("app.py did not start listening")
        _run_and_check(f"http://127.0.0.1:{port}/", "custom:colours.pt", "voc2012_people", steps=2)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_route_1_bad_flags_are_one_line(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    for argv, fragment in ((["--model", "no-such-model"], "unknown model"),
                           (["--model", str(bad)], "cannot load --model bad.pt")):
        r = subprocess.run([sys.executable, "-c", "import sys, app; app.main(sys.argv[1:])", *argv], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode != 0 and fragment in r.stderr, r.stderr[-800:]
        assert "Traceback" not in r.stderr and str(tmp_path) not in r.stderr.replace(str(bad), "")


def test_route_2_explore_an_nn_module(tmp_path):
    img, lab = scene(96)
    port = free_port()
    demo = app.explore(PlainColourNet(), class_names=NAMES, palette=COLOURS, images=[(img, lab)],
                       model_id="my-colour-net", server_name="127.0.0.1", server_port=port,
                       prevent_thread_lock=True, quiet=True)
    try:
        a = demo.tsallis_app
        assert a.model_id == "my-colour-net" and a.examples[0].id == "yours_0" and a.examples[0].mask_for(6)
        _run_and_check(f"http://127.0.0.1:{port}/", "my-colour-net", "yours_0", steps=4)
        info = load_model("my-colour-net").info
        assert info.class_names == NAMES and info.palette == COLOURS and info.extra["family"] == "custom"
    finally:
        demo.close()
    with pytest.raises(TypeError, match=r"nn\.Module"):
        app.explore("not a model", launch=False)


@pytest.fixture(scope="module")
def local_server(tmp_path_factory):
    from app.launch import build_demo
    from app.sources import ExampleItem

    folder = tmp_path_factory.mktemp("own_model")
    ip, mp = write_scene(folder, 96)
    demo = build_demo(None, [ExampleItem("scene", "Scene", ip, {6: mp})], folder / "none", limits=Limits(hosted=False))
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/", folder
    demo.close()


def test_route_3_upload_torchscript_on_the_page(local_server, tmp_path):
    from gradio_client import Client, handle_file

    url, _ = local_server
    f = _torchscript(tmp_path / "net.pt")
    c = Client(url, verbose=False)
    dd, note = c.predict(handle_file(str(f)), "", ",".join(NAMES), api_name="/load_model")
    dd = dd["value"] if isinstance(dd, dict) else dd  # the updated dropdown (choices + the new model selected)
    assert dd.startswith("upload:net.pt-") and "6 classes" in note, (dd, note)
    _run_and_check(url, dd, "scene", steps=3)


def test_route_3_upload_safetensors_segformer(local_server, tmp_path):
    transformers = pytest.importorskip("transformers")
    from gradio_client import Client, handle_file
    from safetensors.torch import save_file

    from attack_engine.models import segformer as sf

    net = transformers.SegformerForSemanticSegmentation(sf.segformer_config("b0", num_labels=6))
    f = tmp_path / "seg.safetensors"
    save_file(net.state_dict(), str(f))
    url, _ = local_server
    c = Client(url, verbose=False)
    dd, note = c.predict(handle_file(str(f)), "segformer-b0", ",".join(NAMES), api_name="/load_model")
    dd = dd["value"] if isinstance(dd, dict) else dd
    assert dd.startswith("upload:seg.safetensors-") and "background, road" in note
    _run_and_check(url, dd, "scene", steps=2)


def test_route_3_refusals_are_one_message_and_change_nothing(local_server, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    url, folder = local_server
    c = Client(url, verbose=False)
    pickled = tmp_path / "module.pt"
    torch.save(nn.Conv2d(3, 2, 1), pickled)  # a pickled module: needs unpickling code, refused
    with pytest.raises(AppError, match="needs full unpickling") as e:
        c.predict(handle_file(str(pickled)), "", "", api_name="/load_model")
    assert str(tmp_path) not in str(e.value) and str(folder) not in str(e.value)
    wrong = _torchscript(tmp_path / "wrong.pt")
    with pytest.raises(AppError, match="returned 6 channels, 2 classes were declared"):
        c.predict(handle_file(str(wrong)), "", "a,b", api_name="/load_model")
    with pytest.raises(AppError, match="state_dict"):
        net = nn.Conv2d(3, 2, 1)
        sd = tmp_path / "sd.pth"
        torch.save(net.state_dict(), sd)
        c.predict(handle_file(str(sd)), "", "", api_name="/load_model")


def test_hosted_mode_has_no_model_upload():
    from app.launch import build_demo

    demo = build_demo(None, [], limits=Limits(hosted=True))
    names = {fn.api_name for fn in demo.fns.values()} if isinstance(demo.fns, dict) else {fn.api_name for fn in demo.fns}
    assert "load_model" not in names and "debug" in names
