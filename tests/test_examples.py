"""Bundled example images: manifest, licences, loading, and the VOC ground truth against the selfie model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from attack_engine.examples import EXAMPLES_DIR, get_example, list_examples, load_example
from attack_engine.images import resize_image, resize_labels, to_tensor
from attack_engine.metrics import confusion_matrix, per_class_iou, pixel_accuracy
from attack_engine.models.selfie import load_selfie


def test_manifest_files_and_licences() -> None:
    raw = json.loads((EXAMPLES_DIR / "manifest.json").read_text())["examples"]
    examples = list_examples()
    assert [e.id for e in examples] == [r["id"] for r in raw]
    assert len({e.id for e in examples}) == len(examples) >= 5
    licences = (EXAMPLES_DIR / "LICENSES.md").read_text()
    for e in examples:
        assert e.title and e.licence and e.source and e.credit, e.id
        for p in (e.image, e.mask, e.voc_mask):
            if p is not None:
                assert p.is_file(), p
                assert p.stat().st_size <= 310_000, p
                assert p.name in licences, f"{p.name} is not described in LICENSES.md"
    listed = {p.name for e in examples for p in (e.image, e.mask, e.voc_mask) if p is not None}
    on_disk = {p.name for p in EXAMPLES_DIR.iterdir() if p.suffix in (".jpg", ".png")}
    assert listed == on_disk, "every image file is in the manifest and vice versa"
    with pytest.raises(KeyError, match="unknown example"):
        get_example("nope")


@pytest.mark.parametrize("example", [e.id for e in list_examples()])
def test_load_example(example: str) -> None:
    img, mask = load_example(example)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and min(img.shape[:2]) >= 256
    assert img.std() > 10  # a real photo, not a blank
    e = get_example(example)
    if e.mask is None:
        assert mask is None
    else:
        assert mask.shape == img.shape[:2] and set(np.unique(mask)) <= {0, 1}


def test_voc_ground_truth_is_consistent() -> None:
    img, person = load_example("voc2012_people")
    _, voc = load_example("voc2012_people", voc=True)
    assert voc.shape == person.shape == img.shape[:2]
    assert voc.max() < 21 and 15 in np.unique(voc)
    np.testing.assert_array_equal(person, (voc == 15).astype(np.int64))
    assert 0.2 < person.mean() < 0.5  # about a third of the image is people


def test_selfie_model_against_voc_person_labels() -> None:
    """Metrics against real labels work offline: the selfie model finds the VOC people reasonably well."""
    model = load_selfie("general")
    img, person = load_example("voc2012_people")
    x = resize_image(to_tensor(img), model.info.input_size)
    y = resize_labels(torch.from_numpy(person)[None], model.info.input_size)
    with torch.no_grad():
        pred = model(x).argmax(1)
    cm = confusion_matrix(pred, y, 2)
    iou_person = float(per_class_iou(cm)[0, 1])
    assert iou_person > 0.4, iou_person
    assert float(pixel_accuracy(cm)[0]) > 0.7


def test_selfie_on_examples_person_vs_no_person() -> None:
    model = load_selfie("general")
    frac = {}
    for name in ("astronaut", "grace_hopper", "rocket"):
        img, _ = load_example(name)
        with torch.no_grad():
            frac[name] = float((model(resize_image(to_tensor(img), (256, 256))).argmax(1) == 1).float().mean())
    assert 0.45 < frac["astronaut"] < 0.65 and 0.45 < frac["grace_hopper"] < 0.75, frac
    assert frac["rocket"] < 0.02, frac
