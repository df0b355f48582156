import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest
import sympy
from flint import fmpq, fmpq_mat
from hypothesis import example, given, settings
from hypothesis import strategies as st

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


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3, allow_subnormal=True) | st.sampled_from([5e-324, -3e-320, 1e-310, 0.0]),
                min_size=3, max_size=3),
       st.lists(st.floats(-1e3, 1e3) | st.sampled_from([2.0**-1070, 0.1, 1 / 3]), min_size=3, max_size=3),
       st.lists(st.floats(0, 1e-3) | st.just(0.0), min_size=3, max_size=3))
@example([1e-310, -5e-324, 3.0], [0.1, 2.0**-1070, 1 / 3], [0.0, 0.0, 1e-300])
@example([1e-310, -5e-324, 3.0], [0.5, 2.0**-1070, -4.0], [0.0, 0.0, 1e-300])  # powers of two, lost bits
@example([1e-300, -2.0, 3.0], [0.5, 0.25, -4.0], [1e-3, 0.0, 0.5])  # powers of two, exact
@example([1e300, -2.0, 3.0], [2.0**100, 0.25, -4.0], [0.0, 0.0, 0.0])  # overflow: refused, never inf
def test_point_row_scaling_encloses_the_exact_products(mid, d, rad):
    """``scale_rows(d, d)`` (one rounding per product, R7 "point scalings") against exact rational products, with
    subnormal entries and factors whose products underflow."""
    x = rg.Interval(np.array(mid)[:, None], np.array(rad)[:, None])
    try:
        y = x.scale_rows(np.array(d), np.array(d))
    except rg.NumericalError:
        assert any(abs(Fraction(di) * Fraction(m)) > Fraction(np.finfo(float).max) for m, di in zip(mid, d))
        return
    lo, hi = y.bounds()
    for m, r, di, l, h in zip(mid, rad, d, lo.ravel(), hi.ravel()):
        for member in (Fraction(m) - Fraction(r), Fraction(m), Fraction(m) + Fraction(r)):
            assert Fraction(float(l)) <= Fraction(di) * member <= Fraction(float(h))


_SPECIAL = [0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, -2.2250738585072014e-308, 1.7976931348623157e308,
            -1.7976931348623157e308, np.inf, -np.inf, np.nan, 1.0, -1.0]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(_SPECIAL), min_size=1, max_size=40))
def test_up_and_down_are_nextafter_bit_for_bit(values):
    """``up``/``down`` work on the bit patterns; they must equal ``numpy.nextafter`` exactly (signed zeros, subnormals,
    the largest floats, infinities and NaN included), as arrays of any shape and as scalars."""
    x = np.array(values + _SPECIAL)
    with np.errstate(over="ignore"):
        for ours, direction in ((rg.up, np.inf), (rg.down, -np.inf)):
            want = np.nextafter(x, direction)
            got = ours(x)
            keep = ~np.isnan(x)
            assert np.array_equal(got[keep].view(np.int64), want[keep].view(np.int64))
            assert np.isnan(got[~keep]).all()
            assert np.array_equal(ours(x[::-2].reshape(-1, 1)), want[::-2].reshape(-1, 1), equal_nan=True)  # strided
            assert ours(x[0]) == want[0] or (np.isnan(x[0]) and np.isnan(ours(x[0])))


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


# --- exact oracles for the spectral norm ------------------------------------------------------------------------


def _fmpq(x) -> fmpq:
    return fmpq(*Fraction(x).as_integer_ratio())


def _norm_exceeds(rows, s) -> bool:
    """Exactly: ||M||_2 < s, i.e. s^2 I - M^T M is positive definite (Sylvester), for a matrix of Fractions/floats."""
    q = fmpq_mat([[_fmpq(v) for v in row] for row in rows])
    g = q.transpose() * q
    n = g.nrows()
    s2 = _fmpq(s) ** 2
    h = fmpq_mat(n, n, [(s2 if i == j else 0) - g[i, j] for i in range(n) for j in range(n)])
    return all(fmpq_mat(k, k, [h[i, j] for i in range(k) for j in range(k)]).det() > 0 for k in range(1, n + 1))


def _mp_norm(rows, dps: int = 60) -> mpmath.mpf:
    """The spectral norm of a matrix of Fractions/floats by a high-precision mpmath SVD."""
    with mpmath.workdps(dps):
        m = mpmath.matrix([[mpmath.mpf(Fraction(v).numerator) / Fraction(v).denominator for v in row] for row in rows])
        return max(mpmath.svd_r(m, compute_uv=False))


def _quotient_sq(rows, v) -> Fraction:
    """Exactly ||M v||^2 / ||v||^2."""
    v = [Fraction(float(t)) for t in v]
    mv = [sum(Fraction(a) * b for a, b in zip(row, v)) for row in rows]
    return sum(t * t for t in mv) / sum(t * t for t in v)


