"""Declared facts of the activations (lipverify.layers): ranges, evaluation errors, the slope check on construction.

Oracles: mpmath at 30-50 digits (formulas written here, accurate in the tails), exact Fractions for piecewise-linear
networks, dense sampling.  Proof: proofs/activations.md.
"""

from fractions import Fraction

import mpmath as mp
import numpy as np
import pytest
import sympy
from _user_activations import Sine

import lipverify as lv
from lipverify.errors import NotApplicableError, UnsupportedLayerError
from lipverify.layers import LIBM_REL
from lipverify.local import output_enclosure

# --------------------------------------------------------------------------- mpmath oracles (independent formulas)


def _sig(x):
    return 1 / (1 + mp.exp(-x))


def _sig_prime(x):  # e^{-|x|} / (1 + e^{-|x|})^2, no cancellation
    t = mp.exp(-abs(x))
    return t / (1 + t) ** 2


def _rat(q):
    q = sympy.Rational(q)
    return mp.mpf(int(q.p)) / int(q.q)


ORACLES = {
    "ReLU": (lambda x: max(x, 0), lambda x: mp.mpf(1 if x > 0 else 0)),
    "Identity": (lambda x: x, lambda x: mp.mpf(1)),
    "Tanh": (mp.tanh, lambda x: 1 / mp.cosh(x) ** 2),
    "Sigmoid": (_sig, _sig_prime),
    "GELU": (lambda x: x / 2 * mp.erfc(-x / mp.sqrt(2)), lambda x: mp.ncdf(x) + x * mp.npdf(x)),
    "SiLU": (lambda x: x * _sig(x), lambda x: _sig(x) + x * _sig_prime(x)),
}


def _oracle(act):
    if isinstance(act, lv.LeakyReLU):
        a = _rat(act.slopes[0] if act.slopes[0] != 1 else act.slopes[1])
        return (lambda x: x if x >= 0 else a * x), (lambda x: mp.mpf(1) if x > 0 else a)
    return ORACLES[act.kind]



BUILTINS = [lv.ReLU(), lv.Identity(), lv.Tanh(), lv.Sigmoid(), lv.GELU(), lv.SiLU(), lv.LeakyReLU(),
            lv.LeakyReLU(-0.5), lv.LeakyReLU(3), lv.LeakyReLU(Fraction(-7, 3)), lv.LeakyReLU(0.1)]


def _intervals(rng):
    """Random intervals: wide, tiny, in both tails, around the minima of GELU/SiLU and LeakyReLU's kink."""
    out = []
    for _ in range(25):
        c = rng.uniform(-60, 60)
        out.append((c - rng.uniform(0, 40), c))
        c = rng.uniform(-5, 5)
        out.append((c, c + 10.0 ** rng.uniform(-14, 0)))
        c = rng.choice([-1, 1]) * rng.uniform(20, 740)
        out.append((c, c + rng.uniform(0, 3)))
    for x_star in (-0.7517915246935644, -1.278464542761074, 0.0):
        for w in (1e-9, 1e-4, 0.3):
            out += [(x_star - w, x_star + w), (x_star - 2 * w, x_star - w / 3), (x_star + w / 3, x_star + 2 * w)]
        out.append((x_star, x_star))
    return [(float(a), float(b)) for a, b in out]


@pytest.mark.parametrize("act", BUILTINS + [Sine()], ids=lambda a: a.describe())
def test_range_on_contains_every_sampled_value(act):
    mp.mp.dps = 30
    f = (lambda x: mp.sin(x)) if isinstance(act, Sine) else _oracle(act)[0]
    ivs = _intervals(np.random.default_rng(1))
    lo, hi = np.array([a for a, _ in ivs]), np.array([b for _, b in ivs])
    a, b = act.range_on(lo, hi)
    assert np.all(np.isfinite(a)) and np.all(np.isfinite(b))
    for (l, h), ea, eb in zip(ivs, a, b):
        pts = [mp.mpf(l), mp.mpf(h)] + [mp.mpf(l) + (mp.mpf(h) - mp.mpf(l)) * k / 60 for k in range(1, 60)]
        for x in pts:
            v = f(x)
            assert mp.mpf(ea) <= v <= mp.mpf(eb), (act.describe(), l, h, float(x), ea, eb)


