"""Residual networks ``y = S(x) + F(x)``: the layer, the graph lowering and every bound that represents it
(``proofs/residual.md``), against oracles that share no code with the bounds: closed forms, dense Jacobians built
in this file from the layer weights, and difference quotients of the forward pass."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lipverify as lv
from lipverify.strategies import residual_networks

UPPER = (("kstar", ("1", "2", "inf")), ("k1", ("1", "2", "inf")), ("k3", ("1", "inf")), ("k4", ("1", "inf")))


def _norm(j: np.ndarray, p: str) -> float:
    if p == "1":
        return float(np.abs(j).sum(axis=0).max(initial=0.0))
    if p == "inf":
        return float(np.abs(j).sum(axis=1).max(initial=0.0))
    return float(np.linalg.norm(j, 2))


def _quotients(net: lv.Network, p: str, pairs: int = 64, seed: int = 0) -> float:
    """max ||f(x) - f(y)|| / ||x - y|| over random pairs (near and far): a lower bound of the constant that needs
    only the forward pass.  The float forward pass errs by far less than 1e-9 (1 + |f|) at these sizes (depth <= 5,
    width <= 4, weights <= 2, inputs <= 20); that allowance is taken off every difference, so rounding noise
    cannot fake a violation."""
    rng = np.random.default_rng(seed)
    ones = (1,) * len(net.input_shape)
    x = rng.standard_normal((pairs, *net.input_shape)) * rng.choice([0.1, 1.0, 5.0], size=(pairs, *ones))
    d = rng.standard_normal(x.shape) * rng.choice([1e-2, 1e-1, 1.0], size=(pairs, *ones))
    fx, fy = net(x).reshape(pairs, -1), net(x + d).reshape(pairs, -1)
    ordp = {"1": 1, "2": 2, "inf": np.inf}[p]
    size = 1.0 + np.linalg.norm(fx, ord=ordp, axis=1) + np.linalg.norm(fy, ord=ordp, axis=1)
    num = np.maximum(np.linalg.norm(fx - fy, ord=ordp, axis=1) - 1e-9 * size, 0.0)
    den = np.linalg.norm(d.reshape(pairs, -1), ord=ordp, axis=1)
    return float(np.max(num / den))


def _fc_jacobian(net: lv.Network, x: np.ndarray) -> np.ndarray:
    """The Jacobian of a fully connected residual net written here from the weights (ReLU/identity/tanh/LeakyReLU)."""
    def walk(layers, h):
        jac = np.eye(h.size)
        for layer in layers:
            if isinstance(layer, lv.Dense):
                h, jac = layer.weight @ h + layer.bias, layer.weight @ jac
            elif isinstance(layer, lv.Residual):
                hb, jb = walk(layer.body, h)
                hs, js = walk(layer.shortcut, h) if layer.shortcut else (h, np.eye(h.size))
                h, jac = hb + hs, (jb + js) @ jac
            else:
                name = type(layer).__name__
                if name == "ReLU":
                    d = (h > 0).astype(float)
                    h = np.maximum(h, 0)
                elif name == "Tanh":
                    d = 1 - np.tanh(h) ** 2
                    h = np.tanh(h)
                elif name == "Identity":
                    d = np.ones_like(h)
                else:
                    raise TypeError(name)
                jac = d[:, None] * jac
        return h, jac

    return walk(net.layers, np.asarray(x, dtype=float))[1]


def _block_net():
    """x (2) -> Dense -> ReLU -> Residual(Dense ReLU Dense, identity) -> ReLU -> Dense (1)."""
    rng = np.random.default_rng(3)
    body = [lv.Dense(rng.normal(size=(3, 2))), lv.ReLU(), lv.Dense(rng.normal(size=(2, 3)))]
    return lv.Network([lv.Dense(rng.normal(size=(2, 2)), rng.normal(size=2)), lv.ReLU(), lv.Residual(body), lv.Tanh(),
                       lv.Dense(rng.normal(size=(2, 2)))], input_shape=(2,))


def test_jacobian_and_sympy_of_a_residual_block_match_a_jacobian_written_here():
    net = _block_net()
    rng = np.random.default_rng(0)
    for x in rng.normal(size=(5, 2)):
        np.testing.assert_allclose(net.jacobian(x), _fc_jacobian(net, x), rtol=1e-12, atol=1e-12)
    import sympy

    expr = net.sympy()
    x = [0.3, -0.7]
    value = [float(e.subs(dict(zip(net.input_symbols(), x)))) for e in expr]
    np.testing.assert_allclose(value, net(np.array(x)), rtol=1e-12)
    assert isinstance(expr, sympy.Matrix)


def test_closed_form_one_dimensional_block_exact_and_float():
    """y = x + relu(2x) + relu(-x)/2 has slope 1 + 2 = 3 for x > 0 and 1 - 1/2 for x < 0: constant 3.  K3 adds the
    branch magnitudes (1 + 2 + 1/2 = 7/2), K4 encloses the slopes [1, 1] + {2 d1 - d2/2} = [1/2, 3]: exactly 3;
    K* = 1 + ||W2|| ||W1|| = 1 + 3 = 4 in l1 (3 * 1) and in l∞ (3/2 * 2)."""
    body = [lv.Dense([[2], [-1]]), lv.ReLU(), lv.Dense([[1, Fraction(1, 2)]])]
    net = lv.Network([lv.Residual(body)], input_shape=(1,))
    for p in ("1", "inf"):
        for method, expected in (("k3", Fraction(7, 2)), ("k4", Fraction(3)), ("kstar", Fraction(4))):
            b = lv.bound(net, method, norm=p)
            assert b.exact_value == expected, (method, p, b.exact_value)
            flt = lv.bound(net, method, norm=p, arithmetic="float")
            assert float(expected) <= flt.value <= float(expected) * (1 + 1e-12), (method, p)


@pytest.mark.parametrize("p", ["1", "2", "inf"])
def test_fc_block_bounds_are_above_the_dense_jacobians_and_ordered(p):
    net = _block_net()
    rng = np.random.default_rng(1)
    lower = max(_norm(_fc_jacobian(net, x), p) for x in rng.normal(size=(200, 2)) * 3)
    values = {}
    for method, norms in UPPER:
        if p in norms:
            b = lv.bound(net, method, norm=p)
            assert b.kind == "upper" and b.details.get("residual") is True
            assert lower <= b.value * (1 + 1e-12), (method, lower, b.value)
            values[method] = b.value
    if p != "2":
        assert values["k4"] <= values["k3"] * (1 + 1e-12) <= values["kstar"] * (1 + 1e-9)
    lb = lv.lower_bound(net, p, samples=64, steps=5)
    assert lb.value <= min(values.values()) * (1 + 1e-12)


def test_methods_needing_one_chain_refuse_a_residual_block_by_name():
    net = _block_net()
    for method, p in (("k2", "inf"), ("kcp", "inf"), ("lipsdp", "2")):
        with pytest.raises((lv.UnsupportedLayerError, lv.NotApplicableError), match="layer 2 .Residual"):
            lv.bound(net, method, norm=p)


def _resnet_block_cnn(seed: int = 0) -> lv.Network:
    """conv–BN–ReLU–conv–BN + identity, ReLU; a strided block with a 1×1 projection; max pooling; dense."""
    rng = np.random.default_rng(seed)

    def conv(co, ci, k=3, stride=1):
        return lv.Conv2d(rng.normal(0, 0.4, (co, ci, k, k)), rng.normal(0, 0.1, co), stride=stride, padding=k // 2)

    def bn(c):
        return lv.BatchNorm2d(rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c), rng.normal(0, 0.1, c),
                              rng.uniform(0.5, 2.0, c))

    block1 = lv.Residual([conv(2, 2), bn(2), lv.ReLU(), conv(2, 2), bn(2)])
    block2 = lv.Residual([conv(3, 2, stride=2), bn(3), lv.ReLU(), conv(3, 3), bn(3)], [conv(3, 2, k=1, stride=2), bn(3)])
    return lv.Network([conv(2, 1), lv.ReLU(), block1, lv.ReLU(), block2, lv.ReLU(), lv.MaxPool2d(2), lv.Flatten(),
                       lv.Dense(rng.normal(0, 0.5, (3, 12)))], input_shape=(1, 8, 8))


def test_resnet_style_cnn_gets_sound_bounds_in_both_representations():
    net = _resnet_block_cnn()
    for p in ("1", "2", "inf"):
        lower = _quotients(net, p)
        for method, norms in UPPER:
            if p not in norms:
                continue
            values = []
            for conv in ("implicit", "explicit"):
                if method == "k1" and conv == "implicit":
                    with pytest.raises(lv.NotApplicableError):
                        lv.bound(net, method, norm=p, conv=conv)
                    continue
                b = lv.bound(net, method, norm=p, conv=conv)
                assert b.details["conv"] == conv and b.details["residual"] is True
                assert lower <= b.value * (1 + 1e-12), (method, conv, p, lower, b.value)
                values.append(b.value)
            if p == "2":  # implicit l2 norms bound |W| (no matrix for an SVD): explicit <= implicit
                assert values[-1] <= values[0] * (1 + 1e-9), (method, values)
            else:
                assert max(values) <= min(values) * (1 + 1e-8), (method, p, values)


@settings(max_examples=25, deadline=None)
@given(residual_networks(conv=False, max_blocks=2), st.sampled_from(["1", "2", "inf"]))
def test_soundness_property_fc_residual_networks(net, p):
    """Every bound of the graph on generated residual MLPs is above the difference quotients and the sampled
    Jacobians (Network.jacobian, itself checked against the Jacobian written here); K4 <= K3 <= K*."""
    lower = max(_quotients(net, p), float(lv.lower_bound(net, p, samples=16, steps=3).value))
    values = {}
    for method, norms in UPPER:
        if p in norms:
            try:
                b = lv.bound(net, method, norm=p)
            except lv.NumericalError:
                continue
            assert lower <= b.value * (1 + 1e-9) + 1e-150, (method, p, lower, b.value)
            values[method] = b.value
    assert values, "no method produced a value"
    if p != "2" and {"k3", "k4", "kstar"} <= set(values):
        assert values["k4"] <= values["k3"] * (1 + 1e-9) + 1e-300
        assert values["k3"] <= values["kstar"] * (1 + 1e-9) + 1e-300


@settings(max_examples=15, deadline=None)
@given(residual_networks(conv=True, max_blocks=2), st.sampled_from(["1", "2", "inf"]))
def test_soundness_property_conv_residual_networks(net, p):
    lower = _quotients(net, p, pairs=32)
    produced = 0
    for method, norms in UPPER:
        if p not in norms:
            continue
        for conv in ("implicit", "explicit"):
            if method == "k1" and conv == "implicit":
                continue
            try:
                b = lv.bound(net, method, norm=p, conv=conv)
            except lv.NotApplicableError as exc:  # K4 l∞ with a max pool inside a block is refused by design
                assert method == "k4" and "max pool" in str(exc)
                continue
            assert lower <= b.value * (1 + 1e-9) + 1e-150, (method, conv, p, lower, b.value)
            produced += 1
    assert produced


def test_residual_layer_errors_name_the_branch_and_shapes():
    with pytest.raises(lv.ShapeError, match="both branches"):
        lv.Network([lv.Residual([lv.Dense(np.ones((3, 2)))])], input_shape=(2,))
    with pytest.raises(lv.ShapeError, match="body needs at least one layer"):
        lv.Residual([])
    with pytest.raises(TypeError, match="body layer 0"):
        lv.Residual([np.eye(2)])


def test_local_bounds_on_a_residual_mlp_hold_on_the_box_and_never_exceed_the_global_ones():
    net = _block_net()
    center = np.array([0.4, -0.2])
    box = (center - 0.05, center + 0.05)
    rng = np.random.default_rng(5)
    for p in ("1", "inf"):
        ordp = 1 if p == "1" else np.inf
        x = rng.uniform(*box, size=(400, 2))
        y = rng.uniform(*box, size=(400, 2))
        quotient = np.max(np.linalg.norm(net(x) - net(y), ord=ordp, axis=1) / np.linalg.norm(x - y, ord=ordp, axis=1))
        for method in ("k3", "k4", "kstar"):
            local = lv.bound(net, method, norm=p, domain=box).value
            assert quotient <= local * (1 + 1e-12), (method, p)
            assert local <= lv.bound(net, method, norm=p).value * (1 + 1e-12)
    lo, hi = lv.local.output_enclosure(net, box)
    out = net(rng.uniform(*box, size=(1000, 2)))
    assert np.all(out >= lo) and np.all(out <= hi)


def test_exact_constants_of_residual_relu_networks():
    """lv.exact rewrites ReLU residual blocks into a chain computing the same function: the 1-D closed form (3),
    and on random residual MLPs the difference quotients <= exact <= K4 <= K3, the rewrite agreeing pointwise."""
    from fractions import Fraction as F

    from lipverify.exact.common import sequential_equivalent

    body = [lv.Dense([[2], [-1]]), lv.ReLU(), lv.Dense([[1, F(1, 2)]])]
    assert lv.exact(lv.Network([lv.Residual(body)], input_shape=(1,)), "inf").value == 3
    rng = np.random.default_rng(2)
    for seed in range(3):
        rng = np.random.default_rng(seed)
        inner = lv.Residual([lv.Dense(rng.normal(size=(2, 2))), lv.ReLU(), lv.Dense(rng.normal(size=(2, 2)))])
        blk = lv.Residual([lv.Dense(rng.normal(size=(3, 2))), lv.ReLU(), lv.Dense(rng.normal(size=(2, 3))), inner],
                          [lv.Dense(rng.normal(size=(2, 2)))] if seed % 2 else None)
        net = lv.Network([lv.Dense(rng.normal(size=(2, 2)), rng.normal(size=2)), lv.ReLU(), blk, lv.ReLU(),
                          lv.Dense(rng.normal(size=(1, 2)))], input_shape=(2,))
        x = rng.normal(size=(200, 2)) * 3
        np.testing.assert_allclose(sequential_equivalent(net)(x), net(x), rtol=1e-12, atol=1e-12)
        for p in ("1", "inf"):
            e = lv.exact(net, p)
            assert e.kind == "exact"
            value = float(e.value)
            assert _quotients(net, p, pairs=200) <= value * (1 + 1e-9)
            assert value <= lv.bound(net, "k4", norm=p).value * (1 + 1e-12)


def test_exact_refuses_residual_blocks_it_cannot_rewrite():
    net = lv.Network([lv.Residual([lv.Dense([[1.0]]), lv.Sigmoid(), lv.Dense([[1.0]])])], input_shape=(1,))
    with pytest.raises(lv.NotApplicableError, match="Residual.*Sigmoid"):
        lv.exact(net, "inf")
