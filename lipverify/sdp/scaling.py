"""Exact power-of-two scaling of the weights of an SDP bound (LipSDP and KSDP; ``proofs/lipsdp.md`` §3,
``proofs/ksdp.md`` §4).

Multiplying a weight entry by a power of two is exact in binary floating point unless it under- or overflows,
and always exact on rationals; a scaled chain has the same certificates up to the powers of two, so the SDP
solver sees well-conditioned numbers while nothing is lost.  Where a float underflows its radius grows by
``eta`` per entry; where it overflows the scaling is refused (``None``).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from ..rigorous import ETA, up

#: rho (t) and every layer's largest multiplier within 4**BALANCED of 1 count as balanced (no second solve)
BALANCED = 2
#: a first solution with rho outside [4**-RHO_BALANCED, 4**RHO_BALANCED] is rebalanced even if its certificate is
#: tight (CVXOPT's absolute tolerance 1e-7 would be a large relative error of a tiny rho)
RHO_BALANCED = 6
#: at most this many rescale-and-solve-again rounds (proofs/lipsdp.md §5)
REBALANCE_ROUNDS = 4


def shift_weight(w: np.ndarray, r: np.ndarray | None, f: np.ndarray | None, e: int):
    """``2**-e`` times a (float, radius, Fractions-or-None) weight: exact unless the floats underflow, in which
    case ``eta`` per entry is added to the radius (the Fractions stay exact)."""
    ws = np.ldexp(w, -e)
    rs = None if r is None else up(np.ldexp(r, -e))
    if not np.array_equal(np.ldexp(ws, e), w):  # underflow made the scaling inexact: at most eta per entry
        rs = up((0.0 if rs is None else rs) + np.full(w.shape, ETA))
    return ws, rs, (None if f is None else times_power_of_two(f, -e))


def scale_entries(w: np.ndarray, r: np.ndarray | None, f: np.ndarray | None, row_exp, col_exp):
    """``2**(col_exp[j] - row_exp[i])`` times entry ``(i, j)`` of a (float, radius, Fractions-or-None) weight;
    floats that underflow get ``eta`` added to their radius, overflow gives ``None``."""
    e = np.asarray(col_exp, dtype=np.int64)[None, :] - np.asarray(row_exp, dtype=np.int64)[:, None]
    ws = np.ldexp(w, e)
    rs = None if r is None else up(np.ldexp(r, e))
    if not (np.all(np.isfinite(ws)) and (rs is None or np.all(np.isfinite(rs)))):
        return None
    if not np.array_equal(np.ldexp(ws, -e), w):
        rs = up((0.0 if rs is None else rs) + np.full(w.shape, ETA))
    fs = None
    if f is not None:
        fs = np.empty(f.shape, dtype=object)
        for idx, v in np.ndenumerate(f):
            k = int(e[idx])
            fs[idx] = v * (Fraction(2**k) if k >= 0 else Fraction(1, 2 ** (-k)))
    return ws, rs, fs



def times_power_of_two(x: np.ndarray, e: int) -> np.ndarray:
    """``2**e`` times every entry of a ``Fraction`` object array (exact)."""
    f = Fraction(2) ** e
    out = np.empty(x.shape, dtype=object)
    for idx, v in np.ndenumerate(x):
        out[idx] = v * f
    return out


def float_fractions(w: np.ndarray) -> np.ndarray:
    """The exact rational value of every entry of a float array, as a ``Fraction`` object array."""
    out = np.empty(w.shape, dtype=object)
    for idx, v in np.ndenumerate(w):
        out[idx] = Fraction(float(v))
    return out


def ldexp_exact(x: float, e: int) -> float:
    """``x * 2^e`` when that is exact, else ``inf`` (a certificate scaled by it is then not used)."""
    try:
        y = math.ldexp(x, e)
    except OverflowError:
        return math.inf
    if not math.isfinite(y) or math.ldexp(y, -e) != x:
        return math.inf
    return y
