"""ONNX import (:func:`load_onnx`) and export (:func:`save_onnx`) of networks, residual blocks included.

Import reads one graph input and one graph output, and between them a *chain* of the nodes below (each
takes the previous node's output as its only non-constant input) and of *residual blocks*: a tensor
branches, and the two branches (each itself a chain, possibly holding blocks) rejoin at an ``Add`` of the
two tensors; one branch may be empty (the identity shortcut), the other is the body.  Each block becomes a
:class:`~lipverify.Residual` (the branch with fewer layers is the shortcut; the sum is the same).  Blocks are
found from the graph's dominators (:mod:`lipverify.io._graph`); a graph that is not such a series-parallel
composition (branches joined by ``Mul`` or ``Concat``, an ``Add`` whose operands do not branch from one tensor
of the chain, a tensor of one block used by another, ...) raises naming the node.  Constants (initializers,
``Constant`` nodes, ``Shape`` of tensors whose shape is static, and subgraphs computed from these only) are
folded first.  Supported nodes:

* ``Gemm`` (``transA = 0``, any ``transB``, ``alpha``, ``beta``), ``MatMul`` followed by an optional
  ``Add`` of a constant (the bias) -> :class:`~lipverify.Dense`;
* ``Conv``, ``MaxPool``, ``AveragePool`` (1-D on ``(N, C, L)`` and 2-D), ``GlobalAveragePool``,
  ``BatchNormalization`` (inference; on ``(N, C)``, ``(N, C, L)``, ``(N, C, H, W)``), ``Resize`` (``mode="nearest"``,
  integer factors, coordinate transformation and rounding giving PyTorch's nearest) -> the layers of
  :mod:`lipverify.conv`;
* ``Relu``, ``LeakyRelu``, ``Tanh``, ``Sigmoid``, ``Gelu`` (``approximate="none"``), and the patterns
  ``x * 0.5 * (1 + Erf(x / sqrt(2)))`` (GELU), ``x * Sigmoid(x)`` (SiLU), ``Max(x, a x)`` / ``Min(x, a x)``
  (LeakyReLU with slope ``a``);
* ``Elu``, ``Softplus`` (and ``Mul(x, b)`` -> ``Softplus`` -> ``Div(b)``: Softplus(beta = b)), ``Clip`` with constant
  ``min``/``max`` (Hardtanh; ReLU6 for 0 and 6), ``HardSwish``, ``Mish`` and ``x * Tanh(Softplus(x))``, ``HardSigmoid``
  (its ``alpha``, ``beta`` taken exactly; PyTorch's is ``alpha = 1/6`` rounded to float32) and
  ``Add(x, 3)`` -> ``Clip(0, 6)`` -> ``Div(6)`` (Hardsigmoid with ``alpha = 1/6`` exactly), LogSigmoid as
  ``Neg`` -> ``Softplus`` -> ``Neg`` or ``Sigmoid`` -> ``Log``;
* a final ``Softmax``/``LogSoftmax`` only with ``strip_output_softmax=True`` (removed: the network is the logits);
* ``Flatten`` (``axis = 1``) and ``Reshape`` to ``(batch, -1)``; ``Identity`` and ``Dropout`` (the identity
  at inference) add no layer.

Anything else raises :class:`~lipverify.ModelFormatError` naming the node (index, name and op type) and
listing what is supported.  Weights are converted to float64 exactly; where the model scales them
(``alpha``, ``beta`` of ``Gemm``, a bias added in a second node) the float64 result is used only when it
is exact, else the weights are kept as exact rationals, so the loaded network *is* the file's network in
real arithmetic (up to the ``sqrt(2)`` constant of the GELU pattern, which is accepted within a relative
``1e-6``: it rescales the input of ``erf`` and leaves the slope interval of GELU unchanged).

Export writes opset 17 with float64 tensors (exact weights; ``dtype="float32"`` rounds them), using the
patterns above for GELU (the ``Gelu`` op needs opset 20), SiLU and LeakyReLU slopes that are not float32; a
:class:`~lipverify.Residual` becomes its two branches and an ``Add``.  ``BatchNormalization`` stores
``epsilon`` as a float32 attribute, so an ``eps`` that is not a float32 is rounded.

Example::

    lv.save(net, "net.onnx")          # or lipverify.io.onnx.save_onnx(net, "net.onnx", dtype="float32")
    net2 = lv.load("net.onnx")        # identical forward outputs and bounds
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np

from ..errors import LipVerifyError, ModelFormatError
from ..layers import (
    ELU,
    GELU,
    Dense,
    Flatten,
    Hardsigmoid,
    Hardswish,
    Hardtanh,
    Identity,
    Layer,
    LeakyReLU,
    LogSigmoid,
    Mish,
    ReLU,
    ReLU6,
    Sigmoid,
    SiLU,
    Softplus,
    Tanh,
)
from ..network import Network
from ..residual import Residual
from ._graph import Block, SeriesParallel

OPSET = 17
SUPPORTED = (
    "Gemm, MatMul (+ Add of a constant bias), Conv, MaxPool, AveragePool (1-D and 2-D), GlobalAveragePool, "
    "BatchNormalization, Resize (nearest, integer factors), Relu, "
    "LeakyRelu, Tanh, Sigmoid, Gelu, the patterns x*0.5*(1+Erf(x/sqrt(2))) (GELU), x*Sigmoid(x) (SiLU), Max(x, a*x) "
    "(LeakyReLU), Elu, Softplus, Clip (constant bounds), HardSwish, Mish, HardSigmoid, LogSigmoid (Neg-Softplus-Neg "
    "or Sigmoid-Log), Flatten, Reshape to (batch, -1), Identity, Dropout, sorting layers (Reshape-TopK-Reshape, "
    "Reshape-ReduceMin/ReduceMax-Concat-Reshape, Split-Max/Min-Concat, TopK), and constant subgraphs; a final "
    "Softmax/LogSoftmax with strip_output_softmax=True; the graph must be a chain of these and of residual blocks "
    "(a tensor branches, the branches rejoin at an Add)"
)
#: ops folded when all their inputs are constants
_FOLDABLE = {
    "Identity", "Cast", "Transpose", "Reshape", "Unsqueeze", "Squeeze", "Concat", "Mul", "Add", "Sub", "Div",
    "Neg", "Sqrt", "Gather", "Slice", "Flatten", "Shape", "Pow", "Reciprocal", "ConstantOfShape", "Expand",
}
_ACTIVATION_OPS = {"Relu": ReLU, "Tanh": Tanh, "Sigmoid": Sigmoid, "HardSwish": Hardswish, "Mish": Mish}
_SQRT2 = math.sqrt(2.0)
#: ``(coordinate_transformation_mode, nearest_mode)`` pairs for which ``Resize`` by an integer factor ``k`` reads input
#: ``floor(x / k)`` at output ``x`` (PyTorch's nearest): asymmetric ``x/k`` floored; half-pixel ``(x + 1/2)/k - 1/2``
#: is ``floor(x/k)`` plus an offset in ``(-1/2, 1/2)``, so rounding either way gives it (``proofs/cnn_explicit.md``)
_RESIZE_NEAREST = frozenset({
    ("asymmetric", "floor"),
    *((c, r) for c in ("half_pixel", "pytorch_half_pixel", "half_pixel_symmetric")
      for r in ("round_prefer_floor", "round_prefer_ceil")),
})


# =========================================================================== import


def load_onnx(path: str, input_shape: tuple[int, ...] | None = None, *, strip_output_softmax: bool = False) -> Network:
    """Read an ONNX file as a :class:`~lipverify.Network` (see the module docstring for what is supported).

    ``input_shape`` (without the batch dimension) is needed only when the graph input's shape is not fully
    static; when given it must agree with the static dimensions.  Every problem raises
    :class:`~lipverify.ModelFormatError` naming the file and, for graph problems, the node.

    >>> import os, tempfile, lipverify as lv
    >>> path = os.path.join(tempfile.mkdtemp(), "net.onnx")
    >>> lv.save(lv.Network([lv.Dense([[1.0, -2.0]], [0.5]), lv.GELU()]), path)
    >>> lv.load(path)
    Network([Dense(2->1), GELU], input_shape=(2,))
    """
    import onnx

    try:
        model = onnx.load(path)
    except Exception as exc:  # protobuf decode errors, truncated files, missing external data
        raise ModelFormatError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx.checker.ValidationError and friends
        raise ModelFormatError(f"{path}: not a valid ONNX model (truncated or corrupt?): {exc}") from None
    return from_onnx_model(model, name=str(path), input_shape=input_shape, strip_output_softmax=strip_output_softmax)


def from_onnx_model(model: Any, name: str = "<onnx model>", input_shape: tuple[int, ...] | None = None, *,
                    strip_output_softmax: bool = False) -> Network:
    """Convert an in-memory ``onnx.ModelProto`` (see :func:`load_onnx`)."""
    try:
        importer = _Importer(model, name)
        importer.strip_output_softmax = strip_output_softmax
        net = importer.run(input_shape)
        if importer.stripped is not None:
            net.stripped_output = importer.stripped
        return net
    except ModelFormatError:
        raise
    except LipVerifyError as exc:
        raise ModelFormatError(f"{name}: {exc}") from None


class _Importer:
    def __init__(self, model: Any, name: str):
        self.model = model
        self.graph = model.graph
        self.name = name
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), OPSET)
        self.nodes = list(self.graph.node)
        self.consts: dict[str, np.ndarray] = {}
        self.used: set[int] = set()
        self.strip_output_softmax = False
        self.stripped: str | None = None  # the final Softmax/LogSoftmax removed

    # ------------------------------------------------------------------ helpers
    def err(self, msg: str, node_index: int | None = None) -> ModelFormatError:
        where = f"{self.name}: "
        if node_index is not None:
            where += f"{self.label(node_index)}: "
        return ModelFormatError(where + msg)

    def label(self, i: int) -> str:
        node = self.nodes[i]
        return f"node {i} {node.name or '(unnamed)'!r} ({node.op_type})"

    def attrs(self, i: int) -> dict[str, Any]:
        from onnx import helper

        return {a.name: helper.get_attribute_value(a) for a in self.nodes[i].attribute}

    def const(self, tensor: str, i: int) -> np.ndarray:
        if tensor not in self.consts:
            raise self.err(f"input {tensor!r} must be a constant (an initializer or Constant node)", i)
        return self.consts[tensor]

    # ------------------------------------------------------------------ constants
    def fold_constants(self) -> None:
        from onnx import numpy_helper

        for init in self.graph.initializer:
            self.consts[init.name] = numpy_helper.to_array(init)
        for i, node in enumerate(self.nodes):
            if node.domain not in ("", "ai.onnx"):
                continue
            if node.op_type == "Constant":
                self.consts[node.output[0]] = self._constant_value(i)
                self.used.add(i)
            elif node.op_type == "Shape" and node.input and node.input[0] not in self.consts:
                # the shape of a data tensor is a constant when the graph's shapes are static (batch included),
                # as in models exported with a fixed batch size: x.view(x.size(0), -1)
                shape = self._static_shapes().get(node.input[0])
                if shape is not None:
                    a = self.attrs(i)
                    self.consts[node.output[0]] = np.array(shape, dtype=np.int64)[a.get("start", 0):a.get("end")]
                    self.used.add(i)
            elif node.op_type in _FOLDABLE and node.input and all(t == "" or t in self.consts for t in node.input):
                from onnx.reference import ReferenceEvaluator

                feeds = {t: self.consts[t] for t in node.input if t}
                try:
                    outs = ReferenceEvaluator(node).run(None, feeds)
                except Exception as exc:  # the reference evaluator's own errors
                    raise self.err(f"cannot fold this constant node ({type(exc).__name__}: {exc})", i) from None
                for t, v in zip(node.output, outs):
                    self.consts[t] = np.asarray(v)
                self.used.add(i)

    def _static_shapes(self) -> dict[str, tuple[int, ...]]:
        if not hasattr(self, "_shapes"):
            import onnx

            self._shapes: dict[str, tuple[int, ...]] = {}
            try:
                inferred = onnx.shape_inference.infer_shapes(self.model)
            except Exception:  # shape inference failures leave the shapes unknown
                return self._shapes
            for v in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
                t = v.type.tensor_type
                if t.HasField("shape") and all(d.HasField("dim_value") for d in t.shape.dim):
                    self._shapes[v.name] = tuple(int(d.dim_value) for d in t.shape.dim)
        return self._shapes

    def _constant_value(self, i: int) -> np.ndarray:
        a = self.attrs(i)
        from onnx import numpy_helper

        if "value" in a:
            return numpy_helper.to_array(a["value"])
        for key, dtype in (("value_float", np.float32), ("value_floats", np.float32), ("value_int", np.int64),
                           ("value_ints", np.int64)):
            if key in a:
                return np.asarray(a[key], dtype=dtype)
        raise self.err(f"unsupported Constant attributes {sorted(a)}", i)

    # ------------------------------------------------------------------ graph
    def run(self, input_shape: tuple[int, ...] | None) -> Network:
        self.fold_constants()
        inputs = [v for v in self.graph.input if v.name not in self.consts]
        if len(inputs) != 1:
            raise self.err(f"the graph has {len(inputs)} data inputs ({', '.join(v.name for v in inputs)}); "
                           "only single-input models are supported")
        if len(self.graph.output) != 1:
            raise self.err(f"the graph has {len(self.graph.output)} outputs; only single-output models are supported")
        shape = self._input_shape(inputs[0], input_shape)
        self.consumers: dict[str, list[int]] = {}
        data: dict[int, tuple[list[str], list[str]]] = {}
        for i, node in enumerate(self.nodes):
            if i in self.used:
                continue
            ins = [t for t in node.input if t and t not in self.consts]
            data[i] = (ins, [t for t in node.output if t])
            for t in dict.fromkeys(ins):
                self.consumers.setdefault(t, []).append(i)
        merges = [i for i, (ins, _) in data.items() if self._op(i) == "Add" and len(set(ins)) == 2]
        self.sp = SeriesParallel(data, inputs[0].name, merges, {o.name for o in self.graph.output}, self.err, self.label)
        output = self.graph.output[0].name
        layers, _ = self.walk(inputs[0].name, output, set(data), shape)
        left = [i for i in range(len(self.nodes)) if i not in self.used]
        if left:
            raise self.err(f"{self.label(left[0])} is not on a path from the input to the output; only graphs that "
                           "are a chain of layers and residual blocks are supported")
        if not layers:
            layers = [Identity()]
        return Network(layers, input_shape=shape)

    def walk(self, x: str, end: str, allowed: set[int] | frozenset[int], shape: tuple[int, ...]
             ) -> tuple[list[Layer], tuple[int, ...]]:
        """The layers from tensor ``x`` to tensor ``end`` through the nodes ``allowed``, and the shape at ``end``."""
        layers: list[Layer] = []
        while True:
            cons = [c for c in self.consumers.get(x, []) if c in allowed]
            if x == end:
                if cons:
                    raise self.err(f"the graph output {x!r} also feeds {self.label(cons[0])}; "
                                   "the output must be the last tensor of the graph")
                return layers, shape
            if not cons:
                raise self.err(f"tensor {x!r} feeds no node and is not the graph output {end!r}")
            if any(c in self.used for c in cons):  # impossible in a valid (acyclic) graph; never loop
                raise self.err(f"tensor {x!r} feeds {self.label(cons[0])} a second time; the graph has a cycle")
            block = self.sp.block_at(x, allowed)
            if block is not None:
                new, x = [self._residual(block, shape)], self.nodes[block.merge].output[0]
                self.used.add(block.merge)
                origin = block.merge
            elif len(cons) == 1:
                new, x = self.convert(cons[0], x, shape)
                self.used.add(cons[0])
                origin = cons[0]
            else:
                match = self.match_pattern(x, cons)
                if match is None:
                    hint = ""
                    if any(self.nodes[c].op_type == "Shape" for c in cons):
                        hint = ("; the Shape node reads a dynamic shape: export with a fixed batch size, or flatten "
                                "with Flatten instead of x.view(x.size(0), -1)")
                    joins = [j for j in self.sp.joins_at(x) if j in allowed and j not in self.sp.merges]
                    if joins:
                        hint += (f"; {self.label(joins[0])} joins the branches, but only an Add of two branches (a "
                                 f"residual block) can join them")
                    raise self.err(
                        f"tensor {x!r} branches into {', '.join(self.label(c) for c in cons)}; only a single chain, "
                        f"residual blocks (branches that rejoin at an Add) and the GELU, SiLU and LeakyReLU patterns "
                        f"are supported{hint}. Supported: {SUPPORTED}"
                    )
                new, x, nodes = match
                self.used.update(nodes)
                origin = nodes[-1]
            for layer in new:
                try:
                    shape = tuple(layer.output_shape(shape))
                except (ValueError, LipVerifyError) as exc:
                    raise self.err(f"layer {len(layers)} ({layer.describe()}) does not fit the input shape "
                                   f"{shape}: {exc}", origin) from None
                layers.append(layer)

    def _residual(self, block: Block, shape: tuple[int, ...]) -> Layer:
        """The :class:`~lipverify.Residual` of a block; the shorter branch (fewer layers) is the shortcut."""
        branches = []
        for t, nodes in zip(block.inputs, block.nodes):
            layers, out = self.walk(block.branch, t, nodes, shape)
            branches.append((layers, out))
        (a, sa), (b, sb) = branches
        if sa != sb:
            raise self.err(f"adds tensors of per-sample shapes {sa} ({block.inputs[0]!r}) and {sb} "
                           f"({block.inputs[1]!r}); a residual block needs equal shapes (broadcasting is not "
                           "supported)", block.merge)
        body, short = (a, b) if len(a) >= len(b) else (b, a)
        try:
            return Residual(body or [Identity()], short or None)
        except (ValueError, LipVerifyError) as exc:
            raise self.err(f"the residual block from {block.branch!r} is not accepted: {exc}", block.merge) from None

    def _input_shape(self, value_info: Any, given: tuple[int, ...] | None) -> tuple[int, ...]:
        t = value_info.type.tensor_type
        if not t.HasField("shape"):
            if given is None:
                raise self.err(f"the graph input {value_info.name!r} has no shape; pass input_shape=(...)")
            return tuple(int(d) for d in given)
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        if len(dims) < 2:
            raise self.err(f"the graph input {value_info.name!r} has rank {len(dims)}; expected a batch "
                           "dimension followed by the input shape, e.g. (N, 784) or (N, 1, 28, 28)")
        rest = dims[1:]
        if given is not None:
            given = tuple(int(d) for d in given)
            if len(given) != len(rest) or any(d is not None and d != g for d, g in zip(rest, given)):
                raise self.err(f"the given input_shape {given} does not match the graph input "
                               f"{value_info.name!r} of shape {tuple('?' if d is None else d for d in rest)} "
                               "(batch dimension dropped)")
            return given
        if any(d is None or d <= 0 for d in rest):
            raise self.err(f"the graph input {value_info.name!r} has the dynamic shape "
                           f"{tuple('?' if d is None else d for d in rest)} (batch dimension dropped); "
                           "pass input_shape=(...)")
        return tuple(int(d) for d in rest)

    # ------------------------------------------------------------------ single nodes
    def _check_io(self, i: int, x: str, extra_outputs_ok: bool = False) -> None:
        node = self.nodes[i]
        if node.domain not in ("", "ai.onnx"):
            raise self.err(f"operator domain {node.domain!r} is not supported; supported: {SUPPORTED}", i)
        data = [t for t in node.input if t and t not in self.consts]
        others = [t for t in data if t != x]
        if others:
            if node.op_type == "Add":
                raise self.err(f"adds {x!r} and {others[0]!r}, which do not form a residual block (their branches do "
                               "not start at one tensor of the chain); only residual blocks whose branches start at "
                               "one tensor and rejoin at one Add are supported", i)
            raise self.err(f"has the non-constant inputs {others} besides the chain tensor {x!r} (a branch, or a "
                           f"shape computed at run time); {node.op_type} of two tensors is not supported: branches "
                           "may only rejoin at an Add (a residual block), and other inputs must be constants", i)
        if len(data) != 1:
            raise self.err(f"takes the chain tensor {x!r} {len(data)} times; only a single chain is supported", i)
        graph_outputs = {o.name for o in self.graph.output}
        for t in ([] if extra_outputs_ok else list(node.output)[1:]):
            if t and (self.consumers.get(t) or t in graph_outputs):
                raise self.err(f"its extra output {t!r} is used; only the first output of {node.op_type} is supported", i)

    def convert(self, i: int, x: str, shape: tuple[int, ...]) -> tuple[list[Layer], str]:
        node = self.nodes[i]
        op = node.op_type
        self._check_io(i, x, extra_outputs_ok=op == "Split")  # Split's halves: checked by _sort_node
        out = node.output[0]
        a = self.attrs(i)
        try:
            if op in ("Identity", "Dropout"):
                if op == "Dropout" and len(node.input) > 2 and node.input[2]:
                    if bool(np.asarray(self.const(node.input[2], i)).item()):
                        raise self.err("training_mode = true is not supported (inference only)", i)
                return [], out
            if op == "Sigmoid" and self._follows(out, "Log"):  # log(sigmoid(x))
                j = self._consume(out)
                return [LogSigmoid()], self.nodes[j].output[0]
            if op in _ACTIVATION_OPS:
                return [_ACTIVATION_OPS[op]()], out
            if op in ("Softmax", "LogSoftmax"):
                return self._softmax(i, op, out), out
            if op == "Elu":
                return [ELU(float(a.get("alpha", 1.0)))], out
            if op == "Softplus":
                return [Softplus()], out
            if op == "HardSigmoid":
                return [Hardsigmoid(float(a.get("alpha", 0.2)), float(a.get("beta", 0.5)))], out
            if op == "Clip":
                lo, hi = self._clip_bounds(i, a)
                k = self._only_consumer(out)
                if lo == 0.0 and 0 < hi < math.inf and k is not None and self._binary(k, "Div", out) == hi:
                    self._check_io(k, out)  # clip(z, 0, m) / m = Hardsigmoid(1/m, 0)
                    self.used.add(k)
                    return [Hardsigmoid(1 / Fraction(hi), 0)], self.nodes[k].output[0]
                return [ReLU6() if (lo, hi) == (0.0, 6.0) else Hardtanh(lo, hi)], out
            if op in ("Div", "Mul") and isinstance(self._binary(i, op, x), float) and self._follows(out, "Add"):
                m = self._binary(i, op, x)  # clip(x / m + c, 0, 1) = Hardsigmoid(1/m, c); clip(m x + c, 0, 1)
                j = self._consume(out)
                t = self.nodes[j].output[0]
                c = self._binary(j, "Add", out)
                k = self._only_consumer(t)
                if isinstance(c, float) and m != 0 and k is not None and self._op(k) == "Clip":
                    lo, hi = self._clip_bounds(k, self.attrs(k))
                    if (lo, hi) == (0.0, 1.0):
                        self._check_io(k, t)
                        self.used.add(k)
                        alpha = 1 / Fraction(m) if op == "Div" else Fraction(m)
                        return [Hardsigmoid(alpha, Fraction(c))], self.nodes[k].output[0]
                self.used.discard(j)
            if op == "Neg" and self._follows(out, "Softplus"):  # -softplus(-x)
                j = self._consume(out)
                if self._follows(self.nodes[j].output[0], "Neg"):
                    k = self._consume(self.nodes[j].output[0])
                    return [LogSigmoid()], self.nodes[k].output[0]
                self.used.discard(j)
            if op == "Mul" and isinstance(self._binary(i, "Mul", x), float) and self._follows(out, "Softplus"):
                beta = self._binary(i, "Mul", x)  # softplus(beta x) / beta
                j = self._consume(out)
                t = self.nodes[j].output[0]
                k = self._only_consumer(t)
                if k is not None and self._binary(k, "Div", t) == beta:
                    self._check_io(k, t)
                    self.used.add(k)
                    return [Softplus(beta)], self.nodes[k].output[0]
                self.used.discard(j)
            if op == "Add" and isinstance(self._binary(i, "Add", x), float) and self._follows(out, "Clip"):
                c = self._binary(i, "Add", x)  # clip(x + c, 0, m) / m = Hardsigmoid(1/m, c/m)
                j = self._consume(out)
                lo, hi = self._clip_bounds(j, self.attrs(j))
                t = self.nodes[j].output[0]
                k = self._only_consumer(t)
                if lo == 0.0 and 0 < hi < math.inf and k is not None and self._binary(k, "Div", t) == hi:
                    self._check_io(k, t)
                    self.used.add(k)
                    m = Fraction(hi)
                    return [Hardsigmoid(1 / m, Fraction(c) / m)], self.nodes[k].output[0]
                self.used.discard(j)
            if op == "LeakyRelu":
                return [LeakyReLU(float(a.get("alpha", 0.01)))], out
            if op == "Gelu":
                approx = a.get("approximate", b"none")
                approx = approx.decode() if isinstance(approx, bytes) else str(approx)
                if approx != "none":
                    raise self.err(f"Gelu with approximate={approx!r} is not supported (only 'none', the erf form)", i)
                return [GELU()], out
            if op == "Gemm":
                return self._gemm(i, a, x, out)
            if op == "MatMul":
                if node.input[0] != x:
                    raise self.err("MatMul with the chain tensor as second operand is not supported", i)
                w = self.const(node.input[1], i)
                if w.ndim != 2:
                    raise self.err(f"MatMul weight has shape {w.shape}; expected a matrix (n_in, n_out)", i)
                return self._with_bias(_as_f64(w).T, None, out)
            if op == "Flatten":
                axis = int(a.get("axis", 1))
                if axis < 0:
                    axis += len(shape) + 1
                if axis != 1:
                    raise self.err(f"Flatten with axis={a.get('axis')} does not keep the batch dimension; "
                                   "only axis=1 is supported", i)
                return ([] if len(shape) == 1 else [Flatten()]), out
            if op == "Reshape":
                sort = self._match_sort(i, x, shape)  # Reshape-TopK-Reshape, Reshape-ReduceMin/Max-Concat-Reshape
                if sort is not None:
                    return sort
                return self._reshape(i, shape, a), out
            if op in ("Split", "TopK"):  # Split-Max/Min-Concat (orthogonium MaxMin), TopK of the whole vector
                return self._sort_node(i, x, shape)
            if op == "Conv":
                return [self._conv(i, a, shape)], out
            if op in ("MaxPool", "AveragePool"):
                return [self._pool(i, op, a, shape)], out
            if op == "GlobalAveragePool":
                if len(shape) not in (2, 3):
                    raise self.err(f"GlobalAveragePool is supported on (C, L) and (C, H, W) inputs only, not on shape "
                                   f"{shape}", i)
                conv = _conv_module(self.err("GlobalAveragePool needs lipverify.conv, which is not available", i))
                if len(shape) == 2:
                    return [self._build(i, conv.AvgPool1d, shape[1])], out
                return [self._build(i, conv.AvgPool2d, _compact(shape[1:]), stride=_compact(shape[1:]))], out
            if op == "BatchNormalization":
                return [self._batchnorm(i, a, shape)], out
            if op == "Mul" and self._binary(i, "Mul", x) == 1.0:  # x * 1 (deel-torchlip's k_coef_lip = 1 after GroupSort)
                return [], out
            if op == "Resize":
                return [self._resize(i, a, shape)], out
        except ModelFormatError:
            raise
        except (ValueError, TypeError, ArithmeticError, LipVerifyError) as exc:
            raise self.err(f"cannot convert: {exc}", i) from None
        raise self.err(f"unsupported operator {op}; supported: {SUPPORTED}", i)

    def _follows(self, t: str, op: str) -> bool:
        """Whether the only consumer of ``t`` is a node of type ``op`` taking ``t`` once (and nothing else variable)."""
        j = self._only_consumer(t)
        return j is not None and self._op(j) == op and j not in self.used

    def _consume(self, t: str) -> int:
        """Mark the only consumer of ``t`` used (after checking it is a chain node) and return it."""
        j = self._only_consumer(t)
        self._check_io(j, t)
        self.used.add(j)
        return j

    def _clip_bounds(self, i: int, a: dict) -> tuple[float, float]:
        """``(min, max)`` of a ``Clip`` node: constant inputs (opset >= 11) or attributes; a missing one is infinite."""
        node = self.nodes[i]
        lo, hi = a.get("min", -math.inf), a.get("max", math.inf)
        for k, name in ((1, "min"), (2, "max")):
            if len(node.input) > k and node.input[k]:
                v = self.const(node.input[k], i)
                if v.size != 1:
                    raise self.err(f"Clip {name} has shape {v.shape}; only a scalar is supported", i)
                if k == 1:
                    lo = float(_as_f64(v).reshape(()))
                else:
                    hi = float(_as_f64(v).reshape(()))
        return float(lo), float(hi)

    def _softmax(self, i: int, op: str, out: str) -> list[Layer]:
        """A final Softmax/LogSoftmax: removed with ``strip_output_softmax=True``, refused otherwise."""
        graph_out = self.graph.output[0].name
        cons = self.consumers.get(out, [])
        final = out == graph_out or (len(cons) == 1 and self._op(cons[0]) == "Identity"
                                     and self.nodes[cons[0]].output[0] == graph_out)
        if not final:
            raise self.err(f"{op} is not the last operation; a {op} inside the network is not supported (only a final "
                           "one can be removed, with strip_output_softmax=True)", i)
        if not self.strip_output_softmax:
            raise self.err(f"the model ends in {op}; lipverify bounds the logits only if told so: pass "
                           f"strip_output_softmax=True (lv.load(path, strip_output_softmax=True); on the command line "
                           f"--logits) to remove the final {op} and bound the logits", i)
        self.stripped = op
        return []

    def _with_bias(self, w: np.ndarray, bias: np.ndarray | None, out: str) -> tuple[list[Layer], str]:
        """``Dense(w, bias)``; when the only consumer of ``out`` adds a constant vector, it joins the bias."""
        j = self._only_consumer(out)
        if j is not None and self._op(j) == "Add" and len(self.nodes[j].output) == 1:
            other = self._binary(j, "Add", out)
            c = None
            if isinstance(other, float):
                c = np.full(w.shape[0], other)
            elif isinstance(other, str) and other in self.consts:
                v = self.consts[other]
                if v.ndim <= 2 and v.size == w.shape[0] and (v.ndim < 2 or v.shape[0] == 1):
                    c = v.reshape(-1)
            if c is not None:
                c = _as_f64(c)
                bias = c if bias is None else _exact_sum(bias, c)
                self.used.add(j)
                out = self.nodes[j].output[0]
        return [Dense(w, bias)], out

    def _gemm(self, i: int, a: dict, x: str, out: str) -> tuple[list[Layer], str]:
        node = self.nodes[i]
        if int(a.get("transA", 0)):
            raise self.err("transA = 1 is not supported (the chain tensor must be the first operand, untransposed)", i)
        if node.input[0] != x or len(node.input) < 2 or node.input[1] not in self.consts:
            raise self.err("Gemm needs the chain tensor as A and a constant B", i)
        b = _as_f64(self.const(node.input[1], i))
        if b.ndim != 2:
            raise self.err(f"B has shape {b.shape}; expected a matrix", i)
        w = b if int(a.get("transB", 0)) else b.T
        w = _scaled(float(a.get("alpha", 1.0)), w)
        bias = None
        if len(node.input) > 2 and node.input[2]:
            c = _as_f64(self.const(node.input[2], i))
            if c.size not in (1, w.shape[0]) or (c.ndim == 2 and c.shape[0] != 1) or c.ndim > 2:
                raise self.err(f"bias C has shape {c.shape}; expected ({w.shape[0]},) or broadcastable", i)
            bias = _scaled(float(a.get("beta", 1.0)), np.broadcast_to(c.reshape(-1), (w.shape[0],)).copy())
        return self._with_bias(w, bias, out)

    def _reshape(self, i: int, shape: tuple[int, ...], a: dict) -> list[Layer]:
        target = [int(v) for v in self.const(self.nodes[i].input[1], i).reshape(-1)]
        n = int(np.prod(shape))
        allowzero = int(a.get("allowzero", 0))
        ok = (len(target) == 2 and (target[0] in (-1, 1) or (target[0] == 0 and not allowzero))
              and (target[1] == n or (target[1] == -1 and target[0] != -1)))
        if not ok:
            raise self.err(f"Reshape to {target} from per-sample shape {shape} is not a flatten; only reshapes to "
                           f"(batch, -1) or (batch, {n}) are supported", i)
        # target[0] == 1: a static batch dimension of 1 (common in exported models); the network works per sample
        return [] if len(shape) == 1 else [Flatten()]

    def _spatial(self, i: int, a: dict, shape: tuple[int, ...], kernel: tuple[int, ...],
                 dilation: tuple[int, ...] | None = None) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """``(stride, padding)`` with one entry per spatial axis (1-D on ``(C, L)``, 2-D on ``(C, H, W)``); asymmetric
        pads raise."""
        if len(shape) not in (2, 3):
            raise self.err(f"expects a per-sample input (C, L) or (C, H, W) but receives shape {shape}", i)
        d = len(shape) - 1
        dilation = (1,) * d if dilation is None else dilation
        stride = tuple(int(s) for s in a.get("strides", (1,) * d))
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else str(auto)
        if auto in ("NOTSET", ""):
            pads = tuple(int(p) for p in a.get("pads", (0,) * (2 * d)))
        elif auto == "VALID":
            pads = (0,) * (2 * d)
        elif auto in ("SAME_UPPER", "SAME_LOWER"):
            begin, end = [], []
            for size, s, k, d in zip(shape[1:], stride, kernel, dilation):
                total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
                small = total // 2
                begin.append(small if auto == "SAME_UPPER" else total - small)
                end.append(total - begin[-1])
            pads = (*begin, *end)
        else:
            raise self.err(f"auto_pad={auto!r} is not supported", i)
        if len(stride) != d or len(pads) != 2 * d or len(kernel) != d:
            raise self.err(f"strides {stride}, pads {pads} and kernel {tuple(kernel)} do not fit the {d}-D input of "
                           f"shape {shape}", i)
        if pads[:d] != pads[d:]:
            raise self.err(f"asymmetric padding {pads} (begins, then ends) is not supported; "
                           "lipverify pads both sides of each axis equally", i)
        return stride, pads[:d]

    def _conv(self, i: int, a: dict, shape: tuple[int, ...]) -> Layer:
        conv = _conv_module(self.err("Conv needs lipverify.conv, which is not available", i))
        node = self.nodes[i]
        k = _as_f64(self.const(node.input[1], i))
        if k.ndim not in (3, 4):
            raise self.err(f"only 1-D and 2-D convolutions are supported; the kernel has shape {k.shape}", i)
        bias = _as_f64(self.const(node.input[2], i)) if len(node.input) > 2 and node.input[2] else None
        dilation = tuple(int(d) for d in a.get("dilations", (1,) * (k.ndim - 2)))
        stride, padding = self._spatial(i, a, shape, k.shape[2:], dilation)
        if k.ndim == 3:
            return self._build(i, conv.Conv1d, k, bias, stride=stride[0], padding=padding[0], dilation=dilation[0],
                               groups=int(a.get("group", 1)))
        return self._build(i, conv.Conv2d, k, bias, stride=_compact(stride), padding=_compact(padding),
                           dilation=_compact(dilation), groups=int(a.get("group", 1)))

    def _pool(self, i: int, op: str, a: dict, shape: tuple[int, ...]) -> Layer:
        conv = _conv_module(self.err(f"{op} needs lipverify.conv, which is not available", i))
        kernel = tuple(int(k) for k in a.get("kernel_shape", ()))
        if len(kernel) not in (1, 2):
            raise self.err(f"only 1-D and 2-D pooling are supported (kernel_shape {kernel})", i)
        if int(a.get("ceil_mode", 0)):
            raise self.err("ceil_mode = 1 is not supported", i)
        if any(int(d) != 1 for d in a.get("dilations", ())):
            raise self.err(f"dilations {tuple(a['dilations'])} are not supported for pooling", i)
        stride, padding = self._spatial(i, a, shape, kernel)
        if op == "AveragePool" and any(padding) and not int(a.get("count_include_pad", 0)):
            raise self.err("AveragePool with padding and count_include_pad = 0 is not supported (lipverify's "
                           "AvgPool2d divides by the full window, like PyTorch's default)", i)
        if len(kernel) == 1:
            cls = conv.MaxPool1d if op == "MaxPool" else conv.AvgPool1d
            return self._build(i, cls, kernel[0], stride=stride[0], padding=padding[0])
        cls = conv.MaxPool2d if op == "MaxPool" else conv.AvgPool2d
        return self._build(i, cls, _compact(kernel), stride=_compact(stride), padding=_compact(padding))

    def _batchnorm(self, i: int, a: dict, shape: tuple[int, ...]) -> Layer:
        conv = _conv_module(self.err("BatchNormalization needs lipverify.conv, which is not available", i))
        if int(a.get("training_mode", 0)):
            raise self.err("training_mode = 1 is not supported (inference only)", i)
        if len(shape) not in (1, 2, 3):
            raise self.err(f"BatchNormalization is supported on (C,), (C, L) and (C, H, W) inputs only, not on shape "
                           f"{shape}", i)
        node = self.nodes[i]
        gamma, beta, mean, var = (_as_f64(self.const(t, i)) for t in node.input[1:5])
        cls = conv.BatchNorm2d if len(shape) == 3 else conv.BatchNorm1d
        return self._build(i, cls, gamma, beta, mean, var, float(a.get("epsilon", 1e-5)))

    def _resize(self, i: int, a: dict, shape: tuple[int, ...]) -> Layer:
        """``Resize`` with ``mode="nearest"`` by integer factors on the spatial axes, with a coordinate transformation
        and rounding that make it PyTorch's nearest upsampling (a repeat; :data:`_RESIZE_NEAREST`)."""
        conv = _conv_module(self.err("Resize needs lipverify.conv, which is not available", i))
        node = self.nodes[i]

        def text(name: str, default: str) -> str:
            v = a.get(name, default)
            return v.decode() if isinstance(v, bytes) else str(v)

        if self.opset < 11:
            raise self.err(f"Resize of opset {self.opset} (inputs X, scales; no coordinate mode) is not supported; "
                           "export with opset >= 11", i)
        mode = text("mode", "nearest")
        if mode != "nearest":
            raise self.err(f"Resize mode={mode!r} is not supported; only mode='nearest' with integer factors", i)
        if len(shape) < 2:
            raise self.err(f"Resize needs a (C, L) or (C, H, W) input, not shape {shape}", i)
        rank = len(shape) + 1
        axes = tuple(int(v) % rank for v in a["axes"]) if "axes" in a else tuple(range(rank))
        full = (1, *shape)
        scales = self.const(node.input[2], i).reshape(-1) if len(node.input) > 2 and node.input[2] else np.zeros(0)
        sizes = self.const(node.input[3], i).reshape(-1) if len(node.input) > 3 and node.input[3] else np.zeros(0)
        factors = [1] * rank
        if scales.size:
            if scales.size != len(axes):
                raise self.err(f"Resize scales {scales.tolist()} do not match the axes {axes}", i)
            for ax, v in zip(axes, scales.tolist()):
                if not (float(v) == int(v) and v >= 1):
                    raise self.err(f"Resize scale {v} on axis {ax} is not a positive integer; only integer factors "
                                   "are supported", i)
                factors[ax] = int(v)
        elif sizes.size:
            if sizes.size != len(axes):
                raise self.err(f"Resize sizes {sizes.tolist()} do not match the axes {axes}", i)
            if text("keep_aspect_ratio_policy", "stretch") != "stretch":
                raise self.err("Resize keep_aspect_ratio_policy other than 'stretch' is not supported", i)
            for ax, v in zip(axes, sizes.tolist()):
                if ax >= len(full) or int(v) % full[ax]:
                    raise self.err(f"Resize size {v} on axis {ax} is not an integer multiple of the input size", i)
                factors[ax] = int(v) // full[ax]
        else:
            raise self.err("Resize needs constant scales or sizes", i)
        if factors[0] != 1 or factors[1] != 1:
            raise self.err(f"Resize scales the batch or channel axis (factors {factors}); only spatial axes can be "
                           "upsampled", i)
        spatial = tuple(factors[2:])
        if any(k != 1 for k in spatial):
            ctm = text("coordinate_transformation_mode", "half_pixel")
            nearest = text("nearest_mode", "round_prefer_floor")
            if (ctm, nearest) not in _RESIZE_NEAREST:
                raise self.err(
                    f"Resize with coordinate_transformation_mode={ctm!r} and nearest_mode={nearest!r} is not "
                    "PyTorch's nearest upsampling for integer factors; supported: "
                    + ", ".join(f"({c!r}, {n!r})" for c, n in sorted(_RESIZE_NEAREST)), i)
        return self._build(i, conv.Upsample, spatial[0] if len(set(spatial)) == 1 else spatial)

    def _build(self, i: int, cls: type, *args: Any, **kwargs: Any) -> Layer:
        try:
            return cls(*args, **kwargs)
        except (TypeError, ValueError, LipVerifyError) as exc:
            raise self.err(f"{cls.__name__}{_fmt_call(args, kwargs)} is not accepted by lipverify: {exc}", i) from None

    # ------------------------------------------------------------------ patterns
    def match_pattern(self, x: str, cons: list[int]) -> tuple[list[Layer], str, list[int]] | None:
        for matcher in (self._match_silu, self._match_gelu, self._match_leaky, self._match_mish):
            m = matcher(x, cons)
            if m is not None:
                return m
        return None

    def _op(self, i: int) -> str:
        node = self.nodes[i]
        return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"

    def _only_consumer(self, t: str) -> int | None:
        cons = self.consumers.get(t, [])
        if len(cons) != 1 or t in {o.name for o in self.graph.output}:
            return None
        return cons[0]

    def _scalar(self, t: str) -> float | None:
        v = self.consts.get(t)
        if v is None or v.size != 1:
            return None
        return float(np.asarray(v, dtype=np.float64).reshape(()))

    def _binary(self, i: int, op: str, t: str) -> float | str | None:
        """For node ``i`` of type ``op`` with input ``t``: its other input (a scalar value or a tensor name)."""
        node = self.nodes[i]
        if self._op(i) != op or len(node.input) != 2 or list(node.input).count(t) != 1 or len(node.output) != 1:
            return None
        other = node.input[1] if node.input[0] == t else node.input[0]
        if op in ("Div", "Sub") and node.input[0] != t:
            return None
        s = self._scalar(other)
        return s if s is not None else other

    def _match_silu(self, x: str, cons: list[int]):
        if len(cons) != 2:
            return None
        for sig, mul in (cons, cons[::-1]):
            if self._op(sig) != "Sigmoid" or list(self.nodes[sig].input) != [x]:
                continue
            s = self.nodes[sig].output[0]
            if self._only_consumer(s) != mul or self._binary(mul, "Mul", x) != s:
                continue
            return [SiLU()], self.nodes[mul].output[0], [sig, mul]
        return None

    def _match_gelu(self, x: str, cons: list[int]):
        if len(cons) != 2:
            return None
        for d, p in (cons, cons[::-1]):
            half = 0
            c = self._binary(d, "Div", x)
            if not (isinstance(c, float) and _close(c, _SQRT2)):
                c = self._binary(d, "Mul", x)
                if not (isinstance(c, float) and _close(c, 1 / _SQRT2)):
                    continue
            e = self._only_consumer(self.nodes[d].output[0])
            if e is None or self._op(e) != "Erf":
                continue
            add = self._only_consumer(self.nodes[e].output[0])
            if add is None or self._binary(add, "Add", self.nodes[e].output[0]) != 1.0:
                continue
            s = self.nodes[add].output[0]
            nodes = [d, e, add]
            nxt = self._only_consumer(s)
            if nxt is not None and self._binary(nxt, "Mul", s) == 0.5:  # 0.5 * (1 + erf)
                half += 1
                nodes.append(nxt)
                s = self.nodes[nxt].output[0]
            xp = x
            if self._binary(p, "Mul", x) == 0.5:  # 0.5 * x
                half += 1
                nodes.append(p)
                xp = self.nodes[p].output[0]
                join = self._only_consumer(xp)
            else:
                join = p
            if join is None or self._only_consumer(s) != join or self._binary(join, "Mul", xp) != s:
                continue
            nodes.append(join)
            y = self.nodes[join].output[0]
            if half == 0:
                last = self._only_consumer(y)
                if last is None or self._binary(last, "Mul", y) != 0.5:
                    continue
                nodes.append(last)
                y = self.nodes[last].output[0]
                half = 1
            if half != 1:
                continue
            return [GELU()], y, nodes
        return None

    def _match_mish(self, x: str, cons: list[int]):
        """``x * Tanh(Softplus(x))``."""
        if len(cons) != 2:
            return None
        for sp, mul in (cons, cons[::-1]):
            if self._op(sp) != "Softplus" or list(self.nodes[sp].input) != [x]:
                continue
            th = self._only_consumer(self.nodes[sp].output[0])
            if th is None or self._op(th) != "Tanh":
                continue
            t = self.nodes[th].output[0]
            if self._only_consumer(t) != mul or self._binary(mul, "Mul", x) != t:
                continue
            return [Mish()], self.nodes[mul].output[0], [sp, th, mul]
        return None

    def _match_leaky(self, x: str, cons: list[int]):
        if len(cons) != 2:
            return None
        for mul, mx in (cons, cons[::-1]):
            slope = self._binary(mul, "Mul", x)
            if not isinstance(slope, float):
                continue
            t = self.nodes[mul].output[0]
            if self._only_consumer(t) != mx:
                continue
            op = "Max" if slope <= 1 else "Min"
            if self._binary(mx, op, x) != t:
                continue
            return [LeakyReLU(slope)], self.nodes[mx].output[0], [mul, mx]
        return None


