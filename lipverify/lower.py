"""Lower bounds of the Lipschitz constant from Jacobians at sampled points (``kind="lower"``).

Proof: ``proofs/lower_bound.md``.  At a point ``x`` where ``f`` is differentiable, ``||J(x)||_p <= Lip_p(f)``.
For fully connected networks the reported value is *certified*: the point is kept only when every
piecewise-linear activation input is provably away from its kink (so ``f`` is differentiable there), and
``||J(x)||_p`` is bounded below through a rigorous interval enclosure of ``J(x)`` built from a running
error analysis of the forward pass.  For other networks (CNNs) the float Jacobian norm is used with the
same kink test done approximately and a relative margin, which the result's assumptions state.
"""

from __future__ import annotations

import time

import numpy as np

from .bounds.chain import linear_chain
from .bounds.enclosure import enclose
from .errors import NumericalError, UnsupportedLayerError
from .layers import LIBM_REL, Activation, Dense, Flatten  # noqa: F401  (LIBM_REL: defined once, in layers.py)
from .network import Network
from .norms import NormLike, parse_norm
from .result import Bound
from .rigorous import ETA, add_up, down, gamma_up, interval_product, matmul_up, spectral_norm_lower, sum_down, up

#: how many of the best points are tried for certification
CANDIDATES = 16


def jacobian_norm(jac: np.ndarray, norm: str) -> np.ndarray:
    """Induced norms of a batch of Jacobians ``(N, n_out, n_in)`` (floating point, not certified)."""
    if norm == "inf":
        return np.abs(jac).sum(axis=2).max(axis=1)
    if norm == "1":
        return np.abs(jac).sum(axis=1).max(axis=1)
    return np.linalg.norm(jac, ord=2, axis=(1, 2))


