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
from .errors import ShapeError
from .ir.graph import lower
from .layers import Activation, Dense
from .network import Network
from .relax import Backward, check_relaxation, piece_slopes
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


def localize(net: Network, domain: Any, relaxation: str = "crown", *, report: dict | None = None) -> Network:
    """The network with every activation narrowed to its slopes on the box ``domain = (lower, upper)`` (dense,
    convolutional and residual networks; ``proofs/local.md``).  The activation inputs are bounded by interval
    propagation intersected, with ``relaxation="crown"`` (the default), with a backward linear relaxation
    (:mod:`lipverify.relax`, within its work limit ``relax.CROWN_WORK``); ``relaxation="interval"``: interval
    propagation only.  ``report`` (a dict) receives ``"cut"``: True when the work limit left some neurons with their
    interval bounds."""
    check_relaxation(relaxation)
    lo, hi = _parse_box(net, domain)
    narrowed: list = []
    crown = Backward(lo, hi) if relaxation == "crown" else None
    _propagate(lower(net, "implicit", "local bounds").steps, lo, hi, narrowed, relaxation, backward=crown)
    if report is not None:
        report["cut"] = crown is not None and crown.cut
    return Network(_rebuild(net.layers, iter(narrowed)), input_shape=net.input_shape)


def activation_bounds(net: Network, domain: Any, relaxation: str = "crown") -> list[tuple[np.ndarray, np.ndarray]]:
    """Rigorous bounds ``(lower, upper)`` (flat) of the input of every activation layer on the box, in the order of
    the layers (residual blocks: the body's, then the shortcut's); ``relaxation`` as in :func:`localize`."""
    check_relaxation(relaxation)
    lo, hi = _parse_box(net, domain)
    inputs: list = []
    _propagate(lower(net, "implicit", "activation bounds").steps, lo, hi, None, relaxation, inputs=inputs)
    return inputs


def output_enclosure(net: Network, domain: Any, relaxation: str = "crown") -> tuple[np.ndarray, np.ndarray]:
    """Rigorous bounds ``(lower, upper)`` of the outputs of the network on the box (``relaxation`` as in
    :func:`localize`; with ``"crown"`` the outputs are tightened too)."""
    check_relaxation(relaxation)
    lo, hi = _parse_box(net, domain)
    return _propagate(lower(net, "implicit", "output enclosure").steps, lo, hi, None, relaxation, tighten_output=True)


