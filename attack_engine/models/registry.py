"""Registry of every model the CLI and the app can use, with metadata and whether its weights are here.

Entries are cheap to list (no weights loaded); :func:`load_model` builds the adapter on demand and caches it.
"""

from __future__ import annotations

import torch

from attack_engine.models import zoo
from attack_engine.models.base import ASSETS, ModelEntry, ModelUnavailable, SegModel

__all__ = ["ASSETS", "DEFAULT_MODEL", "ModelEntry", "ModelUnavailable", "describe_models", "get_entry", "list_models",
           "load_model", "register"]

DEFAULT_MODEL = "mediapipe-selfie"

_REGISTRY: dict[str, ModelEntry] = {}
_CACHE: dict[tuple[str, str], SegModel] = {}


def register(entry: ModelEntry) -> ModelEntry:
    _REGISTRY[entry.id] = entry
    return entry


def list_models() -> list[ModelEntry]:
    _ensure_builtin()
    return list(_REGISTRY.values())


def get_entry(model_id: str) -> ModelEntry:
    _ensure_builtin()
    if model_id not in _REGISTRY:
        raise KeyError(f"unknown model {model_id!r}; known: {', '.join(_REGISTRY)}")
    return _REGISTRY[model_id]


def load_model(model_id: str = DEFAULT_MODEL, device: str | torch.device = "cpu", **kwargs) -> SegModel:
    """Build (or reuse) the adapter for ``model_id`` on ``device``; raises :class:`ModelUnavailable` offline."""
    entry = get_entry(model_id)
    key = (model_id, str(device))
    if key not in _CACHE or kwargs:
        model = entry.loader(device=device, **kwargs).freeze()
        if kwargs:
            return model
        _CACHE[key] = model
    return _CACHE[key]


_BUILTIN_DONE = False


def _ensure_builtin() -> None:
    global _BUILTIN_DONE
    if _BUILTIN_DONE:
        return
    _BUILTIN_DONE = True
    for entry in zoo.builtin_entries():
        _REGISTRY.setdefault(entry.id, entry)


def describe_models() -> list[dict]:
    """One row per registered model for the CLI table and the app dropdown (no weights loaded, no heavy imports)."""
    return [
        {
            "id": e.id,
            "title": e.title,
            "family": e.family,
            "classes": e.num_classes,
            "licence": e.licence,
            "source": e.source,
            "available": e.available(),
            "download_mb": e.download_mb,
            "description": e.description,
        }
        for e in list_models()
    ]
