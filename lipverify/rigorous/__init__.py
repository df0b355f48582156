"""Floating-point arithmetic with rigorous error bounds (proof: ``proofs/rigorous_arithmetic.md``).

Every function here returns floats that enclose the exact real result of the operation on the
given floats, whatever the rounding of the platform's BLAS/LAPACK, under the assumptions stated in
the proof: IEEE-754 binary64 with round-to-nearest, and conventional (not Strassen-like) matrix
products, whose every entry is a sum of ``k`` products in some order.

Two representations are used:

* nonnegative matrices, multiplied with :func:`matmul_up` (an entrywise upper bound of the product);
* interval matrices in midpoint-radius form :class:`Interval` (``mid ± rad`` entrywise), multiplied
  on the left by (interval) point matrices with :meth:`Interval.left_matmul`.

The spectral norm is bounded from above by :func:`spectral_norm_upper` through a verified floating-point
Cholesky factorisation (:func:`verify_positive_definite`), and from below, for every member of an interval
matrix, by :func:`spectral_norm_lower`. Matrices are rescaled by exact powers of two (:func:`_pow2_scale`)
before any squaring, so entries anywhere in the finite float range give a bound.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import scipy.sparse as sp

from ..errors import CertificationError, NumericalError

#: unit roundoff of binary64 with round-to-nearest
UNIT_ROUNDOFF = 2.0**-53
#: smallest positive subnormal binary64 number
ETA = 2.0**-1074

Array = np.ndarray


def _check_finite(x: Array, what: str) -> Array:
    if not np.all(np.isfinite(x)):
        raise NumericalError(
            f"{what}: the floating-point computation overflowed or produced NaN; no bound is reported "
            "(rescale the weights or use exact rational weights)"
        )
    return x


def _finite_float(x, what: str) -> float:
    x = float(x)
    if not math.isfinite(x):
        raise NumericalError(f"{what}: the bound overflowed the float range; no bound is reported")
    return x


def _pow2_scale(x: Array, e: int) -> tuple[Array, Array]:
    """``(y, inexact)`` with ``y = fl(x 2^-e)`` (``numpy.ldexp``) and the mask of the entries of ``y`` that are not
    exactly ``x 2^-e`` (they lost bits to underflow; each is one of the two floats around the exact value, R11)."""
    y = np.ldexp(x, -e)
    with np.errstate(over="ignore"):
        inexact = np.ldexp(y, e) != x
    return y, inexact


def _unscale(x: float, e: int, direction) -> float:
    """``x 2^e``, exact when representable and otherwise moved by ``direction`` (:func:`up` or :func:`down`, R11)."""
    with np.errstate(over="ignore"):
        y = np.ldexp(x, e)
        if math.isfinite(y) and np.ldexp(y, -e) == x:
            return float(y)
        return float(direction(y))


def up(x):
    """The next float above ``x`` (entrywise): an upper bound of any real rounded to nearest as ``x``.

    Equal to ``numpy.nextafter(x, inf)`` bit for bit (tested), computed on the IEEE bit patterns (a float's successor
    is the next integer pattern for ``x > 0`` and the previous one for ``x < 0``), which is about four times faster;
    zeros, infinities and NaN go to ``nextafter``."""
    return _step(x, 1)


def down(x):
    """The next float below ``x`` (entrywise); ``numpy.nextafter(x, -inf)`` bit for bit (see :func:`up`)."""
    return _step(x, -1)


def _step(x, direction: int):
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 0:
        return np.nextafter(x[()], direction * np.inf)
    bits = x.view(np.int64)
    # +1 on the pattern of a positive float moves away from 0, on a negative one towards 0 (sign-magnitude)
    out = (bits + direction * ((bits >> 63) | 1)).view(np.float64)  # a new array
    np.copyto(out, direction * ETA, where=x == 0)  # +-0 -> +-the smallest subnormal
    special = ~np.isfinite(x)
    if np.any(special):
        out[special] = np.nextafter(x[special], direction * np.inf)
    return out


def relative_factor(k: int) -> float:
    """A float ``f >= 1/(1 - gamma_k)``, with ``gamma_k = k u / (1 - k u)`` (Higham's notation)."""
    if k * UNIT_ROUNDOFF > 1e-3:
        raise NumericalError(f"inner dimension {k} is too large for the a-priori rounding-error bound")
    return 1.0 + 4.0 * (k + 2) * UNIT_ROUNDOFF


def gamma_up(k: int) -> float:
    """A float upper bound of ``gamma_k = k u / (1 - k u)``."""
    return relative_factor(k) - 1.0


def scale_up(x: Array, factor: float) -> Array:
    """Entrywise upper bound of ``x * factor`` for ``x >= 0`` and ``factor >= 0``."""
    return up(np.asarray(x, dtype=np.float64) * factor)


def interval_product(a: tuple[Array, Array], b: tuple[Array, Array]) -> tuple[Array, Array]:
    """Entrywise enclosure ``(lo, hi)`` of ``{x y : x in [a_lo, a_hi], y in [b_lo, b_hi]}``, rounded outward."""
    cands = (a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1])
    return down(np.minimum.reduce(cands)), up(np.maximum.reduce(cands))


