"""The SDP solver adapters (untrusted: they only suggest multipliers; :mod:`lipverify.sdp.certificate` proves).

* LipSDP, always on the problem reduced to the range of ``W_1^T`` (:func:`reduce_input`, ``proofs/lipsdp.md``
  §6), through lipverify's own primal-dual interior-point method (:class:`StructuredIPM`, :func:`solve_ipm`;
  numpy only, the default), through CVXOPT directly (``conelp`` with a KKT solver that uses the rank-2 structure
  of every multiplier's matrix, :class:`StructuredLMI`, :func:`solve_cvxopt`), or through the block-structured
  cvxpy formulation :func:`formulate` with SCS or Clarabel; :func:`solve_lipsdp` tries them in order.
* KSDP's Shor relaxation ``min t s.t. t e_0 e_0^T + Q + Σ μ_m A_m ⪰ 0`` through cvxpy (:func:`solve_min_t`).
* The solver names, the fallback order and the Clarabel size guard (:func:`clarabel_guard`,
  :func:`fallback_order`): Clarabel only on LMIs of side ``<= CLARABEL_MAX_SIZE`` (its memory use explodes:
  more than 24 GB at side 210), for both methods.

cvxpy and CVXOPT are imported inside the functions, never when this module is imported, and neither on the
IPM path (``tests/test_lipsdp_structure.py``).
Proofs of what the suggestions are used for: ``proofs/lipsdp.md``, ``proofs/ksdp.md``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings

import numpy as np
import scipy.linalg
import scipy.linalg.blas
import scipy.sparse as sp

from ..errors import NotApplicableError, SolverError
from .certificate import LipSDPProblem

#: Clarabel is only allowed on LMIs up to this side (it ran out of 24 GB at 210)
CLARABEL_MAX_SIZE = 40
#: solvers tried, in order, when ``solver=None``
DEFAULT_SOLVERS = ("IPM", "CVXOPT", "SCS")
#: the external SDP solvers (each one a declared dependency)
SOLVERS = ("CVXOPT", "SCS", "CLARABEL")
#: LipSDP's solvers: ``IPM`` is lipverify's own structured interior-point method (:class:`StructuredIPM`), then the
#: external ones
LIPSDP_SOLVERS = ("IPM",) + SOLVERS
#: largest coefficient matrix ``W^T diag(lambda) W`` the cvxpy formulation (SCS, Clarabel) may build
FORMULATE_MAX_ENTRIES = 20_000_000


# --------------------------------------------------------------------------- solver names and the Clarabel guard


def clarabel_guard(name: str, size: int, who: str) -> None:
    """Raise :class:`NotApplicableError` when ``name`` is Clarabel and the LMI side ``size`` exceeds
    :data:`CLARABEL_MAX_SIZE`."""
    if str(name).upper() == "CLARABEL" and size > CLARABEL_MAX_SIZE:
        raise NotApplicableError(
            f"{who}: Clarabel is only allowed on tiny LMIs (side <= {CLARABEL_MAX_SIZE}); this one has side {size} "
            "and Clarabel's memory use explodes (>24 GB at side 210): use solver='CVXOPT' or 'SCS'"
        )


def fallback_order(solver: str, size: int, fallback: str = "CLARABEL") -> tuple[str, ...]:
    """``solver``, then ``fallback`` unless it is Clarabel and the LMI side exceeds :data:`CLARABEL_MAX_SIZE`."""
    names = [solver]
    if fallback != solver and not (fallback.upper() == "CLARABEL" and size > CLARABEL_MAX_SIZE):
        names.append(fallback)
    return tuple(names)


def solver_list(solver: str | None, size: int) -> tuple[str, ...]:
    """LipSDP's solvers: ``DEFAULT_SOLVERS`` for ``None``, else the one named (Clarabel only on tiny LMIs)."""
    if solver is None:
        return DEFAULT_SOLVERS
    name = str(solver).upper()
    if name not in LIPSDP_SOLVERS:
        raise ValueError(f"lipsdp: solver must be one of {', '.join(LIPSDP_SOLVERS)} (or None for IPM, CVXOPT, then SCS), "
                         f"got {solver!r}")
    clarabel_guard(name, size, "lipsdp")
    return (name,)


def check_installed(solver: str, who: str) -> None:
    """Raise ``ValueError`` unless cvxpy knows ``solver`` and it is installed."""
    import cvxpy as cp

    installed = cp.installed_solvers()
    if solver not in installed:
        raise ValueError(f"{who}: unknown or unavailable SDP solver {solver!r}; installed: {', '.join(installed)}")


# --------------------------------------------------------------------------- KSDP: min t over one LMI


def solve_min_t(q: np.ndarray, mats: list, solvers: tuple[str, ...]):
    """``(t, μ)`` from ``min t s.t. t e_0 e_0^T + q + Σ μ_m mats[m] ⪰ 0`` (free ``μ``) through cvxpy, trying
    ``solvers`` in order (see :func:`fallback_order`); ``None`` when none returns finite values.  The status is
    not read: the certificate re-checks everything (``proofs/ksdp.md`` §3)."""
    import cvxpy as cp

    n = q.shape[0]
    e00 = np.zeros((n, n))
    e00[0, 0] = 1.0
    mu = cp.Variable(len(mats))
    t = cp.Variable()
    y = t * e00 + q + sum(mu[m] * mats[m] for m in range(len(mats)))
    prob = cp.Problem(cp.Minimize(t), [y >> 0])
    for name in solvers:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                prob.solve(solver=name)
        except (cp.error.SolverError, ArithmeticError):
            continue
        if mu.value is None or t.value is None or not np.all(np.isfinite(mu.value)) or not math.isfinite(t.value):
            continue
        return float(t.value), np.asarray(mu.value, dtype=np.float64)
    return None


