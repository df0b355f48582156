"""The search part of ``lower_bound``: chunked float Jacobians, reverse mode through residual blocks, adaptive hill
climbing (``lipverify/lower.py``, ``proofs/lower_bound.md`` search notes).  Oracles: central finite differences of the
forward pass (exact up to rounding for piecewise-linear nets away from kinks) and dense products written here."""

import numpy as np
import pytest

import lipverify as lv
from lipverify import lower


def _small_cnn(seed=0):
    rng = np.random.default_rng(seed)
    return lv.Network([lv.Conv2d(rng.normal(0, 0.5, (3, 1, 3, 3)), rng.normal(0, 0.1, 3), padding=1), lv.ReLU(),
                       lv.MaxPool2d(2), lv.Conv2d(rng.normal(0, 0.5, (2, 3, 3, 3)), rng.normal(0, 0.1, 2)), lv.ReLU(),
                       lv.Flatten(), lv.Dense(rng.normal(0, 0.5, (3, 2)))], input_shape=(1, 6, 6))


def _residual_cnn(seed=1):
    rng = np.random.default_rng(seed)

    def conv(co, ci, k=3, stride=1):
        return lv.Conv2d(rng.normal(0, 0.4, (co, ci, k, k)), rng.normal(0, 0.1, co), stride=stride, padding=k // 2)

    block = lv.Residual([conv(2, 2), lv.ReLU(), conv(2, 2)])
    proj = lv.Residual([conv(3, 2, stride=2), lv.Tanh(), conv(3, 3)], [conv(3, 2, k=1, stride=2)])
    return lv.Network([conv(2, 1), lv.ReLU(), block, lv.ReLU(), proj, lv.ReLU(), lv.MaxPool2d(2), lv.Flatten(),
                       lv.Dense(rng.normal(0, 0.5, (2, 3)))], input_shape=(1, 6, 6))


def _residual_mlp(seed=2):
    rng = np.random.default_rng(seed)
    body = [lv.Dense(rng.normal(size=(5, 4)), rng.normal(size=5)), lv.ReLU(), lv.Dense(rng.normal(size=(4, 5)))]
    return lv.Network([lv.Dense(rng.normal(size=(4, 6)), rng.normal(size=4)), lv.ReLU(), lv.Residual(body), lv.ReLU(),
                       lv.Dense(rng.normal(size=(2, 4)))])


def _finite_differences(net, x, h=1e-6):
    cols = []
    for k in range(net.n_in):
        e = np.zeros(net.n_in)
        e[k] = h
        e = e.reshape(net.input_shape)
        cols.append((net.forward_batch((x + e)[None]).ravel() - net.forward_batch((x - e)[None]).ravel()) / (2 * h))
    return np.stack(cols, axis=1)


@pytest.mark.parametrize("make", [_small_cnn, _residual_cnn, _residual_mlp])
def test_reverse_mode_jacobians_match_finite_differences_and_forward_mode(make):
    net = make()
    assert net.n_out < net.n_in
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, size=(4, *net.input_shape))
    rev = lower._reverse_jacobians(net)(x)
    fwd = lower._forward_jacobians(net)(x)
    for i in range(len(x)):
        np.testing.assert_allclose(rev[i], _finite_differences(net, x[i]), atol=1e-6)
    np.testing.assert_allclose(rev, fwd, atol=1e-12)


def test_reverse_mode_on_a_dense_net_equals_the_product_written_out():
    rng = np.random.default_rng(3)
    w1, b1, w2 = rng.normal(size=(7, 5)), rng.normal(size=7), rng.normal(size=(2, 7))
    net = lv.Network([lv.Dense(w1, b1), lv.ReLU(), lv.Dense(w2)])
    x = rng.normal(size=(3, 5))
    jac = lower._reverse_jacobians(net)(x)
    for i in range(3):
        np.testing.assert_allclose(jac[i], w2 @ np.diag((w1 @ x[i] + b1 > 0).astype(float)) @ w1, atol=1e-13)


@pytest.mark.parametrize("make", [_small_cnn, _residual_cnn])
def test_chunks_of_one_point_give_the_same_jacobians_and_the_same_best_value(make, monkeypatch):
    net = make()
    x = np.random.default_rng(0).uniform(-1, 1, size=(9, *net.input_shape))
    whole = lower._reverse_jacobians(net)(x)
    np.testing.assert_array_equal(lower._reverse_jacobians(net, chunk_bytes=1)(x), whole)
    np.testing.assert_allclose(lower._forward_jacobians(net, chunk_bytes=1)(x), whole, atol=1e-12)
    unchunked = lv.lower_bound(net, "inf", samples=32, steps=5, seed=4)
    monkeypatch.setattr(lower, "JACOBIAN_CHUNK_BYTES", 1)  # every point its own chunk
    chunked = lv.lower_bound(net, "inf", samples=32, steps=5, seed=4)
    assert chunked.kind == unchunked.kind == "lower"
    assert float(chunked.value) == float(unchunked.value) > 0


def test_search_falls_back_to_forward_mode_for_a_layer_without_a_reverse_rule():
    class Doubling(lv.Layer):  # a user layer with only a forward-mode rule
        def output_shape(self, input_shape):
            return input_shape

        def forward(self, x):
            return 2 * x

        def jvp(self, h, jac, shape_in, shape_out):
            return 2 * jac

        def describe(self):
            return "Doubling"

    net = lv.Network([lv.Dense(np.array([[1.0, -1.0, 0.5]])), Doubling()])
    with pytest.raises(lv.UnsupportedLayerError, match="layer 1 \\(Doubling\\)"):
        lower._reverse_jacobians(net)
    np.testing.assert_allclose(lower._search_jacobians(net)(np.ones((2, 3))), np.tile([[[2.0, -2.0, 1.0]]], (2, 1, 1)))


@pytest.mark.parametrize("make", [_small_cnn, _residual_cnn, _residual_mlp])
def test_certified_value_stays_below_the_upper_bound(make):
    net = make()
    for p in ("1", "inf"):
        low = lv.lower_bound(net, p, samples=64, steps=10)
        assert low.kind == "lower"
        assert float(low.value) <= float(lv.bound(net, "k4", p).value)
