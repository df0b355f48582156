"""The soundness property over every registered method (DESIGN §1, §2), against an independent oracle.

The oracle (``tests/_oracle.py``) shares no code with lipverify's methods: exact activation-region enumeration
by LPs for small piecewise-linear nets, dense float Jacobians at random points otherwise.  On every generated
network and in every norm:

* each ``upper`` value of every method in ``lv.METHODS`` is at least the oracle's lower value;
* only ``lv.exact`` may say ``kind="exact"``; every ``lower`` end of a row and every ``lv.lower_bound`` is at
  most the oracle's upper value (piecewise-linear nets, where the oracle has one) and every upper row;
* the known orderings hold (``||W_L⋯W_1|| <= K2 <= K4 <= K3 <= K*`` for l1/l∞, ``K2 <= K1 <= K*`` in every norm);
* ``lv.exact`` on the small piecewise-linear nets equals the oracle's constant.

Slack: the oracle's norms carry a float error allowance ``err`` (see ``_oracle``) and every comparison allows a
relative 1e-9 on top: the values compared are computed by different float programs (each library value is
rounded outward on its own, the oracle's Jacobian products are plain float), whose relative disagreement is a
few hundred ulps at these sizes (depth <= 4, width <= 5), far below 1e-9; near the underflow range outward
rounding is coarse, hence 1e-150 absolute.  Rows without a value are counted: after the run every method must
have produced a value in a minimum share of the examples for every norm it supports.
Under the ``ci`` profile the default suite runs 120 examples in all (70 float, 25 rational, 25 piecewise-linear
networks); the long run (marked ``slow``: CI's slow job, before the default suite) runs 630 (430, 100, 100), so a CI
run checks 750.
"""

from __future__ import annotations

import os
from collections import Counter
from fractions import Fraction

import _oracle
import numpy as np
import pytest
from hypothesis import given, settings

import lipverify as lv
from lipverify.ir.views import linear_chain
from lipverify.strategies import MORE_ACTIVATIONS, groupsort_networks, networks, residual_networks

CI = os.environ.get("HYPOTHESIS_PROFILE") == "ci"
#: examples of the three properties (float, rational, piecewise linear): the default suite (120 in all under ``ci``,
#: which keeps the README's test command under 5 minutes) and the long run of the slow job (630 in all)
EXAMPLES = {"default": (70, 25, 25) if CI else (40, 20, 20), "long": (430, 100, 100)}
#: examples of the residual property (default suite under ``ci`` / dev profile, and the long run)
RESIDUAL_EXAMPLES = {"default": 30 if CI else 15, "long": 100}
#: examples of the property over the newer activations
NEWER_EXAMPLES = {"default": 20 if CI else 10, "long": 80}
RUNS = [pytest.param("default"), pytest.param("long", marks=pytest.mark.slow)]
TOL = 1e-9
#: options that keep the anytime and SDP methods quick on generated nets
OPTIONS = {"k2": {"time_limit": 2.0, "max_nodes": 5000}}
#: the norms each method is defined for (a row without a value for one of these counts as missing)
SUPPORTED = {"kstar": ("1", "2", "inf"), "k1": ("1", "2", "inf"), "k2": ("1", "2", "inf"), "k3": ("1", "inf"),
             "k4": ("1", "inf"), "kcp": ("1", "inf"), "ksdp": ("1", "inf"), "lipsdp": ("2",),
             "lipsdp_fast": ("2",), "lipsdp_fo": ("2",)}
#: every supported (method, norm) must carry a value on at least this share of the generated networks
MIN_SHARE = 0.5
#: region enumeration for the oracle on nets up to this many LPs (sampled Jacobians beyond)
ORACLE_LPS = 150


def _leq(a, b):
    return a <= b * (1 + TOL) + 1e-150


