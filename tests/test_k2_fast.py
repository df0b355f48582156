"""The batched K2 search (``_FastSearch``, ``proofs/k2.md`` §6) against brute-force vertex enumeration written here."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import lipverify as lv
from lipverify.bounds.k2 import _FastSearch
from lipverify.ir.views import linear_chain


def _net(seed: int, widths, act=lv.ReLU):
    rng = np.random.default_rng(seed)
    ws = [rng.standard_normal((widths[i + 1], widths[i])) / np.sqrt(widths[i]) for i in range(len(widths) - 1)]
    layers: list = []
    for w in ws:
        layers += [lv.Dense(w), act()]
    return lv.Network(layers[:-1]), ws


def _norm(m: np.ndarray, p: str) -> float:
    if p == "1":
        return float(np.abs(m).sum(axis=0).max())
    if p == "inf":
        return float(np.abs(m).sum(axis=1).max())
    return float(np.linalg.svd(m, compute_uv=False)[0])


def _brute(ws, p: str, slopes=(0.0, 1.0)) -> float:
    """max over all vertices of ||W_L D ... D W_1||_p, every pattern in one dense numpy product per layer."""
    hidden = [w.shape[0] for w in ws[:-1]]
    n = sum(hidden)
    pats = np.array(list(itertools.product(slopes, repeat=n)))  # (2^n, n)
    prod = np.broadcast_to(ws[0], (len(pats),) + ws[0].shape)
    start = 0
    for w, h in zip(ws[1:], hidden):
        prod = w @ (pats[:, start:start + h, None] * prod)
        start += h
    return max(_norm(m, p) for m in prod)


@pytest.mark.parametrize("p", ["1", "2", "inf"])
@pytest.mark.parametrize("widths", [(3, 4, 3, 2), (2, 5, 3), (2, 3, 3, 3, 2)])
def test_closed_k2_equals_brute_force(p, widths):
    net, ws = _net(7, widths)
    b = lv.bound(net, "k2", norm=p, max_nodes=10**6)
    best = _brute(ws, p)
    assert b.details["closed"] and b.kind == "upper"
    assert b.value >= best * (1 - 1e-13)
    if p != "2":  # l2 leaves are bounded by ||mid|| + ||rad|| (tight); l1/l∞ exactly up to rounding
        assert b.quantity_exact
    assert b.value == pytest.approx(best, rel=1e-7)
    assert b.details["best_vertex"] <= best * (1 + 1e-13)


def test_leaky_slopes_and_point_neurons_match_brute_force():
    # LeakyReLU(1/4) slopes {1/4, 1}; the identity-slope layer of two Dense layers in a row is not branched
    rng = np.random.default_rng(3)
    ws = [rng.standard_normal((4, 3)), rng.standard_normal((3, 4)), rng.standard_normal((2, 3))]
    net = lv.Network([lv.Dense(ws[0]), lv.LeakyReLU(0.25), lv.Dense(ws[1]), lv.LeakyReLU(0.25), lv.Dense(ws[2])])
    for p in ("1", "inf"):
        b = lv.bound(net, "k2", norm=p, max_nodes=10**6)
        best = _brute(ws, p, slopes=(0.25, 1.0))
        assert b.quantity_exact and best * (1 - 1e-13) <= b.value == pytest.approx(best, rel=1e-9)


@pytest.mark.parametrize("p", ["1", "2"])
def test_node_bounds_dominate_every_vertex_below_them(p):
    widths = (3, 4, 3, 2)
    net, ws = _net(11, widths)
    chain = linear_chain(net, "k2")
    s = _FastSearch(chain, p, 10**6, float("inf"), 1e-9, 0)
    assert s.n == 7
    rng = np.random.default_rng(0)
    problems = s.problems
    for problem in problems:
        prefix = s.root_prefix(problem)
        for depth in range(s.n + 1):
            for _ in range(3):
                dec = np.full(s.n, -1, np.int8)
                dec[:depth] = rng.integers(0, 2, depth)
                # follow the search's prefix reuse: parent prefix at depth - 1 where possible
                (u, _, _), = s._evaluate_items([(problem, dec, depth, prefix)])
                for tail in itertools.product((0, 1), repeat=s.n - depth):
                    v = np.concatenate([dec[:depth], np.array(tail, np.int8)])
                    d1, d2 = np.diag(v[:4].astype(float)), np.diag(v[4:].astype(float))
                    m = ws[2] @ d2 @ ws[1] @ d1 @ ws[0]
                    val = np.abs(m[:, problem]).sum() if p == "1" else _norm(m, "2")
                    assert u >= val * (1 - 1e-15)


def test_reused_prefix_bounds_dominate_vertices():
    # a node whose first hidden layer is decided carries the enclosure after W_2; its children use it
    net, ws = _net(5, (2, 3, 3, 2))
    s = _FastSearch(linear_chain(net, "k2"), "1", 10**6, float("inf"), 1e-9, 0)
    for problem in s.problems:
        root = s.root_prefix(problem)
        for first in itertools.product((0, 1), repeat=3):
            dec = np.full(6, -1, np.int8)
            dec[:3] = first
            (_, _, pre), = s._evaluate_items([(problem, dec, 3, root)])
            assert pre[0] == 2  # level: after W_2
            for second in itertools.product((0, 1), repeat=3):
                child = dec.copy()
                child[3:] = second
                (u, lo, _), = s._evaluate_items([(problem, child, 6, pre)])
                m = ws[2] @ np.diag(np.array(second, float)) @ ws[1] @ np.diag(np.array(first, float)) @ ws[0]
                val = np.abs(m[:, problem]).sum()
                assert lo <= val <= u and u == pytest.approx(val, rel=1e-12)


def test_budget_is_deterministic_and_capped():
    net, _ = _net(2, (3, 8, 8, 2))
    runs = [lv.bound(net, "k2", norm="inf", max_nodes=300) for _ in range(2)]
    assert runs[0].value == runs[1].value and runs[0].details == runs[1].details
    assert runs[0].details["stopped_by"] == "max_nodes" and runs[0].details["nodes"] <= 301
    full = lv.bound(net, "k2", norm="inf", max_nodes=10**6)
    assert runs[0].value >= full.value * (1 - 1e-12) and full.quantity_exact


def test_progress_callback_is_called():
    net, _ = _net(4, (3, 8, 8, 2))
    seen = []
    lv.bound(net, "k2", norm="2", max_nodes=400, progress=lambda a, b: seen.append((a, b)))
    assert seen and all(b == 400 and 0 < a <= 401 for a, b in seen)


def test_no_branched_neuron_is_one_leaf():
    # two Dense layers in a row: the identity slopes are points, K2 = ||W2 W1||
    rng = np.random.default_rng(9)
    w1, w2 = rng.standard_normal((3, 2)), rng.standard_normal((2, 3))
    net = lv.Network([lv.Dense(w1), lv.Dense(w2)])
    for p in ("1", "2", "inf"):
        b = lv.bound(net, "k2", norm=p)
        exact = _norm(w2 @ w1, p)
        assert b.details["closed"] and exact * (1 - 1e-13) <= b.value == pytest.approx(exact, rel=1e-9)