# --------------------------------------------------------------------------- import helpers


def _conv_module(error: ModelFormatError):
    try:
        from .. import conv
    except ImportError:
        raise error from None
    return conv


def _compact(pair: tuple[int, ...]) -> int | tuple[int, ...]:
    """An int when all entries agree (the form every lipverify layer accepts), else the tuple."""
    return int(pair[0]) if len(set(pair)) == 1 else tuple(int(p) for p in pair)


def _fmt_call(args: tuple, kwargs: dict) -> str:
    shown = [f"array{a.shape}" if isinstance(a, np.ndarray) else repr(a) for a in args]
    shown += [f"{k}={v!r}" for k, v in kwargs.items()]
    return "(" + ", ".join(shown) + ")"


def _as_f64(a: np.ndarray) -> np.ndarray:
    """float16/32/64 -> float64 (exact); integers are accepted; anything else raises."""
    a = np.asarray(a)
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise TypeError(f"tensor of dtype {a.dtype} is not a real number tensor")
    return np.array(a, dtype=np.float64)


def _significant_bits(a: np.ndarray) -> np.ndarray:
    m, _ = np.frexp(np.abs(a))
    ints = (m * 2.0**53).astype(np.int64)
    low = ints & -ints
    bits = 53 - np.log2(np.where(ints == 0, 1, low)).astype(np.int64)
    return np.where(ints == 0, 0, bits)