def add_up(*terms: Array) -> Array:
    """Entrywise upper bound of the exact sum of nonnegative float arrays."""
    total = np.zeros(np.broadcast_shapes(*(np.shape(t) for t in terms)))
    for t in terms:
        total = up(total + t)
    return total


def matmul_up(a, b) -> Array:
    """Entrywise upper bound of the exact product ``a @ b`` of two **nonnegative** matrices.

    ``a`` or ``b`` may be a scipy sparse matrix.  Uses ``|fl(ab) - ab| <= gamma_k ab + 2 k eta``
    (Higham, Accuracy and Stability, eq. (3.13), with gradual underflow) for the inner dimension ``k``.
    """
    k = a.shape[-1]
    with np.errstate(over="ignore", invalid="ignore"):
        c = a @ b
        if sp.issparse(c):
            c = c.toarray()
        c = np.asarray(c, dtype=np.float64)
        c = up(c + 2.0 * (k + 1) * ETA)
        c = scale_up(c, relative_factor(k))
    return _check_finite(c, "matmul_up")


def _float_sum(x, axis) -> tuple[Array, int]:
    """The float sum of a dense or scipy sparse array along ``axis`` and the number ``k`` of terms per sum."""
    if sp.issparse(x):
        k = int(np.prod(x.shape)) if axis is None else x.shape[axis]
        s = np.asarray(x.sum(axis=axis), dtype=np.float64).ravel()
        return (s[0] if axis is None else s), k
    x = np.asarray(x, dtype=np.float64)
    return np.sum(x, axis=axis), (x.size if axis is None else x.shape[axis])


def sum_up(x: Array, axis=None) -> Array:
    """Upper bound of the exact sum of a nonnegative array (dense or scipy sparse) along ``axis``."""
    s, k = _float_sum(x, axis)
    s = up(s + 2.0 * (k + 1) * ETA)
    return _check_finite(scale_up(s, relative_factor(k)), "sum_up")


def sum_down(x: Array, axis=None) -> Array:
    """Lower bound of the exact sum of a nonnegative array (dense or scipy sparse) along ``axis``."""
    s, k = _float_sum(x, axis)
    _check_finite(s, "sum_down")
    return np.maximum(down(s * (2.0 - relative_factor(k))), 0.0)


def norm_upper_nonneg(a, norm: str) -> float:
    """Upper bound of the induced ``norm`` of a nonnegative matrix ``a`` (``"1"``, ``"2"``, ``"inf"``)."""
    if 0 in a.shape:
        return 0.0
    if norm == "inf":
        return float(np.max(sum_up(a, axis=1)))
    if norm == "1":
        return float(np.max(sum_up(a, axis=0)))
    return nonneg_spectral_upper(a)


def nonneg_spectral_upper(a, iterations: int = 60) -> float:
    """Upper bound of ``||a||_2`` for a nonnegative matrix ``a`` (dense or scipy sparse), by Collatz–Wielandt.

    ``a`` is first scaled by an exact power of two to ``max a`` in ``[1/2, 1)`` (entries that underflow are rounded
    up), so every finite matrix gets a bound when the bound itself is a finite float. For ``B = a^T a >= 0`` and any
    ``x > 0``, ``rho(B) <= max_i (B x)_i / x_i``; ``x`` comes from power iteration and the quotient is evaluated with
    upward rounding. Falls back to ``sqrt(||a||_1 ||a||_inf)`` when that is smaller. Proof: R8, R11 of
    ``proofs/rigorous_arithmetic.md``.

    >>> 2.0**1000 <= nonneg_spectral_upper(np.array([[2.0**1000, 0.0], [0.0, 1.0]])) <= 2.0**1000 * (1 + 1e-12)
    True
    """
    if sp.issparse(a):
        a = a.tocsr().astype(np.float64, copy=True)
        data = a.data
    else:
        a = np.array(a, dtype=np.float64)
        data = a
    if 0 in a.shape or data.size == 0:
        return 0.0
    _check_finite(data, "nonneg_spectral_upper")
    if np.any(data < 0):
        raise ValueError(
            f"nonneg_spectral_upper: the {a.shape[0]}x{a.shape[1]} matrix has negative entries; pass its entrywise "
            "absolute value (a bound of ||abs(a)||_2 also bounds ||a||_2) or use spectral_norm_upper"
        )
    top = float(np.max(data))
    if top == 0.0:
        return 0.0
    exponent = math.frexp(top)[1]
    scaled, inexact = _pow2_scale(data, exponent)
    data[...] = np.where(inexact, up(scaled), scaled)  # a >= 2^-e * (the input), entrywise
    cheap = float(up(math.sqrt(up(float(np.max(sum_up(a, axis=0))) * float(np.max(sum_up(a, axis=1)))))))
    value = cheap
    x = np.ones(a.shape[1])
    for _ in range(iterations):
        y = a.T @ (a @ x)
        ny = float(np.max(y))
        if not ny > 0 or not math.isfinite(ny):
            break
        x = y / ny
    else:
        x = np.maximum(x, 1e-6)  # any positive float vector gives a valid bound
        bx = matmul_up(a.T, matmul_up(a, x[:, None]))[:, 0]
        rho = float(np.max(up(bx / x)))
        value = min(cheap, float(up(math.sqrt(rho))))
    return _finite_float(_unscale(value, exponent, up), "nonneg_spectral_upper")


