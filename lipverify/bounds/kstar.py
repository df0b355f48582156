"""K*, the product bound (proof: ``proofs/kstar.md``; residual blocks ``proofs/residual.md``)."""

from __future__ import annotations

import time

from ..ir.graph import exact_matrices, graph_widths, lower
from ..ir.passes import exact_kstar, kstar_up
from ..network import Network
from ..norms import NormLike
from ..result import Bound
from .common import choose_graph_arithmetic, exact_upper_bound, graph_upper_bound, overflow_checked, require_norm


@overflow_checked
def kstar(net: Network, norm: NormLike = 2, *, conv: str | None = None, arithmetic: str = "auto") -> Bound:
    """K* = ``prod_l ||W_l||_p * prod_l max(|alpha_l|, |beta_l|)``, an upper bound of the Lipschitz constant.

    Valid for every norm p in {1, 2, ∞} and all slope intervals; max pooling contributes its norm bound
    (``proofs/maxpool.md``) and a residual block ``S + F`` the sum of its branch values.  With exact (rational)
    weights the l1/l∞ value is computed exactly.  Proof: ``proofs/kstar.md``.

    >>> import lipverify as lv
    >>> net = lv.Network([lv.Dense([[1, -2], [0, 1]]), lv.ReLU(), lv.Dense([[1, 1]])])
    >>> lv.bound(net, "kstar", norm="inf").exact_value
    6
    """
    started = time.perf_counter()
    p = require_norm("kstar", norm, ("1", "2", "inf"))
    graph = lower(net, conv, "kstar")
    exact = exact_matrices(graph)
    if choose_graph_arithmetic("kstar", arithmetic, exact, graph_widths(graph), p):
        return exact_upper_bound("kstar", p, exact_kstar(graph.steps, p, exact), started)
    return graph_upper_bound("kstar", p, kstar_up(graph.steps, p), started, graph)
