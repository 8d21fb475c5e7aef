"""Open the explorer on a model you hold in Python (``app.explore(model, class_names, ...)`` calls this).

The launch layer: it builds the whole app (:mod:`app.ui`) around a model registered by :mod:`app.own_model`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from app.own_model import examples_from, register_model


def explore(model: torch.nn.Module, class_names: Sequence[str] | None = None,
            palette: Sequence[Sequence[int]] | None = None, images: Sequence[Any] | None = None, *,
            mean: Sequence[float] | None = None, std: Sequence[float] | None = None, title: str | None = None,
            model_id: str = "my-model", launch: bool = True, **launch_kw: Any):
    """Open the explorer on ``model`` (an ``nn.Module`` taking ``(x − mean)/std`` RGB and returning logits, or a
    :class:`SegModel`), with its class names, palette and optional images (paths, PIL, arrays, or
    ``(image, mask)`` pairs); the bundled examples are offered too. Returns the Gradio Blocks; with
    ``launch=True`` it is served first (``launch_kw`` go to ``launch``: ``server_port``, ``inbrowser`` …)."""
    from app.launch import build_demo, launch_kwargs
    from app.sources import bundled_examples
    from attack_engine.models.custom import wrap_module

    seg = wrap_module(model, class_names=class_names, palette=palette, mean=mean, std=std, model_id=model_id,
                      title=title or f"Your model ({model_id})")
    mid = register_model(seg)
    folder = Path(tempfile.mkdtemp(prefix="tsallis_explore_"))
    demo = build_demo(mid, examples_from(images or [], seg.num_classes, folder) + bundled_examples())
    if launch:
        demo.launch(**{**launch_kwargs(), **launch_kw})
    return demo
