"""K*, the product bound (proof: ``proofs/kstar.md``)."""

from __future__ import annotations

import time
from fractions import Fraction

from ..conv.dispatch import cnn as _cnn
from ..conv.dispatch import cnn_bound as _cnn_bound
from ..network import Network
from ..norms import NormLike
from ..result import Bound, float_up
from ..rigorous import abs_norm_upper, up
from .chain import exact_norm, linear_chain, to_fraction
from .common import choose_arithmetic, exact_upper_bound, float_upper_bound, require_norm


def kstar(net: Network, norm: NormLike = 2, *, conv: str | None = None, arithmetic: str = "auto") -> Bound:
    """K* = ``prod_l ||W_l||_p * prod_l max(|alpha_l|, |beta_l|)``, an upper bound of the Lipschitz constant.

    Valid for every norm p in {1, 2, ∞} and all slope intervals; see ``proofs/kstar.md``.  With exact
    (rational) weights the l1/l∞ value is computed exactly.

    >>> import lipverify as lv
    >>> net = lv.Network([lv.Dense([[1, -2], [0, 1]]), lv.ReLU(), lv.Dense([[1, 1]])])
    >>> lv.bound(net, "kstar", norm="inf").exact_value
    6
    """
    started = time.perf_counter()
    p = require_norm("kstar", norm, ("1", "2", "inf"))
    if _cnn(net, conv):  # convolutional networks: lipverify.conv (explicit or implicit)
        return _cnn_bound("kstar", net, p, conv)
    chain = linear_chain(net, "kstar")
    use_exact = choose_arithmetic("kstar", arithmetic, chain, p)
    if use_exact:
        value = Fraction(1)
        for w in chain.exact:
            value *= exact_norm(w, p)
        for s in chain.slopes:
            value *= to_fraction(s.magnitude)
        return exact_upper_bound("kstar", p, value, started)
    value = 1.0
    for w, r in zip(chain.weights, chain.radii):
        value = float(up(value * abs_norm_upper(w, r, p)))
    for s in chain.slopes:
        value = float(up(value * float_up(s.magnitude)))
    return float_upper_bound("kstar", p, value, started)