@pytest.mark.parametrize("act", [lv.GELU(), lv.SiLU(), lv.LeakyReLU(-0.5)], ids=lambda a: a.describe())
def test_range_on_of_a_non_monotone_activation_reaches_its_minimum(act):
    # an interval around the minimiser: the enclosure's lower end is at (not above) the minimum value
    x_star, f_min = {"GELU": (-0.7517915246935644, -0.1699712074799037), "SiLU": (-1.278464542761074, -0.2784645427610738),
                     "LeakyReLU": (0.0, 0.0)}[act.kind]
    a, b = act.range_on(np.array([x_star - 1.0]), np.array([x_star + 1.0]))
    assert a[0] <= f_min and a[0] > f_min - 1e-7
    # an interval left of the minimiser: decreasing there, so the minimum is at its right end
    a, b = act.range_on(np.array([x_star - 3.0]), np.array([x_star - 1.0]))
    f = _oracle(act)[0]
    assert a[0] <= float(f(mp.mpf(x_star - 1.0))) <= a[0] + 1e-12
    assert b[0] >= float(f(mp.mpf(x_star - 3.0))) >= b[0] - 1e-12


def _error_grid():
    logs = np.logspace(-320, np.log10(750.0), 700)
    return np.concatenate([logs, -logs, [0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 745.0, -745.0, 750.0, -750.0],
                           np.linspace(-40.0, 40.0, 801)])


@pytest.mark.parametrize("act", BUILTINS, ids=lambda a: a.describe())
def test_declared_forward_and_derivative_errors_hold_against_mpmath(act):
    mp.mp.dps = 50
    f, df = _oracle(act)
    x = _error_grid()
    out, d = act.forward(x), act.derivative(x)
    fe, de = act.forward_error(x), act.derivative_error(x)
    assert np.all(np.isfinite(fe)) and np.all(np.isfinite(de))
    for xi, oi, di, fei, dei in zip(x, out, d, fe, de):
        xm = mp.mpf(xi)
        exact = f(xm)
        assert abs(mp.mpf(oi) - exact) <= mp.mpf(fei), (act.describe(), xi, oi, fei)
        # accurate in the tails: relative 1e-12 (absolute 1e-300 near underflow), and the bound is not vacuous
        assert abs(mp.mpf(oi) - exact) <= 1e-12 * abs(exact) + mp.mpf(1e-300), (act.describe(), xi)
        assert fei <= 1e-11 * abs(oi) + 1e-300, (act.describe(), xi, fei)
        if xi == 0 and act.is_piecewise_linear:
            continue  # a kink: the derivative there is one-sided
        dex = df(xm)
        assert abs(mp.mpf(di) - dex) <= mp.mpf(dei), (act.describe(), xi, di, dei)
        assert abs(mp.mpf(di) - dex) <= 1e-12 * abs(dex) + mp.mpf(1e-300) + (1e-14 if act.kind in ("GELU", "SiLU") else 0)
        assert dei <= 1e-11 * abs(di) + 1e-300 + (1e-13 if act.kind in ("GELU", "SiLU") else 0), (act.describe(), xi)


