"""``lipsdp_fast``: closed-form LipSDP-Neuron-feasible certificates, proven by the certificate kernel.

Proof: ``proofs/lipsdp_fast.md``.  No SDP solver.  The LipSDP matrix ``H(rho, lambda)`` of
:mod:`lipverify.sdp.certificate` is block tridiagonal; eliminating its blocks from the input forward (with ``rho``
normalised to 1) gives the Schur complements

    P_0 = I,    P_k = Λ_k - m_k² Λ_k W_k (P_{k-1} + p_k W_kᵀ Λ_k W_k)^{-1} W_kᵀ Λ_k,

(``m = (α+β)/2``, ``p = αβ``) and ``H ≻ 0`` as soon as every ``P_k ≻ 0`` and ``rho > λ_max(W_L P_{L-1}^{-1} W_Lᵀ)``.
With ``Λ_k = λ_k S_k`` (``S_k`` a positive diagonal, the identity for ECLipsE-Fast) every ``P_k`` has a closed form
through one symmetric eigendecomposition per layer (§2 of the proof), for *any* slope interval ``[α, β]`` (the
``αβ`` term included).  A few members of this family (``S_k = I`` or a Jacobi scaling, the ``λ_k`` of ECLipsE-Fast
times a factor, the last multiplier chosen by a line search) are computed in floating point; the best is rounded
to dyadic rationals, ``rho`` is inflated and ``H(rho, lambda) ≻ 0`` is proven by the kernel's verified Cholesky
factorisation (:func:`~lipverify.sdp.certificate.check_certificate`, ``method="float"``).  The reported value is
``min(sqrt(rho), K1)`` (``details["capped_by"]`` says which).

Reference: Y. Xu, S. Sivaranjani, *ECLipsE: Efficient Compositional Lipschitz Constant Estimation for Deep
Neural Networks*, NeurIPS 2024 (ECLipsE-Fast is the member ``S_k = I``, factor 1, for ``α = 0``); U. Syed, B. Hu,
*Improved Scalable Lipschitz Bounds for Deep Neural Networks*, 2025 (more general closed-form parameterisations).
"""

from __future__ import annotations

import math
import time
from fractions import Fraction

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg

from ..bounds.common import require_norm
from ..bounds.records import LIPSDP_FAST_SIZE, limit_hint
from ..errors import CertificationError, NotApplicableError, NumericalError
from ..ir.chain import LinearChain
from ..ir.views import linear_chain
from ..network import Network
from ..norms import NormLike
from ..result import OUTWARD, Bound
from ..rigorous import Interval, up
from .certificate import Certificate, LipSDPProblem, _iscale, check_certificate, inflated, round_multipliers
from .scaling import shift_weight

#: default limit of the LMI side (inputs + hidden neurons): the certificate is checked on the dense matrix
DEFAULT_MAX_SIZE = LIPSDP_FAST_SIZE.default
#: the factors ``c`` of the members: ``λ_k = c · t*_k / κ_max`` (``c = 1`` is ECLipsE-Fast's choice)
FACTORS = (1.0, 1.4, 1.7)
#: the diagonal scalings ``S_k`` of the members: ``"identity"`` (ECLipsE-Fast) and ``"jacobi"``
SCALINGS = ("identity", "jacobi")
#: relative inflations of rho tried, in order, until the proof goes through
MARGINS = (1e-7, 1e-5, 1e-3)
#: points of the line search of the last layer's factor (log-spaced in ``(0, c_max)``)
LINE_SEARCH = 12
#: golden-section steps refining the best grid point
REFINE = 16
#: the line search runs when the last hidden layer has at most this many neurons
LINE_SEARCH_MAX = 600


def _dense(w) -> np.ndarray:
    return np.asarray(w.toarray() if sp.issparse(w) else w, dtype=np.float64)


# --------------------------------------------------------------------------- the problem