def abs_norm_upper(mid: Array, rad: Array | None, norm: str) -> float:
    """Upper bound of ``max ||M||`` over all ``M`` with ``|M - mid| <= rad`` entrywise (R9)."""
    if norm in ("1", "inf"):
        mag = np.abs(mid) if rad is None else add_up(np.abs(mid), rad)
        return norm_upper_nonneg(mag, norm)
    value = spectral_norm_upper(mid)
    if rad is not None and np.any(rad):
        r1 = norm_upper_nonneg(rad, "1")
        rinf = norm_upper_nonneg(rad, "inf")
        # sqrt(r1) * sqrt(rinf) rather than sqrt(r1 * rinf): the product may overflow when the result does not
        rad_norm = float(up(float(up(math.sqrt(r1))) * float(up(math.sqrt(rinf)))))
        value = _finite_float(up(value + rad_norm), "abs_norm_upper")
    return value


def fro_sq_upper(a: Array) -> float:
    """Upper bound of the squared Frobenius norm of ``a``."""
    a = np.abs(np.asarray(a, dtype=np.float64)).ravel()
    return float(matmul_up(a[None, :], a[:, None])[0, 0])


def verify_positive_definite(h: Array, *, err: float = 0.0) -> bool:
    """Prove that every symmetric real matrix within spectral distance ``err`` of the float matrix ``h``
    is positive definite.

    ``h`` is first scaled by an exact power of two to ``max |h_ij|`` in ``[1/2, 1)`` (R11), so matrices anywhere in
    the float range are handled alike. Then runs a floating-point Cholesky factorisation of ``h - c I`` for a shift
    ``c`` chosen to dominate the rounding errors, and checks the a-posteriori inequality R10 of
    ``proofs/rigorous_arithmetic.md`` (Demmel's backward error bound ``R^T R = S + dS``,
    ``|dS| <= gamma_{n+1} |R^T||R| + U``, ``||U||_2 <= n (n + max r_ii) eta``).
    Returns ``False`` when the proof does not go through (which does not prove indefiniteness).

    >>> verify_positive_definite(np.diag([2.0**1023, 2.0**1023])), verify_positive_definite(np.eye(2), err=1.0)
    (True, False)
    """
    h = np.asarray(h, dtype=np.float64)
    n = h.shape[0]
    if n == 0:
        return True
    err = float(err)
    if not np.all(np.isfinite(h)) or not np.array_equal(h, h.T) or not (math.isfinite(err) and err >= 0):
        return False
    top = float(np.max(np.abs(h)))
    if top == 0.0:
        return False
    exponent = math.frexp(top)[1]
    h, inexact = _pow2_scale(h, exponent)  # symmetric still: the scaling is entrywise
    err = float(_unscale(err, -exponent, up))
    if np.any(inexact):
        # each entry that underflowed moved by less than eta: spectral distance < n eta
        err = float(up(err + n * ETA))
    return _verify_pd_scaled(h, err)


