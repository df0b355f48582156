"""Local Lipschitz bounds on an input box, and certified robustness radii (proof: ``proofs/local.md``).

Interval bound propagation (rigorous, outward rounded) gives every activation input an interval on the
box; on it each activation's slopes narrow (a ReLU that is always inactive has slopes ``[0, 0]``, always
active ``[1, 1]``; tanh and sigmoid narrow by monotonicity of ``|σ'|`` in ``|z|``).  :func:`localize`
returns the same network with every activation wrapped in :class:`LocalActivation` carrying the
narrowed per-neuron slopes, so every bound method run on it bounds the Lipschitz constant on the box.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import sympy

from .errors import NotApplicableError, ShapeError
from .layers import GELU, Activation, Dense, Flatten, Identity, LeakyReLU, ReLU, Sigmoid, SiLU, Tanh
from .network import Network
from .rigorous import ETA, Interval, down, up

#: relative accuracy assumed for numpy's tanh/exp (a few ulps in practice)
LIBM_REL = 1e-13


@dataclass(frozen=True, eq=False)
class LocalActivation(Activation):
    """An activation restricted to an input box: per-neuron slopes ``[lo_i, hi_i]`` inside the base's."""

    base: Activation
    lo: np.ndarray
    hi: np.ndarray
    kind: ClassVar[str] = "LocalActivation"

    @property
    def slopes(self):
        return sympy.Rational(float(np.min(self.lo))), sympy.Rational(float(np.max(self.hi)))

    @property
    def neuron_slopes(self) -> tuple[np.ndarray, np.ndarray]:
        return self.lo, self.hi

    @property
    def is_piecewise_linear(self) -> bool:
        return self.base.is_piecewise_linear

    @property
    def curvature(self) -> float:  # type: ignore[override]
        return self.base.curvature

    def forward(self, x):
        return self.base.forward(x)

    def derivative(self, x):
        return self.base.derivative(x)

    def sympy_apply(self, expr):
        return self.base.sympy_apply(expr)

    def describe(self) -> str:
        return f"{self.base.describe()} (on a box)"


def _parse_box(net: Network, domain: Any) -> tuple[np.ndarray, np.ndarray]:
    try:
        lower, upper = domain
    except (TypeError, ValueError):
        raise ValueError("domain must be a pair (lower, upper) of arrays of the input shape") from None
    lo = np.broadcast_to(np.asarray(lower, dtype=np.float64), net.input_shape).ravel()
    hi = np.broadcast_to(np.asarray(upper, dtype=np.float64), net.input_shape).ravel()
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise ValueError("domain: the box must have finite bounds")
    if np.any(lo > hi):
        i = int(np.argmax(lo > hi))
        raise ShapeError(f"domain: lower[{i}] = {lo[i]} exceeds upper[{i}] = {hi[i]}")
    return lo, hi


