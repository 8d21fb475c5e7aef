"""Exports: run card (and re-running it), CSV, PNG, GIF, and the shareable link's query string."""

from __future__ import annotations

import csv
import io
import json
from urllib.parse import parse_qsl

import numpy as np
import pytest
from PIL import Image

import app  # noqa: F401
from app.export import config_query, evolution_gif, panels_png, parse_query, records_csv, run_card
from app.runner import make_config, rerun_card, start_run
from app.standin import register_standin, synthetic_image


@pytest.fixture(scope="module")
def traj():
    mid = register_standin()
    img, mask = synthetic_image(72, seed=3)
    live = start_run(mid, img, mask, make_config("tsallis", "apgd", 6, 5, 0, 7, "cosine:-2:1"), "upload")
    return live.run_all()


def test_run_card_reruns_to_the_same_result(traj):
    card = json.loads(json.dumps(run_card(traj)))  # as written to disk
    assert card["config"]["schedule"] == "cosine:-2:1" and card["config"]["seed"] == 7
    assert card["records"] == len(traj) and card["finished"]
    assert card["input"]["labels_png"] is not None
    again = rerun_card(card)
    assert again.scalars("acc").tolist() == traj.scalars("acc").tolist()
    assert again.scalars("miou").tolist() == traj.scalars("miou").tolist()
    assert np.array_equal(again.x_adv_at(len(traj) - 1), traj.x_adv_at(len(traj) - 1))
    assert again.info.extra["result_acc"] == traj.info.extra["result_acc"]


def test_run_card_of_a_partial_run_and_without_labels(tmp_path):
    mid = register_standin()
    img, _ = synthetic_image(48, seed=1)
    live = start_run(mid, img, None, make_config("segpgd", "pgd", 8, 20, 1, 0, None))
    for _ in range(4):
        live.step()
    card = run_card(live.traj)
    assert card["records"] == 4 and not card["finished"] and card["input"]["labels_png"] is None
    p = tmp_path / "card.json"
    p.write_text(json.dumps(card))
    again = rerun_card(p)
    assert len(again) == 4
    assert again.scalars("acc").tolist() == live.traj.scalars("acc").tolist()
    with pytest.raises(ValueError, match="not a run card"):
        rerun_card({"format": "something else"})


def test_records_csv(traj):
    rows = list(csv.DictReader(io.StringIO(records_csv(traj))))
    assert len(rows) == len(traj)
    assert float(rows[-1]["acc"]) == pytest.approx(traj.get("acc", len(traj) - 1), abs=1e-6)
    assert float(rows[0]["eps_255"]) == pytest.approx(2 * 6, abs=1e-4)  # APGD's first stage is 2ε
    assert {"param", "mass_wrong", "flipped", "best_index"} <= set(rows[0])


def test_png_and_gif(traj):
    png = Image.open(io.BytesIO(panels_png(traj, 2, (5, 5))))
    assert png.format == "PNG" and png.width > 600
    gif = Image.open(io.BytesIO(evolution_gif(traj, max_frames=4)))
    assert gif.format == "GIF" and gif.n_frames == 4


def test_query_roundtrip_and_validation():
    q = config_query("astronaut", "mediapipe-selfie", "tsallis", "pgd", 4.5, 25, 1.25, 3, "points:0:-2,1:1")
    parsed = parse_query(dict(parse_qsl(q)))
    assert parsed == {"example": "astronaut", "model": "mediapipe-selfie", "attack": "tsallis", "opt": "pgd",
                      "eps": 4.5, "steps": 25, "alpha": 1.25, "seed": 3, "schedule": "points:0:-2,1:1"}
    assert "schedule" not in dict(parse_qsl(config_query(None, "m", "ce", "apgd", 8, 10, 0, 0, "linear:-2:1")))
    bad = parse_query({"attack": "nope", "opt": "sgd", "eps": "-1", "steps": "1e9", "seed": "x",
                       "schedule": "linear:a:b", "evil": "1"})
    assert bad == {}
