"""LipSDP-Neuron and LipSDP-Layer (Fazlyab et al., NeurIPS 2019) with a proven certificate.

Proof of the LMI and of the certification procedure: ``proofs/lipsdp.md``.

For a fully connected chain ``W_L D_{L-1} ⋯ D_1 W_1`` with diagonal ``D_l`` whose entries lie in the slope
interval ``[alpha_l, beta_l]``, a pair ``(rho, lambda)`` with ``lambda >= 0`` and

    H(rho, lambda) = rho E_0 + K(lambda) ≻ 0

(``-H`` is the LipSDP matrix ``M``; ``H`` is block tridiagonal, see
:func:`~lipverify.sdp.certificate.lmi_blocks`) proves that the l2 Lipschitz constant is at most ``sqrt(rho)``.
The SDP solver only *suggests* ``(rho, lambda)``: the multipliers are rounded to dyadic rationals, ``rho`` is
recomputed from the Schur complement and rounded up, and ``H ≻ 0`` is proven exactly (python-flint,
Sylvester's criterion via fraction-free LU) or by a verified floating-point Cholesky factorisation of an
interval enclosure of ``H``.  Nothing else becomes a number.

This module builds the problem and runs the method; the proof is :mod:`lipverify.sdp.certificate` (the trusted
kernel: rounding, exact or verified-Cholesky PSD proofs, the candidate loop) and the solvers are
:mod:`lipverify.sdp.solvers`: by default lipverify's own primal-dual interior-point method
(:class:`~lipverify.sdp.solvers.StructuredIPM`: numpy, HKM direction, normal matrix from the rank-2 structure of
every multiplier's matrix, at layer size for LipSDP-Layer), then CVXOPT (``conelp`` with a structured KKT
solver), then SCS through the block-structured cvxpy formulation (Clarabel on tiny LMIs only).  Every solver
sees the problem reduced to the range of ``W_1^T`` (``proofs/lipsdp.md`` §6: on the null space of ``W_1`` the
LMI is ``rho I``), while the certificate is proven on the full LMI.  A status other than optimal raises SolverError.

Numerics: every weight matrix is first scaled by a power of two (exact) so that its spectral norm lies in
``[1/2, 1)``; the constant of the original chain is the scaled one times the product of the powers of two.
On deep nets with cancellations (the zoo's sawtooth) that is not enough: the solution is then rescaled per
neuron by powers of two and solved again (:func:`rebalance`), and a point on the boundary of the feasible set
is repaired by mixing it with a strictly feasible anchor (:func:`~lipverify.sdp.certificate.certify`);
``proofs/lipsdp.md`` §3, §5.
``Bound.details`` reports the solver's value, the certified value and the relative loss; a loss above 1e-4
is said in ``Bound.status`` and ``details["note"]``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from fractions import Fraction

import numpy as np
import scipy.sparse as sp

from ..bounds.common import require_norm
from ..errors import CertificationError, NotApplicableError, NumericalError, SolverError
from ..ir.chain import LinearChain, to_fraction
from ..ir.views import linear_chain
from ..network import Network
from ..norms import NormLike
from ..result import OUTWARD, Bound
from ..rigorous import Interval, up
from .certificate import (
    ANCHOR_MARGIN,
    EXACT_MAX_SIZE,
    LOSS_WARN,
    Certificate,
    Certification,
    LipSDPProblem,
    _fmpq_matrix,
    _fq,
    _iscale,
    certify,
    check_certificate,
)
from .scaling import BALANCED, REBALANCE_ROUNDS, RHO_BALANCED, float_fractions, scale_entries, shift_weight
from .solvers import reduce_input, single_threaded_blas, solve_lipsdp, solver_list

#: default limit of the LMI side (inputs + hidden neurons) so that ``lv.compare`` stays fast
DEFAULT_MAX_NEURONS = 200
#: relative loss (certified value over solver value, minus 1) above which the anchor repair is run
REPAIR_LOSS = 1e-7


# --------------------------------------------------------------------------- the problem


def _dense(w) -> np.ndarray:
    return np.asarray(w.toarray() if sp.issparse(w) else w, dtype=np.float64)



def problem_from_chain(chain: LinearChain, *, want_exact: bool = True) -> LipSDPProblem:
    """Merge the linear steps of ``chain``, scale every weight by a power of two (norm in [1/2, 1)).

    A slope interval ``[a, a]`` (identity activation, or two affine layers in a row) is an exact linear map:
    ``W_{l+1} D_l W_l = a W_{l+1} W_l`` is merged into one weight (exactly with python-flint when
    ``want_exact`` and the exact weights are known, else as a rigorous interval enclosure), so the LMI only
    has multipliers for genuinely nonlinear layers.  ``exact`` is filled only when ``want_exact``.
    """
    radii0 = [None if r is None or not np.any(r) else _dense(r) for r in chain.radii]
    use_exact = want_exact and (chain.exact is not None or all(r is None for r in radii0))
    if use_exact:
        fr = list(chain.exact) if chain.exact is not None else [float_fractions(_dense(w)) for w in chain.weights]
        items = [(_dense(w), r, f) for w, r, f in zip(chain.weights, radii0, fr)]
    else:
        items = [(_dense(w), r, None) for w, r in zip(chain.weights, radii0)]
    merged = [items[0]]
    slopes: list[tuple[Fraction, Fraction]] = []
    pairs: list[tuple[np.ndarray, np.ndarray] | None] = []
    for s, nxt in zip(chain.slopes, items[1:]):
        prev, nxt, a, b, pair = narrow_layer(s, merged[-1], nxt)
        if a == b or pair is not None and np.array_equal(pair[0], pair[1]):
            merged[-1] = _merge(nxt, prev, a if pair is None else [Fraction(float(v)) for v in pair[0]])
            continue
        merged[-1] = prev
        slopes.append((a, b))
        pairs.append(pair)
        merged.append(nxt)
    weights, radii, exact, shifts = [], [], [], []
    for w, r, f in merged:
        norm = float(np.linalg.norm(w, 2)) if w.size else 0.0
        e = math.frexp(norm)[1] if norm > 0 and math.isfinite(norm) else 0
        ws, rs, fs = shift_weight(w, r, f, e)
        weights.append(ws)
        radii.append(rs)
        exact.append(fs)
        shifts.append(e)
    return LipSDPProblem(tuple(weights), tuple(radii), tuple(exact) if use_exact else None, tuple(slopes), tuple(shifts),
                         None, tuple(pairs) if any(x is not None for x in pairs) else None)


def narrow_layer(s, prev, nxt):
    """One activation slot ``s`` (:class:`~lipverify.ir.chain.Slopes`) between the (float, radius, Fractions-or-None)
    weights ``prev`` and ``nxt``, with its per-neuron slopes used (``proofs/lipsdp.md`` §1): neurons with slopes
    ``[0, 0]`` (``v_i = 0``) are dropped (their row of ``prev``, their column of ``nxt``), and the layer interval
    becomes the envelope of the remaining neurons.  Returns ``(prev, nxt, alpha, beta, pair)``: ``pair`` is the
    per-neuron ``(alpha_i, beta_i)`` float arrays, or ``None`` when ``[alpha, beta]`` holds for every neuron (then
    ``alpha == beta`` means a linear layer); a ``pair`` with ``alpha_i == beta_i`` everywhere is a linear layer
    ``diag(alpha_i)``."""
    a, b = to_fraction(s.lo), to_fraction(s.hi)
    if a == b or s.neuron_lo is None:
        return prev, nxt, a, b, None
    lo, hi = (np.asarray(v, dtype=np.float64) for v in (s.neuron_lo, s.neuron_hi))
    dead = (lo == 0) & (hi == 0)
    if np.all(dead):
        return prev, nxt, Fraction(0), Fraction(0), None
    if np.any(dead):  # v_i = 0 for a neuron with slopes [0, 0]: drop its row of W_l and its column of W_{l+1}
        keep = ~dead
        prev, nxt = _rows(prev, keep), _cols(nxt, keep)
        lo, hi = lo[keep], hi[keep]
    a, b = Fraction(float(np.min(lo))), Fraction(float(np.max(hi)))
    if np.all(lo == float(a)) and np.all(hi == float(b)):
        return prev, nxt, a, b, None
    return prev, nxt, a, b, (lo, hi)


def _rows(item, keep: np.ndarray):
    """The rows ``keep`` of a (float, radius, Fractions-or-None) weight."""
    w, r, f = item
    return w[keep], None if r is None else r[keep], None if f is None else f[keep]


def _cols(item, keep: np.ndarray):
    """The columns ``keep`` of a (float, radius, Fractions-or-None) weight."""
    w, r, f = item
    return w[:, keep], None if r is None else r[:, keep], None if f is None else f[:, keep]



def rebalance(problem: LipSDPProblem, rho: float, lambdas) -> LipSDPProblem | None:
    """The same chain rescaled by powers of two, chosen from a (rough) solution ``(rho, lambda)`` of
    ``problem`` so that the rescaled solution has ``rho`` and every multiplier near 1 (``proofs/lipsdp.md`` §3, §5).

    The output weight is scaled by ``2**-d`` (``d = round(log4 rho)``, divides ``rho`` and every multiplier by
    ``4**d``) and hidden neuron ``i`` by ``N = 2**n_i`` (its multiplier times ``4**n_i``), with
    ``n_i = -round(log4(lambda_i / 4**d))``.  The first scaling (weight norms in [1/2, 1)) ignores
    cancellations between layers: on the zoo's sawtooth the optimal multipliers decay by 16 per layer and
    ``rho`` is ~4^-2k, far below the solver's absolute tolerances; rescaled neurons of a ReLU net spread the
    multipliers of one layer as widely.  Returns ``None`` when the solution is already within
    ``4**BALANCED`` of 1 (or the rescaled weights would not be finite).
    """
    if not (math.isfinite(rho) and rho > 0) or problem.depth < 1:
        return None
    d = round(math.log(rho, 4))
    flat = np.concatenate([np.ravel(x) for x in lambdas]) if lambdas else np.zeros(0)
    top = float(np.max(flat)) if flat.size else 0.0
    exps = []
    for lam in lambdas:
        lam = np.asarray(lam, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.log(lam) / math.log(4) - d
        # multipliers below 2^-40 of the largest are numerically zero: leave those neurons alone
        keep = np.isfinite(logs) & (lam > top * 2.0**-40)
        exps.append(np.where(keep, -np.rint(np.clip(logs, -40, 40)), 0).astype(np.int64))
    if abs(d) <= BALANCED and all(np.all(np.abs(n) <= BALANCED) for n in exps):
        return None
    old = problem.neuron_exps or tuple(np.zeros(s, dtype=np.int64) for s in problem.hidden)
    new = tuple(a + b for a, b in zip(old, exps))
    weights, radii, exact = [], [], []
    for k in range(problem.depth):
        rows = exps[k] if k < problem.depth - 1 else np.full(problem.weights[k].shape[0], d)
        cols = exps[k - 1] if k > 0 else np.zeros(problem.weights[k].shape[1], dtype=np.int64)
        got = scale_entries(problem.weights[k], problem.radii[k], None if problem.exact is None else problem.exact[k],
                            rows, cols)
        if got is None:
            return None
        weights.append(got[0])
        radii.append(got[1])
        exact.append(got[2])
    shifts = problem.shifts[:-1] + (problem.shifts[-1] + d,)
    return LipSDPProblem(tuple(weights), tuple(radii), None if problem.exact is None else tuple(exact), problem.slopes,
                         shifts, new, problem.neuron_slopes)



def lmi_size(chain: LinearChain) -> int:
    """Side of the LipSDP matrix: the inputs plus the hidden neurons of the nonlinear layers."""
    widths = chain.widths
    return widths[0] + sum(widths[k + 1] for k, s in enumerate(chain.slopes) if s.lo != s.hi)



def _merge(second, first, a):
    """``second @ D @ first`` for (float, radius, Fractions-or-None) triples, exactly or as an enclosure, with
    ``D = a I`` for a Fraction ``a`` or ``D = diag(a)`` for a list of Fractions (per-neuron slopes ``[a_i, a_i]``)."""
    w2, r2, f2 = second
    w1, r1, f1 = first
    per_neuron = isinstance(a, list)
    if f1 is not None and f2 is not None:
        if per_neuron:
            import flint

            n = len(a)
            dm = flint.fmpq_mat(n, n, [_fq(a[i]) if i == j else 0 for i in range(n) for j in range(n)])
            prod = _fmpq_matrix(f2) * dm * _fmpq_matrix(f1)
        else:
            prod = _fmpq_matrix(f2) * _fmpq_matrix(f1) * _fq(a)
        f = np.empty((prod.nrows(), prod.ncols()), dtype=object)
        for i in range(prod.nrows()):
            for j in range(prod.ncols()):
                v = prod[i, j]
                f[i, j] = Fraction(int(v.p), int(v.q))
        w = np.array([[float(v) for v in row] for row in f], dtype=np.float64).reshape(f.shape)
        exact_floats = np.array([[Fraction(float(v)) == v for v in row] for row in f], dtype=bool).reshape(f.shape)
        # float(Fraction) is correctly rounded: the error is at most half a gap, below spacing(|w|)
        r = np.where(exact_floats, 0.0, np.spacing(np.abs(w)))
        return w, (r if np.any(r) else None), f
    if per_neuron:  # the slopes are floats (exact): scale the rows of W_l, then multiply
        d = np.array([float(v) for v in a], dtype=np.float64)
        enc = Interval.point(w1, r1).scale_rows(d, d).left_matmul(w2, r2)
    else:
        enc = _iscale(Interval.point(w1, r1).left_matmul(w2, r2), a)
    if not (np.all(np.isfinite(enc.mid)) and np.all(np.isfinite(enc.rad))):
        raise CertificationError("lipsdp: merging two linear layers overflowed the float range")
    return enc.mid, (enc.rad if np.any(enc.rad) else None), None



# --------------------------------------------------------------------------- the method


def lipsdp(net: Network, norm: NormLike = 2, *, variant: str = "neuron", solver: str | None = None,
           max_neurons: int = DEFAULT_MAX_NEURONS, check: str = "auto", solver_options: dict | None = None,
           progress: Callable[[int, int], None] | None = None) -> Bound:
    """LipSDP (Fazlyab et al. 2019): a certified upper bound of the l2 Lipschitz constant.

    Claim: if ``H(rho, lambda) ≻ 0`` (proven exactly or by a verified Cholesky) then ``L_2 <= sqrt(rho)``, for
    every activation whose derivative lies in its declared slope interval ``[alpha, beta]``.
    ``variant="neuron"`` uses one multiplier per hidden neuron, ``"layer"`` one per layer (never smaller).
    Per-neuron slopes (local bounds, ``domain=``) enter the LMI neuron by neuron: dead neurons are dropped, linear
    layers merged, the other neurons keep their own ``[alpha_i, beta_i]`` (``proofs/lipsdp.md`` §1-§2).
    Proof: ``proofs/lipsdp.md``.  Only l2 (other norms raise :class:`NotApplicableError`); nets whose LMI side
    (inputs + hidden neurons) exceeds ``max_neurons`` raise :class:`NotApplicableError`.  The solvers are
    lipverify's structured interior-point method, then CVXOPT, then SCS, unless ``solver`` names one, all on the
    problem reduced to the range of ``W_1^T`` (``proofs/lipsdp.md`` §6; the certificate is proven on the full
    LMI); a non-optimal status raises :class:`SolverError`; an
    unprovable certificate raises :class:`CertificationError`.  Ill-conditioned nets are rebalanced and
    re-solved, near-boundary optima repaired through an anchor (``proofs/lipsdp.md`` §5); ``details`` has
    ``solver_value``, ``certified_value`` and ``relative_loss`` (above 1e-4 it is also in ``status``),
    ``lmi_size`` (the full LMI, the one proven) and ``solver_lmi_size`` (after the input-block reduction).
    BLAS runs single-threaded for the whole call (numpy's threads spinning on a busy machine made the dense
    steps 10-50x slower; needs the optional ``threadpoolctl``).
    ``progress(done, 4)`` is called after each stage (solve, certify, rebalance, anchor repair; a stage not
    needed still ticks), for ``compare``'s ``work_progress`` and the CLI's bar.

    >>> import lipverify as lv
    >>> net = lv.Network([lv.Dense([[1, 1], [1, -1]]), lv.ReLU(), lv.Dense([[1, 0], [0, 1]])])
    >>> b = lv.bound(net, "lipsdp", norm=2)
    >>> 1.41421356 <= b.value <= 1.4143
    True
    """
    with single_threaded_blas():
        return _lipsdp(net, norm, variant=variant, solver=solver, max_neurons=max_neurons, check=check,
                       solver_options=solver_options, progress=progress)


def _lipsdp(net: Network, norm: NormLike = 2, *, variant: str = "neuron", solver: str | None = None,
            max_neurons: int = DEFAULT_MAX_NEURONS, check: str = "auto", solver_options: dict | None = None,
            progress: Callable[[int, int], None] | None = None) -> Bound:
    started = time.perf_counter()
    p = require_norm("lipsdp", norm, ("2",), "LipSDP bounds the spectral (l2) Lipschitz constant only")
    chain = linear_chain(net, "lipsdp")
    size = lmi_size(chain)
    if size > max_neurons:
        raise NotApplicableError(
            f"lipsdp: the network is larger than the default limit: its LMI has side {size} "
            f"(inputs + hidden neurons) > max_neurons={max_neurons}; pass a larger max_neurons, "
            f"e.g. lv.bound(net, 'lipsdp', norm=2, max_neurons={size})"
        )
    if variant not in ("neuron", "layer"):
        raise ValueError(f"lipsdp: variant must be 'neuron' or 'layer', got {variant!r}")
    if check not in ("auto", "exact", "float"):
        raise ValueError(f"lipsdp: check must be 'auto', 'exact' or 'float', got {check!r}")
    problem = problem_from_chain(chain, want_exact=check == "exact" or (check == "auto" and size <= EXACT_MAX_SIZE))
    if check == "exact" and problem.exact is None:
        raise ValueError("lipsdp: check='exact' needs exact weights; these carry conversion radii: use check='float'")
    solvers = solver_list(solver, problem.size)
    options = dict(solver_options or {})

    def tick(stage: int) -> None:
        if progress is not None:
            progress(stage, 4)

    t0 = time.perf_counter()
    name, status, rho_solver, lam = solve_lipsdp(problem, variant, solvers, options)
    t_solve = time.perf_counter() - t0
    tick(1)
    cert, failure = _try_certify(problem, lam, check)
    tick(2)
    rounds, fallback = 0, None
    if cert is None or _loss(cert, rho_solver) > REPAIR_LOSS or abs(math.log(max(rho_solver, 1e-300), 4)) > RHO_BALANCED:
        # §5: rescale by powers of two so that the solution is O(1) and solve again, until balanced
        current, found = problem, (name, status, rho_solver, lam)
        while rounds < REBALANCE_ROUNDS:
            balanced = rebalance(current, found[2], found[3])
            if balanced is None:
                break
            t = time.perf_counter()
            try:
                found = solve_lipsdp(balanced, variant, solvers, options)
            except SolverError:
                break  # keep the last solution (on the previous scaling)
            finally:
                t_solve += time.perf_counter() - t
            current = balanced
            rounds += 1
        if rounds:  # continue on the rescaled problem; the first certificate stays as a fallback
            if cert is not None:
                fallback = (problem, (name, status, rho_solver, lam), cert)
            problem, (name, status, rho_solver, lam) = current, found
            cert, failure = _try_certify(problem, lam, check)
    tick(3)
    anchor_margin = None
    if cert is None or _loss(cert, rho_solver) > REPAIR_LOSS:
        # §5: mix toward a strictly feasible anchor (same LMI with a margin on the hidden blocks)
        top = max((float(np.max(x)) for x in lam if np.size(x)), default=0.0)
        anchor_margin = ANCHOR_MARGIN * (top if math.isfinite(top) and top > 0 else 1.0)
        try:
            t = time.perf_counter()
            try:
                anchor = solve_lipsdp(problem, variant, solvers, options, anchor_margin)[3]
            finally:
                t_solve += time.perf_counter() - t
            repaired = certify(problem, lam, check=check, anchor=anchor)
            if cert is None or repaired.certificate.rho < cert.certificate.rho:
                cert = repaired
        except (SolverError, CertificationError):
            pass
    tick(4)
    kept_first = fallback is not None and (cert is None or _value(fallback[0], fallback[2]) < _value(problem, cert))
    if kept_first:
        problem, (name, status, rho_solver, lam), cert = fallback
    if cert is None:
        raise failure
    t1 = t0 + t_solve
    t2 = time.perf_counter()
    total = sum(problem.shifts)
    root = float(up(math.sqrt(float(cert.certificate.rho))))  # rho is a float; sqrt is correctly rounded
    try:
        value = math.ldexp(root, total)
        solver_value = math.ldexp(math.sqrt(max(rho_solver, 0.0)), total)
    except OverflowError:
        raise NumericalError("lipsdp: the certified bound overflows the float range; rescale the weights") from None
    if math.ldexp(value, -total) != root:  # underflow rounded the power-of-two scaling: round upward
        value = float(up(value))
    loss = value / solver_value - 1 if solver_value > 0 else math.inf
    details = {
        "variant": variant,
        "lmi_size": problem.size,
        "solver_lmi_size": reduce_input(problem).size,
        "solver_value": solver_value,
        "certified_value": value,
        "relative_loss": loss,
        "rho_solver": rho_solver,
        "rho_schur": cert.rho_estimate,
        "rho_certified": float(cert.certificate.rho),
        "rho_inflation": float(cert.certificate.rho) / rho_solver - 1 if rho_solver > 0 else math.inf,
        "margin": cert.margin,
        "rebalanced": rounds,
        "first_scaling_kept": kept_first,
        "anchor_margin": anchor_margin,
        "mix": cert.mix,
        "check": cert.check,
        "scale_exponents": problem.shifts,
        "certificate": problem.original_certificate(cert.certificate),
        "solve_seconds": t1 - t0,
        "certify_seconds": t2 - t1,
    }
    if loss > LOSS_WARN:
        details["note"] = (f"the certified value {value:.9g} is {loss:.2e} relative above the solver's value "
                           f"{solver_value:.9g}: the solver's multipliers could not be repaired closer "
                           "(proofs/lipsdp.md §5); the value is still a proven upper bound")
        status = f"{status}; certified value {loss:.1e} relative above the solver's"
    used = cert.check
    assumptions = (f"LipSDP-{variant} LMI proven positive definite "
                   + ("in exact rational arithmetic (python-flint)" if used == "exact"
                      else "by a verified floating-point Cholesky factorisation"),)
    return Bound.upper_bound(value, p, "lipsdp", rounding=OUTWARD, seconds=time.perf_counter() - started,
                             assumptions=assumptions, solver=name, status=status, details=details)


def _loss(cert: Certification, rho_solver: float) -> float:
    """Relative loss ``sqrt(rho_certified / rho_solver) - 1`` of the certified value (``inf`` if undefined)."""
    if not rho_solver > 0:
        return math.inf
    return math.sqrt(float(cert.certificate.rho) / rho_solver) - 1


def _value(problem: LipSDPProblem, cert: Certification) -> float:
    """The bound a certificate of ``problem`` gives, in float (for comparing candidates only)."""
    try:
        return math.ldexp(math.sqrt(float(cert.certificate.rho)), sum(problem.shifts))
    except OverflowError:
        return math.inf


def _try_certify(problem: LipSDPProblem, lam, check: str):
    try:
        return certify(problem, lam, check=check), None
    except CertificationError as exc:
        return None, exc


def verify(net: Network, certificate: Certificate, *, method: str = "auto") -> bool:
    """Re-check a certificate ``(rho, lambdas)`` of ``net`` (original weights): ``True`` only if
    ``H(rho, lambda) ≻ 0`` is proven, which implies ``L_2 <= sqrt(rho)`` (``proofs/lipsdp.md``).

    >>> import lipverify as lv
    >>> from fractions import Fraction
    >>> net = lv.Network([lv.Dense([[2, 0], [0, 1]]), lv.ReLU(), lv.Dense([[1, 0], [0, 1]])])
    >>> verify(net, Certificate(Fraction(17, 4), ((Fraction(2), Fraction(2)),)))
    True
    >>> verify(net, Certificate(Fraction(4), ((Fraction(2), Fraction(2)),)))
    False
    """
    problem = problem_from_chain(linear_chain(net, "lipsdp"), want_exact=method != "float")
    return check_certificate(problem, certificate.scaled(problem.shifts), method=method)
