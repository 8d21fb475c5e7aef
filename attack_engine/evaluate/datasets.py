"""Evaluation datasets: readers for common layouts and the paper's preprocessing.

Every reader lists :class:`Sample` s (an id, an image file, a label file or none) up front, so a missing
file is reported before any attack runs, and :meth:`Dataset.load` returns ``(image uint8 H×W×3,
labels int64 H×W)`` with the dataset's own ids already mapped to training ids and ``IGNORE`` (255) for
pixels that never count.

Layouts (``--data KIND:PATH``):

==============  ==========================================================================================
``folder``      ``PATH/images/*.{jpg,png,...}`` and ``PATH/labels/*.png`` (or ``masks/``, ``annotations/``)
                matched by file stem; without a label folder every image needs ``--labels clean``
``voc``         Pascal VOC 2012: ``JPEGImages/``, ``SegmentationClass/`` (palette PNGs, 255 = boundary),
                ``ImageSets/Segmentation/{split}.txt``; SBD aug splits (``train_aug``, ``aug``, ``trainaug``)
                read ``SegmentationClassAug/``.  PATH may be ``VOCdevkit``, ``VOCdevkit/VOC2012`` or above
``cityscapes``  ``leftImg8bit/{split}/{city}/*_leftImg8bit.png`` with ``gtFine/.../*_gtFine_labelIds.png``,
                label ids mapped to the 19 train ids by the standard table, everything else 255
``ade20k``      ``ADEChallengeData2016/images/{training,validation}/*.jpg`` and ``annotations/.../*.png``.
                ``ade_classes=151``: 0 ("other") is a class, as for the PIR-AT models; ``150``: mmseg's
                ``reduce_zero_label`` (0 → 255, k → k−1)
``examples``    the images bundled in ``assets/examples`` with a person/background mask (2 classes);
                ``examples:voc`` those with a 21-class VOC mask; ``examples:all`` every bundled image
                (for ``--labels clean``)
==============  ==========================================================================================

Preprocessing (:func:`preprocess`, the paper's): resize so the image covers the crop (for a square crop:
the short side becomes the crop size; ``resize`` sets the short side explicitly), bilinear antialiased for
images and nearest for labels, then a centre crop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from attack_engine.images import ImageError, load_image

IGNORE = 255
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
KINDS = ("folder", "voc", "cityscapes", "ade20k", "examples")


class DatasetError(ValueError):
    """A dataset that cannot be read as asked; the message names the file and what to do."""


# Cityscapes label id -> train id (cityscapesScripts ``labels.py``); ids not listed are ignored.
CITYSCAPES_ID_TO_TRAINID: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
    24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}


def cityscapes_lut() -> np.ndarray:
    """256-entry table mapping a ``*_labelIds.png`` value to its train id (255 = ignore)."""
    lut = np.full(256, IGNORE, dtype=np.int64)
    for k, v in CITYSCAPES_ID_TO_TRAINID.items():
        lut[k] = v
    return lut


@dataclass(frozen=True)
class Sample:
    """One evaluation image: a stable id (used for seeds and resuming), its image and label files."""

    id: str
    image: Path | None
    label: Path | None = None
    example: str | None = None  # bundled example id (images come from attack_engine.examples)


@dataclass
class Dataset:
    """A list of samples and how to turn a label file into training ids."""

    kind: str
    root: str
    samples: list[Sample]
    num_classes: int | None = None  # label convention's class count when the layout fixes it
    label_map: str = "identity"  # identity | cityscapes | ade150 | voc_background | person / voc (examples)
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    def describe(self) -> dict:
        return {"kind": self.kind, "root": self.root, "images": len(self.samples), "label_map": self.label_map,
                "num_classes": self.num_classes, "notes": list(self.notes)}

    def load(self, s: Sample, want_labels: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Image ``H×W×3`` uint8 and labels ``H×W`` int64 (train ids, 255 = ignore) or ``None``."""
        if s.example is not None:
            from attack_engine.examples import load_example

            try:
                img, mask = load_example(s.example, voc=self.label_map == "voc")
            except (ImageError, ValueError, KeyError) as e:
                raise DatasetError(f"example {s.example!r}: {e}") from None
            lab = None if mask is None or not want_labels else np.asarray(mask).astype(np.int64)
            if want_labels and lab is None:
                raise DatasetError(f"example {s.example!r} has no ground-truth mask; use --labels clean")
        else:
            try:
                img = load_image(s.image)
            except ImageError as e:
                raise DatasetError(f"{s.image}: {e}") from None
            lab = None
            if want_labels:
                if s.label is None:
                    raise DatasetError(f"image {s.image} has no label file; use --labels clean to attack the clean prediction")
                lab = self._read_label(s.label)
        if lab is not None and lab.shape != img.shape[:2]:
            where = s.label or f"example {s.example}"
            raise DatasetError(f"{where}: label is {lab.shape[1]}×{lab.shape[0]} but the image is {img.shape[1]}×{img.shape[0]}")
        return img, lab

    def _read_label(self, path: Path) -> np.ndarray:
        if not path.exists():
            raise DatasetError(f"label file missing: {path}")
        try:
            with Image.open(path) as im:
                im.load()
                if im.mode in ("RGB", "RGBA"):
                    rgb = np.asarray(im.convert("RGB"))
                    if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])):
                        raise DatasetError(f"{path}: label must hold class ids (palette or grayscale PNG), not colours")
                    arr = rgb[..., 0].astype(np.int64)
                elif im.mode in ("P", "L", "I", "I;16", "I;16B", "I;16L"):
                    arr = np.asarray(im).astype(np.int64)
                else:
                    arr = np.asarray(im.convert("L")).astype(np.int64)
        except (OSError, SyntaxError) as e:
            raise DatasetError(f"{path}: not a readable label PNG ({e})") from None
        return map_labels(arr, self.label_map)