def _verify_pd_scaled(h: Array, err: float) -> bool:
    """:func:`verify_positive_definite` for a finite symmetric ``h`` with ``max |h_ij|`` in ``[1/2, 1)`` (R10)."""
    n = h.shape[0]
    g = gamma_up(n + 1)
    trace_abs = float(sum_up(np.abs(np.diag(h))))
    diag_max = float(np.max(np.abs(np.diag(h))))
    # the shift must exceed gamma_{n+1} ||R||_F^2 (~ gamma_{n+1} tr(H)) plus the other error terms; its value only
    # decides whether the test succeeds, never whether a success is correct
    c = float(up(2.0 * g * trace_abs + 2.0 * err + 4.0 * UNIT_ROUNDOFF * diag_max + 1e3 * n * ETA))
    shifted = h - c * np.eye(n)
    # subtracting c on the diagonal is rounded: error at most u * |shifted_ii| per entry
    shift_err = float(up(UNIT_ROUNDOFF * float(np.max(np.abs(np.diag(shifted))))))
    import scipy.linalg  # here, not at the top: ``import lipverify`` stays cheap

    try:
        r = scipy.linalg.cholesky(shifted, lower=False, check_finite=False)
    except np.linalg.LinAlgError:
        return False
    if not np.all(np.isfinite(r)) or np.any(np.diag(r) <= 0):
        return False
    # the underflow term n (n + max r_ii) eta, with a factor 2 covering the roundings of 2n(n + max r_ii)
    underflow = float(up(2.0 * n * (n + float(np.max(np.diag(r)))) * ETA))
    backward = float(up(g * fro_sq_upper(r) + underflow))
    # lambda_min(H_true) >= c - backward - shift_err - err
    margin = c - float(up(up(backward + shift_err) + err))
    return margin > 0


def spectral_norm_upper(a, *, rel_margin: float | None = None) -> float:
    """A float ``s`` with ``||a||_2 <= s`` in exact arithmetic, for a float matrix (or vector) ``a``.

    ``a`` is scaled by an exact power of two to ``max |a_ij|`` in ``[1/2, 1)`` (R11). ``s`` is about
    ``(1 + rel_margin) ||a||_2`` (default margin ``16 (n+2)^2 u``, enlarged until the proof succeeds): the estimate
    from LAPACK is inflated and then proved by :func:`verify_positive_definite` applied to ``s^2 I - a^T a`` (the
    smaller Gram matrix), with the rounding error of forming the Gram matrix accounted for.
    Proof: R10 of ``proofs/rigorous_arithmetic.md``.

    >>> spectral_norm_upper(np.array([[3.0, 0.0], [0.0, 4.0]])) >= 4.0
    True
    """
    if sp.issparse(a):
        a = a.toarray()
    a = np.asarray(a, dtype=np.float64)
    _check_finite(a, "spectral_norm_upper")
    if a.size == 0 or not np.any(a):
        return 0.0
    if a.ndim == 1:
        a = a[None, :]
    if a.shape[0] < a.shape[1]:
        a = a.T
    # scale by a power of two (exact up to underflow, R11) so that no square overflows or underflows prematurely
    exponent = math.frexp(float(np.max(np.abs(a))))[1]
    a = np.ldexp(a, -exponent)
    # ||2^-e a - a||_2 <= sqrt(mn) eta / 2 <= fl(sqrt(mn) * eta)
    underflow = math.sqrt(a.size) * ETA
    if a.shape[1] == 1:
        # a vector: the spectral norm is the Euclidean norm
        s = float(up(math.sqrt(fro_sq_upper(a))))
    else:
        s = _spectral_upper_scaled(a, rel_margin)
    return _finite_float(_unscale(float(up(s + underflow)), exponent, up), "spectral_norm_upper")


def _spectral_upper_scaled(a: Array, rel_margin: float | None) -> float:
    """A float ``s >= ||a||_2`` for an ``m x n`` float matrix, ``m >= n >= 2``, ``max |a_ij|`` in ``[1/2, 1)`` (R10)."""
    m, n = a.shape
    gram = a.T @ a
    gram = (gram + gram.T) / 2  # symmetric; the error bound below covers every entry either way
    fro = fro_sq_upper(a)
    # |fl(a^T a) - a^T a| <= gamma_m |a|^T |a| + m eta; the averaging adds u (1 + gamma_m) |a|^T |a| + eta
    gram_err = float(up(up(gamma_up(m) * fro) * (1 + 4 * UNIT_ROUNDOFF)))
    gram_err = float(up(gram_err + up(UNIT_ROUNDOFF * fro * 2)))
    gram_err = float(up(gram_err + 2.0 * n * (m + 1) * ETA))
    # the largest eigenvalue of the float Gram matrix (LAPACK, accurate to about n u relative)
    est = math.sqrt(max(_largest_eigenvalue(gram), 0.0))
    margin = rel_margin if rel_margin is not None else 16.0 * (n + 2) ** 2 * UNIT_ROUNDOFF
    for _ in range(60):
        s = float(up(est * (1.0 + margin) + 1e-300))
        s2 = float(down(s * s))  # s2 <= s^2: proving s2 I - a^T a > 0 proves ||a|| < s
        h = -gram
        h[np.diag_indices(n)] += s2
        # forming s2 - gram_ii rounds: at most u * |h_ii| per diagonal entry
        diag_err = float(up(UNIT_ROUNDOFF * float(np.max(np.abs(np.diag(h))))))
        if verify_positive_definite(h, err=float(up(gram_err + diag_err))):
            return s
        margin *= 4.0
    raise CertificationError(f"could not certify an upper bound of the spectral norm of a {m}x{n} matrix")