# --------------------------------------------------------------------------- LipSDP


def formulate(problem: LipSDPProblem, variant: str = "neuron", margin: float = 0.0):
    """The cvxpy problem ``min rho  s.t.  H(rho, lambda) ⪰ 0, lambda >= 0`` built block by block
    (``H - margin E_hidden ⪰ 0`` when ``margin > 0``: a strict-feasibility margin on the hidden blocks).

    Structure used: ``H`` is block tridiagonal (``cp.bmat`` with zero blocks as empty sparse constants);
    ``Lambda W`` is an elementwise product with a broadcast column (one coefficient per weight entry, no
    Kronecker products); ``W^T Lambda W`` (only when ``alpha beta != 0``) is one constant matrix applied to
    ``lambda``.  Returns ``(problem, rho, lambdas)`` with ``lambdas[l]`` a cvxpy expression of size ``n_{l+1}``.
    """
    import cvxpy as cp

    if variant not in ("neuron", "layer"):
        raise ValueError(f"variant must be 'neuron' or 'layer', got {variant!r}")
    ws, sl = problem.weights, problem.slopes
    n = problem.depth
    sizes = problem.sizes
    rho = cp.Variable(name="rho")
    lams, lam_exprs = [], []
    for k, s in enumerate(problem.hidden):
        if variant == "neuron":
            v = cp.Variable(s, nonneg=True, name=f"lambda{k + 1}")
            lam_exprs.append(v)
        else:
            v = cp.Variable(nonneg=True, name=f"lambda{k + 1}")
            lam_exprs.append(v * np.ones(s))
        lams.append(v)
    diag: list = [[] for _ in sizes]
    lower: list = []
    diag[0].append(rho * sp.identity(sizes[0], format="csr"))
    for k in range(1, n):
        a, b = sl[k - 1]
        c, pp = problem.slope_terms(k - 1)
        w = ws[k - 1]
        lam = lams[k - 1]
        m = w.shape[1]
        if variant == "neuron":
            diag[k].append(cp.diag(lam))
            lw = cp.multiply(cp.reshape(lam, (w.shape[0], 1), order="F"), w)
        else:
            diag[k].append(lam * sp.identity(w.shape[0], format="csr"))
            lw = lam * w
        if np.any(pp != 0):
            if variant == "neuron":
                if w.shape[0] * m * m > FORMULATE_MAX_ENTRIES:
                    raise NotApplicableError(
                        f"lipsdp: the cvxpy formulation of layer {k} (slopes [{a}, {b}], {w.shape[0]} neurons, "
                        f"{m} inputs) needs a dense {m * m} x {w.shape[0]} coefficient matrix; use solver='CVXOPT'"
                    )
                g = (w[:, :, None] * w[:, None, :]).reshape(w.shape[0], m * m).T
                wtlw = cp.reshape((g * pp) @ lam, (m, m), order="F")
            else:
                wtlw = lam * (w.T @ (np.broadcast_to(pp, (w.shape[0],))[:, None] * w))
            diag[k - 1].append(wtlw)
        if np.ndim(c):
            lower.append(cp.multiply(-np.broadcast_to(c[:, None], w.shape), lw))
        else:
            lower.append(-c * lw)
    diag[n - 1].append(-(ws[-1].T @ ws[-1]))
    if margin:
        for k in range(1, n):
            diag[k].append(-margin * sp.identity(sizes[k], format="csr"))
    blocks = []
    for i in range(n):
        row = []
        for j in range(n):
            if i == j:
                row.append(sum(diag[i][1:], diag[i][0]))
            elif i == j + 1:
                row.append(lower[j])
            elif j == i + 1:
                row.append(lower[i].T)
            else:
                row.append(sp.csr_matrix((sizes[i], sizes[j])))
        blocks.append(row)
    h = cp.bmat(blocks) if n > 1 else blocks[0][0]
    prob = cp.Problem(cp.Minimize(rho), [h >> 0])
    return prob, rho, lam_exprs



