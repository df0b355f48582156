"""Backward linear relaxation (CROWN / DeepPoly style) of pre-activation bounds on an input box
(proof: ``proofs/local.md`` §3).

:class:`Backward` records the steps of the network since the last *restart* (the input box, or a box enclosing the
output of a step it does not relax): linear steps with their input enclosures, activations with two lines
``a_lo z + b_lo <= σ(z) <= a_hi z + b_hi`` valid on their input interval, max pools with one lower and one upper line
per output, residual blocks with the steps of each branch (recorded on forks).  :meth:`Backward.tighten` bounds
selected neurons ``z_i`` of the current tensor by carrying the inequality ``±z_i <= Λ v + β`` backwards through the
recorded steps (``Λ`` float, every rounding moved into the constant ``β``) and maximising ``Λ x`` over the restart box.
Everything is rounded outward; a row whose computation leaves the float range keeps its interval bounds.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .errors import NumericalError
from .rigorous import ETA, UNIT_ROUNDOFF, add_up, bound_nonneg, down, float_down, float_up, gamma_up, scale_up, sum_up, up

#: the relaxations of the local bounds: ``"crown"`` (backward linear relaxation, then the intersection with the
#: interval bounds) and ``"interval"`` (interval bound propagation only)
RELAXATIONS = ("crown", "interval")
#: float entries of one coefficient matrix ``Λ`` (rows x width): neurons are bounded in chunks below this
CHUNK_ENTRIES = 1 << 22
#: default work limit of one relaxation (a whole network), in multiply-adds of the backward passes (estimated per row
#: as the sum over the steps of width x inner dimension): about 1-3 s.  Past it the remaining neurons keep their interval
#: bounds (sound; the result's details say so).  The Fashion-MNIST CNN at eps = 0.03 uses about 2e7.
CROWN_WORK = 4_000_000_000


def check_relaxation(relaxation: str) -> str:
    if relaxation not in RELAXATIONS:
        raise ValueError(f"relaxation must be one of {RELAXATIONS} (how the activation inputs on a domain= box are "
                         f"bounded), got {relaxation!r}")
    return relaxation


def _nonneg_up(a: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Upper bound of the exact ``a @ v`` for ``a, v >= 0`` (rows of ``a``), R3 through :func:`bound_nonneg`."""
    return bound_nonneg(a @ v, max(a.shape[-1], 1))