def _largest_eigenvalue(sym: Array) -> float:
    """An accurate estimate (not a bound) of the largest eigenvalue of a symmetric PSD float matrix."""
    import scipy.linalg  # here, not at the top: ``import lipverify`` stays cheap
    import scipy.sparse.linalg

    n = sym.shape[0]
    if n > 32:
        try:
            # a fixed start vector: ARPACK's default one is random, which made results differ in the last bits
            v0 = np.random.default_rng(0).standard_normal(n)
            return float(scipy.sparse.linalg.eigsh(sym, k=1, which="LA", tol=1e-14, v0=v0,
                                                   return_eigenvectors=False)[0])
        except scipy.sparse.linalg.ArpackNoConvergence:
            pass
    return float(scipy.linalg.eigvalsh(sym, subset_by_index=[n - 1, n - 1], check_finite=False)[0])


def spectral_norm_lower(mid: Array, rad: Array | None = None, v: Array | None = None) -> float:
    """A float ``s <= ||M||_2`` for **every** real matrix ``M`` with ``|M - mid| <= rad`` entrywise (``M = mid`` when
    ``rad`` is ``None``), with no assumption on LAPACK's accuracy.

    ``s`` is ``||M v||_2 / ||v||_2`` bounded from below with directed rounding, for the float vector ``v`` (default:
    the top right singular vector of ``mid`` computed by LAPACK; any nonzero ``v`` gives a valid bound, an accurate one
    a tight bound): ``|(M v)_i| >= |fl(mid v)_i| - gamma_n (|mid||v|)_i - 2(n+1) eta - (rad |v|)_i``, squares and sum
    rounded down, square root rounded down, ``||v||_2`` rounded up. ``mid`` and ``rad`` are scaled by an exact power
    of two first (R11), so every finite interval matrix gets a bound. Proof: R12 of ``proofs/rigorous_arithmetic.md``.

    >>> s = spectral_norm_lower(np.array([[3.0, 0.0], [0.0, 4.0]]))
    >>> 4.0 * (1 - 1e-14) < s <= 4.0
    True
    """
    mid = np.asarray(mid, dtype=np.float64)
    if mid.ndim != 2:
        raise ValueError(f"spectral_norm_lower: mid must be a matrix (2-D array), got shape {mid.shape}")
    rad = np.zeros_like(mid) if rad is None else np.asarray(rad, dtype=np.float64)
    if rad.shape != mid.shape:
        raise ValueError(f"spectral_norm_lower: rad has shape {rad.shape}, mid has shape {mid.shape}; they must agree")
    _check_finite(mid, "spectral_norm_lower (midpoint)")
    _check_finite(rad, "spectral_norm_lower (radius)")
    if np.any(rad < 0):
        raise ValueError("spectral_norm_lower: the radius has negative entries; it must be entrywise >= 0")
    m, n = mid.shape
    if mid.size == 0:
        return 0.0
    top = max(float(np.max(np.abs(mid))), float(np.max(rad)))
    if top == 0.0:
        return 0.0
    # 2^-e M lies in mid_s +- rad_s: rounding of a scaled entry that underflowed moves it by less than eta (R11)
    exponent = math.frexp(top)[1]
    mid_s, mid_inexact = _pow2_scale(mid, exponent)
    rad_s, rad_inexact = _pow2_scale(rad, exponent)
    rad_s = np.where(rad_inexact, up(rad_s), rad_s)
    rad_s = np.where(mid_inexact, up(rad_s + ETA), rad_s)
    if v is None:
        v = _top_right_singular_vector(mid_s)
    else:
        v = np.asarray(v, dtype=np.float64).ravel()
        if v.shape != (n,):
            raise ValueError(f"spectral_norm_lower: v has {v.size} entries, the {m}x{n} matrix needs {n}")
        _check_finite(v, "spectral_norm_lower (vector)")
    vmax = float(np.max(np.abs(v)))
    if vmax == 0.0:
        return 0.0
    # a power of two: exact (the quotient is unchanged) unless tiny entries underflow; any vector would do anyway
    v = np.ldexp(v, -math.frexp(vmax)[1])
    absv = np.abs(v)[:, None]
    y = (mid_s @ v[:, None])[:, 0]
    # |fl(mid v) - mid v| <= gamma_n |mid||v| + n eta (R3); |E v| <= rad |v| for |E| <= rad
    slack = add_up(scale_up(matmul_up(np.abs(mid_s), absv)[:, 0], gamma_up(n)), 2.0 * (n + 1) * ETA,
                   matmul_up(rad_s, absv)[:, 0])
    low = np.maximum(down(np.abs(y) - slack), 0.0)  # low_i <= |(M v)_i|
    num_sq = float(sum_down(np.maximum(down(low * low), 0.0)))
    if num_sq == 0.0:
        return 0.0
    num = float(down(math.sqrt(num_sq)))
    den = float(up(math.sqrt(fro_sq_upper(v))))
    quotient = max(float(down(num / den)), 0.0)
    with np.errstate(over="ignore"):
        value = _unscale(quotient, exponent, down)
    # the true value exceeds the float range only if 2^e * quotient does; then the largest float is a lower bound;
    # an unscaled value that underflows is rounded down past 0 (to -eta): a norm is >= 0, so 0 is the lower bound
    return max(value, 0.0) if math.isfinite(value) else float(np.finfo(np.float64).max)


