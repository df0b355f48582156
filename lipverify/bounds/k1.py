"""K1, the Combettes–Pesquet bound, generalised to slope intervals (proof: ``proofs/k1.md``)."""

from __future__ import annotations

import time
from fractions import Fraction

from ..conv.dispatch import cnn as _cnn
from ..conv.dispatch import cnn_bound as _cnn_bound
from ..network import Network
from ..norms import NormLike
from ..result import Bound, float_up
from ..rigorous import Interval, abs_norm_upper, up
from .chain import LinearChain, exact_norm, linear_chain, to_fraction
from .common import choose_arithmetic, exact_upper_bound, float_upper_bound, require_norm


def k1(net: Network, norm: NormLike = 2, *, conv: str | None = None, arithmetic: str = "auto") -> Bound:
    """K1: every ``D_l = c_l I + r_l Δ_l`` with ``c = (α+β)/2``, ``r = (β-α)/2``, ``||Δ_l|| <= 1``; expanding
    the product and bounding each term by the norms of its uncut groups gives the recursion

    ``T_0 = 1``, ``T_k = sum_{j<k} T_j * (r_j if j >= 1 else 1) * prod_{j<l<k} |c_l| * ||W_k ⋯ W_{j+1}||``,

    and ``K1 = T_L``.  For slopes in ``[0, 1]`` this is Combettes–Pesquet's ``θ_L / 2^{L-1}``.  Valid in
    every p-norm (1, 2, ∞); ``K2 <= K1 <= K*``.  Cost: ``O(L^2)`` partial products.  Proof: ``proofs/k1.md``.
    """
    started = time.perf_counter()
    p = require_norm("k1", norm, ("1", "2", "inf"))
    if _cnn(net, conv):  # convolutional networks: lipverify.conv (explicit or implicit)
        return _cnn_bound("k1", net, p, conv)
    chain = linear_chain(net, "k1")
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
    # norms[j][k]: upper bound of ||W_k ⋯ W_{j+1}|| (1-based k), built by growing products to the left
    norms: dict[tuple[int, int], float] = {}
    for j in range(depth):
        if j >= 1 and r[j - 1] == 0.0:
            continue  # a cut at j contributes nothing
        prod = Interval.point(_dense(chain.weights[j]), chain.radii[j])
        norms[(j, j + 1)] = abs_norm_upper(prod.mid, prod.rad, p)
        for k in range(j + 2, depth + 1):
            prod = prod.left_matmul(chain.weights[k - 1], chain.radii[k - 1])
            norms[(j, k)] = abs_norm_upper(prod.mid, prod.rad, p)
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