def _check(net, counts: Counter, exact: bool = False) -> None:
    orc = _oracle.oracle(net) if not _oracle.is_pwl(net) else _pwl_oracle(net)
    pwl = orc["2"].upper is not None
    rows = lv.compare(net, **OPTIONS)
    counts["examples"] += 1
    values = {}
    for row in rows:
        if row.value is None:
            continue
        counts[(row.method, row.norm)] += 1
        o = orc[row.norm]
        assert row.kind == "upper", f"{row.method} l{row.norm}: only lv.exact may return kind={row.kind!r}"
        v = float(row.value)
        assert np.isfinite(v)
        assert o.below(v), f"{row.method} l{row.norm} = {v} < oracle {o.lower} (err {o.err})"
        if row.lower is not None:
            assert row.lower <= v
            if pwl:
                assert o.above(row.lower), f"{row.method} l{row.norm}: lower {row.lower} > oracle {o.upper}"
        values[(row.method, row.norm)] = v
    for p in lv.NORMS:  # lv.lower_bound: a certified lower value is below the oracle's upper and every upper row
        lb = lv.lower_bound(net, p, samples=64, steps=8)
        assert lb.kind in ("lower", "estimate"), lb
        if lb.kind == "lower":
            counts[("lower_bound", p)] += 1
            assert all(_leq(lb.value, v) for (m, q), v in values.items() if q == p), (lb, values)
            if pwl:
                assert orc[p].above(lb.value), (lb, orc[p])
    for p in lv.NORMS:
        get = {m: values.get((m, p)) for m in ("kstar", "k1", "k2", "k3", "k4")}
        assert _leq(get["k2"], get["k1"]) and _leq(get["k1"], get["kstar"]), (p, get)
        if p != "2":
            assert _leq(get["k2"], get["k4"]) and _leq(get["k4"], get["k3"]) and _leq(get["k3"], get["kstar"]), (p, get)
    chain = linear_chain(net)
    if all(s.lo <= 1 <= s.hi for s in chain.slopes):  # D = I lies in the slope box
        m = np.eye(net.n_in)
        for w in chain.weights:
            m = w @ m
        for p in lv.NORMS:
            norm = np.linalg.norm(m, {"1": 1, "2": 2, "inf": np.inf}[p])
            assert norm * (1 - TOL) - 1e-150 <= values[("k2", p)]
    if pwl:
        counts["pwl_enumerated"] += 1
    if pwl and exact:
        for p in lv.NORMS:
            _check_exact(net, p, orc[p], counts)


def _pwl_oracle(net):
    if _oracle.hidden_neurons(net) <= _oracle.MAX_PWL_NEURONS:
        try:
            return _oracle.pwl_regions(net, max_lps=ORACLE_LPS)
        except _oracle.Budget:
            pass
    return {p: _oracle.sampled(net, p) for p in lv.NORMS}


def _check_exact(net, p, o, counts: Counter) -> None:
    """``lv.exact`` lies in the oracle's sandwich; both ends agree when every region was verified."""
    b = lv.exact(net, p, max_nodes=20_000)
    v = float(b.value)
    assert o.below(v), f"exact l{p} = {v} < oracle {o.lower}"
    if b.kind == "exact":
        counts[("exact", p)] += 1
        assert o.above(v), f"exact l{p} = {v} > oracle {o.upper}"
        if o.upper - o.lower <= o.err:
            assert abs(v - o.lower) <= 2 * o.err + TOL * v + 1e-150, (v, o)
    else:
        assert b.kind == "upper" and (b.lower is None or o.above(b.lower)), b


def _min_count(counts: Counter) -> None:
    n = counts["examples"]
    assert n >= 10, counts
    for method, norms in SUPPORTED.items():
        for p in norms:
            assert counts[(method, p)] >= MIN_SHARE * n, (
                f"{method} l{p} gave a value on only {counts[(method, p)]} of {n} networks")
    assert set(SUPPORTED) == set(lv.METHODS), "update SUPPORTED for the new method"


