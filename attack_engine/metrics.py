"""Confusion-matrix metrics for semantic segmentation (as in the paper's harness).

Rows are true classes, columns predictions.  Pixels whose label is ``ignore_index`` or outside
``[0, num_classes)`` never count.

* pixel accuracy (aAcc) = trace / sum
* IoU_c = diag / (rowsum + colsum - diag); mIoU = mean over classes with a nonzero union
* mean class accuracy = mean over classes that occur in the labels of diag / rowsum
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def confusion_matrix(pred: torch.Tensor, labels: torch.Tensor, num_classes: int, ignore_index: int = 255) -> torch.Tensor:
    """Per-image confusion matrices ``[B, C, C]`` (int64) for ``pred``/``labels`` of shape ``[B, H, W]``.

    Shapes never depend on the data (ignored pixels go to a spare bin), so there is no host sync on a GPU.
    """
    b = pred.shape[0]
    cc = num_classes * num_classes
    valid = (labels != ignore_index) & (labels >= 0) & (labels < num_classes)
    idx = labels.long().clamp(0, num_classes - 1) * num_classes + pred.long().clamp(0, num_classes - 1)
    idx = idx + (torch.arange(b, device=pred.device) * cc).view(b, 1, 1)
    idx = torch.where(valid, idx, b * cc).flatten()
    counts = torch.zeros(b * cc + 1, dtype=torch.int64, device=pred.device)
    counts.scatter_add_(0, idx, torch.ones_like(idx))
    return counts[:-1].view(b, num_classes, num_classes)


class ConfusionCounter:
    """:func:`confusion_matrix` against fixed labels, for many predictions (one per attack iteration).

    The label-dependent index (label row, image offset, ignored pixels to the spare bin) is computed once, so each
    call is an add, a where and a scatter: the same integer counts as :func:`confusion_matrix`.
    """

    def __init__(self, labels: torch.Tensor, num_classes: int, ignore_index: int = 255) -> None:
        b, c = labels.shape[0], num_classes
        cc = c * c
        self.shape = (b, c, c)
        self.num_classes = c
        valid = (labels != ignore_index) & (labels >= 0) & (labels < c)
        base = labels.long().clamp(0, c - 1) * c + (torch.arange(b, device=labels.device) * cc).view(b, 1, 1)
        self.valid = valid
        self.all_valid = bool(valid.all())  # one host sync per run; then no masking per call
        self.base = base
        self.spare = b * cc
        self.ones = torch.ones(labels.numel(), dtype=torch.int64, device=labels.device)

    def __call__(self, pred: torch.Tensor, in_range: bool = False) -> torch.Tensor:
        """Counts for ``pred`` ``[B,H,W]``; ``in_range``: the caller guarantees ``0 <= pred < C`` (no clamp)."""
        idx = self.base + (pred if in_range else pred.long().clamp(0, self.num_classes - 1))
        if not self.all_valid:
            idx = torch.where(self.valid, idx, self.spare)
        idx = idx.flatten()
        counts = torch.zeros(self.spare + 1, dtype=torch.int64, device=pred.device)
        counts.scatter_add_(0, idx, self.ones)
        return counts[:-1].view(self.shape)


def accuracy_and_miou(cm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`pixel_accuracy` and :func:`mean_iou` of the same matrices.

    Two classes on CPU: the same float64 arithmetic in NumPy (every sum has at most two terms, so its order cannot
    differ), which on these few numbers costs a fraction of the dozen tensor operations.
    """
    if cm.device.type == "cpu" and cm.shape[-1] <= 2:
        return _accuracy_and_miou_np(cm)
    return pixel_accuracy(cm), mean_iou(cm)


def _accuracy_and_miou_np(cm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    c = cm.numpy().astype(np.float64)
    tp = np.diagonal(c, axis1=-2, axis2=-1)
    rows = c.sum(-1)
    total = rows.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = tp.sum(-1) / np.where(total > 0, total, np.nan)
        union = rows + c.sum(-2) - tp
        iou = tp / np.where(union > 0, union, np.nan)
        n = (~np.isnan(iou)).sum(-1)
        miou = np.nansum(iou, -1) / np.where(n > 0, n, np.nan)
    return torch.from_numpy(np.asarray(acc)), torch.from_numpy(np.asarray(miou))


def pixel_accuracy(cm: torch.Tensor) -> torch.Tensor:
    """Pixel accuracy of ``[..., C, C]`` matrices; NaN where no pixel counts."""
    cm = cm.double()
    total = cm.sum((-1, -2))
    return torch.diagonal(cm, dim1=-2, dim2=-1).sum(-1) / total.where(total > 0, torch.nan)


def per_class_iou(cm: torch.Tensor) -> torch.Tensor:
    """IoU per class ``[..., C]``; NaN for classes with zero union."""
    cm = cm.double()
    tp = torch.diagonal(cm, dim1=-2, dim2=-1)
    union = cm.sum(-1) + cm.sum(-2) - tp
    return tp / union.where(union > 0, torch.nan)


def mean_iou(cm: torch.Tensor) -> torch.Tensor:
    """mIoU: mean of :func:`per_class_iou` over classes with nonzero union."""
    return torch.nanmean(per_class_iou(cm), dim=-1)


def mean_class_accuracy(cm: torch.Tensor) -> torch.Tensor:
    """Mean over classes present in the labels of recall diag/rowsum."""
    cm = cm.double()
    rows = cm.sum(-1)
    return torch.nanmean(torch.diagonal(cm, dim1=-2, dim2=-1) / rows.where(rows > 0, torch.nan), dim=-1)


@dataclass
class SegMetrics:
    """Accumulates one confusion matrix over batches (dataset-level ACC / mIoU)."""

    num_classes: int
    ignore_index: int = 255

    def __post_init__(self) -> None:
        self.cm = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)

    def update(self, pred: torch.Tensor, labels: torch.Tensor) -> None:
        self.cm += confusion_matrix(pred, labels, self.num_classes, self.ignore_index).sum(0).cpu()

    def summary(self) -> dict[str, float]:
        return {
            "acc": float(pixel_accuracy(self.cm)),
            "miou": float(mean_iou(self.cm)),
            "macc": float(mean_class_accuracy(self.cm)),
        }
