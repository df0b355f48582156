"""CNN bounds: explicit and implicit agree, CNN = equivalent dense network, orderings, soundness."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lipverify as lv
from lipverify.ir import graph as ir_graph
from lipverify.ir.views import conv_matrix
from lipverify.strategies import conv1d_networks, conv_networks

REL = 1e-9  # the two variants round differently; both are rigorous


def _close(a, b, rel=REL):
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-300)


def small_cnn(seed=0, pool="max", act=lv.ReLU):
    rng = np.random.default_rng(seed)
    layers = [lv.Conv2d(rng.normal(size=(3, 2, 3, 3)), rng.normal(size=3), stride=1, padding=1),
              lv.BatchNorm2d(rng.uniform(0.5, 2, 3), rng.normal(size=3), rng.normal(size=3), rng.uniform(0.5, 2, 3)),
              act()]
    if pool == "max":
        layers.append(lv.MaxPool2d(3, stride=2, padding=1))
    elif pool == "avg":
        layers.append(lv.AvgPool2d(3, stride=2, padding=1))
    else:
        layers.append(lv.Conv2d(rng.normal(size=(3, 3, 2, 2)), stride=2))
    layers += [lv.Conv2d(rng.normal(size=(2, 3, 2, 2)), padding=1), act(), lv.Flatten()]
    net = lv.Network(layers, input_shape=(2, 5, 5))
    n = net.output_shape[0]
    return lv.Network(layers + [lv.Dense(rng.normal(size=(3, n)), rng.normal(size=3))], input_shape=(2, 5, 5))


def dense_equivalent(net):
    """The same network with every Conv2d / AvgPool2d / BatchNorm2d as a Dense layer (FC code path)."""
    layers = []
    for i, layer in enumerate(net.layers):
        shape = net.shapes[i]
        if isinstance(layer, lv.Conv2d):
            m, _ = conv_matrix(layer, shape)
            bias = np.repeat(layer.bias, int(np.prod(net.shapes[i + 1][1:])))
            layers.append(lv.Dense(m.toarray(), bias))
        elif isinstance(layer, lv.AvgPool2d):
            m, _ = conv_matrix(layer.as_conv(shape[0]), shape)
            layers.append(lv.Dense(m.toarray()))
        elif isinstance(layer, lv.BatchNorm2d):
            hw = int(np.prod(shape[1:]))
            layers.append(lv.Dense(np.diag(np.repeat(layer.scale, hw)), np.repeat(layer.shift, hw)))
        elif isinstance(layer, lv.Flatten):
            continue
        else:
            layers.append(layer)
    return lv.Network(layers, input_shape=(net.n_in,))


@pytest.mark.parametrize("pool", ["max", "avg", "conv"])
def test_explicit_and_implicit_agree(pool):
    net = small_cnn(1, pool)
    for method, norms in (("kstar", ("1", "inf")), ("k3", ("1", "inf")), ("k4", ("1", "inf"))):
        for p in norms:
            imp = lv.bound(net, method, p, conv="implicit")
            exp = lv.bound(net, method, p, conv="explicit")
            assert imp.kind == exp.kind == "upper"
            assert imp.details["conv"] == "implicit" and exp.details["conv"] == "explicit"
            assert _close(float(imp.value), float(exp.value)), (method, p, imp.value, exp.value)
    # l2: the explicit matrix norm is exact (verified Cholesky), the implicit one bounds || |W| ||_2: never tighter
    assert float(lv.bound(net, "kstar", 2, conv="explicit").value) <= float(lv.bound(net, "kstar", 2, conv="implicit").value)
    assert lv.bound(net, "k3", "inf").details["conv"] == "implicit"  # the default


@pytest.mark.parametrize("pool", ["avg", "conv"])
def test_cnn_bounds_equal_the_dense_network_bounds(pool):
    """Without max pooling a CNN is an FC network: the FC code (lipverify.bounds) gives the same values."""
    net = small_cnn(2, pool, act=lv.Tanh)
    fc = dense_equivalent(net)
    x = np.random.default_rng(0).normal(size=net.input_shape)
    np.testing.assert_allclose(net(x), fc(x.ravel()), rtol=1e-12, atol=1e-12)
    for method, norms in (("kstar", ("1", "2", "inf")), ("k1", ("1", "2", "inf")), ("k3", ("1", "inf")),
                          ("k4", ("1", "inf"))):
        for p in norms:
            ref = float(lv.bound(fc, method, p).value)
            variants = ("explicit",) if method == "k1" or p == "2" else ("explicit", "implicit")
            for v in variants:
                got = float(lv.bound(net, method, p, conv=v).value)
                assert _close(got, ref, 1e-8), (method, p, v, got, ref)


def test_k2_explicit_matches_dense_network_and_refuses_max_pooling():
    net = lv.Network([lv.Conv2d(np.array([[[[1.0, -2.0]]], [[[0.5, 1.0]]]])), lv.ReLU(), lv.Flatten(),
                      lv.Dense(np.array([[1.0, -1.0, 2.0, 0.5]]))], input_shape=(1, 1, 3))
    fc = dense_equivalent(net)
    for p in ("1", "inf"):
        a, b = lv.bound(net, "k2", p), lv.bound(fc, "k2", p)
        assert a.kind == b.kind == "upper" and a.quantity_exact and b.quantity_exact
        assert _close(float(a.value), float(b.value))
        assert a.details["conv"] == "explicit"
    with pytest.raises(lv.NotApplicableError, match="max pooling"):
        lv.bound(small_cnn(0, "max"), "k2", "inf")
    with pytest.raises(lv.NotApplicableError, match="conv='implicit'.*use conv='explicit'"):
        lv.bound(net, "k2", "inf", conv="implicit")
    with pytest.raises(lv.NotApplicableError, match="k1 with conv='implicit'"):
        lv.bound(net, "k1", "inf", conv="implicit")


def test_orderings_and_known_values():
    net = small_cnn(3, "max")
    for p in ("1", "inf"):
        k4, k3, ks = (float(lv.bound(net, m, p).value) for m in ("k4", "k3", "kstar"))
        lo = float(lv.lower_bound(net, p, samples=64, steps=10).value)
        assert lo <= k4 <= k3 * (1 + 1e-12) and k3 <= ks * (1 + 1e-12)
        assert float(lv.bound(net, "k1", p).value) <= ks * (1 + 1e-12)


@pytest.mark.parametrize("k,stride,padding,p,expected", [
    (3, 1, 0, "1", 9.0), (3, 1, 0, "inf", 1.0), (3, 1, 0, "2", 3.0), (2, 2, 0, "1", 1.0), (3, 2, 1, "1", 4.0),
])
def test_maxpool_norms_are_attained(k, stride, padding, p, expected):
    """sup ||M||_p over the max-pool set (proofs/maxpool.md): 1 (l∞), c (l1), sqrt(c) (l2), c the max overlap."""
    net = lv.Network([lv.MaxPool2d(k, stride, padding), lv.Flatten()], input_shape=(1, 7, 7))
    value = float(lv.bound(net, "kstar", p).value)
    assert expected <= value <= expected * (1 + 1e-12)
    if p != "2":
        assert float(lv.bound(net, "k3", p).value) == pytest.approx(expected, rel=1e-12)
        assert float(lv.bound(net, "k4", p).value) == pytest.approx(expected, rel=1e-12)
    # attained: one input cell that is the maximum of every window containing it
    x = np.zeros((1, 7, 7))
    x[0, 3, 3] = 1.0
    lower = float(lv.lower_bound(net, p, domain=(x - 0.4, x + 0.4), samples=32, steps=0).value)
    assert expected * (1 - 1e-5) <= lower <= expected  # CNN lower bounds keep a 1e-6 relative margin


def test_explicit_size_limit_refuses_with_advice(monkeypatch):
    monkeypatch.setattr(ir_graph, "EXPLICIT_NNZ_LIMIT", 10)
    with pytest.raises(lv.NotApplicableError, match="conv='explicit'.*nonzeros.*use conv='implicit'"):
        lv.bound(small_cnn(), "k3", "inf", conv="explicit")
    assert lv.bound(small_cnn(), "k3", "inf", conv="implicit").kind == "upper"


def test_compare_shows_both_variants():
    net = small_cnn(4, "max")
    rows = lv.compare(net, norms=("inf",), methods=("k3", "k4", "k1"))
    assert [(r.method, rows.to_dicts()[i]["conv"]) for i, r in enumerate(rows)] == [
        ("k3", "implicit"), ("k3", "explicit"), ("k4", "implicit"), ("k4", "explicit"), ("k1", "implicit"),
        ("k1", "explicit")]
    assert rows.value("k1", "inf", conv="implicit") is None
    assert rows.value("k1", "inf", conv="explicit") > 0
    assert _close(rows.value("k4", "inf", conv="implicit"), rows.value("k4", "inf", conv="explicit"))
    assert "conv=explicit" in rows.table()
    only = lv.compare(net, norms=("inf",), methods=("k3",), conv="explicit")
    assert len(only) == 1 and only[0].details["conv"] == "explicit"


def test_fc_networks_ignore_conv_and_reject_typos():
    fc = lv.Network([lv.Dense([[1, -2], [0, 1]]), lv.ReLU(), lv.Dense([[1, 1]])])
    assert lv.bound(fc, "k4", "inf", conv="explicit").value == lv.bound(fc, "k4", "inf").value == 3.0
    with pytest.raises(ValueError, match="conv must be"):
        lv.bound(fc, "k4", "inf", conv="sparse")


def test_unsupported_layer_is_named():
    class Odd(lv.Layer):
        kind = "Odd"

        def output_shape(self, s):
            return s

        def forward(self, x):
            return x

    net = lv.Network([lv.Conv2d(np.ones((1, 1, 1, 1))), Odd(), lv.Flatten()], input_shape=(1, 2, 2))
    with pytest.raises(lv.UnsupportedLayerError, match=r"layer 1 \(Odd\)"):
        lv.bound(net, "k3", "inf")


METHODS = (("kstar", ("1", "2", "inf")), ("k1", ("1", "2", "inf")), ("k3", ("1", "inf")), ("k4", ("1", "inf")))


@given(conv_networks(max_blocks=3, max_size=6, max_channels=3), st.sampled_from(["1", "2", "inf"]))
def test_soundness_sampled_jacobians_below_every_bound(net, p):
    """lower_bound (norms of sampled Jacobians) <= every bound, in both variants; K4 <= K3 <= K* (l1, l∞)."""
    lo = float(lv.lower_bound(net, p, samples=32, steps=5).value)
    values = {}
    for method, norms in METHODS:
        if p not in norms:
            continue
        for v in ("implicit", "explicit"):
            if method == "k1" and v == "implicit":
                continue
            b = lv.bound(net, method, p, conv=v)
            assert b.kind == "upper" and np.isfinite(float(b.value))
            assert lo <= float(b.value) * (1 + 1e-12), (method, v, lo, b.value)
            values[method, v] = float(b.value)
    if p != "2":
        for v in ("implicit", "explicit"):
            assert values["k4", v] <= values["k3", v] * (1 + 1e-9) + 1e-300
            assert values["k3", v] <= values["kstar", v] * (1 + 1e-9) + 1e-300
        for m in ("kstar", "k3", "k4"):
            imp, exp = values[m, "implicit"], values[m, "explicit"]
            assert _close(imp, exp, 1e-8) or max(imp, exp) < 1e-100
    else:
        # (both are rigorous; at denormal scale (zero weights) their rounding terms differ)
        assert values["kstar", "explicit"] <= values["kstar", "implicit"] * (1 + 1e-9) + 1e-100


def test_single_conv_known_values_and_overflow():
    """One conv layer: K* = K3 = K4 = the induced norm, which for l∞ is the largest |kernel| sum over an interior
    output; an overflowing pass raises instead of returning a number."""
    k = np.array([[[[1.0, -2.0], [0.5, 0.25]]], [[[-1.0, 0.0], [3.0, 0.0]]]])
    net = lv.Network([lv.Conv2d(k, padding=1), lv.Flatten()], input_shape=(1, 3, 3))
    for v in ("implicit", "explicit"):
        for m in ("kstar", "k3", "k4"):
            assert float(lv.bound(net, m, "inf", conv=v).value) == pytest.approx(4.0, rel=1e-13)
            # l1: the largest column sum; every input cell meets every tap of both kernels: 3.75 + 4
            assert float(lv.bound(net, m, "1", conv=v).value) == pytest.approx(7.75, rel=1e-13)
    huge = lv.Network([lv.Conv2d(np.full((1, 1, 3, 3), 1e200)), lv.ReLU(), lv.Conv2d(np.full((1, 1, 1, 1), 1e200)),
                       lv.Flatten()], input_shape=(1, 3, 3))
    with pytest.raises(lv.NumericalError):
        lv.bound(huge, "k3", "inf")
    with pytest.raises(lv.NumericalError):
        lv.bound(huge, "k4", "inf")


def test_zero_batchnorm_scale_gives_tiny_bounds_not_errors():
    """Regression: gamma = 0 leaves only the (subnormal-scale) rounding radius; the verified spectral norm of such
    a matrix used to raise OverflowError (2**1029 in rigorous.spectral_norm_upper)."""
    net = lv.Network([lv.Conv2d(np.ones((1, 1, 1, 1))), lv.BatchNorm2d([0.0], [0.0], [0.0], [1.0]), lv.ReLU(),
                      lv.Flatten(), lv.Dense(np.ones((1, 4)))], input_shape=(1, 2, 2))
    for method in ("kstar", "k1"):
        value = float(lv.bound(net, method, 2, conv="explicit").value)
        assert 0.0 <= value < 1e-100


def test_exact_kernel_bounds_cover_the_exact_rational_values():
    """A kernel of exact rationals (1/3 is no float): the float bounds carry the radius and stay above the exact
    values that the FC code computes in rational arithmetic on the equivalent dense network."""
    from fractions import Fraction

    kernel = [[[[Fraction(1, 3), Fraction(-2, 7)], [Fraction(5, 11), 1]]], [[[Fraction(-1, 9), 0], [2, Fraction(1, 3)]]]]
    net = lv.Network([lv.Conv2d(kernel, padding=1), lv.ReLU(), lv.AvgPool2d(3, stride=1, padding=1), lv.Flatten(),
                      lv.Dense([[1, -1] * 16])], input_shape=(1, 3, 3))
    conv = net.layers[0]
    # the exact dense matrix of the convolution, from the exact kernel entries
    rows, cols, kidx = conv.taps((1, 3, 3))
    flat = [Fraction(int(v.p), int(v.q)) for v in conv.weight_exact]
    w1 = np.zeros((2 * 16, 9), dtype=object)
    w1[:, :] = Fraction(0)
    for r, c, k in zip(rows, cols, kidx):
        w1[r, c] = flat[k]
    pool_rows, pool_cols, _ = lv.Conv2d(np.ones((2, 1, 3, 3)), padding=1, groups=2).taps((2, 4, 4))
    w2 = np.zeros((32, 32), dtype=object)
    w2[:, :] = Fraction(0)
    for r, c in zip(pool_rows, pool_cols):
        w2[r, c] = Fraction(1, 9)
    fc = lv.Network([lv.Dense(w1.tolist()), lv.ReLU(), lv.Dense(w2.tolist()), lv.Dense([[1, -1] * 16])])
    for method in ("kstar", "k3", "k4"):
        for p in ("1", "inf"):
            exact = lv.bound(fc, method, p)
            assert exact.exact_value is not None
            for v in ("implicit", "explicit"):
                value = float(lv.bound(net, method, p, conv=v).value)
                assert Fraction(value) >= Fraction(int(exact.exact_value.p), int(exact.exact_value.q))
                assert value == pytest.approx(float(exact.exact_value), rel=1e-12)


@settings(max_examples=25)
@given(conv1d_networks(max_blocks=2, max_length=10, max_channels=3), st.sampled_from(["1", "2", "inf"]))
def test_soundness_on_1d_networks_sampled_jacobians_below_every_bound(net, p):
    """1-D CNNs (Conv1d, BatchNorm1d, MaxPool1d, AvgPool1d, Upsample, lowered to the 2-D operators on (C, 1, L)):
    the certified lower bound (norms of sampled Jacobians) <= every bound in both variants; K4 <= K3 <= K* (l1, l∞);
    the two variants agree."""
    lo = float(lv.lower_bound(net, p, samples=16, steps=3).value)
    values = {}
    for method, norms in METHODS:
        if p not in norms:
            continue
        for v in ("implicit", "explicit"):
            if method == "k1" and v == "implicit":
                continue
            b = lv.bound(net, method, p, conv=v)
            assert b.kind == "upper" and np.isfinite(float(b.value))
            assert lo <= float(b.value) * (1 + 1e-12), (method, v, lo, b.value)
            values[method, v] = float(b.value)
    if p != "2":
        for v in ("implicit", "explicit"):
            assert values["k4", v] <= values["k3", v] * (1 + 1e-9) + 1e-300
            assert values["k3", v] <= values["kstar", v] * (1 + 1e-9) + 1e-300
        for m in ("kstar", "k3", "k4"):
            imp, exp = values[m, "implicit"], values[m, "explicit"]
            assert _close(imp, exp, 1e-8) or max(imp, exp) < 1e-100
