"""K*, K1, K3, K4 (and K2's chain) for CNNs, explicit or implicit (proofs: ``proofs/cnn_explicit.md``,
``proofs/cnn_implicit.md``, ``proofs/maxpool.md``).

Each bound is one pass over the steps of :func:`lipverify.conv.program.build_program`; the two
variants differ only in the representation of the linear steps (sparse matrix or matrix-free operator)
and of max pooling (window matrix or tensor windows), so they agree up to rounding.
"""

from __future__ import annotations

import time

import numpy as np

from ..bounds.chain import IDENTITY_SLOPES, LinearChain
from ..errors import NotApplicableError, NumericalError
from ..network import Network
from ..result import OUTWARD, Bound, float_up
from ..rigorous import Interval, down, gamma_up, matmul_up, sum_up, up
from .operators import DenseOp, SparseOp, bound_nonneg, check_finite
from .program import Program, build_program, check_variant

#: rows (K4 l∞) or columns (K4 l1) propagated together
BATCH = 256
#: explicit K1 / K2 build dense partial products up to this many entries in total
DENSE_PRODUCT_LIMIT = 20_000_000


def _result(method: str, p: str, value: float, started: float, prog: Program, **extra) -> Bound:
    how = {"implicit": "convolutions as matrix-free operators (conv='implicit')",
           "explicit": "layers as scipy.sparse matrices (conv='explicit')"}[prog.variant]
    details = {"conv": prog.variant, "maxpool": prog.has_maxpool}
    details.update(extra.pop("details", {}))
    return Bound.upper_bound(float(value), p, method, rounding=OUTWARD, seconds=time.perf_counter() - started,
                             assumptions=(how, "floating point with rigorous rounding-error bounds"), details=details,
                             **extra)


# --------------------------------------------------------------------------- K*


def cnn_kstar(net: Network, p: str, conv: str | None) -> Bound:
    """``prod_l ||W_l||_p * prod max(|alpha|, |beta|) * prod sup ||M||_p`` (max-pool norms of ``proofs/maxpool.md``)."""
    started = time.perf_counter()
    prog = build_program(net, check_variant(conv), "kstar")
    value = prog.slope_scale
    for s in prog.steps:
        if s.kind in ("linear", "maxpool"):
            value = float(up(value * s.op.norm_up(p)))
            if not np.isfinite(value):
                raise NumericalError(
                    f"kstar (conv={prog.variant}): the l{p} product of layer norms overflowed the float range at layer "
                    f"{s.index} ({s.layer}); no bound is reported (rescale the weights)")
    return _result("kstar", p, value, started, prog)


# --------------------------------------------------------------------------- K3


def cnn_k3(net: Network, p: str, conv: str | None) -> Bound:
    """``sup_M || |W_L| ⋯ M ⋯ |W_1| ||_p * prod max(|alpha|, |beta|)``: l∞ one forward pass of ones (window max
    at max pooling), l1 one backward pass (window sum)."""
    started = time.perf_counter()
    prog = build_program(net, check_variant(conv), "k3")
    if p == "inf":
        v = np.ones((1, prog.n_in))
        for s in prog.steps:
            if s.kind == "linear":
                v = s.op.abs_forward_up(v)
            elif s.kind == "maxpool":
                v = s.op.window_max(v)
    else:
        v = np.ones((1, prog.n_out))
        for s in reversed(prog.steps):
            if s.kind == "linear":
                v = s.op.abs_backward_up(v)
            elif s.kind == "maxpool":
                v = s.op.window_sum_t_up(v)
    value = float(up(float(np.max(v)) * prog.slope_scale)) if v.size else 0.0
    return _result("k3", p, value, started, prog)


# --------------------------------------------------------------------------- K4 (interval enclosure)


