"""The result type enforces the policy (DESIGN §2): one meaning of ``kind``, no NaN/±inf, one constructor per kind
recording the rounding, and contradictory rows refused (``check_consistency``)."""

from __future__ import annotations

import decimal
from fractions import Fraction

import numpy as np
import pytest
import sympy

import lipverify as lv
from lipverify import result
from lipverify.bounds import METHODS
from lipverify.errors import InternalConsistencyError, LipVerifyError, NumericalError
from lipverify.result import Bound, Skipped, check_consistency

NON_FINITE = [float("inf"), float("-inf"), float("nan"), np.float64("inf"), np.float32("-inf"), np.float64("nan"),
              np.longdouble("inf"), decimal.Decimal("Infinity"), decimal.Decimal("NaN"),
              sympy.oo, -sympy.oo, sympy.zoo, sympy.nan, sympy.Float("inf"), sympy.Symbol("a") / 0]


# --------------------------------------------------------------------------- finiteness


@pytest.mark.parametrize("bad", NON_FINITE, ids=repr)
def test_plain_constructor_refuses_non_finite_value(bad):
    with pytest.raises(NumericalError, match="k4") as info:
        Bound(bad, "inf", "k4", "upper")
    assert isinstance(info.value, LipVerifyError)


@pytest.mark.parametrize("bad", NON_FINITE, ids=repr)
def test_non_finite_lower_end_is_refused(bad):
    with pytest.raises(NumericalError, match="exact"):
        Bound(2.0, "1", "exact", "upper", lower=bad)


@pytest.mark.parametrize("kind", result.KINDS)
def test_every_kind_refuses_inf(kind):
    with pytest.raises(NumericalError, match="mymethod"):
        Bound(float("inf"), "2", "mymethod", kind)


@pytest.mark.parametrize("make", [
    lambda v: Bound.upper_bound(v, "inf", "m", rounding=result.OUTWARD),
    lambda v: Bound.lower_bound(v, "inf", "m", rounding=result.OUTWARD),
    lambda v: Bound.exact_constant(v, "inf", "m"),
    lambda v: Bound.estimate(v, "inf", "m"),
])
def test_each_kind_constructor_refuses_nan_and_inf(make):
    for bad in (float("nan"), float("inf"), -np.inf, sympy.oo, sympy.zoo, sympy.nan):
        with pytest.raises(NumericalError):
            make(bad)


@pytest.mark.parametrize("good", [0.0, 1e308, np.float32(3.5), 7, Fraction(10**400, 3), decimal.Decimal("0.1"),
                                  sympy.sqrt(2), sympy.Rational(1, 3), sympy.Symbol("a") ** 2 + 1])
def test_finite_values_and_formulas_are_accepted(good):
    assert Bound(good, "1", "m", "upper").value == good


def test_constructors_record_kind_and_rounding():
    u = Bound.upper_bound(3.0, "inf", "k4", rounding=result.OUTWARD, seconds=0.5)
    lo = Bound.lower_bound(2.0, "inf", "lower_bound", rounding=result.OUTWARD)
    e = Bound.exact_constant(sympy.Rational(5, 2), "2", "exact")
    g = Bound.estimate(2.9, "inf", "seqlip")
    assert (u.kind, lo.kind, e.kind, g.kind) == ("upper", "lower", "exact", "estimate")
    assert u.rounding == "outward (rigorous float)" and u.seconds == 0.5
    assert e.exact_value == sympy.Rational(5, 2) and e.rounding == result.EXACT_SYMBOLIC
    assert g.rounding == "none (estimate)"
    assert Bound(1.0, "1", "m", "upper").rounding == result.UNRECORDED  # the plain constructor keeps working
    row = u.to_dict()
    assert row["rounding"] == "outward (rigorous float)" and row["quantity_exact"] is False and row["lower"] is None


def test_library_results_record_their_rounding():
    net = lv.Network([lv.Dense([[1, -2], [0, 1]]), lv.ReLU(), lv.Dense([[1, 1]])])
    assert lv.bound(net, "k4", "inf").rounding == result.EXACT_ROUNDED_UP  # integer weights: exact rationals
    assert lv.bound(net, "k4", "inf", arithmetic="float").rounding == result.OUTWARD
    assert lv.bound(net, "k2", "inf").rounding == result.OUTWARD


