"""The analytic zoo: exact constants equal the closed forms; every bound is above them, every lower bound below."""

from __future__ import annotations

import pytest
import sympy

import lipverify as lv
from lipverify.result import Skipped
from lipverify.zoo import ZOO, ZooEntry

NORMS = ("1", "2", "inf")
CASES = [(name, p) for name in ZOO for p in NORMS]


@pytest.fixture(scope="module")
def exact_values() -> dict:
    return {(name, p): lv.exact(ZOO[name].build(), p) for name, p in CASES}


def test_entries_are_complete():
    for name, e in ZOO.items():
        assert isinstance(e, ZooEntry) and e.name == name and e.description
        assert set(e.constants) == set(NORMS)
        net = e.build()
        assert isinstance(net, lv.Network) and net.is_exact


@pytest.mark.parametrize("name,p", CASES)
def test_exact_equals_closed_form(name, p, exact_values):
    b = exact_values[(name, p)]
    closed = ZOO[name].constants[p]
    if b.kind == "exact":
        assert sympy.simplify(b.value - closed) == 0, (name, p, b.value, closed)
    else:  # smooth nets sympy cannot solve: a rigorous enclosure, which must contain the closed form
        assert b.kind == "upper" and b.lower is not None
        assert b.lower <= float(closed) <= b.value
        assert b.gap <= 1e-8


@pytest.mark.parametrize("name,p", CASES)
def test_sampled_lower_bound_is_below(name, p, exact_values):
    net = ZOO[name].build()
    lo = lv.lower_bound(net, p, samples=256, steps=20, radius=3.0)
    value = exact_values[(name, p)]
    top = value.value if value.kind == "exact" else sympy.Rational(value.value)
    assert sympy.Rational(lo.value) <= top


@pytest.mark.parametrize("name", list(ZOO))
def test_every_upper_bound_is_above(name, exact_values):
    net = ZOO[name].build()
    rows = lv.compare(net, norms=NORMS)
    checked = 0
    for row in rows:
        if isinstance(row, Skipped) or row.kind not in ("upper", "exact") or row.value is None:
            continue
        b = exact_values[(name, row.norm)]
        truth = b.value if b.kind == "exact" else sympy.Rational(b.lower)
        assert sympy.Rational(float(row.value)) >= truth, (name, row.method, row.norm, row.value, truth)
        checked += 1
    assert checked >= 3


def test_paper_test1_k4_is_exact():
    net = ZOO["paper_test1"].build()
    for p in ("1", "inf"):
        assert lv.bound(net, "k4", p).value == 5.0


def test_paper_test2_bounds_overestimate():
    net = ZOO["paper_test2"].build()
    assert lv.exact(net, "inf").value == 1
    assert lv.bound(net, "k4", "inf").value == 2.0


def test_sawtooth_constant_doubles_with_depth():
    from lipverify.zoo import sawtooth

    for k in range(1, 7):
        assert lv.exact(sawtooth(k), "inf").value == 2**k


def test_yarotsky_square_interpolates_x2():
    import numpy as np

    from lipverify.zoo import yarotsky_square

    net = yarotsky_square(3)
    grid = np.arange(9) / 8
    assert np.allclose(net(grid[:, None])[:, 0], grid**2)
    assert np.allclose(net(np.array([[-2.0], [3.0]]))[:, 0], [-2.0, 3.0])
