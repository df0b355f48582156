"""Shared pieces of the exact methods: the network as affine stages, domains, exact Jacobian norms.

A network ``f = A_L ∘ σ_{L-1} ∘ ⋯ ∘ σ_1 ∘ A_1`` is read into :class:`Stage` objects: stage ``k`` is the
affine map ``z = W h + b`` (exact sympy matrices; float weights enter as the exact dyadic rationals of the
floats) followed by the activation ``act`` (``None`` for the output stage).  Consecutive affine layers are
composed, consecutive activations get an identity affine map between them, Flatten is a reshape.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import sympy

from ..errors import UnsupportedLayerError
from ..layers import Activation, Dense, Flatten, Identity, LeakyReLU, ReLU
from ..network import Network


@dataclass(frozen=True)
class Stage:
    """``h -> act(W h + b)``; ``act`` is ``None`` for the output stage.  ``index`` is the activation's layer index."""

    weight: sympy.Matrix
    bias: sympy.Matrix
    act: Activation | None
    index: int | None

    @property
    def n_out(self) -> int:
        return self.weight.rows


def stages(net: Network, method: str = "exact") -> list[Stage]:
    """The affine stages of a network of Dense, Flatten and activation layers (see the module docstring)."""
    n = net.n_in
    w: sympy.Matrix = sympy.eye(n)
    b: sympy.Matrix = sympy.zeros(n, 1)
    out: list[Stage] = []
    for i, layer in enumerate(net.layers):
        if isinstance(layer, Dense):
            lw, lb = layer.sympy_matrices()
            w, b = lw * w, lw * b + lb
        elif isinstance(layer, Activation):
            out.append(Stage(w, b, layer, i))
            w, b = sympy.eye(w.rows), sympy.zeros(w.rows, 1)
        elif isinstance(layer, Flatten):
            continue
        else:
            raise UnsupportedLayerError(
                f"{method}: layer {i} ({layer.describe()}) is not supported; exact constants are computed for "
                "networks of Dense, Flatten and elementwise activation layers"
            )
    out.append(Stage(w, b, None, None))
    return out


def pwl_slopes(act: Activation) -> tuple[sympy.Expr, sympy.Expr]:
    """``(left, right)``: the slopes of a piecewise-linear activation on ``z < 0`` and ``z > 0``."""
    if isinstance(act, ReLU):
        return sympy.Integer(0), sympy.Integer(1)
    if isinstance(act, LeakyReLU):
        return act._a, sympy.Integer(1)
    if isinstance(act, Identity):
        return sympy.Integer(1), sympy.Integer(1)
    raise TypeError(f"{act.describe()} is not a piecewise-linear activation")


def is_pwl(act: Activation) -> bool:
    return isinstance(act, (ReLU, LeakyReLU, Identity))


def parse_domain(domain: Any, n: int) -> tuple[list[Fraction], list[Fraction]] | None:
    """``(lower, upper)`` as exact Fractions (floats enter exactly); checks shapes and ``lower < upper``."""
    if domain is None:
        return None
    try:
        lower, upper = domain
    except (TypeError, ValueError):
        raise ValueError("domain must be a pair (lower, upper) of numbers or arrays of the input size") from None
    lo = [_fraction(v, "domain lower") for v in np.broadcast_to(np.asarray(lower, dtype=object), (n,))]
    hi = [_fraction(v, "domain upper") for v in np.broadcast_to(np.asarray(upper, dtype=object), (n,))]
    for k, (a, c) in enumerate(zip(lo, hi)):
        if not a < c:
            raise ValueError(
                f"domain: coordinate {k} has lower {a} >= upper {c}; give a box with lower < upper in every coordinate"
            )
    return lo, hi


def _fraction(v: Any, where: str) -> Fraction:
    if isinstance(v, (np.ndarray,)) and v.shape == ():
        v = v.item()
    if isinstance(v, bool):
        raise TypeError(f"{where}: {v!r} is not a number")
    if isinstance(v, sympy.Basic):
        v = sympy.nsimplify(v) if isinstance(v, sympy.Float) else v
        if not v.is_Rational:
            raise TypeError(f"{where}: {v} is not a rational number")
        return Fraction(int(v.p), int(v.q))
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            raise ValueError(f"{where}: {v} is not finite")
        return Fraction(float(v))
    if isinstance(v, (int, np.integer, Fraction)):
        return Fraction(v)
    raise TypeError(f"{where}: {v!r} is not a number")


def column_norm(col: list, norm: str) -> sympy.Expr:
    """The induced norm of an ``m x 1`` Jacobian (1-D input): l1 sum, l∞ max, l2 Euclidean."""
    col = [sympy.sympify(c) for c in col]
    if norm == "1":
        return sympy.Add(*[sympy.Abs(c) for c in col])
    if norm == "inf":
        return sympy.Max(*[sympy.Abs(c) for c in col])
    return sympy.sqrt(sympy.Add(*[c**2 for c in col]))


def rational_matrix_norm(rows: list[list[Fraction]], norm: str) -> sympy.Expr:
    """The induced ``norm`` of an exact rational matrix (list of rows) as a sympy number.

    l1: max column sum, l∞: max row sum (exact Rationals); l2: ``sqrt`` of the largest eigenvalue of the
    smaller Gram matrix, an exact algebraic number (``CRootOf``) — never ``sympy.Matrix.norm``.
    """
    m = len(rows)
    n = len(rows[0]) if m else 0
    if m == 0 or n == 0:
        return sympy.Integer(0)
    if norm == "inf":
        return _q(max(sum((abs(v) for v in r), Fraction(0)) for r in rows))
    if norm == "1":
        return _q(max(sum((abs(rows[i][j]) for i in range(m)), Fraction(0)) for j in range(n)))
    if m == 1 or n == 1:
        return sympy.sqrt(_q(sum((v * v for r in rows for v in r), Fraction(0))))
    a = sympy.Matrix([[_q(v) for v in r] for r in rows])
    gram = a * a.T if m <= n else a.T * a
    lam = sympy.Symbol("lam")
    poly = sympy.Poly(gram.charpoly(lam).as_expr(), lam)
    roots = poly.real_roots()  # sorted increasingly, exact (Rationals or CRootOf)
    return sympy.sqrt(roots[-1])


def _q(f: Fraction) -> sympy.Rational:
    return sympy.Rational(f.numerator, f.denominator)
