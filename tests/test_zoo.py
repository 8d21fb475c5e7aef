"""Model zoo: mmseg presets, Hugging Face SegFormer, user models, weights cache, safe loading.

No network: every model is loaded from a checkpoint the test writes (random weights) into a temporary
``$TSALLIS_CACHE``, i.e. the very file a download would have produced, through the registry.  The download code
itself is exercised against a local HTTP server.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from attack_engine.models import registry
from attack_engine.models.checkpoints import (
    UnsafeCheckpoint,
    ensure_file,
    openmmlab_hash,
    read_checkpoint,
)
from attack_engine.models.registry import ModelUnavailable, describe_models, get_entry, load_model

mmseg = pytest.importorskip("mmseg", reason="mmsegmentation not installed")  # imported via the shim below
transformers = pytest.importorskip("transformers")

from attack_engine.models import custom as custom_mod  # noqa: E402
from attack_engine.models import mmseg as mm  # noqa: E402
from attack_engine.models import segformer as sf  # noqa: E402
from attack_engine.models.datasets import DATASETS  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")  # TorchScript is what we test

ZOO_IDS = [*mm.PRESETS, *sf.PRESETS]
LIGHT_MMSEG = ["mmseg-fcn-r18-cityscapes", "mmseg-deeplabv3-r18-cityscapes", "mmseg-segformer-b0-ade"]
HEAVY_MMSEG = ["mmseg-pspnet-r50-cityscapes", "mmseg-pspnet-r50-voc"]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty weights cache, downloads off, and a fresh registry model cache."""
    d = tmp_path / "cache"
    monkeypatch.setenv("TSALLIS_CACHE", str(d))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-hub"))  # an empty Hugging Face cache, not the user's
    monkeypatch.setenv("TSALLIS_OFFLINE", "1")
    monkeypatch.delenv("TSALLIS_TRUST_PICKLE", raising=False)
    monkeypatch.setattr(registry, "_CACHE", {})
    return d


def no_network(monkeypatch) -> None:
    """Any attempt to open a network connection fails the test."""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[1:] or kwargs}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def check_contract(model, num_classes: int, size=(32, 48)) -> torch.Tensor:
    """Output shape at input size, finite nonzero input gradient, eval mode kept, frozen weights."""
    torch.manual_seed(0)
    x = torch.rand(2, 3, *size, requires_grad=True)
    out = model(x)
    assert out.shape == (2, num_classes, *size)
    assert torch.isfinite(out).all()
    loss = nn.functional.cross_entropy(out, out.detach().argmax(1))
    loss.backward()
    g = x.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
    assert not model.training and not any(m.training for m in model.modules())
    assert not any(p.requires_grad for p in model.parameters())
    with pytest.raises(RuntimeError):
        model.train()
    assert model.info.num_classes == num_classes == len(model.info.palette)
    return out.detach()