def test_lower_end_above_the_value_is_a_contradiction():
    with pytest.raises(InternalConsistencyError, match="k2"):
        Bound(1.0, "inf", "k2", "upper", lower=1.5)


# --------------------------------------------------------------------------- the CNN overflow of issue 11, item 3


def _huge_cnn():
    return lv.Network([lv.Conv2d(np.full((1, 1, 1, 1), 1e160)), lv.ReLU(), lv.Conv2d(np.full((1, 1, 1, 1), 1e160)),
                       lv.Flatten()], input_shape=(1, 2, 2))


OVERFLOW_CASES = [(m, conv, p) for m, conv in [("kstar", "implicit"), ("kstar", "explicit"), ("k3", "implicit"),
                                                ("k3", "explicit"), ("k4", "implicit"), ("k4", "explicit"),
                                                ("k1", "explicit"), ("k2", "explicit")]
                  for p in ("1", "2", "inf") if not (p == "2" and m in ("k3", "k4"))]


@pytest.mark.parametrize("method,conv,p", OVERFLOW_CASES)
def test_cnn_overflow_raises_instead_of_reporting_inf(method, conv, p):
    # the true constant is 1e320 (both 1x1 convolutions multiply by 1e160), beyond the float range
    net = _huge_cnn()
    with pytest.raises(NumericalError):
        lv.bound(net, method, p, conv=conv)


def test_compare_turns_the_overflow_into_skipped_rows_with_the_reason():
    rows = lv.compare(_huge_cnn(), methods=["kstar", "k3", "k4", "k1"])
    kstar = [r for r in rows if r.method == "kstar"]
    assert len(kstar) == 6 and all(isinstance(r, Skipped) for r in kstar)
    assert all("NumericalError" in r.error and "overflow" in r.error for r in kstar)
    assert all(r.value is None for r in rows)
    assert any("layer 2" in r.error for r in kstar)  # the layer where the product overflowed


# --------------------------------------------------------------------------- one meaning of kind (issue 11, item 1)


def test_k2_is_an_upper_bound_even_when_its_search_closes():
    # relu(x) - relu(-x) = x: Lipschitz constant 1 in every norm, bias-free K2 = |1| + |-1| = 2
    net = lv.Network([lv.Dense([[1], [-1]]), lv.ReLU(), lv.Dense([[1, -1]])])
    for p in ("1", "2", "inf"):
        b = lv.bound(net, "k2", p)
        assert b.kind == "upper" and b.quantity_exact is True and b.status == "closed"
        assert 2 <= b.value <= 2 * (1 + 1e-9)
        assert b.lower is None  # the best vertex (2) is not a lower bound of the constant (1)
        assert b.details["best_vertex"] <= 2 <= b.value and b.details["k2_gap"] >= 0
        row = b.to_dict()
        assert row["kind"] == "upper" and row["quantity_exact"] is True and row["lower"] is None
        assert lv.exact(net, p).value == 1  # the constant itself


def test_table_note_says_what_k2_closed_means():
    net = lv.Network([lv.Dense([[1], [-1]]), lv.ReLU(), lv.Dense([[1, -1]])])
    table = lv.compare(net, norms=["inf"], methods=["k2"]).table()
    assert "K2 closed: the bias-free bound itself, not the constant" in table
    assert " exact " not in table


# --------------------------------------------------------------------------- K2 out of budget (issue 11, item 8)


def _cp_k1_l2(weights):
    """Combettes–Pesquet K1 for slopes in [0, 1], straight from its definition: the mean over the 2^(L-1) ways to cut
    the chain W_L ⋯ W_1 of the product of the spectral norms of the grouped products (float, for a test oracle)."""
    import itertools

    depth = len(weights)
    total = 0.0
    for cuts in itertools.product([0, 1], repeat=depth - 1):
        prod, group = 1.0, np.eye(weights[0].shape[1])
        for l, w in enumerate(weights):
            group = w @ group
            if l == depth - 1 or cuts[l]:
                prod *= np.linalg.norm(group, 2)
                group = np.eye(w.shape[0])
        total += prod
    return total / 2 ** (depth - 1)


