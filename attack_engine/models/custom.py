"""Bring your own model: a TorchScript file, or a state_dict for a known architecture.

Accepted files
  * **TorchScript** (``torch.jit.save``; any suffix): loaded with ``torch.jit.load``.  This runs the model's own
    TorchScript code when called, as any model does, but no Python pickle.
  * **state_dict** ``.safetensors``, or ``.pt``/``.pth``/``.bin`` read with ``torch.load(weights_only=True)``
    (plain tensors/containers only), for an ``arch``:

      - ``"mmseg:<config>"``: any config name shipped in ``mmseg/.mim/configs`` (or a config ``.py`` path);
      - ``"segformer-b0"`` ... ``"segformer-b5"``: Hugging Face ``SegformerForSemanticSegmentation`` key names;
      - a zoo preset id (``"mmseg-pspnet-r50-cityscapes"``, ``"hf-segformer-b0-ade"``, ...): its architecture.

  * A pickled ``nn.Module`` (``torch.save(model)``) or a checkpoint with other Python objects needs full
    unpickling, which can run arbitrary code: refused unless ``trusted=True`` or ``TSALLIS_TRUST_PICKLE=1``.

User metadata: ``class_names`` (their number sets the head size for a state_dict), ``mean``/``std`` in **[0, 1]
scale, RGB order** (defaults: ImageNet for SegFormer, the config's for mmseg, none for TorchScript/modules).
A TorchScript/module model must take normalised ``[B,3,H,W]`` RGB and return ``[B,C,h,w]`` logits (a tensor, or
a dict with ``"out"``/``"logits"``, or a tuple whose first item is that); one channel with two classes is read
as a sigmoid logit.
"""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from attack_engine.models.base import ModelInfo, SegModel, default_palette
from attack_engine.models.checkpoints import extract_state_dict, read_checkpoint, trust_pickle_env

SEGFORMER_ARCHS = {f"segformer-b{i}": f"b{i}" for i in range(6)}