def _activation_range(act: Activation, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An enclosure of ``σ([lo, hi])`` (elementwise), rounded outward."""
    if isinstance(act, (ReLU, LeakyReLU, Identity, Tanh, Sigmoid)):  # nondecreasing
        a, b = act.forward(lo), act.forward(hi)
    elif isinstance(act, (GELU, SiLU)):  # decreasing then increasing, minimum at x*
        x_star, f_min = (-0.7517916, -0.17) if isinstance(act, GELU) else (-1.2784645, -0.2785)
        a = np.minimum(act.forward(lo), act.forward(hi))
        a = np.where((lo <= x_star + 1e-6) & (hi >= x_star - 1e-6), f_min, a)
        b = np.maximum(act.forward(lo), act.forward(hi))
    else:
        raise NotApplicableError(f"local bounds: no interval rule for {act.describe()}")
    margin_a = LIBM_REL * np.abs(a) + ETA
    margin_b = LIBM_REL * np.abs(b) + ETA
    return down(a - margin_a), up(b + margin_b)


def _narrow(act: Activation, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-neuron slope intervals of ``act`` on inputs in ``[lo, hi]`` (floats, rounded outward)."""
    s_lo, s_hi = act.slope_interval
    if isinstance(act, (ReLU, LeakyReLU)):
        neg = float(act.slopes[0]) if isinstance(act, ReLU) else None
        if isinstance(act, LeakyReLU):
            a = act.slopes[0] if act.slopes[0] != 1 else act.slopes[1]  # the negative-side slope
            neg_lo = float(down(float(a)))
            neg_hi = float(up(float(a)))
        else:
            neg_lo = neg_hi = neg
        alpha = np.full(lo.shape, s_lo)
        beta = np.full(lo.shape, s_hi)
        active = lo >= 0
        inactive = hi <= 0
        alpha[active] = beta[active] = 1.0
        alpha[inactive], beta[inactive] = neg_lo, neg_hi
        return np.maximum(alpha, s_lo), np.minimum(beta, s_hi)
    if isinstance(act, (Tanh, Sigmoid)):
        # σ' is even and decreasing in |z|: extremes at the nearest and the farthest point from 0
        near = np.where((lo <= 0) & (hi >= 0), 0.0, np.minimum(np.abs(lo), np.abs(hi)))
        far = np.maximum(np.abs(lo), np.abs(hi))
        d_near, d_far = act.derivative(near), act.derivative(far)
        alpha = np.maximum(down(d_far - LIBM_REL * (1 + far) - ETA), s_lo)
        beta = np.minimum(up(d_near + LIBM_REL * (1 + near) + ETA), s_hi)
        return alpha, np.maximum(beta, alpha)
    return np.full(lo.shape, s_lo), np.full(lo.shape, s_hi)


def localize(net: Network, domain: Any) -> Network:
    """The network with every activation narrowed to its slopes on the box ``domain = (lower, upper)``."""
    lo, hi = _parse_box(net, domain)
    x = Interval.from_bounds(lo[:, None], hi[:, None])
    layers = []
    for i, layer in enumerate(net.layers):
        if isinstance(layer, Dense):
            x = x.left_matmul(layer.weight, layer.weight_radius)
            bias = layer.bias[:, None]
            b_rad = np.zeros_like(bias) if layer.bias_radius is None else layer.bias_radius[:, None]
            z_lo, z_hi = x.bounds()
            x = Interval.from_bounds(down(z_lo + bias - b_rad), up(z_hi + bias + b_rad))
            layers.append(layer)
        elif isinstance(layer, Activation):
            z_lo, z_hi = x.bounds()
            a, b = _narrow(layer, z_lo[:, 0], z_hi[:, 0])
            layers.append(LocalActivation(layer, a, b))
            out_lo, out_hi = _activation_range(layer, z_lo, z_hi)
            x = Interval.from_bounds(out_lo, out_hi)
        elif isinstance(layer, Flatten):
            layers.append(layer)
        else:
            raise NotApplicableError(
                f"local bounds: layer {i} ({layer.describe()}) has no interval propagation yet; "
                "local bounds are implemented for fully connected networks"
            )
    return Network(layers, input_shape=net.input_shape)


def output_enclosure(net: Network, domain: Any) -> tuple[np.ndarray, np.ndarray]:
    """Rigorous bounds ``(lower, upper)`` of the outputs of a fully connected network on the box."""
    lo, hi = _parse_box(net, domain)
    x = Interval.from_bounds(lo[:, None], hi[:, None])
    for i, layer in enumerate(net.layers):
        if isinstance(layer, Dense):
            x = x.left_matmul(layer.weight, layer.weight_radius)
            b_rad = np.zeros(layer.n_out) if layer.bias_radius is None else layer.bias_radius
            z_lo, z_hi = x.bounds()
            x = Interval.from_bounds(down(z_lo + (layer.bias - b_rad)[:, None]),
                                     up(z_hi + (layer.bias + b_rad)[:, None]))
        elif isinstance(layer, Activation):
            z_lo, z_hi = x.bounds()
            x = Interval.from_bounds(*_activation_range(layer, z_lo, z_hi))
        elif not isinstance(layer, Flatten):
            raise NotApplicableError(f"output enclosure: layer {i} ({layer.describe()}) is not supported")
    out_lo, out_hi = x.bounds()
    return out_lo[:, 0], out_hi[:, 0]


def certified_radius(net: Network, x: Any, norm: Any = "inf", *, label: int | None = None, method: str | None = None,
                     radius: float | None = None, **options) -> Any:
    """A radius ``r`` such that every input within ``||x' - x||_p <= r`` keeps the predicted class (a **lower**
    bound of the robustness radius).

    For each other class ``j`` the margin ``m_j = f_y(x) - f_j(x)`` is bounded below rigorously, and the
    scalar network ``f_y - f_j`` gets a certified Lipschitz bound ``L_j`` (``method``, in the p-norm of the
    input; default ``k4`` for l1/l∞ and ``k1`` for l2); ``r = min_j m_j / L_j``.  With ``radius=r0`` the
    Lipschitz bounds are local, on the box ``x ± r0`` (which contains the p-ball of radius ``r0``), and
    ``r <= r0``.  Proof: ``proofs/local.md``.
    """
    import time

    from .bounds import bound
    from .norms import parse_norm
    from .result import Bound

    started = time.perf_counter()
    p = parse_norm(norm)
    method = method or ("k1" if p == "2" else "k4")
    x = np.asarray(x, dtype=np.float64)
    if x.shape != net.input_shape:
        raise ShapeError(f"certified_radius: x has shape {x.shape}, the network expects {net.input_shape}")
    if net.n_out < 2:
        raise ValueError("certified_radius needs a classifier with at least two outputs")
    out_lo, out_hi = output_enclosure(net, (x, x))
    y = int(np.argmax(net(x))) if label is None else int(label)
    domain = None if radius is None else (x - radius, x + radius)
    best = np.inf
    for j in range(net.n_out):
        if j == y:
            continue
        margin = float(down(out_lo[y] - out_hi[j]))
        if margin <= 0:
            best = 0.0
            break
        row = np.zeros((1, net.n_out))
        row[0, y], row[0, j] = 1.0, -1.0
        diff = Network([*net.layers, Dense(row)], input_shape=net.input_shape)
        lip = float(bound(diff, method, norm=p, domain=domain, **options).value)
        best = min(best, float(down(margin / lip)) if lip > 0 else np.inf)
    if radius is not None:
        best = min(best, float(radius))
    if not np.isfinite(best):
        raise ValueError("certified_radius: every margin is unbounded (a constant network); give radius=")
    return Bound(best, p, f"certified_radius:{method}", "lower", time.perf_counter() - started,
                 assumptions=(f"class {y}", "local" if radius is not None else "global"),
                 details={"label": y, "radius": radius})
