"""Device choice: the CLI and the app use CUDA when PyTorch sees a GPU and say so (tested by mocking CUDA)."""

from __future__ import annotations

import numpy as np
import torch

from app import gpu
from app.runner import LiveRun, prepare
from app.view import status_markdown
from attack_engine.attack import AttackConfig
from attack_engine.cli import resolve_device
from attack_engine.models import load_model


def test_cli_auto_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    assert resolve_device("cuda:1") == "cuda:1"


def test_app_device(monkeypatch):
    monkeypatch.delenv("TSALLIS_DEVICE", raising=False)
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert gpu.device() == "cuda" and gpu.local_device() == "cuda"
    monkeypatch.setenv("TSALLIS_DEVICE", "cpu")  # operator override
    assert gpu.local_device() == "cpu"
    monkeypatch.delenv("TSALLIS_DEVICE")
    monkeypatch.setattr(gpu, "zero_gpu", lambda: True)  # ZeroGPU: the main process stays on the CPU
    assert gpu.local_device() == "cpu" and gpu.device() == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(gpu, "zero_gpu", lambda: False)
    assert gpu.local_device() == "cpu"


def test_status_line_names_the_device():
    model = load_model("mediapipe-selfie")
    img = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    live = LiveRun(model, prepare(img, None, model, "upload"), AttackConfig(steps=2, optimizer="pgd"))
    live.step()
    assert live.traj.info.extra["device"] == "cpu"
    assert "running on CPU" in status_markdown(live.traj, 0, live=True)
    live.traj.info.extra["device"] = "cuda:0"  # what a GPU run records
    assert "on GPU (cuda:0)" in status_markdown(live.traj, 0, live=True)