def test_k2_out_of_budget_is_capped_by_the_cheaper_bounds():
    from lipverify.bounds.k2 import _Search
    from lipverify.ir.views import linear_chain

    rng = np.random.default_rng(0)
    dims = [10, 20, 15, 10, 3]
    weights = [rng.standard_normal((dims[l + 1], dims[l])) for l in range(4)]
    layers = []
    for l, w in enumerate(weights):
        layers += ([lv.ReLU()] if l else []) + [lv.Dense(w)]
    net = lv.Network(layers)
    k1_l2 = _cp_k1_l2(weights)
    kstar_l2 = float(np.prod([np.linalg.norm(w, 2) for w in weights]))
    # the search alone, out of budget after a few nodes, is far above K1 here: the cap is what this test checks
    import time

    raw, _, closed, _ = _Search(linear_chain(net), "2", 3, time.perf_counter() + 60, 1e-9, 0).run()
    assert not closed and raw > 2 * k1_l2
    b = lv.bound(net, "k2", "2", max_nodes=3)
    assert b.kind == "upper" and not b.quantity_exact and b.status == "budget exhausted"
    assert b.value <= min(k1_l2, kstar_l2) * (1 + 1e-9)
    assert b.details["capped_by"] == "k1" and any("k1" in a for a in b.assumptions)
    # still an upper bound of K2: above every vertex value (dense float products, patterns drawn at random)
    for _ in range(50):
        m = weights[0]
        for w in weights[1:]:
            m = w @ (rng.integers(0, 2, m.shape[0])[:, None] * m)
        assert np.linalg.norm(m, 2) <= b.value * (1 + 1e-9)
    for p in ("1", "inf"):
        b = lv.bound(net, "k2", p, max_nodes=3)
        k4 = lv.bound(net, "k4", p).value
        k1 = lv.bound(net, "k1", p).value
        kstar = lv.bound(net, "kstar", p).value
        assert b.value <= min(k1, kstar, k4) and b.details["capped_by"] in ("k2", "k1", "kstar", "k4")


def test_k2_closed_keeps_its_own_value():
    net = lv.Network([lv.Dense([[1.0, 2.0], [-1.0, 1.0]]), lv.ReLU(), lv.Dense([[1.0, -1.0]])])
    b = lv.bound(net, "k2", "inf")
    # K2 = max over D in {0,1}^2 of ||[1, -1] D W1||_1: D = diag(1, 1) gives |1 + 1| + |2 - 1| = 3, D = diag(1, 0)
    # gives 1 + 2 = 3, D = diag(0, 1) gives 1 + 1 = 2
    assert b.quantity_exact and "capped_by" not in b.details and 3 <= b.value <= 3 * (1 + 1e-9)


# --------------------------------------------------------------------------- internal consistency (issue 11, item 6b)


def test_contradictory_rows_raise_naming_both():
    rows = [Bound.upper_bound(2.0, "inf", "k4", rounding=result.OUTWARD),
            Bound.upper_bound(9.0, "inf", "kstar", rounding=result.OUTWARD),
            Bound.lower_bound(2.5, "inf", "lower_bound", rounding=result.OUTWARD),
            Skipped("k3", "inf", "not computed")]
    with pytest.raises(InternalConsistencyError) as info:
        check_consistency(rows)
    assert "k4 linf upper" in str(info.value) and "lower_bound linf lower" in str(info.value)
    assert "kstar" not in str(info.value)


def test_consistent_rows_and_other_norms_pass():
    check_consistency([Bound.upper_bound(2.0, "inf", "k4", rounding=result.OUTWARD),
                       Bound.lower_bound(2.0, "inf", "lower_bound", rounding=result.OUTWARD),  # equal is fine
                       Bound.lower_bound(5.0, "1", "lower_bound", rounding=result.OUTWARD),  # another norm
                       Skipped("k3", "inf", "not computed")])


