"""The hosted demo's multi-class models: Hugging Face hub-cache lookup (what ``preload_from_hub`` leaves behind),
offline loading and attacking, and the Space / Dockerfile preload lists.

The hub cache is built here the way ``huggingface_hub`` lays it out (``models--org--name/refs/main`` naming the
revision, ``snapshots/<rev>/`` files as symlinks into ``blobs/``), holding a small checkpoint made from the
real ``nvidia/segformer-b0-finetuned-ade-512-512`` ``config.json`` fields (hidden sizes shrunk so it is quick).
"""

from __future__ import annotations

import hashlib
import re
import socket
from pathlib import Path

import pytest
import torch
import yaml

from attack_engine import AttackConfig, AttackRun
from attack_engine.models import registry
from attack_engine.models.datasets import DATASETS
from attack_engine.models.registry import get_entry, load_model

transformers = pytest.importorskip("transformers")
from attack_engine.models import hub_preload  # noqa: E402
from attack_engine.models import segformer as sf  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REV = "c2f1d5ac0b7e34aa57e5d5c2a8b1b2dd1e4f9a61"  # any 40-hex revision; refs/main points at it

# config.json of nvidia/segformer-b0-finetuned-ade-512-512 (every field of the published file except the
# label maps, which are the 150 ADE20K names), with the encoder/decoder widths shrunk for a fast test.
REAL_B0_ADE_FIELDS = {
    "architectures": ["SegformerForSemanticSegmentation"], "attention_probs_dropout_prob": 0.0,
    "classifier_dropout_prob": 0.1, "decoder_hidden_size": 256, "depths": [2, 2, 2, 2],
    "downsampling_rates": [1, 4, 8, 16], "drop_path_rate": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.0,
    "hidden_sizes": [32, 64, 160, 256], "image_size": 224, "initializer_range": 0.02, "layer_norm_eps": 1e-06,
    "mlp_ratios": [4, 4, 4, 4], "model_type": "segformer", "num_attention_heads": [1, 2, 5, 8], "num_channels": 3,
    "num_encoder_blocks": 4, "patch_sizes": [7, 3, 3, 3], "reshape_last_stage": True,
    "semantic_loss_ignore_index": 255, "sr_ratios": [8, 4, 2, 1], "strides": [4, 2, 2, 2],
}
TINY = {"hidden_sizes": [8, 16, 24, 32], "decoder_hidden_size": 32, "depths": [1, 1, 1, 1]}


def _tiny_config(names: tuple[str, ...]):
    fields = {k: v for k, v in REAL_B0_ADE_FIELDS.items() if k not in ("architectures", "model_type")}
    fields.update(TINY)
    return transformers.SegformerConfig(
        **fields, architectures=REAL_B0_ADE_FIELDS["architectures"], num_labels=len(names),
        id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})


def build_hub_cache(hub: Path, repo: str, names: tuple[str, ...], seed: int = 0) -> tuple[Path, torch.nn.Module]:
    """A hub-cache entry for ``repo`` as ``huggingface_hub`` writes it; returns (snapshot folder, the net)."""
    torch.manual_seed(seed)
    net = transformers.SegformerForSemanticSegmentation(_tiny_config(names)).eval()
    staging = hub.parent / "staging" / repo.replace("/", "--")
    net.save_pretrained(str(staging))  # config.json + model.safetensors, as save_pretrained writes them
    root = hub / f"models--{repo.replace('/', '--')}"
    (root / "blobs").mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(REV)
    snap = root / "snapshots" / REV
    snap.mkdir(parents=True)
    for f in staging.iterdir():
        blob = root / "blobs" / hashlib.sha256(f.read_bytes()).hexdigest()
        f.rename(blob)
        (snap / f.name).symlink_to(Path("..") / ".." / "blobs" / blob.name)
    return snap, net