def test_sigmoid_and_gelu_do_not_cancel_in_the_negative_tail():
    # the formulas 0.5 (1 + tanh(x/2)) and 0.5 x (1 + erf(x/sqrt 2)) give 0 here; the truth is ~1e-304 / ~-1e-197
    assert lv.Sigmoid().forward(np.array([-700.0]))[0] == pytest.approx(float(_sig(mp.mpf(-700))), rel=1e-12, abs=0)
    mp.mp.dps = 50
    g = float(mp.mpf(-30) / 2 * mp.erfc(mp.mpf(30) / mp.sqrt(2)))
    assert lv.GELU().forward(np.array([-30.0]))[0] == pytest.approx(g, rel=1e-12, abs=0)
    assert lv.SiLU().derivative(np.array([60.0]))[0] == pytest.approx(1.0)
    assert lv.Tanh().derivative(np.array([30.0]))[0] == pytest.approx(float(1 / mp.cosh(30) ** 2), rel=1e-12, abs=0)


def test_libm_rel_is_defined_once():
    import lipverify.local
    import lipverify.lower

    assert lipverify.lower.LIBM_REL is LIBM_REL
    assert not hasattr(lipverify.local, "LIBM_REL")


# --------------------------------------------------------------------------- the slope check on construction


def test_an_activation_whose_forward_contradicts_its_slopes_is_refused():
    class AbsReLU(lv.ReLU):
        def forward(self, x):
            return np.abs(x)

    with pytest.raises(ValueError, match=r"AbsReLU: .*\[0\.0, 1\.0\].*x = .*y = .*quotient .* = -1\.0"):
        AbsReLU()


def test_a_small_lie_is_refused_too():
    class SteepTanh(lv.Tanh):  # tanh' reaches 1 at 0, above the declared 1/2
        slopes = (sympy.Integer(0), sympy.Rational(1, 2))

    with pytest.raises(ValueError, match="SteepTanh"):
        SteepTanh()

    class FlatSigmoid(lv.Sigmoid):  # the declared slopes miss [0.24, 0.25]
        slopes = (sympy.Integer(0), sympy.Rational(24, 100))

    with pytest.raises(ValueError, match="FlatSigmoid"):
        FlatSigmoid()


@pytest.mark.parametrize("a", [-3, -1, -0.5, 0, 0.01, Fraction(1, 3), 1, 2.5, 10])
def test_leaky_relu_with_any_slope_passes_the_check(a):
    act = lv.LeakyReLU(a)
    assert act.slopes == (min(sympy.Rational(a), 1), max(sympy.Rational(a), 1))


def test_builtins_and_an_honest_user_activation_pass_the_check():
    for cls in (lv.ReLU, lv.Identity, lv.Tanh, lv.Sigmoid, lv.GELU, lv.SiLU, Sine):
        cls()


def test_the_check_is_cached_per_class_and_parameters():
    from lipverify.layers import _SLOPES_CHECKED

    lv.LeakyReLU(Fraction(-5, 7))
    keys = [k for k in _SLOPES_CHECKED if k[0] is lv.LeakyReLU and "Fraction(-5, 7)" in repr(k[1])]
    assert len(keys) == 1
    lv.LeakyReLU(Fraction(-5, 7))
    assert len([k for k in _SLOPES_CHECKED if k[0] is lv.LeakyReLU and "Fraction(-5, 7)" in repr(k[1])]) == 1


# --------------------------------------------------------------------------- issue 11 item 2: negative-slope LeakyReLU


def _leaky_net(outputs=1):
    last = lv.Dense([[1.0]]) if outputs == 1 else lv.Dense([[1.0], [0.0]], [0.0, 0.2])
    return lv.Network([lv.Dense([[1.0]]), lv.LeakyReLU(-0.5), lv.Dense([[-1.0]], [0.4]), lv.ReLU(), last],
                      input_shape=(1,))


def _f_exact(x: float) -> Fraction:
    """f(x) = max(0, 0.4 - lrelu(x)) with lrelu(x) = x (x >= 0), -x/2 (x < 0); exact in Fractions."""
    x = Fraction(x)
    h = x if x >= 0 else -x / 2
    return max(Fraction(0), Fraction(0.4) - h)


