"""The model dropdown (present / downloaded on first use, with size / not offered here) and the VOC example's
labels (VOC ground truth for a model with VOC's classes; otherwise the clean prediction, said in the status line)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from _multiclass import ColourSeg
from test_hub_cache import build_hub_cache

import app  # noqa: F401  (offline environment before gradio)
from app.limits import Limits, allowed_models
from app.model_menu import model_choices
from app.sources import bundled_examples
from attack_engine.models import registry
from attack_engine.models.base import default_palette
from attack_engine.models.datasets import DATASETS
from attack_engine.models.registry import ModelEntry, register

pytest.importorskip("transformers")


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("TSALLIS_CACHE", str(tmp_path / "own"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("TSALLIS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(registry, "_CACHE", {})
    return tmp_path


def _labels(choices) -> dict[str, str]:
    return {mid: label for label, mid in choices}


def test_hosted_menu_present_and_not_offered(env):
    from attack_engine.models import segformer as sf

    build_hub_cache(env / "hub", sf.PRESETS["hf-segformer-b0-ade"].repo, DATASETS["ade20k"][0])
    offered = allowed_models(Limits(hosted=True))
    assert "hf-segformer-b0-ade" in offered and "hf-segformer-b1-cityscapes" not in offered
    choices = model_choices(offered)
    lab = _labels(choices)
    assert lab["mediapipe-selfie"].endswith("✓ bundled")
    assert lab["hf-segformer-b0-ade"].endswith("150 classes · ✓ present")
    assert lab["hf-segformer-b1-cityscapes"].endswith("not offered on this host")
    assert lab["mmseg-pspnet-r50-voc"].endswith("not offered on this host")
    order = [mid for _, mid in choices]
    assert order.index("hf-segformer-b0-ade") < order.index("hf-segformer-b1-cityscapes"), "offered ones first"
    assert not any(str(env) in label or "/" in label for label in lab.values()), "no server paths"


def test_local_menu_says_download_size_or_downloads_off(env, monkeypatch):
    offered = allowed_models(Limits(hosted=False))
    lab = _labels(model_choices(offered))
    assert lab["hf-segformer-b1-cityscapes"].endswith("not here (≈52 MB; downloads are off)")
    monkeypatch.setenv("TSALLIS_OFFLINE", "0")
    lab = _labels(model_choices(offered))
    assert lab["mmseg-pspnet-r50-voc"].endswith("downloads ≈187 MB on first use")
    assert lab["hf-segformer-b0-ade"].endswith("not here (≈14 MB; downloads are off)"), "HF_HUB_OFFLINE still on"
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    assert _labels(model_choices(offered))["hf-segformer-b0-ade"].endswith("downloads ≈14 MB on first use")


def test_picking_a_model_not_offered_is_one_message(env):
    from app.runner import InputError
    from app.ui import App

    a = App(limits=Limits(hosted=True))
    with pytest.raises(InputError, match="not offered here"):
        a._model("mmseg-pspnet-r50-voc")


# -- the VOC example's labels ----------------------------------------------------------------------------------------
def _register(model_id: str, names, palette=None) -> str:
    pal = palette or default_palette(len(names))
    register(ModelEntry(id=model_id, title=model_id, family="custom", num_classes=len(names), licence="MIT",
                        source="tests", loader=lambda device="cpu", **kw: ColourSeg(names, pal, model_id=model_id)))
    return model_id


def _run_status(a, model_id: str) -> tuple[str, object]:
    from app.request import RunRequest
    from app.sessions import Session

    out = list(a.run(RunRequest(None, None, "voc2012_people", model_id, "ce", "pgd", 8, 2, 0, 0, None), Session()))
    return out[-1]["status"], out[-1]["state"].traj


def test_voc_example_uses_voc_ground_truth_for_a_voc_model():
    from app.ui import App

    voc_names, voc_pal = DATASETS["voc"]
    mid = _register("colour-voc", voc_names, voc_pal)
    a = App(mid, bundled_examples(), limits=Limits(hosted=False, session_mb=4096, total_mb=8192))
    ex = a.ex_by_id["voc2012_people"]
    assert ex.mask_for(21, voc_names) is not None and ex.label_note(21, voc_names) == ""
    status, traj = _run_status(a, mid)
    assert traj.info.has_gt and "clean prediction" not in status
    assert set(np.unique(traj.labels)) <= {0, 5, 9, 11, 15, 255}  # VOC ids: background, bottle, chair, table, person


def test_voc_example_on_an_ade20k_model_explains_the_mismatch():
    from app.ui import App

    ade_names, ade_pal = DATASETS["ade20k"]
    mid = _register("colour-ade", ade_names, ade_pal)
    other21 = _register("colour-other21", [f"thing {i}" for i in range(21)])
    a = App(mid, bundled_examples(), limits=Limits(hosted=False, session_mb=4096, total_mb=8192))
    status, traj = _run_status(a, mid)
    assert not traj.info.has_gt
    assert "labels are the model's clean prediction" in status
    assert "21 Pascal VOC classes" in status and "150 ADE20K classes" in status
    ex = a.ex_by_id["voc2012_people"]
    assert ex.mask_for(21, [f"thing {i}" for i in range(21)]) is None, "21 classes but not VOC's"
    assert ex.mask_for(2, ("background", "person")) is not None
    a2 = App(other21, bundled_examples(), limits=replace(Limits(hosted=False), session_mb=4096, total_mb=8192))
    status2, _ = _run_status(a2, other21)
    assert "the model has 21 classes" in status2
