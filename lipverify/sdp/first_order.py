"""``lipsdp_fo``: first-order LipSDP-Neuron (eigenvalue optimisation of the multipliers), proven by the kernel.

Proof: ``proofs/lipsdp_first_order.md``.  No SDP solver.  For multipliers ``lambda >= 0`` whose hidden block ``K_rr``
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

import numpy as np
import scipy.linalg
import scipy.sparse.linalg

from ..bounds.common import require_norm
from ..bounds.records import LIPSDP_FO_SIZE, LIPSDP_FO_STEPS, limit_hint
from ..errors import CertificationError, NotApplicableError, NumericalError
from ..ir.views import linear_chain
from ..network import Network
from ..norms import NormLike
from ..result import OUTWARD, Bound
from ..rigorous import up
from .certificate import LipSDPProblem, assemble, certify, lmi_blocks
from .solvers import reduce_input, single_threaded_blas

#: default number of first-order steps
DEFAULT_STEPS = LIPSDP_FO_STEPS.default
#: default limit of the LMI side (inputs + hidden neurons): the certificate is checked on the dense matrix
DEFAULT_MAX_SIZE = LIPSDP_FO_SIZE.default
#: Adam's step on log(lambda), and its decay per step
LEARNING_RATE = 0.05
DECAY = 0.995
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
    theta = [np.log(np.maximum(np.asarray(x, dtype=np.float64), 1e-300)) for x in start]
    got = oracle([np.exp(t) for t in theta])
    if got is None:
        raise CertificationError("lipsdp_fo: the warm start's hidden block is not positive definite")
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
    return best[0], best[1], history


def warm_start(problem: LipSDPProblem):
    """lipsdp_fast's best closed-form member for this problem: ``(rho_estimate, multipliers, name)``."""
    from .fast import members

    cands = members(problem)
    if not cands:
        raise CertificationError("lipsdp_fo: no closed-form member (warm start) is admissible on this network")
    rho, lams, name = cands[0]
    return rho, [rho * np.asarray(x, dtype=np.float64) for x in lams], name


# --------------------------------------------------------------------------- the method


def certify_chain(problem: LipSDPProblem, steps: int) -> dict:
    """Optimise and prove one problem (scaled by powers of two); returns the details (``value`` the bound)."""
    t0 = time.perf_counter()
    if problem.depth == 1:
        rho_start, start, name = float(np.linalg.norm(problem.weights[0], 2)) ** 2, [], "no hidden layer"
        rho_best, lam_best, history = rho_start, [], [rho_start]
    else:
        rho_start, start, name = warm_start(problem)
        reduced = reduce_input(problem)
        rho_best, lam_best, history = optimise(reduced, start, steps)
        # the start itself is a candidate too (the optimisation never returns a worse point, but rho is re-estimated)
    t1 = time.perf_counter()
    cert = certify(problem, lam_best, check="float")
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


def lipsdp_fo(net: Network, norm: NormLike = 2, *, steps: int = DEFAULT_STEPS, max_size: int = DEFAULT_MAX_SIZE) -> Bound:
    """First-order LipSDP-Neuron: multipliers optimised by Adam on the eigenvalue form ``rho(lambda)`` from
    lipsdp_fast's closed-form warm start, then proven: a certified upper bound of the l2 Lipschitz constant.

    Claim: ``L_2 <= sqrt(rho)`` for the proven certificate ``(rho, lambda)`` (``H(rho, lambda) ≻ 0`` by a verified
    Cholesky factorisation of the full LMI), for every activation whose difference quotients lie in its declared slope
    interval (per-neuron slopes of local bounds included).  Never below LipSDP-Neuron's optimum (a feasible point of
    the same LMI).  Proof: ``proofs/lipsdp_first_order.md``.  Fully connected networks; an LMI side (inputs + hidden
    neurons) above ``max_size`` raises :class:`NotApplicableError`; an unprovable point raises
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
    assumptions = ("LipSDP-Neuron LMI at first-order optimised multipliers proven positive definite by a verified "
                   "floating-point Cholesky factorisation",)
    return Bound.upper_bound(value, p, "lipsdp_fo", rounding=OUTWARD, seconds=time.perf_counter() - started,
                             assumptions=assumptions, details=details)
