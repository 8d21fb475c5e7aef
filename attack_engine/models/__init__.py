"""Segmentation model adapters (one contract, see :mod:`attack_engine.models.base`) and the registry."""

from attack_engine.models.base import ModelInfo, SegModel, default_palette
from attack_engine.models.registry import (
    DEFAULT_MODEL,
    ModelEntry,
    ModelUnavailable,
    describe_models,
    get_entry,
    list_models,
    load_model,
)

__all__ = [
    "DEFAULT_MODEL",
    "ModelEntry",
    "ModelInfo",
    "ModelUnavailable",
    "SegModel",
    "default_palette",
    "describe_models",
    "get_entry",
    "list_models",
    "load_model",
]
