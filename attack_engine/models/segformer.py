"""Hugging Face ``transformers`` SegFormer adapter (``SegformerForSemanticSegmentation``).

* Input RGB in [0, 1]; ImageNet mean/std normalisation is done inside (what ``SegformerImageProcessor`` does,
  without its resize: the attack works at the size it is given).
* ``out.logits`` are at 1/4 resolution; they are upsampled bilinearly to the input size inside the adapter
  (gradients flow through the upsampling).
* Eval mode is kept (the module is never put in ``train()``; dropout/drop-path stay off).
* Labels: ADE20K checkpoints have **150 classes, index 0 = "wall"**. They were trained with
  ``do_reduce_labels``: ADE20K's original "0 = other/background" was dropped and every label shifted down by
  one, so there is no background class, and 255 is the ignore index. Cityscapes checkpoints use the 19
  train-id classes (0 = road ... 18 = bicycle), ignore index 255.
* Weights, looked up in this order (the first folder holding ``model.safetensors`` or ``pytorch_model.bin``):

  1. the **Hugging Face hub cache**, laid out as the Hub client writes it (``$HF_HUB_CACHE``, else
     ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``): ``models--<org>--<name>/refs/main`` names the
     revision, ``snapshots/<revision>/`` holds the files. This is where a Space's ``preload_from_hub`` (README
     front matter) and the Dockerfile's preload put them, so they load with ``HF_HUB_OFFLINE=1``;
  2. ``$TSALLIS_CACHE/hf/<org>--<name>/``, where a download on first use goes (``huggingface_hub.hf_hub_download``
     with that folder as ``local_dir``, checked against the Hub's sha256).

  A ``config.json`` beside the weights (always there in a hub snapshot) is the architecture; without one the
  config is built here from the B0..B5 sizes. Either way the weights are loaded by
  ``from_pretrained(<that folder>, local_files_only=True)``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from attack_engine.models.base import ModelInfo, ModelUnavailable, SegModel, default_palette
from attack_engine.models.checkpoints import HFFile, Source, cache_dir, ensure_any
from attack_engine.models.datasets import DATASETS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
SEGFORMER_LICENCE = "NVIDIA Source Code License for SegFormer (non-commercial research use)"

# MiT encoder sizes (SegFormer paper, Table 1 / the nvidia/mit-b* configs).
VARIANTS: dict[str, dict[str, Any]] = {
    "b0": {"hidden_sizes": [32, 64, 160, 256], "depths": [2, 2, 2, 2], "decoder_hidden_size": 256},
    "b1": {"hidden_sizes": [64, 128, 320, 512], "depths": [2, 2, 2, 2], "decoder_hidden_size": 256},
    "b2": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 4, 6, 3], "decoder_hidden_size": 768},
    "b3": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 4, 18, 3], "decoder_hidden_size": 768},
    "b4": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 8, 27, 3], "decoder_hidden_size": 768},
    "b5": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 6, 40, 3], "decoder_hidden_size": 768},
}


@dataclass(frozen=True)
class HFSegformerPreset:
    """A SegFormer checkpoint on the Hugging Face Hub."""

    id: str
    title: str
    repo: str
    variant: str
    dataset: str  # "ade20k" or "cityscapes"
    notes: str = ""
    licence: str = SEGFORMER_LICENCE

    size_mb: float = 0.0  # download size of the weight file (float32 parameters), for the app's model list

    def folder(self) -> Path:
        return cache_dir() / "hf" / self.repo.replace("/", "--")

    def candidates(self) -> list[tuple[Path, Source | None]]:
        """Weight files in lookup order: a hub-cache snapshot (never downloaded into), then the own cache (where
        ``hf_hub_download`` puts a first-use download)."""
        snap = hub_snapshot(self.repo)
        hub: list[tuple[Path, Source | None]] = [(snap / f, None) for f in WEIGHT_FILES] if snap else []
        return hub + [(self.folder() / f, HFFile(self.repo, f)) for f in WEIGHT_FILES]

    def weights_path(self) -> Path:
        """The weight file in use: the first one present, else where ``model.safetensors`` would go."""
        for p, _ in self.candidates():
            if p.is_file():
                return p
        return self.folder() / WEIGHT_FILES[0]

    @property
    def source(self) -> str:
        return f"huggingface.co/{self.repo}"


PRESETS: dict[str, HFSegformerPreset] = {p.id: p for p in (
    HFSegformerPreset(
        id="hf-segformer-b0-ade", title="SegFormer-B0, ADE20K 512×512 (Hugging Face)",
        repo="nvidia/segformer-b0-finetuned-ade-512-512", variant="b0", dataset="ade20k",
        notes="150 ADE20K classes (0 = wall; reduced labels, no background). 3.8M params.", size_mb=14.3,
    ),
    HFSegformerPreset(
        id="hf-segformer-b0-cityscapes", title="SegFormer-B0, Cityscapes 1024×1024 (Hugging Face)",
        repo="nvidia/segformer-b0-finetuned-cityscapes-1024-1024", variant="b0", dataset="cityscapes",
        notes="19 Cityscapes train-id classes. 3.8M params.", size_mb=14.2,
    ),
    HFSegformerPreset(
        id="hf-segformer-b1-cityscapes", title="SegFormer-B1, Cityscapes 1024×1024 (Hugging Face)",
        repo="nvidia/segformer-b1-finetuned-cityscapes-1024-1024", variant="b1", dataset="cityscapes",
        notes="19 Cityscapes train-id classes. 13.7M params.", size_mb=52.2,
    ),
)}


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache folder, resolved from the environment as ``huggingface_hub`` does."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(xdg).expanduser() / "huggingface" / "hub"


def hub_snapshot(repo: str, revision: str = "main") -> Path | None:
    """``snapshots/<rev>/`` of ``repo`` in the hub cache (``refs/<revision>`` names ``rev``), or ``None``."""
    root = hf_hub_cache() / f"models--{repo.replace('/', '--')}"
    ref = root / "refs" / revision
    rev = ref.read_text().strip() if ref.is_file() else revision
    snap = root / "snapshots" / rev
    return snap if rev and snap.is_dir() else None


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as e:
        raise ModelUnavailable(f"transformers is not installed ({e}); pip install transformers==5.24.0") from None
    return transformers


def segformer_config(variant: str = "b0", num_labels: int = 150, class_names: Sequence[str] | None = None,
                     **overrides: Any) -> Any:
    """A ``SegformerConfig`` for MiT-``variant`` with ``num_labels`` classes (overrides: e.g. tiny test sizes)."""
    tf = _transformers()
    if variant not in VARIANTS:
        raise ValueError(f"unknown SegFormer variant {variant!r}; known: {', '.join(VARIANTS)}")
    kw: dict[str, Any] = dict(VARIANTS[variant])
    kw.update(overrides)
    names = list(class_names) if class_names is not None else [f"class {i}" for i in range(num_labels)]
    kw["id2label"] = {i: n for i, n in enumerate(names)}
    kw["label2id"] = {n: i for i, n in enumerate(names)}
    kw["semantic_loss_ignore_index"] = 255
    return tf.SegformerConfig(num_labels=num_labels, **kw)


class HFSegformerModel(SegModel):
    """``SegformerForSemanticSegmentation`` behind the [0, 1]-RGB-in, logits-at-input-size contract."""

    def __init__(self, net: torch.nn.Module, info: ModelInfo, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD) -> None:
        super().__init__(info)
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        out = self.net(pixel_values=z).logits
        return F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)


def wrap_segformer(net: torch.nn.Module, *, model_id: str, title: str, class_names: Sequence[str],
                   palette: Sequence[Sequence[int]] | None = None, device: str | torch.device = "cpu",
                   mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD, licence: str = "",
                   source: str = "", notes: str = "", extra: dict | None = None) -> HFSegformerModel:
    """Wrap a built ``SegformerForSemanticSegmentation`` (eval, frozen) as a :class:`SegModel`."""
    n = int(net.config.num_labels)
    if len(class_names) != n:
        raise ValueError(f"{model_id}: {len(class_names)} class names given, the model has {n} classes")
    pal = tuple(tuple(int(c) for c in rgb) for rgb in palette) if palette else default_palette(n)
    info = ModelInfo(id=model_id, title=title, class_names=tuple(class_names), palette=pal, ignore_index=255,
                     input_size=None, size_multiple=32, licence=licence, source=source, notes=notes,
                     extra={"family": "segformer", **(extra or {})})
    return HFSegformerModel(net.eval(), info, mean=mean, std=std).to(device).freeze()


def build_segformer(folder: str | Path, *, variant: str = "b0", class_names: Sequence[str],
                    palette: Sequence[Sequence[int]] | None = None, model_id: str = "segformer",
                    title: str = "SegFormer", device: str | torch.device = "cpu", config: Any = None,
                    **info_kw: Any) -> HFSegformerModel:
    """Load SegFormer weights from a local folder (``model.safetensors`` or ``pytorch_model.bin``; no network)."""
    tf = _transformers()
    config = config or segformer_config(variant, num_labels=len(class_names), class_names=class_names)
    net = tf.SegformerForSemanticSegmentation.from_pretrained(str(folder), config=config, local_files_only=True)
    return wrap_segformer(net, model_id=model_id, title=title, class_names=class_names, palette=palette,
                          device=device, extra={"weights": str(folder)}, **info_kw)


def load_preset(preset_id: str, device: str | torch.device = "cpu", *, progress: bool = True) -> HFSegformerModel:
    """Load a named preset from the cache; its weights are downloaded on first use (unless offline)."""
    p = PRESETS[preset_id]
    path = ensure_any(p.id, p.candidates(), hf=True, progress=progress)
    names, palette = DATASETS[p.dataset]
    config = None
    if (path.parent / "config.json").is_file():  # the checkpoint's own architecture (a hub snapshot has one)
        config = _transformers().SegformerConfig.from_pretrained(str(path.parent), local_files_only=True)
        if int(config.num_labels) != len(names):
            raise ModelUnavailable(f"model {p.id!r}: the cached checkpoint has {config.num_labels} classes, "
                                   f"{p.dataset} has {len(names)}; wrong repository in the cache?")
    return build_segformer(path.parent, variant=p.variant, class_names=names, palette=palette, model_id=p.id,
                           title=p.title, device=device, config=config, licence=p.licence, source=p.source,
                           notes=p.notes)
