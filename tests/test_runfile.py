"""One run-file format: the CLI's ``attack --out`` and the app's run card re-run in each other to the same records.

Also: the older formats (CLI ``tsallispgd-run/1``, app ``run-card@1``) are still read, and bad files get one line.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from _multiclass import ColourSeg, scene
from PIL import Image

import app  # noqa: F401
from app.export import run_card
from app.runner import LiveRun, make_config, prepare, rerun_card
from app.standin import register_standin, synthetic_image, write_synthetic_example
from attack_engine import AttackConfig, AttackRun, determinism
from attack_engine.cli import main
from attack_engine.images import resize_image, resize_labels, to_tensor, to_uint8
from attack_engine.models import load_model
from attack_engine.models.registry import ModelEntry, register
from attack_engine.runfile import (
    APP_CARD_V1,
    CLI_V1,
    FORMAT,
    RECORD_COLUMNS,
    RunFileError,
    png_b64,
    read_run,
    record_row,
)

COMPARED = ("acc", "miou", "loss", "ce", "param", "eps", "step_size", "best_index", "mass_cc", "mass_wrong")


def _cli(argv, capsys) -> None:
    assert main([*argv, "--no-progress"]) == 0, capsys.readouterr().err


def _columns(traj) -> dict[str, list]:
    return {c: [None if not np.isfinite(v) else v for v in traj.scalars(c).tolist()] for c in COMPARED}


@pytest.fixture(scope="module")
def standin():
    return register_standin()


def test_a_cli_run_file_reruns_in_the_app_to_the_same_records(standin, tmp_path, capsys):
    ip, mp = write_synthetic_example(tmp_path, 56)
    out = tmp_path / "cli.json"
    _cli(["attack", "--model", standin, "--image", str(ip), "--mask", str(mp), "--attack", "tsallis",
          "--schedule", "cosine:-2:1", "--steps", "7", "--seed", "4", "--threads", "1", "--out", str(out)], capsys)
    card = json.loads(out.read_text())
    assert card["format"] == FORMAT and set(card["per_record"]) == set(RECORD_COLUMNS)
    assert card["compute"]["torch_threads"] == 1 and card["compute"]["deterministic"] is True
    again = rerun_card(out)
    assert len(again) == card["records"] == 10 and again.info.config == card["config"]
    assert _columns(again) == {c: card["per_record"][c] for c in COMPARED}
    assert again.info.extra["result_acc"] == card["metrics"]["result_acc"]
    assert again.info.extra["compute"]["torch_threads"] == 1  # computed with the file's thread count


def test_an_app_run_card_reruns_in_the_cli_to_the_same_records(standin, tmp_path, capsys):
    model = load_model(standin)
    img, mask = synthetic_image(64, seed=2)
    with determinism.using(2):
        traj = LiveRun(model, prepare(img, mask, model), make_config("segpgd", "pgd", 8, 6, 1, 9, None)).run_all()
    p = tmp_path / "card.json"
    p.write_text(json.dumps(run_card(traj)))
    out = tmp_path / "again.json"
    _cli(["attack", "--from", str(p), "--out", str(out)], capsys)
    card, again = json.loads(p.read_text()), json.loads(out.read_text())
    assert again["config"] == card["config"] and again["input"] == card["input"]
    assert again["compute"]["torch_threads"] == 2
    assert {c: again["per_record"][c] for c in COMPARED} == {c: card["per_record"][c] for c in COMPARED}
    assert again["metrics"]["result_acc"] == card["metrics"]["result_acc"]


def test_a_targeted_cli_run_reruns_targeted_in_the_app(standin, tmp_path, capsys):
    ip, _ = write_synthetic_example(tmp_path, 40)
    out = tmp_path / "t.json"
    _cli(["attack", "--model", standin, "--image", str(ip), "--attack", "ce", "--optimizer", "pgd", "--steps", "4",
          "--target-class", "1", "--threads", "1", "--out", str(out)], capsys)
    card = json.loads(out.read_text())
    assert card["target_class"] == 1 and card["config"]["targeted"] and card["input"]["labels_png"] is None
    again = rerun_card(out)
    assert again.info.extra["target_class"] == 1
    assert _columns(again)["acc"] == card["per_record"]["acc"]
    assert run_card(again)["target_class"] == 1


def test_the_old_app_run_card_still_reruns(standin):
    model = load_model(standin)
    img, mask = synthetic_image(48, seed=5)
    with determinism.using(1):
        traj = LiveRun(model, prepare(img, mask, model), make_config("tsallis", "apgd", 8, 5, 0, 2, None)).run_all()
    new = run_card(traj)
    old = {  # what app/export.py wrote before the shared format (run-card@1)
        "format": APP_CARD_V1, "model": new["model"], "config": new["config"], "records": new["records"],
        "expected_records": new["expected_records"], "finished": True, "compute": new["compute"],
        "source": {"example": None, "image_hw": new["input"]["size"], "image_png": new["input"]["image_png"],
                   "labels_png": new["input"]["labels_png"]},
        "metrics": {"clean_acc": 0.5, "best_index": new["metrics"]["best_index"]},
        "per_record": {"acc": [round(v, 6) for v in new["per_record"]["acc"]]},
    }
    rf = read_run(old)
    assert rf.format == APP_CARD_V1 and rf.threads == 1 and np.array_equal(rf.image, traj.image)
    assert np.array_equal(rf.labels, traj.labels)
    assert rerun_card(old).scalars("acc").tolist() == traj.scalars("acc").tolist()


def _resizing_model():
    """The colour model at a fixed 40×40 input, so that the CLI resizes (and v1's float input ≠ its 8-bit copy)."""
    m = ColourSeg(model_id="colour-40")
    m.info = dataclasses.replace(m.info, input_size=(40, 40))
    return m


def test_the_old_cli_run_file_reruns_exactly_in_the_cli(tmp_path, capsys):
    register(ModelEntry(id="colour-40", title="colour 40", family="custom", num_classes=6, licence="-",
                        source="tests", loader=lambda device="cpu": _resizing_model()))
    img, lab = scene(56)
    Image.fromarray(img).save(tmp_path / "img.png")
    Image.fromarray(lab).save(tmp_path / "mask.png")
    cfg = AttackConfig(attack="tsallis", steps=5, seed=3)
    x = resize_image(to_tensor(img), (40, 40))  # as the v1 CLI attacked: the resized float image
    y = resize_labels(torch.from_numpy(lab.astype(np.int64))[None], (40, 40))
    with determinism.using(1):
        run = AttackRun(_resizing_model(), x, y, cfg)
        rows = [record_row(r) for r in run]
    assert not torch.equal(x, to_tensor(to_uint8(x)))  # the float input is not its 8-bit copy
    v1_rows = [{**{k: r[k] for k in ("index", "iteration", "stage", "stage_step", "eps", "step_size", "param",
                                     "loss", "ce", "acc", "miou")},
                "mass": [r["mass_cc"], r["mass_uc"], r["mass_wrong"]]} for r in rows]
    old = {"format": CLI_V1, "model": "colour-40", "image": str(tmp_path / "img.png"),
           "mask": str(tmp_path / "mask.png"), "size": [40, 40], "target_class": None,
           "config": run.cfg.to_dict(), "iterations": v1_rows, "clean": {"acc": float(run.clean_acc[0])},
           "adversarial": {"acc": float(run.result.acc[0]), "best_index": int(run.result.best_index[0])}}
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert read_run(tmp_path / "old.json").image is None
    with pytest.raises(ValueError, match="names its image"):
        rerun_card(tmp_path / "old.json")
    _cli(["attack", "--from", str(tmp_path / "old.json"), "--threads", "1", "--out", str(tmp_path / "v2.json")],
         capsys)
    assert "rounded to 8 bits" in capsys.readouterr().out
    v2 = json.loads((tmp_path / "v2.json").read_text())
    for c in ("acc", "miou", "loss", "ce", "param", "mass_cc"):
        assert v2["per_record"][c] == [r[c] for r in rows], c
    assert v2["metrics"]["result_acc"] == old["adversarial"]["acc"]
    assert np.array_equal(read_run(tmp_path / "v2.json").image, to_uint8(x))


@pytest.mark.parametrize(("content", "msg"), [
    ("{not json", "cannot read run file"),
    ('["a list"]', "not a run file"),
    ('{"format": "something"}', "not a run card"),
    (json.dumps({"format": FORMAT, "config": {}}), "damaged run file"),
    (json.dumps({"format": FORMAT, "model": "x", "input": {"image_png": "%%%"}}), "damaged run file"),
])
def test_bad_run_files_one_line(tmp_path, content, msg, capsys):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(RunFileError, match=msg) as e:
        read_run(p)
    assert "\n" not in str(e.value) and str(tmp_path) not in str(e.value)
    assert main(["attack", "--from", str(p), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and "\n" not in err


def test_labels_above_255_survive_the_png(tmp_path):
    lab = np.arange(300 * 2).reshape(20, 30) % 300
    from attack_engine.runfile import from_png_b64

    assert np.array_equal(from_png_b64(png_b64(lab)).astype(np.int64), lab)


def test_a_grey_image_or_mismatched_labels_are_refused():
    grey = png_b64(np.zeros((8, 8), np.uint8))
    rgb = png_b64(np.zeros((8, 8, 3), np.uint8))
    for inp in ({"image_png": grey}, {"image_png": rgb, "labels_png": png_b64(np.zeros((4, 8), np.uint8))}):
        with pytest.raises(RunFileError, match="damaged run file"):
            read_run({"format": FORMAT, "model": "m", "config": {}, "input": inp})
