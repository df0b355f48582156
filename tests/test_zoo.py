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


def test_compare_zoo_json_labels_follow_the_kind_rule(capsys):
    """`lipverify compare --zoo --json`: every label speaks of the constant (issue 11, item 1). The zoo's closed forms
    are the oracle: no `exact` row there (only `lv.exact` may say exact), every `upper` row above the closed form,
    every `lower` row below it; K2 closed is `upper` with `quantity_exact` (it was `exact` on 30 of 60 rows)."""
    import json

    from lipverify.cli import main

    assert main(["compare", "--zoo", "--json"]) == 0
    objs = json.loads(capsys.readouterr().out)
    assert {o["model"] for o in objs} == set(ZOO)
    k2_closed = 0
    for obj in objs:
        closed = ZOO[obj["model"]].constants
        for r in obj["results"]:
            if r["value"] is None:
                continue
            assert r["kind"] != "exact", (obj["model"], r)
            truth = closed[r["norm"]]
            if r["kind"] == "upper":
                assert sympy.Rational(r["value"]) >= truth, (obj["model"], r)
            elif r["kind"] == "lower":
                assert sympy.Rational(r["value"]) <= truth, (obj["model"], r)
            if r["method"] == "k2":
                assert r["kind"] == "upper" and r["lower"] is None
                k2_closed += r["quantity_exact"]
    assert k2_closed >= 30

    assert main(["exact", "--zoo", "--json", "--norm", "1,2,inf"]) == 0
    objs = json.loads(capsys.readouterr().out)
    exact_rows = 0
    for obj in objs:
        for r in obj["results"]:
            if r["kind"] == "exact":
                assert r["method"] == "exact"
                assert sympy.simplify(sympy.sympify(r["exact"]) - ZOO[obj["model"]].constants[r["norm"]]) == 0
                exact_rows += 1
    assert exact_rows >= 50
