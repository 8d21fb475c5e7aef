"""Built-in registry entries: the bundled MediaPipe selfie models (more families register here too)."""

from __future__ import annotations

from attack_engine.models.registry import ASSETS, ModelEntry, register


def _selfie(variant: str):
    def load(device="cpu", **kw):
        from attack_engine.models.selfie import load_selfie

        return load_selfie(variant, device=device, **kw)

    return load


register(ModelEntry(
    id="mediapipe-selfie", title="MediaPipe Selfie Segmentation (general, 256×256)", family="bundled",
    num_classes=2, licence="Apache-2.0", source="npm @mediapipe/selfie_segmentation@0.1.1675465747",
    loader=_selfie("general"), weights=lambda: [ASSETS / "models" / "selfie_segmentation.tflite"],
    description="Person vs background; bundled, works offline.",
))
register(ModelEntry(
    id="mediapipe-selfie-landscape", title="MediaPipe Selfie Segmentation (landscape, 144×256)", family="bundled",
    num_classes=2, licence="Apache-2.0", source="npm @mediapipe/selfie_segmentation@0.1.1675465747",
    loader=_selfie("landscape"), weights=lambda: [ASSETS / "models" / "selfie_segmentation_landscape.tflite"],
    description="Person vs background, landscape input; bundled, works offline.",
))
