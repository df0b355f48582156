from fractions import Fraction

import numpy as np
import pytest
import sympy

import lipverify as lv


@pytest.mark.parametrize("layer,slopes", [
    (lv.ReLU(), (0, 1)), (lv.Identity(), (1, 1)), (lv.Tanh(), (0, 1)), (lv.Sigmoid(), (0, sympy.Rational(1, 4))),
    (lv.LeakyReLU(Fraction(1, 5)), (sympy.Rational(1, 5), 1)), (lv.LeakyReLU(3), (1, 3)),
])
def test_slope_intervals(layer, slopes):
    assert layer.slopes == slopes


@pytest.mark.parametrize("layer", [lv.ReLU(), lv.LeakyReLU(0.1), lv.Tanh(), lv.Sigmoid(), lv.GELU(), lv.SiLU(), lv.Identity()])
def test_derivative_stays_in_slope_interval_and_matches_finite_differences(layer):
    x = np.linspace(-8, 8, 4001) + 1e-3  # avoid the kink at 0 exactly
    d = layer.derivative(x)
    lo, hi = layer.slope_interval
    assert np.all(d >= lo) and np.all(d <= hi)
    h = 1e-6
    fd = (layer.forward(x + h) - layer.forward(x - h)) / (2 * h)
    np.testing.assert_allclose(d, fd, atol=1e-6)


@pytest.mark.parametrize("layer", [lv.GELU(), lv.SiLU()])
def test_smooth_activation_slope_extremes_are_inside_but_close(layer):
    x = np.linspace(-6, 6, 200001)
    d = layer.derivative(x)
    lo, hi = layer.slope_interval
    assert lo <= d.min() < lo + 1e-3 and hi - 1e-3 < d.max() <= hi


def test_sympy_form_matches_forward():
    t = sympy.Symbol("t", real=True)
    for layer in [lv.ReLU(), lv.LeakyReLU(Fraction(1, 4)), lv.Tanh(), lv.Sigmoid(), lv.GELU(), lv.SiLU(), lv.Identity()]:
        expr = layer.sympy_apply(t)
        for v in (-2.5, -0.3, 0.7, 3.0):
            assert float(expr.subs(t, v)) == pytest.approx(float(layer.forward(np.array([v]))[0]), rel=1e-12, abs=1e-12)


def test_nan_and_inf_weights_are_refused_naming_the_entry():
    with pytest.raises(ValueError, match=r"entry \(0, 1\) is nan"):
        lv.Dense([[1.0, float("nan")]])
    with pytest.raises(ValueError, match="NaN and inf"):
        lv.Dense([[1.0]], [float("inf")])


def test_wrong_rank_and_non_numeric_weights_name_the_layer():
    with pytest.raises(lv.ShapeError, match="Dense weight: expected a rank-2 array"):
        lv.Dense([1.0, 2.0])
    with pytest.raises(TypeError, match="Dense weight"):
        lv.Dense([["a", "b"]])
    with pytest.raises(lv.ShapeError, match="bias has shape"):
        lv.Dense([[1.0, 2.0]], [1.0, 2.0])
    with pytest.raises(lv.ShapeError, match="rectangular"):
        lv.Dense([[1.0, 2.0], [1.0]])


def test_exact_weights_keep_their_value_and_radius_covers_rounding():
    layer = lv.Dense([[Fraction(1, 3), 2]], [sympy.Rational(1, 7)])
    assert layer.is_exact
    assert layer.weight_exact[0, 0] == sympy.Rational(1, 3)
    assert layer.weight[0, 1] == 2.0
    r = layer.weight_radius
    assert r[0, 1] == 0.0
    assert abs(sympy.Rational(layer.weight[0, 0]) - sympy.Rational(1, 3)) <= sympy.Rational(r[0, 0])


def test_symbolic_weights():
    a = sympy.Symbol("a", real=True)
    layer = lv.Dense(sympy.Matrix([[a, 1]]))
    assert layer.free_symbols == {a}
    with pytest.raises(ValueError, match="substitute values"):
        _ = layer.weight
    assert layer.subs({a: 2}).weight.tolist() == [[2.0, 1.0]]


def test_leaky_relu_rejects_non_numbers():
    with pytest.raises(TypeError):
        lv.LeakyReLU("0.1")
    with pytest.raises(ValueError):
        lv.LeakyReLU(float("nan"))
