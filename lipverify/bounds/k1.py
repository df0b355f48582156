"""K1, the Combettes–Pesquet bound, generalised to slope intervals (proof: ``proofs/k1.md``)."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from fractions import Fraction

import numpy as np
import scipy.sparse as sp

from ..errors import NotApplicableError
from ..ir.chain import LinearChain, exact_norm, to_fraction
from ..ir.graph import exact_matrices, lower
from ..ir.views import chain_of, check_dense_products
from ..network import Network
from ..norms import NormLike
from ..result import Bound, float_up
from ..rigorous import Interval, abs_norm_upper, up
from .common import choose_arithmetic, exact_upper_bound, float_upper_bound, graph_upper_bound, overflow_checked, require_norm


@overflow_checked
def k1(net: Network, norm: NormLike = 2, *, conv: str | None = None, arithmetic: str = "auto") -> Bound:
    """K1: every ``D_l = c_l I + r_l Δ_l`` with ``c = (α+β)/2``, ``r = (β-α)/2``, ``||Δ_l|| <= 1``; expanding
    the product and bounding each term by the norms of its uncut groups gives the recursion

    ``T_0 = 1``, ``T_k = sum_{j<k} T_j * (r_j if j >= 1 else 1) * prod_{j<l<k} |c_l| * ||W_k ⋯ W_{j+1}||``,

    and ``K1 = T_L``.  For slopes in ``[0, 1]`` this is Combettes–Pesquet's ``θ_L / 2^{L-1}``.  Valid in
    every p-norm (1, 2, ∞); ``K2 <= K1 <= K*``.  Cost: ``O(L^2)`` partial products.  Proof: ``proofs/k1.md``.

    Networks with max pooling, sorting layers (GroupSort/MaxMin/FullSort, norm 1: ``proofs/groupsort.md``) or
    residual blocks: K1 of each chain of linear and activation steps between
    them, multiplied by the max-pool norms (``||A_2 M A_1|| <= ||A_2|| ||M|| ||A_1||``, ``proofs/maxpool.md``)
    and, at a residual block, by the sum of its branches' values (``proofs/residual.md``).  Convolutions need
    their matrices (``conv='explicit'``, the default).
    """
    started = time.perf_counter()
    p = require_norm("k1", norm, ("1", "2", "inf"))
    graph = lower(net, "explicit", "k1")
    if graph.is_cnn and conv == "implicit":
        raise NotApplicableError("k1 with conv='implicit': K1 needs norms of partial products W_k ⋯ W_j of the "
                                 "layers, which are not computable from the kernels alone; use conv='explicit'")
    if graph.is_cnn or graph.has_maxpool or graph.has_sum or graph.has_sort:
        chains: list = []
        value = _k1_graph(graph.steps, graph.n_in, p, chains)
        return graph_upper_bound("k1", p, value, started, graph, {"segments": len(chains)})
    chain = chain_of(graph.steps, graph.n_in, exact_matrices(graph))
    use_exact = choose_arithmetic("k1", arithmetic, chain, p)
    if use_exact:
        return exact_upper_bound("k1", p, _k1_exact(chain, p), started)
    return float_upper_bound("k1", p, _k1_float(chain, p), started)


def _k1_exact(chain: LinearChain, p: str) -> Fraction:
    depth = chain.depth
    c = [abs(to_fraction(s.center)) for s in chain.slopes]
    r = [to_fraction(s.half_width) for s in chain.slopes]
    t = [Fraction(1)]
    for k in range(1, depth + 1):
        total = Fraction(0)
        for j in range(k):
            prod = chain.exact[j]
            for l in range(j + 1, k):
                prod = chain.exact[l] @ prod
            weight = t[j] * (r[j - 1] if j >= 1 else 1)
            for l in range(j + 1, k):
                weight *= c[l - 1]
            total += weight * exact_norm(prod, p)
        t.append(total)
    return t[depth]


def _k1_float(chain: LinearChain, p: str) -> float:
    depth = chain.depth
    c = [float_up(abs(s.center)) for s in chain.slopes]
    r = [float_up(s.half_width) for s in chain.slopes]
    prints = [_fingerprint(w, rad) for w, rad in zip(chain.weights, chain.radii)]
    # norms[j][k]: upper bound of ||W_k ⋯ W_{j+1}|| (1-based k), built by growing products to the left; a product seen
    # before (same weights and radii, bit for bit) takes its verified norm from the cache
    norms: dict[tuple[int, int], float] = {}
    for j in range(depth):
        if j >= 1 and r[j - 1] == 0.0:
            continue  # a cut at j contributes nothing
        prod, end = None, j  # prod encloses W_end ⋯ W_{j+1}, grown only when a norm must be computed
        for k in range(j + 1, depth + 1):
            key = (p, *prints[j:k])
            with _NORMS_LOCK:
                cached = _NORMS.get(key)
                if cached is not None:
                    _NORMS.move_to_end(key)
            if cached is not None:
                norms[(j, k)] = cached
                continue
            if prod is None:
                prod, end = Interval.point(_dense(chain.weights[j]), chain.radii[j]), j + 1
            while end < k:
                prod, end = prod.left_matmul(chain.weights[end], chain.radii[end]), end + 1
            norms[(j, k)] = abs_norm_upper(prod.mid, prod.rad, p)
            with _NORMS_LOCK:
                _NORMS[key] = norms[(j, k)]
                while len(_NORMS) > NORM_CACHE_SIZE:
                    _NORMS.popitem(last=False)
    t = [1.0]
    for k in range(1, depth + 1):
        total = 0.0
        for j in range(k):
            if (j, k) not in norms:
                continue
            weight = float(up(t[j] * r[j - 1])) if j >= 1 else t[j]
            for l in range(j + 1, k):
                weight = float(up(weight * c[l - 1]))
            total = float(up(total + float(up(weight * norms[(j, k)]))))
        t.append(total)
    return t[depth]


def _dense(w):
    return w.toarray() if hasattr(w, "toarray") else w


#: how many verified norms of partial products :func:`_k1_float` keeps (least recently used dropped first)
NORM_CACHE_SIZE = 256
_NORMS: OrderedDict[tuple, float] = OrderedDict()
_NORMS_LOCK = threading.Lock()  # a bound may be computed from several threads at once


def _fingerprint(w, rad) -> bytes:
    """A digest of a weight matrix (dense or sparse) and its radii, bit for bit: the cache key of its norms (a
    cryptographic hash, so two different matrices never share a key in practice; no identity or mutability
    assumption about the arrays)."""
    h = hashlib.blake2b(digest_size=20)
    if sp.issparse(w):
        w = sp.csr_matrix(w, copy=True)
        w.sum_duplicates()
        w.sort_indices()
        parts = [b"sparse", repr(w.shape).encode(), w.data.astype(np.float64), w.indices.astype(np.int64),
                 w.indptr.astype(np.int64)]
    else:
        parts = [b"dense", repr(np.shape(w)).encode(), np.ascontiguousarray(w, dtype=np.float64)]
    if rad is not None:
        parts += [b"radius", np.ascontiguousarray(_dense(rad), dtype=np.float64)]
    for part in parts:
        h.update(part if isinstance(part, bytes) else part.tobytes())
    return h.digest()


def _k1_graph(steps, width: int, p: str, chains: list) -> float:
    """K1 of the chains between max-pool steps and residual blocks, times the pool norms and the blocks' branch
    sums (each branch bounded the same way)."""
    value, segment = 1.0, []
    for s in list(steps) + [None]:
        if s is not None and s.kind in ("linear", "act"):
            segment.append(s)
            continue
        if segment:
            chain = chain_of(segment, width, None)
            check_dense_products([chain], "k1")
            chains.append(chain)
            value = float(up(value * _k1_float(chain, p)))
            width, segment = chain.n_out, []
        if s is None:
            break
        if s.kind in ("maxpool", "sort"):  # a sorting layer: norm 1 (proofs/groupsort.md)
            norm = s.op.norm_up(p)
            value, width = (value if norm == 1.0 else float(up(value * norm))), s.op.n_out  # a product by 1 is exact
        else:
            total = 0.0
            for branch in s.op:
                total = float(up(total + _k1_graph(branch.steps, width, p, chains)))
            value, width = float(up(value * total)), s.op[0].n_out
    return value
