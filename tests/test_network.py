import numpy as np
import pytest
import sympy
from hypothesis import given

import lipverify as lv
from lipverify.strategies import networks


def test_shape_error_names_layer_index_type_and_shapes():
    with pytest.raises(lv.ShapeError, match=r"layer 2 \(Dense\(4->1\)\): input shape \(3,\) does not fit"):
        lv.Network([lv.Dense(np.ones((3, 2))), lv.ReLU(), lv.Dense(np.ones((1, 4)))])


def test_dense_after_image_needs_flatten():
    with pytest.raises(lv.ShapeError, match="insert Flatten"):
        lv.Network([lv.Dense(np.ones((2, 4)))], input_shape=(1, 2, 2))
    net = lv.Network([lv.Flatten(), lv.Dense(np.ones((2, 4)))], input_shape=(1, 2, 2))
    assert net.output_shape == (2,)
    assert net(np.ones((1, 2, 2))).tolist() == [4.0, 4.0]


def test_input_shape_inference_and_errors():
    with pytest.raises(lv.ShapeError, match="cannot infer"):
        lv.Network([lv.Flatten(), lv.Dense(np.ones((2, 4)))])
    with pytest.raises(lv.ShapeError, match="at least one layer"):
        lv.Network([])
    with pytest.raises(TypeError, match="layer 0 is a str"):
        lv.Network(["relu"])


def test_forward_input_shape_checked():
    net = lv.Network([lv.Dense(np.ones((2, 3)))])
    with pytest.raises(lv.ShapeError, match=r"input of shape \(4,\)"):
        net(np.ones(4))
    assert net(np.ones((5, 3))).shape == (5, 2)


@given(networks(max_depth=3))
def test_jacobian_matches_finite_differences(net):
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, net.n_in)
    jac = net.jacobian(x)
    h = 1e-6
    fd = np.stack([(net(x + h * e) - net(x - h * e)) / (2 * h) for e in np.eye(net.n_in)], axis=1)
    # kinks of ReLU-type activations may sit within h of x: compare where the finite difference is stable
    fd2 = np.stack([(net(x + h / 4 * e) - net(x - h / 4 * e)) / (h / 2) for e in np.eye(net.n_in)], axis=1)
    stable = np.abs(fd - fd2) < 1e-5 * (1 + np.abs(fd))
    np.testing.assert_allclose(jac[stable], fd[stable], rtol=1e-4, atol=1e-5)


@given(networks(max_depth=3, max_width=3, activations=("relu", "tanh", "sigmoid", "leakyrelu", "identity")))
def test_sympy_form_equals_forward(net):
    exprs = net.sympy()
    xs = net.input_symbols()
    x = np.linspace(-0.9, 0.8, net.n_in)
    got = [float(e.subs(dict(zip(xs, x)))) for e in exprs]
    np.testing.assert_allclose(got, net(x), rtol=1e-9, atol=1e-9)


def test_symbolic_network_sympy_and_subs():
    a = sympy.Symbol("a", real=True)
    net = lv.Network([lv.Dense(sympy.Matrix([[a]])), lv.ReLU(), lv.Dense([[2]])])
    (expr,) = net.sympy()
    x0 = net.input_symbols()[0]
    assert sympy.simplify(expr - 2 * sympy.Max(0, a * x0)) == 0
    with pytest.raises(lv.LipVerifyError, match="symbolic parameters"):
        lv.bound(net, "kstar", norm=2)
    assert lv.bound(net.subs({a: 3}), "kstar", norm="inf").value == 6.0