def map_labels(arr: np.ndarray, label_map: str) -> np.ndarray:
    """Apply a layout's label convention (see the module docstring) to raw label values."""
    if label_map in ("identity", "person", "voc"):
        return arr
    if label_map == "cityscapes":
        out = np.full(arr.shape, IGNORE, dtype=np.int64)
        ok = (arr >= 0) & (arr < 256)
        out[ok] = cityscapes_lut()[arr[ok]]
        return out
    if label_map == "ade150":  # mmseg reduce_zero_label: 0 -> 255, k -> k-1, 255 stays 255
        out = arr - 1
        out[(arr == 0) | (arr == IGNORE)] = IGNORE
        return out
    if label_map == "voc_background":  # Croce's labels: boundary 255 -> background 0
        return np.where(arr == IGNORE, 0, arr)
    raise ValueError(f"unknown label map {label_map!r}")


def check_label_range(lab: np.ndarray, num_classes: int, where: str) -> None:
    """Raise :class:`DatasetError` when a label is neither a class id in ``[0, num_classes)`` nor 255."""
    bad = np.unique(lab[(lab != IGNORE) & ((lab < 0) | (lab >= num_classes))])
    if bad.size:
        raise DatasetError(f"{where}: label values {bad[:8].tolist()} are outside 0..{num_classes - 1} "
                           f"(255 = ignore); check the dataset kind and its class convention")


# -- layouts ---------------------------------------------------------------------------------------------
def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def _need_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{what} not found: {path}")
    return path


def folder_dataset(root: str | Path, require_labels: bool = True) -> Dataset:
    """``root/images`` + ``root/labels`` (or ``masks``/``annotations``), matched by stem."""
    root = Path(root)
    _need_dir(root, "dataset folder")
    img_dir = root / "images" if (root / "images").is_dir() else root
    lab_dir = next((root / d for d in ("labels", "masks", "annotations") if (root / d).is_dir()), None)
    images = _images_in(img_dir)
    if not images:
        raise DatasetError(f"no images ({', '.join(IMAGE_EXTS)}) in {img_dir}")
    labels: dict[str, Path] = {}
    if lab_dir is not None:
        for p in sorted(lab_dir.iterdir()):
            if p.suffix.lower() == ".png":
                labels[p.stem] = p
    stems = [p.stem for p in images]
    if len(set(stems)) != len(stems):
        dup = sorted({s for s in stems if stems.count(s) > 1})
        raise DatasetError(f"{img_dir}: several images share the stem(s) {dup[:5]}; labels are matched by stem")
    samples = [Sample(p.stem, p, labels.get(p.stem)) for p in images]
    missing = [s.image.name for s in samples if s.label is None]
    if require_labels and missing:
        where = f"in {lab_dir}" if lab_dir is not None else f"(no labels/, masks/ or annotations/ folder in {root})"
        raise DatasetError(f"{len(missing)} image(s) have no label PNG {where}, e.g. {missing[:3]}; "
                           "add them or use --labels clean")
    return Dataset("folder", str(root), samples)


def _voc_root(path: Path) -> Path:
    for cand in (path, path / "VOC2012", path / "VOCdevkit" / "VOC2012"):
        if (cand / "JPEGImages").is_dir():
            return cand
    raise DatasetError(f"no Pascal VOC layout under {path}: expected JPEGImages/ in it, in VOC2012/ or in VOCdevkit/VOC2012/")