def _scaled(alpha: float, w: np.ndarray) -> np.ndarray:
    """``alpha * w``: float64 when every product is exact, else an object array of exact Fractions."""
    if alpha == 1.0:
        return w
    p = alpha * w
    exact = (_significant_bits(np.array([alpha]))[0] + _significant_bits(w) <= 53) & ((p == 0) | (np.abs(p) >= 2.0**-1000))
    if np.all(exact) and np.all(np.isfinite(p)):
        return p
    fa = Fraction(alpha)
    return np.array([fa * Fraction(float(v)) for v in w.flat], dtype=object).reshape(w.shape)


def _exact_sum(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a + b``: float64 when exact (TwoSum error zero), else exact Fractions."""
    if a.dtype == object or b.dtype == object:
        return np.array([Fraction(u) + Fraction(v) for u, v in zip(a.flat, b.flat)], dtype=object)
    s = a + b
    bb = s - a
    err = (a - (s - bb)) + (b - bb)
    if np.all(err == 0) and np.all(np.isfinite(s)):
        return s
    return np.array([Fraction(float(u)) + Fraction(float(v)) for u, v in zip(a.flat, b.flat)], dtype=object)


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * abs(b)


# =========================================================================== export


def save_onnx(net: Network, path: str, *, dtype: str = "float64") -> None:
    """Write ``net`` as an ONNX model (opset 17) that ``onnx.checker`` accepts.

    ``dtype="float64"`` (default) stores the float weights exactly, so :func:`load_onnx` gives back the same
    network; ``"float32"`` rounds them (the usual type for runtimes).  Exact (rational) weights are stored as
    their nearest floats; symbolic weights raise :class:`~lipverify.ModelFormatError`.
    """
    import onnx

    model = to_onnx_model(net, dtype=dtype)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # pragma: no cover - a bug in the exporter
        raise ModelFormatError(f"{path}: the exported model does not pass onnx.checker: {exc}") from None
    onnx.save(model, path)


def to_onnx_model(net: Network, dtype: str = "float64") -> Any:
    """The ``onnx.ModelProto`` that :func:`save_onnx` writes."""
    from onnx import TensorProto, helper

    if dtype not in ("float64", "float32"):
        raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    np_dtype = np.float64 if dtype == "float64" else np.float32
    elem = TensorProto.DOUBLE if dtype == "float64" else TensorProto.FLOAT
    ex = _Exporter(np_dtype)
    x = "input"
    for i, layer in enumerate(net.layers):
        try:
            x = ex.layer(f"l{i}", layer, x, net.shapes[i])
        except (ValueError, TypeError) as exc:
            raise ModelFormatError(f"layer {i} ({layer.describe()}) cannot be exported to ONNX: {exc}") from None
    ex.nodes.append(helper.make_node("Identity", [x], ["output"], name="output"))
    graph = helper.make_graph(
        ex.nodes, "lipverify",
        [helper.make_tensor_value_info("input", elem, ["N", *net.input_shape])],
        [helper.make_tensor_value_info("output", elem, ["N", *net.output_shape])],
        initializer=ex.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="lipverify",
                              ir_version=8)
    return model


class _Exporter:
    def __init__(self, np_dtype: type):
        self.dtype = np_dtype
        self.nodes: list = []
        self.inits: list = []

    def init(self, name: str, value: Any) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=self.dtype), name))
        return name

    def node(self, op: str, inputs: list[str], out: str, **attrs: Any) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def layer(self, p: str, layer: Layer, x: str, shape: tuple[int, ...]) -> str:
        """The nodes of ``layer`` applied to tensor ``x`` (per-sample shape ``shape``), named ``p.*``; its output."""
        if isinstance(layer, Residual):
            body, short = layer.branches(shape)
            y = x
            for j, sub in enumerate(body.layers):
                y = self.layer(f"{p}.body{j}", sub, y, body.shapes[j])
            s = x
            if short is not None:
                for j, sub in enumerate(short.layers):
                    s = self.layer(f"{p}.shortcut{j}", sub, s, short.shapes[j])
            return self.node("Add", [y, s], f"{p}.add")
        if isinstance(layer, Dense):
            inputs = [x, self.init(f"{p}.weight", layer.weight)]
            if layer.has_bias:
                inputs.append(self.init(f"{p}.bias", layer.bias))
            return self.node("Gemm", inputs, f"{p}.gemm", transB=1)
        if isinstance(layer, Flatten):
            return self.node("Flatten", [x], f"{p}.flatten", axis=1)
        if isinstance(layer, (ReLU, Tanh, Sigmoid, Identity)):
            op = {ReLU: "Relu", Tanh: "Tanh", Sigmoid: "Sigmoid", Identity: "Identity"}[type(layer)]
            return self.node(op, [x], f"{p}.{op.lower()}")
        if isinstance(layer, LeakyReLU):
            a = float(layer.negative_slope)
            if float(np.float32(a)) == a:
                return self.node("LeakyRelu", [x], f"{p}.leakyrelu", alpha=a)
            if self.dtype is np.float32:
                raise ValueError(f"the slope {a} is not a float32; export with dtype='float64'")
            t = self.node("Mul", [x, self.init(f"{p}.slope", a)], f"{p}.scaled")
            return self.node("Max" if a <= 1 else "Min", [x, t], f"{p}.leakyrelu")
        if isinstance(layer, GELU):
            t = self.node("Div", [x, self.init(f"{p}.sqrt2", _SQRT2)], f"{p}.div")
            t = self.node("Erf", [t], f"{p}.erf")
            t = self.node("Add", [t, self.init(f"{p}.one", 1.0)], f"{p}.add")
            t = self.node("Mul", [x, t], f"{p}.mul")
            return self.node("Mul", [t, self.init(f"{p}.half", 0.5)], f"{p}.gelu")
        if isinstance(layer, SiLU):
            s = self.node("Sigmoid", [x], f"{p}.sigmoid")
            return self.node("Mul", [x, s], f"{p}.silu")
        more = self._more_activation(p, layer, x)
        if more is not None:
            return more
        kind = type(layer).__name__
        if kind in ("Conv1d", "MaxPool1d", "AvgPool1d", "Upsample"):
            return self._layer_1d(p, kind, layer, x, shape)
        if kind == "Conv2d":
            kernel = np.asarray(_attr(layer, "kernel", "weight"))
            inputs = [x, self.init(f"{p}.weight", kernel)]
            bias = _attr(layer, "bias", default=None)
            if bias is not None:
                inputs.append(self.init(f"{p}.bias", bias))
            ph, pw = _pair(_attr(layer, "padding", default=0))
            return self.node("Conv", inputs, f"{p}.conv", kernel_shape=list(kernel.shape[2:]),
                             strides=list(_pair(_attr(layer, "stride", default=1))), pads=[ph, pw, ph, pw],
                             dilations=list(_pair(_attr(layer, "dilation", default=1))),
                             group=int(_attr(layer, "groups", default=1)))
        if kind in ("MaxPool2d", "AvgPool2d"):
            k = _pair(_attr(layer, "kernel", "kernel_size"))
            stride = _attr(layer, "stride", default=None)
            ph, pw = _pair(_attr(layer, "padding", default=0))
            attrs: dict[str, Any] = {"kernel_shape": list(k), "strides": list(_pair(k if stride is None else stride)),
                                     "pads": [ph, pw, ph, pw]}
            if kind == "AvgPool2d":
                attrs["count_include_pad"] = 1
            return self.node("MaxPool" if kind == "MaxPool2d" else "AveragePool", [x], f"{p}.pool", **attrs)
        if getattr(layer, "step_kind", None) == "sort":  # Reshape-TopK-Reshape (lipverify/sort.py)
            return _export_sort(self, p, layer, x, shape)
        if kind in ("BatchNorm2d", "BatchNorm1d"):
            names = [self.init(f"{p}.{n}", _attr(layer, n, alt)) for n, alt in
                     (("gamma", "weight"), ("beta", "bias"), ("mean", "running_mean"), ("var", "running_var"))]
            return self.node("BatchNormalization", [x, *names], f"{p}.bn", epsilon=float(_attr(layer, "eps")))
        raise ValueError(f"no ONNX form for layer type {kind}")


def _layer_1d(self: _Exporter, p: str, kind: str, layer: Any, x: str, shape: tuple[int, ...]) -> str:
    """ONNX forms of Conv1d, MaxPool1d, AvgPool1d (the 1-D ops on ``(N, C, L)``) and Upsample (``Resize``, nearest,
    asymmetric coordinates, floor: PyTorch's export of ``nn.Upsample(mode="nearest")``)."""
    if kind == "Conv1d":
        inputs = [x, self.init(f"{p}.weight", layer.weight)]
        if layer.as_2d._bias is not None:
            inputs.append(self.init(f"{p}.bias", layer.bias))
        return self.node("Conv", inputs, f"{p}.conv", kernel_shape=[layer.kernel_shape[2]], strides=[layer.stride],
                         pads=[layer.padding, layer.padding], dilations=[layer.dilation], group=layer.groups)
    if kind in ("MaxPool1d", "AvgPool1d"):
        attrs: dict[str, Any] = {"kernel_shape": [layer.kernel_size], "strides": [layer.stride],
                                 "pads": [layer.padding, layer.padding]}
        if kind == "AvgPool1d":
            attrs["count_include_pad"] = 1
        return self.node("MaxPool" if kind == "MaxPool1d" else "AveragePool", [x], f"{p}.pool", **attrs)
    scales = self.init(f"{p}.scales", np.array([1.0, 1.0, *layer.scales(shape)]))
    if self.dtype is not np.float32:  # Resize's scales are float32 (small integers: exact)
        self.inits[-1] = _float32_tensor(f"{p}.scales", [1.0, 1.0, *layer.scales(shape)])
    return self.node("Resize", [x, "", scales], f"{p}.resize", mode="nearest",
                     coordinate_transformation_mode="asymmetric", nearest_mode="floor")


def _float32_tensor(name: str, values: list) -> Any:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(values, dtype=np.float32), name)


_Exporter._layer_1d = _layer_1d  # type: ignore[attr-defined]


def _export_value(v: Fraction, what: str, dtype: type) -> float:
    """``v`` as a float of the export type, refusing a value that type does not hold exactly."""
    f = float(v)
    if Fraction(f) != v or float(dtype(f)) != f:
        raise ValueError(f"{what} = {v} is not a {np.dtype(dtype).name} number; export with dtype='float64' or use "
                         "a representable value")
    return f


def _more_activation(self: _Exporter, p: str, layer: Layer, x: str) -> str | None:
    """ONNX forms of ELU, Softplus, Hardtanh/ReLU6, Hardswish, Mish, LogSigmoid, Hardsigmoid (None: not one)."""
    if isinstance(layer, ELU):
        a = float(layer._a_fraction)
        if Fraction(a) != layer._a_fraction or float(np.float32(a)) != a:
            raise ValueError(f"ELU alpha = {layer._a_fraction} is not a float32 number (ONNX Elu's attribute)")
        return self.node("Elu", [x], f"{p}.elu", alpha=a)
    if isinstance(layer, Softplus):
        if layer._b_fraction == 1:
            return self.node("Softplus", [x], f"{p}.softplus")
        b = self.init(f"{p}.beta", _export_value(layer._b_fraction, "Softplus beta", self.dtype))
        t = self.node("Mul", [x, b], f"{p}.scaled")
        t = self.node("Softplus", [t], f"{p}.sp")
        return self.node("Div", [t, b], f"{p}.softplus")
    if isinstance(layer, Hardtanh):
        lo = self.init(f"{p}.min", _export_value(Fraction(layer._lo), "Hardtanh min_val", self.dtype)
                       if not isinstance(layer._lo, float) else layer._lo)
        hi = self.init(f"{p}.max", _export_value(Fraction(layer._hi), "Hardtanh max_val", self.dtype)
                       if not isinstance(layer._hi, float) else layer._hi)
        return self.node("Clip", [x, lo, hi], f"{p}.clip")
    if isinstance(layer, Hardswish):
        return self.node("HardSwish", [x], f"{p}.hardswish")
    if isinstance(layer, Mish):  # the Mish op needs opset 18
        t = self.node("Softplus", [x], f"{p}.softplus")
        t = self.node("Tanh", [t], f"{p}.tanh")
        return self.node("Mul", [x, t], f"{p}.mish")
    if isinstance(layer, LogSigmoid):
        t = self.node("Neg", [x], f"{p}.neg")
        t = self.node("Softplus", [t], f"{p}.softplus")
        return self.node("Neg", [t], f"{p}.logsigmoid")
    if isinstance(layer, Hardsigmoid):
        a, b = layer._a_fraction, layer._b_fraction
        try:  # clip(x / (1/alpha) + beta, 0, 1): exact in real arithmetic when 1/alpha and beta are floats (1/6, 1/2: 6, 0.5)
            if a <= 0:
                raise ValueError("alpha <= 0")
            m = _export_value(1 / a, "1/alpha", self.dtype)
            c = _export_value(b, "beta", self.dtype)
        except ValueError:
            try:  # clip(alpha x + beta, 0, 1) with float alpha, beta
                a_x, b_x = _export_value(a, "alpha", self.dtype), _export_value(b, "beta", self.dtype)
            except ValueError:
                a_x = None
            if a_x is not None:
                t = self.node("Mul", [x, self.init(f"{p}.alpha", a_x)], f"{p}.scaled")
                t = self.node("Add", [t, self.init(f"{p}.shift", b_x)], f"{p}.shifted")
                return self.node("Clip", [t, self.init(f"{p}.zero", 0.0), self.init(f"{p}.one", 1.0)], f"{p}.hardsigmoid")
            a_f = _export_value(a, "Hardsigmoid alpha", np.float32)
            b_f = _export_value(b, "Hardsigmoid beta", np.float32)
            return self.node("HardSigmoid", [x], f"{p}.hardsigmoid", alpha=a_f, beta=b_f)
        t = self.node("Div", [x, self.init(f"{p}.scale", m)], f"{p}.scaled")
        t = self.node("Add", [t, self.init(f"{p}.shift", c)], f"{p}.shifted")
        return self.node("Clip", [t, self.init(f"{p}.zero", 0.0), self.init(f"{p}.one", 1.0)], f"{p}.hardsigmoid")
    return None


_Exporter._more_activation = _more_activation  # type: ignore[attr-defined]


def _attr(layer: Layer, *names: str, default: Any = ...) -> Any:
    for n in names:
        if hasattr(layer, n):
            v = getattr(layer, n)
            return v
    if default is not ...:
        return default
    raise ValueError(f"the layer has none of the attributes {names}")


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    t = tuple(int(u) for u in v)
    if len(t) != 2:
        raise ValueError(f"expected an int or a pair, got {v!r}")
    return t


# --------------------------------------------------------------------------- sorting layers (lipverify/sort.py)


def _export_sort(self: _Exporter, p: str, layer: Layer, x: str, shape: tuple[int, ...]) -> str:
    """GroupSort/MaxMin/FullSort as ``Reshape (batch, a, b)`` → ``TopK`` (k = group size, along the group axis;
    ``largest`` = descending) → ``Reshape (batch, n)``: contiguous groups ``(n/g, g)`` sorted along axis 2, strided
    groups ``(g, n/g)`` along axis 1."""
    from onnx import numpy_helper

    n = int(shape[0])
    g = layer.size(n)
    dims, axis = ([-1, n // g, g], 2) if layer.layout == "contiguous" else ([-1, g, n // g], 1)
    for name, value in ((f"{p}.grouped_shape", dims), (f"{p}.k", [g]), (f"{p}.flat_shape", [-1, n])):
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.int64), name))
    t = self.node("Reshape", [x, f"{p}.grouped_shape"], f"{p}.grouped")
    from onnx import helper

    self.nodes.append(helper.make_node("TopK", [t, f"{p}.k"], [f"{p}.sorted", f"{p}.indices"], name=f"{p}.topk",
                                       axis=axis, largest=int(bool(layer.descending)), sorted=1))
    return self.node("Reshape", [f"{p}.sorted", f"{p}.flat_shape"], f"{p}.sort")


