"""A CNN as a program of bias-free steps, in the explicit or the implicit representation.

``f(x) - f(y) = S_L ⋯ S_1 (x - y)`` where every step ``S`` is a linear layer's operator (``"linear"``),
a diagonal with entries in an activation's slope interval (``"act"``), or a max-pooling matrix
``M >= 0`` whose rows lie in the simplex of their windows (``"maxpool"``; ``proofs/maxpool.md``).
Every bound of :mod:`lipverify.conv.bounds` is a pass over these steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from ..bounds.chain import Slopes
from ..errors import LipVerifyError, NotApplicableError, UnsupportedLayerError
from ..layers import Activation, Dense, Flatten, slope_pair
from ..network import Network
from ..rigorous import _check_finite, relative_factor, up
from . import ops
from .layers import AvgPool2d, BatchNorm2d, Conv2d, MaxPool2d

if TYPE_CHECKING:
    from .operators import BatchedOp

CONV_LAYERS = (Conv2d, MaxPool2d, AvgPool2d, BatchNorm2d)
VARIANTS = ("implicit", "explicit")

#: the explicit method refuses networks whose layer matrices have more nonzeros than this in total
EXPLICIT_NNZ_LIMIT = 40_000_000


def is_cnn(net: Network) -> bool:
    """True when the network holds a convolutional or pooling layer (then the CNN methods apply)."""
    return any(isinstance(layer, CONV_LAYERS) for layer in net.layers)


def check_variant(conv: str | None) -> str:
    if conv is None:
        return "implicit"
    if conv not in VARIANTS:
        raise ValueError(f"conv must be 'implicit' or 'explicit' (or None for the default), got {conv!r}")
    return conv


# --------------------------------------------------------------------------- pooling steps


class TensorPool:
    """Max pooling on tensors (implicit): window max forward, window sum of the transpose backward."""

    def __init__(self, layer: MaxPool2d, in_shape):
        self.layer = layer
        self.in_shape = tuple(in_shape)
        self.out_shape = layer.output_shape(self.in_shape)
        self.n_in = int(np.prod(self.in_shape))
        self.n_out = int(np.prod(self.out_shape))
        self.k = layer.kernel_size[0] * layer.kernel_size[1]
        self.overlap = layer.max_overlap(self.in_shape)

    def _win(self, v, fill):
        b = v.shape[0]
        lay = self.layer
        return ops.pool_windows(v.reshape(b, *self.in_shape), lay.kernel_size, lay.stride, lay.padding, fill)

    def window_max(self, v):
        return self._win(v, -np.inf).max(axis=(4, 5)).reshape(v.shape[0], -1)

    def window_min(self, v):
        return self._win(v, np.inf).min(axis=(4, 5)).reshape(v.shape[0], -1)

    def window_sum_t(self, u):
        b = u.shape[0]
        lay = self.layer
        out = ops.window_sum_transpose(u.reshape(b, *self.out_shape), self.in_shape[1:], lay.kernel_size, lay.stride,
                                       lay.padding)
        return out.reshape(b, -1)

    def window_sum_t_up(self, u):
        """Upper bound of ``S^T u`` for rows ``u >= 0`` (``S`` the 0/1 window matrix): sums of ``<= overlap`` terms."""
        return _check_finite(up(self.window_sum_t(u) * relative_factor(self.overlap)), "max-pool backward pass")

    def norm_up(self, p: str) -> float:
        """``sup ||M||_p`` over the max-pool set: 1 (l∞), max overlap (l1), sqrt(max overlap) (l2)."""
        if p == "inf":
            return 1.0
        if p == "1":
            return float(self.overlap)
        return float(up(math.sqrt(self.overlap)))


class SparsePool(TensorPool):
    """Max pooling through its 0/1 window matrix ``S`` (explicit): ``M <= S`` entrywise, same support."""

    def __init__(self, layer: MaxPool2d, in_shape):
        super().__init__(layer, in_shape)
        idx = layer.window_index(self.in_shape)
        rows = np.repeat(np.arange(idx.shape[0]), idx.shape[1])
        cols = idx.ravel()
        ok = cols >= 0
        self.matrix = sp.csr_matrix((np.ones(int(ok.sum())), (rows[ok], cols[ok])), shape=(self.n_out, self.n_in))
        self.matrix.sort_indices()
        self.matrix_t = self.matrix.T.tocsr()
        counts = np.diff(self.matrix_t.indptr)
        self.overlap = int(counts.max(initial=0))

    def window_max(self, v):
        m = self.matrix
        return np.maximum.reduceat(v[:, m.indices], m.indptr[:-1], axis=1)

    def window_min(self, v):
        m = self.matrix
        return np.minimum.reduceat(v[:, m.indices], m.indptr[:-1], axis=1)

    def window_sum_t(self, u):
        return np.asarray((self.matrix_t @ u.T).T)


# --------------------------------------------------------------------------- program


@dataclass(frozen=True)
class Step:
    kind: str  # "linear" | "act" | "maxpool"
    op: object = None  # BatchedOp | TensorPool | Slopes
    index: int = -1  # layer index in the network
    layer: str = ""


@dataclass(frozen=True)
class Program:
    steps: tuple[Step, ...]
    n_in: int
    n_out: int
    variant: str

    @property
    def has_maxpool(self) -> bool:
        return any(s.kind == "maxpool" for s in self.steps)

    @property
    def slope_scale(self) -> float:
        """Upper bound of ``prod max(|alpha|, |beta|)`` over the activation steps."""
        from ..result import float_up

        value = 1.0
        for s in self.steps:
            if s.kind == "act":
                value = float(up(value * float_up(s.op.magnitude)))
        return value


def explicit_nnz(net: Network) -> int:
    """An upper bound of the number of nonzeros of the explicit layer matrices."""
    total = 0
    for i, layer in enumerate(net.layers):
        out = net.shapes[i + 1]
        if isinstance(layer, Conv2d):
            _, cg, kh, kw = layer.kernel_shape
            total += int(np.prod(out)) * cg * kh * kw
        elif isinstance(layer, (AvgPool2d, MaxPool2d)):
            total += int(np.prod(out)) * layer.kernel_size[0] * layer.kernel_size[1]
        elif isinstance(layer, Dense):
            total += layer.n_in * layer.n_out
        elif isinstance(layer, BatchNorm2d):
            total += int(np.prod(out))
    return total


def build_program(net: Network, variant: str, method: str = "this method") -> Program:
    """Translate ``net`` into steps; ``variant`` is ``"implicit"`` (operators) or ``"explicit"`` (sparse matrices)."""
    variant = check_variant(variant)
    if net.free_symbols:
        raise LipVerifyError(
            f"{method}: the network has symbolic parameters {sorted(map(str, net.free_symbols))}; "
            "numeric bounds need numbers: use net.subs({...}) first"
        )
    if variant == "explicit":
        nnz = explicit_nnz(net)
        if nnz > EXPLICIT_NNZ_LIMIT:
            raise NotApplicableError(
                f"{method} with conv='explicit': the layer matrices would have about {nnz} nonzeros "
                f"(limit {EXPLICIT_NNZ_LIMIT}, lipverify.conv.program.EXPLICIT_NNZ_LIMIT); use conv='implicit'"
            )
    steps: list[Step] = []
    for i, layer in enumerate(net.layers):
        shape = net.shapes[i]
        name = layer.describe()
        if isinstance(layer, Activation):
            s = Slopes(*slope_pair(layer))
            if steps and steps[-1].kind == "act":
                prev = steps.pop()
                s = prev.op.compose(s)
            steps.append(Step("act", s, i, name))
        elif isinstance(layer, Flatten):
            continue
        elif isinstance(layer, MaxPool2d):
            pool = SparsePool(layer, shape) if variant == "explicit" else TensorPool(layer, shape)
            steps.append(Step("maxpool", pool, i, name))
        elif isinstance(layer, (Conv2d, AvgPool2d, Dense, BatchNorm2d)):
            steps.append(Step("linear", linear_op(layer, shape, variant), i, name))
        else:
            raise UnsupportedLayerError(f"{method}: layer {i} ({name}) is not supported by the CNN methods "
                                        "(supported: Conv2d, MaxPool2d, AvgPool2d, BatchNorm2d, Dense, Flatten, activations)")
    return Program(tuple(steps), net.n_in, net.n_out, variant)


def linear_op(layer, shape, variant: str) -> BatchedOp:
    """The operator of a linear layer on input ``shape``: sparse matrix (explicit) or matrix-free (implicit)."""
    # here, not at the top: the operators subclass scipy.sparse.linalg.LinearOperator (slow to import)
    from .operators import ChannelScaleOp, ConvOp, DenseOp, SparseOp

    if isinstance(layer, Dense):
        return DenseOp(layer.weight, layer.weight_radius, layer)
    if isinstance(layer, BatchNorm2d):
        op = ChannelScaleOp(layer.scale, layer.scale_radius, shape)
        return op.sparse() if variant == "explicit" else op
    if isinstance(layer, AvgPool2d):
        conv = layer.as_conv(shape[0])
        _, r = layer.coefficient
        radius = np.full(conv.kernel_shape, r) if r else None
    else:
        conv, radius = layer, layer.weight_radius
    if variant == "implicit":
        return ConvOp(conv, shape) if conv is layer else ConvOp(conv, shape, conv.weight, radius)
    return SparseOp(*conv_matrix(conv, shape, radius))


def conv_matrix(conv: Conv2d, shape, radius: np.ndarray | None = None) -> tuple[sp.csr_matrix, sp.csr_matrix | None]:
    """The matrix of a convolution on input ``shape`` (and of its kernel radius) as CSR matrices."""
    shape = tuple(shape)
    co, ho, wo = conv.output_shape(shape)
    n_in = int(np.prod(shape))
    has_r = radius is not None and bool(np.any(radius))
    kflat, rflat = conv.weight.ravel(), None if not has_r else radius.ravel()
    # built in blocks of output channels, so that the index arrays of only one block are alive at a time
    per = max(1, 4_000_000 // max(1, ho * wo * int(np.prod(conv.kernel_shape[1:]))))
    blocks, rblocks = [], []
    for start in range(0, co, per):
        chans = range(start, min(co, start + per))
        rows, cols, kidx = conv.taps(shape, chans)
        rows -= start * ho * wo
        size = (len(chans) * ho * wo, n_in)
        blocks.append(sp.csr_matrix((kflat[kidx], (rows, cols)), shape=size))
        if has_r:
            rblocks.append(sp.csr_matrix((rflat[kidx], (rows, cols)), shape=size))
        del rows, cols, kidx
    m = sp.vstack(blocks, format="csr")
    return m, sp.vstack(rblocks, format="csr") if has_r else None