def voc_dataset(root: str | Path, split: str = "val", boundary: str = "ignore", labels_dir: str | None = None,
                require_labels: bool = True) -> Dataset:
    """Pascal VOC 2012 (and the SBD aug split); ``boundary='background'`` maps 255 to 0 (Croce's labels)."""
    base = _voc_root(Path(root))
    if boundary not in ("ignore", "background"):
        raise DatasetError(f"VOC boundary handling must be 'ignore' or 'background', got {boundary!r}")
    split_file = base / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not split_file.exists():
        have = sorted(p.stem for p in (base / "ImageSets" / "Segmentation").glob("*.txt"))
        raise DatasetError(f"split list missing: {split_file} (found: {', '.join(have) or 'none'})")
    ids = [ln.split()[0] for ln in split_file.read_text().splitlines() if ln.strip()]
    if labels_dir is None:
        labels_dir = "SegmentationClassAug" if "aug" in split.lower() else "SegmentationClass"
    lab_root = base / labels_dir
    if require_labels:
        _need_dir(lab_root, "VOC label folder")
    samples, missing = [], []
    for i in ids:
        img = base / "JPEGImages" / f"{i}.jpg"
        lab = lab_root / f"{i}.png"
        if not img.exists():
            missing.append(str(img))
        if require_labels and not lab.exists():
            missing.append(str(lab))
        samples.append(Sample(i, img, lab if lab.exists() else None))
    if missing:
        raise DatasetError(f"{len(missing)} file(s) of split {split!r} are missing, e.g. {missing[:3]}")
    notes = [f"split {split} from {split_file.name}, labels from {labels_dir}/",
             "boundary (255) ignored" if boundary == "ignore" else "boundary (255) mapped to background 0 (Croce's labels)"]
    return Dataset("voc", str(base), samples, 21, "identity" if boundary == "ignore" else "voc_background", notes)


def cityscapes_dataset(root: str | Path, split: str = "val", require_labels: bool = True) -> Dataset:
    """Cityscapes fine annotations, label ids mapped to the 19 train ids (others → 255)."""
    base = Path(root)
    img_root = _need_dir(base / "leftImg8bit" / split, "Cityscapes image folder")
    gt_root = base / "gtFine" / split
    if require_labels:
        _need_dir(gt_root, "Cityscapes gtFine folder")
    samples, missing = [], []
    for img in sorted(img_root.glob("*/*_leftImg8bit.png")):
        stem = img.name[: -len("_leftImg8bit.png")]
        lab = gt_root / img.parent.name / f"{stem}_gtFine_labelIds.png"
        if require_labels and not lab.exists():
            missing.append(str(lab))
        samples.append(Sample(stem, img, lab if lab.exists() else None))
    if not samples:
        raise DatasetError(f"no */*_leftImg8bit.png under {img_root}")
    if missing:
        raise DatasetError(f"{len(missing)} label file(s) missing, e.g. {missing[:3]}")
    return Dataset("cityscapes", str(base), samples, 19, "cityscapes",
                   [f"split {split}", "gtFine labelIds mapped to 19 train ids, others ignored (255)"])


def ade20k_dataset(root: str | Path, split: str = "val", classes: int = 151, require_labels: bool = True) -> Dataset:
    """ADE20K SceneParsing (ADEChallengeData2016) with an explicit 151- or 150-class label convention."""
    base = Path(root)
    if (base / "ADEChallengeData2016").is_dir():
        base = base / "ADEChallengeData2016"
    if classes not in (150, 151):
        raise DatasetError(f"ADE20K class convention must be 151 (0 = other is a class) or 150 (reduce labels), got {classes}")
    sub = {"val": "validation", "validation": "validation", "train": "training", "training": "training"}.get(split)
    if sub is None:
        raise DatasetError(f"ADE20K split must be val or train, got {split!r}")
    img_root = _need_dir(base / "images" / sub, "ADE20K image folder")
    ann_root = base / "annotations" / sub
    if require_labels:
        _need_dir(ann_root, "ADE20K annotation folder")
    samples, missing = [], []
    for img in _images_in(img_root):
        lab = ann_root / f"{img.stem}.png"
        if require_labels and not lab.exists():
            missing.append(str(lab))
        samples.append(Sample(img.stem, img, lab if lab.exists() else None))
    if not samples:
        raise DatasetError(f"no images under {img_root}")
    if missing:
        raise DatasetError(f"{len(missing)} annotation(s) missing, e.g. {missing[:3]}")
    note = ("151 classes: label 0 ('other') is a class (PIR-AT convention)" if classes == 151
            else "150 classes: reduce_zero_label (0 -> 255 ignored, k -> k-1; mmseg convention)")
    return Dataset("ade20k", str(base), samples, classes, "identity" if classes == 151 else "ade150", [f"split {split}", note])


