"""lv.exact: breakpoints, activation regions, smooth nets, symbolic weights, domains and errors."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import sympy

import lipverify as lv
from lipverify.errors import NotApplicableError, UnsupportedLayerError
from lipverify.layers import Layer


def random_relu(n: int, widths: list[int], seed: int, out: int = 1, act=lv.ReLU) -> lv.Network:
    rng = np.random.default_rng(seed)
    layers, d = [], n
    for w in widths:
        layers += [lv.Dense(rng.standard_normal((w, d)), rng.standard_normal(w)), act()]
        d = w
    layers.append(lv.Dense(rng.standard_normal((out, d)), rng.standard_normal(out)))
    return lv.Network(layers)


def dense_grid_max(net: lv.Network, norm: str, lo: float, hi: float, points: int) -> float:
    x = np.linspace(lo, hi, points)[:, None]
    return float(np.max(lv.lower.jacobian_norm(net.jacobian(x), norm)))


# --------------------------------------------------------------------------- one input, piecewise linear


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("p", ["1", "2", "inf"])
def test_breakpoints_agree_with_regions_and_dense_sampling(seed, p):
    out = 1 + seed % 2
    net = random_relu(1, [5, 4], seed, out=out)
    bp = lv.exact(net, p, method="breakpoints")
    rg = lv.exact(net, p, method="regions")
    assert bp.kind == rg.kind == "exact"
    assert sympy.simplify(bp.value - rg.value) == 0
    sampled = dense_grid_max(net, p, -30.0, 30.0, 200_001)
    assert sampled <= float(bp.value) * (1 + 1e-12)
    assert sampled >= float(bp.value) * (1 - 1e-9)


def test_breakpoints_float_weights_are_exact_dyadics():
    net = lv.Network([lv.Dense([[0.1], [-0.3]], [0.2, 0.0]), lv.ReLU(), lv.Dense([[0.7, 0.5]])])
    value = lv.exact(net, "inf").value
    expected = max(abs(sympy.Rational(0.7) * sympy.Rational(0.1)), abs(sympy.Rational(0.5) * sympy.Rational(-0.3)),
                   abs(sympy.Rational(0.7) * sympy.Rational(0.1) + sympy.Rational(0.5) * sympy.Rational(-0.3)))
    assert value == expected and value.is_Rational


def test_leaky_relu_and_identity():
    net = lv.Network([lv.Dense([[1], [-1]]), lv.LeakyReLU(sympy.Rational(1, 4)), lv.Dense([[2, 3]]), lv.Identity()])
    # x > 0: 2 - 3/4 ; x < 0: 2/4 - 3
    assert lv.exact(net, 2).value == sympy.Rational(5, 2)


def test_thin_piece_1d():
    eps = Fraction(1, 2**60)
    net = lv.Network([lv.Dense([[1], [1]], [0, -eps]), lv.ReLU(), lv.Dense([[5, -5]])])
    assert lv.exact(net, "inf").value == 5


def test_domain_1d():
    from lipverify.zoo import ZOO

    hat = ZOO["hat"].build()
    assert lv.exact(hat, "inf", domain=([0], [Fraction(1, 4)])).value == 2
    assert lv.exact(hat, "inf", domain=([1.5], [3])).value == 0
    assert lv.exact(hat, "inf", domain=([0.6], [3]), method="regions").value == 2


# --------------------------------------------------------------------------- several inputs


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("p", ["1", "2", "inf"])
def test_regions_between_sampled_lower_and_bounds(seed, p):
    net = random_relu(2 + seed % 2, [6, 5], seed, out=1 + seed % 2)
    b = lv.exact(net, p)
    assert b.kind == "exact"
    lo = lv.lower_bound(net, p, samples=2000, steps=30, radius=10.0)
    assert sympy.Rational(lo.value) <= b.value
    bounds = [lv.bound(net, "k2", p), lv.bound(net, "kstar", p)]
    if p != "2":
        bounds.append(lv.bound(net, "k4", p))
    for ub in bounds:
        assert sympy.Rational(float(ub.value)) >= b.value


def test_regions_agree_with_dense_grid_2d():
    net = random_relu(2, [5], 3)
    b = lv.exact(net, "inf", domain=([-2, -2], [2, 2]))
    g = np.linspace(-2, 2, 801)
    xx = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)
    sampled = float(np.max(lv.lower.jacobian_norm(net.jacobian(xx), "inf")))
    assert sampled <= float(b.value) * (1 + 1e-12)
    assert sampled >= float(b.value) * (1 - 1e-9)


def test_domain_multi_d():
    from lipverify.zoo import ZOO

    plane = ZOO["relu_plane"].build()  # gradients (0, 2), (1, 1), (-1, 1), (0, 0)
    assert lv.exact(plane, "inf", domain=([2, -1], [3, 1])).value == 2
    assert lv.exact(plane, "inf", domain=([-3, -1], [-2, 1])).value == 0
    assert lv.exact(plane, 2, domain=([-1, 2], [1, 3])).value == sympy.sqrt(2)


def test_unrealizable_pattern_is_excluded():
    from lipverify.zoo import ZOO

    net = ZOO["linear_plane"].build()
    assert lv.exact(net, "inf").value == 2
    assert float(lv.bound(net, "k2", "inf").value) >= 4.0  # K2 uses the unrealizable "both active" pattern


def test_thin_slab_region_is_verified_exactly():
    eps = Fraction(1, 2**40)
    net = lv.Network([lv.Dense([[1, 0], [1, 0]], [0, -eps]), lv.ReLU(), lv.Dense([[1, -1]])])
    b = lv.exact(net, "inf")
    assert b.kind == "exact" and b.value == 1


def test_spectral_norm_of_general_jacobian_is_algebraic():
    net = lv.Network([lv.Dense([[1, 2], [3, 4]]), lv.Identity(), lv.Dense([[1, 0], [0, 1]])])
    b = lv.exact(net, 2)
    m = sympy.Matrix([[1, 2], [3, 4]])
    expected = sympy.sqrt(max((m.T * m).eigenvals(), key=lambda v: float(v)))
    assert sympy.simplify(b.value - expected) == 0


def test_size_limit_message():
    net = random_relu(20, [4], 0)
    with pytest.raises(NotApplicableError, match="input dimension 20"):
        lv.exact(net, "inf")


def test_unsupported_layer_names_index():
    class Odd(Layer):
        kind = "Odd"

        def output_shape(self, s):
            return s

        def forward(self, x):
            return x

    net = lv.Network([lv.Dense([[1, 2]]), Odd()])
    with pytest.raises(UnsupportedLayerError, match="layer 1"):
        lv.exact(net, "inf")


def test_bad_domain():
    net = random_relu(2, [3], 0)
    with pytest.raises(ValueError, match="lower"):
        lv.exact(net, "inf", domain=([0, 1], [1, 1]))


# --------------------------------------------------------------------------- smooth


def test_tanh_unit_is_exact():
    net = lv.Network([lv.Dense([[2]], [1]), lv.Tanh(), lv.Dense([[-3]])])
    b = lv.exact(net, "inf")
    assert b.kind == "exact" and b.value == 6


def test_tanh_on_domain_is_exact_at_the_boundary():
    net = lv.Network([lv.Dense([[2]]), lv.Tanh(), lv.Dense([[3]])])
    b = lv.exact(net, 2, domain=([1], [2]))
    assert b.kind == "exact"
    assert sympy.simplify(b.value - 6 * (1 - sympy.tanh(2) ** 2)) == 0


def test_two_tanh_enclosure_is_tight_and_fast():
    half = sympy.Rational(1, 2)
    net = lv.Network([lv.Dense([[1], [2]], [0, -1]), lv.Tanh(), lv.Dense([[1, half]])])  # tanh(x) + tanh(2x-1)/2
    b = lv.exact(net, "inf")
    assert b.kind == "upper" and b.lower is not None
    assert 0 <= b.gap <= 2e-9
    assert b.seconds < 5
    lo = lv.lower_bound(net, "inf", samples=4000, radius=3)
    assert lo.value <= b.value
    # f'(x) = sech^2(x) + sech^2(2x - 1): a dense evaluation stays inside the enclosure
    x = np.linspace(-1, 2, 300_001)
    d = 1 / np.cosh(x) ** 2 + 1 / np.cosh(2 * x - 1) ** 2
    assert np.max(d) <= b.value and np.max(d) >= b.lower - 1e-9


@pytest.mark.parametrize("act", [lv.Sigmoid, lv.GELU, lv.SiLU])
def test_smooth_enclosures_contain_sampled_slopes(act):
    net = random_relu(1, [3], 1, act=act)
    b = lv.exact(net, "inf", time_limit=3.0)
    lo = lv.lower_bound(net, "inf", samples=4000, radius=20)
    assert lo.value <= b.value
    assert b.lower <= b.value
    k = lv.bound(net, "kstar", "inf").value
    assert b.lower <= k


def test_smooth_multi_input_not_applicable():
    net = lv.Network([lv.Dense([[1, 2]]), lv.Tanh(), lv.Dense([[1]])])
    with pytest.raises(NotApplicableError, match="one input"):
        lv.exact(net, "inf")


# --------------------------------------------------------------------------- symbolic weights


def test_symbolic_output_weights_give_max_formula():
    a, b = sympy.symbols("a b", real=True)
    net = lv.Network([lv.Dense([[1], [-1]]), lv.ReLU(), lv.Dense(sympy.Matrix([[a, b]]))])
    assert lv.exact(net, "inf").value == sympy.Max(sympy.Abs(a), sympy.Abs(b))


def test_symbolic_first_layer_weight():
    a = sympy.Symbol("a", real=True)
    net = lv.Network([lv.Dense(sympy.Matrix([[a]])), lv.ReLU(), lv.Dense([[3]])])
    assert sympy.simplify(lv.exact(net, "inf").value - 3 * sympy.Abs(a)) == 0


def test_symbolic_bias_gives_piecewise():
    c = sympy.Symbol("c", real=True)
    # relu(x) - 2 relu(x - c): slopes 0, 1, -1 for c > 0 (L = 1); 0, -2, -1 for c < 0 (L = 2)
    net = lv.Network([lv.Dense([[1], [1]], sympy.Matrix([0, -c])), lv.ReLU(), lv.Dense([[1, -2]])])
    formula = lv.exact(net, "inf").value
    for val in [sympy.Rational(-3, 2), -1, 0, sympy.Rational(1, 3), 5]:
        numeric = lv.exact(net.subs({c: val}), "inf").value
        assert formula.subs(c, val) == numeric


def test_symbolic_formula_matches_substitution_two_symbols():
    a, c = sympy.symbols("a c", real=True)
    net = lv.Network([lv.Dense(sympy.Matrix([[1], [a]]), sympy.Matrix([0, c])), lv.ReLU(), lv.Dense([[1, 1]])])
    formula = lv.exact(net, 2).value
    for av in (-2, 0, sympy.Rational(1, 2), 3):
        for cv in (-1, 0, 2):
            numeric = lv.exact(net.subs({a: av, c: cv}), 2).value
            assert sympy.simplify(formula.subs({a: av, c: cv}) - numeric) == 0, (av, cv)


def test_symbolic_multi_input_not_applicable():
    a = sympy.Symbol("a", real=True)
    net = lv.Network([lv.Dense(sympy.Matrix([[1, a]])), lv.ReLU(), lv.Dense([[1]])])
    with pytest.raises(NotApplicableError, match="symbolic"):
        lv.exact(net, "inf")


# --------------------------------------------------------------------------- MILP cross-check


@pytest.mark.parametrize("n,widths,seed", [(1, [5, 4], 0), (2, [6, 5], 1), (3, [6, 5], 2)])
@pytest.mark.parametrize("p", ["1", "inf"])
def test_regions_agree_with_milp(n, widths, seed, p):
    from lipverify.exact.milp import milp_constant

    net = random_relu(n, widths, seed)
    dom = ([-3] * n, [3] * n)
    e = lv.exact(net, p, domain=dom, method="regions")
    assert e.kind == "exact"
    m = milp_constant(net, p, dom)
    assert abs(m - float(e.value)) <= 1e-6 * max(1.0, float(e.value))


def test_milp_refuses_unbounded_and_l2():
    from lipverify.exact.milp import milp_constant

    net = random_relu(2, [3], 0)
    with pytest.raises(NotApplicableError):
        milp_constant(net, "inf", None)
    with pytest.raises(NotApplicableError):
        milp_constant(net, 2, ([-1, -1], [1, 1]))


def test_thin_wedges_are_never_dropped():
    # relu(x1 + x2) - relu(x1 + (1 + e) x2): two nearly parallel lines through 0 bound two thin wedges whose
    # gradient (-1, -(1 + e)) gives the constant 2 + e (l∞).  Floating-point LPs struggle with the wedges; the
    # result must stay sound: exact 2 + e, or an upper bound >= 2 + e with lower <= 2 + e.
    e = Fraction(1, 2**40)
    net = lv.Network([lv.Dense([[1, 1], [1, 1 + e]]), lv.ReLU(), lv.Dense([[1, -1]])])
    truth = sympy.Rational(2) + sympy.Rational(e.numerator, e.denominator)
    b = lv.exact(net, "inf")
    if b.kind == "exact":
        assert b.value == truth
    else:
        assert b.kind == "upper" and sympy.Rational(b.value) >= truth
        assert b.lower is None or sympy.Rational(b.lower) <= truth


# --------------------------------------------------------------------------- smooth: tiny constants (issue 18 item 5)


def test_smooth_l2_tail_bound_keeps_slopes_whose_squares_underflow():
    """Regression: the l2 tail bound summed squares ``m * m`` in floats; magnitudes near 1e-177 squared to 0 and the
    "upper bound" was the smallest subnormal.  The tail bound must stay above ``sup_{x >= r} ||f'(x)||_2``."""
    import mpmath

    from lipverify.exact.common import stages
    from lipverify.exact.smooth1d import _Net, _tail

    c = sympy.Rational(1, 10**170)
    net = lv.Network([lv.Dense([[1]]), lv.Tanh(), lv.Dense([[3 * c], [4 * c]])])  # f'(x) = (3c, 4c) sech^2(x)
    r = 8.0
    with mpmath.workdps(60):
        # sech^2 decreases on x >= 0: the supremum over the right tail is at x = r (the left one at -r, the same)
        true = 5 * mpmath.mpf(1) / 10**170 * mpmath.sech(r) ** 2
        for sign in (1, -1):
            bound = _tail(_Net(stages(net)), r, sign, "2")
            assert mpmath.mpf(bound) >= true
            assert mpmath.mpf(bound) <= 10 * true  # the magnitudes were not rounded to zero and then padded


