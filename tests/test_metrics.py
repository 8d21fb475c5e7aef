"""Confusion-matrix metrics against a direct computation."""

from __future__ import annotations

import numpy as np
import torch

from attack_engine.metrics import SegMetrics, confusion_matrix, mean_class_accuracy, mean_iou, pixel_accuracy


def direct(pred: np.ndarray, lab: np.ndarray, c: int, ii: int):
    m = lab != ii
    p, t = pred[m], lab[m]
    acc = (p == t).mean()
    ious, accs = [], []
    for k in range(c):
        inter = ((p == k) & (t == k)).sum()
        union = ((p == k) | (t == k)).sum()
        if union:
            ious.append(inter / union)
        if (t == k).sum():
            accs.append(inter / (t == k).sum())
    return acc, np.mean(ious), np.mean(accs)


def test_metrics_match_direct_computation_and_accumulate():
    rng = np.random.default_rng(0)
    c, ii = 5, 255
    acc_metric = SegMetrics(c, ii)
    preds, labs = [], []
    for _ in range(3):
        pred = rng.integers(0, c, (2, 9, 11))
        lab = rng.integers(0, c - 1, (2, 9, 11))  # class 4 never in labels
        lab[:, 0, :] = ii
        preds.append(pred)
        labs.append(lab)
        acc_metric.update(torch.from_numpy(pred), torch.from_numpy(lab))
    acc, miou, macc = direct(np.concatenate(preds), np.concatenate(labs), c, ii)
    s = acc_metric.summary()
    assert np.isclose(s["acc"], acc) and np.isclose(s["miou"], miou) and np.isclose(s["macc"], macc)
    cm = confusion_matrix(torch.from_numpy(preds[0]), torch.from_numpy(labs[0]), c, ii)
    for i in range(2):
        a, m, ma = direct(preds[0][i], labs[0][i], c, ii)
        assert np.isclose(float(pixel_accuracy(cm[i])), a)
        assert np.isclose(float(mean_iou(cm[i])), m)
        assert np.isclose(float(mean_class_accuracy(cm[i])), ma)


def test_ignored_and_out_of_range_labels_never_count():
    pred = torch.zeros(1, 2, 3, dtype=torch.long)
    lab = torch.tensor([[[0, 255, 7], [0, 0, -1]]])
    cm = confusion_matrix(pred, lab, 3)
    assert int(cm.sum()) == 3 and float(pixel_accuracy(cm[0])) == 1.0


def test_confusion_counter_equals_confusion_matrix():
    from attack_engine.metrics import ConfusionCounter

    g = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 4, (3, 7, 9), generator=g)
    labels[0, :2] = 255
    labels[1, 3, :4] = 9  # outside [0, C): never counts
    counter = ConfusionCounter(labels, 4, 255)
    full = torch.randint(0, 4, (3, 7, 9), generator=g)  # every pixel counts: the counter skips its masking
    full_counter = ConfusionCounter(full, 4, 255)
    assert full_counter.all_valid and not counter.all_valid
    for _ in range(3):
        pred = torch.randint(0, 4, (3, 7, 9), generator=g)
        assert torch.equal(counter(pred), confusion_matrix(pred, labels, 4, 255))
        assert torch.equal(full_counter(pred), confusion_matrix(pred, full, 4, 255))


def test_two_class_accuracy_and_miou_are_bitwise_the_tensor_formulas():
    """The NumPy path for <= 2 classes on CPU gives exactly pixel_accuracy / mean_iou, NaN cases included."""
    from attack_engine.metrics import accuracy_and_miou

    g = torch.Generator().manual_seed(0)
    for c in (1, 2):
        for _ in range(200):
            b = int(torch.randint(1, 5, (1,), generator=g))
            cm = torch.randint(0, 6, (b, c, c), generator=g) * (torch.rand(b, c, c, generator=g) > 0.4)
            acc, miou = accuracy_and_miou(cm)
            assert acc.dtype == miou.dtype == torch.float64
            assert torch.equal(acc.nan_to_num(7.0), pixel_accuracy(cm).nan_to_num(7.0))
            assert torch.equal(miou.nan_to_num(7.0), mean_iou(cm).nan_to_num(7.0))
