"""``lipsdp_fo``: first-order LipSDP-Neuron (eigenvalue optimisation of the multipliers), proven by the kernel.

Proof: ``proofs/lipsdp_fo.md``.  No SDP solver.  For multipliers ``lambda >= 0`` whose hidden block ``K_rr``
of the LipSDP matrix ``H(rho, lambda) = rho E_0 + K(lambda)`` (:mod:`lipverify.sdp.certificate`) is positive
definite, the least feasible ``rho`` is the largest eigenvalue

    rho(lambda) = lambda_max(K_0r K_rr^{-1} K_r0 - K_00),

a convex function of ``lambda`` whose subgradient is ``-x^T F_i x`` (``x`` the null vector of ``H(rho(lambda), lambda)``
with ``||x_0|| = 1``, ``F_i`` neuron ``i``'s matrix: ``x_i^2 - 2 c_i u_i x_i + p_i u_i^2`` with ``u = W x_prev``, one
forward pass).  ``rho(lambda)`` is computed matrix-free: a Cholesky factor of ``K_rr`` (block tridiagonal, hidden
neurons only) and Lanczos (``scipy.sparse.linalg.eigsh``) on the Schur complement, warm-started with the previous
eigenvector.  The multipliers are optimised by Adam on ``log lambda`` from lipsdp_fast's best closed-form member
(:func:`lipverify.sdp.fast.members`); the best point found goes to the certificate kernel
(:func:`~lipverify.sdp.certificate.certify`, verified Cholesky of the full LMI): the value is proven or the method
raises :class:`~lipverify.errors.CertificationError`.  The solver's view is the input-reduced problem
(``proofs/lipsdp.md`` §6), the certificate is proven on the full one.

Reference: Z. Wang, B. Hu, A. Havens, A. Araujo, Y. Zheng, Y. Chen, S. Jha, *On the Scalability and Memory Efficiency
of Semidefinite Programs for Lipschitz Constant Estimation of Neural Networks*, ICLR 2024 (LipDiff).
"""

from __future__ import annotations

import math
import time
from dataclasses import replace

import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg

from ..bounds.common import require_norm
from ..bounds.records import LIPSDP_FO_SIZE, LIPSDP_FO_STEPS, limit_hint
from ..errors import CertificationError, NotApplicableError, NumericalError
from ..ir.views import linear_chain
from ..network import Network
from ..norms import NormLike
from ..result import OUTWARD, Bound
from ..rigorous import up
from .certificate import (
    Certificate,
    LipSDPProblem,
    assemble,
    certify,
    check_certificate,
    check_diagonal_schur,
    diagonal_tail,
    inflated,
    lmi_blocks,
    round_multipliers,
)
from .solvers import reduce_input, single_threaded_blas

#: default number of first-order steps
DEFAULT_STEPS = LIPSDP_FO_STEPS.default
#: default limit of the LMI side (inputs + hidden neurons): the certificate is checked on the dense matrix
DEFAULT_MAX_SIZE = LIPSDP_FO_SIZE.default
#: Adam's step on log(lambda), and its decay per step
LEARNING_RATE = 0.05
DECAY = 0.995
#: factors tried on the warm start's multipliers until the hidden block is positive definite
START_FACTORS = (1.0, 1 + 2.0**-30, 1 + 2.0**-20, 1 + 2.0**-10, 1 + 2.0**-4, 2.0, 4.0)
#: the anchor of the certification: the warm start times this factor (its hidden block safely positive definite even
#: when the closed-form member sits on the boundary, e.g. the zoo's hat)
ANCHOR_FACTOR = 1 + 2.0**-4
#: Adam's moment constants
BETAS = (0.9, 0.999)
#: when the best rho has not improved by STALL (relative) within PATIENCE steps, restart from the best point with half
#: the step; stop after MAX_HALVINGS restarts
STALL, PATIENCE, MAX_HALVINGS = 1e-7, 20, 6


# --------------------------------------------------------------------------- rho(lambda) and its subgradient