def _scale(mid: np.ndarray, rad: np.ndarray, a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    """Enclosure of ``{d x : a <= d <= b, |x - mid| <= rad}`` (as :meth:`Interval.scale_rows`, scalar slopes)."""
    if a == b and a in (0.0, 1.0, -1.0):
        return a * mid, rad if a else np.zeros_like(rad)
    if a == 0.0 and b == 1.0:
        return _scale_relu(mid, rad)
    lo, hi = down(mid - rad), up(mid + rad)
    cands = (a * lo, a * hi, b * lo, b * hi)
    iv = Interval.from_bounds(down(np.minimum.reduce(cands)), up(np.maximum.reduce(cands)))
    return iv.mid, iv.rad


def _scale_relu(mid: np.ndarray, rad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slopes ``[0, 1]``: ``{d x} = [min(lo, 0), max(hi, 0)]``.  Intervals containing 0 are kept as they are;
    ``lo >= 0`` (exactly ``mid >= rad``) gives ``[0, hi]`` with ``hi = up(mid + rad)``, stored as
    ``m = fl(hi / 2)``, ``r = max(hi - m, m)`` (``hi - m`` is exact by Sterbenz's lemma or gradual underflow,
    so ``m + r >= hi`` and ``m - r <= 0``); ``hi <= 0`` symmetrically (``proofs/cnn_implicit.md``)."""
    new_mid, new_rad = mid.copy(), rad.copy()
    m, t = np.empty_like(mid), np.empty_like(mid)
    for sign in (1.0, -1.0):  # lo >= 0, then hi <= 0 (mirrored: -[lo, hi] = [-hi, -lo])
        mask = (mid >= rad) if sign > 0 else (mid <= -rad)
        if not mask.any():
            continue
        np.multiply(mid, sign, out=t)
        np.add(t, rad, out=t)
        np.nextafter(t, np.inf, out=t)  # t = up(|hi|) of the mirrored interval [0, t]
        np.multiply(t, 0.5, out=m)
        np.subtract(t, m, out=t)  # exact
        np.maximum(t, m, out=t)
        np.multiply(m, sign, out=m)
        np.copyto(new_mid, m, where=mask)
        np.copyto(new_rad, t, where=mask)
    return new_mid, new_rad


def _linear(op, mid, rad, forward: bool):
    """Enclosure of ``{W x}`` (``W^T x`` backward) over ``|W - W_float| <= R``, ``|x - mid| <= rad``:
    ``mid' = fl(W mid)``, ``rad' >= (|W| + R)(rad + gamma_k |mid|) + R |mid| + 4 (k + 1) eta``."""
    k = op.k_forward if forward else op.k_backward
    new_mid = check_finite(op.forward(mid) if forward else op.backward(mid), "K4 interval pass")
    absmid = np.abs(mid)
    t = absmid * gamma_up(k)
    t += rad
    np.nextafter(t, np.inf, out=t)  # t >= gamma_k |mid| + rad: one rounded product, one rounded sum, up (R2)
    new_rad = bound_nonneg(op.abs_forward(t) if forward else op.abs_backward(t), k, extra=4 * (k + 1))
    if op.has_radius:
        new_rad = up(new_rad + (op.radius_forward_up(absmid) if forward else op.radius_backward_up(absmid)))
    return new_mid, new_rad


def _pool(pool, mid, rad, forward: bool):
    """Max pooling on column enclosures (forward): ``[min_window lo, max_window hi]`` (``proofs/maxpool.md``)."""
    if not forward:
        raise ValueError("max pooling is propagated forward only (K4 l∞ switches to K3 before the last max pool)")
    lo, hi = down(mid - rad), up(mid + rad)
    iv = Interval.from_bounds(pool.window_min(lo), pool.window_max(hi))
    return iv.mid, iv.rad


def enclosure_rows(steps, start: np.ndarray, forward: bool) -> tuple[np.ndarray, np.ndarray]:
    """Push the point rows ``start`` through ``steps`` (forward: columns of the product; backward: its rows)."""
    mid, rad = start, np.zeros_like(start)
    steps = tuple(steps) if forward else tuple(reversed(steps))
    for s in steps:
        if s.kind == "linear":
            mid, rad = _linear(s.op, mid, rad, forward)
        elif s.kind == "act":
            mid, rad = _scale(mid, rad, s.op.lo_float, s.op.hi_float)
        else:
            mid, rad = _pool(s.op, mid, rad, forward)
    return mid, rad


def _k3_rows(steps, n_in: int) -> np.ndarray:
    """Upper bound ``v`` of the row sums ``|A| 1`` of every product ``A`` of ``steps`` (K3 forward pass,
    window max at max pooling, slope magnitudes included)."""
    v = np.ones((1, n_in))
    scale = 1.0
    for s in steps:
        if s.kind == "linear":
            v = s.op.abs_forward_up(v)
        elif s.kind == "maxpool":
            v = s.op.window_max(v)
        else:
            scale = float(up(scale * float_up(s.op.magnitude)))
    return up(v[0] * scale)


def cnn_k4(net: Network, p: str, conv: str | None) -> Bound:
    """``|| max(|lo|, |hi|) ||_p`` for an interval enclosure ``[lo, hi]`` of every product ``W_L D ⋯ M ⋯ W_1``:
    l1 from the ``n_in`` columns (forward passes), l∞ from the ``n_out`` rows (backward passes), batched.

    l∞ with max pooling: the rows are enclosed only after the last max-pool layer ``M``; for a row ``w`` there
    and the product ``A`` before ``M``, ``||w^T M A||_1 <= sum_q |w_q| max_{k in window(q)} (|A| 1)_k``, with
    ``|A| 1`` bounded by a K3 forward pass (``proofs/maxpool.md``).  So K4 <= K3 also with max pooling."""
    started = time.perf_counter()
    prog = build_program(net, check_variant(conv), "k4")
    forward = p == "1"
    steps = prog.steps
    weights = None  # l∞ with max pooling: window max of the K3 row sums before the last max-pool layer
    if not forward and prog.has_maxpool:
        last = max(i for i, s in enumerate(steps) if s.kind == "maxpool")
        weights = steps[last].op.window_max(_k3_rows(steps[:last], prog.n_in)[None, :])[0]
        steps = steps[last + 1:]
    n = prog.n_in if forward else prog.n_out
    value = 0.0
    for begin in range(0, n, BATCH):
        m = min(BATCH, n - begin)
        start = np.zeros((m, n))
        start[np.arange(m), begin + np.arange(m)] = 1.0
        mid, rad = enclosure_rows(steps, start, forward)
        mag = up(np.abs(mid) + rad)
        sums = sum_up(mag, axis=1) if weights is None else matmul_up(mag, weights[:, None])[:, 0]
        value = max(value, float(np.max(sums)))
    return _result("k4", p, value, started, prog, details={"maxpool_rule": "k3 before the last max pool"}
                   if weights is not None else {})


# --------------------------------------------------------------------------- K1 / K2 through FC chains


def segment_chains(net: Network, method: str) -> tuple[list[LinearChain], list, Program]:
    """The explicit program cut at its max-pool steps: one :class:`LinearChain` (sparse weights) per segment,
    and the pool steps between them."""
    prog = build_program(net, "explicit", method)
    dense = 0
    segments: list[list] = [[]]
    pools = []
    for s in prog.steps:
        if s.kind == "maxpool":
            pools.append(s.op)
            segments.append([])
        else:
            segments[-1].append(s)
    chains = []
    width = prog.n_in
    for seg, pool in zip(segments, pools + [None]):
        chain = _chain(seg, width)
        ws = chain.widths
        dense += sum(ws[j] * ws[k] for j in range(len(ws)) for k in range(j + 1, len(ws)))
        chains.append(chain)
        width = pool.n_out if pool is not None else width
    if dense > DENSE_PRODUCT_LIMIT:
        raise NotApplicableError(
            f"{method} with conv='explicit' needs dense partial products of the layer matrices ({dense} entries, limit "
            f"{DENSE_PRODUCT_LIMIT}); for this network use kstar, k3 or k4 with conv='implicit'"
        )
    return chains, pools, prog


def _chain(seg: list, width: int) -> LinearChain:
    """A :class:`LinearChain` from linear/act steps, as :func:`lipverify.bounds.chain.linear_chain` builds it."""
    weights: list = []
    radii: list = []
    slopes: list = []
    pending = None
    for s in seg:
        if s.kind == "act":
            pending = s.op if pending is None else pending.compose(s.op)
            continue
        if pending is None and weights:
            pending = IDENTITY_SLOPES
        if pending is not None:
            if not weights:
                weights.append(_identity(width))
                radii.append(None)
            slopes.append(pending)
            pending = None
        w, r = _matrix(s.op)
        weights.append(w)
        radii.append(r)
        width = w.shape[0]
    if not weights:
        weights.append(_identity(width))
        radii.append(None)
    if pending is not None:
        slopes.append(pending)
        weights.append(_identity(width))
        radii.append(None)
    return LinearChain(tuple(weights), tuple(radii), tuple(slopes), None)


def _identity(n: int):
    import scipy.sparse as sp

    return sp.identity(n, format="csr", dtype=np.float64)


def _matrix(op):
    if isinstance(op, SparseOp):
        return op.matrix, None if op.radius is None else op.radius.toarray()
    if isinstance(op, DenseOp):
        return op.weight, op.radius
    raise TypeError(f"no explicit matrix for {type(op).__name__}")


def cnn_k1(net: Network, p: str, conv: str | None) -> Bound:
    """K1 of each segment between max-pool layers (the FC recursion on sparse matrices), multiplied by the
    max-pool norms: ``||A_2 M A_1|| <= ||A_2|| ||M|| ||A_1||``.  Explicit only."""
    started = time.perf_counter()
    if check_variant(conv) == "implicit" and conv is not None:
        raise NotApplicableError("k1 with conv='implicit': K1 needs norms of partial products W_k ⋯ W_j of the "
                                 "layers, which are not computable from the kernels alone; use conv='explicit'")
    from ..bounds.k1 import _k1_float

    chains, pools, prog = segment_chains(net, "k1")
    value = 1.0
    for chain in chains:
        value = float(up(value * _k1_float(chain, p)))
    for pool in pools:
        value = float(up(value * pool.norm_up(p)))
    return _result("k1", p, value, started, prog, details={"segments": len(chains)})


def cnn_chain(net: Network, method: str, conv: str | None) -> LinearChain:
    """The whole network as one :class:`LinearChain` of sparse matrices, for K2 (explicit, no max pooling)."""
    if check_variant(conv) == "implicit" and conv is not None:
        raise NotApplicableError(f"{method} with conv='implicit': the vertex search evaluates products of the layer "
                                 "matrices; use conv='explicit'")
    chains, pools, _ = segment_chains(net, method)
    if pools:
        raise NotApplicableError(f"{method}: max pooling adds a polytope of selection matrices to the vertex search, "
                                 "which is not implemented; use k4 or k3 (or kstar)")
    return chains[0]