def _run_property(strategy, max_examples: int, *, exact: bool = False) -> Counter:
    """Check every network the strategy draws; the counts of rows with a value, per (method, norm), are returned
    and each method's minimum share is asserted."""
    counts: Counter = Counter()

    @settings(max_examples=max_examples)
    @given(strategy)
    def prop(net):
        _check(net, counts, exact=exact)

    prop()
    _min_count(counts)
    return counts


@pytest.mark.parametrize("run", RUNS)
def test_every_method_is_sound_on_float_networks(run):
    _run_property(networks(max_depth=4, max_width=5, max_inputs=4, max_outputs=3), EXAMPLES[run][0])


@pytest.mark.parametrize("run", RUNS)
def test_every_method_is_sound_on_rational_networks(run):
    _run_property(networks(exact=True, max_depth=3, max_width=4, max_inputs=3, max_outputs=2), EXAMPLES[run][1])


@pytest.mark.parametrize("run", RUNS)
def test_every_method_is_sound_on_piecewise_linear_networks(run):
    """Only ReLU/LeakyReLU/Identity: the oracle enumerates regions, ``lv.exact`` is compared with it."""
    pwl = networks(max_depth=3, max_width=4, max_inputs=3, max_outputs=2, activations=("relu", "leakyrelu", "identity"))
    counts = _run_property(pwl, EXAMPLES[run][2], exact=True)
    assert counts["pwl_enumerated"] >= 0.8 * counts["examples"], counts
    for p in lv.NORMS:
        assert counts[("exact", p)] >= 0.8 * counts["examples"], counts


@pytest.mark.parametrize("run", RUNS)
def test_every_method_is_sound_on_networks_with_the_newer_activations(run):
    """ELU, Softplus, Hardtanh, ReLU6, Hardswish, Mish, LogSigmoid, Hardsigmoid (issue 13), against the sampled oracle
    (their values and derivatives written out in ``_oracle._act``)."""
    acts = MORE_ACTIVATIONS + ("relu",)
    _run_property(networks(max_depth=3, max_width=4, max_inputs=3, max_outputs=2, activations=acts),
                  NEWER_EXAMPLES[run])


#: methods that represent residual blocks (proofs/residual.md); the others must refuse them with a reason
RESIDUAL_METHODS = {"kstar": ("1", "2", "inf"), "k1": ("1", "2", "inf"), "k3": ("1", "inf"), "k4": ("1", "inf")}


def _check_residual(net, counts: Counter) -> None:
    """Residual MLPs: every row with a value is above the residual oracle (forward-mode Jacobians written in
    ``_oracle``); methods needing one chain are Skipped rows naming the block; lower_bound below every upper row;
    K4 <= K3 <= K* and K1 <= K*."""
    orc = {p: _oracle.sampled_residual(net, p) for p in lv.NORMS}
    counts["examples"] += 1
    values = {}
    for row in lv.compare(net, **OPTIONS):
        if row.value is None:
            if row.method in RESIDUAL_METHODS and row.norm in RESIDUAL_METHODS[row.method]:
                assert "overflow" in row.error or "float range" in row.error, row
            elif row.method not in RESIDUAL_METHODS and row.norm in SUPPORTED.get(row.method, ()):
                assert "Residual" in row.error, row
            continue
        assert row.method in RESIDUAL_METHODS, row
        counts[(row.method, row.norm)] += 1
        v = float(row.value)
        assert row.kind == "upper" and np.isfinite(v)
        o = orc[row.norm]
        assert o.below(v), f"{row.method} l{row.norm} = {v} < oracle {o.lower} (err {o.err})"
        values[(row.method, row.norm)] = v
    for p in lv.NORMS:
        lb = lv.lower_bound(net, p, samples=32, steps=4)
        if lb.kind == "lower":
            counts[("lower_bound", p)] += 1
            assert all(_leq(lb.value, v) for (m, q), v in values.items() if q == p), (lb, values)
        get = {m: values.get((m, p)) for m in RESIDUAL_METHODS}
        assert _leq(get["k1"], get["kstar"]), (p, get)
        if p != "2":
            assert _leq(get["k4"], get["k3"]) and _leq(get["k3"], get["kstar"]), (p, get)