def _top_right_singular_vector(a: Array) -> Array:
    """An estimate (not a bound) of the top right singular vector of a finite float matrix ``a``."""
    try:
        _, _, vh = np.linalg.svd(a, full_matrices=False)
        v = vh[0]
        if np.all(np.isfinite(v)) and np.any(v):
            return v
    except np.linalg.LinAlgError:
        pass
    # LAPACK failed: the unit vector of the largest column is still a valid (if loose) choice
    v = np.zeros(a.shape[1])
    v[int(np.argmax(np.sum(a * a, axis=0)))] = 1.0
    return v


@dataclass(frozen=True)
class Interval:
    """An interval matrix ``[mid - rad, mid + rad]`` (entrywise, ``rad >= 0``), with rigorous operations."""

    mid: Array
    rad: Array

    @classmethod
    def point(cls, a: Array, rad: Array | None = None) -> Interval:
        a = np.asarray(a, dtype=np.float64)
        return cls(a, np.zeros_like(a) if rad is None else np.asarray(rad, dtype=np.float64))

    @classmethod
    def from_bounds(cls, lo: Array, hi: Array) -> Interval:
        """Smallest float midpoint-radius enclosure of ``[lo, hi]`` (finite float bounds, R7)."""
        lo = _check_finite(np.asarray(lo, dtype=np.float64), "Interval.from_bounds (lower bounds)")
        hi = _check_finite(np.asarray(hi, dtype=np.float64), "Interval.from_bounds (upper bounds)")
        mid = lo / 2 + hi / 2
        rad = np.maximum(up(hi - mid), up(mid - lo))
        return cls(mid, np.maximum(rad, 0.0))

    def bounds(self) -> tuple[Array, Array]:
        """Float ``lo <= mid - rad`` and ``hi >= mid + rad``."""
        return down(self.mid - self.rad), up(self.mid + self.rad)

    def magnitude(self) -> Array:
        """Entrywise upper bound of ``max |x|`` over the interval."""
        return up(np.abs(self.mid) + self.rad)

    def left_matmul(self, w: Array, w_rad: Array | None = None) -> Interval:
        """Enclosure of ``{W X : |W - w| <= w_rad, X in self}``."""
        k = w.shape[-1]
        with np.errstate(over="ignore", invalid="ignore"):
            mid = np.asarray(w @ self.mid, dtype=np.float64)
        absw = abs(w)
        absm = np.abs(self.mid)
        rad = matmul_up(absw, self.rad)
        rounding = scale_up(matmul_up(absw, absm), gamma_up(k))
        rad = add_up(rad, rounding, 4.0 * (k + 1) * ETA)
        if w_rad is not None:
            rad = add_up(rad, matmul_up(w_rad, add_up(absm, self.rad)))
        return Interval(_check_finite(mid, "interval product"), _check_finite(rad, "interval product"))

    def scale_rows(self, alpha: Array, beta: Array) -> Interval:
        """Enclosure of ``{D X : D = diag(d), alpha <= d <= beta, X in self}`` (exact interval products)."""
        shape = (-1, *([1] * (self.mid.ndim - 1)))
        a = np.asarray(alpha, dtype=np.float64).reshape(shape)
        b = np.asarray(beta, dtype=np.float64).reshape(shape)
        if np.array_equal(a, b) and not np.all((a == 0) | (np.abs(a) == 1)):
            return self._scale_rows_point(a)
        lo, hi = self.bounds()
        cands = (a * lo, a * hi, b * lo, b * hi)
        new_lo = down(np.minimum.reduce(cands))
        new_hi = up(np.maximum.reduce(cands))
        # products that are exact (0 * x, 1 * x) need no widening
        exact = (a == b) & ((a == 0) | (a == 1) | (a == -1))
        exact = np.broadcast_to(exact, new_lo.shape)
        pt_lo = np.minimum(a * lo, a * hi)
        pt_hi = np.maximum(a * lo, a * hi)
        new_lo = np.where(exact, pt_lo, new_lo)
        new_hi = np.where(exact, pt_hi, new_hi)
        same = (self.rad == 0) & exact
        if np.all(same):
            return Interval(np.asarray(a * self.mid, dtype=np.float64), np.zeros_like(self.mid))
        return Interval.from_bounds(new_lo, new_hi)

    def _scale_rows_point(self, d: Array) -> Interval:
        """:meth:`scale_rows` by one float per row: ``fl(d x)`` is within ``u |fl(d x)| + eta`` of ``d x`` (one
        rounding to nearest, gradual underflow), so ``mid' = fl(d mid)`` and
        ``rad' >= |d| rad + u |mid'| + eta``, every term rounded upward (R7 of ``proofs/rigorous_arithmetic.md``)."""
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            mid = np.asarray(d * self.mid, dtype=np.float64)
            if np.all(np.frexp(d)[0] == 0.5 * np.sign(d)) and np.all(d != 0):  # powers of two: exact unless under-
                rad = np.abs(d) * self.rad  # or overflow, which dividing back detects (the division is exact)
                if np.array_equal(mid / d, self.mid) and np.array_equal(rad / np.abs(d), self.rad):
                    return Interval(_check_finite(mid, "interval row scaling"), rad)
            rad = add_up(up(np.abs(d) * self.rad), up(UNIT_ROUNDOFF * np.abs(mid)), ETA)
        return Interval(_check_finite(mid, "interval row scaling"), _check_finite(rad, "interval row scaling"))


