"""Shared fixtures: a small segmentation model the tests train themselves in a few seconds."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(min(2, os.cpu_count() or 1))


def synthetic_batch(n: int, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images with a bright square (class 1) and a dark disc (class 2) on textured background (class 0)."""
    g = torch.Generator().manual_seed(seed)
    x = 0.4 + 0.1 * torch.rand(n, 3, size, size, generator=g)
    y = torch.zeros(n, size, size, dtype=torch.long)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    for i in range(n):
        r, c = torch.randint(2, size // 2, (2,), generator=g).tolist()
        s = int(torch.randint(6, size // 2, (1,), generator=g))
        x[i, :, r : r + s, c : c + s] = torch.tensor([0.58, 0.54, 0.44]).view(3, 1, 1)
        y[i, r : r + s, c : c + s] = 1
        cr, cc = torch.randint(size // 3, size - 4, (2,), generator=g).tolist()
        disc = (yy - cr) ** 2 + (xx - cc) ** 2 < 16
        x[i, :, disc] = torch.tensor([0.36, 0.40, 0.52]).view(3, 1)
        y[i, disc] = 2
    return x, y


class TinySeg(nn.Module):
    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, classes, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.fixture(scope="session")
def trained_model() -> nn.Module:
    torch.manual_seed(0)
    model = TinySeg()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = synthetic_batch(64, seed=1)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval().requires_grad_(False)
    return model


@pytest.fixture(scope="session")
def test_batch() -> tuple[torch.Tensor, torch.Tensor]:
    return synthetic_batch(4, seed=7)


# -- figures the robustness tests report (cases tried, sessions, peak memory): printed at the end of every run,
#    whatever pytest's capture flags, so CI's log shows them.
_FIGURES: list[str] = []


@pytest.fixture(scope="session")
def report_figure():
    """``report_figure("bad input: 48 cases ...")``: print now and again in the closing summary."""

    def add(line: str) -> None:
        print(line)
        _FIGURES.append(line)

    return add


def pytest_terminal_summary(terminalreporter) -> None:
    if _FIGURES:
        terminalreporter.write_sep("-", "robustness figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture()
def page():
    """A Chromium page (tests/_kit.py ``loopback_page``) at no URL yet; fails afterwards if it reached outside
    loopback.  Browser test modules whose page must open somewhere first define their own ``page``."""
    from _kit import loopback_page

    with loopback_page(None) as pg:
        yield pg
