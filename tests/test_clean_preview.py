"""The clean prediction shown before a run (an upload, an example without a shipped run) is the model's own
forward: at the input's size, whatever the resolution the network outputs at."""

from __future__ import annotations

import torch
from _multiclass import ColourSeg, scene
from torch import nn

import app  # noqa: F401  (offline environment before gradio)


class QuarterColourSeg(ColourSeg):
    """Logits at a quarter of the input size, as SegFormer's (the adapter's forward resizes them)."""

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.avg_pool2d(super().logits(x), 4)


def test_clean_preview_is_the_models_forward_at_the_input_size():
    from app.runner import clean_preview, model_input, prepare

    model = QuarterColourSeg().eval()
    img, _ = scene(96)
    prep = prepare(img, None, model, None)
    traj = clean_preview(model, prep)
    with torch.no_grad():
        want = model(model_input(prep)).argmax(1)[0].numpy()
    assert traj.clean_pred.shape == prep.image.shape[:2] == want.shape
    assert (traj.clean_pred == want).all()
