"""``--model`` specs for evaluation: a registry id, or ``torchscript:PATH`` for any scripted model.

A TorchScript file must map RGB in [0, 1] ``[B,3,H,W]`` to logits ``[B,C,H,W]`` (the adapter contract of
:mod:`attack_engine.models.base`); C is read from one forward pass.  This is how a model that is not in
the registry (and every process of a ``torchrun`` job) gets the same network without importing user code.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from attack_engine.models.base import ModelInfo, SegModel, default_palette


class TorchScriptModel(SegModel):
    """A scripted/traced module behind the :class:`SegModel` contract."""

    def __init__(self, module: torch.jit.ScriptModule, info: ModelInfo) -> None:
        super().__init__(info)
        self.module = module

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def load_torchscript(path: str | Path, device: str | torch.device = "cpu", probe_size: tuple[int, int] = (32, 32)) -> SegModel:
    """Load ``path`` with ``torch.jit.load`` and wrap it; raises ``ValueError`` for a file that is not usable."""
    p = Path(path)
    if not p.exists():
        raise ValueError(f"TorchScript model not found: {p}")
    try:
        with warnings.catch_warnings():  # torch >= 2.10 marks TorchScript deprecated; it still loads fine
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(p), map_location=torch.device(device))
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"{p} is not a TorchScript model ({str(e).splitlines()[0]})") from None
    module.eval()
    with torch.no_grad():
        out = module(torch.zeros(1, 3, *probe_size, device=torch.device(device)))
    if out.dim() != 4 or out.shape[0] != 1:
        raise ValueError(f"{p}: expected logits [B,C,H,W], got {tuple(out.shape)}")
    c = int(out.shape[1])
    info = ModelInfo(id=f"torchscript:{p.name}", title=f"TorchScript {p.name}",
                     class_names=tuple(f"class {i}" for i in range(c)), palette=default_palette(c),
                     source=str(p))
    return TorchScriptModel(module, info).freeze()


def load_eval_model(spec: str, device: torch.device, probe_size: tuple[int, int] | None = None) -> SegModel:
    """Registry id or ``torchscript:PATH`` -> a frozen :class:`SegModel` on ``device``."""
    if spec.startswith("torchscript:"):
        return load_torchscript(spec.split(":", 1)[1], device, probe_size or (32, 32))
    from attack_engine.models import load_model

    return load_model(spec, device=device)