def dot_up(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Upper bound of the exact row dot products ``sum_m x[r, m] y[r, m]`` (``y`` a row broadcast to every row or one
    row per row): ``fl(s) + γ_n |x|^T|y| + n η`` (R3) rounded up."""
    n = max(x.shape[-1], 1)
    if y.ndim == 1:
        s, mag = x @ y, np.abs(x) @ np.abs(y)
    else:
        s, mag = np.einsum("rm,rm->r", x, y), np.einsum("rm,rm->r", np.abs(x), np.abs(y))
    err = add_up(scale_up(bound_nonneg(mag, n), gamma_up(n)), n * ETA)
    return up(s + err)


def piece_slopes(layer):
    """``(left, right)`` as Fractions for an activation declaring ``pieces`` (linear with slope ``left`` below 0 and
    ``right`` above, continuous: a kink at 0), else ``None``; built-ins without sympy."""
    from fractions import Fraction

    from .layers import Identity, LeakyReLU, ReLU

    if getattr(type(layer), "pieces", None) is None:
        return None
    if isinstance(layer, ReLU):
        return Fraction(0), Fraction(1)
    if isinstance(layer, LeakyReLU):
        return layer._a_fraction, Fraction(1)
    if isinstance(layer, Identity):
        return Fraction(1), Fraction(1)
    left, right = layer.pieces
    return Fraction(int(left.p), int(left.q)), Fraction(int(right.p), int(right.q))


def _vmax(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(lo), np.abs(hi))


def activation_lines(layer, l: np.ndarray, u: np.ndarray, alpha: np.ndarray, beta: np.ndarray):
    """Floats ``(a_lo, b_lo, a_hi, b_hi)`` with ``a_lo z + b_lo <= σ(z) <= a_hi z + b_hi`` for every real ``z`` in
    ``[l, u]`` (elementwise), from declared facts only: ``[alpha, beta]`` contains ``σ'`` on ``[l, u]`` (the narrowed
    slopes) and ``forward ± forward_error`` encloses ``σ`` at the ends (``proofs/local.md`` §3.1).

    Every activation: the lines through an end with an extreme slope (``σ(z) >= σ(l) + α (z - l)``,
    ``σ(z) >= σ(u) + β (z - u)``, ``σ(z) <= σ(l) + β (z - l)``, ``σ(z) <= σ(u) + α (z - u)``), the better one at the
    midpoint.  Two-piece linear activations (declared ``pieces``: slopes ``left`` below 0 and ``right`` above, kink at
    0) straddling 0: if convex (``left < right``) the chord above and a line through 0 with slope in ``[left, right]``
    below (CROWN's adaptive choice: ``right`` when ``u >= -l``); concave mirrored."""
    from .layers import _outward

    l, u = np.asarray(l, dtype=np.float64), np.asarray(u, dtype=np.float64)
    with np.errstate(all="ignore"):
        fl_, fu_ = np.asarray(layer.forward(l), dtype=np.float64), np.asarray(layer.forward(u), dtype=np.float64)
        sl_lo, sl_hi = _outward(fl_, layer.forward_error(l), fl_, layer.forward_error(l))
        su_lo, su_hi = _outward(fu_, layer.forward_error(u), fu_, layer.forward_error(u))
        # lines through one end with an extreme slope (intercepts rounded outward)
        b_lo1, b_lo2 = down(sl_lo - up(alpha * l)), down(su_lo - up(beta * u))
        b_hi1, b_hi2 = up(sl_hi - down(beta * l)), up(su_hi - down(alpha * u))
        m = 0.5 * l + 0.5 * u
        first = alpha * m + b_lo1 >= beta * m + b_lo2
        a_lo, b_lo = np.where(first, alpha, beta), np.where(first, b_lo1, b_lo2)
        first = beta * m + b_hi1 <= alpha * m + b_hi2
        a_hi, b_hi = np.where(first, beta, alpha), np.where(first, b_hi1, b_hi2)
        pieces = piece_slopes(layer)
        if pieces is not None:
            left, right = pieces
            cross = (l < 0) & (u > 0)
            chord = (su_hi - sl_lo) / (u - l) if not left > right else (su_lo - sl_hi) / (u - l)
            chord = np.where(cross & np.isfinite(chord), chord, 0.0)
            if left < right:  # convex: max(left z, right z)
                s_left, s_right = float_up(left), float_down(right)  # both in [left, right] when s_left <= s_right
                if s_left <= s_right:
                    tangent = np.where(u >= -l, s_right, s_left)
                    a_lo, b_lo = np.where(cross, tangent, a_lo), np.where(cross, 0.0, b_lo)
                c_hi = np.maximum(up(sl_hi - down(chord * l)), up(su_hi - down(chord * u)))
                a_hi, b_hi = np.where(cross, chord, a_hi), np.where(cross, c_hi, b_hi)
            elif left > right:  # concave: min(left z, right z)
                s_right, s_left = float_up(right), float_down(left)  # both in [right, left] when s_right <= s_left
                if s_right <= s_left:
                    tangent = np.where(u >= -l, s_right, s_left)
                    a_hi, b_hi = np.where(cross, tangent, a_hi), np.where(cross, 0.0, b_hi)
                c_lo = np.minimum(down(sl_lo - up(chord * l)), down(su_lo - up(chord * u)))
                a_lo, b_lo = np.where(cross, chord, a_lo), np.where(cross, c_lo, b_lo)
    # NaN never becomes a number: a line that is not finite becomes the constant range bound (inf if that is too)
    r_lo, r_hi = (np.asarray(v, dtype=np.float64) for v in layer.range_on(l, u))
    bad = ~(np.isfinite(a_lo) & np.isfinite(b_lo))
    a_lo, b_lo = np.where(bad, 0.0, a_lo), np.where(bad, r_lo, b_lo)
    bad = ~(np.isfinite(a_hi) & np.isfinite(b_hi))
    a_hi, b_hi = np.where(bad, 0.0, a_hi), np.where(bad, r_hi, b_hi)
    return a_lo, b_lo, a_hi, b_hi


class Backward:
    """The relaxed steps since the last restart box ``[lo0, hi0]`` (flat floats), in forward order."""

    def __init__(self, lo: np.ndarray, hi: np.ndarray, work: float | None = None):
        self.budget = {"left": float(CROWN_WORK if work is None else work), "cut": False}  # shared with the forks
        self.restart(lo, hi)

    def restart(self, lo: np.ndarray, hi: np.ndarray) -> None:
        """Start again from the box ``[lo, hi]``, which contains every reachable value of the current tensor."""
        self.lo0, self.hi0 = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
        self.entries: list[tuple] = []
        self.restarts = getattr(self, "restarts", 0) + 1

    def fork(self) -> Backward:
        """A copy for one branch of a residual block: the same restart box and steps so far (the branch's steps are
        appended to the copy only)."""
        other = Backward.__new__(Backward)
        other.lo0, other.hi0, other.entries, other.restarts = self.lo0, self.hi0, list(self.entries), 0
        other.budget = self.budget
        return other

    @property
    def cut(self) -> bool:
        """True when the work limit left some selected neurons with their interval bounds."""
        return self.budget["cut"]

    def residual(self, branches: list[list[tuple]], in_lo, in_hi) -> None:
        """A residual block ``v_out = sum_b branch_b(v_in)``, each branch given by the steps it recorded on a
        :meth:`fork` (an identity branch has none), ``v_in`` in ``[in_lo, in_hi]``."""
        self.entries.append(("sum", branches, _vmax(in_lo, in_hi)))

    def linear(self, op, bias, bias_radius, in_lo, in_hi) -> None:
        """``v_out = W v_in + b`` with ``|W - W_float| <= R`` (``op``), ``|b - bias| <= bias_radius``, ``v_in`` in
        ``[in_lo, in_hi]``."""
        n = op.shape[0]
        b = np.broadcast_to(np.asarray(bias, dtype=np.float64), (n,))
        rb = None if bias_radius is None else np.broadcast_to(np.asarray(bias_radius, dtype=np.float64), (n,))
        self.entries.append(("linear", op, b, rb, _vmax(in_lo, in_hi)))

    def activation(self, layer, l, u, alpha, beta) -> None:
        """``v_out = σ(v_in)`` elementwise with ``v_in`` in ``[l, u]`` and ``σ'`` in ``[alpha, beta]`` there."""
        self.entries.append(("act", *activation_lines(layer, l, u, alpha, beta), _vmax(l, u)))

    def maxpool(self, pool, in_lo, in_hi) -> bool:
        """``v_out[o] = max_{j in window(o)} v_in[j]`` with ``v_in`` in ``[in_lo, in_hi]``: below, the cell ``j*`` of
        largest lower end (``v_out >= v_in[j*]``); above, ``v_in[j*]`` when its lower end is at least every other
        cell's upper end (then ``v_out = v_in[j*]``), else the constant ``max_j in_hi[j]``.  False (nothing recorded)
        for a pool without a window index (then the caller restarts)."""
        window_index = getattr(getattr(pool, "layer", None), "window_index", None)
        if window_index is None:
            return False
        idx = window_index(pool.in_shape)  # (n_out, k), -1 for padding cells
        rows = np.arange(idx.shape[0])
        real = idx >= 0
        lo_w = np.where(real, in_lo[np.maximum(idx, 0)], -np.inf)
        hi_w = np.where(real, in_hi[np.maximum(idx, 0)], -np.inf)
        a = np.argmax(lo_w, axis=1)
        jstar = idx[rows, a]
        top = hi_w.max(axis=1)
        hi_w[rows, a] = -np.inf
        dominated = lo_w[rows, a] >= hi_w.max(axis=1)
        pick = sp.csr_matrix((np.ones(len(rows)), (rows, jstar)), shape=(idx.shape[0], in_lo.size))
        overlap = int(np.max(np.bincount(jstar, minlength=1)))
        self.entries.append(("maxpool", pick, jstar, dominated, top, overlap, _vmax(in_lo, in_hi)))
        return True

    @property
    def trivial(self) -> bool:
        """True when the relaxation cannot beat interval propagation: nothing, or one linear step, since the restart
        (interval propagation of one linear map on a box is exact up to rounding)."""
        return len(self.entries) == 0 or (len(self.entries) == 1 and self.entries[0][0] == "linear")

    def tighten(self, lo: np.ndarray, hi: np.ndarray, select: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``[lo, hi]`` (enclosures of the current tensor) intersected with the relaxation's bounds of the neurons
        ``select`` (a boolean mask)."""
        idx = np.flatnonzero(select)
        if self.trivial or idx.size == 0:
            return lo, hi
        lo, hi = lo.copy(), hi.copy()
        width = max(lo.size, self.lo0.size, _width(self.entries))
        chunk = max(1, CHUNK_ENTRIES // (2 * width))
        per_row = float(_work(self.entries) + self.lo0.size)
        for start in range(0, idx.size, chunk):
            part = idx[start:start + chunk]
            m = part.size
            if 2 * m * per_row > self.budget["left"]:  # the work limit: these neurons keep their interval bounds
                self.budget["cut"] = True
                break
            self.budget["left"] -= 2 * m * per_row
            lam = np.zeros((2 * m, lo.size))
            lam[np.arange(m), part] = 1.0
            lam[m + np.arange(m), part] = -1.0
            try:
                ub = self._upper(lam)
            except NumericalError:  # the float computation left the range: keep the interval bounds of this chunk
                continue
            top, bottom = ub[:m], -ub[m:]
            hi[part] = np.where(np.isfinite(top) & (top < hi[part]), top, hi[part])
            lo[part] = np.where(np.isfinite(bottom) & (bottom > lo[part]), bottom, lo[part])
        return lo, hi

    def _upper(self, lam: np.ndarray) -> np.ndarray:
        """Upper bounds of ``lam @ v`` (exact) over the reachable values ``v`` of the current tensor: the invariant
        ``lam_0 v <= lam v' + beta`` is carried backwards step by step (``proofs/local.md`` §3.3)."""
        with np.errstate(all="ignore"):
            lam, beta = _back(self.entries, lam)
            corner = np.where(lam >= 0, self.hi0, self.lo0)  # the maximiser of lam x over the box, per entry
            out = up(dot_up(lam, corner) + beta)
        return out


def _work(entries) -> int:
    """Estimated multiply-adds of one row's backward pass through ``entries``."""
    w = 0
    for e in entries:
        if e[0] == "sum":
            w += sum(_work(b) for b in e[1]) + e[-1].size
        else:
            w += e[-1].size * (e[1].k_backward if e[0] == "linear" else 1)
    return w


def _width(entries) -> int:
    """The widest tensor the backward pass through ``entries`` meets."""
    w = 1
    for e in entries:
        w = max(w, e[-1].size, *(_width(b) for b in e[1])) if e[0] == "sum" else max(w, e[-1].size)
    return w


def _back(entries, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(lam', beta)`` with ``lam v_out <= lam' v_in + beta`` (exact, every reachable value) across the steps ``entries``
    (``proofs/local.md`` §3.3); raises :class:`NumericalError` when the constant leaves the float range."""
    beta = np.zeros(lam.shape[0])
    for entry in reversed(entries):
        kind = entry[0]
        if kind == "linear":
            _, op, b, rb, vmax = entry
            k = op.k_backward
            new = op.backward(lam)
            absl = np.abs(lam)
            const = dot_up(lam, b)
            if rb is not None:
                const = up(const + _nonneg_up(absl, rb))
            # rounding of fl(lam W): gamma_k |lam| |W| vmax + k eta sum(vmax) (R3); the weight radius: |lam| R vmax
            err = scale_up(_nonneg_up(absl, op.abs_forward_up(vmax[None])[0]), gamma_up(k))
            err = add_up(err, scale_up(sum_up(vmax), k * ETA))
            if op.has_radius:
                err = add_up(err, _nonneg_up(absl, op.radius_forward_up(vmax[None])[0]))
        elif kind == "act":
            _, a_lo, b_lo, a_hi, b_hi, vmax = entry
            pos = lam >= 0
            new = np.where(pos, lam * a_hi, lam * a_lo)
            const = dot_up(lam, np.where(pos, b_hi, b_lo))
            # one rounded product per entry: |fl(p) - p| <= 2u |fl(p)| + eta (R3)
            err = add_up(scale_up(_nonneg_up(np.abs(new), vmax), 2 * UNIT_ROUNDOFF), scale_up(sum_up(vmax), ETA))
        elif kind == "maxpool":
            _, pick, jstar, dominated, top, overlap, vmax = entry
            use = (lam < 0) | dominated  # these outputs are bounded by the line v_in[j*]
            coef = np.where(use, lam, 0.0)
            const = dot_up(lam, np.where(use, 0.0, top))
            new = np.asarray((pick.T @ coef.T).T)  # sums of <= overlap terms, additions only
            err = scale_up(_nonneg_up(np.abs(coef), vmax[jstar]), gamma_up(overlap))
        else:  # a residual block: every branch from the same lam, the coefficients added (float sums of n_b terms)
            _, branches, vmax = entry
            parts = [_back(b, lam) for b in branches]
            new = parts[0][0]
            const = parts[0][1]
            mags = _nonneg_up(np.abs(parts[0][0]), vmax)
            for part_lam, part_beta in parts[1:]:
                new = new + part_lam
                const = up(const + part_beta)
                mags = add_up(mags, _nonneg_up(np.abs(part_lam), vmax))
            err = scale_up(mags, gamma_up(len(parts)))
        beta = up(up(beta + const) + err)
        if not np.all(np.isfinite(beta)):
            raise NumericalError("backward relaxation: the constant left the float range")
        lam = new
    return lam, beta
