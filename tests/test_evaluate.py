"""Robustness evaluation (``attack_engine.evaluate``): dataset readers, accumulation, ranks, torchrun, resume."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from attack_engine.evaluate import main as eval_main
from attack_engine.evaluate import runner
from attack_engine.evaluate.datasets import (
    DatasetError,
    ade20k_dataset,
    cityscapes_dataset,
    folder_dataset,
    open_dataset,
    preprocess,
    resized_shape,
    voc_dataset,
)
from attack_engine.evaluate.report import average_ranks, rank_table
from attack_engine.metrics import confusion_matrix, mean_iou, pixel_accuracy

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")]


# -- fixtures written by the tests ---------------------------------------------------------------------
def _rgb(h: int, w: int, seed: int) -> np.ndarray:
    g = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = g.integers(40, 200, 3)
    img[h // 4: 3 * h // 4, w // 3:] = g.integers(0, 255, 3)
    return np.clip(img.astype(int) + g.integers(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def _blobs(h: int, w: int, values: list[int]) -> np.ndarray:
    lab = np.full((h, w), values[0], np.uint8)
    lab[h // 4: 3 * h // 4, w // 3:] = values[1]
    if len(values) > 2:
        lab[: h // 5, : w // 5] = values[2]
    return lab


def _palette_png(lab: np.ndarray, path: Path) -> None:
    im = Image.fromarray(lab, mode="P")
    pal = [0] * 768
    for i in range(256):
        pal[3 * i: 3 * i + 3] = [(i * 37) % 256, (i * 91) % 256, (i * 53) % 256]
    im.putpalette(pal)
    im.save(path)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A seeded, untrained 3-class conv net saved as TorchScript (loadable by any torchrun worker)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1)).eval()
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    torch.jit.script(net).save(str(path))
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("folder")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    for i in range(5):
        h, w = 20 + 2 * i, 26
        Image.fromarray(_rgb(h, w, i)).save(root / "images" / f"img{i}.png")
        Image.fromarray(_blobs(h, w, [0, 1 + i % 2, 2])).save(root / "labels" / f"img{i}.png")
    return root


def _args(model: Path, data: str, out: Path, *extra: str) -> list[str]:
    return ["--model", f"torchscript:{model}", "--data", data, "--size", "16", "--steps", "3",
            "--attacks", "ce,tsallis", "--eps", "4/255,16/255", "--batch-size", "2", "--no-progress",
            "--out", str(out), *extra]


# -- dataset readers -------------------------------------------------------------------------------------
def test_folder_reader_matches_by_stem(folder, tmp_path):
    ds = folder_dataset(folder)
    assert [s.id for s in ds.samples] == [f"img{i}" for i in range(5)]
    img, lab = ds.load(ds.samples[2])
    assert img.shape == (24, 26, 3) and lab.shape == (24, 26) and set(np.unique(lab)) == {0, 1, 2}
    # an image without a label: clear error, unless the clean prediction is used
    bad = tmp_path / "bad"
    (bad / "images").mkdir(parents=True)
    (bad / "labels").mkdir()
    Image.fromarray(_rgb(8, 8, 0)).save(bad / "images" / "a.png")
    with pytest.raises(DatasetError, match="no label PNG"):
        folder_dataset(bad)
    assert folder_dataset(bad, require_labels=False).samples[0].label is None
    # mismatched image/label sizes
    Image.fromarray(np.zeros((9, 8), np.uint8)).save(bad / "labels" / "a.png")
    ds = folder_dataset(bad)
    with pytest.raises(DatasetError, match="label is 8×9 but the image is 8×8"):
        ds.load(ds.samples[0])


def test_voc_reader_splits_boundary_and_aug(tmp_path):
    base = tmp_path / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "SegmentationClass", "SegmentationClassAug", "ImageSets/Segmentation"):
        (base / d).mkdir(parents=True)
    for i, name in enumerate(["2007_000001", "2007_000002", "2008_000003"]):
        Image.fromarray(_rgb(12, 16, i)).save(base / "JPEGImages" / f"{name}.jpg")
        _palette_png(_blobs(12, 16, [0, 15, 255]), base / "SegmentationClass" / f"{name}.png")
        Image.fromarray(_blobs(12, 16, [0, 15, 3])).save(base / "SegmentationClassAug" / f"{name}.png")
    (base / "ImageSets/Segmentation/val.txt").write_text("2007_000001\n2007_000002\n")
    (base / "ImageSets/Segmentation/train_aug.txt").write_text("2008_000003\n")
    ds = voc_dataset(tmp_path)  # finds VOCdevkit/VOC2012 below the given path
    assert [s.id for s in ds.samples] == ["2007_000001", "2007_000002"] and ds.num_classes == 21
    _, lab = ds.load(ds.samples[0])
    assert set(np.unique(lab)) == {0, 15, 255}  # palette indices, boundary kept as ignore
    _, lab = voc_dataset(tmp_path, boundary="background").load(ds.samples[0])
    assert set(np.unique(lab)) == {0, 15}  # Croce's labels: boundary -> background
    aug = voc_dataset(base, split="train_aug")
    assert [s.id for s in aug.samples] == ["2008_000003"] and "SegmentationClassAug" in str(aug.samples[0].label)
    assert set(np.unique(aug.load(aug.samples[0])[1])) == {0, 3, 15}
    with pytest.raises(DatasetError, match=r"split list missing.*found: train_aug, val"):
        voc_dataset(base, split="test")
    (base / "SegmentationClass" / "2007_000002.png").unlink()
    with pytest.raises(DatasetError, match="missing"):
        voc_dataset(base)


def test_cityscapes_reader_maps_label_ids_to_train_ids(tmp_path):
    img_dir = tmp_path / "leftImg8bit" / "val" / "aachen"
    gt_dir = tmp_path / "gtFine" / "val" / "aachen"
    img_dir.mkdir(parents=True)
    gt_dir.mkdir(parents=True)
    Image.fromarray(_rgb(8, 16, 0)).save(img_dir / "aachen_000000_000019_leftImg8bit.png")
    ids = np.array([[7, 8, 26, 33, 0, 1, 4, 9, 14, 24, 31, 32, 23, 21, 2, 255]] * 8, np.uint8)
    Image.fromarray(ids).save(gt_dir / "aachen_000000_000019_gtFine_labelIds.png")
    ds = cityscapes_dataset(tmp_path)
    assert ds.num_classes == 19 and ds.samples[0].id == "aachen_000000_000019"
    _, lab = ds.load(ds.samples[0])
    assert lab[0].tolist() == [0, 1, 13, 18, 255, 255, 255, 255, 255, 11, 16, 17, 10, 8, 255, 255]
    (gt_dir / "aachen_000000_000019_gtFine_labelIds.png").unlink()
    with pytest.raises(DatasetError, match=r"label file.*missing"):
        cityscapes_dataset(tmp_path)


def test_ade20k_reader_151_vs_150_convention(tmp_path):
    base = tmp_path / "ADEChallengeData2016"
    (base / "images" / "validation").mkdir(parents=True)
    (base / "annotations" / "validation").mkdir(parents=True)
    Image.fromarray(_rgb(6, 6, 1)).save(base / "images" / "validation" / "ADE_val_00000001.jpg")
    Image.fromarray(np.array([[0, 1, 2, 150, 149, 0]] * 6, np.uint8)).save(
        base / "annotations" / "validation" / "ADE_val_00000001.png")
    ds151 = ade20k_dataset(tmp_path, classes=151)
    assert ds151.load(ds151.samples[0])[1][0].tolist() == [0, 1, 2, 150, 149, 0]  # 0 = "other" is a class
    ds150 = ade20k_dataset(tmp_path, classes=150)
    assert ds150.load(ds150.samples[0])[1][0].tolist() == [255, 0, 1, 149, 148, 255]  # reduce_zero_label
    assert ds150.num_classes == 150 and ds151.num_classes == 151
    with pytest.raises(DatasetError, match="must be 151"):
        ade20k_dataset(tmp_path, classes=21)
    with pytest.raises(DatasetError, match="unknown dataset"):
        open_dataset("imagenet:/x")
    with pytest.raises(DatasetError, match="not found"):
        open_dataset("ade20k:/no/such/dir")


def test_examples_dataset_uses_bundled_ground_truth():
    ds = open_dataset("examples")
    assert ds.num_classes == 2 and ds.samples, "at least one bundled example has a person mask"
    img, lab = ds.load(ds.samples[0])
    assert lab.shape == img.shape[:2] and set(np.unique(lab)) <= {0, 1}
    with pytest.raises(DatasetError, match="--labels clean"):
        open_dataset("examples:all")
    assert len(open_dataset("examples:all", require_labels=False)) >= len(ds)


def test_preprocess_resizes_short_side_and_centre_crops():
    img = np.zeros((40, 100, 3), np.uint8)
    img[:, 50:] = 255
    lab = np.zeros((40, 100), np.int64)
    lab[:, 50:] = 1
    assert resized_shape((40, 100), (20, 20)) == (20, 50)
    x, y = preprocess(img, lab, (20, 20))
    assert x.shape == (3, 20, 20) and y.shape == (20, 20)
    assert y[:, :10].eq(0).all() and y[:, 10:].eq(1).all()  # the crop is centred on the boundary
    x, y = preprocess(img, lab, (16, 16), short_side=32)  # explicit short side, then crop
    assert resized_shape((40, 100), (16, 16), 32) == (32, 80) and x.shape == (3, 16, 16)
    with pytest.raises(DatasetError, match="smaller than"):
        resized_shape((40, 100), (50, 50), 32)


# -- metrics and ranks ----------------------------------------------------------------------------------
def test_average_ranks_ties_and_rank_table():
    assert average_ranks([0.3, 0.1, 0.2, 0.1]) == [4.0, 1.5, 3.0, 1.5]
    assert average_ranks([0.5, 0.5, 0.5]) == [2.0, 2.0, 2.0]
    assert average_ranks([0.2, math.nan, 0.1]) == [2.0, 3.0, 1.0]

    def metrics(model, table):  # table: method -> [(acc, miou) per eps]
        eps = [1 / 255, 2 / 255]
        return {"model": model, "eps": eps,
                "methods": [{"name": m, "title": m} for m in table],
                "settings": [{"method": m, "eps": e, "seed": 0, "acc": a, "miou": u, "macc": a}
                             for m, vals in table.items() for e, (a, u) in zip(eps, vals)]}

    a = metrics("A", {"ce": [(0.5, 0.4), (0.3, 0.2)], "tsallis": [(0.4, 0.4), (0.2, 0.1)], "js": [(0.6, 0.5), (0.3, 0.3)]})
    b = metrics("B", {"ce": [(0.9, 0.8), (0.7, 0.6)], "tsallis": [(0.8, 0.9), (0.7, 0.5)], "js": [(0.7, 0.7), (0.8, 0.4)]})
    rows, n = rank_table([a, b])
    assert n == 4
    r = {x["method"]: x for x in rows}
    # ACC ranks per setting: A/1: ts 1, ce 2, js 3; A/2: ts 1, ce 2.5, js 2.5; B/1: js 1, ts 2, ce 3; B/2: ce 1.5, ts 1.5, js 3
    assert r["tsallis"]["rank_acc"] == pytest.approx((1 + 1 + 2 + 1.5) / 4)
    assert r["ce"]["rank_acc"] == pytest.approx((2 + 2.5 + 3 + 1.5) / 4)
    assert r["js"]["rank_acc"] == pytest.approx((3 + 2.5 + 1 + 3) / 4)
    # mIoU: A/1: ce 1.5, ts 1.5, js 3; A/2: ts 1, ce 2, js 3; B/1: js 1, ce 2, ts 3; B/2: js 1, ts 2, ce 3
    assert r["tsallis"]["rank_miou"] == pytest.approx((1.5 + 1 + 3 + 2) / 4)
    assert r["tsallis"]["best_acc"] == 2 and r["js"]["best_miou"] == 2
    assert r["ce"]["mean_acc"] == pytest.approx((0.5 + 0.3 + 0.9 + 0.7) / 4)


def test_accumulated_metrics_equal_direct_computation(tiny_model, folder, tmp_path):
    out = tmp_path / "run"
    assert eval_main(_args(tiny_model, f"folder:{folder}", out)) == 0
    m = json.loads((out / "metrics.json").read_text())
    ds = folder_dataset(folder)
    xs, ys = zip(*(preprocess(*ds.load(s), (16, 16)) for s in ds.samples))
    x, y = torch.stack(xs), torch.stack(ys)
    net = torch.jit.load(str(tiny_model))
    with torch.no_grad():
        cm = confusion_matrix(net(x).argmax(1), y, 3).sum(0)
    assert m["clean"]["acc"] == pytest.approx(float(pixel_accuracy(cm)), abs=1e-12)
    assert m["clean"]["miou"] == pytest.approx(float(mean_iou(cm)), abs=1e-12)
    # one adversarial setting recomputed directly from an attack over the whole set (batch = all images)
    from attack_engine.attack import AttackConfig
    from attack_engine.evaluate.models import load_torchscript

    model = load_torchscript(tiny_model, probe_size=(16, 16))
    eps = 16 / 255
    cfg = AttackConfig(attack="tsallis", eps=eps, steps=3, seed=0, telemetry=False)
    cm_adv = torch.zeros(3, 3, dtype=torch.int64)
    for i in range(0, 5, 2):  # the runner's batches (2 images, both ε stacked), attacked here by hand
        xb, yb, ids = x[i: i + 2], y[i: i + 2], [s.id for s in ds.samples[i: i + 2]]
        n = len(ids)
        run = runner.AttackRun(model, xb.repeat(2, 1, 1, 1), yb.repeat(2, 1, 1), cfg,
                               eps=torch.tensor([4 / 255] * n + [eps] * n),
                               noise_seeds=[runner.image_seed(0, j) for j in ids] * 2)
        cm_adv += confusion_matrix(run.run().pred[n:], yb, 3).sum(0)
    got = next(s for s in m["settings"] if s["method"] == "tsallis" and s["eps"] == eps)
    assert got["acc"] == pytest.approx(float(pixel_accuracy(cm_adv)), abs=1e-12)
    assert got["miou"] == pytest.approx(float(mean_iou(cm_adv)), abs=1e-12)
    assert got["acc"] < m["clean"]["acc"]
    # per-image rows: their pixel counts add up, worst ACC = mean over images of the per-image minimum
    rows = list(csv.DictReader((out / "per_image.csv").open()))
    assert sum(int(r["valid_pixels"]) for r in rows if r["method"] == "clean") == cm.sum()
    w = next(x for x in m["worst"] if x["eps"] == eps)
    mins = [min(float(r["acc"]) for r in rows if r["image"] == s.id and r["method"] != "clean" and float(r["eps"]) == eps)
            for s in ds.samples]
    assert w["acc_mean_min"] == pytest.approx(float(np.mean(mins)))
    assert (out / "report.md").read_text().count("TsallisPGD") >= 3 and (out / "plot.png").stat().st_size > 1000
    # the ablation expands TsallisPGD into one method per schedule, with the same table format
    out2 = tmp_path / "ablation"
    assert eval_main(_args(tiny_model, f"folder:{folder}", out2, "--tsallis-schedules", "linear:-2:1,const:0.5",
                           "--attacks", "tsallis", "--max-images", "2")) == 0
    names = [x["name"] for x in json.loads((out2 / "metrics.json").read_text())["methods"]]
    assert names == ["tsallis[linear:-2:1]", "tsallis[const:0.5]"]
    assert "TsallisPGD (const:0.5)" in (out2 / "report.md").read_text()


def test_resume_after_interruption_gives_same_result(tiny_model, folder, tmp_path, monkeypatch, capsys):
    ref = tmp_path / "ref"
    assert eval_main(_args(tiny_model, f"folder:{folder}", ref)) == 0
    out = tmp_path / "resumed"
    real_iter = runner.AttackRun.__iter__
    calls = {"n": 0}

    def interrupted(self):
        calls["n"] += 1
        if calls["n"] == 4:  # Ctrl-C in the middle of the 4th unit
            for i, rec in enumerate(real_iter(self)):
                if i == 1:
                    raise KeyboardInterrupt
                yield rec
        yield from real_iter(self)

    monkeypatch.setattr(runner.AttackRun, "__iter__", interrupted)
    assert eval_main(_args(tiny_model, f"folder:{folder}", out)) == 130
    assert "rerun the same command" in capsys.readouterr().err
    monkeypatch.setattr(runner.AttackRun, "__iter__", real_iter)
    done = runner.load_records(out / "records")
    assert len(done) == 2 * 2 + 3 * 2 * 2  # clean for 2 batches, 3 finished units × 2 images × 2 ε
    # a kill while a line was being written leaves a torn line: it is skipped and the unit recomputed
    with (out / "records" / "rank0.jsonl").open("a") as fh:
        fh.write('{"image":"img4","key":"ce|0.0')
    calls["n"] = 0
    runs = {"n": 0}

    def counting(self):
        runs["n"] += 1
        yield from real_iter(self)

    monkeypatch.setattr(runner.AttackRun, "__iter__", counting)
    assert eval_main(_args(tiny_model, f"folder:{folder}", out)) == 0
    assert runs["n"] == 6 - 3  # 3 batches × 2 methods, 3 already done
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (ref, out))
    assert a["confusion"] == b["confusion"] and a["settings"] == b["settings"] and a["worst"] == b["worst"]
    assert (ref / "per_image.csv").read_text() == (out / "per_image.csv").read_text()
    # rerunning a finished evaluation computes nothing; a different configuration is refused
    runs["n"] = 0
    assert eval_main(_args(tiny_model, f"folder:{folder}", out)) == 0 and runs["n"] == 0
    assert eval_main(_args(tiny_model, f"folder:{folder}", out, "--steps", "4")) == 2
    assert "differs in: steps" in capsys.readouterr().err


def test_torchrun_two_processes_equal_one_process(tiny_model, folder, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert eval_main(_args(tiny_model, f"folder:{folder}", one)) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "attack_engine", "eval", *_args(tiny_model, f"folder:{folder}", two)]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    assert b["world"] == 2 and a["world"] == 1
    assert a["confusion"] == b["confusion"]
    assert a["settings"] == b["settings"] and a["clean"] == b["clean"] and a["worst"] == b["worst"]
    assert (one / "per_image.csv").read_text() == (two / "per_image.csv").read_text()
    assert sorted(p.name for p in (two / "records").iterdir()) == ["rank0.jsonl", "rank1.jsonl"]
    assert "torchrun --nproc_per_node 2" in (two / "commands.txt").read_text()


def test_cli_errors_are_one_line(tiny_model, tmp_path, capsys):
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    Image.fromarray(_rgb(16, 16, 0)).save(root / "images" / "a.png")
    Image.fromarray(_blobs(16, 16, [0, 7])).save(root / "labels" / "a.png")
    assert eval_main(_args(tiny_model, f"folder:{root}", tmp_path / "o")) == 2
    err = capsys.readouterr().err.strip()
    assert "label values [7] are outside 0..2" in err and "\n" not in err
    assert eval_main(_args(tiny_model, f"folder:{tmp_path / 'nope'}", tmp_path / "o")) == 2
    assert "not found" in capsys.readouterr().err
    assert eval_main(_args(tiny_model, "folder:" + str(root), tmp_path / "o", "--eps", "0.5/255,2")) == 2
    assert "larger than 1" in capsys.readouterr().err


def test_report_combines_runs(tiny_model, folder, tmp_path):
    outs = []
    for i, eps in enumerate(("4/255", "8/255")):
        o = tmp_path / f"r{i}"
        assert eval_main(_args(tiny_model, f"folder:{folder}", o, "--eps", eps, "--max-images", "2")) == 0
        outs.append(str(o))
    assert eval_main(["report", *outs, "--out", str(tmp_path / "all")]) == 0
    ranks = list(csv.DictReader((tmp_path / "all" / "ranks.csv").open()))
    assert {r["method"] for r in ranks} == {"ce", "tsallis"} and all(r["settings"] == "2" for r in ranks)
