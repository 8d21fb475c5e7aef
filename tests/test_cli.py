"""The command line, in-process, on a small model registered for the test."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from PIL import Image

from attack_engine.cli import main, parse_eps
from attack_engine.models import ModelInfo, SegModel, default_palette
from attack_engine.models.registry import ModelEntry, register


class _Wrapped(SegModel):
    def __init__(self, net):
        super().__init__(ModelInfo(id="test-tiny", title="tiny", class_names=("bg", "square", "disc"),
                                   palette=default_palette(3), input_size=(32, 32)))
        self.net = net

    def logits(self, x):
        return self.net(x)


@pytest.fixture()
def tiny_cli(trained_model, test_batch, tmp_path):
    register(ModelEntry(id="test-tiny", title="tiny", family="custom", num_classes=3, licence="-", source="tests",
                        loader=lambda device="cpu": _Wrapped(trained_model)))
    x, y = test_batch
    img = (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "img.png")
    Image.fromarray(y[0].numpy().astype(np.uint8)).save(tmp_path / "mask.png")
    return tmp_path


def test_parse_eps():
    assert parse_eps("8/255") == pytest.approx(8 / 255)
    assert parse_eps("0.0314") == pytest.approx(0.0314)
    assert parse_eps("0.25/255") == pytest.approx(0.25 / 255)
    for bad in ("x/255", "8/0", "-1", "nan"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_eps(bad)


def test_attack_writes_reproducible_run_file(tiny_cli, capsys):
    out = tiny_cli / "run.json"
    argv = ["attack", "--model", "test-tiny", "--image", str(tiny_cli / "img.png"), "--mask", str(tiny_cli / "mask.png"),
            "--attack", "tsallis", "--schedule", "cosine:-2:1", "--eps", "16/255", "--steps", "10", "--seed", "1",
            "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "clean:" in text and "adversarial:" in text
    assert "| device cpu" in text  # the device the run used (auto: cpu here, no GPU)
    card = json.loads(out.read_text())
    assert card["device"] == "cpu"
    assert card["format"] == "tsallispgd-run/2" and card["input"]["labels_png"] is not None
    assert card["config"]["schedule"] == "cosine:-2:1" and card["records"] == 13 == len(card["per_record"]["acc"])
    assert card["metrics"]["result_acc"] < card["metrics"]["clean_acc"]
    again = tiny_cli / "again.json"
    assert main(["attack", "--from", str(out), "--out", str(again), "--no-progress"]) == 0
    card2 = json.loads(again.read_text())
    assert card2["metrics"] == card["metrics"]
    assert card2["per_record"] == card["per_record"] and card2["input"] == card["input"]


@pytest.mark.parametrize(("argv", "msg"), [
    (["attack", "--image", "x.png", "--eps", "8"], "did you mean 8/255"),
    (["attack", "--image", "x.png", "--schedule", "linear:1"], "takes 2"),
    (["attack", "--image", "x.png", "--steps", "0"], "at least 1"),
    (["attack", "--image", "x.png", "--attack", "fgsm"], "invalid choice"),
])
def test_bad_arguments_one_line(argv, msg, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and "\n" not in err


def test_runtime_errors_one_line(tiny_cli, capsys):
    assert main(["attack", "--model", "test-tiny", "--image", str(tiny_cli / "missing.png"), "--no-progress"]) == 2
    assert "not found" in capsys.readouterr().err
    (tiny_cli / "bad.png").write_bytes(b"not an image")
    assert main(["attack", "--model", "test-tiny", "--image", str(tiny_cli / "bad.png"), "--no-progress"]) == 2
    assert "not a readable image" in capsys.readouterr().err
    assert main(["attack", "--model", "nope", "--image", str(tiny_cli / "img.png"), "--no-progress"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_help_and_models(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert main(["models"]) == 0
    assert "mediapipe-selfie" in capsys.readouterr().out


def test_attack_with_your_own_torchscript_model(tiny_cli, trained_model, capsys):
    import torch

    path = tiny_cli / "mine.pt"
    torch.jit.save(torch.jit.script(trained_model), str(path))
    argv = ["attack", "--model", str(path), "--classes", "bg,square,disc", "--image", str(tiny_cli / "img.png"),
            "--attack", "ce", "--eps", "16/255", "--steps", "5", "--no-progress"]
    assert main(argv) == 0
    assert "adversarial:" in capsys.readouterr().out