def test_smooth_l2_constant_near_1e_minus_170_is_enclosed_relatively():
    """A tanh network whose l2 constant is 5e-170: the enclosure contains it and is tight relative to it (the
    bisection tolerance was absolute, 1e-9, and stopped at once with an upper end 7.6 times the constant)."""
    c = sympy.Rational(1, 10**170)
    net = lv.Network([lv.Dense([[1]], [sympy.Rational(1, 3)]), lv.Tanh(), lv.Dense([[3 * c], [4 * c]])])
    true = 5 * c  # sup ||(3c, 4c) sech^2(x + 1/3)||_2, at x = -1/3: exact
    b = lv.exact(net, 2)
    if b.kind == "exact":
        assert sympy.simplify(b.value - true) == 0
    else:
        assert b.kind == "upper"
        assert sympy.Rational(b.lower) <= true <= sympy.Rational(b.value)
        assert sympy.Rational(b.value) <= true * (1 + sympy.Rational(1, 10**6))


def test_sympy_candidate_is_accepted_only_inside_the_certified_enclosure():
    """Regression: a candidate was accepted if within ``[lower - 1e-12, upper + 1e-12]``, i.e. anything in
    ``[0, 2e-12]`` for a constant near 1e-12.  Now the candidate must provably lie in ``[lower, upper]``."""
    from lipverify.exact.smooth1d import certified_inside

    assert not certified_inside(sympy.Rational(15, 10**13), 1e-13, 1e-12)  # the old rule accepted it
    assert not certified_inside(sympy.Rational(0), 1e-13, 1e-12)
    assert certified_inside(sympy.Rational(5, 10**13), 1e-13, 1e-12)
    # an endpoint itself (a dyadic rational) is inside; the next float's value is not
    assert certified_inside(sympy.Rational(*Fraction(1e-12).as_integer_ratio()), 1e-13, 1e-12)
    assert not certified_inside(sympy.Rational(*Fraction(np.nextafter(1e-12, 1.0)).as_integer_ratio()), 1e-13, 1e-12)
    # an irrational next to a float end: the side is decided exactly, (xf 10^12)^2 < 2 with fractions
    x = sympy.sqrt(2) / 10**12
    xf = float(sympy.N(x, 50))
    below = (Fraction(xf) * 10**12) ** 2 < 2
    assert certified_inside(x, xf, 1.0) == below and certified_inside(x, 0.0, xf) == (not below)
    # transcendental values and a tiny scale
    t = 6 * (1 - sympy.tanh(2) ** 2) / 10**12
    tf = float(sympy.N(t, 50))
    assert certified_inside(t, float(np.nextafter(tf, 0)), float(np.nextafter(tf, 1)))
    assert not certified_inside(t, float(np.nextafter(tf, 1)), 1.0)
    # an operation without a rigorous enclosure here: never accepted
    assert not certified_inside(sympy.LambertW(sympy.Rational(1, 10**12)), 0.0, 1.0)


