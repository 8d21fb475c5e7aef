"""Where inputs come from: bundled examples (with ground truth per model class count) and precomputed runs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from app.trajectory import Trajectory, load_group
from attack_engine.models.datasets import DATASETS

ROOT = Path(__file__).resolve().parents[1]
PRECOMPUTED_DIR = ROOT / "assets" / "precomputed"
VOC_CLASSES = 21
VOC_NAMES = DATASETS["voc"][0]
DATASET_TITLES = {"voc": "Pascal VOC", "ade20k": "ADE20K", "cityscapes": "Cityscapes"}


def _norm(names: Sequence[str]) -> tuple[str, ...]:
    return tuple(str(n).strip().lower() for n in names)


def label_set_title(class_names: Sequence[str]) -> str:
    """``"150 ADE20K classes"`` for a known dataset's label set, else ``"21 classes"``."""
    for key, (names, _) in DATASETS.items():
        if _norm(names) == _norm(class_names):
            return f"{len(names)} {DATASET_TITLES.get(key, key)} classes"
    if len(class_names) <= 3:
        return f"{'/'.join(class_names)} ({len(class_names)} classes)"
    return f"{len(class_names)} classes"


@dataclass(frozen=True)
class ExampleItem:
    """An example image; ``masks`` maps a class count to a ground-truth mask file.

    ``mask_names`` optionally gives a mask's class names (by the same key): such a mask is used only for a model
    with exactly those classes, in that order (the VOC ground truth only for a model with VOC's classes).
    """

    id: str
    title: str
    image: Path
    masks: dict[int, Path] = field(default_factory=dict)
    credit: str = ""
    licence: str = ""
    mask_names: dict[int, tuple[str, ...]] = field(default_factory=dict)

    def mask_for(self, num_classes: int, class_names: Sequence[str] | None = None) -> Path | None:
        """The ground truth for a model with these classes, or ``None``."""
        m = self.masks.get(num_classes)
        want = self.mask_names.get(num_classes)
        if m is not None and want is not None and class_names is not None and _norm(want) != _norm(class_names):
            return None
        return m

    def label_note(self, num_classes: int, class_names: Sequence[str]) -> str:
        """Why the attack falls back to the clean prediction as labels (``""`` when a mask fits or none exists)."""
        if not self.masks or self.mask_for(num_classes, class_names) is not None:
            return ""
        have = [label_set_title(self.mask_names[k]) if k in self.mask_names else f"{k} classes"
                for k in sorted(self.masks, reverse=True)]
        return (f"labels are the model's clean prediction: this example's ground truth is for {' or '.join(have)}, "
                f"the model has {label_set_title(class_names)}")


def bundled_examples() -> list[ExampleItem]:
    """The examples shipped in ``assets/examples`` (empty if that package part is missing)."""
    try:
        from attack_engine.examples import list_examples
    except ImportError:  # examples not installed
        return []
    out = []
    for e in list_examples():
        masks, names = {}, {}
        if getattr(e, "mask", None):
            masks[2] = Path(e.mask)
            names[2] = ("background", "person")
        if getattr(e, "voc_mask", None):
            masks[VOC_CLASSES] = Path(e.voc_mask)
            names[VOC_CLASSES] = VOC_NAMES
        out.append(ExampleItem(e.id, e.title, Path(e.image), masks, getattr(e, "credit", ""), getattr(e, "licence", ""),
                               names))
    return out


def precomputed_index(folder: Path = PRECOMPUTED_DIR) -> list[dict]:
    """Entries ``{"example", "model", "file", "config"}`` of ``index.json`` (empty when absent)."""
    idx = folder / "index.json"
    if not idx.exists():
        return []
    return json.loads(idx.read_text())["runs"]


def find_precomputed(example_id: str, model_id: str, folder: Path = PRECOMPUTED_DIR) -> Path | None:
    for r in precomputed_index(folder):
        if r["example"] == example_id and r["model"] == model_id and (folder / r["file"]).exists():
            return folder / r["file"]
    return None


def load_precomputed(example_id: str, model_id: str, folder: Path = PRECOMPUTED_DIR) -> Trajectory | None:
    """The shipped run for this example and model, or ``None``."""
    p = find_precomputed(example_id, model_id, folder)
    return None if p is None else Trajectory.load(p)


def load_precomputed_compare(example_id: str, model_id: str, image, folder: Path = PRECOMPUTED_DIR) -> dict[str, Trajectory]:
    """The shipped attack comparison (title -> light run) for this example and model, or ``{}``.

    ``image`` is the model-resolution image of the example's shipped run (the comparison does not repeat it).
    """
    for r in precomputed_index(folder):
        if r["example"] == example_id and r["model"] == model_id and r.get("compare_file"):
            p = folder / r["compare_file"]
            if p.exists():
                return load_group(p, image=image)
    return {}