@pytest.mark.parametrize("run", RUNS)
def test_every_method_is_sound_on_residual_networks(run):
    """Residual MLPs (identity and projection shortcuts, one level of nesting) from ``residual_networks``."""
    counts: Counter = Counter()

    @settings(max_examples=RESIDUAL_EXAMPLES[run])
    @given(residual_networks(max_blocks=2))
    def prop(net):
        _check_residual(net, counts)

    prop()
    n = counts["examples"]
    assert n >= 10, counts
    for method, norms in RESIDUAL_METHODS.items():
        for p in norms:
            assert counts[(method, p)] >= MIN_SHARE * n, (method, p, counts)
    assert sum(counts[("lower_bound", p)] for p in lv.NORMS) >= n, counts


#: methods that represent sorting layers (proofs/groupsort.md); the others must refuse them naming the layer
SORT_METHODS = {"kstar": ("1", "2", "inf"), "k1": ("1", "2", "inf"), "k3": ("1", "inf"), "k4": ("1", "inf")}
#: examples of the GroupSort property: float networks (sampled oracle), one-input rational networks (exact oracle)
SORT_EXAMPLES = {"default": (10, 6), "long": (80, 40)}


def _check_sort(net, counts: Counter) -> None:
    """GroupSort/MaxMin/FullSort MLPs: every row with a value is above the oracle (sampled permutation Jacobians, and
    for one-input rational nets the exact breakpoint enumeration of ``_oracle.pwl1d_sort_constant``, which ``lv.exact``
    must equal); the other methods are Skipped naming the layer; lower_bound below every upper row and the exact
    constant; K4 <= K3 <= K*, K1 <= K*."""
    exact = net.n_in == 1 and net.is_exact
    orc = {p: _oracle.sampled_sort(net, p) for p in lv.NORMS}
    const = {p: _oracle.pwl1d_sort_constant(net, p) for p in lv.NORMS} if exact else {}
    counts["examples"] += 1
    values = {}
    for row in lv.compare(net, **OPTIONS):
        if row.value is None:
            if row.norm not in SUPPORTED.get(row.method, ()):
                continue
            if row.method in SORT_METHODS:
                assert "overflow" in row.error or "float range" in row.error, row
            else:
                assert any(k in row.error for k in ("GroupSort", "MaxMin", "FullSort")), row
            continue
        assert row.method in SORT_METHODS and row.kind == "upper", row
        counts[(row.method, row.norm)] += 1
        v = float(row.value)
        assert np.isfinite(v) and orc[row.norm].below(v), (row, orc[row.norm])
        if exact:
            c = const[row.norm]
            assert (v * v if row.norm == "2" else v) >= float(c) * (1 - TOL), (row, c)
        values[(row.method, row.norm)] = v
    for p in lv.NORMS:
        lb = lv.lower_bound(net, p, samples=32, steps=4)
        if lb.kind == "lower":
            counts[("lower_bound", p)] += 1
            assert all(_leq(lb.value, v) for (m, q), v in values.items() if q == p), (lb, values)
            if exact:
                assert _leq(lb.value ** 2 if p == "2" else lb.value, float(const[p])), (lb, const[p])
        get = {m: values.get((m, p)) for m in SORT_METHODS}
        assert _leq(get["k1"], get["kstar"]), (p, get)
        if p != "2":
            assert _leq(get["k4"], get["k3"]) and _leq(get["k3"], get["kstar"]), (p, get)
        if exact:
            e = lv.exact(net, p)
            assert e.kind == "exact" and (e.value ** 2 if p == "2" else e.value) == const[p], (e, const[p])
            counts[("exact", p)] += 1


def _sort_property(strategy, examples: int) -> Counter:
    counts: Counter = Counter()

    @settings(max_examples=examples)
    @given(strategy)
    def prop(net):
        _check_sort(net, counts)

    prop()
    return counts


