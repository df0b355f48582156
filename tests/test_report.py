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
    assert "## Local bounds on test images" in test4 and "| linf | 0.01 | " in test4


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


def _numpy_cnn(path):
    """The shipped Fashion CNN's forward pass written out in numpy from the ONNX initializers (an oracle independent
    of lipverify): conv 3x3 pad 1, ReLU, max-pool 2, conv 3x3 pad 1, ReLU, max-pool 2, flatten, dense, ReLU, dense."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    w = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in onnx.load(str(path)).graph.initializer}

    def conv(x, k, b):
        xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
        h, w_ = x.shape[2:]
        out = sum(np.einsum("bchw,oc->bohw", xp[:, :, i:i + h, j:j + w_], k[:, :, i, j]) for i in range(3) for j in range(3))
        return out + b[None, :, None, None]

    def pool(x):
        b, c, h, w_ = x.shape
        return x.reshape(b, c, h // 2, 2, w_ // 2, 2).max(axis=(3, 5))

    def f(x):
        h = pool(np.maximum(conv(x, w["l0.weight"], w["l0.bias"]), 0))
        h = pool(np.maximum(conv(h, w["l3.weight"], w["l3.bias"]), 0)).reshape(len(x), -1)
        h = np.maximum(h @ w["l7.weight"].T + w["l7.bias"], 0)
        return h @ w["l9.weight"].T + w["l9.bias"]

    return f


def test_local_section_on_two_images_orders_lower_local_global_and_bounds_the_jacobian():
    """The report's local rows on 2 test images at one ε (l∞ with K4, l2 with K* for speed): local lower ≤ local
    upper ≤ global upper, certified accuracy in [0, 1]; the oracle: forward differences of a numpy forward pass of the
    same CNN give the Jacobian at each image (exact up to rounding where the CNN is affine around the image), whose
    norm the local upper bound must dominate, and its predictions."""
    import numpy as np

    import lipverify as lv
    from lipverify.data import fashion_test
    from lipverify.report import fixture_path, local_lines, local_rows

    net = lv.load(fixture_path())
    x, y = fashion_test(2)
    eps = 0.01
    rows = local_rows(net, x, y, (eps,), ("inf", "2"), samples=8, steps=0, upper_methods={"2": "kstar"})
    assert [(r.norm, r.eps, r.method, r.certify_method) for r in rows] == [("inf", eps, "k4", "k4"),
                                                                            ("2", eps, "kstar", "kstar")]
    f = _numpy_cnn(fixture_path())
    h = 1e-6
    basis = np.eye(784).reshape(784, 1, 28, 28)
    for i, xi in enumerate(x):
        jac = ((f(xi[None] + h * basis) - f(xi[None])) / h).T  # (10, 784)
        norms = {"inf": np.abs(jac).sum(axis=1).max(), "2": np.linalg.norm(jac, 2)}
        predicted = int(np.argmax(f(xi[None])[0]))
        for r in rows:
            assert 0 < r.lower[i] <= r.upper[i] <= r.global_upper, (r.norm, i)
            assert norms[r.norm] <= r.upper[i] * (1 + 1e-6), (r.norm, i, norms[r.norm], r.upper[i])
            assert r.predicted[i] == predicted
            assert 0 <= r.radius[i] <= eps
            assert r.certified[i] == (r.radius[i] >= eps and predicted == y[i])
    for r in rows:
        assert 0.0 <= r.certified_accuracy <= 1.0
        assert r.accuracy == np.mean(r.predicted == y)
        assert np.all(r.seconds >= r.seconds_lower) and np.all(r.seconds_upper[r.method == r.certify_method] == 0)
    lines = local_lines(rows)
    assert lines[2].startswith(f"| linf | 0.01 | {np.median(rows[0].upper):.4g} [") and "(k4)" in lines[2]
    assert lines[3].startswith("| l2 | 0.01 |") and "(kstar)" in lines[3]


def test_local_rows_refuse_a_local_upper_below_the_local_lower(monkeypatch):
    """A method whose bound on the box is below the certified lower bound on that box is an internal error of the
    report (``check_consistency`` alone does not compare a local upper with lower_bound's rows)."""
    import pytest

    import lipverify as lv
    from lipverify.bounds import METHODS
    from lipverify.data import fashion_test
    from lipverify.errors import InternalConsistencyError
    from lipverify.local import LocalActivation
    from lipverify.report import fixture_path, local_rows

    def liar(net, norm="inf", **_):  # honest-looking globally (1e6), far too small on a box (1.0)
        on_box = any(isinstance(layer, LocalActivation) for layer in net.layers)
        return lv.Bound.upper_bound(1.0 if on_box else 1e6, norm, "liar", rounding="outward (rigorous float)")

    monkeypatch.setitem(METHODS, "liar", liar)
    net = lv.load(fixture_path())
    x, y = fashion_test(1)
    with pytest.raises(InternalConsistencyError, match=r"image 0 \(eps 0.01, linf\).*exceeds the local upper bound of liar"):
        local_rows(net, x, y, (0.01,), ("inf",), samples=8, steps=0, upper_methods={"inf": "liar"})