_Exporter._export_sort = _export_sort  # type: ignore[attr-defined]


def _sort_layer(self: _Importer, i: int, n: int, size: int, axis: int, descending: bool) -> Layer:
    """The sorting layer of ``n`` inputs grouped as ``(n / size, size)`` (axis 2: contiguous groups of ``size``) or
    ``(size, n / size)`` (axis 1: strided groups of ``size``)."""
    from ..sort import FullSort, GroupSort, MaxMin

    if axis == 2 and size == n and not descending:
        return FullSort()
    if axis == 1 and size == 2 and descending:
        return MaxMin()
    if axis == 2:
        return self._build(i, GroupSort, size, descending=descending)
    return self._build(i, GroupSort, size, layout="strided", descending=descending)


def _batch_ok(self: _Importer, lead: int, x: str) -> bool:
    """A reshape's leading target ``lead`` keeps the batch: -1, 0 (copy) or the static batch size of ``x``."""
    if lead in (-1, 0):
        return True
    static = self._static_shapes().get(x)
    return static is not None and static[0] == lead


def _flat_reshape(self: _Importer, j: int | None, t: str, n: int, x: str) -> bool:
    """Whether node ``j`` reshapes ``t`` back to ``(batch, n)`` (the batch of the pattern's input ``x``)."""
    if j is None or self._op(j) != "Reshape" or self.nodes[j].input[0] != t or self.nodes[j].input[1] not in self.consts:
        return False
    target = [int(v) for v in self.consts[self.nodes[j].input[1]].reshape(-1)]
    return len(target) == 2 and target[1] in (n, -1) and target != [-1, -1] and _batch_ok(self, target[0], x)


