"""Slope intervals and the matrix view ``W_L D_{L-1} W_{L-1} ⋯ D_1 W_1`` of a chain of linear steps.

:class:`Slopes` is the slope interval of an activation step of the graph (:mod:`lipverify.ir.graph`).
:class:`LinearChain` is the matrix view the methods that need layer matrices work on (K1, K2, kcp, LipSDP,
KSDP, the lower bound's candidates); :func:`lipverify.ir.views.linear_chain` derives it from the graph:
two activations in a row compose (slopes multiply), two linear steps in a row get an identity activation
(slopes ``[1, 1]``) between them, and a chain that starts or ends with an activation gets an identity
matrix there.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from .._lazy import LazyModule
from ..result import float_down, float_up
from ..rigorous import interval_product

if TYPE_CHECKING:
    import sympy
else:
    sympy = LazyModule("sympy")


@dataclass(frozen=True, eq=False)
class Slopes:
    """The slope interval ``[alpha, beta]`` of one activation layer, exact and rounded outward.

    ``lo``/``hi`` are exact: ``Fraction`` for rational ends (:func:`~lipverify.layers.slope_pair`), sympy numbers
    otherwise.  ``neuron_lo``/``neuron_hi`` optionally narrow it per neuron (float arrays, rounded outward, inside
    ``[lo, hi]``), as local bounds on an input box do; methods that ignore them use the layer interval.
    """

    lo: Fraction | sympy.Expr
    hi: Fraction | sympy.Expr
    neuron_lo: np.ndarray | None = None
    neuron_hi: np.ndarray | None = None

    @property
    def lo_float(self) -> float:
        return float_down(self.lo)

    @property
    def hi_float(self) -> float:
        return float_up(self.hi)

    @property
    def magnitude(self) -> sympy.Rational:
        """``max(|alpha|, |beta|)``: an upper bound of ``||D||_p`` for every norm."""
        return max(abs(self.lo), abs(self.hi))

    @property
    def center(self) -> sympy.Rational:
        return (self.lo + self.hi) / 2

    @property
    def half_width(self) -> sympy.Rational:
        return (self.hi - self.lo) / 2

    def per_neuron(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Float arrays ``(alpha, beta)`` for ``n`` neurons."""
        if self.neuron_lo is not None:
            return self.neuron_lo, self.neuron_hi
        return np.full(n, self.lo_float), np.full(n, self.hi_float)

    def compose(self, other: Slopes) -> Slopes:
        """Slopes of applying ``self`` then ``other``: the products ``d2 d1`` lie in this interval."""
        prods = [a * b for a in (self.lo, self.hi) for b in (other.lo, other.hi)]
        if self.neuron_lo is None and other.neuron_lo is None:
            return Slopes(min(prods), max(prods))
        n = len(self.neuron_lo if self.neuron_lo is not None else other.neuron_lo)
        lo, hi = interval_product(self.per_neuron(n), other.per_neuron(n))
        return Slopes(min(prods), max(prods), lo, hi)


IDENTITY_SLOPES = Slopes(Fraction(1), Fraction(1))


@dataclass(frozen=True)
class LinearChain:
    """``weights[l]`` is ``W_{l+1}`` (float, dense or scipy sparse); ``slopes[l]`` sits between
    ``weights[l]`` and ``weights[l+1]``.  ``radii[l]`` bounds ``|W_exact - W_float|`` entrywise (or is
    ``None``); ``exact`` holds the weights as ``Fraction`` object arrays when all were given exactly.
    """

    weights: tuple
    radii: tuple
    slopes: tuple[Slopes, ...]
    exact: tuple | None
    #: for each slope slot, the indices (in ``net.layers``) of the activations composed into it
    slot_layers: tuple[tuple[int, ...], ...] = ()

    @property
    def depth(self) -> int:
        return len(self.weights)

    @property
    def n_in(self) -> int:
        return self.weights[0].shape[1]

    @property
    def n_out(self) -> int:
        return self.weights[-1].shape[0]

    @property
    def widths(self) -> tuple[int, ...]:
        return (self.n_in,) + tuple(w.shape[0] for w in self.weights)

    def transpose(self) -> LinearChain:
        """The chain of ``M^T = W_1^T D_1 ⋯ D_{L-1} W_L^T``: the same bound problems with l1 and l∞ swapped."""
        return LinearChain(
            tuple(w.T for w in reversed(self.weights)),
            tuple(None if r is None else r.T for r in reversed(self.radii)),
            tuple(reversed(self.slopes)),
            None if self.exact is None else tuple(w.T for w in reversed(self.exact)),
            tuple(reversed(self.slot_layers)),
        )

    def layer_slopes(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per-neuron float slope arrays (rounded outward, fresh copies) for every activation slot."""
        alphas, betas = [], []
        for l, s in enumerate(self.slopes):
            a, b = s.per_neuron(self.weights[l].shape[0])
            alphas.append(np.array(a, dtype=np.float64))
            betas.append(np.array(b, dtype=np.float64))
        return alphas, betas

    @property
    def is_linear(self) -> bool:
        return all(s.lo == s.hi == 1 for s in self.slopes)


def fraction_identity(n: int) -> np.ndarray:
    """The ``n x n`` identity as a ``Fraction`` object matrix."""
    return np.array([[Fraction(int(i == j)) for j in range(n)] for i in range(n)], dtype=object)


def to_fraction(x: Fraction | int | sympy.Rational) -> Fraction:
    if isinstance(x, (Fraction, int)):
        return Fraction(x)
    x = sympy.Rational(x)
    return Fraction(int(x.p), int(x.q))


def exact_norm(m: np.ndarray, norm: str) -> Fraction:
    """The induced l1 or l∞ norm of a ``Fraction`` object matrix, exactly."""
    a = np.abs(m)
    if norm == "inf":
        return max(sum(row, Fraction(0)) for row in a)
    if norm == "1":
        return max(sum(col, Fraction(0)) for col in a.T)
    raise ValueError("exact norms are computed for l1 and l∞ only")


#: exact (Fraction) arithmetic is used up to this many multiply-adds per bound
EXACT_WORK_LIMIT = 2_000_000


def exact_work(chain: LinearChain) -> int:
    w = chain.widths
    return sum(w[i] * w[i + 1] * max(w[0], w[-1]) for i in range(len(w) - 1))