# -- registry ---------------------------------------------------------------------------------------------------
def test_listing_does_not_import_heavy_packages():
    code = (
        "import sys; from attack_engine.models.registry import describe_models; rows = describe_models(); "
        "assert {'mmseg', 'mmcv', 'mmengine', 'transformers'}.isdisjoint(sys.modules), sorted(sys.modules); "
        "print(len(rows))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.strip()) >= 2 + len(ZOO_IDS)


def test_describe_models_rows(cache):
    rows = {r["id"]: r for r in describe_models()}
    assert {"mediapipe-selfie", "mediapipe-selfie-landscape", *ZOO_IDS} <= set(rows)
    for mid in ZOO_IDS:
        r = rows[mid]
        assert set(r) >= {"id", "title", "family", "classes", "licence", "source", "available"}
        assert r["available"] is False and r["licence"] and r["source"]
    assert rows["mmseg-pspnet-r50-voc"]["classes"] == 21
    assert rows["hf-segformer-b0-ade"]["classes"] == 150
    assert rows["hf-segformer-b1-cityscapes"]["family"] == "segformer"


@pytest.mark.parametrize("model_id", ZOO_IDS)
def test_missing_weights_offline_one_clear_message(cache, model_id):
    with pytest.raises(ModelUnavailable) as e:
        load_model(model_id)
    msg = str(e.value)
    assert model_id in msg and str(cache) in msg and "put it at" in msg
    assert (".pth" in msg) if model_id.startswith("mmseg") else ("model.safetensors" in msg)
    assert not get_entry(model_id).available()


def test_no_network_fails_fast_and_clearly(tmp_path, monkeypatch):
    monkeypatch.delenv("TSALLIS_OFFLINE", raising=False)
    dest = tmp_path / "w-0123abcd.pth"
    with pytest.raises(ModelUnavailable, match="could not be downloaded"):
        ensure_file("some-model", dest, "http://127.0.0.1:9/w-0123abcd.pth", timeout=2, progress=False)
    assert not dest.exists() and not list(tmp_path.iterdir())


def test_hf_offline_env_is_honoured(tmp_path, monkeypatch):
    monkeypatch.delenv("TSALLIS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailable, match="HF_HUB_OFFLINE"):
        ensure_file("m", tmp_path / "model.safetensors", "http://127.0.0.1:9/x", hf=True)


# -- download path against a local server ---------------------------------------------------------------------------
@pytest.fixture
def http_root(tmp_path):
    root = tmp_path / "srv"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield root, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


def test_download_verifies_checksum(tmp_path, http_root, monkeypatch):
    monkeypatch.delenv("TSALLIS_OFFLINE", raising=False)
    root, base = http_root
    (root / "blob.bin").write_bytes(b"x" * 3000)
    good = hashlib.sha256(b"x" * 3000).hexdigest()
    dest = ensure_file("m", tmp_path / "dl" / "blob.bin", f"{base}/blob.bin", sha256=good[:8], progress=False)
    assert dest.read_bytes() == b"x" * 3000
    bad = tmp_path / "dl2" / "blob.bin"
    with pytest.raises(ModelUnavailable, match="checksum mismatch"):
        ensure_file("m", bad, f"{base}/blob.bin", sha256="deadbeef", progress=False)
    assert not bad.exists() and not list(bad.parent.iterdir())  # no partial file left
    with pytest.raises(ModelUnavailable, match="404"):
        ensure_file("m", tmp_path / "dl3" / "nope.bin", f"{base}/nope.bin", progress=False)


def test_mmseg_preset_download_then_load(cache, http_root, monkeypatch):
    """A preset downloaded on first use ends in the same file, and the same loader, as one put there by hand."""
    root, base = http_root
    p = mm.PRESETS["mmseg-segformer-b0-ade"]
    src = mm.build_mmseg(p.config)
    blob = root / "tmp.pth"
    torch.save({"state_dict": src.net.state_dict(), "meta": {"note": "random"}}, blob)
    name = f"segformer_test_20260101_000000-{hashlib.sha256(blob.read_bytes()).hexdigest()[:8]}.pth"
    blob.rename(root / name)
    assert openmmlab_hash(name) == name[-12:-4]
    monkeypatch.setitem(mm.PRESETS, p.id, replace(p, url=f"{base}/{name}"))
    monkeypatch.delenv("TSALLIS_OFFLINE", raising=False)
    model = load_model(p.id)
    assert (cache / "mmseg" / name).is_file() and get_entry(p.id).available()
    x = torch.rand(1, 3, 64, 64)
    torch.testing.assert_close(model(x), src(x))


class _FakeHub:
    """``huggingface_hub``'s two calls the download makes, answered from a folder of files (no network here)."""

    def __init__(self, files: dict[str, bytes], etags: dict[str, str] | None = None) -> None:
        self.files, self.calls, self.asked = files, [], []
        self.etags = etags if etags is not None else {f: hashlib.sha256(b).hexdigest() for f, b in files.items()}

    def _missing(self, filename: str):
        import httpx
        from huggingface_hub.errors import RemoteEntryNotFoundError

        response = httpx.Response(404, request=httpx.Request("HEAD", "https://huggingface.co/x"))
        return RemoteEntryNotFoundError(f"404: {filename}\nmore lines", response=response)

    def metadata(self, url, timeout=None):
        from huggingface_hub.file_download import HfFileMetadata

        name = url.rsplit("/", 1)[1]
        self.asked.append(name)
        if name not in self.files:
            raise self._missing(name)
        return HfFileMetadata(commit_hash="0" * 40, etag=self.etags[name], location=url, size=len(self.files[name]),
                              xet_file_data=None)

    def download(self, repo, filename, *, revision, local_dir, etag_timeout, tqdm_class):
        self.calls.append((repo, filename, revision, Path(local_dir)))
        if filename not in self.files:
            raise self._missing(filename)
        out = Path(local_dir) / filename
        out.write_bytes(self.files[filename])
        return str(out)

    def install(self, monkeypatch) -> None:
        import huggingface_hub

        monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", self.metadata)
        monkeypatch.setattr(huggingface_hub, "hf_hub_download", self.download)
        for var in ("TSALLIS_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
            monkeypatch.delenv(var, raising=False)


def _segformer_weights(tmp_path, n: int = 19):
    net = transformers.SegformerForSemanticSegmentation(sf.segformer_config("b0", num_labels=n)).eval()
    net.save_pretrained(str(tmp_path / "saved"))
    return net, (tmp_path / "saved" / "model.safetensors").read_bytes()


def test_hf_preset_download_then_load(cache, tmp_path, monkeypatch):
    p = sf.PRESETS["hf-segformer-b0-cityscapes"]
    net, blob = _segformer_weights(tmp_path)
    hub = _FakeHub({"model.safetensors": blob})
    hub.install(monkeypatch)
    model = load_model(p.id, progress=False)
    assert hub.calls == [(p.repo, "model.safetensors", "main", p.folder())]  # hf_hub_download into the own cache
    assert (p.folder() / "model.safetensors").read_bytes() == blob and get_entry(p.id).available()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ref = net(pixel_values=(x - model.mean) / model.std).logits
    ref = nn.functional.interpolate(ref, size=(64, 64), mode="bilinear", align_corners=False)
    torch.testing.assert_close(model(x), ref)


def test_hf_download_falls_back_to_the_bin_and_checks_the_sha256(cache, tmp_path, monkeypatch):
    p = sf.PRESETS["hf-segformer-b0-cityscapes"]
    hub = _FakeHub({"pytorch_model.bin": b"weights"})
    hub.install(monkeypatch)
    from attack_engine.models.checkpoints import ensure_any

    got = ensure_any(p.id, p.candidates(), progress=False)  # no model.safetensors in the repo: the .bin next
    assert got == p.folder() / "pytorch_model.bin" and got.read_bytes() == b"weights"
    assert hub.asked == ["model.safetensors", "pytorch_model.bin"] and [c[1] for c in hub.calls] == ["pytorch_model.bin"]
    got.unlink()
    _FakeHub({"pytorch_model.bin": b"weights"}, etags={"pytorch_model.bin": "ab" * 32}).install(monkeypatch)
    with pytest.raises(ModelUnavailable, match="checksum mismatch") as e:
        ensure_any(p.id, p.candidates(), progress=False)
    assert "\n" not in str(e.value) and not (p.folder() / "pytorch_model.bin").exists()


def test_hf_network_error_and_offline_are_one_line(cache, monkeypatch):
    import httpx
    import huggingface_hub

    p = sf.PRESETS["hf-segformer-b0-ade"]
    _FakeHub({}).install(monkeypatch)

    def down(url, timeout=None):
        raise httpx.ConnectError("[Errno 111] Connection refused\nsecond line")

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", down)
    with pytest.raises(ModelUnavailable, match=r"ConnectError: .Errno 111. Connection refused") as e:
        load_model(p.id)
    assert "\n" not in str(e.value) and "second line" not in str(e.value)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", lambda *a, **k: pytest.fail("called offline"))
    with pytest.raises(ModelUnavailable, match="HF_HUB_OFFLINE is set"):
        load_model(p.id)


def test_url_download_times_out(tmp_path, monkeypatch):
    """A server that accepts and never answers: the download gives up after the timeout (the library has none)."""
    import socket
    import time

    monkeypatch.delenv("TSALLIS_OFFLINE", raising=False)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    try:
        t0 = time.perf_counter()
        with pytest.raises(ModelUnavailable, match=r"could not be downloaded .*time"):
            ensure_file("m", tmp_path / "w.pth", f"http://127.0.0.1:{srv.getsockname()[1]}/w.pth", timeout=1,
                        progress=False)
        assert time.perf_counter() - t0 < 20
    finally:
        srv.close()
    assert socket.getdefaulttimeout() is None and not list(tmp_path.iterdir())


# -- mmseg ------------------------------------------------------------------------------------------------------
def _write_mmseg_checkpoint(preset_id: str) -> mm.MMSegModel:
    p = mm.PRESETS[preset_id]
    src = mm.build_mmseg(p.config)
    p.weights_path().parent.mkdir(parents=True, exist_ok=True)
    torch.save({"meta": {"mmseg_version": "1.2.2", "CLASSES": ["a"]}, "state_dict": src.net.state_dict()},
               p.weights_path())
    return src


@pytest.mark.parametrize("preset_id", LIGHT_MMSEG + HEAVY_MMSEG)
def test_mmseg_preset_from_cache(cache, preset_id, monkeypatch):
    p = mm.PRESETS[preset_id]
    src = _write_mmseg_checkpoint(preset_id)
    assert get_entry(preset_id).available()
    monkeypatch.delenv("TSALLIS_OFFLINE")  # a present file must not touch the network even when online
    no_network(monkeypatch)
    model = load_model(preset_id)
    names, palette = DATASETS[p.dataset]
    assert model.info.class_names == names and model.info.palette == palette
    check_contract(model, len(names))
    x = torch.rand(1, 3, 32, 48)
    torch.testing.assert_close(model(x), src(x))  # the saved weights were really loaded


def test_mmseg_normalisation_matches_data_preprocessor():
    p = mm.PRESETS["mmseg-fcn-r18-cityscapes"]
    model = mm.build_mmseg(p.config)
    assert model.to_bgr is False  # the config sets bgr_to_rgb=True: the network sees RGB
    rgb = torch.rand(1, 3, 32, 48)
    bgr255 = (rgb[0].flip(0) * 255.0)  # what mmseg's cv2 loader hands the preprocessor
    ref = model.net.data_preprocessor({"inputs": [bgr255]}, False)["inputs"]
    torch.testing.assert_close(model.normalise(rgb), ref, rtol=1e-5, atol=1e-4)


def test_mmseg_wrong_checkpoint_is_reported(tmp_path):
    p = mm.PRESETS["mmseg-fcn-r18-cityscapes"]
    other = mm.build_mmseg(mm.PRESETS["mmseg-segformer-b0-ade"].config)
    f = tmp_path / "wrong.pth"
    torch.save({"state_dict": other.net.state_dict()}, f)
    with pytest.raises(ValueError, match=r"missing|does not fit"):
        mm.build_mmseg(p.config, f)


def test_preset_urls_match_mmseg_metafiles():
    import yaml

    root = mm.configs_root()
    for p in mm.PRESETS.values():
        family = p.url.split("/v0.5/")[1].split("/")[0]
        models = yaml.safe_load((root / family / "metafile.yaml").read_text())["Models"]
        (entry,) = [m for m in models if m["Name"] == p.config]
        assert entry["Weights"] == p.url
        assert mm.resolve_config(p.config).is_file()


def test_dataset_tables_match_mmseg_metainfo():
    import mmseg.datasets as d

    for key, cls in [("ade20k", d.ADE20KDataset), ("cityscapes", d.CityscapesDataset), ("voc", d.PascalVOCDataset)]:
        names, palette = DATASETS[key]
        assert names == tuple(cls.METAINFO["classes"])
        assert palette == tuple(tuple(c) for c in cls.METAINFO["palette"])


def test_mmcv_shim():
    from attack_engine.models import mmcv_shim

    mm.import_mmseg()
    if mmcv_shim.has_full_mmcv():
        pytest.skip("full mmcv installed: the shim is not used")
    import mmcv.ops

    assert mmcv_shim.is_applied() and mmcv_shim.apply() is True
    feats = torch.rand(1, 2, 4, 4)
    pts = torch.rand(1, 5, 2)
    assert mmcv.ops.point_sample(feats, pts).shape == (1, 2, 5)
    with pytest.raises(mmcv_shim.CompiledOpUnavailable, match="mmcv-lite"):
        mmcv.ops.CrissCrossAttention(4)
    with pytest.raises(mmcv_shim.CompiledOpUnavailable, match="compiled"):
        mmcv.ops.sigmoid_focal_loss(feats, feats)


# -- Hugging Face SegFormer -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("preset_id", list(sf.PRESETS))
def test_hf_segformer_preset_from_cache(cache, preset_id, monkeypatch):
    p = sf.PRESETS[preset_id]
    names, _ = DATASETS[p.dataset]
    net = transformers.SegformerForSemanticSegmentation(sf.segformer_config(p.variant, num_labels=len(names)))
    p.folder().mkdir(parents=True)
    if preset_id == "hf-segformer-b0-ade":  # the legacy weight file name works too
        torch.save(net.state_dict(), p.folder() / "pytorch_model.bin")
    else:
        from safetensors.torch import save_file

        save_file(net.state_dict(), str(p.folder() / "model.safetensors"))
    assert get_entry(preset_id).available()
    monkeypatch.delenv("TSALLIS_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    no_network(monkeypatch)
    model = load_model(preset_id)
    assert model.info.class_names == names and model.info.class_names[0] == ("wall" if p.dataset == "ade20k" else "road")
    check_contract(model, len(names))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ref = net.eval()(pixel_values=(x - torch.tensor(sf.IMAGENET_MEAN).view(1, 3, 1, 1))
                         / torch.tensor(sf.IMAGENET_STD).view(1, 3, 1, 1)).logits
    torch.testing.assert_close(model(x), nn.functional.interpolate(ref, size=(64, 64), mode="bilinear"))


# -- custom models and safe loading -------------------------------------------------------------------------------------
class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("TSALLIS_TRUST_PICKLE", raising=False)
    marker = tmp_path / "PAYLOAD_RAN"
    f = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "meta": _Evil(marker)}, f)
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpoint, match="trusted=True"):
        read_checkpoint(f)
    with pytest.raises(UnsafeCheckpoint):
        custom_mod.load_custom(f, arch="segformer-b0")
    assert not marker.exists()


def test_numpy_meta_loads_without_trust(tmp_path):
    import numpy as np

    f = tmp_path / "np.pth"
    torch.save({"state_dict": {"w": torch.ones(2)}, "meta": {"seed": np.int64(3), "arr": np.arange(3)}}, f)
    obj = read_checkpoint(f)
    assert torch.equal(obj["state_dict"]["w"], torch.ones(2))


def test_pickled_module_needs_opt_in(tmp_path, monkeypatch):
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 1))
    f = tmp_path / "module.pt"
    torch.save(net, f)
    monkeypatch.delenv("TSALLIS_TRUST_PICKLE", raising=False)
    with pytest.raises(UnsafeCheckpoint):
        custom_mod.load_custom(f, class_names=["a", "b", "c"])
    model = custom_mod.load_custom(f, class_names=["a", "b", "c"], trusted=True)
    check_contract(model, 3)
    monkeypatch.setenv("TSALLIS_TRUST_PICKLE", "1")
    check_contract(custom_mod.load_custom(f, class_names=["a", "b", "c"]), 3)