def is_torchscript(path: str | Path) -> bool:
    """True for a ``torch.jit.save`` archive (a zip with a ``code/`` folder)."""
    try:
        with zipfile.ZipFile(path) as z:
            return any("/code/" in n or n.startswith("code/") for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _pick_logits(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        for key in ("out", "logits", "seg_logits"):
            if key in out:
                return out[key]
        return next(iter(out.values()))
    if isinstance(out, (tuple, list)) and out:
        return _pick_logits(out[0])
    if hasattr(out, "logits"):
        return out.logits
    raise TypeError(f"cannot find logits in a model output of type {type(out).__name__}")


class CustomModel(SegModel):
    """A user module (TorchScript or trusted ``nn.Module``) with user mean/std and class names."""

    def __init__(self, net: torch.nn.Module, info: ModelInfo, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__(info)
        self.net = net
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        z = _pick_logits(self.net((x - self.mean.to(x.dtype)) / self.std.to(x.dtype)))
        if z.dim() == 3:
            z = z.unsqueeze(1)
        if z.shape[1] == 1 and self.info.num_classes == 2:  # sigmoid logit -> two-class logits [0, z]
            z = torch.cat([torch.zeros_like(z), z], dim=1)
        if z.shape[1] != self.info.num_classes:
            raise ValueError(f"{self.info.id}: the model returned {z.shape[1]} channels, "
                             f"{self.info.num_classes} classes were declared")
        if z.shape[-2:] != x.shape[-2:]:
            z = F.interpolate(z, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return z


def _probe_channels(net: torch.nn.Module, mean: Sequence[float], std: Sequence[float], size: int = 64) -> int:
    with torch.no_grad():
        x = torch.zeros(1, 3, size, size)
        z = _pick_logits(net((x - torch.tensor(list(mean)).view(1, 3, 1, 1)) / torch.tensor(list(std)).view(1, 3, 1, 1)))
    return 1 if z.dim() == 3 else int(z.shape[1])


def wrap_module(net: torch.nn.Module, *, class_names: Sequence[str] | None = None,
                palette: Sequence[Sequence[int]] | None = None, mean: Sequence[float] | None = None,
                std: Sequence[float] | None = None, model_id: str = "my-model", title: str | None = None,
                device: str | torch.device = "cpu", input_size: tuple[int, int] | None = None,
                size_multiple: int = 1, source: str = "your nn.Module", kind: str = "module") -> SegModel:
    """An ``nn.Module`` you hold, behind the adapter contract (a :class:`SegModel` is returned as it is, frozen).

    The module takes ``(x - mean) / std`` of ``[B,3,H,W]`` RGB in [0, 1] (defaults: mean 0, std 1) and returns
    logits (see the module docstring); ``class_names`` default to ``class 0..C-1`` from a probe call.
    """
    if isinstance(net, SegModel):
        return net.to(device).freeze()
    if not isinstance(net, torch.nn.Module):
        raise TypeError(f"expected a torch.nn.Module, got {type(net).__name__}")
    net = net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    mean = tuple(mean) if mean is not None else (0.0, 0.0, 0.0)
    std = tuple(std) if std is not None else (1.0, 1.0, 1.0)
    if class_names is None:
        c = _probe_channels(net, mean, std, size=max(64, size_multiple))
        class_names = ("background", "foreground") if c == 1 else tuple(f"class {i}" for i in range(c))
    names = tuple(class_names)
    pal = tuple(tuple(int(v) for v in rgb) for rgb in palette) if palette else default_palette(len(names))
    if len(pal) < len(names):
        raise ValueError(f"{model_id}: {len(pal)} palette colours for {len(names)} classes")
    info = ModelInfo(id=model_id, title=title or f"{kind}: {model_id}", class_names=names, palette=pal[: len(names)],
                     input_size=input_size, size_multiple=size_multiple, licence="user-supplied",
                     source=source, extra={"family": "custom", "kind": kind})
    return CustomModel(net, info, mean, std).to(device).freeze()


def _wrap_module(net: torch.nn.Module, path: Path, *, title: str | None, kind: str, **kw: Any) -> SegModel:
    return wrap_module(net, title=title or f"{kind}: {path.name}", source=path.name, kind=kind, **kw)


def _arch_of(arch: str) -> tuple[str, str]:
    """``(family, detail)``: ("mmseg", config) or ("segformer", variant)."""
    if arch.startswith("mmseg:"):
        return "mmseg", arch.split(":", 1)[1]
    if arch in SEGFORMER_ARCHS:
        return "segformer", SEGFORMER_ARCHS[arch]
    if arch.startswith("segformer:") or arch.startswith("hf-segformer:"):
        return "segformer", arch.split(":", 1)[1]
    from attack_engine.models import mmseg as mm
    from attack_engine.models import segformer as sf

    if arch in mm.PRESETS:
        return "mmseg", mm.PRESETS[arch].config
    if arch in sf.PRESETS:
        return "segformer", sf.PRESETS[arch].variant
    raise ValueError(f"unknown architecture {arch!r}: use 'mmseg:<config name>', 'segformer-b0'..'segformer-b5', "
                     "or a zoo model id")


def load_custom(path: str | Path, *, arch: str | None = None, class_names: Sequence[str] | None = None,
                mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                palette: Sequence[Sequence[int]] | None = None, model_id: str | None = None,
                title: str | None = None, trusted: bool | None = None, device: str | torch.device = "cpu",
                input_size: tuple[int, int] | None = None, size_multiple: int = 1) -> SegModel:
    """Load a user model file (see the module docstring).  ``trusted`` defaults to ``$TSALLIS_TRUST_PICKLE``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    if trusted is None:
        trusted = trust_pickle_env()
    model_id = model_id or f"custom:{path.name}"
    common = {"model_id": model_id, "title": title, "class_names": class_names, "palette": palette, "mean": mean,
              "std": std, "device": device, "input_size": input_size, "size_multiple": size_multiple}

    if is_torchscript(path):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)  # torch 2.13 points to torch.export
            net = torch.jit.load(str(path), map_location="cpu")
        return _wrap_module(net, path, kind="TorchScript", **common)

    obj = read_checkpoint(path, trusted=trusted)
    if isinstance(obj, torch.nn.Module):  # only reachable with trusted=True (full unpickling)
        return _wrap_module(obj, path, kind="module", **common)
    if arch is None:
        raise ValueError(f"{path.name} holds a state_dict: say which architecture it is for (arch=...)")
    sd = extract_state_dict(obj)
    family, detail = _arch_of(arch)
    title = title or f"{arch}: {path.name}"
    if family == "mmseg":
        return _build_mmseg_from_state(detail, sd, class_names=class_names, palette=palette, mean=mean, std=std,
                                       model_id=model_id, title=title, device=device, path=path)
    return _build_segformer_from_state(detail, sd, class_names=class_names, palette=palette, mean=mean, std=std,
                                       model_id=model_id, title=title, device=device, path=path)


def _build_mmseg_from_state(config: str, sd: dict[str, torch.Tensor], *, class_names: Sequence[str] | None,
                            palette: Sequence[Sequence[int]] | None, mean: Sequence[float] | None,
                            std: Sequence[float] | None, model_id: str, title: str,
                            device: str | torch.device, path: Path) -> SegModel:
    from attack_engine.models import mmseg as mm

    opts: dict[str, Any] = {}
    if class_names is not None:
        mm.import_mmseg()
        from mmengine.config import Config

        cfg = Config.fromfile(str(mm.resolve_config(config)))
        n = len(class_names)
        if int(cfg.model.decode_head.num_classes) != n:
            opts["model.decode_head.num_classes"] = n
            if isinstance(cfg.model.get("auxiliary_head"), dict):
                opts["model.auxiliary_head.num_classes"] = n
    scale = 255.0
    return mm.build_mmseg(
        config, state_dict=sd, device=device, model_id=model_id, title=title, class_names=class_names,
        palette=palette, mean=[m * scale for m in mean] if mean is not None else None,
        std=[s * scale for s in std] if std is not None else None, cfg_options=opts or None,
        licence="user-supplied", source=str(path), size_multiple=8,
    )


def _build_segformer_from_state(variant: str, sd: dict[str, torch.Tensor], *, class_names: Sequence[str] | None,
                                palette: Sequence[Sequence[int]] | None, mean: Sequence[float] | None,
                                std: Sequence[float] | None, model_id: str, title: str,
                                device: str | torch.device, path: Path) -> SegModel:
    from attack_engine.models import segformer as sf

    tf = sf._transformers()
    if class_names is None:
        w = sd.get("decode_head.classifier.weight")
        if w is None:
            raise ValueError(f"{path.name}: no 'decode_head.classifier.weight'; not a SegFormer state_dict?")
        class_names = tuple(f"class {i}" for i in range(int(w.shape[0])))
    config = sf.segformer_config(variant, num_labels=len(class_names), class_names=class_names)
    net = tf.SegformerForSemanticSegmentation(config)
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        raise ValueError(f"{path.name} does not fit segformer-{variant} with {len(class_names)} classes: "
                         f"{' '.join(lines[1:3])[:300]}") from None
    return sf.wrap_segformer(net, model_id=model_id, title=title, class_names=class_names, palette=palette,
                             device=device, mean=mean or sf.IMAGENET_MEAN, std=std or sf.IMAGENET_STD,
                             licence="user-supplied", source=str(path), extra={"weights": str(path)})