def fast_problem(chain: LinearChain, *, per_neuron: bool = False) -> LipSDPProblem:
    """The chain as a :class:`~lipverify.sdp.certificate.LipSDPProblem` in floats with radii (no exact weights):
    linear steps (``α = β = a``) merged into ``a W_{l+1} W_l`` as a rigorous enclosure, every weight scaled by a
    power of two to a spectral norm near ``[1/2, 1)`` (estimated by power
    iteration) (exact; ``proofs/lipsdp.md`` §1, §3).  ``per_neuron=True`` keeps per-neuron slopes in the problem
    (``LipSDPProblem.neuron_slopes``, for :mod:`lipverify.sdp.first_order`); the closed forms read only the layer
    envelopes ``slopes``."""
    from .lipsdp import narrow_layer

    items = [(_dense(w), None if r is None or not np.any(_dense(r)) else _dense(r)) for w, r in zip(chain.weights, chain.radii)]
    merged = [items[0]]
    slopes: list[tuple[Fraction, Fraction]] = []
    pairs: list = []
    for s, nxt in zip(chain.slopes, items[1:]):
        # per-neuron slopes (local bounds): dead neurons dropped, the envelope of the others (proof §1)
        (w1, r1, _), (w2, r2, _), a, b, pair = narrow_layer(s, merged[-1] + (None,), nxt + (None,))
        merged[-1], nxt = (w1, r1), (w2, r2)
        if pair is not None and np.array_equal(pair[0], pair[1]):  # every neuron linear: diag(a_i), exact floats
            enc = Interval.point(w1, r1).scale_rows(pair[0], pair[0]).left_matmul(nxt[0], nxt[1])
            if not (np.all(np.isfinite(enc.mid)) and np.all(np.isfinite(enc.rad))):
                raise NumericalError("lipsdp_fast: merging two linear layers overflowed the float range")
            merged[-1] = (enc.mid, enc.rad if np.any(enc.rad) else None)
        elif a == b:
            enc = _iscale(Interval.point(w1, r1).left_matmul(nxt[0], nxt[1]), a)
            if not (np.all(np.isfinite(enc.mid)) and np.all(np.isfinite(enc.rad))):
                raise NumericalError("lipsdp_fast: merging two linear layers overflowed the float range")
            merged[-1] = (enc.mid, enc.rad if np.any(enc.rad) else None)
        else:
            slopes.append((a, b))
            pairs.append(pair)
            merged.append(nxt)
    weights, radii, shifts = [], [], []
    for w, r in merged:
        norm = _norm_estimate(w)  # any power of two is exact; an estimate of the spectral norm balances the LMI
        e = math.frexp(norm)[1] if norm > 0 and math.isfinite(norm) else 0
        ws, rs, _ = shift_weight(w, r, None, e)
        weights.append(ws)
        radii.append(rs)
        shifts.append(e)
    keep = per_neuron and any(x is not None for x in pairs)
    return LipSDPProblem(tuple(weights), tuple(radii), None, tuple(slopes), tuple(shifts), None,
                         tuple(pairs) if keep else None)


def _norm_estimate(w: np.ndarray, iterations: int = 12) -> float:
    """A float estimate of ``||w||_2`` (power iteration on ``wᵀw``, from a fixed start); only balances the scaling."""
    if not w.size:
        return 0.0
    v = np.random.default_rng(0).standard_normal(w.shape[1])
    est = 0.0
    for _ in range(iterations):
        nv = float(np.linalg.norm(v))
        if not (nv > 0 and math.isfinite(nv)):
            break
        u = w @ (v / nv)
        est = float(np.linalg.norm(u))
        v = w.T @ u
    return est if math.isfinite(est) and est > 0 else float(np.linalg.norm(w))


# --------------------------------------------------------------------------- the closed-form family


def _slope_constants(a: Fraction, b: Fraction) -> tuple[float, float, float, float]:
    """``(m, r, p, c_max)``: centre, half width, ``αβ`` and the largest admissible factor (proof §2)."""
    m, r, p = float((a + b) / 2), float((b - a) / 2), float(a * b)
    c_max = (abs(m) + r) / r
    if p < 0:
        c_max = min(c_max, r / (r - abs(m)))
    return m, r, p, c_max


