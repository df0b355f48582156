"""The floating-point error model of the activations' formulas (``proofs/activations.md`` §2).

Assumption (A-libm) and its constants, and the running error analysis (:class:`_Tracked`) with which each built-in
activation proves ``forward_error`` / ``derivative_error``: a formula's float value together with a bound of its
distance to the exact real value, through products, sums and library calls.  Directed rounding comes from
:mod:`lipverify.rigorous` (``up``, ``down``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import down, up

#: **Assumption (A-libm)**, ``proofs/activations.md`` §2: for every float ``s`` numpy's ``exp``, ``tanh``, ``expm1``,
#: ``log1p`` and scipy's ``expit`` and ``erfc`` return ``y`` with ``|y - f(s)| <= LIBM_REL |f(s)| + LIBM_ABS`` (they are
#: accurate to a few ulps; 1e-13 is about 450 ulps).  The one place this constant is defined.
LIBM_REL = 1e-13
#: the absolute part of (A-libm): results below the normal range may lose all their bits
LIBM_ABS = 2.0**-1022
_U = 2.0**-53  # unit roundoff of binary64
_ETA = 2.0**-1074  # smallest positive subnormal


def _mul_up(a, b):
    """Upper bound of the exact product of nonnegative arrays (``0 * inf`` counts as 0)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        p = up(a * b)
    return np.where((a == 0) | (b == 0), 0.0, p)


def _add_up(*terms):
    """Upper bound of the exact sum of nonnegative arrays."""
    total = np.float64(0.0)
    with np.errstate(over="ignore"):
        for t in terms:
            total = up(total + t)
    return total


@dataclass(frozen=True)
class _Tracked:
    """A float array ``v`` computed by a fixed formula and (when ``e`` is not ``None``) an elementwise bound ``e`` of
    ``|v - V|``, ``V`` the exact real value of the formula (running error analysis, ``proofs/activations.md`` §2)."""

    v: np.ndarray
    e: np.ndarray | None

    @staticmethod
    def exact(x, track: bool) -> _Tracked:
        x = np.asarray(x, dtype=np.float64)
        return _Tracked(x, np.zeros(x.shape) if track else None)

    @staticmethod
    def const(value: float, radius: float, track: bool) -> _Tracked:
        return _Tracked(np.float64(value), np.float64(radius) if track else None)

    def __mul__(self, other: _Tracked) -> _Tracked:
        with np.errstate(over="ignore", under="ignore"):
            v = self.v * other.v
        if self.e is None:
            return _Tracked(v, None)
        # |ab - AB| <= |a| e_b + (|b| + e_b) e_a, plus the rounding 2u|fl(ab)| + eta (Lemma R)
        e = _add_up(_mul_up(np.abs(self.v), other.e), _mul_up(_add_up(np.abs(other.v), other.e), self.e),
                    _mul_up(2 * _U, np.abs(v)), _ETA)
        return _Tracked(v, e)

    def __add__(self, other: _Tracked) -> _Tracked:
        with np.errstate(over="ignore"):
            v = self.v + other.v
        if self.e is None:
            return _Tracked(v, None)
        return _Tracked(v, _add_up(self.e, other.e, _mul_up(2 * _U, np.abs(v))))

    def apply(self, func, dsup, cap=None) -> _Tracked:
        """``func`` (a library function under (A-libm)) at ``v``; ``dsup(v, e)`` bounds ``|func'|`` between ``v`` and
        every point within ``e`` of it, and ``cap(v, e)`` (optional) bounds the oscillation of ``func`` there (only
        called where ``e > 0``)."""
        with np.errstate(over="ignore", under="ignore"):
            v = np.asarray(func(self.v), dtype=np.float64)
        if self.e is None:
            return _Tracked(v, None)
        e = _add_up(_mul_up(2 * LIBM_REL, np.abs(v)), 2 * LIBM_ABS)
        if np.any(self.e > 0):
            moved = _mul_up(dsup(self.v, self.e), self.e)
            if cap is not None:
                moved = np.minimum(moved, cap(self.v, self.e))
            e = _add_up(e, moved)
        return _Tracked(v, e)


def _exp_upper(s):
    """An upper bound of ``exp(s)`` from numpy's ``exp`` under (A-libm); ``eta`` for ``s < -746``, where
    ``exp(s) < e^{-746} < eta``."""
    s = np.asarray(s, dtype=np.float64)
    with np.errstate(over="ignore", under="ignore"):
        bound = _add_up(_mul_up(np.exp(s), 1 + 2 * LIBM_REL), 2 * LIBM_ABS)
    return np.where(s < -746.0, _ETA, bound)


def _distance_from_zero(v, e):
    """A float lower bound of ``min |t|`` over ``t`` in ``[v - e, v + e]`` (0 when the interval may contain 0)."""
    with np.errstate(invalid="ignore"):
        return np.fmax(down(np.abs(v) - e), 0.0)


def _erfc_dsup(v, e):
    """``sup |erfc'| = (2/sqrt(pi)) exp(-t^2) <= 1.1284 exp(-m^2)`` with ``m`` the distance of the interval from 0."""
    m = _distance_from_zero(v, e)
    with np.errstate(over="ignore", under="ignore"):
        m2 = np.fmax(down(m * m), 0.0)
    return _mul_up(1.1284, _exp_upper(-m2))


def _erfc_cap(v, e):
    """Oscillation of erfc on an interval at distance ``m > 0`` from 0: its values lie in ``(0, erfc(m)]`` or
    ``[2 - erfc(m), 2)``, and ``erfc(m) <= exp(-m^2)``; ``inf`` (no cap) when the interval may contain 0."""
    m = _distance_from_zero(v, e)
    with np.errstate(over="ignore", under="ignore"):
        m2 = np.fmax(down(m * m), 0.0)
    return np.where(m > 0, _exp_upper(-m2), np.inf)


def _exp_neg_dsup(v, e):
    """``sup exp(-s)`` over ``s >= max(v - e, 0)`` (the exact argument is ``x^2/2 >= 0``)."""
    with np.errstate(invalid="ignore"):
        m = np.fmax(down(v - e), 0.0)
    return _exp_upper(-m)


def _expit(x):
    from scipy.special import expit

    return expit(x)


def _erfc(x):
    from scipy.special import erfc

    return erfc(x)


def _neg_exp(s):
    return np.exp(-s)


def _lemma_r_error(out):
    """``2 LIBM_REL |out| + 2 LIBM_ABS``: the error of one library call with an exact argument (Lemma R + A-libm)."""
    return _add_up(_mul_up(2 * LIBM_REL, np.abs(np.asarray(out, dtype=np.float64))), 2 * LIBM_ABS)