def _ill_conditioned(seed: int, n: int, singular_values) -> np.ndarray:
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((n + 1, n + 1)))
    w, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return u[:, :n] @ np.diag(singular_values) @ w.T


POINT_MATRICES = {
    "random": np.random.default_rng(10).standard_normal((6, 4)),
    "wide": np.random.default_rng(11).standard_normal((3, 7)),
    "rank_one": np.outer([1.0, 2.0, -3.0], [0.5, -1.0, 0.25]),
    "cond_1e15": _ill_conditioned(12, 5, [1.0, 1e-5, 1e-9, 1e-12, 1e-15]),
    "repeated_top": _ill_conditioned(13, 4, [1.0, 1.0 - 2.0**-50, 1.0 - 2.0**-49, 0.5]),
    "hilbert": np.array([[1.0 / (i + j + 1) for j in range(6)] for i in range(6)]),
    "row": np.array([[3.0, -4.0, 12.0]]),
    "column": np.array([[3.0], [-4.0]]),
}


@pytest.mark.parametrize("name", sorted(POINT_MATRICES))
def test_spectral_norm_lower_is_below_the_exact_norm_and_tight(name):
    a = POINT_MATRICES[name]
    s = rg.spectral_norm_lower(a)
    assert not _norm_exceeds(a, s)  # s <= ||a||_2 exactly
    assert s >= float(_mp_norm(a)) * (1 - 1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_spectral_norm_lower_bounds_the_exact_quotient_for_any_vector(seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((5, 4)) * 10.0 ** rng.integers(-8, 8, (5, 4))
    for v in (rng.standard_normal(4), np.array([1.0, 0.0, 0.0, 0.0]), rng.standard_normal(4) * 1e-300):
        s = rg.spectral_norm_lower(a, v=v)
        assert Fraction(s) ** 2 <= _quotient_sq(a, v)
        assert s >= float(mpmath.sqrt(_quotient_sq(a, v))) * (1 - 1e-12)
    assert rg.spectral_norm_lower(a, v=np.zeros(4)) == 0.0


@pytest.mark.parametrize("seed", range(3))
def test_spectral_norm_lower_holds_for_every_member_of_an_interval_matrix(seed):
    rng = np.random.default_rng(20 + seed)
    mid = rng.standard_normal((4, 3))
    rad = np.abs(mid) * rng.uniform(0, 1e-2, mid.shape)
    v = np.linalg.svd(mid)[2][0]
    s = rg.spectral_norm_lower(mid, rad, v=v)
    assert s >= float(_mp_norm(mid)) * (1 - 3e-2)
    # the member that shrinks |M v| most: move every entry by its radius against the sign of (mid v)_i v_j
    sign = np.sign(mid @ v)[:, None] * np.sign(v)[None, :]
    worst = [[Fraction(float(m)) - Fraction(int(g)) * Fraction(float(r)) for m, g, r in zip(*row)]
             for row in zip(mid, sign, rad)]
    samples = [worst] + [[[Fraction(float(m)) + Fraction(int(t), 1000) * Fraction(float(r)) for m, t, r in zip(*row)]
                          for row in zip(mid, rng.integers(-1000, 1001, mid.shape), rad)] for _ in range(10)]
    for member in samples:
        assert Fraction(s) ** 2 <= _quotient_sq(member, v)
        assert not _norm_exceeds(member, s)
    # the default vector too
    s_default = rg.spectral_norm_lower(mid, rad)
    assert all(not _norm_exceeds(member, s_default) for member in samples)


@pytest.mark.parametrize("exponent", [1000, -1000, -1060])
def test_spectral_norm_lower_at_the_ends_of_the_float_range(exponent):
    b = np.random.default_rng(30).uniform(0.01, 1, (4, 3))
    a = np.ldexp(b, exponent)  # exact for 1000 and -1000; rounded (subnormal) for -1060
    rad = np.ldexp(np.full_like(b, 1e-3), exponent)
    s = rg.spectral_norm_lower(a, rad)
    exact_a = [[Fraction(float(x)) for x in row] for row in a]
    scale = Fraction(2) ** exponent
    members = [[[x + Fraction(float(t)) * Fraction(float(r)) for x, t, r in zip(row, ts, rs)] for row, ts, rs in
                zip(exact_a, np.sign(np.random.default_rng(k).standard_normal(b.shape)), rad)] for k in range(3)]
    for member in members:
        assert not _norm_exceeds([[x / scale for x in row] for row in member], Fraction(s) / scale)
    if exponent > -1060:
        assert s >= float(_mp_norm(b)) * 2.0**exponent * (1 - 1e-2)


def test_spectral_norm_lower_beyond_the_float_range_is_the_largest_float():
    a = np.full((4, 4), 1e308)  # ||a||_2 = 4e308 is not a float
    assert rg.spectral_norm_lower(a) == np.finfo(np.float64).max


def test_spectral_norm_lower_rejects_bad_input():
    with pytest.raises(rg.NumericalError):
        rg.spectral_norm_lower(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="radius has negative"):
        rg.spectral_norm_lower(np.eye(2), -np.eye(2))
    with pytest.raises(ValueError, match="needs 2"):
        rg.spectral_norm_lower(np.eye(2), v=np.ones(3))
    assert rg.spectral_norm_lower(np.zeros((2, 3))) == 0.0
    assert rg.spectral_norm_lower(np.zeros((0, 3))) == 0.0


def test_certified_l2_jacobian_norm_is_svd_free_and_below_the_exact_norm():
    import lipverify as lv
    from lipverify.lower import certified_jacobian_norm

    rng = np.random.default_rng(40)
    w1, w2 = rng.standard_normal((5, 3)), rng.standard_normal((2, 5))
    net = lv.Network([lv.Dense(w1), lv.Dense(w2)])
    exact = (_frac(w2) @ _frac(w1)).tolist()
    s = certified_jacobian_norm(net, np.zeros(3), "2")
    assert not _norm_exceeds(exact, s)
    assert s >= float(_mp_norm(exact)) * (1 - 1e-12)


def test_k2_l2_lower_end_is_below_the_exact_vertex_maximum():
    import itertools

    import lipverify as lv
    from lipverify.bounds.k2 import k2

    rng = np.random.default_rng(0)
    w1, w2 = rng.standard_normal((4, 3)), rng.standard_normal((2, 4))
    net = lv.Network([lv.Dense(w1), lv.ReLU(), lv.Dense(w2)])
    bound = k2(net, 2)
    vertices = [(_frac(w2) * np.array([Fraction(d) for d in ds])[None, :]) @ _frac(w1)
                for ds in itertools.product([0, 1], repeat=4)]
    assert not all(_norm_exceeds(m.tolist(), bound.details["best_vertex"]) for m in vertices)  # lower <= max_V ||M(V)|| exactly
    assert bound.details["best_vertex"] >= max(float(_mp_norm(m.tolist())) for m in vertices) * (1 - 1e-12)


# --- entries near the ends of the float range (no premature overflow or underflow) -------------------------------


@pytest.mark.parametrize("exponent", [1000, -1000])
@pytest.mark.parametrize("sparse", [False, True])
def test_nonneg_spectral_upper_with_huge_and_tiny_entries(exponent, sparse):
    import scipy.sparse as sp

    b = np.random.default_rng(50).uniform(0, 1, (6, 4))
    a = np.ldexp(b, exponent)  # exact
    u = rg.nonneg_spectral_upper(sp.csr_array(a) if sparse else a)
    scaled = float(np.ldexp(u, -exponent))  # exact: u is a normal float
    assert _norm_exceeds(b, scaled)  # ||a||_2 < u exactly
    assert scaled <= float(_mp_norm(b)) * (1 + 1e-6)


def test_nonneg_spectral_upper_with_entries_lost_to_underflow_when_scaled():
    a = np.array([[2.0**1000, 2.0**-1074], [2.0**-1074, 2.0**-1074]])
    u = rg.nonneg_spectral_upper(a)
    assert _norm_exceeds(a, u)
    assert u <= 2.0**1000 * (1 + 1e-6)


def test_nonneg_spectral_upper_rejects_negative_entries():
    with pytest.raises(ValueError, match="negative entries"):
        rg.nonneg_spectral_upper(np.array([[1.0, -1.0]]))


@pytest.mark.parametrize("exponent", [1000, -1000])
def test_spectral_norm_upper_of_huge_and_tiny_vectors_and_matrices(exponent):
    rng = np.random.default_rng(51)
    for shape in ((1, 5), (5, 1), (5,), (4, 3)):
        b = rng.standard_normal(shape)
        a = np.ldexp(b, exponent)
        s = rg.spectral_norm_upper(a)
        scaled = float(np.ldexp(s, -exponent))
        assert _norm_exceeds(np.atleast_2d(b), scaled)
        assert scaled <= float(_mp_norm(np.atleast_2d(b))) * (1 + 1e-6)


def test_spectral_norm_upper_with_entries_lost_to_underflow_when_scaled():
    a = np.array([[2.0**1000, 2.0**-1074, 0.0], [2.0**-1074, -(2.0**-1074), 3 * 2.0**-1074]])
    s = rg.spectral_norm_upper(a)
    assert _norm_exceeds(a, s)
    assert s <= 2.0**1000 * (1 + 1e-6)


def _exactly_positive_definite(h) -> bool:
    q = fmpq_mat([[_fmpq(float(v)) for v in row] for row in h])
    n = q.nrows()
    return all(fmpq_mat(k, k, [q[i, j] for i in range(k) for j in range(k)]).det() > 0 for k in range(1, n + 1))


def test_verify_positive_definite_over_the_whole_float_range():
    rng = np.random.default_rng(52)
    x = rng.standard_normal((5, 5))
    base = x @ x.T + 0.1 * np.eye(5)
    base = (base + base.T) / 2
    for exponent in (1020, 600, -600, -1000):
        h = np.ldexp(base, exponent)
        assert rg.verify_positive_definite(h) and _exactly_positive_definite(h)
    assert rg.verify_positive_definite(np.diag([2.0**1023, 2.0**1023]))
    assert rg.verify_positive_definite(np.diag([2.0**-1070, 2.0**-1073]))
    # err scales with the matrix: the ball of radius 2^998 around 2^1000 I is PD, the ball of radius 2^1000 is not
    assert rg.verify_positive_definite(np.ldexp(np.eye(3), 1000), err=2.0**998)
    assert not rg.verify_positive_definite(np.ldexp(np.eye(3), 1000), err=2.0**1000)


def test_verify_positive_definite_never_accepts_an_indefinite_block_lost_to_underflow():
    t = 2.0**-1074
    h = np.array([[2.0**1000, 0.0, 0.0], [0.0, t, 2 * t], [0.0, 2 * t, t]])  # the lower block has eigenvalue -t
    assert not _exactly_positive_definite(h)
    assert not rg.verify_positive_definite(h)


def test_abs_norm_upper_with_a_huge_radius():
    mid = np.ldexp(np.array([[1.0, 2.0], [-3.0, 0.5]]), 600)
    rad = np.ldexp(np.full((2, 2), 0.25), 600)
    value = rg.abs_norm_upper(mid, rad, "2")
    scale = Fraction(2) ** 600
    for signs in ([[1, 1], [1, 1]], [[1, -1], [-1, 1]], [[-1, 1], [-1, -1]]):
        member = [[Fraction(float(m)) + s * Fraction(float(r)) for m, s, r in zip(*row)] for row in zip(mid, signs, rad)]
        assert _norm_exceeds([[x / scale for x in row] for row in member], Fraction(value) / scale)


def test_non_finite_values_never_become_numbers():
    with pytest.raises(rg.NumericalError):
        rg.sum_down(np.array([1.0, np.nan]))
    with pytest.raises(rg.NumericalError):
        rg.sum_down(np.array([1.0, np.inf]))
    with pytest.raises(rg.NumericalError):
        rg.Interval.from_bounds(np.array([-np.inf]), np.array([1.0]))
    with pytest.raises(rg.NumericalError):
        rg.nonneg_spectral_upper(np.array([[1.0, np.nan]]))
    assert not rg.verify_positive_definite(np.eye(2), err=np.nan)


@given(
    shape=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    exponent=st.integers(-1070, 1000),
    spread=st.integers(0, 60),
    rel_rad=st.sampled_from([0.0, 1e-12, 1e-3, 0.5]),
    seed=st.integers(0, 2**32 - 1),
    own_vector=st.booleans(),
)
@settings(max_examples=60)
@example(shape=(2, 3), exponent=-1069, spread=5, rel_rad=0.0, seed=0, own_vector=True)  # underflow: was -eta
def test_spectral_norm_lower_never_exceeds_the_worst_member(shape, exponent, spread, rel_rad, seed, own_vector):
    """Property: for random interval matrices over the whole float range and any vector, the bound is at most
    ||M v|| / ||v|| for the member M of the interval that shrinks |M v| most (exact rational arithmetic)."""
    rng = np.random.default_rng(seed)
    mid = np.ldexp(rng.standard_normal(shape), exponent + rng.integers(-spread, 1, shape))
    rad = np.abs(mid) * rel_rad
    v = rng.standard_normal(shape[1]) if own_vector else None
    s = rg.spectral_norm_lower(mid, rad, v=v)
    if v is None:
        v = rg._top_right_singular_vector(np.ldexp(mid, -math.frexp(float(np.max(np.abs(mid))))[1]))
    sign = np.sign(mid @ v)[:, None] * np.sign(v)[None, :]
    worst = [[Fraction(float(m)) - Fraction(int(g)) * Fraction(float(r)) for m, g, r in zip(*row)]
             for row in zip(mid, sign, rad)]
    assert Fraction(s) ** 2 <= _quotient_sq(worst, v)