def _scaling(k: np.ndarray, scaling: str) -> np.ndarray:
    """The diagonal ``S`` of a member: ones, or the Jacobi scaling ``1 / K_ii`` with ``K_ii`` floored at ``1e-12 max K_ii``
    (1 where every ``K_ii`` is 0).  Only a choice of candidate: the kernel proves or refuses the certificate, so the
    floor (which keeps ``1 / K_ii`` finite for subnormal entries) only decides tightness."""
    if scaling == "jacobi":
        d = np.diag(k).copy()
        top = float(np.max(d, initial=0.0))
        if not top > 0:
            return np.ones(k.shape[0])
        return 1.0 / np.maximum(d, top * 1e-12)
    return np.ones(k.shape[0])


def _layer(k: np.ndarray, w_next: np.ndarray, slopes, c: float, scaling: str, top: dict | None = None):
    """One step of the recursion for a hidden layer that is not the last (proof §2): from
    ``K = W_k P_{k-1}^{-1} W_kᵀ`` to the normalised multipliers ``λ S`` and ``K' = W_{k+1} P_k^{-1} W_{k+1}ᵀ``, with
    ``P_k^{-1} = S^{-1/2} ((m²/r²) C^{-1} - (p/r²) I) S^{-1/2} / λ``, ``C = I - r² λ K̃``, ``K̃ = S^{1/2} K S^{1/2}``.
    ``None`` when the member is not admissible (``C`` not numerically positive definite).  ``top``, when given, keeps
    ``λ_max(K̃)`` per scaling (the first layer's ``K`` is the same for every member)."""
    m, r, p, c_max = _slope_constants(*slopes)
    s = _scaling(k, scaling)
    rs = np.sqrt(s)
    kt = rs[:, None] * k * rs[None, :]
    kt = (kt + kt.T) / 2
    n = kt.shape[0]
    kmax = None if top is None else top.get(scaling)
    if kmax is None:
        kmax = float(scipy.linalg.eigh(kt, eigvals_only=True, subset_by_index=[n - 1, n - 1], check_finite=False)[0]) \
            if n else 0.0
        if top is not None:
            top[scaling] = kmax
    lam = 1.0 if kmax <= 0 else min(c, 0.98 * c_max) / (r * (abs(m) + r)) / kmax
    try:
        chol = scipy.linalg.cholesky(np.eye(n) - (r * r * lam) * kt, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        return None
    b = w_next / rs[None, :]
    # (LAPACK's triangular solve is slow to start on tiny matrices here; a general solve is as good there)
    y = scipy.linalg.solve_triangular(chol, b.T, lower=True, check_finite=False) if n >= 64 else np.linalg.solve(chol, b.T)
    k_next = ((m * m) / (r * r)) * (y.T @ y)
    if p != 0:
        k_next -= (p / (r * r)) * (b @ b.T)
    k_next /= lam
    if not np.all(np.isfinite(k_next)):
        return None
    return lam * s, k_next


def _finish(kappa, u, rs, s, kmax, m, r, p, c):
    if kmax <= 0:
        lam = 1.0
    else:
        lam = c / (r * (abs(m) + r)) / kmax
    den = 1.0 + p * lam * kappa
    f = lam - m * m * lam * lam * kappa / den
    if not (np.all(den > 0) and np.all(f > 0) and np.all(np.isfinite(f))):
        return None
    v = u / rs[:, None]  # P^{-1} = S^{-1/2} U diag(1/f) Uᵀ S^{-1/2}
    return lam * s, v, f


def _member(problem: LipSDPProblem, factor: float, scaling: str, shared: dict | None = None):
    """One member: normalised multipliers (``rho = 1``) and ``rho``, the last factor found by a line search.
    ``shared`` carries what every member has in common (``W_1 W_1ᵀ`` and its top eigenvalue per scaling)."""
    ws, sl = problem.weights, problem.slopes
    if problem.depth == 1:
        return [], float(np.linalg.norm(ws[0], 2)) ** 2
    shared = {} if shared is None else shared
    if "gram" not in shared:
        shared["gram"], shared["top"] = ws[0] @ ws[0].T, {}
    k = shared["gram"]
    lams = []
    for idx in range(1, problem.depth - 1):
        got = _layer(k, ws[idx], sl[idx - 1], factor, scaling, shared["top"] if idx == 1 else None)
        if got is None:
            return None
        lam, k = got
        lams.append(lam)
    if k.shape[0] > LINE_SEARCH_MAX:  # a wide last layer: no line search, the Cholesky step with W_L (§2)
        got = _layer(k, ws[-1], sl[-1], factor, scaling)
        if got is None:
            return None
        return lams + [got[0]], _largest_eigenvalue((got[1] + got[1].T) / 2)
    # the last hidden layer: eigendecomposition, line search on the factor (rho = λ_max(G diag(1/f) Gᵀ))
    m, r, p, c_max = _slope_constants(*sl[-1])
    s = _scaling(k, scaling)
    rs = np.sqrt(s)
    kt = rs[:, None] * k * rs[None, :]
    kappa, u = scipy.linalg.eigh((kt + kt.T) / 2, check_finite=False, driver="evd")
    kappa = np.maximum(kappa, 0.0)
    kmax = float(kappa[-1]) if kappa.size else 0.0
    g = ws[-1] @ (u / rs[:, None])
    gram = g.T @ g if g.shape[0] > g.shape[1] else None  # the smaller side's Gram matrix

    def value(c: float):
        got = _finish(kappa, u, rs, s, kmax, m, r, p, c)
        if got is None:
            return None
        h = 1.0 / np.sqrt(got[2])
        if gram is None:
            gh = g * h[None, :]
            mat = gh @ gh.T
        else:
            mat = h[:, None] * gram * h[None, :]
        rho = _largest_eigenvalue((mat + mat.T) / 2)
        return (got[0], rho) if math.isfinite(rho) else None

    grid = sorted({min(factor, 0.98 * c_max), *(c_max * np.geomspace(0.02, 0.98, LINE_SEARCH))})
    tried = [(c, value(c)) for c in grid]
    ok = [(c, v) for c, v in tried if v is not None]
    if not ok:
        return None
    best_c, best = min(ok, key=lambda cv: cv[1][1])
    # golden-section refinement of log c between the grid neighbours of the best point
    i = grid.index(best_c)
    lo, hi = math.log(grid[max(i - 1, 0)]), math.log(grid[min(i + 1, len(grid) - 1)])
    golden = (math.sqrt(5) - 1) / 2
    for _ in range(REFINE):
        if hi - lo < 1e-6:
            break
        a, b = hi - golden * (hi - lo), lo + golden * (hi - lo)
        va, vb = value(math.exp(a)), value(math.exp(b))
        ra = va[1] if va is not None else math.inf
        rb = vb[1] if vb is not None else math.inf
        for v in (va, vb):
            if v is not None and v[1] < best[1]:
                best = v
        if ra <= rb:
            hi = b
        else:
            lo = a
    return lams + [best[0]], best[1]


def _largest_eigenvalue(mat: np.ndarray) -> float:
    """The largest eigenvalue of a symmetric positive semidefinite float matrix (an estimate: the proof comes after);
    Lanczos above 300 rows."""
    n = mat.shape[0]
    if n == 0:
        return 0.0
    if n <= 64:
        return float(np.linalg.eigvalsh(mat)[-1])
    if n <= 300:
        return float(scipy.linalg.eigh(mat, eigvals_only=True, subset_by_index=[n - 1, n - 1], check_finite=False)[0])
    v0 = np.ones(n)
    return float(scipy.sparse.linalg.eigsh(mat, k=1, which="LA", tol=1e-12, v0=v0, return_eigenvectors=False)[0])


def members(problem: LipSDPProblem, factors=FACTORS, scalings=SCALINGS):
    """Every admissible member ``(rho_estimate, normalised multipliers, name)``, best (smallest rho) first."""
    out, shared = [], {}
    for scaling in scalings:
        for c in factors:
            # a member is only a candidate (the kernel proves or refuses it): overflow inside one discards it
            with np.errstate(over="ignore", divide="ignore", invalid="ignore", under="ignore"):
                got = _member(problem, c, scaling, shared)
            if got is not None and math.isfinite(got[1]) and got[1] >= 0:
                out.append((got[1], got[0], f"{scaling}, c={c:g}"))
    return sorted(out, key=lambda x: x[0])


# --------------------------------------------------------------------------- the certificate


def prove_member(problem: LipSDPProblem, rho_est: float, lams, margins=MARGINS):
    """For each margin: ``rho = inflated(rho_est, margin)``, multipliers ``rho · lams`` rounded to dyadic rationals
    (the normalised LMI scaled by ``rho``, proof §3), and ``H(rho, lambda) ≻ 0`` proven by the kernel (verified
    Cholesky).  Returns ``(certificate, margin)`` or ``None``."""
    for margin in margins:
        rho = inflated(rho_est, margin)
        scaled = [float(rho) * np.asarray(x, dtype=np.float64) for x in lams]
        if not all(np.all(np.isfinite(x)) for x in scaled):
            return None
        lam_q, _ = round_multipliers(scaled, 0.0)
        cert = Certificate(rho, tuple(lam_q))
        if check_certificate(problem, cert, method="float"):
            return cert, margin
    return None


def k1_estimate(problem: LipSDPProblem, iterations: int = 30) -> float:
    """A float *estimate* (from below, by power iteration) of K1 of the problem's chain: only used to skip the
    rigorous K1 when it cannot be smaller than the certified value (skipping never affects soundness)."""
    ws, sl = problem.weights, problem.slopes
    n = len(ws)
    rng = np.random.default_rng(0)

    small = max(max(w.shape) for w in ws) <= 64

    def norm(j: int, k: int) -> float:  # ||W_k ⋯ W_{j+1}|| (0-based weights j..k-1), power iteration
        if small:
            prod = ws[j]
            for w in ws[j + 1:k]:
                prod = w @ prod
            return float(np.linalg.norm(prod, 2)) if prod.size else 0.0
        v = rng.standard_normal(ws[j].shape[1])
        est = 0.0
        for _ in range(iterations):
            nv = float(np.linalg.norm(v))
            if not nv > 0 or not math.isfinite(nv):
                return est
            v = v / nv
            u = v
            for w in ws[j:k]:
                u = w @ u
            est = float(np.linalg.norm(u))
            for w in reversed(ws[j:k]):
                u = w.T @ u
            v = u
        return est

    mags = [float(max(abs(a), abs(b))) for a, b in sl]
    cent = [float(abs(a + b) / 2) for a, b in sl]
    # K1 with slopes [α, β] (proofs/k1.md): T_0 = 1, T_k = Σ_j T_j c_j ||W_k ⋯ W_{j+1}||, scaled back by 2^shifts
    t = [1.0]
    for k in range(1, n + 1):
        tot = 0.0
        for j in range(k):
            inner = 1.0
            for i in range(j, k - 1):
                inner *= cent[i]
            tot += t[j] * (1.0 if j == 0 else mags[j - 1] - cent[j - 1]) * inner * norm(j, k)
        t.append(tot)
    try:
        return math.ldexp(t[-1], sum(problem.shifts))
    except OverflowError:
        return math.inf


def _lmi_side(chain: LinearChain) -> int:
    return chain.widths[0] + sum(chain.widths[k + 1] for k, s in enumerate(chain.slopes) if s.lo != s.hi)


def _segments(net: Network, conv: str | None):
    """``(chains, pools, is_cnn)``: one chain for a fully connected net or a CNN without max pooling; for a CNN with
    max pooling, the explicit chains between the max-pool layers and the pools (proof §5)."""
    from ..ir.graph import conv_variants

    if not conv_variants(net, conv):
        return [linear_chain(net, "lipsdp_fast")], [], False
    if conv == "implicit":
        raise NotApplicableError("lipsdp_fast with conv='implicit': the certificate is checked on the LipSDP matrix "
                                 "built from the layer matrices; use conv='explicit'")
    from ..ir.views import segment_chains

    chains, pools, _ = segment_chains(net, "lipsdp_fast")
    return list(chains), list(pools), True


def _identity_tail(chain: LinearChain) -> bool:
    """A segment ``I D W`` (one weight, an activation, the identity): K1 = max(|α|, |β|) ||W|| = sup_D ||D W||, which
    LipSDP cannot beat (the linear map ``β W`` satisfies its constraints), so its LMI is not worth solving."""
    if chain.depth != 2:
        return False
    w = chain.weights[1]
    if w.shape[0] != w.shape[1] or (chain.radii[1] is not None and np.any(_dense(chain.radii[1]))):
        return False
    if sp.issparse(w):
        diff = w - sp.identity(w.shape[0], format="csr")
        return diff.count_nonzero() == 0
    return bool(np.array_equal(w, np.eye(w.shape[0])))


def _certify_chain(chain: LinearChain, max_size: int, cap_k1: bool) -> dict:
    """The certified value of one chain (min with its K1 unless ``cap_k1`` is false) and its details."""
    size = _lmi_side(chain)
    if size > max_size:
        raise NotApplicableError(
            f"lipsdp_fast: the LMI has side {size} (inputs + hidden neurons) > {limit_hint(LIPSDP_FAST_SIZE, max_size)}: "
            "the certificate "
            f"is checked on the dense matrix; raise it (e.g. {limit_hint(LIPSDP_FAST_SIZE, size)}) or use k1")
    problem = fast_problem(chain)
    t0 = time.perf_counter()
    cands = members(problem)
    t1 = time.perf_counter()
    proven = None
    for rho_est, lams, name in cands:
        got = prove_member(problem, rho_est, lams)
        if got is not None:
            proven = (got[0], got[1], rho_est, name)
            break
    t2 = time.perf_counter()
    if proven is None:
        raise CertificationError(
            "lipsdp_fast: no member of the closed-form family could be proven (every candidate's LMI failed the "
            f"verified Cholesky test with rho inflated by {MARGINS[-1]:g}); use lipsdp or k1")
    cert, margin, rho_est, name = proven
    total = sum(problem.shifts)
    root = float(up(math.sqrt(float(cert.rho))))  # rho is a float; sqrt is correctly rounded
    try:
        value = math.ldexp(root, total)
    except OverflowError:
        raise NumericalError("lipsdp_fast: the certified bound overflows the float range; rescale the weights") from None
    if math.ldexp(value, -total) != root:
        value = float(up(value))
    details = {
        "member": name,
        "members": [(float(math.ldexp(math.sqrt(max(r, 0.0)), total)), n) for r, _, n in cands],
        "lmi_size": problem.size,
        "certified_value": value,
        "rho_estimate": rho_est,
        "rho_certified": float(cert.rho),
        "margin": margin,
        "check": "float",
        "scale_exponents": problem.shifts,
        "certificate": problem.original_certificate(cert),
        "family_seconds": t1 - t0,
        "certify_seconds": t2 - t1,
        "capped_by": "lipsdp_fast",
        "value": value,
    }
    if cap_k1 and k1_estimate(problem) <= value * (1 + 1e-6):
        from ..bounds.k1 import _k1_float

        t3 = time.perf_counter()
        k1v = float(_k1_float(chain, "2"))
        details["k1_value"] = k1v
        details["k1_seconds"] = time.perf_counter() - t3
        if k1v < value:
            details["value"] = k1v
            details["capped_by"] = "k1"
    return details


def lipsdp_fast(net: Network, norm: NormLike = 2, *, conv: str | None = None, max_size: int = DEFAULT_MAX_SIZE,
                cap_k1: bool = True) -> Bound:
    """Closed-form LipSDP-Neuron-feasible certificate (ECLipsE-Fast's recursion and its generalisations): a
    certified upper bound of the l2 Lipschitz constant, without an SDP solver.

    Claim: ``L_2 <= sqrt(rho)`` for the proven certificate ``(rho, lambda)`` (``H(rho, lambda) ≻ 0`` by a verified
    Cholesky factorisation), for every activation whose difference quotients lie in its declared slope interval
    ``[α, β]`` (any signs: the ``αβ`` term is kept); the value is ``min(sqrt(rho), K1)`` (``details["capped_by"]``).
    Never below LipSDP-Neuron's optimum (a feasible point of the same LMI).  Proof: ``proofs/lipsdp_fast.md``.
    Per-neuron slopes (local bounds, ``domain=``): dead neurons dropped, linear layers merged, the layer envelope of
    the other neurons used (the closed forms need one interval per layer; proof §1).
    Fully connected nets, and CNNs through the explicit (sparse) chain; with max pooling, the product of the
    segments' values (each ``min(sqrt(rho), K1)``, or K1 alone when its LMI is larger than ``max_size``) and the
    max-pool norms (proof §5).  The certificate is checked on the dense LMI, so a net without max pooling whose
    LMI side (inputs + hidden neurons) exceeds ``max_size`` raises :class:`NotApplicableError`.

    >>> import lipverify as lv
    >>> net = lv.Network([lv.Dense([[1, 1], [1, -1]]), lv.ReLU(), lv.Dense([[1, 0], [0, 1]])])
    >>> b = lv.bound(net, "lipsdp_fast", norm=2)
    >>> 1.41421356 <= b.value <= 2.0
    True
    """
    started = time.perf_counter()
    p = require_norm("lipsdp_fast", norm, ("2",), "LipSDP bounds the spectral (l2) Lipschitz constant only")
    chains, pools, is_cnn = _segments(net, conv)
    assumptions = ("LipSDP-Neuron LMI at closed-form multipliers proven positive definite by a verified "
                   "floating-point Cholesky factorisation",)
    if not pools:
        details = _certify_chain(chains[0], max_size, cap_k1)
        value = details.pop("value")
        if details["capped_by"] == "k1":
            assumptions += ("K1 is smaller than the certified LipSDP value and is reported (min of both)",)
    else:
        from ..bounds.k1 import _k1_float

        value, parts = 1.0, []
        for chain in chains:
            if _identity_tail(chain):  # K1 = sup_D ||D W|| <= LipSDP's value here: K1 is as good (§5)
                parts.append({"value": float(_k1_float(chain, "2")), "capped_by": "k1",
                              "reason": "one activation after one weight: K1 is optimal here"})
                value = float(up(value * parts[-1]["value"]))
                continue
            try:
                part = _certify_chain(chain, max_size, True)
            except NotApplicableError as exc:  # too large for the dense check: this segment's K1
                part = {"value": float(_k1_float(chain, "2")), "capped_by": "k1", "reason": str(exc)}
            parts.append(part)
            value = float(up(value * part["value"]))
        for pool in pools:
            value = float(up(value * pool.norm_up("2")))
        details = {"segments": [{k: v for k, v in d.items() if k != "certificate"} for d in parts],
                   "certificates": [d.get("certificate") for d in parts],
                   "capped_by": "k1" if all(d["capped_by"] == "k1" for d in parts) else "lipsdp_fast"}
        assumptions += ("segments between max-pool layers composed: product of the segments' bounds and the "
                        "max-pool norms (proofs/lipsdp_fast.md §5)",)
    if is_cnn:
        details["conv"] = "explicit"
    return Bound.upper_bound(value, p, "lipsdp_fast", rounding=OUTWARD, seconds=time.perf_counter() - started,
                             assumptions=assumptions, details=details)
