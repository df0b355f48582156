"""The passes of the bias-free bounds over the graph, written once for dense, convolutional and residual networks.

* :func:`kstar_up` — ``prod ||S||_p`` over the steps, a sum of branch values at a residual block
  (``proofs/kstar.md``, ``proofs/residual.md``);
* :func:`abs_pass` — the K3 pass of a nonnegative row through ``|S|`` (window max / window sum at max
  pooling, the group max at a sorting layer, slope magnitudes, branch sums; ``proofs/k3.md``, ``proofs/maxpool.md``,
  ``proofs/groupsort.md``);
* :func:`enclosure_rows` — rigorous interval enclosures of the products ``S_L ⋯ S_1`` applied to point rows,
  forward (columns of the product) or backward (its rows), with per-layer or per-neuron slopes (K4 and its
  enclosure, ``proofs/k4.md``, ``proofs/cnn_explicit.md``);
* :func:`exact_abs_pass`, :func:`exact_enclosure`, :func:`exact_kstar` — the same in exact rational arithmetic
  for dense networks given exactly.

The representation of a step (sparse matrix, dense matrix, matrix-free operator) only changes how its
operator computes; every pass is the same for all of them.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from ..errors import NotApplicableError, NumericalError
from ..rigorous import Interval, add_up, bound_nonneg, check_finite, down, gamma_up, up
from .chain import exact_norm, to_fraction
from .graph import Step, slope_magnitude

# --------------------------------------------------------------------------- K*


def kstar_up(steps: tuple[Step, ...], p: str, method: str = "kstar") -> float:
    """Upper bound of ``sup ||S_L ⋯ S_1||_p``: the product of the step norms, at a residual block the sum of its
    branch values (the identity branch has value 1)."""
    value = 1.0
    for s in steps:
        if s.kind in ("linear", "maxpool", "sort"):
            norm = s.op.norm_up(p)
        elif s.kind == "act":
            norm = float(np.max(slope_magnitude(s.op), initial=0.0))
        else:
            norm = 0.0
            for branch in s.op:
                norm = float(up(norm + kstar_up(branch.steps, p, method)))
        if norm != 1.0:  # a product by 1 is exact: no widening (identity slopes, pools in l∞)
            value = float(up(value * norm))
        if not np.isfinite(value):
            raise NumericalError(
                f"{method}: the l{p} product of layer norms overflowed the float range at layer {s.index} ({s.layer}); "
                "no bound is reported (rescale the weights)")
    return value


def exact_kstar(steps: tuple[Step, ...], p: str, exact: dict) -> Fraction:
    value = Fraction(1)
    for s in steps:
        if s.kind == "linear":
            value *= exact_norm(exact[id(s)], p)
        elif s.kind == "act":
            value *= to_fraction(s.op.magnitude)
        elif s.kind == "sort":
            continue  # ||M||_p <= 1 (proofs/groupsort.md)
        else:
            value *= sum((exact_kstar(b.steps, p, exact) for b in s.op), Fraction(0))
    return value


# --------------------------------------------------------------------------- K3


def abs_pass(steps: tuple[Step, ...], v: np.ndarray, forward: bool) -> np.ndarray:
    """Upper bound of ``|S_L| ⋯ |S_1| v`` (forward) or ``|S_1|^T ⋯ |S_L|^T v`` (backward) for rows ``v >= 0``,
    where ``|S|`` is ``|W| + R`` for a linear step, ``max(|alpha|, |beta|)`` for an activation, the window max
    (forward) or window sum (backward) of a max pool, and the sum of the branches at a residual block."""
    for s in (steps if forward else reversed(steps)):
        if s.kind == "linear":
            v = s.op.abs_forward_up(v) if forward else s.op.abs_backward_up(v)
        elif s.kind == "maxpool":
            v = s.op.window_max(v) if forward else s.op.window_sum_t_up(v)
        elif s.kind == "sort":  # M and M^T are doubly stochastic per group: the group max (proofs/groupsort.md)
            v = s.op.group_max(v)
        elif s.kind == "act":
            mag = slope_magnitude(s.op)
            if not (np.isscalar(mag) and mag == 1.0):
                v = up(v * mag)
        else:
            total = None
            for branch in s.op:
                out = abs_pass(branch.steps, v, forward)
                total = out if total is None else add_up(total, out)
            v = total
    return check_finite(v, "K3 pass")


def exact_abs_pass(steps: tuple[Step, ...], v: np.ndarray, forward: bool, exact: dict) -> np.ndarray:
    for s in (steps if forward else reversed(steps)):
        if s.kind == "linear":
            a = np.abs(exact[id(s)])
            v = a @ v if forward else a.T @ v
        elif s.kind == "act":
            v = v * to_fraction(s.op.magnitude)
        elif s.kind == "sort":
            v = s.op.group_max(v)
        else:
            v = sum(exact_abs_pass(b.steps, v, forward, exact) for b in s.op)
    return v


# --------------------------------------------------------------------------- K4: interval enclosures


def _scale(mid: np.ndarray, rad: np.ndarray, s) -> tuple[np.ndarray, np.ndarray]:
    """Enclosure of ``{d x : alpha <= d <= beta, |x - mid| <= rad}`` for the slopes ``s`` (per neuron: along the last
    axis)."""
    if s.neuron_lo is not None:
        a, b = s.neuron_lo, s.neuron_hi
    else:
        a, b = s.lo_float, s.hi_float
        if a == b and a in (0.0, 1.0, -1.0):
            return a * mid, rad if a else np.zeros_like(rad)
        if a == 0.0 and b == 1.0:
            return _scale_relu(mid, rad)
    return scale_enclosure(mid, rad, a, b)


def scale_enclosure(mid: np.ndarray, rad: np.ndarray, a, b) -> tuple[np.ndarray, np.ndarray]:
    """Enclosure of ``{d x : a <= d <= b, |x - mid| <= rad}`` entrywise (``a``, ``b`` broadcast against ``mid``, e.g.
    per neuron along the last axis, or per node and neuron): the four endpoint products of the float ends, the
    minimum rounded down and the maximum up, then the midpoint-radius form (R7)."""
    lo, hi = down(mid - rad), up(mid + rad)
    cands = (a * lo, a * hi, b * lo, b * hi)
    iv = Interval.from_bounds(down(np.minimum.reduce(cands)), up(np.maximum.reduce(cands)))
    return iv.mid, iv.rad


def _scale_relu(mid: np.ndarray, rad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slopes ``[0, 1]``: ``{d x} = [min(lo, 0), max(hi, 0)]``.  Intervals containing 0 are kept as they are;
    ``lo >= 0`` (exactly ``mid >= rad``) gives ``[0, hi]`` with ``hi = up(mid + rad)``, stored as
    ``m = fl(hi / 2)``, ``r = max(hi - m, m)`` (``hi - m`` is exact by Sterbenz's lemma or gradual underflow,
    so ``m + r >= hi`` and ``m - r <= 0``); ``hi <= 0`` symmetrically (``proofs/cnn_implicit.md``)."""
    new_mid, new_rad = mid.copy(), rad.copy()
    m, t = np.empty_like(mid), np.empty_like(mid)
    for sign in (1.0, -1.0):  # lo >= 0, then hi <= 0 (mirrored: -[lo, hi] = [-hi, -lo])
        mask = (mid >= rad) if sign > 0 else (mid <= -rad)
        if not mask.any():
            continue
        np.multiply(mid, sign, out=t)
        np.add(t, rad, out=t)
        t = up(t)  # t = up(|hi|) of the mirrored interval [0, t]
        np.multiply(t, 0.5, out=m)
        np.subtract(t, m, out=t)  # exact
        np.maximum(t, m, out=t)
        np.multiply(m, sign, out=m)
        np.copyto(new_mid, m, where=mask)
        np.copyto(new_rad, t, where=mask)
    return new_mid, new_rad