def test_smooth_constant_near_1e_minus_12_is_exact_only_if_equal():
    """f(x) = 3e-12 tanh(2x) on [1, 2]: Lip = 6e-12 (1 - tanh(2)^2) ~ 4.2e-13 (at x = 1), computed here with mpmath; a result
    labelled exact must equal it, and the rigorous enclosure used to accept it is tight relative to it."""
    import mpmath

    c = sympy.Rational(3, 10**12)
    net = lv.Network([lv.Dense([[2]]), lv.Tanh(), lv.Dense([[c]])])
    b = lv.exact(net, 2, domain=([1], [2]))
    with mpmath.workdps(80):
        true = 6 * mpmath.mpf(1) / 10**12 * (1 - mpmath.tanh(2) ** 2)
        assert mpmath.mpf(float(b.value)) >= true * (1 - mpmath.mpf(2) ** -52)  # value rounded to a float
        if b.kind == "exact":
            assert abs(mpmath.mpf(str(sympy.N(b.value, 75))) - true) <= true * mpmath.mpf(10) ** -60
            lower, upper = b.details["enclosure"]
        else:
            assert mpmath.mpf(b.value) >= true
            lower, upper = b.lower, b.value
        assert mpmath.mpf(lower) <= true <= mpmath.mpf(upper)
        assert upper - lower <= 1e-6 * float(true)