class StructuredLMI:
    """The LipSDP LMI as linear operators for CVXOPT's ``conelp`` with a custom KKT solver.

    Variables ``x = (rho, mu)``; ``lambda = J mu`` (``J = I`` for LipSDP-Neuron, one column per layer for
    LipSDP-Layer).  Cone constraints: ``mu >= 0`` ('l' cone) and ``H = rho E_0 + sum_i lambda_i F_i - Q ⪰ 0``
    ('s' cone of side N).  Each neuron's ``F_i = U_i S_i U_i^T`` has rank <= 2 (``U_i = [e_i, w_i]``), so the
    normal matrix ``G^T W^-1 W^-T G`` costs ``O(m N^2 + m^2 N)`` per iteration instead of the ``O(m N^3)``
    of a generic dense LMI column scaling.  Only the solver's suggestion comes from here; the bound is
    certified separately (:func:`lipverify.sdp.certificate.certify`).
    """

    def __init__(self, problem: LipSDPProblem, variant: str, margin: float = 0.0):
        self.problem = problem
        self.sizes = problem.sizes
        self.offs = np.concatenate([[0], np.cumsum(self.sizes)]).astype(int)
        self.n = int(self.offs[-1])
        self.n0 = self.sizes[0]
        self.m = sum(problem.hidden)
        self.layers = []  # (layer k >= 1, W_k, c_k = (a+b)/2, d_k = ab): per neuron (arrays) or per layer (floats)
        for k in range(1, problem.depth):
            c, d = problem.slope_terms(k - 1)
            self.layers.append((k, problem.weights[k - 1], c, d))
        self.uniform = all(np.ndim(c) == 0 for _, _, c, _ in self.layers)
        if variant == "neuron":
            self.j = sp.identity(self.m, format="csr")
        else:
            cols = np.concatenate([np.full(s, i) for i, s in enumerate(problem.hidden)]) if self.m else np.zeros(0, int)
            self.j = sp.csr_matrix((np.ones(self.m), (np.arange(self.m), cols)), shape=(self.m, len(problem.hidden)))
        self.nv = self.j.shape[1]
        q = np.zeros((self.n, self.n))
        wl = problem.weights[-1]
        a0, a1 = self.offs[-2], self.offs[-1]
        q[a0:a1, a0:a1] = wl.T @ wl
        # strict-feasibility margin: H - margin * E_hidden ⪰ 0 keeps the hidden block away from singularity
        q[np.arange(self.n0, self.n), np.arange(self.n0, self.n)] += margin
        self.h = np.concatenate([np.zeros(self.nv), -q.ravel(order="F")])

    # F(x) = rho E_0 + K_lambda (no Q), a dense symmetric matrix
    def fmat(self, rho: float, lam: np.ndarray) -> np.ndarray:
        out = np.zeros((self.n, self.n))
        o = self.offs
        out[np.arange(self.n0), np.arange(self.n0)] = rho
        pos = 0
        for k, w, c, d in self.layers:
            lk = lam[pos:pos + w.shape[0]]
            pos += w.shape[0]
            idx = np.arange(o[k], o[k + 1])
            out[idx, idx] += lk
            if np.any(d != 0.0):
                out[o[k - 1]:o[k], o[k - 1]:o[k]] += w.T @ ((d * lk)[:, None] * w)
            blk = -((c * lk)[:, None] * w)
            out[o[k]:o[k + 1], o[k - 1]:o[k]] += blk
            out[o[k - 1]:o[k], o[k]:o[k + 1]] += blk.T
        return out

    # (<E_0, Y>, <F_i, Y>) for a symmetric Y
    def fadj(self, y: np.ndarray) -> tuple[float, np.ndarray]:
        o = self.offs
        g_rho = float(np.trace(y[:self.n0, :self.n0]))
        parts = []
        for k, w, c, d in self.layers:
            g = np.diag(y[o[k]:o[k + 1], o[k]:o[k + 1]]).copy()
            g -= 2 * c * np.sum(w * y[o[k]:o[k + 1], o[k - 1]:o[k]], axis=1)
            if np.any(d != 0.0):
                g += d * np.sum(w * (w @ y[o[k - 1]:o[k], o[k - 1]:o[k]]), axis=1)
            parts.append(g)
        return g_rho, (np.concatenate(parts) if parts else np.zeros(0))

    def _sym_lower(self, v: np.ndarray) -> np.ndarray:
        y = v.reshape(self.n, self.n, order="F")
        low = np.tril(y)
        return low + np.tril(y, -1).T

    def g_apply(self, x: np.ndarray) -> np.ndarray:
        mu = x[1:]
        lam = self.j @ mu
        return np.concatenate([-mu, -self.fmat(float(x[0]), lam).ravel(order="F")])

    def gt_apply(self, v: np.ndarray) -> np.ndarray:
        g_rho, g_lam = self.fadj(self._sym_lower(v[self.nv:]))
        return np.concatenate([[-g_rho], -(self.j.T @ g_lam) - v[:self.nv]])

    def G(self, u, v, alpha=1.0, beta=0.0, trans="N"):
        from cvxopt import matrix

        uu = np.array(u).ravel()
        out = self.g_apply(uu) if trans == "N" else self.gt_apply(uu)
        v[:] = matrix(alpha * out + beta * np.array(v).ravel())

    def normal_matrix(self, rti: np.ndarray, di: np.ndarray) -> np.ndarray:
        o = self.offs
        r0 = rti[:self.n0, :]  # V_rho^T: W^-T E_0 = r0^T r0
        a1_cols, a2_cols, s = [], [], []
        for k, w, c, d in self.layers:
            a1_cols.append(rti[o[k]:o[k + 1], :])           # rows: (rti^T e_i)^T
            a2_cols.append(w @ rti[o[k - 1]:o[k], :])        # rows: (rti^T w_i)^T
            s.append(_pair_matrices(c, d, w.shape[0]))
        hn = np.zeros((self.m + 1, self.m + 1))
        r0r0 = r0 @ r0.T
        hn[0, 0] = float(np.sum(r0r0 * r0r0))
        if self.m:
            a1 = np.vstack(a1_cols)  # m x N
            a2 = np.vstack(a2_cols)
            ss = np.concatenate(s)   # m x 2 x 2
            g11, g12, g22 = a1 @ a1.T, a1 @ a2.T, a2 @ a2.T
            gm = np.stack([np.stack([g11, g12], -1), np.stack([g12.T, g22], -1)], -2)  # (i, j, 2, 2): V_i^T V_j
            hn[1:, 1:] = np.einsum("iab,ijbc,jce,ijae->ij", ss, gm, ss, gm, optimize=True)
            c1, c2 = r0 @ a1.T, r0 @ a2.T  # n0 x m
            bb = np.stack([np.stack([np.sum(c1 * c1, 0), np.sum(c1 * c2, 0)], -1),
                           np.stack([np.sum(c2 * c1, 0), np.sum(c2 * c2, 0)], -1)], -2)  # m x 2 x 2
            hn[0, 1:] = hn[1:, 0] = np.einsum("iab,iab->i", ss, bb)
        jf = sp.block_diag([sp.identity(1), self.j], format="csr")
        ht = np.asarray(jf.T @ (jf.T @ hn).T)
        ht[np.arange(1, self.nv + 1), np.arange(1, self.nv + 1)] += di**2
        return (ht + ht.T) / 2

    def kktsolver(self, w):
        from cvxopt import matrix

        rti = np.array(w["rti"][0])
        di = np.array(w["di"]).ravel()
        factor = scipy.linalg.cho_factor(self.normal_matrix(rti, di))
        p = rti @ rti.T  # W^-1 W^-T Z = P Z P
        nv, n = self.nv, self.n

        def solve(x, y, z):
            bx = np.array(x).ravel()
            bz = np.array(z).ravel()
            bzs = self._sym_lower(bz[nv:])
            ts = p @ bzs @ p
            rhs = bx + self.gt_apply(np.concatenate([di**2 * bz[:nv], ts.ravel(order="F")]))
            ux = scipy.linalg.cho_solve(factor, rhs)
            gu = self.g_apply(ux)
            wz_l = di * (gu[:nv] - bz[:nv])
            gs = gu[nv:].reshape(n, n, order="F")
            wz_s = rti.T @ (gs - bzs) @ rti
            x[:] = matrix(ux)
            z[:] = matrix(np.concatenate([wz_l, wz_s.ravel(order="F")]))

        return solve