def _axis(a: dict, key: str, rank: int, default: int) -> int:
    v = int(a.get(key, default))
    return v + rank if v < 0 else v


def _reduce_axes(self: _Importer, k: int) -> list[int] | None:
    node, a = self.nodes[k], self.attrs(k)
    if "axes" in a:
        return [int(v) for v in a["axes"]]
    if len(node.input) > 1 and node.input[1]:
        if node.input[1] not in self.consts:
            return None
        return [int(v) for v in self.consts[node.input[1]].reshape(-1)]
    return None


def _match_sort(self: _Importer, i: int, x: str, shape: tuple[int, ...]):
    """``(layers, output tensor)`` when the Reshape node ``i`` starts a sorting pattern, else ``None``:

    * ``Reshape (batch, a, b)`` → ``TopK`` (k = the size of its axis, sorted, only the values used) → ``Reshape
      (batch, n)`` (``torch.sort`` exports this way, and :func:`save_onnx` writes it);
    * ``Reshape (batch, a, b)`` → ``ReduceMin`` and ``ReduceMax`` (keepdims, one axis of size 2) → ``Concat`` on that
      axis → ``Reshape (batch, n)`` (deel-torchlip's ``GroupSort2``)."""
    node = self.nodes[i]
    if len(shape) != 1 or len(node.input) < 2 or node.input[1] not in self.consts:
        return None
    n = int(shape[0])
    target = [int(v) for v in self.consts[node.input[1]].reshape(-1)]
    if len(target) != 3 or not _batch_ok(self, target[0], x):
        return None
    dims = list(target[1:])
    if dims.count(-1) == 1:
        other = dims[1 - dims.index(-1)]
        if other <= 0 or n % other:
            return None
        dims[dims.index(-1)] = n // other
    if min(dims) <= 0 or dims[0] * dims[1] != n:
        return None
    t = node.output[0]
    cons = [c for c in self.consumers.get(t, []) if c not in self.used]
    if len(cons) == 1 and self._op(cons[0]) == "TopK":
        j = cons[0]
        a = self.attrs(j)
        axis = _axis(a, "axis", 3, -1)
        k_in = self.nodes[j].input[1] if len(self.nodes[j].input) > 1 else ""
        if axis not in (1, 2) or k_in not in self.consts or int(self.consts[k_in].reshape(-1)[0]) != dims[axis - 1]:
            return None
        if not int(a.get("sorted", 1)):
            return None
        self._check_io(j, t)
        values = self.nodes[j].output[0]
        last = self._only_consumer(values)
        if not _flat_reshape(self, last, values, n, x):
            return None
        self._check_io(last, values)
        self.used.update((j, last))
        return [_sort_layer(self, j, n, dims[axis - 1], axis, bool(int(a.get("largest", 1))))], self.nodes[last].output[0]
    if len(cons) == 2 and {self._op(c) for c in cons} == {"ReduceMin", "ReduceMax"}:
        axes = [_reduce_axes(self, c) for c in cons]
        if any(ax is None or len(ax) != 1 for ax in axes) or any(int(self.attrs(c).get("keepdims", 1)) != 1 for c in cons):
            return None
        ax = [v + 3 if v < 0 else v for v in (axes[0][0], axes[1][0])]
        if ax[0] != ax[1] or ax[0] not in (1, 2) or dims[ax[0] - 1] != 2:
            return None
        outs = [self.nodes[c].output[0] for c in cons]
        cat = self._only_consumer(outs[0])
        if cat is None or self._only_consumer(outs[1]) != cat or self._op(cat) != "Concat":
            return None
        if _axis(self.attrs(cat), "axis", 3, 0) != ax[0] or sorted(self.nodes[cat].input) != sorted(outs):
            return None
        first = self.nodes[cat].input[0]
        descending = self._op(cons[outs.index(first)]) == "ReduceMax"
        flat = self.nodes[cat].output[0]
        last = self._only_consumer(flat)
        if not _flat_reshape(self, last, flat, n, x):
            return None
        self._check_io(last, flat)
        self.used.update((*cons, cat, last))
        return [_sort_layer(self, cat, n, 2, ax[0], descending)], self.nodes[last].output[0]
    return None


