"""Local Lipschitz bounds on an input box, and certified robustness radii (proof: ``proofs/local.md``).

Interval bound propagation (rigorous, outward rounded) gives every activation input an interval on the
box (each activation's declared ``range_on`` maps an input interval to an enclosure of its image); on it each
activation's slopes narrow by its declared ``narrow_slopes`` (a ReLU that is always inactive has slopes ``[0, 0]``,
always active ``[1, 1]``; tanh and sigmoid narrow by monotonicity of ``|σ'|`` in ``|z|``).  :func:`localize`
returns the same network with every activation wrapped in :class:`LocalActivation` carrying the
narrowed per-neuron slopes, so every bound method run on it bounds the Lipschitz constant on the box.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ._lazy import LazyModule
from .errors import NotApplicableError, ShapeError
from .layers import Activation, Dense, Flatten
from .network import Network
from .rigorous import Interval, down, up

if TYPE_CHECKING:
    import sympy
else:
    sympy = LazyModule("sympy")


@dataclass(frozen=True, eq=False)
class LocalActivation(Activation):
    """An activation restricted to an input box: per-neuron slopes ``[lo_i, hi_i]`` inside the base's."""

    base: Activation
    lo: np.ndarray
    hi: np.ndarray
    kind: ClassVar[str] = "LocalActivation"
    #: its slopes hold on the box only, not on the whole line: the construction check does not apply
    check_on_construction: ClassVar[bool] = False

    @property
    def slopes(self):
        return tuple(sympy.Rational(v.numerator, v.denominator) for v in self._slope_fractions())

    def _slope_fractions(self) -> tuple[Fraction, Fraction]:
        """``slopes`` as Fractions (read by :func:`~lipverify.layers.slope_pair`: float bounds need no sympy)."""
        return Fraction(float(np.min(self.lo))), Fraction(float(np.max(self.hi)))

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

    def forward_error(self, x):
        return self.base.forward_error(x)

    def derivative_error(self, x):
        return self.base.derivative_error(x)

    def range_on(self, lo, hi):
        return self.base.range_on(lo, hi)

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


def localize(net: Network, domain: Any) -> Network:
    """The network with every activation narrowed to its slopes on the box ``domain = (lower, upper)`` (inside
    residual blocks too)."""
    lo, hi = _parse_box(net, domain)
    _, layers = _propagate(net.layers, Interval.from_bounds(lo[:, None], hi[:, None]), "local bounds: ")
    return Network(layers, input_shape=net.input_shape)


def output_enclosure(net: Network, domain: Any) -> tuple[np.ndarray, np.ndarray]:
    """Rigorous bounds ``(lower, upper)`` of the outputs of a fully connected (or residual) network on the box."""
    lo, hi = _parse_box(net, domain)
    x, _ = _propagate(net.layers, Interval.from_bounds(lo[:, None], hi[:, None]), "output enclosure: ")
    out_lo, out_hi = x.bounds()
    return out_lo[:, 0], out_hi[:, 0]


def _propagate(layers, x: Interval, where: str) -> tuple[Interval, list]:
    """Interval bound propagation of the column enclosure ``x`` through ``layers``; returns the output enclosure and
    the layers with every activation narrowed to its slopes on the enclosure of its input."""
    from .residual import Residual

    out: list = []
    for i, layer in enumerate(layers):
        if isinstance(layer, Dense):
            x = x.left_matmul(layer.weight, layer.weight_radius)
            bias = layer.bias[:, None]
            b_rad = np.zeros_like(bias) if layer.bias_radius is None else layer.bias_radius[:, None]
            z_lo, z_hi = x.bounds()
            x = Interval.from_bounds(down(down(z_lo + bias) - b_rad), up(up(z_hi + bias) + b_rad))  # one rounding each
            out.append(layer)
        elif isinstance(layer, Activation):
            z_lo, z_hi = x.bounds()
            a, b = layer.narrow_slopes(z_lo[:, 0], z_hi[:, 0])
            out.append(LocalActivation(layer, a, b))
            x = Interval.from_bounds(*layer.range_on(z_lo, z_hi))
        elif isinstance(layer, Flatten):
            out.append(layer)
        elif isinstance(layer, Residual):  # the sum of the branches' enclosures (proofs/residual.md)
            inner = f"{where}layer {i} (Residual) "
            yb, body = _propagate(layer.body, x, inner + "body: ")
            ys, short = _propagate(layer.shortcut, x, inner + "shortcut: ") if layer.shortcut else (x, None)
            (b_lo, b_hi), (s_lo, s_hi) = yb.bounds(), ys.bounds()
            x = Interval.from_bounds(down(b_lo + s_lo), up(b_hi + s_hi))
            out.append(Residual(body, short))
        else:
            raise NotApplicableError(
                f"{where}layer {i} ({layer.describe()}) has no interval propagation yet; "
                "local bounds are implemented for fully connected and residual fully connected networks"
            )
    return x, out


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
    from .result import OUTWARD, Bound

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
    # kind "lower" of the robustness radius (not of the Lipschitz constant): details["quantity"] says so
    return Bound.lower_bound(best, p, f"certified_radius:{method}", rounding=OUTWARD, seconds=time.perf_counter() - started,
                             assumptions=(f"class {y}", "local" if radius is not None else "global"),
                             details={"label": y, "radius": radius, "quantity": "robustness radius"})
