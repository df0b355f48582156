"""KSDP, a certified semidefinite relaxation of K2 for l1 and l∞ (proof: ``proofs/ksdp.md``).

For l∞, row ``i`` of K2 is ``max e_i^T W_L D_{L-1} ⋯ D_1 W_1 s`` over ``s ∈ {±1}^{n_0}`` and the vertices
``d ∈ {α_l, β_l}`` of the slope boxes (the objective is affine in every single variable).  With
``z_l = W_l x_{l-1}``, ``x_0 = s`` and ``x_l = d_l ∘ z_l`` the vertex points satisfy, in
``v = (1, s, x_1, …, x_{L-1})``, the quadratic equations

* ``s_j^2 = 1`` and ``(x - α z)(x - β z) = 0`` for every neuron (and ``x = α z`` when ``α = β``).

Every multiplier vector ``μ`` and number ``t`` with ``Y = t e_0 e_0^T - Q_0 + Σ μ_m A_m ≻ 0`` proves
``row_i ≤ t`` (Shor's relaxation, weak duality).  The multipliers come from an SDP solver (cvxpy); the
certificate does not trust them: they are rounded to dyadic rationals (30 significant bits each), ``t`` is
recomputed from the Schur complement and rounded up, ``Y`` is rebuilt in exact rational arithmetic and
``Y ≻ 0`` is proven by a verified Cholesky factorisation.  A lossy certificate is repaired by mixing the
multipliers with those of a strictly feasible anchor, a badly scaled row is rescaled per neuron by powers of
two and solved again (kernel, scaling and solver adapters shared with LipSDP: :mod:`lipverify.sdp.certificate`,
:mod:`lipverify.sdp.scaling`, :mod:`lipverify.sdp.solvers`); the residual bound
``t + ρ B`` (``λ_min(Y) ≥ -ρ``, ``B ≥ ||v||^2``) is the last resort.  Each row is finally the minimum with the
KCP and K4 row bounds, so ``K2 ≤ KSDP ≤ min(K4, KCP)``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np
import scipy.sparse as sp

from ..errors import NotApplicableError
from ..ir.chain import LinearChain, to_fraction
from ..ir.passes import enclose
from ..ir.views import linear_chain
from ..network import Network
from ..norms import NormLike
from ..result import Bound, float_up
from ..rigorous import fro_sq_upper, matmul_up, sum_up, up
from ..sdp.certificate import (
    ANCHOR_MARGIN,
    LOSS_WARN,
    MARGINS,
    MIX_WEIGHTS,
    first_proven,
    float_enclosure,
    inflated,
    prove_shifted,
    round_multipliers,
    schur_max,
)
from ..sdp.scaling import (
    BALANCED,
    REBALANCE_ROUNDS,
    RHO_BALANCED,
    float_fractions,
    ldexp_exact,
    scale_entries,
    times_power_of_two,
)
from ..sdp.solvers import check_installed, clarabel_guard, fallback_order, solve_min_t
from .common import float_upper_bound, require_norm
from .kcp import kcp_rows
from .records import KSDP_SDPS, KSDP_SIZE, KSDP_WORK, limit_hint

#: default limit on the size of the relaxation matrix (``1 + n_0 + Σ_l n_l``)
MAX_SIZE = KSDP_SIZE.default
#: default limit on the number of SDPs (output rows for l∞, input columns for l1)
MAX_SDPS = KSDP_SDPS.default
#: relative loss (certified row over the solver's row value, minus 1) above which a row is rebalanced and
#: repaired (proofs/ksdp.md §3-§4).  Larger than LipSDP's 1e-7: CVXOPT's own value lies 1e-7 to 3e-7 below the
#: optimum on typical rows (its infeasibility), which no repair can recover; the repair then only doubled the time.
REPAIR_LOSS = 1e-6


def ksdp(net: Network, norm: NormLike = "inf", *, solver: str = "CVXOPT", max_size: int = MAX_SIZE,
         max_sdps: int = MAX_SDPS, max_work: int | None = None, time_limit: float | None = None,
         progress: Callable[[int, int], None] | None = None) -> Bound:
    """KSDP: a certified Shor (semidefinite) relaxation of K2, row by row (l∞) or column by column (l1).

    Claim: the value is an upper bound of ``K2 = max_D ||W_L D_{L-1} ⋯ D_1 W_1||_p`` (hence of the
    Lipschitz constant) and at most ``min(K4, KCP)`` up to outward rounding.  Assumptions: weights given
    as floats or exact rationals; IEEE binary64 arithmetic (see ``proofs/rigorous_arithmetic.md``).  The
    SDP solver's answer is only used as a hint: its multipliers are re-checked exactly (``proofs/ksdp.md``).
    Polynomial time: one SDP (an ``N x N`` LMI, ``N = 1 + n_0 + Σ_{l<L} n_l``) per output row (l∞) or input
    column (l1), solved by ``solver`` through cvxpy (default CVXOPT, Clarabel as a fallback on relaxations of size
    at most ``lipverify.sdp.solvers.CLARABEL_MAX_SIZE``; asking for Clarabel on a larger one raises
    ``NotApplicableError``);
    ``NotApplicableError`` when ``N > max_size`` or when more than ``max_sdps`` SDPs would be needed (both
    deterministic work limits).  If a row gets no certificate, that row falls back to ``min(K4, KCP)`` (listed in
    ``details["fallback_rows"]``); so do the rows beyond ``max_work`` (total work, ``N³`` per row's SDP, a
    deterministic limit: the rows with the largest ``min(K4, KCP)`` are solved first, the others are listed in
    ``details["work_capped_rows"]`` with the reason in ``details["work_note"]``; ``compare`` sets it by default) and
    the rows not started within ``time_limit`` seconds (an optional extra
    wall-clock cap, listed in ``details["time_capped_rows"]``), which keeps the value an upper bound.  ``details``
    has ``solver_value``, ``certified_value`` and ``relative_loss``; a loss above 1e-4 is also said in ``status``
    and ``details["note"]`` (``proofs/ksdp.md`` §3–§4).  ``progress(done_rows, total_rows)`` is called after every
    row (``compare``'s ``work_progress`` and the CLI's bar).

    >>> import lipverify as lv
    >>> net = lv.Network([lv.Dense([[1, -1], [1, 1]]), lv.ReLU(), lv.Dense([[1, 1]])])
    >>> round(float(lv.bound(net, "ksdp", norm="inf").value), 4)  # K2 = 2, K4 = 3: the relaxation gives 1 + √2
    2.4142
    """
    started = time.perf_counter()
    p = require_norm("ksdp", norm, ("1", "inf"), "the relaxation bounds an l1/l∞ norm row by row")
    check_installed(solver, "ksdp")
    chain = linear_chain(net, "ksdp")
    if p == "1":
        chain = chain.transpose()
    if time_limit is not None and not time_limit > 0:
        raise ValueError(f"ksdp: time_limit must be > 0 seconds or None, got {time_limit!r}")
    if max_work is not None and not (isinstance(max_work, (int, np.integer)) and max_work >= 0):
        raise ValueError(f"ksdp: max_work must be an integer >= 0 or None, got {max_work!r}")
    layout = _Layout(chain)
    if layout.uncertain:  # the work limits first: they are cheap to check, the exact weights are not
        clarabel_guard(solver, layout.size, "ksdp")  # the size guard shared with lipsdp (Clarabel's memory explodes)
        if layout.size > max_size:
            raise NotApplicableError(
                f"ksdp: the relaxation has size {layout.size} > {limit_hint(KSDP_SIZE, max_size)}; raise it (e.g. "
                f"{limit_hint(KSDP_SIZE, layout.size)}; one SDP of this size per output row for l∞ / input column for "
                "l1) or use the polynomial bounds kcp or k4"
            )
        if chain.n_out > max_sdps:
            what = "input column for l1" if p == "1" else "output row for l∞"
            raise NotApplicableError(
                f"ksdp: {chain.n_out} SDPs of size {layout.size} needed (one per {what}) > "
                f"{limit_hint(KSDP_SDPS, max_sdps)}; raise it (e.g. {limit_hint(KSDP_SDPS, chain.n_out)}) or use the "
                "polynomial bounds kcp or k4"
            )
    exact = _exact_weights(chain)
    base = np.minimum(kcp_rows(chain), _k4_rows(chain))
    details: dict = {"size": layout.size, "fallback_rows": [], "certified_rows": 0, "rho_rows": [],
                     "rebalanced_rows": [], "max_work": max_work, "work_capped_rows": []}
    assumptions = ("floating point with rigorous rounding-error bounds", "SDP multipliers re-checked in exact arithmetic")
    if not layout.uncertain:  # a linear chain: K4 and KCP are exact already
        if progress is not None:
            progress(chain.n_out, chain.n_out)
        return float_upper_bound("ksdp", p, float(np.max(base)) if base.size else 0.0, started, assumptions,
                                 details=details)
    # exact power-of-two rescaling of every layer keeps the SDP well conditioned
    shifts = [_exponent(w) for w in exact]
    scaled = [times_power_of_two(w, -e) for w, e in zip(exact, shifts)]
    total_shift = sum(shifts)
    problem = _Relaxation(layout, scaled, chain.slopes)
    norm_bound = problem.norm_bound()
    value = solver_value = sdp_solver = sdp_certified = 0.0
    mixes: list = []
    deadline = math.inf if time_limit is None else started + time_limit
    details["time_capped_rows"] = []
    # the work budget: N³ per row's SDP; the rows with the largest fallback values are solved first
    allowed = chain.n_out if max_work is None else min(chain.n_out, max_work // layout.size**3)
    solved = set(np.argsort(-base, kind="stable")[:allowed].tolist())
    if allowed < chain.n_out:
        details["work_note"] = (
            f"ksdp: {chain.n_out - allowed} of {chain.n_out} rows keep min(K4, KCP): their SDPs (side {layout.size}, "
            f"work {layout.size}³ each) exceed the total work budget {limit_hint(KSDP_WORK, max_work)}; raise it (e.g. "
            f"{limit_hint(KSDP_WORK, chain.n_out * layout.size**3)}) to solve every row")
        assumptions += (details["work_note"],)
    for i in range(chain.n_out):
        row = suggested = float(base[i])
        if i not in solved:  # past the work budget: this row keeps min(K4, KCP), still >= the K2 row
            details["work_capped_rows"].append(i)
            value, solver_value = max(value, row), max(solver_value, row)
            if progress is not None:
                progress(i + 1, chain.n_out)
            continue
        if time.perf_counter() > deadline:  # out of time: this row keeps min(K4, KCP), still >= the K2 row
            details["time_capped_rows"].append(i)
            value, solver_value = max(value, row), max(solver_value, row)
            if progress is not None:
                progress(i + 1, chain.n_out)
            continue
        cert = _certify_row(problem, i, norm_bound, solver)
        if cert is None:
            details["fallback_rows"].append(i)
        else:
            details["certified_rows"] += 1
            certified = ldexp_exact(cert.value, total_shift + cert.shift)
            hint = ldexp_exact(cert.solver_t, total_shift + cert.shift)  # a float times 2^e: exact
            row = min(row, certified)
            suggested = min(suggested, hint)
            sdp_solver, sdp_certified = max(sdp_solver, hint), max(sdp_certified, certified)
            if cert.mix is not None:
                mixes.append(cert.mix)
            if cert.method == "rho":
                details["rho_rows"].append(i)
            if cert.rebalanced:
                details["rebalanced_rows"].append(i)
        value = max(value, row)
        solver_value = max(solver_value, suggested)
        if progress is not None:
            progress(i + 1, chain.n_out)
    loss = value / solver_value - 1 if solver_value > 0 else (0.0 if value == 0 else math.inf)
    details.update(solver_value=solver_value, certified_value=value, relative_loss=loss,
                   sdp_solver_value=sdp_solver, sdp_certified_value=sdp_certified, mix=max(mixes, default=None))
    status, note = _loss_report(value, solver_value)
    if note is not None:
        details["note"] = note
    return float_upper_bound("ksdp", p, value, started, assumptions, solver=solver, status=status, details=details)


def _loss_report(value: float, solver_value: float) -> tuple[str | None, str | None]:
    """``(status, note)`` when the certified value is more than ``LOSS_WARN`` relative above the solver's value,
    else ``(None, None)``."""
    loss = value / solver_value - 1 if solver_value > 0 else (0.0 if value == 0 else math.inf)
    if not loss > LOSS_WARN:
        return None, None
    note = (f"the certified value {value:.9g} is {loss:.2e} relative above the solver's value {solver_value:.9g}: "
            "the solver's multipliers could not be repaired closer (proofs/ksdp.md §3); the value is still a "
            "proven upper bound")
    return f"certified value {loss:.1e} relative above the solver's", note


def _certify_row(problem: _Relaxation, i: int, norm_bound: float, solver: str) -> RowCertificate | None:
    """Row ``i`` certified as in ``proofs/ksdp.md`` §3–§4: a first certificate from the solver's multipliers; if it
    fails, loses more than ``REPAIR_LOSS`` or ``t`` is far from 1, the relaxation is rescaled by powers of two
    and solved again until balanced; if the certificate of the (rescaled) problem still loses more than
    ``REPAIR_LOSS``, mixtures with a strictly feasible anchor are tried.  The smallest certified value wins."""
    hint = problem._solve(i, solver)
    if hint is None:
        return None
    first = problem.certify_row(i, norm_bound, solver, hint=hint, repair=False)
    current, shift, rounds = problem, 0, 0
    if first is None or _lossy(first) or abs(math.log2(max(hint[0], 2.0**-1000))) > RHO_BALANCED:
        while rounds < REBALANCE_ROUNDS:
            balanced = current.rebalanced(i, *hint)
            if balanced is None:
                break
            new_hint = balanced[0]._solve(i, solver)
            if new_hint is None:
                break  # keep the last solution (on the previous scaling)
            current, shift, hint = balanced[0], shift + balanced[1], new_hint
            rounds += 1
    second = first
    if rounds:
        second = current.certify_row(i, current.norm_bound(), solver, hint=hint, repair=False)
        second = None if second is None else replace(second, shift=shift, rebalanced=rounds)
    if second is None or _lossy(second):
        repaired = current.certify_row(i, current.norm_bound(), solver, hint=hint, repair=True)
        if repaired is not None and (second is None or repaired.value < second.value):
            second = replace(repaired, shift=shift, rebalanced=rounds)
    if first is None or (second is not None and ldexp_exact(second.value, shift) < first.value):
        return second
    return first


def _lossy(cert: RowCertificate) -> bool:
    return cert.value - cert.solver_t > REPAIR_LOSS * max(abs(cert.solver_t), 2.0**-30)


def _exact_weights(chain: LinearChain) -> list[np.ndarray]:
    if chain.exact is not None:
        return list(chain.exact)
    if any(r is not None and np.any(r) for r in chain.radii):
        raise NotApplicableError(
            "ksdp: some weights are known only up to a rounding radius (irrational entries); the exact "
            "certificate needs float or rational weights: use kcp or k4"
        )
    return [float_fractions(w.toarray() if hasattr(w, "toarray") else np.asarray(w, dtype=np.float64))
            for w in chain.weights]


def _exponent(w: np.ndarray) -> int:
    m = max((abs(x) for x in w.flat), default=Fraction(0))
    if m == 0:
        return 0
    try:
        return math.frexp(float(m))[1]
    except OverflowError:
        return 0  # no rescaling; the float conversions below then fail loudly or the row falls back


def _k4_rows(chain: LinearChain) -> np.ndarray:
    """Rigorous K4 row sums of the chain (the l∞ K4 of each output row)."""
    t = chain.transpose()
    rows = np.empty(chain.n_out)
    for start in range(0, chain.n_out, 512):
        cols = np.arange(start, min(start + 512, chain.n_out))
        rows[cols] = sum_up(enclose(t, cols).magnitude(), axis=0)
    return rows


class _Layout:
    """Indices of the relaxation variables: 0 is the constant 1, then ``s``, then ``x_1, …, x_{L-1}``."""

    def __init__(self, chain: LinearChain):
        n0 = chain.n_in
        self.s = np.arange(1, 1 + n0)
        pos = 1 + n0
        self.x: list[np.ndarray] = []
        for l in range(len(chain.slopes)):
            n = chain.weights[l].shape[0]
            self.x.append(np.arange(pos, pos + n))
            pos += n
        self.size = pos
        self.uncertain = any(s.lo != s.hi for s in chain.slopes)

    def inputs(self, l: int) -> np.ndarray:
        """Indices of the variables that ``W_{l+1}`` multiplies (0-based layer ``l``)."""
        return self.s if l == 0 else self.x[l - 1]


class _Relaxation:
    """The quadratic constraints as homogeneous polynomials ``{(i, j): coef}`` (``i <= j``) in exact rationals."""

    def __init__(self, layout: _Layout, weights: list[np.ndarray], slopes):
        self.layout, self.weights, self.slopes = layout, weights, slopes
        self._mats: list | None = None
        self._coo_cache: tuple | None = None
        self.constraints: list[dict[tuple[int, int], Fraction]] = []
        self.neuron_constraints: list[np.ndarray] = []  # index of every neuron's quadratic constraint, per layer
        for j in layout.s:
            self._add({(j, j): Fraction(1), (0, 0): Fraction(-1)})
        for l, s in enumerate(slopes):
            a, b = to_fraction(s.lo), to_fraction(s.hi)
            w = weights[l]
            prev = layout.inputs(l)
            self.neuron_constraints.append(np.zeros(w.shape[0], dtype=np.int64))
            for k in range(w.shape[0]):
                x = int(layout.x[l][k])
                z = {int(prev[m]): w[k, m] for m in range(w.shape[1]) if w[k, m] != 0}
                # (x - a z)(x - b z) = x^2 - (a+b) x z + ab z^2 = 0: x = d z with d in {a, b}
                self.neuron_constraints[l][k] = len(self.constraints)
                zz = _scaled(_square(z), a * b) if a * b != 0 else {}  # ReLU: ab = 0, no z^2 term (and no work)
                self._add(_poly_sum({(x, x): Fraction(1)}, _lin_times(z, x, -(a + b)), zz))
                if a == b:  # a point slope: also the linear x - a z = 0
                    self._add(_poly_sum(_mono(x, 0), _lin_times(z, 0, -a)))

    def _add(self, poly: dict) -> None:
        self.constraints.append({k: v for k, v in poly.items() if v != 0})

    def objective(self, i: int) -> dict[tuple[int, int], Fraction]:
        """``e_i^T W_L x_{L-1}`` as a polynomial (times the constant variable)."""
        last = self.layout.inputs(len(self.weights) - 1)
        w = self.weights[-1]
        return {_key(0, int(last[m])): w[i, m] for m in range(w.shape[1]) if w[i, m] != 0}

    def norm_bound(self) -> float:
        """A float ``B >= ||v||^2`` for every feasible ``v`` (from ``|z| <= |W| ⋯ |W| 1`` times the slope magnitudes)."""
        total = float(1 + self.layout.s.size)
        u = np.ones((self.layout.s.size, 1))
        for l, s in enumerate(self.slopes):
            w = np.array([[float(abs(x)) for x in row] for row in self.weights[l]]).reshape(self.weights[l].shape)
            w = up(w)  # |float(x)| may round down
            mag = float_up(s.magnitude)
            u = up(matmul_up(w, u) * mag)  # bound of |x_l|
            total = float(up(total + fro_sq_upper(u)))
        if not math.isfinite(total):
            return math.inf
        return total

    def rebalanced(self, i: int, t_hat: float, mu: np.ndarray) -> tuple[_Relaxation, int] | None:
        """The relaxation of the chain ``W_L'' = 2^-d W_L N_{L-1}``, ``W_l'' = N_l^-1 W_l N_{l-1}``
        (``N_l = diag(2^n)`` on the hidden neurons, ``N_0 = I``), with ``d`` and ``n`` chosen from a solution
        ``(t_hat, mu)`` of row ``i`` so that the new solution has ``t`` and every neuron's multiplier near 1
        (``proofs/ksdp.md`` §4); ``(relaxation, d)``, or ``None`` when already balanced within ``4**BALANCED``."""
        if not (math.isfinite(t_hat) and t_hat > 0) or not np.all(np.isfinite(mu)):
            return None
        d = round(math.log2(t_hat))
        top = float(np.max(np.abs(mu))) if mu.size else 0.0
        exps = []
        for idx in self.neuron_constraints:
            lam = np.abs(mu[idx])
            with np.errstate(divide="ignore"):
                logs = np.log(lam) / math.log(4) - d / 2  # mu'' = 2^-d 4^n mu
            keep = np.isfinite(logs) & (lam > top * 2.0**-40)
            exps.append(np.where(keep, -np.rint(np.clip(logs, -40, 40)), 0).astype(np.int64))
        if abs(d) <= BALANCED and all(np.all(np.abs(n) <= BALANCED) for n in exps):
            return None
        weights = []
        depth = len(self.weights)
        for k, w in enumerate(self.weights):
            rows = exps[k] if k < depth - 1 else np.full(w.shape[0], d)
            cols = exps[k - 1] if k > 0 else np.zeros(w.shape[1], dtype=np.int64)
            wf = np.array([float(x) for x in w.flat], dtype=np.float64).reshape(w.shape)
            got = scale_entries(wf, None, w, rows, cols)
            if got is None:
                return None
            weights.append(got[2])
        return _Relaxation(self.layout, weights, self.slopes), d

    def certify_row(self, i: int, norm_bound: float, solver: str, hint=None, repair: bool = True) -> RowCertificate | None:
        """A certified upper bound of row ``i`` (scaled units), or ``None`` when no certificate was found.

        ``proofs/ksdp.md`` §3: the solver's multipliers (``hint = (t, mu)``, else solved here) are rounded (30
        significant bits each), ``t`` is recomputed from the Schur complement and rounded up with a small margin,
        and ``Y(t) ≻ 0`` is proven.  With ``repair``, mixtures with a strictly feasible anchor (one more solve)
        are candidates too.  The fallback is the residual bound ``t + rho B`` of §2 on the solver's multipliers.
        """
        if not math.isfinite(norm_bound):
            return None
        if hint is None:
            hint = self._solve(i, solver)
        if hint is None:
            return None
        t_hat, mu = hint
        candidates = self._candidates(i, [(mu, 0.0)])
        if repair:
            eps = ANCHOR_MARGIN * max(float(np.max(np.abs(mu))) if mu.size else 0.0, 1.0)
            anchor = self._solve(i, solver, margin=eps)
            if anchor is not None:
                candidates += self._candidates(i, [((1.0 - w) * mu + w * anchor[1], float(w)) for w in MIX_WEIGHTS if w > 0])
        best = self._first_proven(i, candidates)
        if best is None:  # §2: the residual bound t + rho B on the solver's own multipliers
            bound = self._check(i, t_hat, mu, norm_bound)
            return None if bound is None else RowCertificate(bound, t_hat, "rho", None, None)
        return RowCertificate(best.value, t_hat, best.method, best.mix, best.margin)

    def _candidates(self, i: int, multipliers) -> list:
        """``(t*, mix, mu_q)`` for every ``(mu, mix)``: ``mu`` rounded per entry to 30 significant bits and
        ``t*`` its Schur-complement estimate; multipliers whose hidden block is not positive definite are dropped."""
        out = []
        for mu, mix in multipliers:
            if not np.all(np.isfinite(mu)):
                continue
            (mu_q,), _ = round_multipliers([mu], 0.0, signed=True)
            t_star = self._schur_t(i, np.array([float(x) for x in mu_q]))
            if t_star is not None:
                out.append((t_star, mix, mu_q))
        return out

    def _first_proven(self, i: int, candidates) -> RowCertificate | None:
        assembled: dict = {}  # the exact Y(0) of a candidate, built once for both passes of first_proven

        def prove(cand, margins):
            t_star, _, mu_q = cand
            if id(cand) not in assembled:
                assembled[id(cand)] = self._exact_y(i, mu_q)
            y = assembled[id(cand)]
            if y is None:
                return None
            for m in margins:
                try:
                    t = float(inflated(t_star, m))  # exact: 30 significant bits
                except OverflowError:
                    return None
                if prove_shifted(y, t, 0.0):
                    return t, m
            return None

        found = first_proven(candidates, prove, MARGINS)
        if found is None:
            return None
        (_, mix, _), (value, margin) = found
        return RowCertificate(value, math.nan, "schur", mix, margin)

    # -- the SDP (a hint only) -------------------------------------------------------------------------
    def _matrices(self) -> list:
        """The constraint matrices ``A_m`` as float sparse matrices (the solver side only)."""
        if self._mats is None:
            n = self.layout.size
            mats = []
            for poly in self.constraints:
                rows, cols, vals = [], [], []
                for (a, b), c in poly.items():
                    if a == b:
                        rows.append(a)
                        cols.append(b)
                        vals.append(float(c))
                    else:
                        rows += [a, b]
                        cols += [b, a]
                        vals += [float(c) / 2] * 2
                mats.append(sp.csr_matrix((vals, (rows, cols)), shape=(n, n)))
            self._mats = mats
        return self._mats

    def _coo(self):
        """All ``A_m`` in one coordinate list ``(rows, cols, values, m)`` (for ``Σ μ_m A_m`` in one sparse sum)."""
        if self._coo_cache is None:
            parts = [(a.tocoo(), m) for m, a in enumerate(self._matrices())]
            self._coo_cache = (_cat([c.row for c, _ in parts], np.int64), _cat([c.col for c, _ in parts], np.int64),
                               _cat([c.data for c, _ in parts], np.float64),
                               _cat([np.full(c.nnz, m) for c, m in parts], np.int64))
        return self._coo_cache

    def _objective_matrix(self, i: int) -> np.ndarray:
        n = self.layout.size
        q = np.zeros((n, n))
        for (a, b), c in self.objective(i).items():
            q[a, b] -= float(c) / 2
            q[b, a] -= float(c) / 2
        return q

    def _solve(self, i: int, solver: str, margin: float = 0.0):
        """``(t, μ)`` from ``min t s.t. t e_0 e_0^T - Q_0 + Σ μ_m A_m ⪰ 0`` (one LMI in ``1 + m`` unknowns), or None.

        With ``margin > 0`` the LMI is ``Y - margin E_r ⪰ 0`` (``E_r`` the identity except at ``(0, 0)``): a
        strictly feasible anchor for the repair of ``proofs/ksdp.md`` §3."""
        n = self.layout.size
        q = self._objective_matrix(i)
        if margin:
            q[np.arange(1, n), np.arange(1, n)] -= margin
        # the requested solver, then Clarabel as a fallback (only on small relaxations: the Clarabel size guard)
        return solve_min_t(q, self._matrices(), fallback_order(solver, n))

    def _schur_t(self, i: int, mu: np.ndarray) -> float | None:
        """Float estimate of the least ``t`` with ``Y(t) ⪰ 0`` for these multipliers: with ``K = Y(0)``,
        ``t* = k_r0^T K_rr^-1 k_r0 - K_00`` (``None`` when ``K_rr`` is not numerically positive definite)."""
        rows, cols, vals, owner = self._coo()
        n = self.layout.size
        k = self._objective_matrix(i) + sp.coo_matrix((vals * mu[owner], (rows, cols)), shape=(n, n)).toarray()
        t = schur_max(k[0, 0], k[1:, 0], k[1:, 1:])
        return t if t is not None and math.isfinite(t) else None

    # -- the certificate (exact) -----------------------------------------------------------------------
    def _exact_y(self, i: int, mu) -> tuple[np.ndarray, float] | None:
        """``Y(0) = -Q_0 + Σ μ_m A_m`` assembled exactly from the multipliers (dyadic rationals), rounded to floats
        entry by entry (correctly rounded), with a bound of the spectral norm of the rounding error."""
        n = self.layout.size
        y = np.full((n, n), Fraction(0), dtype=object)
        for m, poly in enumerate(self.constraints):
            coef = Fraction(mu[m])
            if coef == 0:
                continue
            for (a, b), c in poly.items():
                _add_sym(y, a, b, coef * c)
        for (a, b), c in self.objective(i).items():
            _add_sym(y, a, b, -c)
        # y is the exact Y - t e0 e0^T; round it to floats (correctly rounded, error <= u |fl| + eta)
        return float_enclosure(y)

    def _check(self, i: int, t: float, mu: np.ndarray, norm_bound: float) -> float | None:
        """The residual bound of ``proofs/ksdp.md`` §2: ``t + rho B`` with ``Y(t) + rho I ≻ 0`` proven, for any
        float ``t`` and multipliers ``mu`` (or ``None``)."""
        y = self._exact_y(i, [float(x) for x in mu])
        if y is None:
            return None
        yf = y[0]
        h0 = yf.copy()
        h0[0, 0] += t
        lam = float(np.linalg.eigvalsh(h0)[0])
        scale = max(1.0, float(np.max(np.abs(h0))))
        rho = max(0.0, -lam) + 1e-12 * scale
        for _ in range(12):
            if prove_shifted(y, t, rho):
                bound = float(up(t + float(up(rho * norm_bound))))
                return bound if math.isfinite(bound) else None
            rho = rho * 10 + 1e-10 * scale
        return None


@dataclass(frozen=True)
class RowCertificate:
    """A proven bound ``value`` of one row (scaled units), the solver's ``solver_t``, how it was proven
    (``"schur"``: ``Y(value) ≻ 0``; ``"rho"``: the residual bound ``t + rho B``), the mixing weight toward the
    anchor (``0.0``: the solver's own multipliers; ``None`` for ``"rho"``) and the relative margin on ``t``."""

    value: float
    solver_t: float
    method: str
    mix: float | None
    margin: float | None
    shift: int = 0  # value and solver_t are in units of 2**shift (rebalanced relaxation, proofs/ksdp.md §4)
    rebalanced: int = 0


def _cat(parts: list, dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)


def _key(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a <= b else (b, a)


def _mono(a: int, b: int) -> dict:
    return {_key(a, b): Fraction(1)}


def _lin_times(z: dict, var: int, factor: Fraction) -> dict:
    """``factor * var * z`` for a linear form ``z = {index: coef}``."""
    out: dict = {}
    for m, c in z.items():
        k = _key(var, m)
        out[k] = out.get(k, Fraction(0)) + factor * c
    return out


def _square(z: dict) -> dict:
    out: dict = {}
    items = list(z.items())
    for p, (m1, c1) in enumerate(items):
        for m2, c2 in items[p:]:
            k = _key(m1, m2)
            out[k] = out.get(k, Fraction(0)) + (c1 * c2 if m1 == m2 else 2 * c1 * c2)
    return out


def _scaled(poly: dict, factor: Fraction) -> dict:
    return {k: factor * v for k, v in poly.items()}


def _poly_sum(*polys: dict) -> dict:
    out: dict = {}
    for poly in polys:
        for k, v in poly.items():
            out[k] = out.get(k, Fraction(0)) + v
    return out


def _add_sym(y: np.ndarray, a: int, b: int, c: Fraction) -> None:
    if a == b:
        y[a, a] += c
    else:
        half = c / 2
        y[a, b] += half
        y[b, a] += half