def test_exact_values_are_compared_exactly():
    third = sympy.Rational(1, 3)
    above = third + sympy.Rational(1, 10**30)  # its float rounded down is below float_up(1/3): floats cannot tell
    upper = Bound.upper_bound(result.float_up(third), "1", "kstar", rounding=result.EXACT_ROUNDED_UP, exact_value=third)
    assert result.float_down(above) < upper.value
    check_consistency([upper, Bound.exact_constant(third, "1", "exact")])
    with pytest.raises(InternalConsistencyError, match="kstar l1 upper = 1/3 is below exact l1 exact"):
        check_consistency([upper, Bound.exact_constant(above, "1", "exact")])


def test_exact_row_above_an_upper_and_a_certified_lower_end_count():
    with pytest.raises(InternalConsistencyError, match="k2 l2 upper"):
        check_consistency([Bound.upper_bound(1.0, "2", "k2", rounding=result.OUTWARD),
                           Bound.exact_constant(sympy.sqrt(2), "2", "exact")])
    with pytest.raises(InternalConsistencyError, match="certified lower end"):
        check_consistency([Bound.upper_bound(1.0, "2", "k1", rounding=result.OUTWARD),
                           Bound.upper_bound(3.0, "2", "exact", rounding=result.OUTWARD, lower=2.0)])


def test_local_upper_bounds_are_not_compared_with_global_lower_bounds():
    local = Bound.upper_bound(1.0, "inf", "k4", rounding=result.OUTWARD, details={"domain": True})
    check_consistency([local, Bound.lower_bound(2.0, "inf", "lower_bound", rounding=result.OUTWARD)])
    with pytest.raises(InternalConsistencyError):  # a local lower bound is below every global upper bound
        check_consistency([Bound.upper_bound(1.0, "inf", "k4", rounding=result.OUTWARD),
                           Bound.lower_bound(2.0, "inf", "lower_bound", rounding=result.OUTWARD, details={"domain": True})])


def _liar(net, norm="inf", **_):
    """A method that is wrong on purpose: half the norm of the Jacobian at (1, ..., 1), labelled an upper bound."""
    j = np.asarray(net.jacobian(np.ones(net.input_shape)), dtype=float).reshape(-1, net.n_in)
    value = 0.5 * np.linalg.norm(j, {"1": 1, "2": 2, "inf": np.inf}[norm])
    return Bound.upper_bound(float(value), norm, "liar", rounding=result.OUTWARD)


def _sampled(net, norm="inf", **_):
    return lv.lower_bound(net, norm)


def test_compare_raises_on_contradictory_rows(monkeypatch):
    monkeypatch.setitem(METHODS, "liar", _liar)
    monkeypatch.setitem(METHODS, "sampled", _sampled)
    # f(x) = 3x on the line: constant 3; the liar says 1.5, the certified lower bound is 3
    net = lv.Network([lv.Dense([[1.0], [-1.0]]), lv.ReLU(), lv.Dense([[3.0, -3.0]])])
    assert lv.compare(net, norms=["inf"], methods=["k4", "sampled"]).value("lower_bound", "inf") == pytest.approx(3)
    with pytest.raises(InternalConsistencyError, match="liar linf upper = 1.5 is below lower_bound linf lower"):
        lv.compare(net, norms=["inf"], methods=["k4", "liar", "sampled"])


def test_rounding_of_a_number_one_part_in_1e538_above_a_float():
    """sympy cannot decide ``1 < sqrt(1 + 1e-538)``; the outward rounding must still succeed (arb decides)."""
    import sympy

    from lipverify.result import float_down, float_up

    x = sympy.sqrt(1 + sympy.Rational(1, 10**538))
    assert float_down(x) == 1.0 and float_up(x) == float(np.nextafter(1.0, 2.0))
    b = lv.exact(lv.Network([lv.Dense([[1.0], [1.256684324879792e-269]])]), 2)
    row = b.to_dict()
    assert row["lower"] <= 1.0 < row["value"]


def test_rounding_of_sympy_numbers_beyond_the_float_range():
    """The smallest float >= -10^400 is -max (not -inf); above the float range no float is >= x (inf, refused later)."""
    import sys

    import sympy

    from lipverify.result import float_down, float_up

    assert float_up(-sympy.Integer(10) ** 400) == -sys.float_info.max
    assert float_down(sympy.Integer(10) ** 400) == sys.float_info.max
    assert float_up(sympy.sqrt(2) * sympy.Integer(10) ** 400) == float("inf")