def _sort_node(self: _Importer, i: int, x: str, shape: tuple[int, ...]):
    """A ``TopK`` of the whole flat vector (k = n, sorted: :class:`~lipverify.FullSort` or its descending form) or
    ``Split`` into two halves → ``Max`` and ``Min`` of the halves → ``Concat`` (orthogonium's ``MaxMin`` for
    ``[Max, Min]``); anything else raises naming the node."""
    from ..sort import FullSort, GroupSort

    node, a = self.nodes[i], self.attrs(i)
    op = self._op(i)
    if len(shape) != 1:
        raise self.err(f"{op} on the per-sample shape {shape}: lipverify reads {op} only as a sorting layer of a flat "
                       "vector (Reshape-TopK-Reshape, TopK of the whole vector, Split-Max/Min-Concat)", i)
    n = int(shape[0])
    if op == "TopK":
        self._check_io(i, x)
        k_in = node.input[1] if len(node.input) > 1 else ""
        if _axis(a, "axis", 2, -1) != 1 or k_in not in self.consts or int(self.consts[k_in].reshape(-1)[0]) != n or \
                not int(a.get("sorted", 1)):
            raise self.err(f"TopK is read only as a sort of the whole vector (axis 1, k = {n}, sorted=1)", i)
        largest = bool(int(a.get("largest", 1)))
        return [GroupSort(None, descending=True) if largest else FullSort()], node.output[0]
    why = ("Split is read only as the first node of Split (two equal halves, axis 1) → Max and Min of the halves → "
           "Concat on axis 1 (orthogonium's MaxMin)")
    outs = [t for t in node.output if t]
    halves = [n // 2, n // 2]
    split = [int(v) for v in self.consts[node.input[1]].reshape(-1)] if len(node.input) > 1 and node.input[1] in \
        self.consts else [int(v) for v in a.get("split", halves)]
    if len(outs) != 2 or n % 2 or split != halves or _axis(a, "axis", 2, 0) != 1:
        raise self.err(why, i)
    cons = [set(self.consumers.get(t, [])) for t in outs]
    if cons[0] != cons[1] or len(cons[0]) != 2 or {self._op(c) for c in cons[0]} != {"Max", "Min"}:
        raise self.err(why, i)
    pair = sorted(cons[0])
    if any(sorted(self.nodes[c].input) != sorted(outs) or len(self.nodes[c].output) != 1 for c in pair):
        raise self.err(why, i)
    results = [self.nodes[c].output[0] for c in pair]
    cat = self._only_consumer(results[0])
    if cat is None or self._only_consumer(results[1]) != cat or self._op(cat) != "Concat" or \
            _axis(self.attrs(cat), "axis", 2, 0) != 1 or sorted(self.nodes[cat].input) != sorted(results):
        raise self.err(why, i)
    if any(t in {o.name for o in self.graph.output} for t in (*outs, *results)):
        raise self.err(why, i)
    descending = self._op(pair[results.index(self.nodes[cat].input[0])]) == "Max"
    self.used.update((*pair, cat))
    return [_sort_layer(self, cat, n, 2, 1, descending)], self.nodes[cat].output[0]


_Importer._match_sort = _match_sort  # type: ignore[attr-defined]
_Importer._sort_node = _sort_node  # type: ignore[attr-defined]
