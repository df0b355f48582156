"""K3, the absolute-value path bound for l1 and l∞ (proof: ``proofs/k3.md``; residual blocks
``proofs/residual.md``)."""

from __future__ import annotations

import time
from fractions import Fraction

import numpy as np

from ..ir.graph import exact_matrices, graph_widths, lower
from ..ir.passes import abs_pass, exact_abs_pass
from ..network import Network
from ..norms import NormLike
from ..result import Bound
from .common import choose_graph_arithmetic, exact_upper_bound, graph_upper_bound, overflow_checked, require_norm


@overflow_checked
def k3(net: Network, norm: NormLike = "inf", *, conv: str | None = None, arithmetic: str = "auto") -> Bound:
    """K3 = ``|| |S_L| ⋯ |S_1| ||_p`` for p in {1, ∞}: ``|W|`` for a linear layer, ``max(|α|, |β|)`` (per neuron on
    an input box) for an activation, the window max / window sum for max pooling (``proofs/maxpool.md``), the
    sum of the branches for a residual block.

    One pass of a ones vector: forward for l∞ (max row sum), backward for l1 (max column sum).  Valid for all
    slope intervals; ``K4 <= K3 <= K*``.  Proof: ``proofs/k3.md``.

    >>> import lipverify as lv
    >>> net = lv.Network([lv.Dense([[1, -2], [0, 1]]), lv.ReLU(), lv.Dense([[1, 1]])])
    >>> float(lv.bound(net, "k3", norm="inf").value)
    4.0
    """
    started = time.perf_counter()
    p = require_norm("k3", norm, ("1", "inf"), "K3 bounds an l1/l∞ induced norm by a nonnegative matrix's row/column sums")
    graph = lower(net, conv, "k3")
    forward = p == "inf"
    exact = exact_matrices(graph)
    if choose_graph_arithmetic("k3", arithmetic, exact, graph_widths(graph), p):
        n = graph.n_in if forward else graph.n_out
        v = exact_abs_pass(graph.steps, np.array([Fraction(1)] * n, dtype=object), forward, exact)
        return exact_upper_bound("k3", p, max(v) if len(v) else Fraction(0), started)
    v = abs_pass(graph.steps, np.ones((1, graph.n_in if forward else graph.n_out)), forward)
    return graph_upper_bound("k3", p, float(np.max(v)) if v.size else 0.0, started, graph)
