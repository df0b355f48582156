"""K2, the Virmaux–Scaman bound, by an anytime branch-and-bound (proof: ``proofs/k2.md``)."""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from ..ir.chain import LinearChain
from ..ir.graph import conv_variants
from ..ir.passes import enclose, linear_enclosure, scale_enclosure
from ..ir.views import chain_steps, cnn_chain, linear_chain
from ..network import Network
from ..norms import NormLike
from ..result import OUTWARD, Bound
from ..rigorous import (
    add_up,
    down,
    nonneg_spectral_upper,
    spectral_norm_lower,
    spectral_norm_upper,
    sum_down,
    sum_up,
    up,
)
from .common import require_norm
from .records import K2_NODES, limit_hint


def k2(net: Network, norm: NormLike = "inf", *, max_nodes: int = K2_NODES.default, time_limit: float | None = None,
       rel_tol: float = 1e-9, seed: int = 0, conv: str | None = None,
       progress: Callable[[int, int], None] | None = None) -> Bound:
    """An upper bound of the Lipschitz constant from K2 = ``max_{D_l ∈ {α_l, β_l}^{n_l}} ||W_L D_{L-1} ⋯ D_1 W_1||_p``
    (the sup over the slope box is attained at a vertex because the norm is convex), for p in {1, 2, ∞}.

    Best-first branch-and-bound over activation patterns.  A node fixes the first neurons to ``α`` or
    ``β`` and is bounded by the interval enclosure of :func:`lipverify.ir.passes.enclose` (the K4 bound
    with per-neuron slopes; for l2 the spectral norm of its magnitude), a leaf is evaluated with
    rigorous rounding.  l∞ splits by output row and l1 by input column.  NP-hard in general.  Dense chains are
    searched in batches (many nodes per numpy call, children starting from the stored enclosure of their parent's
    fully decided layers; ``proofs/k2.md`` §6), the sparse CNN chain one node at a time.

    The result is always ``kind="upper"``: K2 ignores the biases, so even K2 itself can exceed the constant
    (``relu(x) - relu(-x) = x`` has constant 1 and K2 = 2).  When the search closed, ``value`` is K2 to
    ``rel_tol`` and ``quantity_exact`` is true.  The budget is ``max_nodes`` search nodes (deterministic: the same
    network, ``seed`` and limit give the same value on every run); ``time_limit`` seconds is only an extra cap (none
    by default; ``compare`` passes its remaining time).  ``progress(nodes, max_nodes)`` is called every 50 nodes.
    When ``max_nodes`` or ``time_limit`` ran out, ``value`` is the
    minimum of the search's certified upper end and the cheaper bounds K*, K1 (and K4 in l1/l∞) on the same
    network, each ≥ K2 (``details["capped_by"]`` names the smallest).  ``details["best_vertex"]`` is the best
    vertex value found, a lower end of K2 — *not* a lower bound of the Lipschitz constant, so ``lower`` stays
    ``None`` — and ``details["k2_gap"] = value - best_vertex``.  Proof: ``proofs/k2.md``.

    >>> import lipverify as lv
    >>> net = lv.Network([lv.Dense([[1], [-1]]), lv.ReLU(), lv.Dense([[1, -1]])])   # relu(x) - relu(-x) = x
    >>> b = lv.bound(net, "k2", norm="inf")
    >>> round(b.value, 9), b.kind, b.quantity_exact, b.lower
    (2.0, 'upper', True, None)
    """
    started = time.perf_counter()
    p = require_norm("k2", norm, ("1", "2", "inf"))
    if max_nodes < 1 or (time_limit is not None and not time_limit > 0):
        raise ValueError(f"k2: max_nodes must be >= 1 and time_limit > 0, got {max_nodes}, {time_limit}")
    is_cnn = conv_variants(net, conv)
    if is_cnn:  # CNNs: the explicit sparse chain; no max pooling
        chain = cnn_chain(net, "k2", conv)
    else:
        chain = linear_chain(net, "k2")
    if p == "inf":
        chain = chain.transpose()
    deadline = math.inf if time_limit is None else started + time_limit
    dense = not any(sp.issparse(w) for w in chain.weights)
    search = (_FastSearch if dense else _Search)(chain, "2" if p == "2" else "1", max_nodes, deadline, rel_tol, seed,
                                                 progress)
    upper, best_vertex, closed, nodes = search.run()
    assumptions = ["floating point with rigorous rounding-error bounds"]
    details: dict = {"conv": "explicit"} if is_cnn else {}
    capped_by = "k2"
    if not closed:
        upper, capped_by, tried = _cap(net, p, upper, "explicit" if is_cnn else None)
        details["stopped_by"] = "max_nodes" if nodes >= max_nodes else "time_limit"
        ran_out = f"after {nodes} nodes" if nodes >= max_nodes else f"by the time cap of {time_limit:g} s"
        assumptions.append(f"K2 search stopped {ran_out}; for a closer bound raise the node budget, e.g. "
                           f"{limit_hint(K2_NODES, 10 * max_nodes)}")
        assumptions.append(f"K2 search out of budget: value = min(search upper end, {', '.join(tried)}) on the same "
                           f"network, each >= K2; here {'the search' if capped_by == 'k2' else capped_by} gave the minimum")
        details["capped_by"] = capped_by
    quantity_exact = closed and upper - best_vertex <= 4 * rel_tol * upper + 1e-300
    if quantity_exact:
        assumptions.append("K2 closed: value is the bias-free bound K2 itself (to rel_tol), still only an upper "
                           "bound of the Lipschitz constant")
    return Bound.upper_bound(upper, p, "k2", rounding=OUTWARD, seconds=time.perf_counter() - started,
                             quantity_exact=quantity_exact, assumptions=tuple(assumptions),
                             status="closed" if closed else "budget exhausted",
                             details={"nodes": nodes, "closed": closed, "best_vertex": best_vertex,
                                      "k2_gap": float(up(upper - best_vertex)), **details})


