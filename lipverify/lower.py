"""Lower bounds of the Lipschitz constant from Jacobians at sampled points (``kind="lower"``)."""

from __future__ import annotations

import time

import numpy as np

from .network import Network
from .norms import NormLike, parse_norm
from .result import Bound


def jacobian_norm(jac: np.ndarray, norm: str) -> np.ndarray:
    """Induced norms of a batch of Jacobians ``(N, n_out, n_in)``."""
    if norm == "inf":
        return np.abs(jac).sum(axis=2).max(axis=1)
    if norm == "1":
        return np.abs(jac).sum(axis=1).max(axis=1)
    return np.linalg.norm(jac, ord=2, axis=(1, 2))


def lower_bound(net: Network, norm: NormLike = 2, *, samples: int = 256, steps: int = 50, radius: float = 1.0,
                seed: int = 0, domain: tuple | None = None) -> Bound:
    """``max ||J(x)||_p`` over random points and a gradient-ascent refinement: a valid **lower** bound.

    Every ``J(x)`` is the Jacobian of a differentiable piece (or a Clarke generalized Jacobian element at a
    kink), whose norm never exceeds the Lipschitz constant.  The value is rounded down by ``1e-12`` relative
    to cover the rounding of the Jacobian.  Points are drawn uniformly from ``domain`` (a pair of arrays)
    or from ``[-radius, radius]^n``.
    """
    started = time.perf_counter()
    p = parse_norm(norm)
    rng = np.random.default_rng(seed)
    shape = net.input_shape
    if domain is not None:
        lo = np.broadcast_to(np.asarray(domain[0], dtype=np.float64), shape)
        hi = np.broadcast_to(np.asarray(domain[1], dtype=np.float64), shape)
    else:
        lo, hi = np.full(shape, -radius), np.full(shape, radius)
    x = rng.uniform(lo, hi, size=(samples, *shape))
    vals = jacobian_norm(net.jacobian(x), p)
    best = float(np.max(vals))
    # gradient-free ascent: random-direction hill climbing from the best few points (works for kinks)
    top = x[np.argsort(vals)[-min(8, samples):]]
    step = 0.25 * float(np.max(hi - lo)) if np.max(hi - lo) > 0 else 0.0
    for _ in range(steps):
        cand = np.clip(top + step * rng.standard_normal(top.shape), lo, hi)
        cv = jacobian_norm(net.jacobian(cand), p)
        tv = jacobian_norm(net.jacobian(top), p)
        better = cv > tv
        top[better] = cand[better]
        best = max(best, float(np.max(cv)))
        step *= 0.9
    if not np.isfinite(best):
        raise ArithmeticError("lower_bound: a Jacobian norm was not finite")
    value = best * (1 - 1e-12)
    return Bound(value, p, "lower_bound", "lower", time.perf_counter() - started,
                 assumptions=(f"{samples} samples, {steps} hill-climbing steps, seed {seed}",))
