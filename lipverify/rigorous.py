"""Floating-point arithmetic with rigorous error bounds (proof: ``proofs/rigorous_arithmetic.md``).

Every function here returns floats that enclose the exact real result of the operation on the
given floats, whatever the rounding of the platform's BLAS/LAPACK, under the assumptions stated in
the proof: IEEE-754 binary64 with round-to-nearest, and conventional (not Strassen-like) matrix
products, whose every entry is a sum of ``k`` products in some order.

Two representations are used:

* nonnegative matrices, multiplied with :func:`matmul_up` (an entrywise upper bound of the product);
* interval matrices in midpoint-radius form :class:`Interval` (``mid ± rad`` entrywise), multiplied
  by point matrices with :func:`Interval.left_matmul` / :func:`Interval.right_matmul`.

The spectral norm is bounded by :func:`spectral_norm_upper` through a verified floating-point
Cholesky factorisation (:func:`verify_positive_definite`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg

from .errors import CertificationError, NumericalError

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


def up(x):
    """The next float above ``x`` (entrywise): an upper bound of any real rounded to nearest as ``x``."""
    return np.nextafter(x, np.inf)


def down(x):
    """The next float below ``x`` (entrywise)."""
    return np.nextafter(x, -np.inf)


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
    """Upper bound of ``||a||_2`` for a nonnegative matrix, by the Collatz–Wielandt inequality.

    For ``B = a^T a >= 0`` and any vector ``x > 0``, ``rho(B) <= max_i (B x)_i / x_i``; ``x`` comes from
    power iteration and the quotient is evaluated with upward rounding (``proofs/rigorous_arithmetic.md``).
    Falls back to ``sqrt(||a||_1 ||a||_inf)`` when that is smaller.
    """
    if sp.issparse(a):
        a = a.tocsr()
    else:
        a = np.asarray(a, dtype=np.float64)
    if 0 in a.shape:
        return 0.0
    cheap = float(up(math.sqrt(up(float(np.max(sum_up(a, axis=0))) * float(np.max(sum_up(a, axis=1)))))))
    if cheap == 0.0:
        return 0.0
    _finite_float(cheap, "nonneg_spectral_upper")
    x = np.ones(a.shape[1])
    for _ in range(iterations):
        y = a.T @ (a @ x)
        ny = float(np.max(y))
        if not ny > 0 or not math.isfinite(ny):
            return cheap
        x = y / ny
    x = np.maximum(x, 1e-6)
    bx = matmul_up(a.T, matmul_up(a, x[:, None]))[:, 0]
    x_low = x  # x is exact as stored; the quotient below is rounded up
    rho = float(np.max(up(bx / x_low)))
    return _finite_float(min(cheap, float(up(math.sqrt(rho)))), "nonneg_spectral_upper")


def abs_norm_upper(mid: Array, rad: Array | None, norm: str) -> float:
    """Upper bound of ``max ||M||`` over all ``M`` with ``|M - mid| <= rad`` entrywise."""
    if norm in ("1", "inf"):
        mag = np.abs(mid) if rad is None else add_up(np.abs(mid), rad)
        return norm_upper_nonneg(mag, norm)
    value = spectral_norm_upper(mid)
    if rad is not None and np.any(rad):
        r1 = norm_upper_nonneg(rad, "1")
        rinf = norm_upper_nonneg(rad, "inf")
        value = float(up(value + up(math.sqrt(up(r1 * rinf)))))
    return value


def fro_sq_upper(a: Array) -> float:
    """Upper bound of the squared Frobenius norm of ``a``."""
    a = np.abs(np.asarray(a, dtype=np.float64)).ravel()
    return float(matmul_up(a[None, :], a[:, None])[0, 0])


def verify_positive_definite(h: Array, *, err: float = 0.0) -> bool:
    """Prove that every symmetric real matrix within spectral distance ``err`` of the float matrix ``h``
    is positive definite.

    Runs a floating-point Cholesky factorisation of ``h - c I`` for a shift ``c`` chosen to dominate the
    rounding errors, and then checks the a-posteriori inequality of ``proofs/rigorous_arithmetic.md``
    (Demmel's backward error bound ``R^T R = H + dH``, ``|dH| <= gamma_{n+1} |R^T||R|``).
    Returns ``False`` when the proof does not go through (which does not prove indefiniteness).
    """
    h = np.asarray(h, dtype=np.float64)
    n = h.shape[0]
    if n == 0:
        return True
    if not np.all(np.isfinite(h)) or not np.array_equal(h, h.T):
        return False
    g = gamma_up(n + 1)
    trace_abs = float(sum_up(np.abs(np.diag(h))))
    diag_max = float(np.max(np.abs(np.diag(h))))
    # the shift must exceed gamma_{n+1} ||R||_F^2 (~ gamma_{n+1} tr(H)) plus the other error terms
    c = float(up(2.0 * g * trace_abs + 2.0 * err + 4.0 * UNIT_ROUNDOFF * diag_max + 1e3 * n * ETA))
    shifted = h - c * np.eye(n)
    # subtracting c on the diagonal is rounded: error at most u * |shifted_ii| per entry
    shift_err = float(up(UNIT_ROUNDOFF * float(np.max(np.abs(np.diag(shifted))))))
    try:
        r = scipy.linalg.cholesky(shifted, lower=False, check_finite=False)
    except np.linalg.LinAlgError:
        return False
    if not np.all(np.isfinite(r)) or np.any(np.diag(r) <= 0):
        return False
    backward = float(up(g * fro_sq_upper(r) + up(2.0 * n * (n + float(np.max(np.diag(r)))) * ETA)))
    # lambda_min(H_true) >= c - backward - shift_err - err
    margin = c - float(up(up(backward + shift_err) + err))
    return margin > 0


def spectral_norm_upper(a, *, rel_margin: float | None = None) -> float:
    """A float ``s`` with ``||a||_2 <= s`` in exact arithmetic, for a float matrix ``a``.

    ``s`` is about ``(1 + rel_margin) ||a||_2`` (default margin ``16 (n+2)^2 u``, enlarged until the proof
    succeeds): the estimate from LAPACK is inflated and then proved by
    :func:`verify_positive_definite` applied to ``s^2 I - a^T a`` (the smaller Gram matrix), with the
    rounding error of forming the Gram matrix, ``gamma_m ||a||_F^2``, accounted for.
    Proof: ``proofs/rigorous_arithmetic.md``.
    """
    if sp.issparse(a):
        a = a.toarray()
    a = np.asarray(a, dtype=np.float64)
    _check_finite(a, "spectral_norm_upper")
    if a.size == 0 or not np.any(a):
        return 0.0
    if a.ndim == 1 or 1 in a.shape:
        # a vector: the spectral norm is the Euclidean norm
        return float(up(math.sqrt(fro_sq_upper(a))))
    if a.shape[0] < a.shape[1]:
        a = a.T
    m = a.shape[0]
    # scale by a power of two (exact) so that the Gram matrix stays in the normal range
    exponent = math.frexp(float(np.max(np.abs(a))))[1]
    a = np.ldexp(a, -exponent)
    gram = a.T @ a
    gram = (gram + gram.T) / 2  # symmetric; the error bound below covers every entry either way
    # |fl(a^T a) - a^T a| <= gamma_m |a|^T |a| and the averaging adds at most u per entry
    gram_err = float(up(up(gamma_up(m) * fro_sq_upper(a)) * (1 + 4 * UNIT_ROUNDOFF)))
    gram_err = float(up(gram_err + up(UNIT_ROUNDOFF * fro_sq_upper(a) * 2)))
    gram_err = float(up(gram_err + 2.0 * a.shape[1] * (m + 1) * ETA))  # underflow in the Gram product
    n = gram.shape[0]
    # the largest eigenvalue of the float Gram matrix (LAPACK, accurate to about n u relative)
    est = math.sqrt(max(_largest_eigenvalue(gram), 0.0))
    margin = rel_margin if rel_margin is not None else 16.0 * (n + 2) ** 2 * UNIT_ROUNDOFF
    for _ in range(60):
        s = float(up(est * (1.0 + margin) + 1e-300))
        s2 = float(down(s * s))  # s2 <= s^2: proving s2 I - a^T a > 0 proves ||a|| < s
        h = -gram
        h[np.diag_indices(n)] += s2
        # forming s^2 - gram_ii rounds: at most u * |h_ii| per diagonal entry
        diag_err = float(up(UNIT_ROUNDOFF * float(np.max(np.abs(np.diag(h))))))
        if verify_positive_definite(h, err=float(up(gram_err + diag_err))):
            # scaling by a power of two is exact except for underflow, at most eta/2 per entry
            underflow = math.sqrt(a.size) * ETA
            with np.errstate(over="ignore"):
                return _finite_float(up(np.ldexp(up(s + underflow), exponent)), "spectral_norm_upper")
        margin *= 4.0
    raise CertificationError("could not certify an upper bound of the spectral norm")


def _largest_eigenvalue(sym: Array) -> float:
    """An accurate estimate (not a bound) of the largest eigenvalue of a symmetric PSD float matrix."""
    n = sym.shape[0]
    if n > 32:
        try:
            return float(scipy.sparse.linalg.eigsh(sym, k=1, which="LA", tol=1e-14, return_eigenvectors=False)[0])
        except scipy.sparse.linalg.ArpackNoConvergence:
            pass
    return float(scipy.linalg.eigvalsh(sym, subset_by_index=[n - 1, n - 1], check_finite=False)[0])


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
        """Smallest float midpoint-radius enclosure of ``[lo, hi]``."""
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
        lo, hi = self.bounds()
        a = np.asarray(alpha, dtype=np.float64).reshape(-1, *([1] * (lo.ndim - 1)))
        b = np.asarray(beta, dtype=np.float64).reshape(-1, *([1] * (lo.ndim - 1)))
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
