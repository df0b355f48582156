"""The one representation every bias-free bound works on: a network lowered to a graph of steps.

``f(x) - f(y) = S_L ⋯ S_1 (x - y)`` where each step ``S`` is

* ``"linear"`` — a linear layer's operator (:mod:`lipverify.ir.operators`: a dense matrix, a sparse matrix,
  a convolution, an average pooling, a batch-norm scale, a nearest upsampling; biases cancel; a 1-D layer is its
  2-D layer on ``(C, 1, L)``);
* ``"act"`` — a diagonal with entries in an activation's slope interval (:class:`Slopes`: per layer, or
  per neuron after narrowing on an input box); consecutive activations compose;
* ``"maxpool"`` — a max-pooling matrix ``M >= 0`` whose rows lie in the simplex of their windows
  (:mod:`lipverify.ir.pooling`, ``proofs/maxpool.md``);
* ``"sort"`` — a sorting layer (GroupSort/MaxMin/FullSort): ``M`` in the convex hull of the in-group permutations
  (:class:`lipverify.sort.SortOp`, ``proofs/groupsort.md``);
* ``"sum"`` — a residual block: the sum of its branch graphs (the identity branch has no steps;
  ``proofs/residual.md``).

The variant ``"exact"`` builds no float operators (``op`` is ``None`` for linear steps, symbolic weights are
allowed): the exact methods read each step's layer (``source``) for its sympy matrices.

A sequential network is the special case without ``"sum"`` steps.  The *representation* chooses the
operators of convolutional layers: ``"implicit"`` (matrix-free) or ``"explicit"`` (scipy.sparse matrices);
dense layers are their matrix in both.  :func:`lower` is the one place that reads layer types for the
bounds; matrix views (:mod:`lipverify.ir.views`) are derived from the graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from ..conv.layers import BATCHNORM_LAYERS, LAYERS_1D, AvgPool2d, Conv2d, MaxPool2d, Upsample
from ..errors import LipVerifyError, NotApplicableError, UnsupportedLayerError
from ..layers import Activation, Dense, Flatten, slope_pair
from .chain import Slopes

if TYPE_CHECKING:
    from ..network import Network
    from .operators import BatchedOp

VARIANTS = ("implicit", "explicit")
#: the explicit representation is refused when the layer matrices would have more nonzeros than this in total
EXPLICIT_NNZ_LIMIT = 40_000_000
CONV_LAYERS = (Conv2d, MaxPool2d, AvgPool2d, *BATCHNORM_LAYERS, Upsample, *LAYERS_1D)


@dataclass(frozen=True)
class Step:
    """One step of a :class:`Graph`.  ``op`` is a :class:`~lipverify.ir.operators.BatchedOp` (``"linear"``),
    :class:`Slopes` (``"act"``), a pool (``"maxpool"``) or a tuple of branch graphs (``"sum"``).  ``index`` is the
    top-level layer index in the network, ``layer`` the layer's description, ``layers`` the indices of the
    activations composed into an ``"act"`` step, ``source`` the layer objects of the step (the composed activations
    in order, for an ``"act"`` step) and ``shape`` its input shape: passes that evaluate the network at a point
    (the certified lower bound) read them."""

    kind: str
    op: Any
    index: int
    layer: str
    layers: tuple[int, ...] = ()
    source: tuple = ()
    shape: tuple = ()


@dataclass(frozen=True)
class Graph:
    steps: tuple[Step, ...]
    n_in: int
    n_out: int
    variant: str
    #: True when a convolutional or pooling layer was lowered (reported as ``details["conv"]``)
    is_cnn: bool = False

    @property
    def has_maxpool(self) -> bool:
        return any(s.kind == "maxpool" or (s.kind == "sum" and any(b.has_maxpool for b in s.op)) for s in self.steps)

    @property
    def has_sort(self) -> bool:
        return any(s.kind == "sort" for s in self.walk())

    @property
    def has_sum(self) -> bool:
        return any(s.kind == "sum" for s in self.steps)

    def walk(self):
        """Every step, those inside residual branches included (depth first)."""
        for s in self.steps:
            yield s
            if s.kind == "sum":
                for b in s.op:
                    yield from b.walk()


def check_variant(conv: str | None) -> str:
    if conv is None:
        return "implicit"
    if conv not in VARIANTS:
        raise ValueError(f"conv must be 'implicit' or 'explicit' (or None for the default), got {conv!r}")
    return conv


def _all_layers(layers):
    for layer in layers:
        yield layer
        yield from _all_layers(getattr(layer, "layers", ()))


def is_cnn(net: Network) -> bool:
    """True when the network holds a convolutional or pooling layer (inside residual blocks too)."""
    return any(isinstance(layer, CONV_LAYERS) for layer in _all_layers(net.layers))


def conv_variants(net: Network, conv: str | None) -> bool:
    """Validate ``conv`` for every network; True when ``net`` is convolutional (then ``conv`` selects the
    representation)."""
    check_variant(conv)
    return is_cnn(net)


def explicit_nnz(net: Network) -> int:
    """An upper bound of the number of nonzeros of the explicit layer matrices (residual branches included)."""
    total = 0
    for i, layer in enumerate(net.layers):
        out = net.shapes[i + 1]
        if isinstance(layer, LAYERS_1D):
            layer = layer.as_2d
        if isinstance(layer, Conv2d):
            _, cg, kh, kw = layer.kernel_shape
            total += int(np.prod(out)) * cg * kh * kw
        elif isinstance(layer, (AvgPool2d, MaxPool2d)):
            total += int(np.prod(out)) * layer.kernel_size[0] * layer.kernel_size[1]
        elif isinstance(layer, Dense):
            total += layer.n_in * layer.n_out
        elif isinstance(layer, (*BATCHNORM_LAYERS, Upsample)):
            total += int(np.prod(out))
        elif hasattr(layer, "branches"):
            total += sum(explicit_nnz(b) for b in layer.branches(net.shapes[i]) if b is not None)
    return total


def lower(net: Network, variant: str | None = "implicit", method: str = "this method") -> Graph:
    """Lower ``net`` into its :class:`Graph`; ``variant`` is ``"implicit"`` (operators) or ``"explicit"``
    (sparse matrices) for the convolutional layers.  A layer no step represents raises
    :class:`~lipverify.UnsupportedLayerError` naming its index and type; nothing is skipped."""
    variant = "exact" if variant == "exact" else check_variant(variant)
    if net.free_symbols and variant != "exact":
        raise LipVerifyError(
            f"{method}: the network has symbolic parameters {sorted(map(str, net.free_symbols))}; "
            "numeric bounds need numbers: use net.subs({...}) first, or lv.exact for a formula"
        )
    cnn = is_cnn(net)
    if variant == "explicit" and cnn:
        nnz = explicit_nnz(net)
        if nnz > EXPLICIT_NNZ_LIMIT:
            raise NotApplicableError(
                f"{method} with conv='explicit': the layer matrices would have about {nnz} nonzeros "
                f"(limit {EXPLICIT_NNZ_LIMIT}, lipverify.ir.graph.EXPLICIT_NNZ_LIMIT); use conv='implicit'"
            )
    return Graph(_lower(net, variant, method, None), net.n_in, net.n_out, variant, cnn)


def _lower(net: Network, variant: str, method: str, outer: tuple[int, str] | None) -> tuple[Step, ...]:
    steps: list[Step] = []
    for i, layer in enumerate(net.layers):
        shape = net.shapes[i]
        name = layer.describe() if outer is None else f"{outer[1]}, its layer {i} ({layer.describe()})"
        index = i if outer is None else outer[0]
        if isinstance(layer, LAYERS_1D):  # the 2-D layer on (C, 1, L): the same flat vectors (proofs/cnn_explicit.md)
            layer, shape = layer.as_2d, layer.shape_2d(shape)
        if isinstance(layer, Activation):
            s = Slopes(*slope_pair(layer), *getattr(layer, "neuron_slopes", (None, None)))
            composed: tuple[int, ...] = (index,)
            source: tuple = (layer,)
            if steps and steps[-1].kind == "act":
                prev = steps.pop()
                s, composed, source = prev.op.compose(s), prev.layers + composed, prev.source + source
            steps.append(Step("act", s, index, name, composed, source, shape))
        elif isinstance(layer, Flatten):
            continue
        elif variant == "exact" and not isinstance(layer, Dense) and isinstance(layer, CONV_LAYERS):
            raise UnsupportedLayerError(
                f"{method}: layer {index} ({name}) is not supported; exact constants are computed for networks of "
                "Dense, Flatten and elementwise activation layers (and residual blocks of them)")
        elif isinstance(layer, MaxPool2d):
            from .pooling import SparsePool, TensorPool

            pool = SparsePool(layer, shape) if variant == "explicit" else TensorPool(layer, shape)
            steps.append(Step("maxpool", pool, index, name, source=(layer,), shape=shape))
        elif isinstance(layer, (Conv2d, AvgPool2d, Dense, *BATCHNORM_LAYERS, Upsample)):
            op = None if variant == "exact" else linear_op(layer, shape, variant)  # the exact view reads the layer
            steps.append(Step("linear", op, index, name, source=(layer,), shape=shape))
        elif getattr(layer, "step_kind", None) == "sort":  # GroupSort / MaxMin / FullSort (proofs/groupsort.md)
            from ..sort import SortOp

            steps.append(Step("sort", SortOp(layer, shape), index, name, source=(layer,), shape=shape))
        elif hasattr(layer, "branches"):  # a residual block: y = shortcut(x) + body(x)
            body, short = layer.branches(shape)
            where = (index, name if outer is None else name)
            branches = tuple(Graph(_lower(b, variant, method, where), b.n_in, b.n_out, variant)
                             for b in (body, short) if b is not None)
            if short is None:  # the identity shortcut
                branches += (Graph((), body.n_out, body.n_out, variant),)
            steps.append(Step("sum", branches, index, name, source=(layer,), shape=shape))
        else:
            where = f"layer {i} ({layer.describe()})" if outer is None else f"layer {outer[0]} ({name})"
            raise UnsupportedLayerError(
                f"{method}: {where} is not supported (the bounds represent Dense, Conv1d/2d, AvgPool1d/2d, "
                "MaxPool1d/2d, BatchNorm1d/2d, Upsample, Flatten, elementwise activations, GroupSort/MaxMin/FullSort "
                "and Residual blocks)")
    return tuple(steps)


def linear_op(layer, shape, variant: str) -> BatchedOp:
    """The operator of a linear layer on input ``shape``: sparse matrix (explicit) or matrix-free (implicit)."""
    # here, not at the top: the operators subclass scipy.sparse.linalg.LinearOperator (slow to import)
    from .operators import ChannelScaleOp, ConvOp, DenseOp, SparseOp, UpsampleOp

    if isinstance(layer, LAYERS_1D):
        layer, shape = layer.as_2d, layer.shape_2d(shape)
    if isinstance(layer, Dense):
        return DenseOp(layer.weight, layer.weight_radius, layer)
    if isinstance(layer, (*BATCHNORM_LAYERS, Upsample)):
        op = ChannelScaleOp(layer.scale, layer.scale_radius, shape) if isinstance(layer, BATCHNORM_LAYERS) else \
            UpsampleOp(shape, layer.scales(shape))
        return op.sparse() if variant == "explicit" else op
    if isinstance(layer, AvgPool2d):
        conv = layer.as_conv(shape[0])
        _, r = layer.coefficient
        radius = np.full(conv.kernel_shape, r) if r else None
    else:
        conv, radius = layer, layer.weight_radius
    if variant == "implicit":
        return ConvOp(conv, shape) if conv is layer else ConvOp(conv, shape, conv.weight, radius)
    from .views import conv_matrix

    return SparseOp(*conv_matrix(conv, shape, radius))


def slope_magnitude(s: Slopes) -> float | np.ndarray:
    """Upper bound of ``max(|alpha|, |beta|)``: per neuron (array) when the slopes are per neuron, else a float."""
    if s.neuron_lo is not None:
        return np.maximum(np.abs(s.neuron_lo), np.abs(s.neuron_hi))
    from ..result import float_up

    return float_up(s.magnitude)


def exact_matrices(graph: Graph) -> dict[int, np.ndarray] | None:
    """``Fraction`` object matrices of every linear step (keyed by ``id(step)``) when every one is a dense layer
    given exactly and there is no pooling; else ``None`` (then the bounds use rigorous floating point)."""
    out: dict[int, np.ndarray] = {}
    for s in graph.walk():
        if s.kind == "maxpool":
            return None
        if s.kind == "linear":
            layer = getattr(s.op, "layer", None)
            if not isinstance(layer, Dense) or not layer.is_exact or not all(v.is_Rational for v in layer.weight_exact):
                return None
            out[id(s)] = fractions(layer)
        if s.kind == "act" and s.op.neuron_lo is not None:
            return None
    return out


def fractions(layer: Dense) -> np.ndarray:
    """A Dense layer's exact weights as a ``Fraction`` object matrix."""
    w = layer.weight_exact
    out = np.empty(w.shape, dtype=object)
    for i in range(w.rows):
        for j in range(w.cols):
            v = w[i, j]
            out[i, j] = Fraction(int(v.p), int(v.q))
    return out


def graph_widths(graph: Graph) -> list[int]:
    """The widths along the graph (residual branches counted by their own widths), for work estimates."""
    widths = [graph.n_in]
    for s in graph.walk():
        if s.kind == "linear":
            widths.append(s.op.shape[0])
    return widths