def test_negative_slope_leaky_relu_local_bounds_are_sound():
    net = _leaky_net()
    dom = ([-1.0], [3.0])
    # the local constant is 1: f = 0.4 - x on (0, 0.4)
    checked = 0
    for method in lv.METHODS:
        for p in lv.NORMS:
            try:
                b = lv.bound(net, method, norm=p, domain=dom)
            except (NotApplicableError, UnsupportedLayerError):
                continue
            if b.value is None or b.kind not in ("upper", "exact"):
                continue
            assert float(b.value) >= 1.0, (method, p, b.value)
            checked += 1
    assert checked >= 10
    for p in lv.NORMS:
        assert lv.lower_bound(net, p, domain=dom).value <= 1.0


def test_negative_slope_leaky_relu_output_enclosure_contains_the_function():
    net = _leaky_net()
    lo, hi = output_enclosure(net, ([-1.0], [3.0]))
    for x in np.linspace(-1.0, 3.0, 4001):
        v = _f_exact(float(x))
        assert Fraction(lo[0]) <= v <= Fraction(hi[0]), x
    assert hi[0] >= 0.4


@pytest.mark.parametrize("x0, r0", [(1.0, 2.0), (3.0, 4.0), (3.0, None), (1.0, None)])
def test_negative_slope_leaky_relu_certified_radius_is_not_fooled(x0, r0):
    net = _leaky_net(outputs=2)  # outputs (f, 0.2): class 1 where f < 0.2, class 0 where f > 0.2 (x in (-0.4, 0.2))
    assert _f_exact(x0) < Fraction(0.2)
    r = float(lv.certified_radius(net, [x0], "inf", radius=r0).value)
    assert r < x0 - 0.2  # the class changes just beyond distance x0 - 0.2
    for x in np.linspace(x0 - r, x0 + r, 20001):
        assert _f_exact(float(x)) < Fraction(0.2), (x0, r, x)


def test_default_range_on_is_the_mean_value_enclosure():
    act = Sine()
    a, b = act.range_on(np.array([0.0]), np.array([2.0]))
    # sin(1) ± 1 (radius 1, slope bound 1), widened by the assumed library error
    assert a[0] <= np.sin(1.0) - 1.0 and a[0] > np.sin(1.0) - 1.0 - 1e-12
    assert b[0] >= np.sin(1.0) + 1.0 and b[0] < np.sin(1.0) + 1.0 + 1e-12
    assert act.forward_error(np.array([1.0]))[0] <= 3 * LIBM_REL


@pytest.mark.parametrize("act", BUILTINS + [Sine()], ids=lambda a: a.describe())
def test_narrow_slopes_contain_every_sampled_derivative(act):
    mp.mp.dps = 30
    df = (lambda x: mp.cos(x)) if isinstance(act, Sine) else _oracle(act)[1]
    ivs = _intervals(np.random.default_rng(2))
    ivs += [(-1.5, -1.3), (1.3, 1.5), (-2.5, -2.3), (2.3, 2.5), (-1.4142135623730951, 3.0), (2.3993572805, 2.3993572806)]
    lo, hi = np.array([a for a, _ in ivs]), np.array([b for _, b in ivs])
    alpha, beta = act.narrow_slopes(lo, hi)
    g_lo, g_hi = act.slope_interval
    assert np.all(alpha >= g_lo) and np.all(beta <= g_hi) and np.all(alpha <= beta)
    for (l, h), a, b in zip(ivs, alpha, beta):
        pts = [mp.mpf(l) + (mp.mpf(h) - mp.mpf(l)) * k / 60 for k in range(61)]
        for x in pts:
            if x == 0 and act.is_piecewise_linear:
                assert a <= 0 <= b or a <= 1 <= b or l == h == 0  # a kink: both one-sided derivatives
                continue
            assert mp.mpf(a) <= df(x) <= mp.mpf(b), (act.describe(), l, h, float(x), a, b)


