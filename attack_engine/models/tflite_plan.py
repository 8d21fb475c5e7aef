"""A replayed TFLite graph compiled into a static execution plan: the hot path of :class:`TFLiteGraph`.

:meth:`TFLiteGraph._run` interprets one op at a time (op-name dispatch, parameter lookups by name, padding worked
out from the input shape, a dict of live tensors).  :func:`compile_plan` does all of that once: every op becomes a
closure over its weights, strides and precomputed padding that reads and writes numbered slots of a list, so a
forward pass is a flat loop of PyTorch calls.  Rewrites, each exact (bitwise the interpreter's forward in float32
and float64, checked by ``tests/test_selfie.py``):

* SAME padding that is symmetric goes into the convolution's own ``padding`` (no padded copy of the input and no
  slicing in backward); asymmetric SAME padding (stride 2) keeps the explicit ``F.pad``;
* a RELU whose input is a convolution output read by nothing else runs in place on it (``relu_``: no new tensor);
* HARD_SWISH is ``F.hardswish`` (one kernel, the same arithmetic ``x * clamp(x + 3, 0, 6) / 6`` in float32 and
  float64; half precisions keep the elementwise form, which rounds between the steps like the interpreter).

The plan holds references to the graph's parameters; :class:`TFLiteGraph` rebuilds it after ``.to()`` / dtype
casts (``_apply``), so it never sees stale tensors.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import tflite
import torch
import torch.nn.functional as F

# The graph (a TFLiteGraph) and its ops are typed Any: tflite_replay imports this module, never the reverse.
TFLiteGraph = Op = Any

Step = Callable[[list], torch.Tensor]
_EXACT_HARDSWISH = (torch.float32, torch.float64)
_SAME, _VALID = tflite.Padding.SAME, tflite.Padding.VALID
_A = tflite.ActivationFunctionType
_ACTIVATIONS: dict[int, Callable[[torch.Tensor], torch.Tensor]] = {
    _A.RELU: F.relu,
    _A.RELU6: lambda y: y.clamp(0.0, 6.0),
    _A.RELU_N1_TO_1: lambda y: y.clamp(-1.0, 1.0),
    _A.TANH: torch.tanh,
}


def same_pad(size: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """TFLite SAME padding (before, after) for one spatial dim; the extra pixel goes at the end."""
    out = math.ceil(size / s)
    eff = (k - 1) * d + 1
    total = max((out - 1) * s + eff - size, 0)
    return total // 2, total - total // 2


def compile_plan(g: TFLiteGraph, spatial: dict[int, tuple[int, int]]) -> tuple[list[tuple[int, Step]], int, list[int]]:
    """(slot written, step) per op in graph order, the number of slots and the output slots.

    ``spatial``: (H, W) of every 4-D tensor, from the file (the graph's spatial sizes are fixed).
    """
    slot: dict[int, int] = {t: i for i, t in enumerate(g.input_ids)}
    for op in g.ops:
        slot.setdefault(op.outputs[0], len(slot))
    readers: dict[int, int] = {}
    for op in g.ops:
        for t in op.inputs:
            readers[t] = readers.get(t, 0) + 1
    for t in g.output_ids:
        readers[t] = readers.get(t, 0) + 1
    fused_into_prev = _fusable_relus(g, readers)
    steps: list[tuple[int, Step]] = []
    for op in g.ops:
        if op.index in fused_into_prev:
            src = slot[op.inputs[0]]
            steps.append((slot[op.outputs[0]], _relu_inplace(src)))
            continue
        steps.append((slot[op.outputs[0]], _step(g, op, slot, spatial)))
    return steps, len(slot), [slot[t] for t in g.output_ids]


def _fusable_relus(g: TFLiteGraph, readers: dict[int, int]) -> set[int]:
    """RELU ops that may overwrite their input: a conv output (its backward needs no output) read only by them."""
    out: set[int] = set()
    for op in g.ops:
        if op.name != "RELU":
            continue
        src = g.producer.get(op.inputs[0])
        if src is not None and src.name in ("CONV_2D", "DEPTHWISE_CONV_2D") and readers.get(op.inputs[0], 0) == 1:
            out.add(op.index)
    return out


def _relu_inplace(src: int) -> Step:
    def run(env: list) -> torch.Tensor:
        x = env[src]
        env[src] = None
        return x.relu_()

    return run


def _act(act: int, op: Op) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The fused activation as a function (the interpreter's ``_activation``), None for NONE."""
    if act == _A.NONE:
        return None
    if act not in _ACTIVATIONS:
        raise ValueError(f"op #{op.index} {op.name}: fused activation {act} is not supported")
    return _ACTIVATIONS[act]


def _step(g: TFLiteGraph, op: Op, slot: dict[int, int], spatial: dict[int, tuple[int, int]]) -> Step:
    n, o = op.name, op.opts
    src = slot.get(op.inputs[0], -1)
    if n in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        return _conv_step(g, op, src, spatial[op.inputs[0]])
    if n == "AVERAGE_POOL_2D" and _is_global_pool(op, spatial[op.inputs[0]]):
        act = _act(o["act"], op)
        return lambda env: _maybe(act, env[src].mean(dim=(2, 3), keepdim=True))
    if n in ("CUSTOM:Convolution2DTransposeBias", "RESIZE_BILINEAR", "AVERAGE_POOL_2D"):
        return _interpreted(g, op, slot)
    if n in ("ADD", "SUB", "MUL"):
        return _binary_step(g, op, slot)
    if n == "RELU":
        return lambda env: F.relu(env[src])
    if n == "RELU6":
        return lambda env: env[src].clamp(0.0, 6.0)
    if n == "HARD_SWISH":
        return lambda env: _hardswish(env[src])
    if n == "LOGISTIC":
        return lambda env: torch.sigmoid(env[src])
    if n == "TANH":
        return lambda env: torch.tanh(env[src])
    if n == "MEAN":
        axes, keep = o["axes"], o["keep_dims"]
        return lambda env: env[src].mean(dim=axes, keepdim=keep)
    raise ValueError(f"TFLite op {n!r} has no compiled form")  # unsupported ops fail at load, before this


def _is_global_pool(op: Op, hw: tuple[int, int]) -> bool:
    """The interpreter's global-pool case (a window covering the whole input: an exact ``mean``)."""
    k, s = tuple(op.opts["filter"]), tuple(op.opts["stride"])
    return k == tuple(hw) and (op.opts["padding"] == _VALID or s == k)


def _maybe(act: Callable[[torch.Tensor], torch.Tensor] | None, y: torch.Tensor) -> torch.Tensor:
    return y if act is None else act(y)


def _hardswish(x: torch.Tensor) -> torch.Tensor:
    if x.dtype in _EXACT_HARDSWISH:
        return F.hardswish(x)
    return x * (x + 3.0).clamp(0.0, 6.0) / 6.0


def _conv_step(g: TFLiteGraph, op: Op, src: int, hw: tuple[int, int]) -> Step:
    o = op.opts
    w, b = g._p(op, "w"), g._p(op, "b")
    k, stride, dil = (w.shape[2], w.shape[3]), tuple(o["stride"]), tuple(o["dilation"])
    groups = w.shape[0] if op.name == "DEPTHWISE_CONV_2D" else 1
    pad: tuple[int, int] = (0, 0)
    pre: tuple[int, int, int, int] | None = None
    if o["padding"] == _SAME:
        ph, pw = same_pad(hw[0], k[0], stride[0], dil[0]), same_pad(hw[1], k[1], stride[1], dil[1])
        if ph[0] == ph[1] and pw[0] == pw[1]:
            pad = (ph[0], pw[0])
        else:
            pre = (pw[0], pw[1], ph[0], ph[1])
    act = _act(o["act"], op)

    def run(env: list) -> torch.Tensor:
        x = env[src]
        if pre is not None:
            x = F.pad(x, pre)
        ww, bb = (w, b) if x.dtype == w.dtype else (w.to(x.dtype), b.to(x.dtype))
        return _maybe(act, F.conv2d(x, ww, bb, stride, pad, dil, groups))

    return run


def _binary_step(g: TFLiteGraph, op: Op, slot: dict[int, int]) -> Step:
    def operand(pos: int) -> Callable[[list], torch.Tensor]:
        key = f"op{op.index}_c{pos}"
        if key in g.params:
            c = g.params[key]
            return lambda env: c
        s = slot[op.inputs[pos]]
        return lambda env: env[s]

    a, c = operand(0), operand(1)
    fn = {"ADD": torch.add, "SUB": torch.sub, "MUL": torch.mul}[op.name]
    act = _act(op.opts["act"], op)

    def run(env: list) -> torch.Tensor:
        return _maybe(act, fn(a(env), c(env)))

    return run


def _interpreted(g: TFLiteGraph, op: Op, slot: dict[int, int]) -> Step:
    """Rare ops (one or a few per graph): the interpreter's own code on a view of the slots."""
    ins = [(t, slot[t]) for t in op.inputs if t in slot]

    def run(env: list) -> torch.Tensor:
        return g._run(op, {t: env[s] for t, s in ins})

    return run


def run_plan(steps: list[tuple[int, Step]], n_slots: int, inputs: list[torch.Tensor]) -> list:
    env: list = [None] * n_slots
    env[: len(inputs)] = inputs
    for out, step in steps:
        env[out] = step(env)
    return env
