"""Fetch the Hugging Face checkpoints the hosted demo offers into the hub cache (at image build time).

``python -m attack_engine.models.hub_preload [REPO ...]`` (default: :data:`SPACE_PRELOAD`) downloads each repo's
``config.json`` and weight file into the Hugging Face hub cache, the same place and layout a Space's
``preload_from_hub`` (README front matter) uses, so the zoo finds them later with ``HF_HUB_OFFLINE=1``.
The Dockerfile runs it; nothing at request time does.
"""

from __future__ import annotations

import sys

from attack_engine.models.segformer import PRESETS

# The README front matter's ``preload_from_hub`` lists exactly these (tests/test_hub_cache.py checks it).
SPACE_PRELOAD: tuple[str, ...] = tuple(p.repo for p in PRESETS.values())
FILES = ["config.json", "model.safetensors", "pytorch_model.bin"]


def preload(repos: list[str] | tuple[str, ...] = SPACE_PRELOAD) -> list[str]:
    """Download ``repos`` (config + weights only) into the hub cache; returns the snapshot folders."""
    from huggingface_hub import snapshot_download

    return [snapshot_download(repo, allow_patterns=FILES) for repo in repos]


def main(argv: list[str] | None = None) -> int:
    repos = (argv if argv is not None else sys.argv[1:]) or list(SPACE_PRELOAD)
    for repo, folder in zip(repos, preload(repos)):
        print(f"{repo}: {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