def _forward_with_errors(net: Network, x: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Float inputs ``z`` of every activation layer (by layer index) with rigorous bounds ``|z - z_exact|``.

    Dense: ``|fl(Wh + b) - (W_exact h_exact + b_exact)| <= gamma_{n+1}(|W||h| + |b|) + |W| e + r (|h| + e) + rb``;
    activations: ``e_out <= max(|alpha|, |beta|) e_in + forward_error(z)`` (the activation's declared, proven bound of
    its own evaluation error at the float input; ``proofs/activations.md`` §2).
    """
    h = np.asarray(x, dtype=np.float64).ravel()
    err = np.zeros_like(h)
    records = {}
    for i, layer in enumerate(net.layers):
        if isinstance(layer, Dense):
            w, b = layer.weight, layer.bias
            absw = np.abs(w)
            z = w @ h + b
            e = add_up(
                gamma_up(w.shape[1] + 1) * add_up(matmul_up(absw, np.abs(h)[:, None])[:, 0], np.abs(b)),
                matmul_up(absw, err[:, None])[:, 0],
                np.full_like(z, 4.0 * (w.shape[1] + 2) * ETA),
            )
            if layer.weight_radius is not None:
                e = add_up(e, matmul_up(layer.weight_radius, add_up(np.abs(h), err)[:, None])[:, 0])
            if layer.bias_radius is not None:
                e = add_up(e, layer.bias_radius)
            h, err = z, up(e)
        elif isinstance(layer, Activation):
            records[i] = (h, err)
            lo, hi = layer.slope_interval
            out = layer.forward(h)
            own = np.asarray(layer.forward_error(h), dtype=np.float64)
            err = add_up(up(max(abs(lo), abs(hi)) * err), own)
            if not np.all(np.isfinite(err)):
                raise NumericalError(f"layer {i} ({layer.describe()}): the forward error bound is not finite")
            h = out
        elif isinstance(layer, Flatten):
            continue
        else:
            raise UnsupportedLayerError(f"layer {i} ({layer.describe()}): no certified forward pass")
    return records


def _derivative_interval(layer: Activation, z: np.ndarray, ez: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """An interval containing ``σ'(z_exact)``, or ``None`` when ``z`` may sit on a kink.

    ``|σ'(z_exact) - fl σ'(z)| <= |σ'(z_exact) - σ'(z)| + |σ'(z) - fl σ'(z)| <= κ ez + derivative_error(z)`` with
    ``κ >= sup |σ''|`` (``curvature``; 0 for piecewise-linear activations, which are linear on the side of ``z``)."""
    d = layer.derivative(z)
    own = np.asarray(layer.derivative_error(z), dtype=np.float64)
    if layer.is_piecewise_linear:
        if np.any(np.abs(z) <= ez):
            return None
        spread = own
    else:
        spread = add_up(up(layer.curvature * ez), own)
    if not np.all(np.isfinite(spread)):
        return None
    return down(down(d) - spread), up(up(d) + spread)


def certified_jacobian_norm(net: Network, x: np.ndarray, norm: str) -> float | None:
    """A rigorous lower bound of ``||J(x)||_p`` for a fully connected network, or ``None`` when ``x`` may lie
    on a kink (where ``f`` need not be differentiable)."""
    chain = linear_chain(net, "lower_bound")
    records = _forward_with_errors(net, x)
    alphas, betas = [], []
    for slot, layers in enumerate(chain.slot_layers):
        n = chain.weights[slot].shape[0]
        interval = (np.ones(n), np.ones(n))
        for i in layers:
            z, ez = records[i]
            d = _derivative_interval(net.layers[i], z, ez)
            if d is None:
                return None
            interval = interval_product(interval, d)
        alphas.append(interval[0])
        betas.append(interval[1])
    enc = enclose(chain, slice(None), alphas, betas)
    low = np.maximum(down(np.abs(enc.mid) - enc.rad), 0.0)
    if norm == "inf":
        return float(np.max(sum_down(low, axis=1)))
    if norm == "1":
        return float(np.max(sum_down(low, axis=0)))
    # ||M v|| / ||v|| rounded down for every M in the enclosure (R12 of proofs/rigorous_arithmetic.md)
    return spectral_norm_lower(enc.mid, enc.rad)


def lower_bound(net: Network, norm: NormLike = 2, *, samples: int = 256, steps: int = 50, radius: float = 1.0,
                seed: int = 0, domain: tuple | None = None) -> Bound:
    """``max ||J(x)||_p`` over random points and a hill-climbing refinement: a valid **lower** bound.

    Points are drawn uniformly from ``domain`` (a pair of arrays) or from ``[-radius, radius]^n``.  For fully
    connected networks the best points are certified (see the module docstring and ``proofs/lower_bound.md``);
    a point that may lie on a kink is discarded.
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
    # hill climbing from the best few points (random directions: works across kinks)
    top = x[np.argsort(vals)[-min(8, samples):]].copy()
    top_vals = jacobian_norm(net.jacobian(top), p)
    step = 0.25 * float(np.max(hi - lo)) if np.max(hi - lo) > 0 else 0.0
    pool, pool_vals = [x], [vals]
    for _ in range(steps):
        cand = np.clip(top + step * rng.standard_normal(top.shape), lo, hi)
        cv = jacobian_norm(net.jacobian(cand), p)
        better = cv > top_vals
        top[better], top_vals[better] = cand[better], cv[better]
        pool.append(cand)
        pool_vals.append(cv)
        step *= 0.9
    points = np.concatenate(pool)
    values = np.concatenate(pool_vals)
    if not np.all(np.isfinite(values)):
        raise NumericalError("lower_bound: a Jacobian norm was not finite")
    order = np.argsort(values)[::-1]
    try:
        linear_chain(net, "lower_bound")
        certified = True
    except UnsupportedLayerError:
        certified = False
    best, tried = 0.0, 0
    if certified:
        for idx in order:
            if values[idx] <= best or tried >= CANDIDATES:
                break
            tried += 1
            v = certified_jacobian_norm(net, points[idx], p)
            if v is not None:
                best = max(best, v)
        note = f"certified at the best point of {len(values)} ({samples} samples, {steps} hill-climbing steps, seed {seed})"
    else:
        best = float(values[order[0]]) * (1 - 1e-6)
        note = (f"float Jacobian norm minus 1e-6 relative, not certified against rounding or kinks "
                f"({samples} samples, {steps} steps, seed {seed})")
    return Bound(best, p, "lower_bound", "lower", time.perf_counter() - started, assumptions=(note,))
