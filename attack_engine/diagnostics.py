"""Per-class diagnostics of a recorded attack on a multi-class model (pure numpy/scipy on label maps).

* :func:`class_iou_series`: IoU of every class at every record, against the attack's labels;
* :func:`fall_order`: when each class "falls" (its IoU first drops to a fraction of its clean IoU);
* :func:`flip_matrix`: from → to counts of pixels whose predicted class changed since the clean prediction;
* :func:`flip_share_by_size`: the share of flipped pixels per object size, objects being the connected
  components of a reference label map (ground truth or clean prediction) of each class.

Pixels whose label is the ignore index (or out of range) never count, in any of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Object sizes as a share of the labelled image area: tiny < 0.1 %, small < 1 %, medium < 10 %, large ≥ 10 %.
SIZE_EDGES: tuple[float, ...] = (0.001, 0.01, 0.1)
SIZE_NAMES: tuple[str, ...] = ("tiny (<0.1%)", "small (0.1–1%)", "medium (1–10%)", "large (≥10%)")


def valid_mask(labels: np.ndarray, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """True where ``labels`` is a class id (not the ignore index, not out of range)."""
    labels = np.asarray(labels)
    return (labels != ignore_index) & (labels >= 0) & (labels < num_classes)


def confusion(pred: np.ndarray, labels: np.ndarray, num_classes: int, valid: np.ndarray) -> np.ndarray:
    """``C×C`` counts, rows = label, columns = prediction, over ``valid`` pixels."""
    t = np.asarray(labels)[valid].astype(np.int64)
    p = np.clip(np.asarray(pred)[valid].astype(np.int64), 0, num_classes - 1)
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def class_iou(cm: np.ndarray) -> np.ndarray:
    """Per-class IoU from a confusion matrix; NaN for a class in neither labels nor prediction."""
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def class_iou_series(preds: Sequence[np.ndarray], labels: np.ndarray, num_classes: int,
                     ignore_index: int = 255) -> np.ndarray:
    """``R×C`` IoU of each class at each record (NaN where a class is absent from labels and prediction)."""
    valid = valid_mask(labels, num_classes, ignore_index)
    out = np.full((len(preds), num_classes), np.nan)
    for r, pred in enumerate(preds):
        out[r] = class_iou(confusion(pred, labels, num_classes, valid))
    return out


def fall_order(ious: np.ndarray, labels: np.ndarray, num_classes: int, ignore_index: int = 255,
               fraction: float = 0.5) -> list[tuple[int, int]]:
    """``(class, record)`` for every class present in ``labels``: the first record at which its IoU is at most
    ``fraction`` of its record-0 IoU (``-1``: never), earliest first; classes that never fall come last,
    ordered by how far their IoU dropped."""
    present = np.flatnonzero(np.bincount(np.asarray(labels)[valid_mask(labels, num_classes, ignore_index)].ravel(),
                                         minlength=num_classes))
    rows: list[tuple[int, int, float]] = []
    for c in present:
        series = np.nan_to_num(ious[:, c], nan=0.0)
        below = np.flatnonzero(series <= fraction * series[0]) if series[0] > 0 else np.array([0])
        first = int(below[0]) if below.size else -1
        rows.append((int(c), first, float(series[-1] - series[0])))
    rows.sort(key=lambda t: (t[1] < 0, t[1] if t[1] >= 0 else t[2], t[0]))
    return [(c, r) for c, r, _ in rows]


def flip_matrix(before: np.ndarray, after: np.ndarray, valid: np.ndarray, num_classes: int) -> np.ndarray:
    """``C×C`` counts of valid pixels predicted ``before[i]`` (row) and ``after[j]`` (column); the diagonal
    holds the unchanged pixels."""
    return confusion(after, before, num_classes, valid)


@dataclass(frozen=True)
class SizeBin:
    """Objects of one size class: how many, their pixels, and how many of those flipped."""

    name: str
    objects: int
    pixels: int
    flipped: int

    @property
    def share(self) -> float:
        return self.flipped / self.pixels if self.pixels else float("nan")


def object_sizes(reference: np.ndarray, valid: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(component id map, sizes)``: 4-connected components of each class of ``reference`` over ``valid``
    pixels, numbered 1..N across classes (0 = no object); ``sizes[i]`` is the pixel count of component ``i``."""
    from scipy import ndimage

    comp = np.zeros(reference.shape, dtype=np.int64)
    n = 0
    for c in np.unique(reference[valid]):
        lab, k = ndimage.label((reference == c) & valid)
        comp[lab > 0] = lab[lab > 0] + n
        n += int(k)
    return comp, np.bincount(comp.ravel(), minlength=n + 1)


def flip_share_by_size(reference: np.ndarray, flipped: np.ndarray, valid: np.ndarray, num_classes: int,
                       edges: Sequence[float] = SIZE_EDGES, names: Sequence[str] = SIZE_NAMES) -> list[SizeBin]:
    """Share of flipped pixels among the objects of each size bin (size = share of the valid area)."""
    comp, sizes = object_sizes(np.asarray(reference), valid, num_classes)
    area = max(1, int(valid.sum()))
    rel = sizes / area
    bin_of = np.digitize(rel, np.asarray(edges, dtype=np.float64))  # per component
    flips = np.bincount(comp[flipped & valid].ravel(), minlength=len(sizes))
    out = []
    for b, name in enumerate(names):
        ids = np.flatnonzero(bin_of == b)
        ids = ids[ids > 0]
        out.append(SizeBin(name, int(ids.size), int(sizes[ids].sum()), int(flips[ids].sum())))
    return out
