"""K4, the sign-aware path bound for l1 and l∞ (proof: ``proofs/k4.md``)."""

from __future__ import annotations

import time
from fractions import Fraction

import numpy as np

from ..conv.dispatch import cnn as _cnn
from ..conv.dispatch import cnn_bound as _cnn_bound
from ..network import Network
from ..norms import NormLike
from ..result import Bound
from ..rigorous import sum_up
from .chain import linear_chain
from .common import choose_arithmetic, exact_upper_bound, float_upper_bound, require_norm
from .enclosure import enclose, enclose_exact

#: columns propagated together (memory: two float matrices of width x batch per layer)
BATCH = 512


def k4(net: Network, norm: NormLike = "inf", *, conv: str | None = None, arithmetic: str = "auto") -> Bound:
    """K4 = ``|| max(P_L, N_L) ||_p`` for p in {1, ∞}, where ``[-N_L, P_L]`` encloses every
    ``W_L D_{L-1} ⋯ D_1 W_1`` with ``D_l`` in its slope box.

    For slopes in ``[0, 1]``: ``P_1 = W_1⁺``, ``N_1 = W_1⁻``, ``P_{l+1} = W⁺P + W⁻N``,
    ``N_{l+1} = W⁺N + W⁻P``, and K4 = ``½ || |W_L|⋯|W_1| + |W_L⋯W_1| ||_p``.  General intervals use exact
    interval products.  l1 propagates the ``n_in`` input columns, l∞ the ``n_out`` output rows (the
    transposed chain).  ``K2 <= K4 <= K3``.  Proof: ``proofs/k4.md``.

    >>> import lipverify as lv
    >>> net = lv.Network([lv.Dense([[1, -2], [0, 1]]), lv.ReLU(), lv.Dense([[1, 1]])])
    >>> float(lv.bound(net, "k4", norm="inf").value)
    3.0
    """
    started = time.perf_counter()
    p = require_norm("k4", norm, ("1", "inf"), "K4 bounds an l1/l∞ induced norm by entrywise magnitudes")
    if _cnn(net, conv):  # convolutional networks: lipverify.conv (explicit or implicit)
        return _cnn_bound("k4", net, p, conv)
    chain = linear_chain(net, "k4")
    use_exact = choose_arithmetic("k4", arithmetic, chain, p)
    if p == "inf":
        chain = chain.transpose()
    if use_exact:
        lo, hi = enclose_exact(chain)
        mag = np.maximum(np.abs(lo), np.abs(hi))
        value = max((sum(col, Fraction(0)) for col in mag.T), default=Fraction(0))
        return exact_upper_bound("k4", p, value, started)
    value = 0.0
    for start in range(0, chain.n_in, BATCH):
        cols = np.arange(start, min(start + BATCH, chain.n_in))
        mag = enclose(chain, cols).magnitude()
        value = max(value, float(np.max(sum_up(mag, axis=0))))
    return float_upper_bound("k4", p, value, started)
