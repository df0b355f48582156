"""K4, the sign-aware path bound for l1 and l∞ (proof: ``proofs/k4.md``; max pooling ``proofs/maxpool.md``;
residual blocks ``proofs/residual.md``)."""

from __future__ import annotations

import time
from fractions import Fraction

import numpy as np

from ..ir.chain import fraction_identity
from ..ir.graph import exact_matrices, graph_widths, lower
from ..ir.passes import abs_pass, enclosure_rows, exact_enclosure, k3_rows
from ..network import Network
from ..norms import NormLike
from ..result import Bound
from ..rigorous import matmul_up, sum_up, up
from .common import choose_graph_arithmetic, exact_upper_bound, graph_upper_bound, overflow_checked, require_norm

#: rows (l∞) or columns (l1) propagated together (memory: two float matrices of batch x width per layer)
BATCH = 256


@overflow_checked
def k4(net: Network, norm: NormLike = "inf", *, conv: str | None = None, arithmetic: str = "auto") -> Bound:
    """K4 = ``|| max(|lo|, |hi|) ||_p`` for p in {1, ∞}, where ``[lo, hi]`` encloses every product
    ``W_L D_{L-1} ⋯ D_1 W_1`` with ``D_l`` in its slope box (max-pool matrices and residual sums included).

    For slopes in ``[0, 1]``: ``P_1 = W_1⁺``, ``N_1 = W_1⁻``, ``P_{l+1} = W⁺P + W⁻N``, ``N_{l+1} = W⁺N + W⁻P``, and
    K4 = ``½ || |W_L|⋯|W_1| + |W_L⋯W_1| ||_p``.  General intervals use exact interval products.  l1 encloses
    the ``n_in`` input columns (forward passes), l∞ the ``n_out`` output rows (backward passes), batched.

    l∞ with max pooling: the rows are enclosed only after the last max-pool layer ``M``; for a row ``w`` there
    and the product ``A`` before ``M``, ``||w^T M A||_1 <= sum_q |w_q| max_{k in window(q)} (|A| 1)_k``, with
    ``|A| 1`` bounded by a K3 forward pass (``proofs/maxpool.md``).  Sorting layers (``proofs/groupsort.md``): l∞ cuts
    at the last one the same way (group max of the K3 row sums); l1 encloses the columns only up to the first one ``M``
    and weighs them with the group max of the K3 column sums after it, ``||A M B||_1 <= max_j sum_k
    max_{q in group(k)} (1^T |A|)_q |B_kj|``.  So ``K2 <= K4 <= K3``.  Proof: ``proofs/k4.md``.

    >>> import lipverify as lv
    >>> net = lv.Network([lv.Dense([[1, -2], [0, 1]]), lv.ReLU(), lv.Dense([[1, 1]])])
    >>> float(lv.bound(net, "k4", norm="inf").value)
    3.0
    """
    started = time.perf_counter()
    p = require_norm("k4", norm, ("1", "inf"), "K4 bounds an l1/l∞ induced norm by entrywise magnitudes")
    graph = lower(net, conv, "k4")
    exact = None if graph.has_sort else exact_matrices(graph)  # sorting layers: the float cut rule below
    if choose_graph_arithmetic("k4", arithmetic, exact, graph_widths(graph), p):
        eye = fraction_identity(graph.n_in if p == "1" else graph.n_out)
        lo, hi = exact_enclosure(graph.steps, eye, eye, exact, forward=p == "1")
        mag = np.maximum(np.abs(lo), np.abs(hi))  # columns: of the product (l1) or of its transpose (l∞)
        return exact_upper_bound("k4", p, max((sum(v, Fraction(0)) for v in mag.T), default=Fraction(0)), started)
    forward = p == "1"
    steps = graph.steps
    weights = None  # l∞ with max pooling: window max of the K3 row sums before the last max-pool layer
    if not forward and any(s.kind in ("maxpool", "sort") for s in steps):
        last = max(i for i, s in enumerate(steps) if s.kind in ("maxpool", "sort"))
        rows = k3_rows(steps[:last], graph.n_in)[None, :]
        weights = (steps[last].op.window_max(rows) if steps[last].kind == "maxpool" else steps[last].op.group_max(rows))[0]
        steps = steps[last + 1:]
    elif forward and any(s.kind == "sort" for s in steps):  # l1: columns enclosed up to the first sorting layer
        first = min(i for i, s in enumerate(steps) if s.kind == "sort")
        weights = steps[first].op.group_max(abs_pass(steps[first + 1:], np.ones((1, graph.n_out)), False))[0]
        steps = steps[:first]
    n = graph.n_in if forward else graph.n_out
    value = 0.0
    for begin in range(0, n, BATCH):
        m = min(BATCH, n - begin)
        start = np.zeros((m, n))
        start[np.arange(m), begin + np.arange(m)] = 1.0
        mid, rad = enclosure_rows(steps, start, forward)
        mag = up(np.abs(mid) + rad)
        sums = sum_up(mag, axis=1) if weights is None else matmul_up(mag, weights[:, None])[:, 0]
        value = max(value, float(np.max(sums, initial=0.0)))
    details = {}
    if weights is not None:
        details = {"maxpool_rule": "k3 before the last max pool"} if graph.has_maxpool and not graph.has_sort else \
            {"cut_rule": "k3 beyond the first (l1) / before the last (l∞) max pool or sorting layer"}
    return graph_upper_bound("k4", p, value, started, graph, details)
