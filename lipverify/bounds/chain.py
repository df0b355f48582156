"""The linear chain ``W_L D_{L-1} W_{L-1} ⋯ D_1 W_1`` that every bias-free bound works on.

:func:`linear_chain` reads a network's layers: each affine layer gives a weight matrix (biases cancel in
``f(x) - f(y)``), each activation a diagonal ``D`` with entries in its slope interval.  Two activations in
a row compose (slopes multiply), two affine layers in a row get an identity activation (slopes
``[1, 1]``) between them, and a network that starts or ends with an activation gets an identity matrix
there.  A layer the FC methods cannot handle raises :class:`~lipverify.UnsupportedLayerError` naming
its index and type; nothing is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from .._lazy import LazyModule
from ..errors import LipVerifyError, UnsupportedLayerError
from ..layers import Activation, Dense, Flatten, slope_pair
from ..network import Network
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

    @property
    def is_linear(self) -> bool:
        return all(s.lo == s.hi == 1 for s in self.slopes)


def linear_chain(net: Network, method: str = "this method") -> LinearChain:
    """Extract the :class:`LinearChain` of a network made of Dense, Flatten and activation layers."""
    if net.free_symbols:
        raise LipVerifyError(
            f"{method}: the network has symbolic parameters {sorted(map(str, net.free_symbols))}; "
            "numeric bounds need numbers: use net.subs({...}) first, or lv.exact for a formula"
        )
    weights: list = []
    radii: list = []
    exact: list | None = []
    slopes: list[Slopes] = []
    pending: Slopes | None = None  # activation slopes waiting for the next affine layer
    pending_layers: list[int] = []
    slot_layers: list[tuple[int, ...]] = []
    width = net.n_in
    for i, layer in enumerate(net.layers):
        if isinstance(layer, Dense):
            if pending is None and weights:
                pending = IDENTITY_SLOPES
            if pending is not None:
                if not weights:  # the network starts with an activation
                    _append_identity(weights, radii, exact, width)
                slopes.append(pending)
                slot_layers.append(tuple(pending_layers))
                pending, pending_layers = None, []
            weights.append(layer.weight)
            radii.append(layer.weight_radius)
            if exact is not None:
                rational = layer.is_exact and all(v.is_Rational for v in layer.weight_exact)
                exact = exact + [_fractions(layer)] if rational else None
            width = layer.n_out
        elif isinstance(layer, Activation):
            s = Slopes(*slope_pair(layer), *getattr(layer, "neuron_slopes", (None, None)))
            pending = s if pending is None else pending.compose(s)
            pending_layers.append(i)
        elif isinstance(layer, Flatten):
            continue
        else:
            raise UnsupportedLayerError(
                f"{method}: layer {i} ({layer.describe()}) is not supported: {method} handles fully connected "
                "networks only; for CNNs use kstar, k1, k2, k3 or k4 (conv='implicit' or conv='explicit')"
            )
    if not weights:
        _append_identity(weights, radii, exact, width)
    if pending is not None:
        slopes.append(pending)
        slot_layers.append(tuple(pending_layers))
        _append_identity(weights, radii, exact, width)
    return LinearChain(tuple(weights), tuple(radii), tuple(slopes), None if exact is None else tuple(exact),
                       tuple(slot_layers))


def _append_identity(weights: list, radii: list, exact: list | None, n: int) -> None:
    weights.append(sp.identity(n, format="csr", dtype=np.float64) if n > 64 else np.eye(n))
    radii.append(None)
    if exact is not None:
        exact.append(np.array([[Fraction(int(i == j)) for j in range(n)] for i in range(n)], dtype=object))


def _fractions(layer: Dense) -> np.ndarray:
    w = layer.weight_exact
    out = np.empty(w.shape, dtype=object)
    for i in range(w.rows):
        for j in range(w.cols):
            v = w[i, j]
            out[i, j] = Fraction(int(v.p), int(v.q))
    return out


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
