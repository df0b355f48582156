"""Exact Lipschitz constants of piecewise-linear networks by enumerating the realizable activation regions.

Proof: ``proofs/exact.md`` (section "Several inputs: activation regions").  For a continuous piecewise-linear
``f`` on an open convex set ``U`` (``R^n`` or the interior of a box), ``Lip_p(f, U) = max ||J_r||_p`` over the
activation regions ``r`` with nonempty interior, ``J_r = W_L D_{L-1} ⋯ D_1 W_1`` their Jacobian.

The regions are enumerated depth first, one neuron at a time.  On the current open polyhedron ``R`` the
pre-activation ``z_j`` is affine, ``z_j = g·x + c`` with ``g, c`` exact rationals.  If ``g = 0`` it is a
constant and its slope is fixed (for ``c = 0`` either slope gives the same Jacobian).  Otherwise ``R``
splits into ``R ∩ {z_j > 0}`` and ``R ∩ {z_j < 0}``.  Which halves are nonempty is decided by HiGHS in
floating point, but every decision that matters is checked in exact arithmetic:

* a region counts for the maximum only with an exact rational point where every defining inequality
  holds strictly (so the region has interior and ``J_r`` is a true gradient of ``f``);
* a branch is dropped only with a Farkas–Motzkin certificate ``y >= 0, y != 0, Σ y_i a_i = 0,
  Σ y_i c_i <= 0`` checked in exact rationals (no point satisfies all ``a_i·x + c_i > 0``), or when a
  rigorous upper bound of ``||J||`` over every completion of the branch does not exceed the best verified
  region (branch and bound);
* a leaf that is neither verified nor certified empty is *unverified*: its norm enters an upper bound only.

The result is exact when no unverified leaf has a larger norm than the best verified region.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

import highspy
import numpy as np
import scipy.optimize
import sympy
from flint import fmpq, fmpq_mat

from ..errors import NotApplicableError, SolverError
from ..rigorous import abs_norm_upper, add_up, matmul_up, norm_upper_nonneg, up
from .common import Stage, compare_exact, pwl_slopes, rational_matrix_norm

#: static size limits (override with the keyword arguments of :func:`regions_constant`)
MAX_INPUT_DIM = 12
MAX_NEURONS = 256
MAX_NODES = 2_000_000

#: a region with an LP inscribed-ball radius above this is taken as nonempty (then checked exactly); thin
#: regions with a tiny positive radius are explored too, the exact point check decides
RADIUS_TOL = 0.0

_HINF = highspy.kHighsInf
#: right-hand sides of the normalised region rows are clipped to this magnitude (below HiGHS's infinity, 1e20)
_RHS_CAP = 1e15


def _q(v) -> fmpq:
    if isinstance(v, fmpq):
        return v
    if isinstance(v, Fraction):
        return fmpq(v.numerator, v.denominator)
    if isinstance(v, (float, np.floating)):
        f = Fraction(float(v))
        return fmpq(f.numerator, f.denominator)
    if isinstance(v, sympy.Rational):
        return fmpq(int(v.p), int(v.q))
    return fmpq(int(v))


def _f(v: fmpq) -> float:
    """The correctly rounded float of an exact rational (Python's int/int division is correctly rounded)."""
    return int(v.p) / int(v.q)


def _to_float(m: fmpq_mat) -> np.ndarray:
    return np.array([[_f(v) for v in row] for row in m.tolist()], dtype=np.float64).reshape(m.nrows(), m.ncols())


def _mat(sym: sympy.Matrix) -> fmpq_mat:
    vals = []
    for v in sym:
        if not v.is_Rational:
            raise NotApplicableError(
                f"exact (regions): weight {v} is not rational; region enumeration needs rational or float weights"
            )
        vals.append(fmpq(int(v.p), int(v.q)))
    return fmpq_mat(sym.rows, sym.cols, vals)


@dataclass
class _Layer:
    w: fmpq_mat          # n_k x n_{k-1}
    b: fmpq_mat          # n_k x 1
    left: fmpq | None    # slope for z < 0 (None for the output layer)
    right: fmpq | None
    w_abs: np.ndarray    # float upper bound of |W|
    smax: float          # float upper bound of max(|left|, |right|)


@dataclass
class _Best:
    """Verified and unverified leaves, as exact Jacobians with rigorous float/rational norm enclosures."""

    norm: str
    lower: Fraction = Fraction(-1)            # best verified lower bound (of ||J|| for l1/l∞, ||J||^2 for l2)
    candidates: list = field(default_factory=list)   # (upper_key: float, lower_key: Fraction, J)
    unverified: list = field(default_factory=list)   # (upper_key, lower_key, J)
    verified_count: int = 0

    def add(self, jac: fmpq_mat, verified: bool) -> None:
        lo, hi = _norm_keys(jac, self.norm)
        if verified:
            self.verified_count += 1
            if hi < self.lower:
                return
            if lo > self.lower:
                self.lower = lo
                self.candidates = [c for c in self.candidates if c[0] >= self.lower]
            self.candidates.append((hi, lo, jac))
        else:
            self.unverified.append((hi, lo, jac))

    def prunes(self, bound_up: float) -> bool:
        """True when ``bound_up`` (a rigorous upper bound of a norm) cannot beat the best verified region."""
        if self.lower < 0:
            return False
        key = Fraction(bound_up) if self.norm != "2" else Fraction(float(up(bound_up * bound_up)))
        return key <= self.lower


def _norm_keys(jac: fmpq_mat, norm: str) -> tuple[Fraction, Fraction]:
    """``(lower, upper)`` exact/rigorous keys: the norm for l1/l∞ (exact), the squared norm for l2."""
    rows = [[Fraction(int(v.p), int(v.q)) for v in r] for r in jac.tolist()]
    m, n = jac.nrows(), jac.ncols()
    if norm == "inf":
        v = max(sum((abs(x) for x in r), Fraction(0)) for r in rows)
        return v, v
    if norm == "1":
        v = max(sum((abs(rows[i][j]) for i in range(m)), Fraction(0)) for j in range(n))
        return v, v
    if m == 1 or n == 1:
        v = sum((x * x for r in rows for x in r), Fraction(0))
        return v, v
    jf = np.array([[float(x) for x in r] for r in rows])
    rad = np.spacing(np.abs(jf))
    hi = abs_norm_upper(jf, rad, "2")
    hi_key = Fraction(float(up(hi * hi)))
    _, _, vt = np.linalg.svd(jf)
    vq = [Fraction(float(x)) for x in vt[0]]
    jv = [sum((r[j] * vq[j] for j in range(n)), Fraction(0)) for r in rows]
    nv = sum((x * x for x in vq), Fraction(0))
    lo_key = sum((x * x for x in jv), Fraction(0)) / nv if nv else Fraction(0)
    return lo_key, max(hi_key, lo_key)


def _exact_norm(jac: fmpq_mat, norm: str) -> sympy.Expr:
    rows = [[Fraction(int(v.p), int(v.q)) for v in r] for r in jac.tolist()]
    return rational_matrix_norm(rows, norm)


class _Enumerator:
    def __init__(self, stage_list: list[Stage], norm: str, domain, *, max_nodes: int, time_limit: float | None,
                 progress: bool | Callable[[int, int], None] | None) -> None:
        self.norm = norm
        self.n = stage_list[0].weight.cols
        self.layers: list[_Layer] = []
        for st in stage_list:
            w, b = _mat(st.weight), _mat(st.bias)
            if st.act is None:
                left = right = None
                smax = 1.0
            else:
                lft, rgt = pwl_slopes(st.act)
                left, right = _q(lft), _q(rgt)
                smax = float(up(max(abs(_f(left)), abs(_f(right)))))
            w_abs = up(np.abs(_to_float(w)))
            self.layers.append(_Layer(w, b, left, right, w_abs, smax))
        self.hidden = self.layers[:-1]
        self.suffix = self._suffixes()
        self.box_rows: list[tuple[list[fmpq], fmpq]] = []
        if domain is not None:
            lo, hi = domain
            for k in range(self.n):
                e = [fmpq(int(i == k)) for i in range(self.n)]
                self.box_rows.append((e, -_q(lo[k])))
                self.box_rows.append(([-v for v in e], _q(hi[k])))
        self.domain = domain
        self.best = _Best(norm)
        self.nodes = 0
        self.lps = 0
        self.certificates = 0
        self.ambiguous = 0
        self.pruned_by_bound = 0
        self.seeded = 0
        self.max_nodes = max_nodes
        #: why the enumeration stopped early (None while within budget); branches left unexplored then are
        #: counted in ``open_branches`` and their largest rigorous norm bound is ``open_bound``
        self.stopped: str | None = None
        self.open_branches = 0
        self.open_bound = 0.0
        self.deadline = None if time_limit is None else time.monotonic() + time_limit
        self.highs = _new_highs()
        self.highs.setOptionValue("output_flag", False)
        self.highs.setOptionValue("presolve", "off")
        self.highs.setOptionValue("threads", 1)
        inf = np.full(self.n + 1, _HINF)
        self.highs.addVars(self.n + 1, -inf, np.r_[inf[:-1], 1.0])
        self.highs.changeColCost(self.n, -1.0)
        self.row_norms: list[float] = []
        self._cols = np.arange(self.n + 1, dtype=np.int32)
        self.bar = None
        #: ``progress(nodes, max_nodes)``, called every 50 nodes and at the end (``compare``'s ``work_progress``)
        self.callback = progress if callable(progress) else None
        self.reported = 0
        if self.callback is not None:
            progress = False
        if progress is None:
            progress = sys.stderr.isatty()
        if progress:
            try:
                from tqdm import tqdm

                self.bar = tqdm(desc="exact: regions", unit=" regions", file=sys.stderr, leave=False)
            except ImportError:  # pragma: no cover - tqdm is optional
                self.bar = None

    def _suffixes(self) -> list[np.ndarray]:
        out: list[np.ndarray] = [np.zeros((0, 0))] * len(self.hidden)
        r = self.layers[-1].w_abs  # |W_H|, m x n_{H-1}
        for k in range(len(self.hidden) - 1, -1, -1):
            out[k] = r
            # R_{k-1} = R_k * S_k * |W_k|
            r = matmul_up(up(r * self.hidden[k].smax), self.hidden[k].w_abs)
        return out

    # ------------------------------------------------------------------ exact point checks
    def exact_jacobian_at(self, x: list[fmpq]) -> fmpq_mat | None:
        """The exact Jacobian at ``x`` if ``x`` lies strictly inside an activation region (and the box), else None."""
        if self.domain is not None:
            for row, c in self.box_rows:
                if not sum((a * v for a, v in zip(row, x)), c) > 0:
                    return None
        n = self.n
        p = fmpq_mat(n, n, [fmpq(int(i == j)) for i in range(n) for j in range(n)])  # gradient of the layer input
        h = fmpq_mat(n, 1, x)
        for layer in self.hidden:
            zmat = layer.w * p
            z = layer.w * h + layer.b
            rows, hv = [], []
            for j in range(zmat.nrows()):
                zj = z[j, 0]
                if zj == 0:
                    if any(zmat[j, k] != 0 for k in range(n)):
                        return None  # x is on the boundary of a region
                    d = layer.right
                else:
                    d = layer.right if zj > 0 else layer.left
                rows.append([d * zmat[j, k] for k in range(n)])
                hv.append(d * zj)
            p = fmpq_mat(len(rows), n, [v for r in rows for v in r])
            h = fmpq_mat(len(hv), 1, hv)
        return self.layers[-1].w * p

    # ------------------------------------------------------------------ incumbent by sampling
    def seed(self, samples: int = 512, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        n = self.n
        if self.domain is not None:
            lo = np.array([float(v) for v in self.domain[0]])
            hi = np.array([float(v) for v in self.domain[1]])
            xs = rng.uniform(lo, hi, size=(samples, n))
        else:
            scales = np.repeat([0.1, 1.0, 10.0, 100.0], samples // 4 + 1)[:samples]
            xs = rng.standard_normal((samples, n)) * scales[:, None]
        jac = np.broadcast_to(np.eye(n), (samples, n, n)).copy()
        h = xs
        for layer in self.layers:
            wf = _to_float(layer.w)
            bf = _to_float(layer.b)[:, 0]
            z = h @ wf.T + bf
            jac = np.einsum("oi,nij->noj", wf, jac)
            if layer.left is None:
                break
            d = np.where(z > 0, _f(layer.right), _f(layer.left))
            h = d * z
            jac = jac * d[:, :, None]
        from ..lower import jacobian_norm

        vals = jacobian_norm(jac, self.norm)
        for i in np.argsort(vals)[::-1][:8]:
            x = [_q(v) for v in xs[i]]
            j = self.exact_jacobian_at(x)
            if j is not None:
                self.best.add(j, verified=True)
                self.seeded += 1

    # ------------------------------------------------------------------ LPs and certificates
    # the HiGHS model holds the rows of the current search path: -â_i·x + t <= ĉ_i, maximise t <= 1
    def _push(self, row: tuple[np.ndarray, float]) -> None:
        a, c = row
        nrm = float(np.linalg.norm(a)) or 1.0
        n = self.n
        vals = np.empty(n + 1)
        vals[:n] = -a / nrm
        vals[n] = 1.0
        # a row with a (nearly) vanishing float normal scales its right-hand side past HiGHS's infinity, which
        # HiGHS >= 1.16 rejects; the LP is only a heuristic (every decision is re-checked exactly), so clip it
        rhs = min(max(c / nrm, -_RHS_CAP), _RHS_CAP)
        status = self.highs.addRow(-_HINF, rhs, n + 1, self._cols, vals)
        if status == highspy.HighsStatus.kError:
            raise SolverError(f"exact (regions): HiGHS refused a region row ({status}); normal norm {nrm:.3g}, offset {c:.3g}")
        self.row_norms.append(nrm)

    def _pop(self) -> None:
        self.row_norms.pop()
        self.highs.deleteRows(1, np.array([len(self.row_norms)], dtype=np.int32))

    def lp_point(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Chebyshev-centre LP ``max t: a_i·x + c_i >= t ||a_i||, t <= 1`` over the rows of the path (HiGHS).

        Returns ``(x, None)`` when the inscribed radius exceeds RADIUS_TOL (a heuristic witness, checked
        exactly later), else ``(None, y)`` with the LP's dual multipliers ``y >= 0`` as a candidate
        Farkas–Motzkin certificate (``Σ y_i â_i = 0``, ``Σ y_i = 1``, ``Σ y_i ĉ_i = t* <= 0``).
        """
        self._tick_lp()
        n = self.n
        if not self.row_norms:
            return np.zeros(n), None
        h = self.highs
        h.run()
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return None, None
        sol = h.getSolution()
        xt = np.array(sol.col_value)
        if not np.all(np.isfinite(xt)):
            return None, None
        if xt[-1] > RADIUS_TOL:
            return xt[:n], None
        y = -np.array(sol.row_dual) / np.array(self.row_norms)
        return None, (y if np.all(np.isfinite(y)) else None)

    def certify_empty(self, exact_rows: list[tuple[list[fmpq], fmpq]], float_rows: list,
                      hint: np.ndarray | None = None) -> bool:
        """Try to prove that no x satisfies every ``a·x + c > 0`` (exact Farkas–Motzkin certificate).

        ``hint`` is a float multiplier vector (from the LP duals); when it does not give a certificate a
        dedicated LP ``min c·y: Σ y_i a_i = 0, Σ y_i = 1, y >= 0`` is solved.  Only the exact check counts.
        """
        k, n = len(float_rows), self.n
        if k == 0:
            return False
        if hint is not None and self._exactify(exact_rows, hint):
            return True
        self._tick_lp()
        a = np.array([r[0] for r in float_rows])
        c = np.array([r[1] for r in float_rows])
        nrm = np.linalg.norm(a, axis=1)
        nrm[nrm == 0] = 1.0
        a_eq = np.vstack([(a / nrm[:, None]).T, np.ones((1, k))])
        b_eq = np.r_[np.zeros(n), 1.0]
        res = scipy.optimize.linprog(c / nrm, A_eq=a_eq, b_eq=b_eq, bounds=[(0, None)] * k, method="highs")
        if res.status != 0 or res.x is None or res.fun > 1e-7:
            return False
        return self._exactify(exact_rows, res.x / nrm)

    def _exactify(self, exact_rows: list, y: np.ndarray) -> bool:
        y = np.maximum(np.asarray(y, dtype=np.float64), 0.0)
        top = float(np.max(y)) if y.size else 0.0
        if not top > 0:
            return False
        support = [i for i in range(len(y)) if y[i] > 1e-9 * top]
        ok = _check_certificate([exact_rows[i] for i in support], y[support], self.n)
        if ok:
            self.certificates += 1
        return ok

    def _tick_lp(self) -> None:
        self.lps += 1

    def _out_of_budget(self) -> bool:
        """True once ``max_nodes`` search nodes were entered or the time limit passed (then it stays True)."""
        if self.stopped is None:
            if self.nodes > self.max_nodes:
                self.stopped = f"node limit reached (max_nodes={self.max_nodes})"
            elif self.deadline is not None and time.monotonic() > self.deadline:
                self.stopped = "time limit reached"
        return self.stopped is not None

    def _leave_open(self, bound: float) -> None:
        """Out of budget: the unexplored branch enters the result only through its rigorous norm bound."""
        self.open_branches += 1
        self.open_bound = max(self.open_bound, bound)

    # ------------------------------------------------------------------ depth-first search
    def run(self) -> None:
        n = self.n
        p0 = fmpq_mat(n, n + 1, [fmpq(int(i == j)) for i in range(n) for j in range(n + 1)])
        rows_exact = list(self.box_rows)
        rows_float = [(np.array([_f(v) for v in r]), _f(c)) for r, c in rows_exact]
        for row in rows_float:
            self._push(row)
        witness = self.lp_point()[0]
        try:
            self._layer(0, p0, rows_exact, rows_float, witness)
        finally:
            if self.bar is not None:
                self.bar.close()
        if self.callback is not None:
            self.callback(min(self.nodes, self.max_nodes), self.max_nodes)

    def _layer(self, k: int, p: fmpq_mat, rows_exact: list, rows_float: list, witness) -> None:
        """Enter hidden layer ``k`` with the affine map ``[P | q]`` of its input (or finish at the output)."""
        n = self.n
        layer = self.layers[k]
        z = layer.w * p
        for j in range(z.nrows()):
            z[j, n] = z[j, n] + layer.b[j, 0]
        if k == len(self.hidden):
            self._leaf(z, rows_exact, rows_float, witness)
            return
        zf = _to_float(z)
        zabs = up(np.abs(zf))
        last = None
        if k == len(self.hidden) - 1:
            # last hidden layer: J = Σ_j d_j W_L[:, j] Z[j, :]; keep the decided part exactly and bound the rest by
            # tails[j] >= Σ_{r >= j} |W_L[:, r]| |Z[r, :]| (upward rounded)
            wl_abs = self.layers[-1].w_abs
            m = wl_abs.shape[0]
            tails = [matmul_up(wl_abs[:, j:], zabs[j:, :n]) if j < z.nrows() else np.zeros((m, n))
                     for j in range(z.nrows() + 1)]
            last = (fmpq_mat(m, n), tails)
        self._neuron(k, 0, z, zf, zabs, [], rows_exact, rows_float, witness, last)

    def _neuron(self, k: int, j: int, z: fmpq_mat, zf: np.ndarray, zabs: np.ndarray, ds: list,
                rows_exact: list, rows_float: list, witness, last=None) -> None:
        self.nodes += 1
        if self.callback is not None and self.nodes - self.reported >= 50:
            self.reported = self.nodes
            self.callback(min(self.nodes, self.max_nodes), self.max_nodes)
        layer = self.hidden[k]
        n = self.n
        # branch and bound: rigorous upper bound of ||J|| over all completions of this branch
        dvec = np.array([abs(_f(d)) for d in ds] + [layer.smax] * (z.nrows() - len(ds)))
        bound = norm_upper_nonneg(matmul_up(up(self.suffix[k] * up(dvec)[None, :]), zabs[:, :n]), self.norm)
        if last is not None:  # sign-aware bound in the last hidden layer: |J_decided| + smax Σ_undecided |w||z|
            jdec, tails = last
            dec_abs = up(np.abs(_to_float(jdec)))
            mag = add_up(dec_abs, up(tails[j] * layer.smax))
            bound = min(bound, norm_upper_nonneg(mag, self.norm))
        if self.best.prunes(bound):
            self.pruned_by_bound += 1
            return
        if self._out_of_budget():
            self._leave_open(bound)
            return
        if j == z.nrows():
            d = fmpq_mat(len(ds), len(ds), [ds[a] if a == b else fmpq(0) for a in range(len(ds)) for b in range(len(ds))])
            self._layer(k + 1, d * z, rows_exact, rows_float, witness)
            return
        g = [z[j, i] for i in range(n)]
        c = z[j, n]
        if all(v == 0 for v in g):
            d = layer.right if c >= 0 else layer.left
            self._neuron(k, j + 1, z, zf, zabs, ds + [d], rows_exact, rows_float, witness, self._extend(last, z, j, d))
            return
        if layer.left == layer.right:
            self._neuron(k, j + 1, z, zf, zabs, ds + [layer.right], rows_exact, rows_float, witness,
                         self._extend(last, z, j, layer.right))
            return
        gf, cf = zf[j, :n], zf[j, n]
        side_w = 0
        if witness is not None:
            v = float(gf @ witness + cf)
            scale = float(np.abs(gf) @ np.abs(witness) + abs(cf))
            if abs(v) > 1e-9 * scale + 1e-300:
                side_w = 1 if v > 0 else -1
        sides = (side_w, -side_w) if side_w else (1, -1)
        for s in sides:
            row_e = ([v if s > 0 else -v for v in g], c if s > 0 else -c)
            row_f = (gf * s, cf * s)
            child_exact = rows_exact + [row_e]
            child_float = rows_float + [row_f]
            d = layer.right if s > 0 else layer.left
            self._push(row_f)
            try:
                if s == side_w or self.stopped is not None:  # out of budget: no LP, the child is left open
                    child_w = witness
                else:
                    child_w, hint = self.lp_point()
                    if child_w is None:
                        if self.certify_empty(child_exact, child_float, hint):
                            continue
                        self.ambiguous += 1
                self._neuron(k, j + 1, z, zf, zabs, ds + [d], child_exact, child_float, child_w, self._extend(last, z, j, d))
            finally:
                self._pop()

    def _extend(self, last, z: fmpq_mat, j: int, d: fmpq):
        """Add neuron ``j``'s exact contribution ``d W_L[:, j] Z[j, :n]`` to the decided part of the last layer."""
        if last is None:
            return None
        jdec, tails = last
        if d == 0:
            return last
        wl = self.layers[-1].w
        m, n = jdec.nrows(), self.n
        out = fmpq_mat(m, n, [jdec[i, c] + d * wl[i, j] * z[j, c] for i in range(m) for c in range(n)])
        return out, tails

    def _leaf(self, z: fmpq_mat, rows_exact: list, rows_float: list, witness) -> None:
        n = self.n
        jac = fmpq_mat(z.nrows(), n, [z[i, k] for i in range(z.nrows()) for k in range(n)])
        if self.bar is not None:
            self.bar.update(1)
        hint = None
        for attempt in range(2):
            if attempt == 1 or witness is None:
                witness, hint = self.lp_point()
                if witness is None:
                    break
            xq = [_q(v) for v in witness]
            if all(sum((a * v for a, v in zip(r, xq)), cc) > 0 for r, cc in rows_exact):
                self.best.add(jac, verified=True)
                return
        if self.certify_empty(rows_exact, rows_float, hint):
            return
        self.best.add(jac, verified=False)

    # ------------------------------------------------------------------ result
    def result(self) -> tuple[sympy.Expr | None, sympy.Expr | None, dict]:
        """``(exact, upper, details)``: ``exact`` when proven, else ``None`` and an exact upper bound."""
        best = self.best
        details = {"technique": "regions", "nodes": self.nodes, "lps": self.lps,
                   "verified_regions": best.verified_count - self.seeded, "seed_points_verified": self.seeded,
                   "pruned_by_bound": self.pruned_by_bound, "certificates": self.certificates,
                   "ambiguous_branches": self.ambiguous, "unverified_regions": len(best.unverified),
                   "solver": "HiGHS (highspy, warm-started), exact checks in python-flint fmpq"}
        if self.open_branches:
            return self._anytime(details)
        if best.lower < 0:
            if best.unverified:
                upper = max((_exact_norm(j, self.norm) for _, _, j in best.unverified), key=lambda v: sympy.N(v, 30))
                return None, upper, details
            return sympy.Integer(0), None, details  # no region at all cannot happen; kept for completeness
        cands = [j for hi, _, j in best.candidates if hi >= best.lower]
        exact_val = _max_exact([_exact_norm(j, self.norm) for j in cands])
        threats = [j for hi, _, j in best.unverified if hi > best.lower]
        if threats:
            values = [_exact_norm(j, self.norm) for j in threats]
            top = _max_exact(values + [exact_val])
            if top is not exact_val and compare_exact(top, exact_val) > 0:
                return None, top, {**details, "lower_exact": exact_val}
        return exact_val, None, details

    def _anytime(self, details: dict) -> tuple[None, sympy.Expr, dict]:
        """Stopped early: ``upper`` = max(best verified, unverified leaves, bounds of the open branches)."""
        best = self.best
        lower = None
        values = [sympy.Rational(self.open_bound)]  # the float bound as its exact binary value
        if best.lower >= 0:
            lower = _max_exact([_exact_norm(j, self.norm) for hi, _, j in best.candidates if hi >= best.lower])
            values.append(lower)
        values += [_exact_norm(j, self.norm) for hi, _, j in best.unverified if lower is None or hi > best.lower]
        info = {**details, "stopped": self.stopped, "open_branches": self.open_branches, "open_bound": self.open_bound}
        if lower is not None:
            info["lower_exact"] = lower
        return None, _max_exact(values), info


def _new_highs() -> highspy.Highs:
    """A silent HiGHS instance (the first construction in a process prints a banner on file descriptor 1)."""
    global _BANNER_DONE
    if _BANNER_DONE:
        return highspy.Highs()
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        h = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
    _BANNER_DONE = True
    return h


_BANNER_DONE = False


def _max_exact(values: list[sympy.Expr]) -> sympy.Expr:
    best = values[0]
    for v in values[1:]:
        if compare_exact(v, best) > 0:
            best = v
    return best


def _nullspace(mat: list[list[fmpq]], ncols: int) -> list[list[fmpq]]:
    """A basis of the right nullspace of an exact matrix (rows of length ``ncols``)."""
    if not mat:
        return [[fmpq(int(i == j)) for i in range(ncols)] for j in range(ncols)]
    m = fmpq_mat(len(mat), ncols, [v for r in mat for v in r])
    rref, rank = m.rref()
    pivots = []
    for i in range(rank):
        for j in range(ncols):
            if rref[i, j] != 0:
                pivots.append(j)
                break
    free = [j for j in range(ncols) if j not in pivots]
    basis = []
    for f in free:
        vec = [fmpq(0)] * ncols
        vec[f] = fmpq(1)
        for i, pj in enumerate(pivots):
            vec[pj] = -rref[i, f]
        basis.append(vec)
    return basis


def _check_certificate(rows: list[tuple[list[fmpq], fmpq]], y_float: np.ndarray, n: int) -> bool:
    """Exact check: some ``y >= 0, y != 0`` with ``Σ y_i a_i = 0`` and ``Σ y_i c_i <= 0`` on these rows."""
    k = len(rows)
    at = [[rows[i][0][r] for i in range(k)] for r in range(n)]  # A^T, n x k
    basis = _nullspace(at, k)
    if not basis:
        return False
    if len(basis) == 1:  # y is unique up to scale: try both signs
        trials = [[fmpq(1)], [fmpq(-1)]]
    else:
        nb = np.array([[_f(v) for v in b] for b in basis]).T  # k x d
        w, *_ = np.linalg.lstsq(nb, y_float / np.max(y_float), rcond=None)
        trials = [[_q(v) for v in w]]
    for wq in trials:
        y = [sum((wq[t] * basis[t][i] for t in range(len(basis))), fmpq(0)) for i in range(k)]
        if all(v >= 0 for v in y) and any(v > 0 for v in y):
            if sum((y[i] * rows[i][1] for i in range(k)), fmpq(0)) <= 0:
                return True
    return False


def regions_constant(stage_list: list[Stage], norm: str, domain=None, *, max_nodes: int = MAX_NODES,
                     max_input_dim: int = MAX_INPUT_DIM, max_neurons: int = MAX_NEURONS, time_limit: float | None = None,
                     progress: bool | Callable[[int, int], None] | None = None
                     ) -> tuple[sympy.Expr | None, sympy.Expr | None, dict]:
    """Enumerate the activation regions of a piecewise-linear network (see the module docstring).

    Returns ``(exact, upper, details)``: ``exact`` is the proven constant (sympy), or ``None`` with
    ``upper`` an exact upper bound when some leaf could be neither verified nor certified empty, or when the
    enumeration hit ``max_nodes``/``time_limit`` (then ``details["stopped"]`` says which; every branch left
    unexplored enters ``upper`` through its rigorous branch-and-bound norm bound).  ``details["lower_exact"]``,
    when present, is the best verified region's norm, a true lower bound of the constant.  ``progress``: ``True``
    draws a tqdm bar of the regions on stderr (``None``: when stderr is a terminal), or a callable
    ``progress(nodes, max_nodes)`` called every 50 search nodes and once at the end.
    """
    n = stage_list[0].weight.cols
    neurons = sum(st.weight.rows for st in stage_list[:-1])
    if n > max_input_dim or neurons > max_neurons:
        raise NotApplicableError(
            f"exact (regions): the network has input dimension {n} and {neurons} hidden neurons; exact region "
            f"enumeration is limited to input dimension {max_input_dim} and {max_neurons} neurons (the number of "
            "regions grows like neurons^dimension); use an upper bound such as lv.bound(net, 'k4') or pass "
            "max_input_dim=/max_neurons= to try anyway"
        )
    if neurons > 900:
        raise NotApplicableError("exact (regions): more than 900 hidden neurons exceed the recursion depth")
    en = _Enumerator(stage_list, norm, domain, max_nodes=max_nodes, time_limit=time_limit, progress=progress)
    en.seed()
    en.run()
    return en.result()

