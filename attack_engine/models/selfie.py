"""The bundled default model: MediaPipe Selfie Segmentation (person vs background), replayed in PyTorch.

The ``.tflite`` files under ``assets/models/`` (npm ``@mediapipe/selfie_segmentation@0.1.1675465747``,
Apache-2.0) are run by :class:`~attack_engine.models.tflite_replay.TFLiteGraph`; no TensorFlow or MediaPipe.

Logits.  The network ends in a sigmoid over a score ``s`` (pre-sigmoid, typically hundreds in magnitude).
The adapter skips that sigmoid and returns two logits built symmetrically, ``[-s/2, s/2]`` for
(background, person): ``softmax(logits)[person] == sigmoid(s)`` exactly (MediaPipe's output), and the
signal is split evenly between the two logits.

GPU precision.  cuDNN convolutions run without TF32 in the forward pass (``exact_fp32``, on by default):
with PyTorch's default TF32 the outputs moved by up to 0.09 from MediaPipe's on an H200.  Autocast
(``with_autocast(torch.float16/bfloat16)``) is faster but changes the output by up to 0.1/0.4 (measured).

Size policy.  Any input size is accepted: the image is resized (bilinear, antialiased when shrinking,
differentiable) to the native size (256×256 general, 144×256 landscape), and the logits are resized back
(bilinear) to the input size.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import torch.nn.functional as F

from attack_engine.models.base import ASSETS, ModelInfo, ModelUnavailable, SegModel
from attack_engine.models.tflite_replay import TFLiteGraph, ieee_fp32_convs

MODELS_DIR = ASSETS / "models"
SOURCE = "npm @mediapipe/selfie_segmentation@0.1.1675465747 (Google MediaPipe)"
VARIANTS: dict[str, dict] = {
    "general": {
        "id": "mediapipe-selfie",
        "title": "MediaPipe Selfie Segmentation (general, 256×256)",
        "file": "selfie_segmentation.tflite",
        "sha256": "8d13b7fae74af625c641226813616a2117bd6bca19eb3b75574621fc08557f27",
        "input_size": (256, 256),
    },
    "landscape": {
        "id": "mediapipe-selfie-landscape",
        "title": "MediaPipe Selfie Segmentation (landscape, 144×256)",
        "file": "selfie_segmentation_landscape.tflite",
        "sha256": "4aafe6223bb8dac6fac8ca8ed56852870a33051ef3f6238822d282a109962894",
        "input_size": (144, 256),
    },
}
CLASS_NAMES = ("background", "person")
PALETTE = ((0, 0, 0), (192, 128, 128))  # Pascal VOC's colours for background and person


class SelfieSegmentation(SegModel):
    """MediaPipe selfie segmentation as a two-class :class:`SegModel` (see the module docstring)."""

    def __init__(self, variant: str, path: Path, info: ModelInfo) -> None:
        super().__init__(info)
        self.variant = variant
        graph_out = TFLiteGraph(path)
        out_id = graph_out.graph_output_ids[0]
        last = graph_out.producer.get(out_id)
        if last is None or last.name != "LOGISTIC":
            raise ValueError(f"{path}: expected the graph output to come from a LOGISTIC op, got {last and last.name}")
        # The same graph, stopped at the pre-sigmoid score.
        self.graph = TFLiteGraph(path, outputs=[last.inputs[0]])
        self.native_size: tuple[int, int] = info.input_size
        # Forward convolutions without TF32 on GPUs (with TF32, outputs drift from MediaPipe's by up to 0.09).
        self.exact_fp32 = True

    def _to_native(self, x: torch.Tensor) -> torch.Tensor:
        size = tuple(x.shape[-2:])
        if size == self.native_size:
            return x
        shrink = size[0] > self.native_size[0] or size[1] > self.native_size[1]
        return F.interpolate(x, size=self.native_size, mode="bilinear", align_corners=False, antialias=shrink)

    def _score_native(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"{self.info.id}: expected RGB input [B,3,H,W] in [0,1], got {tuple(x.shape)}")
        with ieee_fp32_convs(self.exact_fp32 and x.is_cuda and x.dtype == torch.float32):
            return self.graph(self._to_native(x))

    def _back(self, t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if tuple(t.shape[-2:]) == tuple(size):
            return t
        return F.interpolate(t, size=size, mode="bilinear", align_corners=False)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``[B,3,H,W]`` RGB in [0,1] -> ``[B,2,H,W]`` logits ``[-s/2, s/2]`` (background, person)."""
        s = self._score_native(x)
        return self._back(torch.cat([-0.5 * s, 0.5 * s], dim=1), x.shape[-2:])

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid person score ``s``, ``[B,1,H,W]`` at the input resolution."""
        x = x.to(self.device, self.param_dtype)
        return self._back(self._score_native(x), x.shape[-2:])

    def prob(self, x: torch.Tensor) -> torch.Tensor:
        """MediaPipe's output: person probability ``sigmoid(s)``, ``[B,1,H,W]``."""
        return torch.sigmoid(self.score(x))


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_selfie(variant: str = "general", device: str | torch.device = "cpu", path: str | Path | None = None,
                verify: bool = True) -> SelfieSegmentation:
    """Build the selfie model (``"general"`` 256×256 or ``"landscape"`` 144×256) on ``device``.

    ``path`` overrides the bundled file; ``verify`` checks the bundled file's sha256.  Raises
    :class:`ModelUnavailable` when the file is missing or damaged.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown selfie variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    v = VARIANTS[variant]
    p = Path(path) if path is not None else MODELS_DIR / v["file"]
    if not p.is_file():
        raise ModelUnavailable(
            f"{v['id']}: weights file {p} is missing. It ships with the repository; restore it with "
            f"`git checkout -- assets/models` or re-fetch it with `python scripts/fetch_assets.py` (needs npm)."
        )
    if verify and path is None and (got := sha256_file(p)) != v["sha256"]:
        raise ModelUnavailable(
            f"{v['id']}: {p} has sha256 {got}, expected {v['sha256']} (damaged, or a Git LFS pointer?). "
            f"Re-fetch it with `python scripts/fetch_assets.py`."
        )
    info = ModelInfo(
        id=v["id"], title=v["title"], class_names=CLASS_NAMES, palette=PALETTE, ignore_index=255,
        input_size=v["input_size"], licence="Apache-2.0", source=SOURCE,
        notes=("Logits [-s/2, s/2] from the pre-sigmoid score s, so softmax = MediaPipe's sigmoid. Inputs are "
               "resized to the native size inside the adapter and logits resized back. Built for people near the "
               "camera (selfies, video calls), not crowded scenes."),
        extra={"variant": variant, "file": str(p), "sha256": v["sha256"] if path is None else sha256_file(p)},
    )
    model = SelfieSegmentation(variant, p, info)
    return model.to(device).freeze()
