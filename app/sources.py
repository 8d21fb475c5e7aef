"""Where inputs come from: bundled examples (with ground truth per model class count) and precomputed runs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from app.trajectory import Trajectory, load_group

ROOT = Path(__file__).resolve().parents[1]
PRECOMPUTED_DIR = ROOT / "assets" / "precomputed"
VOC_CLASSES = 21


@dataclass(frozen=True)
class ExampleItem:
    """An example image; ``masks`` maps a model's class count to a ground-truth mask file."""

    id: str
    title: str
    image: Path
    masks: dict[int, Path] = field(default_factory=dict)
    credit: str = ""
    licence: str = ""

    def mask_for(self, num_classes: int) -> Path | None:
        return self.masks.get(num_classes)


def bundled_examples() -> list[ExampleItem]:
    """The examples shipped in ``assets/examples`` (empty if that package part is missing)."""
    try:
        from attack_engine.examples import list_examples
    except ImportError:  # pragma: no cover - examples not installed
        return []
    out = []
    for e in list_examples():
        masks = {}
        if getattr(e, "mask", None):
            masks[2] = Path(e.mask)
        if getattr(e, "voc_mask", None):
            masks[VOC_CLASSES] = Path(e.voc_mask)
        out.append(ExampleItem(e.id, e.title, Path(e.image), masks, getattr(e, "credit", ""), getattr(e, "licence", "")))
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
