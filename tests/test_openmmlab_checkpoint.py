"""OpenMMLab checkpoints as they are published: ``{"meta": {...}, "state_dict": ...}`` with numpy values in meta.

The fixtures reproduce that structure: the meta keys mmcv's ``save_checkpoint`` writes (environment text, config
text, CLASSES, PALETTE, versions, time, epoch/iter, ``hook_msgs``), ``seed`` and ``best_score`` as numpy scalars,
saved in torch's legacy (pre-zip) format with numpy 1.x's global names (``numpy.core.multiarray.scalar``), as a
2020/2021 file is.  They must load on the safe ``weights_only`` path; anything else in ``meta`` is refused unless the
file's full sha256 is pinned in the zoo table.
"""

from __future__ import annotations

import collections
import hashlib
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from attack_engine.models import registry
from attack_engine.models.checkpoints import UnsafeCheckpoint, numpy_meta_globals, read_checkpoint
from attack_engine.models.datasets import DATASETS
from attack_engine.models.registry import load_model

pytest.importorskip("mmseg", reason="mmsegmentation not installed")
from attack_engine.models import mmseg as mm

PRESET = "mmseg-segformer-b0-ade"


class ConfigLike(dict):
    """Stands in for an mmcv ``Config``/``ConfigDict`` object that some checkpoints keep in ``meta``."""


