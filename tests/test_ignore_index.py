"""The model's ignore index reaches the engine by itself: the engine, the CLI and the app never need it passed.

A colour model whose ignore id is 5 ("tree"), against the same model with the usual 255 and the tree pixels
relabelled 255: every record must be the same, so the tree pixels count nowhere in the first run.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from _multiclass import ColourSeg, scene
from PIL import Image

from app.runner import LiveRun, Prepared
from attack_engine import AttackConfig, AttackRun
from attack_engine.cli import main
from attack_engine.models.registry import ModelEntry, register

TREE = 5


def _model(ignore_index: int, model_id: str) -> ColourSeg:
    m = ColourSeg(model_id=model_id)
    m.info = dataclasses.replace(m.info, ignore_index=ignore_index)
    return m


@pytest.fixture(scope="module")
def data():
    img, lab = scene(48)
    assert (lab == TREE).any()
    return img, lab.astype(np.int64), np.where(lab == TREE, 255, lab).astype(np.int64)


def _records(model, img, lab, cfg):
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    run = AttackRun(model, x, torch.from_numpy(lab)[None], cfg)
    recs = [(float(r.acc[0]), float(r.miou[0]), float(r.loss[0]), r.x_adv.clone(), r.weight) for r in run]
    return run, recs


def _same(a, b):
    assert [r[:3] for r in a] == [r[:3] for r in b]
    assert all(torch.equal(ra[3], rb[3]) for ra, rb in zip(a, b, strict=True))


def test_engine_takes_the_ignore_index_from_the_model(data):
    img, lab, lab255 = data
    cfg = AttackConfig(attack="tsallis", optimizer="apgd", steps=6, seed=3)
    run5, rec5 = _records(_model(TREE, "ii5"), img, lab, cfg)
    run255, rec255 = _records(_model(255, "ii255"), img, lab255, cfg)
    assert run5.cfg.ignore_index == TREE and run255.cfg.ignore_index == 255
    assert cfg.ignore_index is None  # the caller's config is not changed
    _same(rec5, rec255)
    tree = torch.from_numpy(lab == TREE)
    assert all(float(r[4][0][tree].abs().max()) == 0.0 for r in rec5)  # no gradient weight on the ignored pixels
    # an explicit config value wins over the model's: the tree pixels count again and the records differ
    run_x, rec_x = _records(_model(TREE, "ii5"), img, lab, dataclasses.replace(cfg, ignore_index=255))
    assert run_x.cfg.ignore_index == 255 and [r[0] for r in rec_x] != [r[0] for r in rec5]
    # a bare callable (no adapter, no info) keeps 255
    bare, _ = _records(lambda z: _model(255, "b")(z), img, lab255, AttackConfig(steps=1, optimizer="pgd"))
    assert bare.cfg.ignore_index == 255


def test_cli_uses_the_models_ignore_index(data, tmp_path, capsys):
    img, lab, lab255 = data
    for mid, ii in (("colour-ii5", TREE), ("colour-ii255", 255)):
        register(ModelEntry(id=mid, title=mid, family="custom", num_classes=6, licence="-", source="tests",
                            loader=lambda device="cpu", mid=mid, ii=ii: _model(ii, mid)))
    Image.fromarray(img).save(tmp_path / "img.png")
    Image.fromarray(lab.astype(np.uint8)).save(tmp_path / "mask5.png")
    Image.fromarray(lab255.astype(np.uint8)).save(tmp_path / "mask255.png")
    files = {}
    for mid, mask in (("colour-ii5", "mask5.png"), ("colour-ii255", "mask255.png")):
        out = tmp_path / f"{mid}.json"
        argv = ["attack", "--model", mid, "--image", str(tmp_path / "img.png"), "--mask", str(tmp_path / mask),
                "--steps", "6", "--seed", "2", "--out", str(out), "--no-progress"]
        assert main(argv) == 0, capsys.readouterr().err
        files[mid] = json.loads(out.read_text())
    a, b = files["colour-ii5"], files["colour-ii255"]
    assert a["config"]["ignore_index"] == TREE and b["config"]["ignore_index"] == 255
    for col in ("acc", "miou", "loss", "ce"):
        assert a["per_record"][col] == b["per_record"][col], col


def test_app_run_uses_the_models_ignore_index(data):
    img, lab, lab255 = data
    cfg = AttackConfig(steps=6, seed=1)
    t5 = LiveRun(_model(TREE, "ii5"), Prepared(img, lab, "upload", "ii5"), cfg).run_all()
    t255 = LiveRun(_model(255, "ii255"), Prepared(img, lab255, "upload", "ii255"), cfg).run_all()
    assert t5.info.ignore_index == TREE and t5.info.config["ignore_index"] == TREE
    assert t5.valid_v.shape == lab.shape and not t5.valid_v[lab == TREE].any()
    for col in ("acc", "miou", "loss", "flipped"):
        assert np.array_equal(t5.scalars(col), t255.scalars(col)), col


def test_evaluation_uses_the_models_ignore_index(data, tmp_path):
    from attack_engine.evaluate import main as eval_main

    img, lab, lab255 = data
    for mid, ii in (("colour-ii5", TREE), ("colour-ii255", 255)):
        register(ModelEntry(id=mid, title=mid, family="custom", num_classes=6, licence="-", source="tests",
                            loader=lambda device="cpu", mid=mid, ii=ii: _model(ii, mid)))
    metrics = {}
    for mid, labels in (("colour-ii5", lab), ("colour-ii255", lab255)):
        root = tmp_path / mid
        (root / "images").mkdir(parents=True)
        (root / "labels").mkdir()
        Image.fromarray(img).save(root / "images" / "scene.png")
        Image.fromarray(labels.astype(np.uint8)).save(root / "labels" / "scene.png")
        out = tmp_path / f"out-{mid}"
        assert eval_main(["--model", mid, "--data", f"folder:{root}", "--size", "48", "--steps", "3",
                          "--attacks", "ce,tsallis", "--eps", "8/255", "--no-progress", "--out", str(out)]) == 0
        metrics[mid] = json.loads((out / "metrics.json").read_text())
    a, b = metrics["colour-ii5"], metrics["colour-ii255"]
    assert a["clean"] == b["clean"] and 0 < a["clean"]["acc"] < 1
    assert [(s["method"], s["acc"], s["miou"]) for s in a["settings"]] == \
        [(s["method"], s["acc"], s["miou"]) for s in b["settings"]]