def test_gelu_and_silu_slopes_narrow_on_a_box():
    for act in (lv.GELU(), lv.SiLU()):
        alpha, beta = act.narrow_slopes(np.array([3.0, -8.0]), np.array([4.0, -6.0]))
        assert alpha[0] > 0.99 and beta[0] < act.slope_interval[1]  # right of the bump: between σ'(4) and σ'(3)
        df = _oracle(act)[1]
        ends = [float(df(mp.mpf(-8))), float(df(mp.mpf(-6)))]  # far left: σ' < 0, monotone there
        assert min(ends) - 1e-12 < alpha[1] <= min(ends) and max(ends) <= beta[1] < max(ends) + 1e-12


# --------------------------------------------------------------------------- lower.py reads the declared errors


@pytest.mark.parametrize("act, x0", [(lv.Sigmoid(), -700.0), (lv.SiLU(), -700.0), (lv.GELU(), -30.0), (lv.Tanh(), -20.0),
                                     (lv.Sigmoid(), 3.0), (lv.GELU(), 1.5)], ids=lambda v: str(v))
def test_forward_errors_and_derivative_intervals_of_the_lower_bound_hold_in_the_tails(act, x0):
    from lipverify.ir.graph import lower
    from lipverify.lower import _derivative_interval, certified_walk

    mp.mp.dps = 50
    f, df = _oracle(act)
    # z1 = x0 (exact), z2 = σ(x0) * 1e300: the error of the first activation is amplified by the second Dense layer
    net = lv.Network([lv.Dense([[1.0]]), act, lv.Dense([[1e300]]), act, lv.Dense([[1.0]])], input_shape=(1,))
    records: dict = {}
    certified_walk(lower(net).steps, np.array([x0]), np.zeros(1), np.zeros(1, dtype=bool), records)
    z2_exact = f(mp.mpf(x0)) * mp.mpf(1e300)
    z2, e2 = records[3]
    assert abs(mp.mpf(z2[0]) - z2_exact) <= mp.mpf(e2[0])
    lo, hi = _derivative_interval(act, z2, e2)
    assert mp.mpf(lo[0]) <= df(z2_exact) <= mp.mpf(hi[0])
    lo, hi = _derivative_interval(act, *records[1])
    assert mp.mpf(lo[0]) <= df(mp.mpf(x0)) <= mp.mpf(hi[0])


@pytest.mark.parametrize("act", BUILTINS, ids=lambda a: a.describe())
def test_error_bounds_stay_sound_and_small_for_huge_inputs(act):
    mp.mp.dps = 50
    f, df = _oracle(act)
    if act.kind == "GELU":  # mpmath's erfc overflows here: GELU = max(x, 0) and GELU' = [x > 0] within 2|x|e^{-x²/2}
        def f(t):
            return max(t, 0)

        def df(t):
            return mp.mpf(1 if t > 0 else 0)

        slack = lambda t: 2 * abs(t) * mp.exp(-t * t / 2)  # noqa: E731
    else:
        slack = lambda t: 0  # noqa: E731
    x = np.array([1e20, 1e100, 1e200, -1e20, -1e100, -1e200])
    out, fe, d, de = act.forward(x), act.forward_error(x), act.derivative(x), act.derivative_error(x)
    for xi, oi, fei, di, dei in zip(x, out, fe, d, de):
        xm = mp.mpf(xi)
        assert abs(mp.mpf(oi) - f(xm)) + slack(xm) <= mp.mpf(fei)
        assert abs(mp.mpf(di) - df(xm)) + slack(xm) <= mp.mpf(dei)
        assert fei <= 1e-12 * abs(oi) + 1e-100 and dei <= 1e-12 * abs(di) + 1e-100, (xi, fei, dei)
    lo, hi = act.range_on(np.array([-1e200]), np.array([0.0]))
    assert lo[0] >= min(-0.3, float(f(mp.mpf(-1e200)))) * (1 + 1e-12)
