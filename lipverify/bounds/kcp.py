"""KCP, the Combettes–Pesquet expansion with entrywise absolute values (proof: ``proofs/kcp.md``)."""

from __future__ import annotations

import time
from fractions import Fraction

import numpy as np

from ..ir.chain import LinearChain, to_fraction
from ..ir.views import linear_chain
from ..network import Network
from ..norms import NormLike
from ..result import Bound, float_up
from ..rigorous import Interval, _check_finite, add_up, matmul_up, up
from .common import choose_arithmetic, exact_upper_bound, float_upper_bound, require_norm


def kcp(net: Network, norm: NormLike = "inf", *, arithmetic: str = "auto") -> Bound:
    """KCP = ``max(T_L)`` (l∞; the transposed chain for l1), where ``T_0 = 1`` and

    ``T_k = sum_{j<k} (r_j if j >= 1 else 1) * prod_{j<l<k} |c_l| * |W_k ⋯ W_{j+1}| T_j``

    with ``c = (α+β)/2``, ``r = (β-α)/2`` per activation: the Combettes–Pesquet expansion of
    ``D_l = c_l I + (D_l - c_l I)`` with every term bounded entrywise.  ``T_k`` bounds the row sums of
    ``|W_k D_{k-1} ⋯ D_1 W_1|`` for every admissible ``D``.  For slopes in ``[0, 1]`` this is
    ``|| sum_cuts |W_L ⋯ W_{j+1}| ⋯ |W_i ⋯ W_1| ||_p / 2^{L-1}``.  l1 and l∞ only; ``K2 <= KCP <= K1`` and
    ``KCP <= K3`` (proof: ``proofs/kcp.md``).  Cost: ``O(L^2)`` partial products.

    >>> import lipverify as lv
    >>> net = lv.Network([lv.Dense([[1, -2], [0, 1]]), lv.ReLU(), lv.Dense([[1, 1]])])
    >>> float(lv.bound(net, "kcp", norm="inf").value)
    3.0
    """
    started = time.perf_counter()
    p = require_norm("kcp", norm, ("1", "inf"), "KCP bounds an l1/l∞ induced norm by entrywise magnitudes")
    chain = linear_chain(net, "kcp")
    use_exact = choose_arithmetic("k1", arithmetic, chain, p)  # same O(L^2) work profile as K1
    if p == "1":
        chain = chain.transpose()
    if use_exact:
        rows = kcp_rows_exact(chain)
        return exact_upper_bound("kcp", p, max(rows, default=Fraction(0)), started)
    rows = kcp_rows(chain)
    return float_upper_bound("kcp", p, float(np.max(rows)) if rows.size else 0.0, started)


def kcp_rows(chain: LinearChain) -> np.ndarray:
    """Float upper bounds of the row sums of ``|W_L D ⋯ D W_1|`` over all admissible ``D`` (rigorous)."""
    depth = chain.depth
    c = [float_up(abs(s.center)) for s in chain.slopes]
    r = [float_up(s.half_width) for s in chain.slopes]
    # prods[j]: interval enclosure of W_k ⋯ W_{j+1} (grown to the left), for the cuts j that contribute
    t: list[np.ndarray] = [np.ones((chain.n_in, 1))]
    prods: dict[int, Interval] = {}
    for k in range(1, depth + 1):
        w, rad = chain.weights[k - 1], chain.radii[k - 1]
        for j in list(prods):
            prods[j] = prods[j].left_matmul(w, rad)
        if k == 1 or r[k - 2] != 0.0:
            prods[k - 1] = Interval.point(_dense(w), rad)
        total = np.zeros((w.shape[0], 1))
        for j, prod in prods.items():
            weight = 1.0 if j == 0 else r[j - 1]
            for l in range(j + 1, k):
                weight = float(up(weight * c[l - 1]))
            if weight == 0.0:
                continue
            term = matmul_up(prod.magnitude(), t[j])
            total = add_up(total, up(term * weight))
        t.append(total)
    return _check_finite(t[depth][:, 0], "kcp")


def kcp_rows_exact(chain: LinearChain) -> list[Fraction]:
    """The same row bounds in exact rational arithmetic (needs ``chain.exact``)."""
    depth = chain.depth
    c = [abs(to_fraction(s.center)) for s in chain.slopes]
    r = [to_fraction(s.half_width) for s in chain.slopes]
    t = [np.array([Fraction(1)] * chain.n_in, dtype=object)]
    prods: dict[int, np.ndarray] = {}
    for k in range(1, depth + 1):
        w = chain.exact[k - 1]
        for j in list(prods):
            prods[j] = w @ prods[j]
        if k == 1 or r[k - 2] != 0:
            prods[k - 1] = w
        total = np.array([Fraction(0)] * w.shape[0], dtype=object)
        for j, prod in prods.items():
            weight = Fraction(1) if j == 0 else r[j - 1]
            for l in range(j + 1, k):
                weight *= c[l - 1]
            if weight:
                total = total + weight * (np.abs(prod) @ t[j])
        t.append(total)
    return list(t[depth])


def _dense(w):
    return w.toarray() if hasattr(w, "toarray") else np.asarray(w, dtype=np.float64)