@pytest.fixture
def offline_hub(tmp_path, monkeypatch) -> Path:
    """An empty own cache, a hub cache under ``$HF_HOME/hub``, all downloads off, sockets refused."""
    monkeypatch.setenv("TSALLIS_CACHE", str(tmp_path / "own-cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TSALLIS_OFFLINE", "1")
    monkeypatch.setattr(registry, "_CACHE", {})

    def refuse(*a, **k):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return tmp_path / "hf" / "hub"


def test_hub_snapshot_found_offline_and_attacked(offline_hub):
    p = sf.PRESETS["hf-segformer-b0-ade"]
    names, palette = DATASETS["ade20k"]
    assert not get_entry(p.id).available()
    snap, net = build_hub_cache(offline_hub, p.repo, names)
    assert sf.hub_snapshot(p.repo) == snap
    assert get_entry(p.id).available() and p.weights_path() == snap / "model.safetensors"
    model = load_model(p.id)
    assert model.info.class_names == names and model.info.palette == palette and model.num_classes == 150
    assert model.net.config.hidden_sizes == TINY["hidden_sizes"]  # the snapshot's config.json, not the B0 table
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ref = net(pixel_values=(x - torch.tensor(sf.IMAGENET_MEAN).view(1, 3, 1, 1))
                  / torch.tensor(sf.IMAGENET_STD).view(1, 3, 1, 1)).logits
    torch.testing.assert_close(model(x), torch.nn.functional.interpolate(ref, size=(64, 64), mode="bilinear"))

    cfg = AttackConfig(attack="tsallis", optimizer="apgd", eps=8 / 255, steps=6, seed=0)
    recs = list(AttackRun(model, x, None, cfg))
    assert len(recs) >= 6
    last = recs[-1]
    assert torch.isfinite(last.loss).all() and (last.x_adv - x).abs().max() <= 8 / 255 + 1e-6
    assert float(last.best_acc[0]) < 1.0, "the attack flips some pixels of the clean prediction"


def test_hub_cache_env_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    assert sf.hf_hub_cache() == tmp_path / "home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "explicit"))
    assert sf.hf_hub_cache() == tmp_path / "explicit"
    assert sf.hub_snapshot("nvidia/none") is None


def test_cityscapes_snapshot_and_label_count_mismatch(offline_hub):
    p = sf.PRESETS["hf-segformer-b0-cityscapes"]
    build_hub_cache(offline_hub, p.repo, DATASETS["cityscapes"][0])
    model = load_model(p.id)
    assert model.info.class_names[:2] == ("road", "sidewalk") and model.num_classes == 19
    wrong = sf.PRESETS["hf-segformer-b1-cityscapes"]
    build_hub_cache(offline_hub, wrong.repo, DATASETS["ade20k"][0])  # an ADE checkpoint under a Cityscapes name
    with pytest.raises(registry.ModelUnavailable, match="150 classes, cityscapes has 19"):
        load_model(wrong.id)


def _front_matter() -> dict:
    text = (ROOT / "README.md").read_text()
    return yaml.safe_load(text.split("---\n", 2)[1])


def test_space_and_docker_preload_the_offered_checkpoints():
    fm = _front_matter()
    listed = [str(e).split()[0] for e in fm["preload_from_hub"]]
    assert listed == list(hub_preload.SPACE_PRELOAD) == [p.repo for p in sf.PRESETS.values()]
    assert "nvidia/segformer-b0-finetuned-ade-512-512" in listed
    assert any("cityscapes" in r for r in listed)
    assert set(fm.get("models", [])) >= set(listed)
    docker = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    runs = [ln for ln in docker.splitlines() if ln.startswith("RUN ")]
    pre = [r for r in runs if "attack_engine.models.hub_preload" in r]
    assert len(pre) == 1 and "HF_HUB_OFFLINE=0" in pre[0]
    assert "python -m attack_engine.models.hub_preload" in pre[0].split("&&")[-1]  # default list = SPACE_PRELOAD
    offline_env = next(i for i, ln in enumerate(docker.splitlines()) if ln.startswith("ENV ") and "HF_HUB_OFFLINE=1" in ln)
    assert docker.splitlines().index(pre[0]) < offline_env, "preloaded before the image turns the hub offline"


def test_preload_fetches_config_and_weights_only(monkeypatch):
    calls = []

    def fake(repo, allow_patterns):
        calls.append((repo, tuple(allow_patterns)))
        return f"/hub/{repo}"

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    assert hub_preload.main([]) == 0
    assert [c[0] for c in calls] == list(hub_preload.SPACE_PRELOAD)
    assert all(set(c[1]) == {"config.json", "model.safetensors", "pytorch_model.bin"} for c in calls)


def test_download_sizes_match_parameter_counts():
    for p in sf.PRESETS.values():
        n = len(DATASETS[p.dataset][0])
        net = transformers.SegformerForSemanticSegmentation(sf.segformer_config(p.variant, num_labels=n))
        mb = sum(t.numel() for t in net.state_dict().values()) * 4 / 2**20
        assert abs(p.size_mb - mb) / mb < 0.02, (p.id, p.size_mb, mb)
