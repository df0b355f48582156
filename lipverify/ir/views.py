"""Matrix views of the graph (:mod:`lipverify.ir.graph`) for the methods that need layer matrices.

:func:`linear_chain` is the :class:`~lipverify.ir.chain.LinearChain` of a network without pooling or residual
blocks (dense matrices; sparse ones for convolutional layers in the explicit representation);
:func:`segment_chains` cuts the explicit graph at its max-pool steps.  :func:`chain_steps` turns a chain back
into graph steps, so the passes of :mod:`lipverify.ir.passes` run on a view too (K2 and the lower bound
enclose products with per-neuron slopes that way).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from ..errors import NotApplicableError, UnsupportedLayerError
from .chain import IDENTITY_SLOPES, LinearChain, Slopes, fraction_identity
from .graph import Graph, Step, exact_matrices, lower

if TYPE_CHECKING:
    from ..conv.layers import Conv2d
    from ..network import Network

#: explicit K1 / K2 build dense partial products up to this many entries in total
DENSE_PRODUCT_LIMIT = 20_000_000


def linear_chain(net: Network, method: str = "this method") -> LinearChain:
    """The :class:`LinearChain` of a fully connected network (Dense, Flatten and activation layers)."""
    graph = lower(net, "explicit", method)
    refuse_sort(graph, method)
    for s in graph.steps:
        if graph.is_cnn or s.kind == "sum":
            kind = "a residual block" if s.kind == "sum" else "a convolutional network"
            layer = next(t for t in graph.steps if t.kind == "sum") if s.kind == "sum" else None
            where = f"layer {layer.index} ({layer.layer})" if layer is not None else "the network"
            raise UnsupportedLayerError(
                f"{method}: {where} is {kind}, which {method} does not represent: {method} handles fully connected "
                "networks only; for CNNs use kstar, k1, k2, k3 or k4 (conv='implicit' or conv='explicit'), for "
                "residual networks kstar, k1, k3 or k4")
    return chain_of(graph.steps, graph.n_in, exact_matrices(graph))


def segment_chains(net: Network, method: str) -> tuple[list[LinearChain], list, Graph]:
    """The explicit graph cut at its max-pool steps: one :class:`LinearChain` (sparse weights) per segment, and
    the pool steps between them.  Residual blocks raise :class:`NotApplicableError` (no single chain)."""
    graph = lower(net, "explicit", method)
    if graph.has_sum:
        raise NotApplicableError(f"{method}: a residual block is a sum of two chains, not one chain of layer matrices")
    refuse_sort(graph, method)
    chains, pools = cut_at_pools(graph.steps, graph.n_in)
    check_dense_products(chains, method)
    return chains, pools, graph


def refuse_sort(graph: Graph, method: str) -> None:
    """Refuse a graph with a sorting layer for the methods that need one chain of layer matrices and elementwise
    slopes (``proofs/groupsort.md``)."""
    for s in graph.walk():
        if s.kind == "sort":
            raise NotApplicableError(
                f"{method}: layer {s.index} ({s.layer}) is a sorting layer, which is not elementwise: {method} needs "
                "one chain of layer matrices with elementwise activations; for GroupSort/MaxMin/FullSort networks use "
                "kstar, k1, k3 or k4")


def cut_at_pools(steps, width: int) -> tuple[list[LinearChain], list]:
    """The chains of linear/act steps between max-pool steps, and the pools."""
    segments: list[list] = [[]]
    pools = []
    for s in steps:
        if s.kind == "maxpool":
            pools.append(s.op)
            segments.append([])
        else:
            segments[-1].append(s)
    chains = []
    for seg, pool in zip(segments, pools + [None]):
        chains.append(chain_of(seg, width, None))
        width = pool.n_out if pool is not None else chains[-1].n_out
    return chains, pools


def check_dense_products(chains, method: str) -> None:
    dense = 0
    for chain in chains:
        ws = chain.widths
        dense += sum(ws[j] * ws[k] for j in range(len(ws)) for k in range(j + 1, len(ws)))
    if dense > DENSE_PRODUCT_LIMIT:
        raise NotApplicableError(
            f"{method} with conv='explicit' needs dense partial products of the layer matrices ({dense} entries, limit "
            f"{DENSE_PRODUCT_LIMIT}); for this network use kstar, k3 or k4 with conv='implicit'"
        )


def cnn_chain(net: Network, method: str, conv: str | None) -> LinearChain:
    """The whole CNN as one :class:`LinearChain` of sparse matrices (explicit, no max pooling), for K2."""
    if conv == "implicit":
        raise NotApplicableError(f"{method} with conv='implicit': the vertex search evaluates products of the layer "
                                 "matrices; use conv='explicit'")
    chains, pools, _ = segment_chains(net, method)
    if pools:
        raise NotApplicableError(f"{method}: max pooling adds a polytope of selection matrices to the vertex search, "
                                 "which is not implemented; use k4 or k3 (or kstar)")
    return chains[0]


def chain_of(seg, width: int, exact: dict | None) -> LinearChain:
    """A :class:`LinearChain` from linear/act steps (see :mod:`lipverify.ir.chain` for the identity rules)."""
    weights: list = []
    radii: list = []
    slopes: list[Slopes] = []
    fracs: list | None = [] if exact is not None else None
    slot_layers: list[tuple[int, ...]] = []
    pending: Step | None = None
    for s in seg:
        if s.kind == "act":
            pending = s
            continue
        if pending is None and weights:
            pending = Step("act", IDENTITY_SLOPES, -1, "identity")
        if pending is not None:
            if not weights:  # the chain starts with an activation
                _append_identity(weights, radii, fracs, width)
            slopes.append(pending.op)
            slot_layers.append(pending.layers)
            pending = None
        w, r = matrix_of(s.op)
        weights.append(w)
        radii.append(r)
        if fracs is not None:
            fracs.append(exact[id(s)])
        width = w.shape[0]
    if not weights:
        _append_identity(weights, radii, fracs, width)
    if pending is not None:
        slopes.append(pending.op)
        slot_layers.append(pending.layers)
        _append_identity(weights, radii, fracs, width)
    return LinearChain(tuple(weights), tuple(radii), tuple(slopes), None if fracs is None else tuple(fracs),
                       tuple(slot_layers))


def _append_identity(weights: list, radii: list, exact: list | None, n: int) -> None:
    weights.append(sp.identity(n, format="csr", dtype=np.float64) if n > 64 else np.eye(n))
    radii.append(None)
    if exact is not None:
        exact.append(fraction_identity(n))


def matrix_of(op):
    """``(matrix, radius)`` of an explicit operator (dense radius, or ``None``)."""
    from .operators import DenseOp, SparseOp

    if isinstance(op, SparseOp):
        return op.matrix, None if op.radius is None else op.radius.toarray()
    if isinstance(op, DenseOp):
        return op.weight, op.radius
    raise TypeError(f"no explicit matrix for {type(op).__name__}")


def chain_steps(chain: LinearChain, alphas=None, betas=None) -> tuple[Step, ...]:
    """The chain as graph steps (operators built once per chain); ``alphas``/``betas`` replace the slopes per
    neuron (float arrays, outward rounded)."""
    from .operators import DenseOp, SparseOp

    ops = chain.__dict__.get("_ops")
    if ops is None:
        ops = []
        for w, r in zip(chain.weights, chain.radii):
            if sp.issparse(w):
                ops.append(SparseOp(sp.csr_matrix(w), None if r is None else sp.csr_matrix(r)))
            else:
                ops.append(DenseOp(np.asarray(w, dtype=np.float64), r))
        object.__setattr__(chain, "_ops", ops)  # a cache on the frozen chain (its weights never change)
    steps: list[Step] = [Step("linear", ops[0], 0, "W_1")]
    for l in range(1, chain.depth):
        s = chain.slopes[l - 1]
        if alphas is not None:
            s = Slopes(s.lo, s.hi, np.asarray(alphas[l - 1], dtype=np.float64), np.asarray(betas[l - 1], dtype=np.float64))
        steps.append(Step("act", s, l, f"D_{l}"))
        steps.append(Step("linear", ops[l], l, f"W_{l + 1}"))
    return tuple(steps)


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
