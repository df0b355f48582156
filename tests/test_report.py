"""The report command on the reduced ``quick`` suite."""

import re

from lipverify.cli import main
from lipverify.report import exact_constant, scalar_nonnegative_net
from lipverify.zoo import sawtooth


def test_report_quick_suite_writes_every_test_page(tmp_path, capsys):
    assert main(["report", "--suite", "quick", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.split()
    assert [p.rsplit("/", 1)[-1] for p in printed] == ["index.md", "test1.md", "test2.md", "test3.md", "test4.md"]
    for i in (1, 2, 3, 4):
        text = (tmp_path / f"test{i}.md").read_text()
        assert text.startswith(f"# Test {i}")
        assert "seed 0" in text and "numpy" in text
        for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
            assert (tmp_path / image).stat().st_size > 1000
    assert "**Holds:** K4 is exact" in (tmp_path / "test1.md").read_text()
    index = (tmp_path / "index.md").read_text()
    assert "[Test 3: random weight matrices](test3.md)" in index
    test3 = (tmp_path / "test3.md").read_text()
    # the ratios to K2 come from the networks where K2's search closed (quantity_exact; K2 is labelled upper)
    assert re.search(r"\| k4 \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [1-9][0-9]* \|", test3), test3
    test4 = (tmp_path / "test4.md").read_text()
    assert "| k4 | implicit |" in test4 and "| k4 | explicit |" in test4 and "test accuracy" in test4


def test_unknown_suite_is_bad_input(tmp_path, capsys):
    assert main(["report", "--suite", "huge", "--out", str(tmp_path)]) == 2
    assert "valid suites are paper, quick" in capsys.readouterr().err


def test_analytic_families_have_the_stated_constants():
    import numpy as np

    import lipverify as lv

    for k in (1, 2, 3):
        net = sawtooth(k)
        x = np.linspace(-0.5, 1.5, 20001)
        slopes = np.abs(np.diff(net(x[:, None])[:, 0]) / np.diff(x))
        assert abs(slopes.max() - 2**k) < 1e-6
    rng = np.random.default_rng(0)
    net = scalar_nonnegative_net(rng, 4)
    assert lv.bound(net, "k4", norm="inf").exact_value == exact_constant(net)


def test_report_refuses_contradictory_results(tmp_path, monkeypatch):
    """A bound below the exact constant is an internal error of the report, never a printed row."""
    from fractions import Fraction

    import pytest

    import lipverify as lv
    from lipverify import report
    from lipverify.bounds import METHODS
    from lipverify.errors import InternalConsistencyError

    def liar(net, norm="inf", **_):  # half the true slope of f(x) = 3x, labelled an upper bound
        return lv.Bound.upper_bound(1.5, norm, "liar", rounding="outward (rigorous float)")

    monkeypatch.setitem(METHODS, "liar", liar)
    net = lv.Network([lv.Dense([[1.0], [-1.0]]), lv.ReLU(), lv.Dense([[3.0, -3.0]])])
    with pytest.raises(InternalConsistencyError, match="liar l1 upper = 1.5 is below exact l1 exact = 3"):
        report._analytic_page(tmp_path, report.SUITES["quick"], lambda _m: None, "t", "", [("line", net, Fraction(3))],
                              None, "t")