class Oracle:
    """``rho(lambda)`` and a subgradient for one (input-reduced, scaled) problem; untrusted floats only."""

    def __init__(self, problem: LipSDPProblem):
        self.problem = problem
        self.v0 = None  # the last top eigenvector (Lanczos warm start)

    def __call__(self, lams):
        """``(rho, grads, x)`` or ``None`` when ``K_rr`` is not numerically positive definite."""
        p = self.problem
        diag, lower = lmi_blocks(p, lams, 0.0)
        k00 = diag[0]
        n0 = k00.shape[0]
        if p.depth == 1:  # no hidden layer: rho = ||W||^2, nothing to optimise
            return float(np.linalg.eigvalsh(-k00)[-1]), [], None
        krr = assemble(diag[1:], lower[1:])
        try:
            chol = scipy.linalg.cho_factor(krr, lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            return None
        b = lower[0]  # K_10: rows of the first hidden block, columns of the input
        n1 = b.shape[0]
        m = krr.shape[0]

        def kr0(v):
            out = np.zeros(m)
            out[:n1] = b @ v
            return out

        def schur(v):
            y = scipy.linalg.cho_solve(chol, kr0(v), check_finite=False)
            return b.T @ y[:n1] - k00 @ v

        if n0 <= 64:
            s = np.column_stack([schur(e) for e in np.eye(n0)])
            vals, vecs = np.linalg.eigh((s + s.T) / 2)
            rho, v = float(vals[-1]), vecs[:, -1]
        else:
            op = scipy.sparse.linalg.LinearOperator((n0, n0), matvec=schur, dtype=np.float64)
            v_start = self.v0 if self.v0 is not None and self.v0.shape == (n0,) else np.ones(n0)
            try:
                vals, vecs = scipy.sparse.linalg.eigsh(op, k=1, which="LA", v0=v_start, tol=1e-10, maxiter=2000)
            except scipy.sparse.linalg.ArpackNoConvergence:
                return None
            rho, v = float(vals[0]), vecs[:, 0]
        if not math.isfinite(rho):
            return None
        self.v0 = v
        xr = -scipy.linalg.cho_solve(chol, kr0(v), check_finite=False)
        blocks = [v]
        pos = 0
        for s in p.hidden:
            blocks.append(xr[pos:pos + s])
            pos += s
        grads = []
        for k in range(1, p.depth):
            c, pp = p.slope_terms(k - 1)
            u = p.weights[k - 1] @ blocks[k - 1]
            xk = blocks[k]
            grads.append(-(xk * xk - 2 * c * u * xk + pp * u * u))
        return rho, grads, blocks


def optimise(problem: LipSDPProblem, start, steps: int, lr: float = LEARNING_RATE):
    """Adam on ``log lambda`` from ``start`` (positive multipliers); returns ``(rho_best, lambda_best, history)``.

    Steps that leave the region where ``K_rr ≻ 0`` are rejected (the step size is halved).  Untrusted: only the
    multipliers are used, and the kernel proves or refuses them."""
    oracle = Oracle(problem)
    got = None
    top = max((float(np.max(x)) for x in start if np.size(x)), default=0.0)
    top = top if math.isfinite(top) and top > 0 else 1.0  # all-zero multipliers (e.g. W_L = 0): any floor works
    for factor in START_FACTORS:  # a closed-form member may sit on the boundary (singular hidden block): inflate it
        theta = [np.log(np.maximum(np.asarray(x, dtype=np.float64) * factor, top * 2.0**-40)) for x in start]
        got = oracle([np.exp(t) for t in theta])
        if got is not None:
            first = theta
            break
    if got is None:
        raise CertificationError("lipsdp_fo: the warm start's hidden block is not positive definite (even inflated by "
                                 f"{START_FACTORS[-1]:g}); use lipsdp_fast or lipsdp")
    best = (got[0], [np.exp(t) for t in theta])
    history = [got[0]]
    m1 = [np.zeros_like(t) for t in theta]
    m2 = [np.zeros_like(t) for t in theta]
    b1, b2 = BETAS
    step = lr
    current = got
    t = 0
    mark = (got[0], 0)  # (best rho at the last real improvement, step)
    halvings = 0
    for it in range(steps):
        if it - mark[1] > PATIENCE:  # stalled: back to the best point, half the step, fresh moments
            halvings += 1
            if halvings > MAX_HALVINGS:
                break
            theta = [np.log(x) for x in best[1]]
            current = oracle(best[1])
            m1 = [np.zeros_like(x) for x in theta]
            m2 = [np.zeros_like(x) for x in theta]
            t = 0
            step = lr / 2**halvings
            mark = (best[0], it)
        t += 1
        lam = [np.exp(x) for x in theta]
        g = [gi * li for gi, li in zip(current[1], lam)]  # d rho / d log(lambda)
        m1 = [b1 * a + (1 - b1) * gi for a, gi in zip(m1, g)]
        m2 = [b2 * a + (1 - b2) * gi * gi for a, gi in zip(m2, g)]
        upd = [(a / (1 - b1**t)) / (np.sqrt(b / (1 - b2**t)) + 1e-12) for a, b in zip(m1, m2)]
        trial = [x - step * d for x, d in zip(theta, upd)]
        got = oracle([np.exp(x) for x in trial])
        if got is None:  # left the domain: shrink the step, keep the point
            step /= 2
            continue
        theta, current = trial, got
        history.append(got[0])
        if got[0] < best[0]:
            best = (got[0], [np.exp(x) for x in theta])
        if best[0] < mark[0] * (1 - STALL):
            mark = (best[0], it)
        step *= DECAY
    return best[0], best[1], history, [np.exp(x) * ANCHOR_FACTOR for x in first]


def warm_start(problem: LipSDPProblem):
    """lipsdp_fast's best closed-form member for this problem: ``(rho_estimate, multipliers, name)``."""
    from .fast import members

    cands = members(problem)
    if not cands:
        raise CertificationError("lipsdp_fo: no closed-form member (warm start) is admissible on this network")
    rho, lams, name = cands[0]
    return rho, [rho * np.asarray(x, dtype=np.float64) for x in lams], name


# --------------------------------------------------------------------------- CNNs: segments between max-pool layers


class SegmentOracle:
    """``t(lambda, d_in, d_out)``: the least ``t`` with ``t diag(d_in) E_0 + K(lambda) - W_L^T diag(d_out) W_L ⪰ 0`` for one
    segment (``proofs/lipsdp_fo.md`` §6), with subgradients in ``lambda``, ``d_in`` and ``d_out``; untrusted.
    A :func:`~lipverify.sdp.certificate.diagonal_tail` segment (``I D W`` before a max-pool layer) has a diagonal
    hidden block: everything is matrix-free there (the conv matrix times vectors only)."""

    def __init__(self, problem: LipSDPProblem):
        self.problem = problem
        self.diag = diagonal_tail(problem)
        self.v0 = None
        w1 = problem.weights[0]
        # a convolution matrix is sparse: its products are the bulk of the work (the proof uses the dense weights)
        self.w1 = _maybe_sparse(w1)
        self.wl = _maybe_sparse(problem.weights[-1])
        self.wl_sq_t = (self.wl.multiply(self.wl) if scipy.sparse.issparse(self.wl) else self.wl ** 2).T

    def __call__(self, lams, d_in, d_out):
        p = self.problem
        ws = p.weights
        w1 = self.w1
        n0 = w1.shape[1]
        sq = 1.0 / np.sqrt(d_in)
        if p.depth == 1:
            def op(z):
                return sq * (w1.T @ (d_out * (w1 @ (sq * z))))
            solve = kr0 = k00 = None
        else:
            c, pp = p.slope_terms(0)
            lam1 = np.asarray(lams[0], dtype=np.float64)
            if self.diag:
                kd = lam1 - self.wl_sq_t @ d_out
                if not np.all(kd > 0):
                    return None
                nh = kd.size

                def solve(y):
                    return y / kd
            else:
                diag, lower = lmi_blocks(replace(p, output_weight=d_out), lams, 0.0)
                krr = assemble(diag[1:], lower[1:])
                try:
                    chol = scipy.linalg.cho_factor(krr, lower=True, check_finite=False)
                except np.linalg.LinAlgError:
                    return None
                nh = krr.shape[0]

                def solve(y):
                    return scipy.linalg.cho_solve(chol, y, check_finite=False)
            n1 = w1.shape[0]
            cl = c * lam1
            pl = pp * lam1

            def kr0(v):
                out = np.zeros(nh)
                out[:n1] = -(cl * (w1 @ v))
                return out

            def k00(v):
                return w1.T @ (pl * (w1 @ v)) if np.any(pl != 0) else np.zeros_like(v)

            def op(z):
                v = sq * z
                y = solve(kr0(v))
                return sq * (-(w1.T @ (cl * y[:n1])) - k00(v))
        lin = scipy.sparse.linalg.LinearOperator((n0, n0), matvec=op, dtype=np.float64)
        start = self.v0 if self.v0 is not None else np.ones(n0)
        try:
            if n0 <= 64:
                m = np.column_stack([op(e) for e in np.eye(n0)])
                vals, vecs = np.linalg.eigh((m + m.T) / 2)
                t, z = float(vals[-1]), vecs[:, -1]
            else:
                vals, vecs = scipy.sparse.linalg.eigsh(lin, k=1, which="LA", v0=start, tol=1e-9, maxiter=5000)
                t, z = float(vals[0]), vecs[:, 0]
        except scipy.sparse.linalg.ArpackNoConvergence:
            return None
        if not (math.isfinite(t) and t > 0):
            return None
        self.v0 = z
        x0 = sq * z  # x0^T diag(d_in) x0 = 1
        blocks = [x0]
        if p.depth > 1:
            xr = -solve(kr0(x0))
            pos = 0
            for size in p.hidden:
                blocks.append(xr[pos:pos + size])
                pos += size
        grads = []
        for k in range(1, p.depth):
            c, pp = p.slope_terms(k - 1)
            u = (w1 if k == 1 else ws[k - 1]) @ blocks[k - 1]
            xk = blocks[k]
            grads.append(-(xk * xk - 2 * c * u * xk + pp * u * u))
        g_in = -t * x0 * x0
        g_out = (self.wl @ blocks[-1]) ** 2
        return t, grads, g_in, g_out


def _maybe_sparse(w: np.ndarray):
    """CSR for a large matrix with under 10% nonzeros (a convolution, an identity), else ``w`` itself."""
    return scipy.sparse.csr_matrix(w) if w.size > 4096 and np.count_nonzero(w) < 0.1 * w.size else w


def _segment_start(problem: LipSDPProblem, d_out: np.ndarray):
    """Warm-start multipliers of one segment for unit weights: ``lambda = 2 sum_k d_k W_ki^2`` on a diagonal tail (the
    minimiser of ``c^2 lambda^2 / (lambda - s)``), else lipsdp_fast's best member."""
    if problem.depth == 1:
        return []
    if diagonal_tail(problem):
        lam = 2.0 * ((problem.weights[-1] ** 2).T @ d_out)
        return [np.maximum(lam, max(float(np.max(lam, initial=0.0)), 1.0) * 2.0**-30)]
    return warm_start(problem)[1]


def optimise_segments(problems, pools, steps: int, lr: float = LEARNING_RATE):
    """Adam on the logs of every segment's multipliers and every pool's window multipliers ``mu`` (objective
    ``sum_j log t_j``); returns ``(start_log, best_log, lambdas, mus, history)``.  Untrusted (§6)."""
    oracles = [SegmentOracle(p) for p in problems]
    mus = [np.ones(pool.n_out) for pool in pools]
    outs = [pool.matrix.T @ m for pool, m in zip(pools, mus)] + [np.ones(problems[-1].weights[-1].shape[0])]
    lams = [_segment_start(p, d) for p, d in zip(problems, outs)]

    def total(lams, mus):
        outs = [pool.matrix.T @ m for pool, m in zip(pools, mus)] + [np.ones(problems[-1].weights[-1].shape[0])]
        ins = [np.ones(problems[0].weights[0].shape[1])] + list(mus)
        log_t, g_lam, g_mu = 0.0, [], [np.zeros_like(m) for m in mus]
        for j, (oracle, d_in, d_out) in enumerate(zip(oracles, ins, outs)):
            got = oracle(lams[j], d_in, d_out)
            if got is None:
                return None
            t, gl, gi, go = got
            log_t += math.log(t)
            g_lam.append([g / t for g in gl])
            if j > 0:
                g_mu[j - 1] += gi / t
            if j < len(pools):
                g_mu[j] += pools[j].matrix @ (go / t)
        return log_t, g_lam, g_mu

    cur = None
    for factor in START_FACTORS:
        cur = total([[x * factor for x in lam] for lam in lams], mus)
        if cur is not None:
            lams = [[x * factor for x in lam] for lam in lams]
            break
    if cur is None:
        raise CertificationError("lipsdp_fo: the warm start of a segment has a hidden block that is not positive definite")
    sizes = [len(x) for x in lams]
    theta = [np.log(np.asarray(x, dtype=np.float64)) for lam in lams for x in lam] + [np.log(m) for m in mus]

    def unpack(th):
        out, k = [], 0
        for n in sizes:
            out.append([np.exp(x) for x in th[k:k + n]])
            k += n
        return out, [np.exp(x) for x in th[k:]]

    def grads(cur, th):
        flat = [g for gl in cur[1] for g in gl] + cur[2]
        return [g * np.exp(x) for g, x in zip(flat, th)]

    start = cur[0]
    best = (cur[0], theta)
    history = [cur[0]]
    m1 = [np.zeros_like(x) for x in theta]
    m2 = [np.zeros_like(x) for x in theta]
    b1, b2 = BETAS
    step, t, halvings, mark = lr, 0, 0, (cur[0], 0)
    for it in range(steps):
        if it - mark[1] > PATIENCE:
            halvings += 1
            if halvings > MAX_HALVINGS:
                break
            theta = best[1]
            cur = total(*unpack(theta))
            m1 = [np.zeros_like(x) for x in theta]
            m2 = [np.zeros_like(x) for x in theta]
            t, step, mark = 0, lr / 2**halvings, (best[0], it)
        t += 1
        g = grads(cur, theta)
        m1 = [b1 * a + (1 - b1) * gi for a, gi in zip(m1, g)]
        m2 = [b2 * a + (1 - b2) * gi * gi for a, gi in zip(m2, g)]
        trial = [x - step * (a / (1 - b1**t)) / (np.sqrt(b / (1 - b2**t)) + 1e-12) for x, a, b in zip(theta, m1, m2)]
        got = total(*unpack(trial))
        if got is None:
            step /= 2
            continue
        theta, cur = trial, got
        history.append(got[0])
        if got[0] < best[0]:
            best = (got[0], theta)
        if best[0] < mark[0] - STALL:  # log scale: an absolute change is a relative one of rho
            mark = (best[0], it)
        step *= DECAY
    lams, mus = unpack(best[1])
    return start, best[0], lams, mus, history


def certify_segments(problems, pools, lams, mus, max_size: int):
    """Prove every segment's LMI with its weights (``proofs/lipsdp_fo.md`` §6): the pool multipliers rounded to
    dyadic floats ``mu`` (the next segment's input weights), the previous segment's output weights the upward-rounded
    window sums ``S^T mu`` (:meth:`~lipverify.ir.pooling.TensorPool.window_sum_t_up`), the least ``t_j`` re-estimated,
    inflated and proven (verified Cholesky; through the Schur complement on a diagonal tail).  Returns the proven
    ``(rho_j, margin_j, check_j)``; raises :class:`CertificationError`."""
    top = max((float(np.max(m)) for m in mus), default=1.0)
    mus_q = [round_multipliers([np.maximum(m, top * 2.0**-60)], 0.0)[1][0] for m in mus]
    if any(np.any(m <= 0) for m in mus_q):
        raise CertificationError("lipsdp_fo: a max-pool multiplier rounded to 0")
    outs = [pool.window_sum_t_up(m[None])[0] for pool, m in zip(pools, mus_q)] + [None]
    ins = [None] + mus_q
    proven = []
    for j, problem in enumerate(problems):
        seg = replace(problem, input_weight=ins[j], output_weight=outs[j])
        d_in = np.ones(problem.weights[0].shape[1]) if ins[j] is None else ins[j]
        d_out = np.ones(problem.weights[-1].shape[0]) if outs[j] is None else outs[j]
        lam_q, lam_f = round_multipliers(lams[j], 0.0) if problem.depth > 1 else ([], [])
        got = SegmentOracle(seg)(lam_f, d_in, d_out)
        if got is None:
            raise CertificationError(f"lipsdp_fo: segment {j + 1}: the rounded multipliers leave the hidden block "
                                     "not positive definite")
        use_schur = diagonal_tail(seg)
        if not use_schur and seg.size > max_size:
            raise NotApplicableError(
                f"lipsdp_fo: segment {j + 1} has an LMI of side {seg.size} > "
                f"{limit_hint(LIPSDP_FO_SIZE, max_size)} (checked densely); raise it or use lipsdp_fast")
        done = None
        for margin in (1e-9, 1e-7, 1e-5, 1e-3):
            cert = Certificate(inflated(got[0], margin), tuple(lam_q))
            ok = check_diagonal_schur(seg, cert) if use_schur else check_certificate(seg, cert, method="float")
            if ok:
                done = (cert.rho, margin, "schur" if use_schur else "float")
                break
        if done is None:
            raise CertificationError(f"lipsdp_fo: could not prove the LMI of segment {j + 1} even with t inflated by "
                                     "1e-3 relative")
        proven.append(done)
    return proven


def _cnn(net: Network, steps: int, max_size: int) -> tuple[float, dict]:
    """The CNN with max pooling: segments between the pools, one joint first-order optimisation with the pools'
    quadratic constraints, every segment proven, ``L <= prod_j 2^{E_j} sqrt(t_j)`` (§6)."""
    from ..ir.views import segment_chains
    from .fast import fast_problem

    chains, pools, _ = segment_chains(net, "lipsdp_fo")
    problems = [fast_problem(c, per_neuron=True) for c in chains]
    t0 = time.perf_counter()
    start, best, lams, mus, history = optimise_segments(problems, pools, steps)
    t1 = time.perf_counter()
    proven = certify_segments(problems, pools, lams, mus, max_size)
    t2 = time.perf_counter()
    value = 1.0
    for rho, _, _ in proven:
        value = float(up(value * float(up(math.sqrt(float(rho))))))
    total = sum(sum(p.shifts) for p in problems)
    try:
        scaled = math.ldexp(value, total)
    except OverflowError:
        raise NumericalError("lipsdp_fo: the certified bound overflows the float range; rescale the weights") from None
    if math.ldexp(scaled, -total) != value:
        scaled = float(up(scaled))
    details = {
        "segments": len(problems),
        "warm_start_value": math.ldexp(math.exp(start / 2), total),
        "optimised_value": math.ldexp(math.exp(best / 2), total),
        "steps": len(history) - 1,
        "segment_rho": [float(r) for r, _, _ in proven],
        "margins": [m for _, m, _ in proven],
        "checks": [c for _, _, c in proven],
        "scale_exponents": [p.shifts for p in problems],
        "pool_multipliers": [np.asarray(m) for m in mus],
        "optimise_seconds": t1 - t0,
        "certify_seconds": t2 - t1,
        "conv": "explicit",
    }
    return scaled, details


# --------------------------------------------------------------------------- the method


def certify_chain(problem: LipSDPProblem, steps: int) -> dict:
    """Optimise and prove one problem (scaled by powers of two); returns the details (``value`` the bound)."""
    t0 = time.perf_counter()
    if problem.depth == 1:
        rho_start, start, name = float(np.linalg.norm(problem.weights[0], 2)) ** 2, [], "no hidden layer"
        rho_best, lam_best, history, anchor = rho_start, [], [rho_start], None
    else:
        rho_start, start, name = warm_start(problem)
        reduced = reduce_input(problem)
        rho_best, lam_best, history, anchor = optimise(reduced, start, steps)
    t1 = time.perf_counter()
    # the mixtures toward the inflated warm start are candidates too (proofs/lipsdp.md §5; rho is convex in lambda, and
    # the anchor's hidden block is safely positive definite): a best point near the boundary stays provable
    cert = certify(problem, lam_best, check="float", anchor=anchor)
    t2 = time.perf_counter()
    total = sum(problem.shifts)
    root = float(up(math.sqrt(float(cert.certificate.rho))))
    try:
        value = math.ldexp(root, total)
    except OverflowError:
        raise NumericalError("lipsdp_fo: the certified bound overflows the float range; rescale the weights") from None
    if math.ldexp(value, -total) != root:
        value = float(up(value))
    return {
        "value": value,
        "warm_start": name,
        "warm_start_value": math.ldexp(math.sqrt(max(rho_start, 0.0)), total),
        "optimised_value": math.ldexp(math.sqrt(max(rho_best, 0.0)), total),
        "steps": len(history) - 1,
        "lmi_size": problem.size,
        "rho_certified": float(cert.certificate.rho),
        "margin": cert.margin,
        "check": cert.check,
        "certificate": problem.original_certificate(cert.certificate),
        "optimise_seconds": t1 - t0,
        "certify_seconds": t2 - t1,
    }


def lipsdp_fo(net: Network, norm: NormLike = 2, *, steps: int = DEFAULT_STEPS, max_size: int = DEFAULT_MAX_SIZE,
              conv: str | None = None) -> Bound:
    """First-order LipSDP-Neuron: multipliers optimised by Adam on the eigenvalue form ``rho(lambda)`` from
    lipsdp_fast's closed-form warm start, then proven: a certified upper bound of the l2 Lipschitz constant.

    Claim: ``L_2 <= sqrt(rho)`` for the proven certificate ``(rho, lambda)`` (``H(rho, lambda) ≻ 0`` by a verified
    Cholesky factorisation of the full LMI), for every activation whose difference quotients lie in its declared slope
    interval (per-neuron slopes of local bounds included).  Never below LipSDP-Neuron's optimum (a feasible point of
    the same LMI).  Proof: ``proofs/lipsdp_fo.md``.  Fully connected networks and CNNs (explicit matrices);
    with max pooling the network is split at the pools, which enter through the quadratic constraint
    ``Δy_r² <= Σ_{k in window(r)} Δx_k²`` with one multiplier per window, and the value is the product of the
    segments' proven weighted LipSDP values (§6).  An LMI side (inputs + hidden neurons; per segment, unless its
    hidden block is diagonal) above ``max_size`` raises :class:`NotApplicableError`; an unprovable point raises
    :class:`CertificationError`.

    >>> import lipverify as lv
    >>> net = lv.Network([lv.Dense([[1, 1], [1, -1]]), lv.ReLU(), lv.Dense([[1, 0], [0, 1]])])
    >>> b = lv.bound(net, "lipsdp_fo", norm=2)
    >>> 1.41421356 <= b.value <= 1.5
    True
    """
    started = time.perf_counter()
    p = require_norm("lipsdp_fo", norm, ("2",), "LipSDP bounds the spectral (l2) Lipschitz constant only")
    if not (isinstance(steps, int) and steps >= 0):
        raise ValueError(f"lipsdp_fo: steps must be a nonnegative integer, got {steps!r}")
    from .fast import _lmi_side, fast_problem

    if conv == "implicit":
        raise NotApplicableError("lipsdp_fo with conv='implicit': the certificate is checked on the layer matrices; "
                                 "use conv='explicit'")
    from ..ir.graph import conv_variants

    is_cnn = bool(conv_variants(net, conv))
    if is_cnn:
        from ..ir.views import segment_chains

        _, pools, _ = segment_chains(net, "lipsdp_fo")
        if pools:
            with single_threaded_blas(), np.errstate(over="ignore", under="ignore"):
                value, details = _cnn(net, steps, max_size)
            details["certified_value"] = value
            assumptions = ("segments between max-pool layers: LipSDP-Neuron LMIs with weighted norms at first-order "
                           "optimised multipliers, each proven positive definite (verified Cholesky, Schur complement "
                           "on a diagonal hidden block); max-pool quadratic constraints (proofs/lipsdp_fo.md §6)",)
            return Bound.upper_bound(value, p, "lipsdp_fo", rounding=OUTWARD, seconds=time.perf_counter() - started,
                                     assumptions=assumptions, details=details)
        from ..ir.views import cnn_chain

        chain = cnn_chain(net, "lipsdp_fo", conv)
    else:
        chain = linear_chain(net, "lipsdp_fo")
    size = _lmi_side(chain)
    if size > max_size:
        raise NotApplicableError(
            f"lipsdp_fo: the LMI has side {size} (inputs + hidden neurons) > {limit_hint(LIPSDP_FO_SIZE, max_size)}: the "
            f"certificate is checked on the dense matrix; raise it (e.g. {limit_hint(LIPSDP_FO_SIZE, size)}) or use "
            "lipsdp_fast or k1")
    problem = fast_problem(chain, per_neuron=True)
    with single_threaded_blas(), np.errstate(over="ignore", under="ignore"):
        details = certify_chain(problem, steps)
    value = details.pop("value")
    details["certified_value"] = value
    if is_cnn:
        details["conv"] = "explicit"
    assumptions = ("LipSDP-Neuron LMI at first-order optimised multipliers proven positive definite by a verified "
                   "floating-point Cholesky factorisation",)
    return Bound.upper_bound(value, p, "lipsdp_fo", rounding=OUTWARD, seconds=time.perf_counter() - started,
                             assumptions=assumptions, details=details)