def linear_enclosure(op, mid, rad, forward: bool):
    """Enclosure of ``{W x}`` (``W^T x`` backward) over ``|W - W_float| <= R``, ``|x - mid| <= rad``:
    ``mid' = fl(W mid)``, ``rad' >= (|W| + R)(rad + gamma_k |mid|) + R |mid| + 4 (k + 1) eta``."""
    k = op.k_forward if forward else op.k_backward
    new_mid = check_finite(op.forward(mid) if forward else op.backward(mid), "K4 interval pass")
    absmid = np.abs(mid)
    t = absmid * gamma_up(k)
    t += rad
    t = up(t)  # t >= gamma_k |mid| + rad: one rounded product, one rounded sum, up (R2)
    new_rad = bound_nonneg(op.abs_forward(t) if forward else op.abs_backward(t), k, extra=4 * (k + 1))
    if op.has_radius:
        new_rad = up(new_rad + (op.radius_forward_up(absmid) if forward else op.radius_backward_up(absmid)))
    return new_mid, new_rad


def _pool(pool, mid, rad, forward: bool):
    """Max pooling on column enclosures (forward): ``[min_window lo, max_window hi]`` (``proofs/maxpool.md``)."""
    if not forward:
        raise NotApplicableError("max pooling is enclosed forward only (K4 l∞ switches to K3 before the last max pool; "
                                 "a max pool inside a residual block is not supported by K4 in l∞: use k3)")
    lo, hi = down(mid - rad), up(mid + rad)
    iv = Interval.from_bounds(pool.window_min(lo), pool.window_max(hi))
    return iv.mid, iv.rad