# --------------------------------------------------------------------------- nonnegative operator passes


def bound_nonneg(c: np.ndarray, k: int, extra: int = 0) -> np.ndarray:
    """Upper bound of the exact value of a float result ``c`` of sums of ``<= k`` products of nonnegative floats
    (plus ``extra * eta``).

    The exact value is at most ``c * f_k + 2 (k + 1) eta`` with ``f_k = 1 / (1 - gamma_k)`` (the bound of
    :func:`lipverify.rigorous.matmul_up`).  It is evaluated as ``fl(fl(c * F) + E)`` with ``F >= f_k (1 + 4u)``
    and ``E = (4 (k + 1) + 2 extra) eta``: the two roundings lose at most a factor ``(1 - u)^2`` and ``eta / 2``
    of underflow, which ``F`` and ``E`` absorb (``proofs/cnn_explicit.md``).
    """
    c = np.asarray(c, dtype=np.float64)
    out = c * _factor(k)
    out += (4.0 * (k + 1) + 2.0 * extra) * ETA
    return check_finite(out, "nonnegative operator pass")


def check_finite(x: np.ndarray, what: str) -> np.ndarray:
    """``x`` if every entry is finite (NaN propagates through max/min), else :class:`NumericalError`."""
    if x.size and not (math.isfinite(float(np.max(x))) and math.isfinite(float(np.min(x)))):
        _check_finite(np.array([np.nan]), what)
    return x


_FACTORS: dict[int, float] = {}


def _factor(k: int) -> float:
    f = _FACTORS.get(k)
    if f is None:
        f = _FACTORS[k] = float(up(relative_factor(k) * (1.0 + 4.0 * UNIT_ROUNDOFF)))
    return f


# --------------------------------------------------------------------------- arb balls to floats


def arb_lower(a) -> float:
    """A float ``<=`` every point of the python-flint ``arb`` ball ``a`` (``-inf`` for an unbounded or NaN ball)."""
    import math

    from flint import arb

    if not a.is_finite():
        return -math.inf
    v = float(a.lower().mid())
    for _ in range(64):
        if arb(v) <= a:
            return v
        v = math.nextafter(v, -math.inf)
    return -math.inf


def arb_upper(a) -> float:
    """A float ``>=`` every point of the ``arb`` ball ``a`` (``inf`` for an unbounded or NaN ball)."""
    import math

    from flint import arb

    if not a.is_finite():
        return math.inf
    v = float(a.upper().mid())
    for _ in range(64):
        if arb(v) >= a:
            return v
        v = math.nextafter(v, math.inf)
    return math.inf


# --------------------------------------------------------------------------- exact numbers to floats (R13)


