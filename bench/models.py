"""Models the benchmarks run on, all behind the :class:`attack_engine.models.SegModel` contract.

* ``selfie``: the bundled MediaPipe selfie model (2 classes, runs at 256² inside the adapter).
* ``segformer_b0``: SegFormer-B0 (MiT-B0 encoder, all-MLP decoder), random weights.  Built with
  ``transformers.SegformerForSemanticSegmentation`` when transformers is importable, else with the plain-torch
  re-implementation below (same layer sizes; used on machines without transformers, e.g. a bare GPU box).
* ``pspnet_r50``: PSPNet with a dilated ResNet-50 (output stride 8), random weights.  Built from the mmseg 1.2.2
  config ``pspnet_r50-d8_4xb4-40k_voc12aug-512x512`` when mmseg (and this repo's mmseg adapter) is usable, else
  with the plain-torch re-implementation below (ResNet-50-V1c-D8 + pyramid pooling module, 21 classes).

Random weights are fine for timing: the cost of a forward/backward does not depend on the weight values.  Every
builder returns ``(model, impl)`` where ``impl`` says which implementation was used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attack_engine.models.base import ModelInfo, SegModel, default_palette

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _info(model_id: str, title: str, num_classes: int, size_multiple: int = 32) -> ModelInfo:
    return ModelInfo(id=model_id, title=title, class_names=tuple(f"class {i}" for i in range(num_classes)),
                     palette=default_palette(num_classes), size_multiple=size_multiple, licence="random weights",
                     source="bench/models.py")


class _Wrapped(SegModel):
    """[0, 1] RGB -> ImageNet-normalised input -> ``net`` -> logits resized to the input size."""

    def __init__(self, net: nn.Module, info: ModelInfo, hf: bool = False) -> None:
        super().__init__(info)
        self.net = net
        self.hf = hf
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        out = self.net(pixel_values=z).logits if self.hf else self.net(z)
        return F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)


def selfie(device: str | torch.device = "cpu") -> tuple[SegModel, str]:
    from attack_engine.models import load_model

    return load_model("mediapipe-selfie", device=device), "bundled .tflite replayed in torch"


# -- SegFormer-B0 ---------------------------------------------------------------------------------------------------
B0 = {"hidden": (32, 64, 160, 256), "depths": (2, 2, 2, 2), "heads": (1, 2, 5, 8), "sr": (8, 4, 2, 1),
      "patch": (7, 3, 3, 3), "stride": (4, 2, 2, 2), "decoder": 256}


class _MixFFN(nn.Module):
    def __init__(self, c: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(c, hidden)
        self.dw = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Linear(hidden, c)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = self.fc1(x)
        b, _, c = x.shape
        x = self.dw(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
        return self.fc2(F.gelu(x))


class _EfficientAttention(nn.Module):
    """Multi-head self-attention with spatial reduction of keys/values (ratio ``sr``)."""

    def __init__(self, c: int, heads: int, sr: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(c, c)
        self.kv = nn.Linear(c, 2 * c)
        self.proj = nn.Linear(c, c)
        self.sr = nn.Conv2d(c, c, sr, stride=sr) if sr > 1 else None
        self.norm = nn.LayerNorm(c) if sr > 1 else None

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = x.shape
        q = self.q(x).view(b, n, self.heads, c // self.heads).transpose(1, 2)
        if self.sr is not None:
            xr = self.sr(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
            xr = self.norm(xr)
        else:
            xr = x
        k, v = self.kv(xr).view(b, -1, 2, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class _Block(nn.Module):
    def __init__(self, c: int, heads: int, sr: int) -> None:
        super().__init__()
        self.n1 = nn.LayerNorm(c)
        self.attn = _EfficientAttention(c, heads, sr)
        self.n2 = nn.LayerNorm(c)
        self.ffn = _MixFFN(c, 4 * c)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + self.attn(self.n1(x), h, w)
        return x + self.ffn(self.n2(x), h, w)


class SegFormerB0Torch(nn.Module):
    """MiT-B0 encoder + SegFormer all-MLP decoder in plain torch (logits at 1/4 resolution)."""

    def __init__(self, num_classes: int = 150) -> None:
        super().__init__()
        cfg = B0
        self.embeds, self.stages, self.norms = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        cin = 3
        for c, d, hd, sr, k, s in zip(cfg["hidden"], cfg["depths"], cfg["heads"], cfg["sr"], cfg["patch"], cfg["stride"]):
            self.embeds.append(nn.ModuleDict({"conv": nn.Conv2d(cin, c, k, stride=s, padding=k // 2),
                                              "norm": nn.LayerNorm(c)}))
            self.stages.append(nn.ModuleList([_Block(c, hd, sr) for _ in range(d)]))
            self.norms.append(nn.LayerNorm(c))
            cin = c
        dec = cfg["decoder"]
        self.linears = nn.ModuleList([nn.Linear(c, dec) for c in cfg["hidden"]])
        self.fuse = nn.Sequential(nn.Conv2d(4 * dec, dec, 1, bias=False), nn.BatchNorm2d(dec), nn.ReLU())
        self.cls = nn.Conv2d(dec, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = []
        for emb, blocks, norm in zip(self.embeds, self.stages, self.norms):
            x = emb["conv"](x)
            b, c, h, w = x.shape
            t = emb["norm"](x.flatten(2).transpose(1, 2))
            for blk in blocks:
                t = blk(t, h, w)
            x = norm(t).transpose(1, 2).reshape(b, c, h, w)
            feats.append(x)
        size = feats[0].shape[-2:]
        ups = []
        for f, lin in zip(reversed(feats), reversed(self.linears)):
            u = lin(f.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(f.shape[0], -1, *f.shape[-2:])
            ups.append(F.interpolate(u, size=size, mode="bilinear", align_corners=False))
        return self.cls(self.fuse(torch.cat(ups, 1)))


def segformer_b0(num_classes: int = 150, device: str | torch.device = "cpu", impl: str = "auto",
                 seed: int = 0) -> tuple[SegModel, str]:
    """SegFormer-B0 with random weights; ``impl`` = "auto" | "transformers" | "torch"."""
    torch.manual_seed(seed)
    info = _info(f"bench-segformer-b0-{num_classes}", f"SegFormer-B0, {num_classes} classes (random weights)",
                 num_classes)
    if impl in ("auto", "transformers"):
        try:
            import transformers

            cfg = transformers.SegformerConfig(num_labels=num_classes, hidden_sizes=list(B0["hidden"]),
                                               depths=list(B0["depths"]), decoder_hidden_size=B0["decoder"])
            net = transformers.SegformerForSemanticSegmentation(cfg).eval()
            return _Wrapped(net, info, hf=True).to(device).freeze(), f"transformers {transformers.__version__}"
        except Exception:  # not installed or not usable here: fall back to plain torch
            if impl == "transformers":
                raise
    return _Wrapped(SegFormerB0Torch(num_classes).eval(), info).to(device).freeze(), "plain torch (bench/models.py)"


# -- PSPNet-R50-D8 --------------------------------------------------------------------------------------------------
class _Bottleneck(nn.Module):
    def __init__(self, cin: int, mid: int, stride: int, dilation: int, down: bool) -> None:
        super().__init__()
        cout = 4 * mid
        self.c1 = nn.Conv2d(cin, mid, 1, bias=False)
        self.b1 = nn.BatchNorm2d(mid)
        self.c2 = nn.Conv2d(mid, mid, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.b2 = nn.BatchNorm2d(mid)
        self.c3 = nn.Conv2d(mid, cout, 1, bias=False)
        self.b3 = nn.BatchNorm2d(cout)
        self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)) if down else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.b1(self.c1(x)))
        out = F.relu(self.b2(self.c2(out)))
        out = self.b3(self.c3(out))
        return F.relu(out + (self.down(x) if self.down is not None else x))


def _cbr(cin: int, cout: int, k: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU())


class PSPNetR50Torch(nn.Module):
    """PSPNet: ResNet-50-V1c (deep stem), dilations (1, 1, 2, 4), output stride 8, PPM bins (1, 2, 3, 6)."""

    def __init__(self, num_classes: int = 21) -> None:
        super().__init__()
        self.stem = nn.Sequential(_cbr(3, 32, 3, 2), _cbr(32, 32, 3), _cbr(32, 64, 3), nn.MaxPool2d(3, 2, 1))
        layers, cin = [], 64
        for mid, n, stride, dil in ((64, 3, 1, 1), (128, 4, 2, 1), (256, 6, 1, 2), (512, 3, 1, 4)):
            blocks = [_Bottleneck(cin, mid, stride, dil, down=True)]
            blocks += [_Bottleneck(4 * mid, mid, 1, dil, down=False) for _ in range(n - 1)]
            layers.append(nn.Sequential(*blocks))
            cin = 4 * mid
        self.layers = nn.Sequential(*layers)
        self.bins = (1, 2, 3, 6)
        self.ppm = nn.ModuleList([_cbr(2048, 512, 1) for _ in self.bins])
        self.bottleneck = _cbr(2048 + 4 * 512, 512, 3)
        self.cls = nn.Conv2d(512, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.layers(self.stem(x))
        outs = [f]
        for b, m in zip(self.bins, self.ppm):
            outs.append(F.interpolate(m(F.adaptive_avg_pool2d(f, b)), size=f.shape[-2:], mode="bilinear",
                                      align_corners=False))
        return self.cls(self.bottleneck(torch.cat(outs, 1)))


PSP_CONFIG = "pspnet_r50-d8_4xb4-40k_voc12aug-512x512"


def pspnet_r50(num_classes: int = 21, device: str | torch.device = "cpu", impl: str = "auto",
               seed: int = 0) -> tuple[SegModel, str]:
    """PSPNet-R50-D8 with random weights; ``impl`` = "auto" | "mmseg" | "torch"."""
    torch.manual_seed(seed)
    if impl in ("auto", "mmseg"):
        try:
            from attack_engine.models.mmseg import build_mmseg

            model = build_mmseg(PSP_CONFIG, None, device=device, model_id="bench-pspnet-r50",
                                title="PSPNet-R50-D8 (random weights)")
            import mmseg

            return model, f"mmseg {mmseg.__version__} config {PSP_CONFIG}"
        except Exception:  # mmseg missing or unusable here: fall back to plain torch
            if impl == "mmseg":
                raise
    info = _info("bench-pspnet-r50-torch", f"PSPNet-R50-D8, {num_classes} classes (random weights)", num_classes, 8)
    return _Wrapped(PSPNetR50Torch(num_classes).eval(), info).to(device).freeze(), "plain torch (bench/models.py)"


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())