def enclosure_rows(steps, start: np.ndarray, forward: bool) -> tuple[np.ndarray, np.ndarray]:
    """Push the point rows ``start`` through ``steps`` (forward: columns of the product; backward: its rows) and
    return a midpoint-radius enclosure ``(mid, rad)``; at a residual block the branch enclosures add."""
    return _enclose(tuple(steps), start, np.zeros_like(start), forward)


def _enclose(steps, mid, rad, forward: bool):
    for s in (steps if forward else reversed(steps)):
        if s.kind == "linear":
            mid, rad = linear_enclosure(s.op, mid, rad, forward)
        elif s.kind == "act":
            mid, rad = _scale(mid, rad, s.op)
        elif s.kind == "maxpool":
            mid, rad = _pool(s.op, mid, rad, forward)
        elif s.kind == "sort":  # rows of M and of M^T are convex weights on the group: [group min lo, group max hi]
            iv = Interval.from_bounds(s.op.group_min(down(mid - rad)), s.op.group_max(up(mid + rad)))
            mid, rad = iv.mid, iv.rad
        else:
            lo = hi = None
            for branch in s.op:
                m, r = _enclose(branch.steps, mid, rad, forward)
                b_lo, b_hi = down(m - r), up(m + r)
                lo, hi = (b_lo, b_hi) if lo is None else (down(lo + b_lo), up(hi + b_hi))
            iv = Interval.from_bounds(lo, hi)
            mid, rad = iv.mid, iv.rad
    return mid, rad


def enclose(chain, cols, alphas=None, betas=None) -> Interval:
    """Enclosure (``n_out x len(cols)``) of the products of a :class:`~lipverify.ir.chain.LinearChain` restricted to
    the input columns ``cols``, with per-neuron slopes ``alphas``/``betas`` if given (K2's nodes, the lower
    bound's pattern test)."""
    from .views import chain_steps

    idx = np.arange(chain.n_in)[cols]
    start = np.zeros((len(idx), chain.n_in))
    start[np.arange(len(idx)), idx] = 1.0
    mid, rad = enclosure_rows(chain_steps(chain, alphas, betas), start, True)
    return Interval(np.ascontiguousarray(mid.T), np.ascontiguousarray(rad.T))


def k3_rows(steps, n_in: int) -> np.ndarray:
    """Upper bound of the row sums ``|A| 1`` of every product ``A`` of ``steps`` (one K3 forward pass)."""
    return abs_pass(tuple(steps), np.ones((1, n_in)), True)[0]


def exact_enclosure(steps, lo: np.ndarray, hi: np.ndarray, exact: dict, forward: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """:func:`enclosure_rows` in exact rational arithmetic on columns ``[lo, hi]`` (``Fraction`` object matrices):
    forward encloses ``A [lo, hi]``, backward ``A^T [lo, hi]`` (the same direction as the float pass, so both
    compute the same enclosure up to rounding)."""
    for s in (steps if forward else reversed(steps)):
        if s.kind == "act":
            a, b = to_fraction(s.op.lo), to_fraction(s.op.hi)
            cands = (a * lo, a * hi, b * lo, b * hi)
            lo, hi = np.minimum.reduce(cands), np.maximum.reduce(cands)
        elif s.kind == "linear":
            w = exact[id(s)] if forward else exact[id(s)].T
            wp = np.maximum(w, Fraction(0))
            wm = np.maximum(-w, Fraction(0))
            lo, hi = wp @ lo - wm @ hi, wp @ hi - wm @ lo
        else:
            parts = [exact_enclosure(b.steps, lo, hi, exact, forward) for b in s.op]
            lo, hi = sum(q[0] for q in parts), sum(q[1] for q in parts)
    return lo, hi
