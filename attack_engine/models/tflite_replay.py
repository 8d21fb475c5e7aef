"""Replay a (small, float) TFLite graph in PyTorch, op by op, so it is differentiable w.r.t. its input.

The flatbuffer is parsed with the pure-Python ``tflite`` package; no TensorFlow or MediaPipe is needed.
Constant tensors (weights; fp16 or int8 ones are dequantised once at load time) become frozen
``nn.Parameter`` s, so ``.to(device)`` and dtype casts work like for any module.

Layout: TFLite stores activations as NHWC; here every 4-D activation is NCHW (the caller passes NCHW
input and gets NCHW outputs).  Constants feeding layout-sensitive ops are permuted at load time.

Supported builtin ops: DEQUANTIZE, CONV_2D, DEPTHWISE_CONV_2D, RELU, RELU6, HARD_SWISH, LOGISTIC, TANH,
ADD, SUB, MUL, AVERAGE_POOL_2D, MEAN, RESIZE_BILINEAR; custom op: ``Convolution2DTransposeBias``
(MediaPipe).  Anything else raises :class:`UnsupportedOp` naming the op when the graph is loaded.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tflite
import torch
import torch.nn.functional as F
from torch import nn

from attack_engine.models.tflite_plan import compile_plan, run_plan, same_pad

_OP_NAMES = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
_NP_TYPES = {
    tflite.TensorType.FLOAT32: np.float32,
    tflite.TensorType.FLOAT16: np.float16,
    tflite.TensorType.INT32: np.int32,
    tflite.TensorType.INT64: np.int64,
    tflite.TensorType.UINT8: np.uint8,
    tflite.TensorType.INT8: np.int8,
    tflite.TensorType.INT16: np.int16,
}
_SAME, _VALID = tflite.Padding.SAME, tflite.Padding.VALID
# MediaPipe's custom op stores TfLitePadding (C enum): 0 unknown, 1 same, 2 valid.
_C_PADDING = {1: _SAME, 2: _VALID}
NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}


class UnsupportedOp(NotImplementedError):
    """The graph uses an op (or an op variant) the replayer does not implement."""


@dataclass
class Op:
    """One operator of the graph, with its parsed options."""

    index: int
    name: str  # builtin name, or "CUSTOM:<code>"
    inputs: list[int]
    outputs: list[int]
    opts: dict = field(default_factory=dict)


_same_pad = same_pad


def _activation(x: torch.Tensor, act: int, op: Op) -> torch.Tensor:
    if act == tflite.ActivationFunctionType.NONE:
        return x
    if act == tflite.ActivationFunctionType.RELU:
        return F.relu(x)
    if act == tflite.ActivationFunctionType.RELU6:
        return x.clamp(0.0, 6.0)
    if act == tflite.ActivationFunctionType.RELU_N1_TO_1:
        return x.clamp(-1.0, 1.0)
    if act == tflite.ActivationFunctionType.TANH:
        return torch.tanh(x)
    raise UnsupportedOp(f"op #{op.index} {op.name}: fused activation {act} is not supported")


def _options(table, cls):
    o = cls()
    o.Init(table.Bytes, table.Pos)
    return o


class TFLiteGraph(nn.Module):
    """A TFLite subgraph as an ``nn.Module``.

    Args:
        source: path to a ``.tflite`` file, or its bytes.
        outputs: tensor names or indices to return instead of the graph outputs (e.g. a pre-activation).
        subgraph: which subgraph to replay (0 = main).

    ``forward(*inputs)`` takes NCHW tensors for 4-D graph inputs (other ranks unchanged) and returns one
    tensor, or a tuple when there are several outputs.  Spatial sizes must match the file's (ops such as
    RESIZE_BILINEAR and global pools bake them in); the batch size is free.
    """

    def __init__(self, source: str | Path | bytes, outputs: list[str | int] | None = None, subgraph: int = 0) -> None:
        super().__init__()
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        model = tflite.Model.GetRootAsModel(data, 0)
        sg = model.Subgraphs(subgraph)
        self._names = [sg.Tensors(i).Name().decode() for i in range(sg.TensorsLength())]
        self._shapes = [tuple(int(v) for v in sg.Tensors(i).ShapeAsNumpy()) if sg.Tensors(i).ShapeLength() else ()
                        for i in range(sg.TensorsLength())]
        self.input_ids = [int(i) for i in sg.InputsAsNumpy()]
        self.input_shapes = [self._shapes[i] for i in self.input_ids]
        self.graph_output_ids = [int(i) for i in sg.OutputsAsNumpy()]

        # Raw constants (numpy, NHWC) from the buffers.
        consts: dict[int, np.ndarray] = {}
        for i in range(sg.TensorsLength()):
            arr = self._read_const(data, model, sg.Tensors(i))
            if arr is not None:
                consts[i] = arr

        ops: list[Op] = [self._parse_op(model, sg, j) for j in range(sg.OperatorsLength())]
        self.producer = {o: op for op in ops for o in op.outputs}
        # Fold DEQUANTIZE of constants into constants.
        for op in ops:
            if op.name == "DEQUANTIZE" and op.inputs[0] in consts:
                consts[op.outputs[0]] = self._dequantize(consts[op.inputs[0]], sg.Tensors(op.inputs[0]), op)
        self.output_ids = [self._tensor_id(t) for t in outputs] if outputs is not None else list(self.graph_output_ids)

        # Keep only the ops the requested outputs depend on.
        needed, stack = set(), list(self.output_ids)
        while stack:
            t = stack.pop()
            if t in needed or t in consts:
                continue
            needed.add(t)
            if t in self.producer:
                stack.extend(i for i in self.producer[t].inputs if i >= 0)
            elif t not in self.input_ids:
                raise ValueError(f"tensor {self._names[t]!r} has no producer and is not a graph input")
        self.ops = [op for op in ops if any(o in needed for o in op.outputs)]

        self.params = nn.ParameterDict()
        for op in self.ops:
            self._prepare(op, consts)
        self.requires_grad_(False)
        self.train(False)
        self._plan: tuple[list, int, list[int]] | None = None
        self._compiled()  # unsupported fused activations fail here, at load time

    def _compiled(self) -> tuple[list, int, list[int]]:
        """The static plan (:mod:`~attack_engine.models.tflite_plan`), built once and after every ``_apply``."""
        if self._plan is None:
            spatial = {t: (s[1], s[2]) for t, s in enumerate(self._shapes) if len(s) == 4}
            try:
                self._plan = compile_plan(self, spatial)
            except ValueError as e:
                raise UnsupportedOp(str(e)) from None
        return self._plan

    def _apply(self, fn, *args, **kwargs):
        self._plan = None  # .to(), .double(), ...: the plan must hold the converted parameters
        return super()._apply(fn, *args, **kwargs)

    # -- parsing -------------------------------------------------------------------------------------
    def _tensor_id(self, t: str | int) -> int:
        if isinstance(t, int):
            return t
        if t not in self._names:
            raise KeyError(f"no tensor named {t!r} in the graph")
        return self._names.index(t)

    @staticmethod
    def _read_const(data: bytes, model, t) -> np.ndarray | None:
        b = t.Buffer()
        if b == 0 or b >= model.BuffersLength():
            return None
        buf = model.Buffers(b)
        if buf.Offset() > 1:  # large model: data stored after the flatbuffer
            raw = data[buf.Offset(): buf.Offset() + buf.Size()]
        elif buf.DataLength():
            raw = buf.DataAsNumpy().tobytes()
        else:
            return None
        if t.Type() not in _NP_TYPES:
            raise UnsupportedOp(f"constant tensor {t.Name().decode()!r} has unsupported type {t.Type()}")
        shape = tuple(int(v) for v in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        return np.frombuffer(raw, dtype=_NP_TYPES[t.Type()]).reshape(shape).copy()

    @staticmethod
    def _dequantize(arr: np.ndarray, t, op: Op) -> np.ndarray:
        if arr.dtype == np.float16:
            return arr.astype(np.float32)
        q = t.Quantization()
        if q is None or q.ScaleLength() == 0:
            raise UnsupportedOp(f"op #{op.index} DEQUANTIZE: {arr.dtype} tensor without quantisation parameters")
        scale = q.ScaleAsNumpy().astype(np.float32)
        zp = q.ZeroPointAsNumpy().astype(np.float32) if q.ZeroPointLength() else np.zeros_like(scale)
        if scale.size > 1:  # per-axis
            shape = [1] * arr.ndim
            shape[q.QuantizedDimension()] = -1
            scale, zp = scale.reshape(shape), zp.reshape(shape)
        return ((arr.astype(np.float32) - zp) * scale).astype(np.float32)

    @staticmethod
    def _parse_op(model, sg, j: int) -> Op:
        raw = sg.Operators(j)
        oc = model.OperatorCodes(raw.OpcodeIndex())
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        name = _OP_NAMES.get(code, f"BUILTIN_{code}")
        opts: dict = {}
        table = raw.BuiltinOptions()
        if name == "CUSTOM":
            name = "CUSTOM:" + oc.CustomCode().decode()
            opts["custom"] = raw.CustomOptionsAsNumpy().tobytes() if raw.CustomOptionsLength() else b""
        elif name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            o = _options(table, tflite.Conv2DOptions if name == "CONV_2D" else tflite.DepthwiseConv2DOptions)
            opts = {"padding": o.Padding(), "stride": (o.StrideH(), o.StrideW()),
                    "dilation": (o.DilationHFactor(), o.DilationWFactor()), "act": o.FusedActivationFunction()}
            if name == "DEPTHWISE_CONV_2D":
                opts["multiplier"] = o.DepthMultiplier()
        elif name == "AVERAGE_POOL_2D":
            o = _options(table, tflite.Pool2DOptions)
            opts = {"padding": o.Padding(), "stride": (o.StrideH(), o.StrideW()),
                    "filter": (o.FilterHeight(), o.FilterWidth()), "act": o.FusedActivationFunction()}
        elif name in ("ADD", "SUB", "MUL"):
            cls = {"ADD": tflite.AddOptions, "SUB": tflite.SubOptions, "MUL": tflite.MulOptions}[name]
            opts = {"act": _options(table, cls).FusedActivationFunction() if table is not None else 0}
        elif name == "RESIZE_BILINEAR":
            o = _options(table, tflite.ResizeBilinearOptions)
            opts = {"align_corners": bool(o.AlignCorners()), "half_pixel": bool(o.HalfPixelCenters())}
        elif name == "MEAN":
            opts = {"keep_dims": bool(_options(table, tflite.ReducerOptions).KeepDims())}
        return Op(j, name, [int(i) for i in raw.InputsAsNumpy()], [int(i) for i in raw.OutputsAsNumpy()], opts)

    # -- load-time preparation -----------------------------------------------------------------------
    def _param(self, op: Op, key: str, arr: np.ndarray) -> None:
        self.params[f"op{op.index}_{key}"] = nn.Parameter(torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)),
                                                          requires_grad=False)

    def _const(self, op: Op, consts: dict[int, np.ndarray], pos: int) -> np.ndarray:
        t = op.inputs[pos]
        if t not in consts:
            raise UnsupportedOp(f"op #{op.index} {op.name}: input {pos} ({self._names[t]!r}) must be a constant")
        return consts[t]

    def _prepare(self, op: Op, consts: dict[int, np.ndarray]) -> None:
        n = op.name
        if n == "DEQUANTIZE":
            if op.inputs[0] not in consts:
                raise UnsupportedOp(f"op #{op.index} DEQUANTIZE of a non-constant tensor is not supported")
            return  # folded
        if n == "CONV_2D":
            w = self._const(op, consts, 1)  # OHWI
            self._param(op, "w", w.transpose(0, 3, 1, 2))
            self._bias(op, consts, w.shape[0])
        elif n == "DEPTHWISE_CONV_2D":
            w = self._const(op, consts, 1)  # 1, H, W, C*mult
            self._param(op, "w", w.transpose(3, 0, 1, 2))  # C*mult, 1, H, W
            self._bias(op, consts, w.shape[3])
        elif n == "CUSTOM:Convolution2DTransposeBias":
            w = self._const(op, consts, 1)  # OHWI
            self._param(op, "w", w.transpose(3, 0, 1, 2))  # I, O, H, W
            self._bias(op, consts, w.shape[0])
            c = op.opts["custom"]
            if len(c) < 12:
                raise UnsupportedOp(f"op #{op.index} {n}: expected 12 bytes of custom options, got {len(c)}")
            pad, sw, sh = struct.unpack("<3i", c[:12])
            if pad not in _C_PADDING:
                raise UnsupportedOp(f"op #{op.index} {n}: padding code {pad} is not supported")
            op.opts.update(padding=_C_PADDING[pad], stride=(sh, sw))
        elif n in ("ADD", "SUB", "MUL"):
            for pos, t in enumerate(op.inputs):
                if t in consts:
                    self._param(op, f"c{pos}", self._to_nchw_const(consts[t]))
        elif n == "MEAN":
            axes = np.atleast_1d(self._const(op, consts, 1)).astype(int).tolist()
            rank = len(self._shapes[op.inputs[0]])
            axes = [a % rank for a in axes]
            op.opts["axes"] = [NHWC_TO_NCHW_AXIS[a] for a in axes] if rank == 4 else axes
        elif n == "RESIZE_BILINEAR":
            op.opts["size"] = tuple(int(v) for v in self._const(op, consts, 1))
            if op.opts["align_corners"]:
                raise UnsupportedOp(f"op #{op.index} RESIZE_BILINEAR with align_corners=True is not supported")
        elif n in ("RELU", "RELU6", "HARD_SWISH", "LOGISTIC", "TANH", "AVERAGE_POOL_2D"):
            pass
        else:
            raise UnsupportedOp(f"TFLite op {n!r} (op #{op.index}) is not supported by the replayer")

    def _bias(self, op: Op, consts: dict[int, np.ndarray], channels: int) -> None:
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            self._param(op, "b", self._const(op, consts, 2).reshape(-1))
        else:
            self._param(op, "b", np.zeros(channels, np.float32))

    @staticmethod
    def _to_nchw_const(a: np.ndarray) -> np.ndarray:
        a = a.astype(np.float32)
        if a.ndim == 0 or a.ndim > 4:
            return a
        a = a.reshape((1,) * (4 - a.ndim) + a.shape)  # broadcast against NHWC from the right
        return a.transpose(0, 3, 1, 2)

    # -- run -----------------------------------------------------------------------------------------
    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """Run the compiled plan (the same values as :meth:`interpret`, without per-op interpretation)."""
        self._check_inputs(inputs)
        steps, n_slots, out_slots = self._compiled()
        env = run_plan(steps, n_slots, list(inputs))
        outs = tuple(env[i] for i in out_slots)
        return outs[0] if len(outs) == 1 else outs

    def interpret(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """The reference interpreter: one op at a time, as the graph file describes it."""
        self._check_inputs(inputs)
        env: dict[int, torch.Tensor] = dict(zip(self.input_ids, inputs))
        for op in self.ops:
            env[op.outputs[0]] = self._run(op, env)
        outs = tuple(env[t] for t in self.output_ids)
        return outs[0] if len(outs) == 1 else outs

    def _check_inputs(self, inputs: tuple[torch.Tensor, ...]) -> None:
        if len(inputs) != len(self.input_ids):
            raise ValueError(f"graph takes {len(self.input_ids)} input(s), got {len(inputs)}")
        for t, x, shape in zip(self.input_ids, inputs, self.input_shapes):
            if len(shape) == 4:
                want = (shape[3], shape[1], shape[2])
                if x.dim() != 4 or tuple(x.shape[1:]) != want:
                    raise ValueError(f"input {self._names[t]!r}: expected NCHW [B,{want[0]},{want[1]},{want[2]}], "
                                     f"got {tuple(x.shape)}")

    def _p(self, op: Op, key: str) -> torch.Tensor:
        return self.params[f"op{op.index}_{key}"]

    def _operand(self, op: Op, env: dict[int, torch.Tensor], pos: int) -> torch.Tensor:
        key = f"op{op.index}_c{pos}"
        return self.params[key] if key in self.params else env[op.inputs[pos]]

    def _pad_same(self, x: torch.Tensor, k: tuple[int, int], s: tuple[int, int], d: tuple[int, int] = (1, 1)) -> torch.Tensor:
        ph = _same_pad(x.shape[2], k[0], s[0], d[0])
        pw = _same_pad(x.shape[3], k[1], s[1], d[1])
        if ph == (0, 0) and pw == (0, 0):
            return x
        return F.pad(x, (pw[0], pw[1], ph[0], ph[1]))

    def _run(self, op: Op, env: dict[int, torch.Tensor]) -> torch.Tensor:
        n, o = op.name, op.opts
        x = env.get(op.inputs[0])
        if n == "CONV_2D" or n == "DEPTHWISE_CONV_2D":
            w, b = self._p(op, "w"), self._p(op, "b")
            k = (w.shape[2], w.shape[3])
            if o["padding"] == _SAME:
                x = self._pad_same(x, k, o["stride"], o["dilation"])
            groups = x.shape[1] if n == "DEPTHWISE_CONV_2D" else 1
            y = F.conv2d(x, w.to(x.dtype), b.to(x.dtype), stride=o["stride"], dilation=o["dilation"], groups=groups)
            return _activation(y, o["act"], op)
        if n == "CUSTOM:Convolution2DTransposeBias":
            w, b = self._p(op, "w"), self._p(op, "b")
            sh, sw = o["stride"]
            y = F.conv_transpose2d(x, w.to(x.dtype), b.to(x.dtype), stride=(sh, sw))
            if o["padding"] == _SAME:  # output = input * stride: crop the full result, the extra at the end
                h, wd = x.shape[2] * sh, x.shape[3] * sw
                th, tw = y.shape[2] - h, y.shape[3] - wd
                if th < 0 or tw < 0:  # kernel smaller than the stride: the missing rows/cols are bias only
                    y = F.pad(y - b.view(1, -1, 1, 1), (0, max(-tw, 0), 0, max(-th, 0))) + b.view(1, -1, 1, 1)
                    th, tw = max(th, 0), max(tw, 0)
                y = y[:, :, th // 2: th // 2 + h, tw // 2: tw // 2 + wd]
            return y
        if n in ("ADD", "SUB", "MUL"):
            a, c = self._operand(op, env, 0), self._operand(op, env, 1)
            y = a + c if n == "ADD" else a - c if n == "SUB" else a * c
            return _activation(y, o["act"], op)
        if n == "RELU":
            return F.relu(x)
        if n == "RELU6":
            return x.clamp(0.0, 6.0)
        if n == "HARD_SWISH":
            return x * (x + 3.0).clamp(0.0, 6.0) / 6.0
        if n == "LOGISTIC":
            return torch.sigmoid(x)
        if n == "TANH":
            return torch.tanh(x)
        if n == "AVERAGE_POOL_2D":
            k, s = o["filter"], o["stride"]
            if tuple(k) == tuple(x.shape[2:]) and (o["padding"] == _VALID or tuple(s) == tuple(k)):
                y = x.mean(dim=(2, 3), keepdim=True)  # global pool; mean() sums more accurately than avg_pool2d
            elif o["padding"] == _SAME:  # padded cells are not counted (TFLite semantics)
                xp = self._pad_same(x, k, s)
                ones = self._pad_same(torch.ones_like(x[:1, :1]), k, s)
                y = F.avg_pool2d(xp, k, s) / F.avg_pool2d(ones, k, s)
            else:
                y = F.avg_pool2d(x, k, s)
            return _activation(y, o["act"], op)
        if n == "MEAN":
            return x.mean(dim=o["axes"], keepdim=o["keep_dims"])
        if n == "RESIZE_BILINEAR":
            if not o["half_pixel"] and tuple(x.shape[2:]) != o["size"]:
                # legacy TF mode: src = dst * in/out, no half-pixel shift
                return _legacy_resize(x, o["size"])
            return F.interpolate(x, size=o["size"], mode="bilinear", align_corners=False)
        raise UnsupportedOp(f"TFLite op {n!r} is not supported by the replayer")


def _legacy_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TF's legacy bilinear resize (``half_pixel_centers=False, align_corners=False``)."""
    h, w = x.shape[2:]
    oh, ow = size

    def axis(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        src = torch.arange(n_out, device=x.device, dtype=x.dtype) * (n_in / n_out)
        lo = src.floor().long().clamp(max=n_in - 1)
        hi = (lo + 1).clamp(max=n_in - 1)
        return lo, hi, src - lo.to(x.dtype)

    y0, y1, fy = axis(h, oh)
    x0, x1, fx = axis(w, ow)
    rows = x[:, :, y0] * (1 - fy)[:, None] + x[:, :, y1] * fy[:, None]
    return rows[..., x0] * (1 - fx) + rows[..., x1] * fx


@contextmanager
def ieee_fp32_convs(active: bool = True) -> Iterator[None]:
    """Run cuDNN convolutions in full float32 (no TF32) inside the block; restores the previous setting.

    PyTorch allows TF32 for cuDNN convolutions by default, which on Ampere and later GPUs rounds inputs to
    10-bit mantissas: enough to move a saturated sigmoid model's output by ~0.09.  Only the forward pass
    inside the block is affected; a later ``backward()`` uses the global setting.
    """
    cudnn = torch.backends.cudnn
    if not active:
        yield
        return
    conv = getattr(cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):  # torch >= 2.9 API
        old = conv.fp32_precision
        conv.fp32_precision = "ieee"
        try:
            yield
        finally:
            conv.fp32_precision = old
    else:
        old_flag = cudnn.allow_tf32
        cudnn.allow_tf32 = False
        try:
            yield
        finally:
            cudnn.allow_tf32 = old_flag
