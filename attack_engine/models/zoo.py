"""Built-in registry entries: the bundled MediaPipe selfie models, the mmseg presets and Hugging Face SegFormers.

Plain data: :func:`builtin_entries` lists them and :mod:`attack_engine.models.registry` registers them; importing this
module loads no adapter (each loader imports its adapter when it is called).
"""

from __future__ import annotations

from attack_engine.models.base import ASSETS, ModelEntry


def _selfie(variant: str):
    def load(device="cpu", **kw):
        from attack_engine.models.selfie import load_selfie

        return load_selfie(variant, device=device, **kw)

    return load


BUNDLED = [ModelEntry(
    id="mediapipe-selfie", title="MediaPipe Selfie Segmentation (general, 256×256)", family="bundled",
    num_classes=2, licence="Apache-2.0", source="npm @mediapipe/selfie_segmentation@0.1.1675465747",
    loader=_selfie("general"), weights=lambda: [ASSETS / "models" / "selfie_segmentation.tflite"],
    description="Person vs background; bundled, works offline.",
), ModelEntry(
    id="mediapipe-selfie-landscape", title="MediaPipe Selfie Segmentation (landscape, 144×256)", family="bundled",
    num_classes=2, licence="Apache-2.0", source="npm @mediapipe/selfie_segmentation@0.1.1675465747",
    loader=_selfie("landscape"), weights=lambda: [ASSETS / "models" / "selfie_segmentation_landscape.tflite"],
    description="Person vs background, landscape input; bundled, works offline.",
)]


# -- downloadable zoo (weights on first use into $TSALLIS_CACHE; mmseg / transformers imported only on load) --------
def _mmseg(preset_id: str):
    def load(device="cpu", **kw):
        from attack_engine.models.mmseg import load_preset

        return load_preset(preset_id, device=device, **kw)

    return load


def _hf_segformer(preset_id: str):
    def load(device="cpu", **kw):
        from attack_engine.models.segformer import load_preset

        return load_preset(preset_id, device=device, **kw)

    return load


def builtin_entries() -> list[ModelEntry]:
    """The bundled models, then the downloadable zoo."""
    # Preset tables are plain data: importing these modules does not import mmseg or transformers.
    from attack_engine.models.datasets import DATASETS
    from attack_engine.models.mmseg import PRESETS as MMSEG_PRESETS
    from attack_engine.models.segformer import PRESETS as HF_PRESETS

    out = list(BUNDLED)
    for p in MMSEG_PRESETS.values():
        out.append(ModelEntry(
            id=p.id, title=p.title, family="mmseg", num_classes=len(DATASETS[p.dataset][0]), licence=p.licence,
            source=p.source, loader=_mmseg(p.id), weights=lambda pid=p.id: [MMSEG_PRESETS[pid].weights_path()],
            description=f"{p.notes} Needs mmsegmentation (requirements-mm.txt); weights {p.filename} "
                        "downloaded on first use.", download_mb=p.size_mb,
        ))
    for p in HF_PRESETS.values():
        out.append(ModelEntry(
            id=p.id, title=p.title, family="segformer", num_classes=len(DATASETS[p.dataset][0]), licence=p.licence,
            source=p.source, loader=_hf_segformer(p.id), weights=lambda pid=p.id: [HF_PRESETS[pid].weights_path()],
            description=f"{p.notes} Needs transformers; weights downloaded on first use (or preloaded into the "
                        "Hugging Face cache).", download_mb=p.size_mb, hub=True,
        ))

    return out