def _cap(net: Network, p: str, upper: float, conv: str | None) -> tuple[float, str, list[str]]:
    """``min(upper, K*, K1[, K4 in l1/l∞])`` on ``net`` and the name of the smallest (``"k2"`` for ``upper``):
    each is an upper bound of K2 (``K2 <= K1 <= K*``, ``K2 <= K4``; ``proofs/k2.md``).  A cheaper bound that
    fails (overflow, size limit) is left out."""
    from ..errors import LipVerifyError
    from .k1 import k1
    from .k4 import k4
    from .kstar import kstar

    methods = [("kstar", kstar), ("k1", k1)] + ([("k4", k4)] if p != "2" else [])
    best, who, tried = upper, "k2", []
    for name, fn in methods:
        try:
            v = fn(net, p, conv=conv).float_value()
        except LipVerifyError:
            continue
        tried.append(name)
        if v is not None and v < best:
            best, who = v, name
    return best, who, tried


class _Search:
    """Best-first search over the vertices of the slope box (one problem per column for l1)."""

    def __init__(self, chain: LinearChain, p: str, max_nodes: int, deadline: float, rel_tol: float, seed: int,
                 progress: Callable[[int, int], None] | None = None):
        self.chain, self.p, self.max_nodes, self.deadline, self.rel_tol = chain, p, max_nodes, deadline, rel_tol
        self.progress = progress
        self.rng = np.random.default_rng(seed)
        self.alphas, self.betas = chain.layer_slopes()
        # neurons whose slope interval is a point need no branching
        self.order = [(l, i) for l, a in enumerate(self.alphas) for i in range(a.size) if a[i] != self.betas[l][i]]
        self.problems = list(range(chain.n_in)) if p == "1" else [None]

    def _slopes(self, decisions: tuple[int, ...]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        a = [x.copy() for x in self.alphas]
        b = [x.copy() for x in self.betas]
        for (l, i), d in zip(self.order, decisions):
            if d:
                a[l][i] = b[l][i]
            else:
                b[l][i] = a[l][i]
        return a, b

    def evaluate(self, problem, decisions) -> tuple[float, float]:
        """``(upper, lower)`` for the node; ``lower`` is only meaningful at a leaf (else 0)."""
        a, b = self._slopes(decisions)
        cols = [problem] if problem is not None else slice(None)
        enc = enclose(self.chain, cols, a, b)
        leaf = len(decisions) == len(self.order)
        if self.p == "1":
            upper = float(np.max(sum_up(enc.magnitude(), axis=0)))
            lower = float(np.max(sum_down(np.maximum(down(np.abs(enc.mid) - enc.rad), 0.0), axis=0))) if leaf else 0.0
            return upper, lower
        if not leaf:
            return nonneg_spectral_upper(enc.magnitude()), 0.0
        # a leaf is a point matrix up to rounding: ||mid||_2 -/+ ||rad||_2
        rad = nonneg_spectral_upper(enc.rad) if np.any(enc.rad) else 0.0
        upper = float(up(spectral_norm_upper(enc.mid) + rad))
        # the lower end holds for every member of the enclosure (R12 of proofs/rigorous_arithmetic.md)
        return upper, spectral_norm_lower(enc.mid, enc.rad)

    def run(self) -> tuple[float, float, bool, int]:
        """Returns ``(upper, lower, closed, nodes)``; see ``proofs/k2.md`` for why ``upper`` is certified."""
        counter = itertools.count()
        heap: list = []
        best_lower, best_leaf_upper, nodes, reported = 0.0, 0.0, 0, 0
        pruned_max = 0.0  # the largest upper bound of a node dropped without being explored
        root_max = 0.0  # the largest root bound: a valid bound for every problem
        n = len(self.order)
        # a few vertices first, for a good incumbent: all-beta, all-alpha and random patterns
        starts = [tuple([1] * n), tuple([0] * n)] + [tuple(int(v) for v in self.rng.integers(0, 2, n)) for _ in range(4)]
        for problem in self.problems:
            for dec in starts if n else [()]:
                if dec != starts[0] and (nodes >= self.max_nodes or time.perf_counter() > self.deadline):
                    break
                u, lo = self.evaluate(problem, dec)
                nodes += 1
                best_lower, best_leaf_upper = max(best_lower, lo), max(best_leaf_upper, u)
            if n:
                u, _ = self.evaluate(problem, ())
                nodes += 1
                root_max = max(root_max, u)
                heapq.heappush(heap, (-u, next(counter), problem, ()))

        def threshold() -> float:
            # every node dropped so far had an upper bound <= this value
            return best_lower * (1 + self.rel_tol)

        while heap and -heap[0][0] > threshold():
            if nodes >= self.max_nodes or time.perf_counter() > self.deadline:
                break
            if self.progress is not None and nodes - reported >= 50:
                reported = nodes
                self.progress(nodes, self.max_nodes)
            _, _, problem, dec = heapq.heappop(heap)
            for choice in (1, 0):
                child = dec + (choice,)
                cu, clo = self.evaluate(problem, child)
                nodes += 1
                if len(child) == n:
                    best_lower, best_leaf_upper = max(best_lower, clo), max(best_leaf_upper, cu)
                elif cu > threshold():
                    heapq.heappush(heap, (-cu, next(counter), problem, child))
                else:
                    pruned_max = max(pruned_max, cu)
        return _outcome(heap, threshold(), best_leaf_upper, pruned_max, root_max, n, best_lower, nodes)


class _FastSearch:
    """:class:`_Search` for dense chains, batched (``proofs/k2.md`` §6): ``batch`` nodes are expanded per round in
    a few numpy calls, a node keeps the enclosure of the product of its fully decided layers (its children start
    from it); open nodes are kept in chunks of ``batch`` rows sorted by bound."""

    def __init__(self, chain: LinearChain, p: str, max_nodes: int, deadline: float, rel_tol: float, seed: int,
                 progress: Callable[[int, int], None] | None = None, batch: int = 256):
        self.chain, self.p, self.max_nodes, self.deadline, self.rel_tol = chain, p, max_nodes, deadline, rel_tol
        self.progress, self.batch = progress, max(1, batch)
        self.rng = np.random.default_rng(seed)
        self.alphas, self.betas = chain.layer_slopes()
        self.ops = [s.op for s in chain_steps(chain) if s.kind == "linear"]
        self.L = chain.depth
        # neurons whose slope interval is a point need no branching; layer by layer, as in _Search
        self.order = [(l, i) for l, a in enumerate(self.alphas) for i in range(a.size) if a[i] != self.betas[l][i]]
        self.n = len(self.order)
        # positions (in the order) and neuron indices of the branched neurons of each hidden layer
        self.pos = [np.array([k for k, (l2, _) in enumerate(self.order) if l2 == l], dtype=np.intp)
                    for l in range(self.L - 1)]
        self.neu = [np.array([i for (l2, i) in self.order if l2 == l], dtype=np.intp) for l in range(self.L - 1)]
        # cum[k] = number of branched neurons in the hidden layers 0..k-1
        self.cum = np.concatenate([[0], np.cumsum([len(q) for q in self.pos])]).astype(np.intp)
        self.problems = list(range(chain.n_in)) if p == "1" else [None]
        # prefix level (1 + the number of fully decided hidden layers) after each number of decisions
        self.level_at = [self._decided_layers(d) + 1 for d in range(self.n + 1)]

    def _decided_layers(self, depth: int) -> int:
        """The number of leading hidden layers whose branched neurons are all decided at ``depth`` decisions."""
        return int(np.searchsorted(self.cum, depth, side="right")) - 1

    def root_prefix(self, problem) -> tuple[int, np.ndarray, np.ndarray]:
        """``(1, mid, rad)``: the enclosure of ``W_1`` restricted to the problem's columns (rows = columns)."""
        n_in = self.chain.n_in
        if problem is None:
            start = np.eye(n_in)
        else:
            start = np.zeros((1, n_in))
            start[0, problem] = 1.0
        mid, rad = linear_enclosure(self.ops[0], start, np.zeros_like(start), True)
        return 1, mid, rad

    def _slopes(self, dec: np.ndarray, h: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-node slope arrays ``(b, 1, n_h)`` of hidden layer ``h`` for the decision rows ``dec`` (-1 = free)."""
        a0, b0 = self.alphas[h], self.betas[h]
        nb = dec.shape[0]
        a = np.broadcast_to(a0, (nb, a0.size)).copy()
        b = np.broadcast_to(b0, (nb, b0.size)).copy()
        pos, neu = self.pos[h], self.neu[h]
        if pos.size:
            d = dec[:, pos]
            a[:, neu] = np.where(d == 1, b0[neu], a0[neu])
            b[:, neu] = np.where(d == 0, a0[neu], b0[neu])
        return a[:, None, :], b[:, None, :]

    def evaluate(self, level: int, mids: np.ndarray, rads: np.ndarray, dec: np.ndarray, depths: np.ndarray):
        """Bounds of a group of nodes sharing the prefix level: ``(uppers, lowers, states)``; ``lowers`` only at
        leaves (else 0), ``states[m]`` the enclosure after ``W_m`` for ``m > level``."""
        mid, rad = mids, rads
        states = {}
        for h in range(level - 1, self.L - 1):
            a, b = self._slopes(dec, h)
            mid, rad = scale_enclosure(mid, rad, a, b)
            mid, rad = linear_enclosure(self.ops[h + 1], mid, rad, True)
            states[h + 2] = (mid, rad)
        leaf = depths == self.n
        nb = dec.shape[0]
        lowers = np.zeros(nb)
        if self.p == "1":
            mag = add_up(np.abs(mid), rad)
            uppers = np.max(sum_up(mag, axis=-1), axis=-1)
            if leaf.any():
                lo = sum_down(np.maximum(down(np.abs(mid[leaf]) - rad[leaf]), 0.0), axis=-1)
                lowers[leaf] = np.max(lo, axis=-1)
            return uppers, lowers, states
        uppers = np.zeros(nb)
        mag = add_up(np.abs(mid), rad)
        for k in range(nb):
            m, r = mid[k].T, rad[k].T
            if not leaf[k]:
                uppers[k] = nonneg_spectral_upper(mag[k].T)
                continue
            rn = nonneg_spectral_upper(r) if np.any(r) else 0.0
            uppers[k] = float(up(spectral_norm_upper(m) + rn))
            lowers[k] = spectral_norm_lower(m, r)
        return uppers, lowers, states

    def _evaluate_items(self, items):
        """``items``: ``(problem, dec_row, depth, prefix)``; returns per item ``(upper, lower, prefix or None)``."""
        out = [None] * len(items)
        groups: dict[int, list[int]] = {}
        for k, it in enumerate(items):
            groups.setdefault(it[3][0], []).append(k)
        for level, ks in groups.items():
            mids = np.stack([items[k][3][1] for k in ks])
            rads = np.stack([items[k][3][2] for k in ks])
            dec = np.stack([items[k][1] for k in ks])
            depths = np.array([items[k][2] for k in ks])
            uppers, lowers, states = self.evaluate(level, mids, rads, dec, depths)
            for j, k in enumerate(ks):
                depth = items[k][2]
                prefix = None
                if depth < self.n:
                    new_level = self.level_at[depth]
                    if new_level > level:
                        m, r = states[new_level]
                        prefix = (new_level, m[j], r[j])
                    else:
                        prefix = items[k][3]
                out[k] = (float(uppers[j]), float(lowers[j]), prefix)
        return out

    def _push(self, heap, counter, level, uppers, probs, depths, decs, mids, rads) -> None:
        """Push open nodes of one prefix level as chunks of ``batch`` rows, best first; a chunk's key is the largest
        bound in it (an upper bound of every vertex below its rows)."""
        order = np.argsort(-uppers, kind="stable")
        for c in range(0, order.size, self.batch):
            k = order[c:c + self.batch]
            heapq.heappush(heap, (-float(uppers[k[0]]), next(counter), level, uppers[k], probs[k], depths[k], decs[k],
                                  mids[k], rads[k]))

    def run(self) -> tuple[float, float, bool, int]:
        """Returns ``(upper, lower, closed, nodes)``; ``upper`` is certified as in :meth:`_Search.run`
        (``proofs/k2.md`` §4, §6)."""
        counter = itertools.count()
        heap: list = []
        best_lower, best_leaf_upper, nodes, reported = 0.0, 0.0, 0, 0
        pruned_max = 0.0  # the largest upper bound of a node dropped without being explored
        root_max = 0.0  # the largest root bound: a valid bound for every problem
        n = self.n
        starts = [np.ones(n, np.int8), np.zeros(n, np.int8)] + [self.rng.integers(0, 2, n).astype(np.int8)
                                                                 for _ in range(4)]
        for problem in self.problems:
            prefix = self.root_prefix(problem)
            room = max(1, self.max_nodes - nodes) if time.perf_counter() <= self.deadline else 1
            decs = starts[:min(len(starts), room)] if n else [np.zeros(0, np.int8)]
            res = self._evaluate_items([(problem, d, n, prefix) for d in decs])
            nodes += len(decs)
            for u, lo, _ in res:
                best_lower, best_leaf_upper = max(best_lower, lo), max(best_leaf_upper, u)
            if n:
                root = np.full(n, -1, np.int8)
                ((u, _, pre),) = self._evaluate_items([(problem, root, 0, prefix)])
                nodes += 1
                root_max = max(root_max, u)
                self._push(heap, counter, pre[0], np.array([u]), np.array([-1 if problem is None else problem]),
                           np.array([0]), root[None, :], pre[1][None], pre[2][None])

        def threshold() -> float:
            # every node dropped so far had an upper bound <= this value
            return best_lower * (1 + self.rel_tol)

        while heap and -heap[0][0] > threshold():
            budget = self.max_nodes - nodes
            if budget < 1 or time.perf_counter() > self.deadline:
                break
            if self.progress is not None and nodes - reported >= 50:
                reported = nodes
                self.progress(nodes, self.max_nodes)
            # pop chunks (best key first) until about `batch` rows are taken; rows at or below the threshold are dropped
            groups: dict[int, list] = {}
            taken = 0
            while heap and -heap[0][0] > threshold() and taken < self.batch and 2 * taken < budget:
                _, _, level, us, ps, ds, dec, mid, rad = heapq.heappop(heap)
                keep = us > threshold()
                if not keep.all():
                    pruned_max = max(pruned_max, float(np.max(us[~keep])))
                    us, ps, ds, dec, mid, rad = us[keep], ps[keep], ds[keep], dec[keep], mid[keep], rad[keep]
                room = max(1, (budget - 2 * taken + 1) // 2)  # the last pop may exceed the budget by one node
                if us.size > room:  # out of budget: the rest goes back, still open
                    self._push(heap, counter, level, us[room:], ps[room:], ds[room:], dec[room:], mid[room:], rad[room:])
                    us, ps, ds, dec, mid, rad = us[:room], ps[:room], ds[:room], dec[:room], mid[:room], rad[:room]
                if us.size:
                    groups.setdefault(level, []).append((ps, ds, dec, mid, rad))
                    taken += us.size
            for level, parts in groups.items():
                ps, ds, dec, mid, rad = (np.concatenate([q[i] for q in parts]) for i in range(5))
                # children: each parent row twice, beta (1) then alpha (0) at its next position
                ps2, ds2, mid2, rad2 = (np.repeat(x, 2, axis=0) for x in (ps, ds, mid, rad))
                dec2 = np.repeat(dec, 2, axis=0)
                rows = np.arange(dec2.shape[0])
                dec2[rows, ds2] = np.tile(np.array([1, 0], np.int8), dec.shape[0])
                ds2 = ds2 + 1
                uppers, lowers, states = self.evaluate(level, mid2, rad2, dec2, ds2)
                nodes += rows.size
                leaf = ds2 == n
                if leaf.any():
                    best_lower = max(best_lower, float(np.max(lowers[leaf])))
                    best_leaf_upper = max(best_leaf_upper, float(np.max(uppers[leaf])))
                inner = ~leaf
                if not inner.any():
                    continue
                low = inner & (uppers <= threshold())
                if low.any():
                    pruned_max = max(pruned_max, float(np.max(uppers[low])))
                live = inner & ~low
                new_levels = np.asarray(self.level_at, dtype=np.intp)[ds2]
                for nl in np.unique(new_levels[live]):
                    sel = live & (new_levels == nl)
                    m, r = (mid2, rad2) if nl == level else states[int(nl)]
                    self._push(heap, counter, int(nl), uppers[sel], ps2[sel], ds2[sel], dec2[sel], m[sel], r[sel])
        return _outcome(heap, threshold(), best_leaf_upper, pruned_max, root_max, n, best_lower, nodes)


def _outcome(heap, threshold: float, best_leaf_upper: float, pruned_max: float, root_max: float, n: int,
             best_lower: float, nodes: int):
    """``(upper, best_lower, closed, nodes)`` of a finished search: every vertex lies under an evaluated leaf, a
    pruned node or an open node, so the largest of their certified ends bounds K2 (capped by the root's bound)."""
    open_upper = -heap[0][0] if heap else 0.0
    upper = max(best_leaf_upper, pruned_max, open_upper)
    if n:
        upper = min(upper, root_max)
    return upper, best_lower, open_upper <= threshold, nodes