def _propagate(steps, lo: np.ndarray, hi: np.ndarray, narrowed: list | None, relaxation: str = "interval",
               tighten_output: bool = False, inputs: list | None = None,
               backward: Backward | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Interval bound propagation of ``[lo, hi]`` (flat, outward rounded) through the graph ``steps``; appends the
    narrowed slopes ``(alpha, beta)`` of every activation layer, in the order of the layers, to ``narrowed``.
    ``relaxation="crown"`` intersects every activation input's interval with the bounds of the backward linear
    relaxation (:mod:`lipverify.relax`; restarted from the current box after any step it does not relax), and, with
    ``tighten_output``, the outputs' too (``proofs/local.md`` §3).  ``inputs`` receives every activation layer's input
    bounds ``(lo, hi)``, in the same order; ``backward`` continues the relaxation of an enclosing graph (a residual
    branch)."""
    from .ir.passes import linear_enclosure

    crown = (backward if backward is not None else Backward(lo, hi)) if relaxation == "crown" else None
    for s in steps:
        if s.kind == "linear":
            iv = Interval.from_bounds(lo, hi)
            mid, rad = linear_enclosure(s.op, iv.mid[None], iv.rad[None], True)
            bias, bias_radius = s.source[0].affine_shift(s.shape)
            rb = 0.0 if bias_radius is None else bias_radius
            if crown is not None:
                crown.linear(s.op, bias, bias_radius, lo, hi)
            lo = down(down(down(mid[0] - rad[0]) + bias) - rb)  # one rounding each
            hi = up(up(up(mid[0] + rad[0]) + bias) + rb)
        elif s.kind == "act":
            for layer in s.source:  # composed activations, in order
                if crown is not None:  # a two-piece linear activation gains only where it straddles its kink
                    lo, hi = crown.tighten(lo, hi, (lo < 0) & (hi > 0) if piece_slopes(layer) is not None else hi > lo)
                if inputs is not None:
                    inputs.append((lo, hi))
                if narrowed is not None or crown is not None:
                    slopes = layer.narrow_slopes(lo, hi)
                    if narrowed is not None:
                        narrowed.append(slopes)
                pre_lo, pre_hi = lo, hi
                lo, hi = (np.asarray(v, dtype=np.float64) for v in layer.range_on(lo, hi))
                if crown is not None:
                    crown.activation(layer, pre_lo, pre_hi, *slopes)
        elif s.kind == "maxpool":  # the window max of the lower and of the upper ends (exact in float)
            relaxed = crown is not None and crown.maxpool(s.op, lo, hi)
            lo, hi = s.op.window_max(lo[None])[0], s.op.window_max(hi[None])[0]
            if crown is not None and not relaxed:
                crown.restart(lo, hi)
        elif s.kind == "sort":  # monotone in every coordinate: [sort(lo), sort(hi)] (proofs/groupsort.md)
            lo, hi = s.op.apply(lo[None])[0], s.op.apply(hi[None])[0]
        elif crown is not None and s.kind == "sum":  # the branches relaxed on forks, then combined (proofs/local.md §3.4)
            forks = [crown.fork() for _ in s.op]
            (b_lo, b_hi), (s_lo, s_hi) = (_propagate(b.steps, lo, hi, narrowed, relaxation, inputs=inputs, backward=f)
                                            for b, f in zip(s.op, forks))
            if any(f.restarts for f in forks):  # a branch restarted: no relaxation across the block
                crown.restart(down(b_lo + s_lo), up(b_hi + s_hi))
            else:
                crown.residual([f.entries[len(crown.entries):] for f in forks], lo, hi)
            lo, hi = down(b_lo + s_lo), up(b_hi + s_hi)
        else:  # a residual block: the sum of the branches' enclosures (proofs/residual.md)
            (b_lo, b_hi), (s_lo, s_hi) = (_propagate(b.steps, lo, hi, narrowed, relaxation, inputs=inputs)
                                            for b in s.op)
            lo, hi = down(b_lo + s_lo), up(b_hi + s_hi)
        if crown is not None and s.kind not in ("linear", "act", "maxpool", "sum"):  # not relaxed: restart from its box
            crown.restart(lo, hi)
    if crown is not None and tighten_output:
        lo, hi = crown.tighten(lo, hi, hi > lo)
    return lo, hi


def _rebuild(layers, narrowed) -> list:
    """``layers`` with the activations replaced, in order, by their narrowed :class:`LocalActivation`."""
    return [layer.map_activations(lambda act: LocalActivation(act, *next(narrowed))) for layer in layers]


def certified_radius(net: Network, x: Any, norm: Any = "inf", *, label: int | None = None, method: str | None = None,
                     radius: float | None = None, relaxation: str = "crown", **options) -> Any:
    """A radius ``r`` such that every input within ``||x' - x||_p <= r`` keeps the predicted class (a **lower**
    bound of the robustness radius).

    For each other class ``j`` the margin ``m_j = f_y(x) - f_j(x)`` is bounded below rigorously, and the
    scalar network ``f_y - f_j`` gets a certified Lipschitz bound ``L_j`` (``method``, in the p-norm of the
    input; default ``k4`` for l1/l∞ and ``k1`` for l2); ``r = min_j m_j / L_j``.  With ``radius=r0`` the
    Lipschitz bounds are local, on the box ``x ± r0`` (which contains the p-ball of radius ``r0``), and
    ``r <= r0``; ``relaxation`` chooses the activation-input bounds there (:func:`localize`).  Proof:
    ``proofs/local.md``.
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
    check_relaxation(relaxation)
    out_lo, out_hi = output_enclosure(net, (x, x), "interval")  # a point: the relaxation cannot tighten it
    y = int(np.argmax(net(x))) if label is None else int(label)
    # the float box contains the real box x ± radius (each end rounded outward), which contains the l_p ball
    domain = None if radius is None else (down(x - radius), up(x + radius))
    if domain is not None:
        options = {**options, "domain": domain, "relaxation": relaxation}
    best = np.inf
    for j in range(net.n_out):
        if j == y:
            continue
        margin = float(down(out_lo[y] - out_hi[j]))
        if not margin > 0:  # NaN included
            best = 0.0
            break
        row = np.zeros((1, net.n_out))
        row[0, y], row[0, j] = 1.0, -1.0
        diff = Network([*net.layers, Dense(row)], input_shape=net.input_shape)
        b = bound(diff, method, norm=p, **options)
        if b.kind not in ("upper", "exact"):
            raise ValueError(f"certified_radius: method {method} gave a {b.kind} value, not an upper bound")
        lip = b.float_value()  # rounded up when the value is exact
        best = min(best, float(down(margin / lip)) if lip > 0 else np.inf)
    if radius is not None:
        best = min(best, float(radius))
    if not np.isfinite(best):
        raise ValueError("certified_radius: every margin is unbounded (a constant network); give radius=")
    # kind "lower" of the robustness radius (not of the Lipschitz constant): details["quantity"] says so
    return Bound.lower_bound(best, p, f"certified_radius:{method}", rounding=OUTWARD, seconds=time.perf_counter() - started,
                             assumptions=(f"class {y}", "local" if radius is not None else "global"),
                             details={"label": y, "radius": radius, "quantity": "robustness radius",
                                      "relaxation": relaxation if radius is not None else None})