def single_threaded_blas():
    """numpy's BLAS threads spin while CVXOPT (its own single-threaded BLAS) works between our callbacks; on
    a busy machine that made the solve 10-30x slower.  One thread for the duration of the solve (needs the
    optional ``threadpoolctl``; without it nothing changes)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional speed-up
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def solve_cvxopt(problem: LipSDPProblem, variant: str, solver_options: dict, margin: float = 0.0):
    """LipSDP through CVXOPT's ``conelp`` with the structured operators of :class:`StructuredLMI`
    (with ``H - margin E_hidden ⪰ 0`` in place of ``H ⪰ 0`` when ``margin > 0``)."""
    from cvxopt import matrix, solvers

    lmi = StructuredLMI(problem, variant, margin)
    c = matrix(np.concatenate([[1.0], np.zeros(lmi.nv)]))
    dims = {"l": lmi.nv, "q": [], "s": [lmi.n]}

    def a_op(u, v, alpha=1.0, beta=0.0, trans="N"):
        if trans != "N":
            v[:] = matrix(beta * np.array(v).ravel())

    opts = {"show_progress": False}
    names = {"max_iters": "maxiters", "abstol": "abstol", "reltol": "reltol", "feastol": "feastol", "maxiters": "maxiters"}
    for key, value in solver_options.items():
        if key not in names:
            raise ValueError(f"lipsdp: unknown CVXOPT option {key!r}; valid: {', '.join(sorted(names))}")
        opts[names[key]] = value
    try:
        with single_threaded_blas():
            sol = solvers.conelp(c, lmi.G, matrix(lmi.h), dims, a_op, matrix(0.0, (0, 1)), kktsolver=lmi.kktsolver,
                                 options=opts)
    except (ArithmeticError, ValueError, np.linalg.LinAlgError) as exc:
        raise SolverError(f"lipsdp: CVXOPT failed: {exc}") from exc
    if sol["status"] != "optimal" or sol["x"] is None:
        raise SolverError(f"lipsdp: CVXOPT returned status {sol['status']!r} after {sol.get('iterations')} iterations")
    x = np.array(sol["x"]).ravel()
    if not np.all(np.isfinite(x)):
        raise SolverError("lipsdp: CVXOPT returned non-finite values")
    lam = lmi.j @ x[1:]
    values, pos = [], 0
    for s in problem.hidden:
        values.append(lam[pos:pos + s])
        pos += s
    return float(x[0]), values


def solve_lipsdp(problem: LipSDPProblem, variant: str, solvers: tuple[str, ...], solver_options: dict, margin: float = 0.0):
    """Try ``solvers`` in order: IPM through :func:`solve_ipm`, CVXOPT through :func:`solve_cvxopt` (structured
    KKT solver), the others through cvxpy (:func:`formulate`), with a strict-feasibility ``margin`` on the hidden
    blocks, all on the input-reduced problem (:func:`reduce_input`; the multipliers and ``rho`` are those of the
    full problem).  Returns ``(solver, status, rho, lambdas)``; raises SolverError.  cvxpy is imported only when
    a solver other than IPM and CVXOPT is reached."""
    if has_linear_neurons(problem):
        # §2 / widen_linear: the IPM on widened problems (narrowest first, tolerances 1e-6), then the others
        errors = []
        loose = {k: v for k, v in IPM_LINEAR_OPTIONS.items() if k not in solver_options and
                 not (k == "max_iters" and "maxiters" in solver_options)}
        if "IPM" in solvers:
            for delta in LINEAR_WIDEN_STEPS:
                try:
                    got = _solve_with(reduce_input(widen_linear(problem, delta)), variant, ("IPM",),
                                      {**solver_options, **loose}, margin)
                except SolverError as exc:
                    errors.append(f"widened by {delta:g}: {exc}")
                    continue
                return got
        rest = tuple(x for x in solvers if x != "IPM")
        if not rest:
            raise SolverError("lipsdp: " + "; ".join(errors))
        return _solve_with(reduce_input(widen_linear(problem)), variant, rest, solver_options, margin)
    return _solve_with(reduce_input(problem), variant, solvers, solver_options, margin)


def has_linear_neurons(problem: LipSDPProblem) -> bool:
    """Whether some neuron of a nonlinear layer has per-neuron slopes ``[a, a]`` with ``a != 0``."""
    return problem.neuron_slopes is not None and any(
        pair is not None and bool(np.any((pair[0] == pair[1]) & (pair[0] != 0))) for pair in problem.neuron_slopes)


def _solve_with(problem: LipSDPProblem, variant: str, solvers: tuple[str, ...], solver_options: dict, margin: float):
    errors = []
    for name in solvers:
        if name in ("IPM", "CVXOPT"):
            try:
                solve = solve_ipm if name == "IPM" else solve_cvxopt
                rho_value, values = solve(problem, variant, solver_options, margin)
            except SolverError as exc:
                errors.append(str(exc))
                continue
            return name, "optimal", rho_value, values
        import cvxpy as cp

        prob, rho, lams = formulate(problem, variant, margin)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                prob.solve(solver=name, **solver_options)
            except cp.error.SolverError as exc:
                errors.append(f"{name}: {exc}")
                continue
        if prob.status != cp.OPTIMAL:
            said = "".join(f" ({w.message})" for w in caught)
            errors.append(f"{name}: status {prob.status!r}{said}")
            continue
        values = [np.asarray(x.value, dtype=np.float64) for x in lams]
        if rho.value is None or not all(np.all(np.isfinite(v)) for v in values):
            errors.append(f"{name}: no finite solution despite status {prob.status!r}")
            continue
        return name, prob.status, float(rho.value), values
    raise SolverError("lipsdp: no solver returned an optimal solution (" + "; ".join(errors) + ")")


# --------------------------------------------------------------------------- LipSDP: input-block reduction


def reduce_input(problem: LipSDPProblem) -> LipSDPProblem:
    """The same SDP on the range of ``W_1^T`` (``proofs/lipsdp.md`` §6): ``W_1 = U Σ V^T`` (SVD), ``r`` the numerical
    rank, and the first weight replaced by ``W_1 V_r = U_r Σ_r`` (``n_1 x r``).  On the null space of ``W_1`` the
    LMI is ``rho I`` and decouples, so the optimum is unchanged while the LMI side drops from ``n_0 + Σ n_l`` to
    ``r + Σ n_l``.  For the solver only: the multipliers it returns are certified on the *full* LMI
    (:func:`lipverify.sdp.certificate.certify`), so neither the rank decision nor the rounding of the basis
    enters the proof.  Returns ``problem`` itself when ``W_1`` has full column rank."""
    w = problem.weights[0]
    n1, n0 = w.shape
    if n0 <= 1 or w.size == 0 or not np.all(np.isfinite(w)):
        return problem
    u, s, _ = scipy.linalg.svd(w, full_matrices=False, lapack_driver="gesvd")
    tol = (s[0] if s.size else 0.0) * max(n0, n1) * np.finfo(np.float64).eps
    r = int(np.sum(s > tol))
    if r == 0 or r >= n0:
        return problem
    reduced = u[:, :r] * s[:r]
    return LipSDPProblem((reduced,) + problem.weights[1:], (None,) + problem.radii[1:], None, problem.slopes,
                         problem.shifts, problem.neuron_exps, problem.neuron_slopes)


#: relative half-width given to per-neuron slopes ``[a, a]`` (``a != 0``) in the problem the solvers see
LINEAR_WIDEN = 2.0**-10
#: the widths tried with the IPM, narrowest (tightest, worst conditioned) first
LINEAR_WIDEN_STEPS = (2.0**-12, 2.0**-9, 2.0**-6)
#: IPM tolerances on a widened problem (its multipliers of linear neurons are ~ 1 / delta^2 times the others)
IPM_LINEAR_OPTIONS = {"reltol": 1e-6, "feastol": 1e-6}


def widen_linear(problem: LipSDPProblem, delta: float | None = None) -> LipSDPProblem:
    """The problem the solvers see when some neuron of a nonlinear layer has per-neuron slopes ``[a, a]`` (linear,
    ``a != 0``; e.g. an always-active ReLU on a box): its interval widened to ``[a - delta |a|, a + delta |a|]``.

    With ``[a, a]`` the LipSDP infimum is approached only as that neuron's multiplier grows without bound (its
    constraint is an equality), so the interior-point solvers do not converge.  The widened problem has an optimum;
    its multipliers are certified on the *unwidened* problem (``proofs/lipsdp.md`` §2: widening ``[a, a]``
    symmetrically only subtracts ``lambda_i delta^2 u_i^2`` from the quadratic form, so a certificate of the widened
    problem is one of the original; in any case the kernel proves the original LMI).  Untrusted, like the solvers."""
    if problem.neuron_slopes is None:
        return problem
    delta = LINEAR_WIDEN if delta is None else delta
    pairs = []
    changed = False
    for pair in problem.neuron_slopes:
        if pair is None:
            pairs.append(None)
            continue
        lo, hi = pair
        lin = (lo == hi) & (lo != 0)
        if np.any(lin):
            changed = True
            half = delta * np.abs(lo)
            lo, hi = np.where(lin, lo - half, lo), np.where(lin, hi + half, hi)
        pairs.append((lo, hi))
    return dataclasses.replace(problem, neuron_slopes=tuple(pairs)) if changed else problem


def _pair_matrices(c, d, n: int) -> np.ndarray:
    """``(n, 2, 2)``: ``S_i = [[1, -c_i], [-c_i, d_i]]`` for scalar or per-neuron ``c``, ``d``."""
    out = np.empty((n, 2, 2))
    out[:, 0, 0] = 1.0
    out[:, 0, 1] = out[:, 1, 0] = -np.broadcast_to(c, (n,))
    out[:, 1, 1] = np.broadcast_to(d, (n,))
    return out


# --------------------------------------------------------------------------- LipSDP: the structured interior-point solver

#: defaults of the structured interior-point solver (:func:`solve_ipm`)
#: the infeasible start X = START I, S = START (1 + ||Q||) I
START = 1.0
IPM_OPTIONS = {"max_iters": 100, "reltol": 1e-9, "abstol": 1e-13, "feastol": 1e-9}


class StructuredIPM:
    """A primal-dual interior-point method (infeasible start, HKM direction, Mehrotra predictor-corrector) for

        (D)  min rho  s.t.  S = rho E_0 + sum_j mu_j F_j - Q ⪰ 0,  mu >= 0,
        (P)  max <Q, X>  s.t.  tr X_00 = 1,  <F_j, X> + x_j = 0,  X ⪰ 0,  x >= 0,

    in numpy, with every operator built from the structure of the LipSDP matrix (``F_j`` is one neuron's rank-2
    matrix ``U_i S_i U_i^T``, ``U_i = [e_i, w_i]``, or, for LipSDP-Layer, a layer's sum of them): the maps
    ``A``, ``A^T`` touch only the nonzero blocks of the block-tridiagonal ``F_j``, and the normal matrix
    ``M_ij = <F_i, X F_j S^-1>`` comes from the Gram matrices ``U^T X U`` and ``U^T S^-1 U`` — at neuron size for
    LipSDP-Neuron, at layer size (one entry per pair of layers, no neuron-by-neuron matrix) for LipSDP-Layer.
    ``X`` and ``S`` are dense (side N): per iteration a few ``O(N^3)`` products, Cholesky factorisations and
    two symmetric eigenvalue problems for the step lengths.  Untrusted like every solver here: only ``(rho, mu)``
    is used, and :func:`lipverify.sdp.certificate.certify` proves or refuses it.
    """

    def __init__(self, problem: LipSDPProblem, variant: str, margin: float = 0.0):
        self.lmi = lmi = StructuredLMI(problem, variant, margin)
        self.variant = variant
        self.n, self.n0, self.m, self.nv = lmi.n, lmi.n0, lmi.m, lmi.nv
        self.q = -lmi.h[lmi.nv:].reshape(self.n, self.n, order="F")
        # S_i = [[1, -c], [-c, d]] per neuron, and per layer (the layer form only when every neuron of it shares them)
        self.s_layer = [np.array([[1.0, -c], [-c, d]]) if np.ndim(c) == 0 else None for _, _, c, d in lmi.layers]
        self.s_neuron = (np.concatenate([_pair_matrices(c, d, w.shape[0]) for _, w, c, d in lmi.layers])
                         if lmi.layers else np.zeros((0, 2, 2)))
        self.c_neuron = -self.s_neuron[:, 0, 1]
        self.d_neuron = self.s_neuron[:, 1, 1]

    # A(X, x) = (tr X_00, J^T <F_i, X> + x);  A^T(y) = (rho E_0 + sum lambda_i F_i, mu)
    def amap(self, x_mat: np.ndarray, x_lp: np.ndarray) -> np.ndarray:
        g_rho, g_lam = self.lmi.fadj(x_mat)
        return np.concatenate([[g_rho], self.lmi.j.T @ g_lam + x_lp])

    def amap_t(self, y: np.ndarray) -> np.ndarray:
        return self.lmi.fmat(float(y[0]), self.lmi.j @ y[1:])

    def _rows(self, x: np.ndarray) -> list[np.ndarray]:
        """Per layer k, ``(2, n_k, N)``: the rows ``u^T X`` for ``u = e_i`` and ``u = w_i`` (embedded)."""
        o = self.lmi.offs
        return [np.stack([x[o[k]:o[k + 1], :], w @ x[o[k - 1]:o[k], :]]) for k, w, _, _ in self.lmi.layers]

    def _gram(self, rows_k: np.ndarray, layer: int) -> np.ndarray:
        """``(2, n_k, 2, n_l)``: ``u_{k,b}^T X u_{l,c}`` from the rows of layer k, for the columns of layer l."""
        o = self.lmi.offs
        k, w, _, _ = self.lmi.layers[layer]
        return np.stack([rows_k[:, :, o[k]:o[k + 1]], rows_k[:, :, o[k - 1]:o[k]] @ w.T], axis=2)

    def _x_u(self, x: np.ndarray) -> np.ndarray:
        """``(N, m, 2)``: ``X u_{i,a}`` for ``u_{i,0} = e_i``, ``u_{i,1} = w_i`` (embedded), block by block."""
        o = self.lmi.offs
        out = np.empty((x.shape[0], self.m, 2))
        pos = 0
        for k, w, _, _ in self.lmi.layers:
            out[:, pos:pos + w.shape[0], 0] = x[:, o[k]:o[k + 1]]
            out[:, pos:pos + w.shape[0], 1] = x[:, o[k - 1]:o[k]] @ w.T
            pos += w.shape[0]
        return out

    def _ut(self, y: np.ndarray) -> np.ndarray:
        """``(m, 2, m, 2)``: ``u_{i,a}^T Y`` for ``Y`` of shape ``(N, m, 2)``."""
        o = self.lmi.offs
        flat = y.reshape(y.shape[0], -1)
        out = np.empty((self.m, 2, flat.shape[1]))
        pos = 0
        for k, w, _, _ in self.lmi.layers:
            out[pos:pos + w.shape[0], 0] = flat[o[k]:o[k + 1]]
            out[pos:pos + w.shape[0], 1] = w @ flat[o[k - 1]:o[k]]
            pos += w.shape[0]
        return out.reshape(self.m, 2, self.m, 2)

    def _times_s(self, y: np.ndarray, axis: int) -> np.ndarray:
        """Apply ``S_i = [[1, -c], [-c, d]]`` along the pair axis ``axis`` (1 or 2; the neuron index is the axis
        before it) of an array shaped ``(m, 2, ...)`` or ``(N, m, 2)``."""
        idx0 = (slice(None),) * axis + (0,)
        idx1 = (slice(None),) * axis + (1,)
        shape = (-1,) + (1,) * (y.ndim - axis - 1)
        c, d = self.c_neuron.reshape(shape), self.d_neuron.reshape(shape)
        out = np.empty_like(y)
        a0, a1 = y[idx0], y[idx1]
        out[idx0] = a0 - c * a1
        out[idx1] = d * a1 - c * a0
        return out

    def normal_matrix(self, x_mat, si, x_lp, s_lp) -> np.ndarray:
        n0 = self.n0
        out = np.zeros((self.nv + 1, self.nv + 1))
        out[0, 0] = float(np.sum(x_mat[:n0, :n0] * si[:n0, :n0]))
        if self.variant == "neuron" or not self.lmi.uniform:
            if self.m:
                # M_ij = sum_{a,e} (U_S^T X U_S)[(i,a),(j,e)] (U^T S^-1 U)[(i,a),(j,e)], U_S = U blkdiag(S_i)
                xus = self._times_s(self._x_u(x_mat), 2)
                su = self._x_u(si)
                gxs = self._times_s(self._ut(xus), 1)
                gs = self._ut(su)
                hn = np.zeros((self.m + 1, self.m + 1))
                hn[1:, 1:] = np.einsum("iaje,iaje->ij", gxs, gs)
                hn[0, 1:] = hn[1:, 0] = np.einsum("pib,pib->i", xus[:n0], su[:n0])
                if self.variant == "neuron":
                    out[1:, 1:], out[0, 1:], out[1:, 0] = hn[1:, 1:], hn[0, 1:], hn[1:, 0]
                else:  # per-neuron slopes in LipSDP-Layer: the neuron-size matrix contracted by J (lambda = J mu)
                    jd = self.lmi.j.toarray()
                    out[1:, 1:] = jd.T @ hn[1:, 1:] @ jd
                    out[0, 1:] = out[1:, 0] = jd.T @ hn[0, 1:]
        else:
            rx, rs = self._rows(x_mat), self._rows(si)
            for k, (xk, sk) in enumerate(zip(rx, rs)):
                s_k = self.s_layer[k]
                out[0, k + 1] = out[k + 1, 0] = float(np.einsum("ab,aip,bip->", s_k, xk[:, :, :n0], sk[:, :, :n0]))
                for l in range(k, len(rx)):
                    s_l = self.s_layer[l]
                    gx, gs = self._gram(xk, l), self._gram(sk, l)  # (2, n_k, 2, n_l)
                    ip = np.einsum("bicj,aiej->bcae", gx, gs)
                    out[k + 1, l + 1] = out[l + 1, k + 1] = float(np.einsum("ab,ce,bcae->", s_k, s_l, ip))
        idx = np.arange(1, self.nv + 1)
        out[idx, idx] += x_lp / s_lp
        return (out + out.T) / 2

    def _direction(self, st, sig_mu: float, corr, corr_lp):
        """The HKM direction for ``X S = sig_mu I - corr`` (Mehrotra's corrector ``corr = dX_p dS_p``)."""
        x_mat, x_lp, s_lp, si, factor, rp, rd, rd_lp, xrd = st
        rc = sig_mu * si - x_mat - (0.0 if corr is None else corr @ si)
        rc_lp = sig_mu / s_lp - x_lp - (0.0 if corr_lp is None else corr_lp / s_lp)
        t = rc + xrd
        rhs = self.amap((t + t.T) / 2, rc_lp + x_lp * rd_lp / s_lp) - rp
        dy = scipy.linalg.cho_solve(factor, rhs)
        ds = self.amap_t(dy) - rd
        ds_lp = dy[1:] - rd_lp
        dx = rc - x_mat @ ds @ si
        dx = (dx + dx.T) / 2
        dx_lp = rc_lp - x_lp * ds_lp / s_lp
        return dy, dx, dx_lp, ds, ds_lp

    def solve(self, max_iters: int = 100, reltol: float = 1e-9, abstol: float = 1e-13, feastol: float = 1e-9):
        """``(rho, mu, iterations)``; raises SolverError when the tolerances are not reached."""
        n, nv = self.n, self.nv
        q = self.q
        c = np.zeros(nv + 1)
        c[0] = 1.0
        qnorm = float(np.linalg.norm(q))
        x_mat, s_mat = START * np.eye(n), START * (1.0 + qnorm) * np.eye(n)
        x_lp, s_lp = np.ones(nv), np.ones(nv)
        y = np.zeros(nv + 1)
        nn = n + nv
        best, it = None, 0
        for it in range(1, max_iters + 1):
            rp = c - self.amap(x_mat, x_lp)
            rd = q + s_mat - self.amap_t(y)
            rd_lp = s_lp - y[1:]
            gap = float(np.vdot(x_mat, s_mat) + x_lp @ s_lp)
            pobj, dobj = float(np.vdot(q, x_mat)), float(y[0])
            relgap = gap / max(abs(pobj), abs(dobj), abstol / reltol)
            pinf = float(np.linalg.norm(rp)) / 2.0
            dinf = float(np.sqrt(np.vdot(rd, rd) + rd_lp @ rd_lp)) / (1.0 + qnorm)
            err = max(relgap / reltol, pinf / feastol, dinf / feastol)
            if err <= 1.0:
                return float(y[0]), y[1:].copy(), it
            if best is None or err < best[0]:
                best = (err, relgap, max(pinf, dinf))
            mu = gap / nn
            try:
                ls, lx = _inverse_factor(s_mat), _inverse_factor(x_mat)
            except np.linalg.LinAlgError:
                break
            si = ls.T @ ls
            si = (si + si.T) / 2
            try:
                factor = scipy.linalg.cho_factor(self.normal_matrix(x_mat, si, x_lp, s_lp))
            except np.linalg.LinAlgError:
                break
            st = (x_mat, x_lp, s_lp, si, factor, rp, rd, rd_lp, x_mat @ rd @ si)
            dy, dx, dx_lp, ds, ds_lp = self._direction(st, 0.0, None, None)
            ap = _max_step(lx, dx, x_lp, dx_lp, 1.0)
            ad = _max_step(ls, ds, s_lp, ds_lp, 1.0)
            aff = float(gap + ad * np.vdot(x_mat, ds) + ap * np.vdot(dx, s_mat) + ap * ad * np.vdot(dx, ds)
                        + (x_lp + ap * dx_lp) @ (s_lp + ad * ds_lp) - x_lp @ s_lp)
            sigma = min(1.0, max(0.0, aff / gap)) ** max(1.0, 3 * min(ap, ad) ** 2)
            dy, dx, dx_lp, ds, ds_lp = self._direction(st, sigma * mu, dx @ ds, dx_lp * ds_lp)
            gamma = 0.9 + 0.09 * min(ap, ad)
            ap = min(1.0, gamma * _max_step(lx, dx, x_lp, dx_lp, 1.0 / gamma))
            ad = min(1.0, gamma * _max_step(ls, ds, s_lp, ds_lp, 1.0 / gamma))
            x_mat = x_mat + ap * dx
            x_mat = (x_mat + x_mat.T) / 2
            x_lp = x_lp + ap * dx_lp
            y = y + ad * dy
            s_mat = s_mat + ad * ds
            s_mat = (s_mat + s_mat.T) / 2
            s_lp = s_lp + ad * ds_lp
            if max(ap, ad) < 1e-10:
                break
        said = f"relative gap {best[1]:.1e}, infeasibility {best[2]:.1e}" if best else "no iterate"
        raise SolverError(f"lipsdp: IPM stopped after {it} of {max_iters} iterations without reaching its tolerances "
                          f"(best: {said}; wanted relative gap {reltol:g}, infeasibility {feastol:g})")


def solve_ipm(problem: LipSDPProblem, variant: str, solver_options: dict, margin: float = 0.0):
    """LipSDP through :class:`StructuredIPM` (single-threaded BLAS, see :func:`single_threaded_blas`);
    options ``max_iters`` (or ``maxiters``), ``reltol``, ``abstol``, ``feastol`` (defaults :data:`IPM_OPTIONS`)."""
    opts = dict(IPM_OPTIONS)
    for key, value in solver_options.items():
        key = "max_iters" if key == "maxiters" else key
        if key not in opts:
            raise ValueError(f"lipsdp: unknown IPM option {key!r}; valid: {', '.join(sorted(opts))}")
        opts[key] = value
    ipm = StructuredIPM(problem, variant, margin)
    # the IPM is untrusted: overflow or NaN inside it must end in a SolverError (then the next solver), not in a
    # warning; every result is checked below and certified by the kernel
    with single_threaded_blas(), np.errstate(over="ignore", divide="ignore", invalid="ignore", under="ignore"):
        try:
            rho, mu, _ = ipm.solve(int(opts["max_iters"]), float(opts["reltol"]), float(opts["abstol"]),
                                   float(opts["feastol"]))
        except (ArithmeticError, ValueError, np.linalg.LinAlgError) as exc:
            raise SolverError(f"lipsdp: IPM failed: {exc}") from exc
    if not (math.isfinite(rho) and np.all(np.isfinite(mu))):
        raise SolverError("lipsdp: IPM returned non-finite values")
    lam = ipm.lmi.j @ mu
    values, pos = [], 0
    for s in problem.hidden:
        values.append(lam[pos:pos + s])
        pos += s
    return rho, values


def _inverse_factor(a: np.ndarray) -> np.ndarray:
    """``L^-1`` for the Cholesky factor ``L L^T = a`` (raises LinAlgError when ``a`` is not positive definite)."""
    lfac = scipy.linalg.cholesky(a, lower=True)
    inv, info = scipy.linalg.lapack.dtrtri(lfac, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"dtrtri info {info}")
    return np.tril(inv)


def _max_step(linv: np.ndarray, d: np.ndarray, v: np.ndarray, dv: np.ndarray, limit: float = math.inf) -> float:
    """``min(limit, a)`` for the largest ``a`` with ``L L^T + a d ⪰ 0`` and ``v + a dv >= 0`` (``inf`` if unbounded),
    ``linv = L^-1``.  When ``I + limit T`` (``T = L^-1 d L^-T``) has a Cholesky factor, ``a >= limit`` and the smallest
    eigenvalue of ``T`` is not computed (a factorisation is a few times cheaper than the eigenvalue)."""
    t = scipy.linalg.blas.dtrmm(1.0, linv, d, side=0, lower=1)          # L^-1 d
    t = scipy.linalg.blas.dtrmm(1.0, linv, t, side=1, lower=1, trans_a=1)  # (L^-1 d) L^-T
    t = (t + t.T) / 2
    a = math.inf
    if t.size and not (math.isfinite(limit) and _positive_definite(np.eye(t.shape[0]) + limit * t)):
        lam = float(scipy.linalg.eigvalsh(t, subset_by_index=[0, 0])[0])
        a = -1.0 / lam if lam < 0 else math.inf
    a = min(a, limit)
    neg = dv < 0
    if np.any(neg):
        a = min(a, float(np.min(-v[neg] / dv[neg])))
    return a


def _positive_definite(a: np.ndarray) -> bool:
    """Whether LAPACK's Cholesky factorisation of ``a`` succeeds (untrusted floats: a step-length decision only)."""
    _, info = scipy.linalg.lapack.dpotrf(a, lower=1, clean=0, overwrite_a=1)
    return info == 0