class Payload:
    """Unpickling this creates a marker folder: proof that code from the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def openmmlab_meta(extra: dict | None = None) -> dict:
    names, palette = DATASETS["ade20k"]
    meta = {
        "env_info": "sys.platform: linux\nPython: 3.7.10\nCUDA available: True\nPyTorch: 1.8.1\nMMCV: 1.3.9",
        "config": "norm_cfg = dict(type='SyncBN', requires_grad=True)\nmodel = dict(\n    type='EncoderDecoder',\n"
                  "    pretrained='pretrain/mit_b0.pth',\n    backbone=dict(type='MixVisionTransformer'))\n",
        "seed": np.int64(1829435237),
        "exp_name": "segformer_mit-b0_512x512_160k_ade20k.py",
        "mmseg_version": "0.16.0+3a5b1f2",
        "mmcv_version": "1.3.9",
        "CLASSES": tuple(names),
        "PALETTE": [list(rgb) for rgb in palette],
        "time": "Mon Jul 26 10:15:30 2021",
        "epoch": 1,
        "iter": 160000,
        "hook_msgs": {"last_ckpt": "work_dirs/segformer/iter_160000.pth", "best_score": np.float64(0.3741),
                      "best_ckpt": "work_dirs/segformer/best_mIoU_iter_160000.pth"},
    }
    meta.update(extra or {})
    return meta


def save_like_openmmlab(path: Path, state_dict: dict, meta: dict) -> Path:
    """Legacy torch format with numpy 1.x global names, as the published files were written."""
    sd = collections.OrderedDict((k, v.clone()) for k, v in state_dict.items())
    torch.save({"meta": meta, "state_dict": sd}, path, _use_new_zipfile_serialization=False)
    raw = path.read_bytes()
    path.write_bytes(raw.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n"))
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TSALLIS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TSALLIS_OFFLINE", "1")
    monkeypatch.delenv("TSALLIS_TRUST_PICKLE", raising=False)
    monkeypatch.setattr(registry, "_CACHE", {})
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def source_net() -> mm.MMSegModel:
    return mm.build_mmseg(mm.PRESETS[PRESET].config)


def test_fixture_has_the_published_structure(tmp_path, source_net):
    f = save_like_openmmlab(tmp_path / "c.pth", source_net.net.state_dict(), openmmlab_meta())
    raw = f.read_bytes()
    assert raw[:2] != b"PK", "legacy (pre-zip) format"
    assert b"cnumpy.core.multiarray\nscalar\n" in raw and b"numpy._core" not in raw
    with pytest.raises(Exception, match=r"numpy\.core\.multiarray\.scalar"):
        torch.load(f, weights_only=True)  # torch's default allow-list alone refuses it


def test_published_structure_loads_safely_through_the_zoo(cache, source_net, monkeypatch):
    p = mm.PRESETS[PRESET]
    p.weights_path().parent.mkdir(parents=True)
    save_like_openmmlab(p.weights_path(), source_net.net.state_dict(), openmmlab_meta())
    obj = read_checkpoint(p.weights_path())
    meta = obj["meta"]
    assert isinstance(meta["seed"], np.int64) and meta["seed"] == 1829435237
    assert isinstance(meta["hook_msgs"]["best_score"], np.float64) and meta["CLASSES"][0] == "wall"
    model = load_model(PRESET)
    assert model.info.class_names == DATASETS["ade20k"][0]
    x = torch.rand(1, 3, 64, 64)
    torch.testing.assert_close(model(x), source_net(x))


def test_numpy_2_names_and_arrays_load_too(tmp_path):
    f = tmp_path / "np2.pth"
    torch.save({"meta": {"seed": np.int64(3), "PALETTE": np.array([[1, 2, 3]], dtype=np.uint8)},
                "state_dict": {"w": torch.ones(2)}}, f)
    obj = read_checkpoint(f)
    assert obj["meta"]["PALETTE"].tolist() == [[1, 2, 3]] and torch.equal(obj["state_dict"]["w"], torch.ones(2))


def test_allow_list_is_exactly_plain_numpy_data(tmp_path):
    names = {g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__qualname__}" for g in numpy_meta_globals()}
    assert {"numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar", "numpy.core.multiarray._reconstruct",
            "numpy.ndarray", "numpy.dtype"} <= names
    assert not any("Object" in n or "Void" in n for n in names), names
    f = tmp_path / "obj.pth"  # an object array could smuggle arbitrary objects: still refused
    torch.save({"meta": {"x": np.array([{"a": 1}], dtype=object)}, "state_dict": {"w": torch.ones(1)}}, f)
    with pytest.raises(UnsafeCheckpoint):
        read_checkpoint(f)


def test_other_meta_objects_need_a_pinned_sha256(cache, source_net, monkeypatch):
    p = mm.PRESETS[PRESET]
    p.weights_path().parent.mkdir(parents=True)
    meta = openmmlab_meta({"cfg": ConfigLike(model={"type": "EncoderDecoder"})})
    f = save_like_openmmlab(p.weights_path(), source_net.net.state_dict(), meta)
    digest = hashlib.sha256(f.read_bytes()).hexdigest()
    with pytest.raises(UnsafeCheckpoint, match="needs full unpickling"):
        load_model(PRESET)
    monkeypatch.setitem(mm.PRESETS, PRESET, replace(p, sha256=digest[:8]))  # a prefix is not a pin
    with pytest.raises(UnsafeCheckpoint):
        load_model(PRESET)
    monkeypatch.setitem(mm.PRESETS, PRESET, replace(p, sha256="0" * 64))  # another file's digest
    with pytest.raises(UnsafeCheckpoint):
        load_model(PRESET)
    monkeypatch.setitem(mm.PRESETS, PRESET, replace(p, sha256=digest))
    model = load_model(PRESET)
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(model(x), source_net(x))


def test_payload_never_runs_without_a_matching_pin(cache, source_net, monkeypatch, tmp_path):
    p = mm.PRESETS[PRESET]
    p.weights_path().parent.mkdir(parents=True)
    marker = tmp_path / "PAYLOAD_RAN"
    save_like_openmmlab(p.weights_path(), {"w": torch.zeros(1)}, openmmlab_meta({"x": Payload(marker)}))
    monkeypatch.setitem(mm.PRESETS, PRESET, replace(p, sha256="f" * 64))
    with pytest.raises(UnsafeCheckpoint):
        load_model(PRESET)
    assert not marker.exists()
