"""The bundled model's replay against a static torch module of the same layers (issue 16's "physical limit" check).

``StaticSelfie`` is written the plain way, independently of the replay's compiled plan: an ``nn.ModuleList`` with one
layer per op holding copies of the graph's (already dequantised, NCHW) weights as parameters, convolution padding
fixed at build time (``F.pad`` only where TFLite's SAME padding is asymmetric), each layer's ``forward`` one or two
functional calls, run in the graph's order over a list of tensors (no hooks).  It computes the same function (checked: outputs agree to float32 rounding); what
differs is only how the replay executes it.  Interleaved samples of forward + backward to the input, 1×3×256²,
on both variants of the selfie model.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from attack_engine.models.selfie import load_selfie
from attack_engine.models.tflite_replay import TFLiteGraph, _same_pad
from bench.common import Stats, cli_main, clock, interleave, paired_ratios, set_threads

TARGET = 1.05


class _Layer(nn.Module):
    def __init__(self, op, graph: TFLiteGraph, slots: dict[int, int]) -> None:
        super().__init__()
        self.kind, self.opts, self.stride = op.name, op.opts, tuple(op.opts.get("stride", (1, 1)))
        self.ins = [slots[t] for t in op.inputs if t in slots]
        self.consts = {pos: graph.params[f"op{op.index}_c{pos}"].detach().clone() for pos in range(len(op.inputs))
                       if f"op{op.index}_c{pos}" in graph.params}
        if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            w, b = graph._p(op, "w").detach(), graph._p(op, "b").detach()
            self.groups = w.shape[0] if op.name == "DEPTHWISE_CONV_2D" else 1
            shape = graph._shapes[op.inputs[0]]
            ph, pw = (_same_pad(shape[1], w.shape[2], op.opts["stride"][0]),
                      _same_pad(shape[2], w.shape[3], op.opts["stride"][1])) if op.opts["padding"] == 0 else ((0, 0), (0, 0))
            sym = ph[0] == ph[1] and pw[0] == pw[1]
            self.pre = None if sym else (pw[0], pw[1], ph[0], ph[1])
            self.padding = (ph[0], pw[0]) if sym else (0, 0)
            self.weight, self.bias = nn.Parameter(w.clone()), nn.Parameter(b.clone())
            self.act = {0: None, 1: F.relu, 3: F.relu6}[op.opts["act"]]
        elif op.name == "CUSTOM:Convolution2DTransposeBias":
            w, b = graph._p(op, "w").detach(), graph._p(op, "b").detach()
            self.tconv = nn.ConvTranspose2d(w.shape[0], w.shape[1], tuple(w.shape[2:]), op.opts["stride"])
            self.tconv.weight.data.copy_(w)
            self.tconv.bias.data.copy_(b)
        elif op.name not in ("HARD_SWISH", "RELU", "LOGISTIC", "ADD", "MUL", "AVERAGE_POOL_2D", "RESIZE_BILINEAR",
                                 "MEAN"):
            raise ValueError(f"the static reference module covers the ops of the bundled selfie models; "
                             f"{op.name} is not one of them")

    def forward(self, env: list) -> torch.Tensor:
        x = env[self.ins[0]] if self.ins else None
        k = self.kind
        if k in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            if self.pre is not None:
                x = F.pad(x, self.pre)
            y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, 1, self.groups)
            return y if self.act is None else self.act(y)
        if k == "HARD_SWISH":
            return F.hardswish(x)
        if k == "RELU":
            return F.relu(x)
        if k == "LOGISTIC":
            return torch.sigmoid(x)
        if k in ("ADD", "MUL"):
            a = self.consts[0] if 0 in self.consts else env[self.ins[0]]
            b = self.consts[1] if 1 in self.consts else env[self.ins[-1]]
            return a + b if k == "ADD" else a * b
        if k == "AVERAGE_POOL_2D":  # the selfie graphs only have global pools
            return x.mean(dim=(2, 3), keepdim=True)
        if k == "MEAN":
            return x.mean(dim=self.opts["axes"], keepdim=self.opts["keep_dims"])
        if k == "RESIZE_BILINEAR":
            return F.interpolate(x, size=self.opts["size"], mode="bilinear", align_corners=False)
        y = self.tconv(x)  # MediaPipe's transposed conv, SAME: output = input * stride (kernel == stride here)
        return y[:, :, : x.shape[2] * self.opts["stride"][0], : x.shape[3] * self.opts["stride"][1]]


class StaticSelfie(nn.Module):
    """The selfie graph (to the pre-sigmoid score) as plain torch layers; see the module docstring."""

    def __init__(self, graph: TFLiteGraph) -> None:
        super().__init__()
        slots = {t: i for i, t in enumerate(graph.input_ids)}
        for op in graph.ops:
            slots.setdefault(op.outputs[0], len(slots))
        self.layers = nn.ModuleList(_Layer(op, graph, slots) for op in graph.ops)
        self.outs = [slots[op.outputs[0]] for op in graph.ops]
        self.n, self.result = len(slots), slots[graph.output_ids[0]]
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env: list = [None] * self.n
        env[0] = x
        for layer, out in zip(self.layers, self.outs):
            env[out] = layer.forward(env)  # no hooks: the leanest way to run a list of layers
        return env[self.result]


def _fwd_bwd(module, x: torch.Tensor, k: int) -> float:
    t = clock()
    for _ in range(k):
        xr = x.detach().requires_grad_(True)
        torch.autograd.grad(module(xr).sum(), xr)
    return (clock() - t) / k


def measure(variant: str, rounds: int, k: int) -> dict:
    graph = load_selfie(variant).graph
    static = StaticSelfie(graph)
    h, w = graph.input_shapes[0][1:3]
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, ref = graph(x), static(x)
    max_diff = float((ours - ref).abs().max() / ref.abs().max())
    samples = interleave({"replay": functools.partial(_fwd_bwd, graph, x, k),
                          "static": functools.partial(_fwd_bwd, static, x, k),
                          "interpreter": functools.partial(_fwd_bwd, graph.interpret, x, k)}, rounds, warmup=1)
    return {"variant": variant, "input": [1, 3, h, w], "rounds": rounds, "k": k, "max_rel_diff": max_diff,
            "seconds": {n: Stats.of(v).to_dict() for n, v in samples.items()},
            "ratio": Stats.of(paired_ratios(samples["replay"], samples["static"])).to_dict(),
            "interpreter_ratio": Stats.of(paired_ratios(samples["interpreter"], samples["static"])).to_dict()}


def run(quick: bool = False) -> dict:
    threads = set_threads()
    rounds, k = (3, 2) if quick else (12, 4)
    return {"threads": threads, "cases": [measure(v, rounds, k) for v in ("general", "landscape")]}


def _st(d: dict) -> Stats:
    return Stats(d["median"], d["q1"], d["q3"], d["min"], d["max"], d["n"])


def markdown(res: dict) -> str:
    lines = ["| selfie variant (input, rounds × k) | static module ms | our replay ms | replay / static "
             "| interpreter / static (before) | max rel. output diff |", "|---|---|---|---|---|---|"]
    for c in res["cases"]:
        s = c["seconds"]
        lines.append(f"| {c['variant']} ({c['input'][2]}×{c['input'][3]}, {c['rounds']}×{c['k']}) "
                     f"| {_st(s['static']).ms()} | {_st(s['replay']).ms()} | {_st(c['ratio']).ratio()} "
                     f"| {_st(c['interpreter_ratio']).ratio()} | {c['max_rel_diff']:.1e} |")
    return "\n".join(lines)


def main() -> None:
    cli_main(__doc__, lambda quick: run(quick), markdown)


if __name__ == "__main__":
    main()