def test_torchscript_round_trip(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, stride=2), nn.ReLU(), nn.Conv2d(8, 4, 1)).eval()
    f = tmp_path / "model.ts"
    torch.jit.script(net).save(str(f))
    assert custom_mod.is_torchscript(f)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    model = custom_mod.load_custom(f, class_names=["a", "b", "c", "d"], mean=mean, std=std)
    out = check_contract(model, 4, size=(32, 48))
    x = torch.rand(1, 3, 32, 48)
    ref = net((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
    ref = nn.functional.interpolate(ref, size=(32, 48), mode="bilinear", align_corners=False)
    torch.testing.assert_close(model(x), ref)
    assert out.shape[1] == 4
    # class count probed from the output when not given
    assert custom_mod.load_custom(f).info.num_classes == 4


def test_torchscript_single_channel_is_binary(tmp_path):
    net = nn.Conv2d(3, 1, 1).eval()
    f = tmp_path / "bin.pt"
    torch.jit.script(net).save(str(f))
    model = custom_mod.load_custom(f)
    assert model.info.class_names == ("background", "foreground")
    x = torch.rand(1, 3, 16, 16)
    p = model(x).softmax(1)[:, 1]
    torch.testing.assert_close(p, torch.sigmoid(net(x))[:, 0])


def test_custom_segformer_safetensors(tmp_path):
    from safetensors.torch import save_file

    names = ["sky", "ground", "thing"]
    net = transformers.SegformerForSemanticSegmentation(sf.segformer_config("b0", num_labels=3)).eval()
    f = tmp_path / "mine.safetensors"
    save_file(net.state_dict(), str(f))
    model = custom_mod.load_custom(f, arch="segformer-b0", class_names=names)
    assert model.info.class_names == tuple(names)
    check_contract(model, 3)
    with pytest.raises(ValueError, match="does not fit"):
        custom_mod.load_custom(f, arch="segformer-b1", class_names=names)
    same = custom_mod.load_custom(f, arch="hf-segformer-b0-cityscapes", class_names=names)  # a zoo id as arch
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(same(x), model(x))
    with pytest.raises(ValueError, match="arch="):
        custom_mod.load_custom(f)


def test_custom_mmseg_state_dict_with_own_classes(tmp_path):
    names = ["bg", "cell"]
    p = mm.PRESETS["mmseg-fcn-r18-cityscapes"]
    base = mm.build_mmseg(p.config, cfg_options={"model.decode_head.num_classes": 2,
                                                 "model.auxiliary_head.num_classes": 2})
    f = tmp_path / "fcn2.pth"
    torch.save({"state_dict": base.net.state_dict()}, f)
    model = custom_mod.load_custom(f, arch=f"mmseg:{p.config}", class_names=names,
                                   mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert model.info.class_names == tuple(names)
    check_contract(model, 2)
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(model.normalise(x), (x * 255 - 127.5) / 63.75)