@pytest.mark.parametrize("run", RUNS)
def test_every_method_is_sound_on_groupsort_networks(run):
    """Dense (GroupSort|MaxMin|FullSort Dense)* from ``groupsort_networks``: float nets of up to 3 inputs, and one-input
    rational nets where the exact constant is known (``lv.exact`` must equal it)."""
    for strategy, examples in ((groupsort_networks(max_depth=3, max_groups=3), SORT_EXAMPLES[run][0]),
                               (groupsort_networks(max_depth=3, max_groups=2, max_inputs=1, exact=True),
                                SORT_EXAMPLES[run][1])):
        counts = _sort_property(strategy, examples)
        n = counts["examples"]
        assert n >= min(examples, 8), counts
        for method, norms in SORT_METHODS.items():
            for p in norms:
                assert counts[(method, p)] >= MIN_SHARE * n, (method, p, counts)
        assert sum(counts[("lower_bound", p)] for p in lv.NORMS) >= n, counts
        if counts[("exact", "2")]:
            assert all(counts[("exact", p)] == n for p in lv.NORMS), counts


def test_the_oracle_on_closed_forms():
    """The oracle itself, on networks whose constants are known by hand."""
    # relu(x) - relu(-x) = x: constant 1 in every norm (K2's vertex bound is 2)
    ident = lv.Network([lv.Dense([[1.0], [-1.0]]), lv.ReLU(), lv.Dense([[1.0, -1.0]])])
    # max(x1, x2) = relu(x1 - x2) + relu(x2) - relu(-x2): gradients (1, 0) and (0, 1), constant 1 in every norm
    mx = lv.Network([lv.Dense([[1.0, -1.0], [0.0, 1.0], [0.0, -1.0]]), lv.ReLU(), lv.Dense([[1.0, 1.0, -1.0]])])
    # f(x) = (relu(x1 + x2), relu(x1 - x2)): gradients 0, (1,1), (1,-1), both rows: [[1,1],[1,-1]] (l2 = sqrt 2)
    two = lv.Network([lv.Dense([[1.0, 1.0], [1.0, -1.0]]), lv.ReLU(), lv.Dense(np.eye(2))])
    expected = [(ident, {"1": 1, "2": 1, "inf": 1}), (mx, {"1": 1, "2": 1, "inf": 1}),
                (two, {"1": 2, "2": np.sqrt(2), "inf": 2})]
    for net, want in expected:
        o = _oracle.pwl_regions(net)
        for p, v in want.items():
            assert abs(o[p].lower - v) <= 1e-15 and o[p].upper >= v, (p, o[p])
        s = _oracle.sampled(net, "2")
        assert s.lower <= want["2"] * (1 + 1e-15) and s.regions > 100
    # the upper value counts the LP-feasible patterns with an empty interior too (x > 0 and -x > 0: t* = 0)
    assert _oracle.pwl_regions(ident)["1"].upper == 2.0
    # tanh(2x): constant 2, attained at 0 (a sampled point)
    assert _oracle.sampled(lv.Network([lv.Dense([[2.0]]), lv.Tanh(), lv.Dense([[1.0]])]), "2").lower == 2.0


def test_a_region_far_from_the_origin_is_left_to_exact_and_not_to_the_lp_oracle():
    """The region ``4.5e-112 x > 1`` starts at x = 2.2e111: HiGHS reads such a bound as infinite and called it empty.
    The oracle now declines (Budget), and ``lv.exact`` finds the region's slope exactly."""
    w = 4.542947865986342e-112
    net = lv.Network([lv.Dense(np.array([[0.0], [w]]), np.array([0.0, -1.0])), lv.ReLU(),
                      lv.Dense(np.array([[0.0, 0.0], [0.0, 1.0]]))])
    with pytest.raises(_oracle.Budget):
        _oracle.pwl_regions(net)
    for p in lv.NORMS:
        b = lv.exact(net, p)
        assert b.kind == "exact" and Fraction(str(b.value)) == Fraction(w)
