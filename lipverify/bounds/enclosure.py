"""Interval enclosures of ``{W_L D_{L-1} ⋯ D_1 W_1[:, cols] : D_l diagonal, alpha_l <= D_l <= beta_l}``.

The enclosure is propagated forward from the input columns ``cols``: an interval matrix is scaled row
by row by the slope interval of each activation (exact interval products) and multiplied on the left by
the next weight matrix (exact for a point matrix times an interval matrix).  For slopes ``[0, 1]`` the
upper and lower ends are the ``P`` and ``-N`` matrices of the K4 recursion (``proofs/k4.md``).
Slopes may be given per neuron, which :mod:`lipverify.bounds.k2` uses to fix activation patterns.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from ..rigorous import Interval
from .chain import LinearChain, to_fraction


def layer_slopes(chain: LinearChain) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-neuron float slope arrays (rounded outward) for every activation of the chain."""
    alphas, betas = [], []
    for l, s in enumerate(chain.slopes):
        a, b = s.per_neuron(chain.weights[l].shape[0])
        alphas.append(a.copy())
        betas.append(b.copy())
    return alphas, betas


def enclose(chain: LinearChain, cols: np.ndarray | slice, alphas: Sequence[np.ndarray] | None = None,
            betas: Sequence[np.ndarray] | None = None) -> Interval:
    """Rigorous float enclosure (``n_out x len(cols)``) of the chain's products restricted to ``cols``."""
    if alphas is None or betas is None:
        alphas, betas = layer_slopes(chain)
    w0 = chain.weights[0]
    w0 = w0[:, cols]
    w0 = w0.toarray() if hasattr(w0, "toarray") else np.asarray(w0)
    r0 = chain.radii[0]
    x = Interval.point(w0, None if r0 is None else r0[:, cols])
    for l in range(1, chain.depth):
        x = x.scale_rows(alphas[l - 1], betas[l - 1])
        x = x.left_matmul(chain.weights[l], chain.radii[l])
    return x


def enclose_exact(chain: LinearChain) -> tuple[np.ndarray, np.ndarray]:
    """The same enclosure in exact ``Fraction`` arithmetic: ``(lo, hi)`` object matrices."""
    lo = hi = chain.exact[0]
    for l in range(1, chain.depth):
        s = chain.slopes[l - 1]
        a, b = to_fraction(s.lo), to_fraction(s.hi)
        cands = (a * lo, a * hi, b * lo, b * hi)
        lo, hi = np.minimum.reduce(cands), np.maximum.reduce(cands)
        w = chain.exact[l]
        wp = np.maximum(w, Fraction(0))
        wm = np.maximum(-w, Fraction(0))
        lo, hi = wp @ lo - wm @ hi, wp @ hi - wm @ lo
    return lo, hi