def examples_dataset(which: str = "", require_labels: bool = True) -> Dataset:
    """The bundled examples: ``""`` those with a person mask (2 classes), ``"voc"`` those with a 21-class VOC
    mask, ``"all"`` every image (labels must then be the clean prediction)."""
    try:
        from attack_engine.examples import list_examples
    except ImportError as e:
        raise DatasetError(f"the bundled examples are not available ({e})") from None
    if which not in ("", "all", "voc"):
        raise DatasetError(f"examples take '', 'voc' or 'all' after the colon, got {which!r}")
    items = list_examples()
    if which == "all":
        if require_labels:
            lack = [e.id for e in items if e.mask is None]
            if lack:
                raise DatasetError(f"examples {lack[:5]} have no ground-truth mask; use --labels clean with examples:all")
        return Dataset("examples", "assets/examples", [Sample(e.id, e.image, None, example=e.id) for e in items],
                       2, "person", notes=["all bundled examples"])
    voc = which == "voc"
    items = [e for e in items if (e.voc_mask if voc else e.mask) is not None]
    if not items:
        raise DatasetError("no bundled example has such a ground-truth mask")
    return Dataset("examples", "assets/examples", [Sample(e.id, e.image, None, example=e.id) for e in items],
                   21 if voc else 2, "voc" if voc else "person",
                   ["bundled examples with " + ("21-class VOC masks" if voc else "person/background masks")])


def open_dataset(spec: str, *, split: str = "val", voc_boundary: str = "ignore", ade_classes: int = 151,
                 require_labels: bool = True) -> Dataset:
    """Parse ``KIND:PATH`` (or ``examples[:all]``) and open the dataset."""
    kind, _, path = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        if Path(spec).is_dir():
            kind, path = "folder", spec
        else:
            raise DatasetError(f"unknown dataset {spec!r}; write KIND:PATH with KIND one of {', '.join(KINDS)}")
    if kind == "examples":
        return examples_dataset(path, require_labels)
    if not path:
        raise DatasetError(f"{kind} needs a path: --data {kind}:PATH")
    if not Path(path).exists():
        raise DatasetError(f"dataset path not found: {path}")
    if kind == "folder":
        return folder_dataset(path, require_labels)
    if kind == "voc":
        return voc_dataset(path, split, voc_boundary, require_labels=require_labels)
    if kind == "cityscapes":
        return cityscapes_dataset(path, split, require_labels)
    return ade20k_dataset(path, split, ade_classes, require_labels)


# -- preprocessing ---------------------------------------------------------------------------------------
def resized_shape(hw: tuple[int, int], crop: tuple[int, int], short_side: int | None = None) -> tuple[int, int]:
    """Size after resizing ``hw`` so it covers ``crop`` (or so its short side is ``short_side``)."""
    h, w = hw
    ch, cw = crop
    scale = short_side / min(h, w) if short_side else max(ch / h, cw / w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    if nh < ch or nw < cw:
        if short_side:
            raise DatasetError(f"resizing {w}×{h} to short side {short_side} gives {nw}×{nh}, smaller than the {cw}×{ch} crop")
        nh, nw = max(nh, ch), max(nw, cw)
    return nh, nw


def preprocess(img: np.ndarray, lab: np.ndarray | None, crop: tuple[int, int], short_side: int | None = None
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Resize (bilinear antialiased / nearest) and centre-crop: ``[3,H,W]`` float in [0, 1], ``[H,W]`` int64."""
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0)[None]
    nh, nw = resized_shape(tuple(img.shape[:2]), crop, short_side)
    if (nh, nw) != tuple(img.shape[:2]):
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)
    y = None
    if lab is not None:
        y = torch.from_numpy(np.ascontiguousarray(lab)).long()[None, None]
        if (nh, nw) != tuple(lab.shape):
            y = F.interpolate(y.float(), size=(nh, nw), mode="nearest").long()
    top, left = (nh - crop[0]) // 2, (nw - crop[1]) // 2
    x = x[0, :, top: top + crop[0], left: left + crop[1]].contiguous()
    if y is not None:
        y = y[0, 0, top: top + crop[0], left: left + crop[1]].contiguous()
    return x, y


def parse_size(text: str | int | Sequence[int]) -> tuple[int, int]:
    """``512`` or ``512x1024`` (H×W) -> (H, W)."""
    if isinstance(text, int):
        return text, text
    if not isinstance(text, str):
        h, w = text
        return int(h), int(w)
    parts = text.lower().replace("×", "x").split("x")
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"size {text!r} must be N or HxW") from None
    if len(vals) not in (1, 2) or min(vals) < 1:
        raise ValueError(f"size {text!r} must be N or HxW with positive integers")
    return (vals[0], vals[0]) if len(vals) == 1 else (vals[0], vals[1])
