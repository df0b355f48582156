from fractions import Fraction

import numpy as np
import pytest
import sympy
from flint import fmpq, fmpq_mat

from lipverify import rigorous as rg


def _frac(a):
    return np.array([[Fraction(float(v)) for v in row] for row in np.atleast_2d(a)], dtype=object)


def test_matmul_up_is_an_upper_bound_of_the_exact_product():
    rng = np.random.default_rng(0)
    for k in (1, 7, 64):
        a = rng.uniform(0, 1, (5, k)) * 10.0 ** rng.integers(-3, 3, (5, k))
        b = rng.uniform(0, 1, (k, 4))
        exact = _frac(a) @ _frac(b)
        up = rg.matmul_up(a, b)
        assert all(Fraction(float(u)) >= e for u, e in zip(up.ravel(), exact.ravel()))
        np.testing.assert_allclose(up, a @ b, rtol=1e-12)


def test_sum_bounds_enclose_exact_sums():
    x = np.array([0.1, 0.2, 0.3, 1e-17, 1e17])
    exact = sum(Fraction(float(v)) for v in x)
    assert Fraction(float(rg.sum_down(x))) <= exact <= Fraction(float(rg.sum_up(x)))


def _exactly_psd_margin(a, s):
    """True when s^2 I - a^T a is positive definite, checked in exact rationals with python-flint."""
    q = fmpq_mat([[fmpq(*Fraction(float(v)).as_integer_ratio()) for v in row] for row in a])
    g = q.transpose() * q
    n = g.nrows()
    s2 = fmpq(*Fraction(float(s)).as_integer_ratio()) ** 2
    h = fmpq_mat(n, n, [(s2 if i == j else 0) - g[i, j] for i in range(n) for j in range(n)])
    # Sylvester: all leading principal minors positive
    return all(fmpq_mat(k, k, [h[i, j] for i in range(k) for j in range(k)]).det() > 0 for k in range(1, n + 1))


@pytest.mark.parametrize("seed", range(4))
def test_spectral_norm_upper_is_proven_and_tight(seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((6, 4))
    s = rg.spectral_norm_upper(a)
    assert _exactly_psd_margin(a, s)
    assert s <= np.linalg.norm(a, 2) * (1 + 1e-6)


def test_spectral_norm_upper_of_rank_one_and_tiny_matrices():
    a = np.outer([1.0, 2.0, 3.0], [1.0, -1.0])
    s = rg.spectral_norm_upper(a)
    assert s >= np.sqrt(28) and s <= np.sqrt(28) * (1 + 1e-6)
    assert rg.spectral_norm_upper(np.zeros((3, 3))) == 0.0
    assert _exactly_psd_margin(a * 1e-200, rg.spectral_norm_upper(a * 1e-200))


def test_verify_positive_definite_rejects_indefinite_and_singular():
    assert rg.verify_positive_definite(np.eye(3))
    assert not rg.verify_positive_definite(np.diag([1.0, 1.0, -1e-12]))
    assert not rg.verify_positive_definite(np.array([[1.0, 1.0], [1.0, 1.0]]))
    assert not rg.verify_positive_definite(np.eye(2), err=2.0)


def test_nonneg_spectral_upper_bounds_the_norm():
    rng = np.random.default_rng(3)
    a = rng.uniform(0, 1, (7, 5))
    u = rg.nonneg_spectral_upper(a)
    assert _exactly_psd_margin(a, u)
    assert u <= np.linalg.norm(a, 2) * (1 + 1e-6)


def test_interval_products_contain_every_member():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((3, 4))
    x = rg.Interval(rng.standard_normal((4, 2)), rng.uniform(0, 0.1, (4, 2)))
    y = x.scale_rows(np.array([0.0, -0.5, 1.0, 0.2]), np.array([1.0, 0.5, 1.0, 0.3])).left_matmul(w)
    lo, hi = y.bounds()
    for _ in range(200):
        member = x.mid + x.rad * rng.uniform(-1, 1, x.mid.shape)
        d = rng.uniform([0.0, -0.5, 1.0, 0.2], [1.0, 0.5, 1.0, 0.3])
        exact = _frac(w) @ (np.array([Fraction(float(v)) for v in d])[:, None] * _frac(member))
        assert all(Fraction(float(l)) <= e <= Fraction(float(h)) for l, e, h in zip(lo.ravel(), exact.ravel(), hi.ravel()))


def test_overflow_raises_instead_of_returning_inf():
    with pytest.raises(rg.NumericalError):
        rg.matmul_up(np.full((2, 2), 1e300), np.full((2, 2), 1e300))


def test_float_up_and_down():
    from lipverify.result import float_down, float_up

    third = sympy.Rational(1, 3)
    assert Fraction(float_up(third)) >= Fraction(1, 3) >= Fraction(float_down(third))
    assert float_up(sympy.Integer(2)) == 2.0
    assert sympy.Rational(float_up(sympy.sqrt(2))) >= sympy.sqrt(2)
    assert float_up(sympy.sqrt(2)) == 1.4142135623730951