def float_up(x: object) -> float:
    """The smallest float ``>= x`` for a real sympy number ``x`` (a rigorous upward rounding).

    sympy decides ``float < x`` numerically and gives up when ``x`` is within ~1e-30 relative of a float (e.g.
    ``sqrt(1 + 1e-538)``); then the ends of rigorous ``arb`` balls decide (``exact.common.float_enclosure``).
    Python floats, ints and Fractions are rounded without sympy (``Fraction -> float`` is correctly rounded).
    """
    if isinstance(x, float):
        return float(x) + 0.0  # its own exact value (NaN and inf stay what they are; -0.0 becomes 0.0)
    if isinstance(x, (int, Fraction)) and not isinstance(x, bool):
        return _fraction_up(Fraction(x))
    import sympy

    x = sympy.Rational(x) if isinstance(x, sympy.Float) else sympy.sympify(x)  # a Float's exact binary value
    try:
        return _float_up_sympy(x)
    except TypeError:  # "cannot determine truth value of Relational"
        from ..exact.common import float_enclosure

        return float_enclosure(x)[1]


def _fraction_up(fr: Fraction) -> float:
    """The smallest float ``>= fr``; beyond the float range ``inf`` above and the most negative float below."""
    try:
        f = float(fr)  # correctly rounded: the nearest float
    except OverflowError:
        return math.inf if fr > 0 else -sys.float_info.max
    if Fraction(f) < fr:
        f = math.nextafter(f, math.inf)
    return f


def _float_up_sympy(x: object) -> float:
    import sympy

    f = float(sympy.N(x, 30))
    if not math.isfinite(f):  # beyond the float range: below -max the smallest float >= x is -max; above max none is
        return -sys.float_info.max if f < 0 and x.is_finite else f
    while sympy.Rational(f) < x:
        f = float(np.nextafter(f, math.inf))
    while True:
        below = float(np.nextafter(f, -math.inf))
        if sympy.Rational(below) >= x:
            f = below
        else:
            return f


def float_down(x: object) -> float:
    """The largest float ``<= x`` for a real sympy number ``x`` (or a Python float, int or Fraction)."""
    if isinstance(x, float):
        return float(x) + 0.0
    if isinstance(x, (int, Fraction)) and not isinstance(x, bool):
        return -_fraction_up(-Fraction(x))
    import sympy

    x = sympy.Rational(x) if isinstance(x, sympy.Float) else sympy.sympify(x)
    return -float_up(-x)


# --------------------------------------------------------------------------- extended-real intervals (R14)


def ext_mul(w: float, iv: tuple[float, float]) -> tuple[float, float]:
    """``w * [lo, hi]`` for a float ``w`` and an extended interval (ends may be infinite), rounded outward (R14)."""
    if w == 0.0:
        return 0.0, 0.0
    lo, hi = iv
    a, b = (w * lo, w * hi) if w > 0 else (w * hi, w * lo)
    return math.nextafter(a, -math.inf), math.nextafter(b, math.inf)


def ext_mul_interval(wl: float, wh: float, iv: tuple[float, float]) -> tuple[float, float]:
    """``[wl, wh] * iv``: the product is bilinear, so its extremes over ``w`` are at ``wl`` or ``wh``."""
    a, b = ext_mul(wl, iv), ext_mul(wh, iv)
    return min(a[0], b[0]), max(a[1], b[1])


def ext_add(p: tuple[float, float], q: tuple[float, float]) -> tuple[float, float]:
    """The sum of two extended intervals, rounded outward (R14)."""
    return math.nextafter(p[0] + q[0], -math.inf), math.nextafter(p[1] + q[1], math.inf)


def ext_prod(p: tuple[float, float], q: tuple[float, float]) -> tuple[float, float]:
    """Product of two intervals, at least one of them bounded (an unbounded factor times 0 is treated as 0
    only when that factor is bounded; otherwise the result is the whole line)."""
    cands = []
    for a in p:
        for b in q:
            if (a == 0.0 and math.isinf(b)) or (b == 0.0 and math.isinf(a)):
                return -math.inf, math.inf
            cands.append(a * b)
    return math.nextafter(min(cands), -math.inf), math.nextafter(max(cands), math.inf)


def fsum_up(values) -> float:
    """An upper bound of the exact sum of **nonnegative** floats: ``math.fsum`` is correctly rounded (error at most
    half an ulp); the factor ``1 + 1e-15`` and one ``nextafter`` lift it above the exact sum (R14)."""
    return math.nextafter(math.fsum(values) * (1 + 1e-15), math.inf)


def quotient_radius(q: Array) -> Array:
    """A bound of ``|q - q_exact|`` for ``q = fl(a / fl(sqrt(fl(b + c))))`` computed from floats ``a, b, c`` with
    ``b + c > 0`` (batch norm's ``gamma / sqrt(var + eps)``): three roundings give an error below
    ``((1 + u)^{3/2} / (1 - u) - 1) |q| < 4u |q|`` plus ``eta / 2`` if the quotient underflows; the bound
    ``up(4u |q| + 1e-300)`` covers both (R15 of ``proofs/rigorous_arithmetic.md``)."""
    return up(4 * UNIT_ROUNDOFF * np.abs(q) + 1e-300)
