"""K3, the absolute-value path bound for l1 and l∞ (proof: ``proofs/k3.md``)."""

from __future__ import annotations

import time
from fractions import Fraction

import numpy as np

from ..conv.dispatch import cnn as _cnn
from ..conv.dispatch import cnn_bound as _cnn_bound
from ..network import Network
from ..norms import NormLike
from ..result import Bound
from ..rigorous import add_up, matmul_up, up
from .chain import linear_chain, to_fraction
from .common import choose_arithmetic, exact_upper_bound, float_upper_bound, require_norm


def k3(net: Network, norm: NormLike = "inf", *, conv: str | None = None, arithmetic: str = "auto") -> Bound:
    """K3 = ``prod_l max(|α_l|, |β_l|) * || |W_L| |W_{L-1}| ⋯ |W_1| ||_p`` for p in {1, ∞}.

    One pass of a ones vector through the absolute weights: forward for l∞ (max row sum), backward for
    l1 (max column sum).  Valid for all slope intervals; ``K4 <= K3 <= K*``.  Proof: ``proofs/k3.md``.

    >>> import lipverify as lv
    >>> net = lv.Network([lv.Dense([[1, -2], [0, 1]]), lv.ReLU(), lv.Dense([[1, 1]])])
    >>> float(lv.bound(net, "k3", norm="inf").value)
    4.0
    """
    started = time.perf_counter()
    p = require_norm("k3", norm, ("1", "inf"), "K3 bounds an l1/l∞ induced norm by a nonnegative matrix's row/column sums")
    if _cnn(net, conv):  # convolutional networks: lipverify.conv (explicit or implicit)
        return _cnn_bound("k3", net, p, conv)
    chain = linear_chain(net, "k3")
    use_exact = choose_arithmetic("k3", arithmetic, chain, p)
    if p == "1":
        chain = chain.transpose()
    if use_exact:
        v = np.array([Fraction(1)] * chain.n_in, dtype=object)
        for w in chain.exact:
            v = np.abs(w) @ v
        value = max(v) if len(v) else Fraction(0)
        for s in chain.slopes:
            value *= to_fraction(s.magnitude)
        return exact_upper_bound("k3", p, value, started)
    v = np.ones((chain.n_in, 1))
    for l, (w, r) in enumerate(zip(chain.weights, chain.radii)):
        if l:  # the slope magnitudes of the activation before this layer (per neuron on an input box)
            lo, hi = chain.slopes[l - 1].per_neuron(v.shape[0])
            v = up(v * np.maximum(np.abs(lo), np.abs(hi))[:, None])
        a = abs(w)
        if r is not None:
            a = add_up(a.toarray() if hasattr(a, "toarray") else a, r)
        v = matmul_up(a, v)
    value = float(np.max(v)) if v.size else 0.0
    return float_upper_bound("k3", p, value, started)


