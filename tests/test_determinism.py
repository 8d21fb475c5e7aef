"""Same seed and settings -> the same records (issue 13); runs and run cards record how they were computed."""

from __future__ import annotations

import numpy as np
import torch

import app  # noqa: F401
from app.export import run_card
from app.runner import LiveRun, make_config, prepare, rerun_card
from app.standin import register_standin, synthetic_image
from attack_engine import determinism
from attack_engine.models import load_model


def _run(threads: int):
    model = load_model(register_standin())
    img, mask = synthetic_image(64)
    cfg = make_config("tsallis", "apgd", 8, 6, 0, 3, "linear:-2:1")
    with determinism.using(threads):
        return LiveRun(model, prepare(img, mask, model), cfg).run_all()


def _same(a, b) -> bool:
    return (len(a) == len(b) and all(np.array_equal(a.scalars(k), b.scalars(k), equal_nan=True)
                                     for k in ("acc", "miou", "loss", "param", "best_index"))
            and all(np.array_equal(x, y) for x, y in zip(a.pred, b.pred, strict=True)))


def test_same_seed_and_settings_give_the_same_records():
    assert _same(_run(2), _run(2))


def test_runs_and_cards_record_how_they_were_computed():
    t = _run(1)
    fp = t.info.extra["compute"]
    assert fp["torch_threads"] == 1 and fp["deterministic"] is True and fp["torch"] == torch.__version__
    card = run_card(t)
    assert card["compute"] == fp


def test_rerun_card_uses_the_card_thread_count_and_reproduces_it():
    t = _run(1)
    card = run_card(t)
    seen = []
    orig = LiveRun.step

    def step(self):
        seen.append(torch.get_num_threads())
        return orig(self)

    before = torch.get_num_threads()
    LiveRun.step = step
    try:
        with determinism.using(2):
            again = rerun_card(card)
    finally:
        LiveRun.step = orig
    assert set(seen) == {1}, "the re-run did not compute with the card's thread count"
    assert torch.get_num_threads() == before
    assert [round(v, 6) for v in again.scalars("acc")] == [round(v, 6) for v in t.scalars("acc")]
