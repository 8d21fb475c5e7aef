"""mmsegmentation 1.2.2 adapter: a config shipped inside the mmseg package plus a checkpoint.

* Configs come from ``mmseg/.mim/configs/<family>/<name>.py`` (give the name) or any ``.py`` config path.
* The model is built with ``init_model(cfg, checkpoint=None)`` (which clears backbone ``init_cfg``, so nothing is
  downloaded), SyncBN is reverted to BN, and the checkpoint is read here without unpickling code
  (:func:`attack_engine.models.checkpoints.read_checkpoint`) and loaded with ``load_state_dict``.
* Input is RGB in [0, 1]; the adapter scales to 0-255, reorders channels to what the network was trained on
  (``data_preprocessor.bgr_to_rgb``: mmseg loads BGR with cv2 and swaps when the flag is set) and normalises with
  the config's mean/std.  The differentiable path is ``encode_decode`` ("whole" inference), which returns
  logits resized to the input size.
* Class names and palette come from the config's dataset metainfo (``CityscapesDataset.METAINFO`` ...).

mmseg needs the ``mmcv.ops`` shim under mmcv-lite (:mod:`attack_engine.models.mmcv_shim`); it is applied here
before the first mmseg import, and skipped with full mmcv.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from attack_engine.models.base import ModelInfo, ModelUnavailable, SegModel, default_palette
from attack_engine.models.checkpoints import (
    cache_dir,
    ensure_file,
    extract_state_dict,
    openmmlab_hash,
    read_checkpoint,
)

OPENMMLAB_URL = "https://download.openmmlab.com/mmsegmentation/v0.5/"
MMSEG_LICENCE = "Apache-2.0 (mmsegmentation code and weights)"


@dataclass(frozen=True)
class MMSegPreset:
    """A named mmseg config + released checkpoint (the URLs are those in mmseg's ``metafile.yaml``)."""

    id: str
    title: str
    config: str  # config name inside mmseg/.mim/configs
    url: str
    dataset: str  # "cityscapes", "voc", "ade20k"
    size_multiple: int = 8
    licence: str = MMSEG_LICENCE
    notes: str = ""
    size_mb: float = 0.0  # download size (float32 parameters incl. the auxiliary head), for the app's model list
    sha256: str | None = None  # full digest of the released file, when pinned: a match counts as trust (see load)

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    def weights_path(self) -> Path:
        return cache_dir() / "mmseg" / self.filename

    @property
    def source(self) -> str:
        return f"mmsegmentation 1.2.2 config {self.config}; weights {self.url}"


def _u(folder: str, name: str) -> str:
    """OpenMMLab's layout: ``<family>/<name without the _date_time-hash.pth tail>/<name>``."""
    return f"{OPENMMLAB_URL}{folder}/{'_'.join(name.split('_')[:-2])}/{name}"


PRESETS: dict[str, MMSegPreset] = {p.id: p for p in (
    MMSegPreset(
        id="mmseg-pspnet-r50-cityscapes", title="PSPNet R50-D8, Cityscapes (mmseg, paper model)",
        config="pspnet_r50-d8_4xb2-40k_cityscapes-512x1024",
        url=_u("pspnet", "pspnet_r50-d8_512x1024_40k_cityscapes_20200605_003338-2966598c.pth"),
        dataset="cityscapes", notes="Trained on 512×1024 crops; 19 classes; mIoU 77.85. ~49M params (slow on CPU).",
        size_mb=187.1,
    ),
    MMSegPreset(
        id="mmseg-pspnet-r50-voc", title="PSPNet R50-D8, Pascal VOC 2012 aug (mmseg, paper model)",
        config="pspnet_r50-d8_4xb4-40k_voc12aug-512x512",
        url=_u("pspnet", "pspnet_r50-d8_512x512_40k_voc12aug_20200613_161222-ae9c1b8c.pth"),
        dataset="voc", notes="Trained on 512×512 crops; 21 classes incl. background; mIoU 77.29.",
        size_mb=187.1,
    ),
    MMSegPreset(
        id="mmseg-segformer-b0-ade", title="SegFormer MiT-B0, ADE20K (mmseg)",
        config="segformer_mit-b0_8xb2-160k_ade20k-512x512",
        url=_u("segformer", "segformer_mit-b0_512x512_160k_ade20k_20210726_101530-8ffa8fda.pth"),
        dataset="ade20k", size_multiple=32, licence="NVIDIA SegFormer licence (non-commercial); mmseg code Apache-2.0",
        notes="Light (3.8M params). 150 ADE20K classes, no background class. mIoU 37.41.",
        size_mb=14.3,
    ),
    MMSegPreset(
        id="mmseg-fcn-r18-cityscapes", title="FCN R18-D8, Cityscapes (mmseg, light)",
        config="fcn_r18-d8_4xb2-80k_cityscapes-512x1024",
        url=_u("fcn", "fcn_r18-d8_512x1024_80k_cityscapes_20201225_021327-6c50f8b4.pth"),
        dataset="cityscapes", notes="Light ResNet-18 model; 19 classes; mIoU 71.11.",
        size_mb=49.0,
    ),
    MMSegPreset(
        id="mmseg-deeplabv3-r18-cityscapes", title="DeepLabV3 R18-D8, Cityscapes (mmseg, light)",
        config="deeplabv3_r18-d8_4xb2-80k_cityscapes-512x1024",
        url=_u("deeplabv3", "deeplabv3_r18-d8_512x1024_80k_cityscapes_20201225_021506-23dffbe2.pth"),
        dataset="cityscapes", notes="Light ResNet-18 model; 19 classes; mIoU 76.70.",
        size_mb=53.4,
    ),
)}


# -- mmseg import ---------------------------------------------------------------------------------------------------
def import_mmseg() -> Any:
    """Import mmseg (applying the mmcv-lite shim first); a missing install raises :class:`ModelUnavailable`."""
    try:
        from attack_engine.models import mmcv_shim

        mmcv_shim.apply()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*MultiScaleDeformableAttention.*")
            import mmseg
            import mmseg.apis
            import mmseg.datasets
    except ImportError as e:
        raise ModelUnavailable(
            f"mmsegmentation is not installed ({e}). Install it with: pip install --no-deps -r requirements-mm.txt "
            "(and the plain deps in requirements.txt)."
        ) from None
    return mmseg


def configs_root() -> Path:
    mmseg = import_mmseg()
    return Path(mmseg.__file__).resolve().parent / ".mim" / "configs"


def resolve_config(config: str | Path) -> Path:
    """A config path, or a config name (``pspnet_r50-d8_4xb2-40k_cityscapes-512x1024``) found in mmseg's configs."""
    p = Path(config)
    if p.suffix == ".py" and p.is_file():
        return p
    name = p.name if p.suffix == ".py" else p.name + ".py"
    hits = sorted(configs_root().glob(f"*/{name}"))
    if not hits:
        raise ValueError(f"mmseg config {config!r} not found in {configs_root()}")
    return hits[0]


# -- adapter --------------------------------------------------------------------------------------------------------
class MMSegModel(SegModel):
    """An mmseg ``EncoderDecoder`` behind the [0, 1]-RGB-in, logits-at-input-size contract."""

    def __init__(self, net: torch.nn.Module, info: ModelInfo, mean: Sequence[float], std: Sequence[float],
                 to_bgr: bool) -> None:
        super().__init__(info)
        self.net = net
        self.to_bgr = bool(to_bgr)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB -> what the network was trained on (0-255, mean/std in RGB order, then BGR if needed)."""
        x = (x * 255.0 - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return x.flip(1) if self.to_bgr else x

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        h, w = int(x.shape[-2]), int(x.shape[-1])
        meta = {"img_shape": (h, w), "ori_shape": (h, w), "pad_shape": (h, w), "padding_size": [0, 0, 0, 0]}
        return self.net.encode_decode(self.normalise(x), [dict(meta) for _ in range(x.shape[0])])


def _dataset_meta(cfg: Any) -> tuple[tuple[str, ...], tuple[tuple[int, int, int], ...]] | None:
    import mmseg.datasets as datasets

    for key in ("test_dataloader", "val_dataloader", "train_dataloader"):
        ds = cfg.get(key, {}) or {}
        ds = ds.get("dataset", {}) or {}
        while isinstance(ds, dict) and "dataset" in ds:  # wrappers (RepeatDataset, ...)
            ds = ds["dataset"]
        cls = getattr(datasets, str(ds.get("type", "")), None) if isinstance(ds, dict) else None
        meta = getattr(cls, "METAINFO", None)
        if meta and meta.get("classes"):
            names = tuple(meta["classes"])
            pal = tuple(tuple(int(c) for c in rgb) for rgb in meta.get("palette", [])) or default_palette(len(names))
            return names, pal
    return None


def _load_weights(net: torch.nn.Module, sd: dict[str, torch.Tensor], name: str) -> None:
    try:
        missing, unexpected = net.load_state_dict(sd, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise ValueError(f"{name}: the checkpoint does not fit this config: {str(e).splitlines()[-1].strip()}") from None
    missing = [k for k in missing if not k.startswith("auxiliary_head.")]
    if missing:
        raise ValueError(f"{name}: {len(missing)} weights missing from the checkpoint (e.g. {missing[:3]}); "
                         "wrong config for this checkpoint?")
    unexpected = [k for k in unexpected if not k.startswith("auxiliary_head.")]
    if unexpected:
        warnings.warn(f"{name}: {len(unexpected)} checkpoint entries not used (e.g. {unexpected[:3]})", stacklevel=3)


def build_mmseg(config: str | Path, checkpoint: str | Path | None = None, *, device: str | torch.device = "cpu",
                model_id: str | None = None, title: str | None = None,
                class_names: Sequence[str] | None = None, palette: Sequence[Sequence[int]] | None = None,
                mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                cfg_options: dict | None = None, state_dict: dict[str, torch.Tensor] | None = None,
                trusted: bool | None = None, pinned_sha256: str | None = None, size_multiple: int = 8,
                licence: str = "", source: str = "", notes: str = "") -> MMSegModel:
    """Build an mmseg model from a config (name or path) and a local checkpoint file (or ``state_dict``).

    ``checkpoint=None`` and ``state_dict=None`` keep the random initialisation (for tests).  ``mean``/``std``
    (0-255 scale, **RGB order**) override the config's ``data_preprocessor``.
    """
    import_mmseg()
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    from mmseg.apis import init_model

    cfg_path = resolve_config(config)
    cfg = Config.fromfile(str(cfg_path))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = init_model(cfg, checkpoint=None, device="cpu")
    net = revert_sync_batchnorm(net)
    name = model_id or f"mmseg:{cfg_path.stem}"
    if checkpoint is not None:
        state_dict = extract_state_dict(read_checkpoint(checkpoint, trusted=trusted, pinned_sha256=pinned_sha256))
    if state_dict is not None:
        _load_weights(net, state_dict, name)

    num_classes = int(net.decode_head.num_classes)
    if class_names is None:
        meta = _dataset_meta(cfg)
        if meta is not None and len(meta[0]) == num_classes:
            class_names, palette = meta[0], palette or meta[1]
        else:
            class_names = tuple(f"class {i}" for i in range(num_classes))
    class_names = tuple(class_names)
    if len(class_names) != num_classes:
        raise ValueError(f"{name}: {len(class_names)} class names given, the model has {num_classes} classes")
    pal = tuple(tuple(int(c) for c in rgb) for rgb in palette) if palette else default_palette(num_classes)

    dp = cfg.model.get("data_preprocessor", {}) or {}
    # mmseg feeds BGR images (cv2); the net sees RGB iff exactly one of the swap flags is set.
    sees_rgb = bool(dp.get("bgr_to_rgb", False)) ^ bool(dp.get("rgb_to_bgr", False))
    # The config's mean/std are in the network's channel order; the adapter keeps them in RGB order.
    cfg_mean = list(dp.get("mean") or (0.0, 0.0, 0.0))
    cfg_std = list(dp.get("std") or (1.0, 1.0, 1.0))
    if not sees_rgb:
        cfg_mean, cfg_std = cfg_mean[::-1], cfg_std[::-1]
    mean = list(mean) if mean is not None else cfg_mean
    std = list(std) if std is not None else cfg_std

    info = ModelInfo(
        id=name, title=title or f"mmseg {cfg_path.stem}", class_names=class_names, palette=pal,
        ignore_index=255, input_size=None, size_multiple=size_multiple, licence=licence,
        source=source or f"mmsegmentation 1.2.2 config {cfg_path.stem}", notes=notes,
        extra={"family": "mmseg", "config": str(cfg_path), "checkpoint": str(checkpoint) if checkpoint else None},
    )
    model = MMSegModel(net, info, mean=mean, std=std, to_bgr=not sees_rgb)
    return model.to(device).freeze()


def load_preset(preset_id: str, device: str | torch.device = "cpu", *, checkpoint: str | Path | None = None,
                progress: bool = True, **kwargs: Any) -> MMSegModel:
    """Load a named preset: its weight file from the cache, downloaded on first use (sha256 prefix checked).

    Published OpenMMLab checkpoints are ``{"meta": {config text, CLASSES, PALETTE, versions, hook_msgs, numpy
    scalars}, "state_dict": ...}``; they load on the safe ``weights_only`` path with the numpy types allowed.
    A preset with a full ``sha256`` pin may also hold other pickled objects: the pinned file counts as trusted.
    """
    p = PRESETS[preset_id]
    if checkpoint is None:
        checkpoint = ensure_file(p.id, p.weights_path(), p.url, sha256=p.sha256 or openmmlab_hash(p.filename),
                                 progress=progress)
    return build_mmseg(p.config, checkpoint, device=device, model_id=p.id, title=p.title, pinned_sha256=p.sha256,
                       size_multiple=p.size_multiple, licence=p.licence, source=p.source, notes=p.notes, **kwargs)
