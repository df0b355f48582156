"""The trusted certificate kernel of the SDP bounds (LipSDP, ``lipverify.sdp.lipsdp``; KSDP, ``lipverify.bounds.ksdp``).

Proofs: ``proofs/lipsdp.md`` §2-§5 and ``proofs/ksdp.md`` §2-§3.  Nothing here calls a solver: an SDP solver
only *suggests* multipliers, and this module turns a suggestion into a proof or refuses.

* :func:`round_multipliers` rounds multipliers to dyadic rationals (30 significant bits each);
* :func:`schur_rho` / :func:`schur_max` estimate the least ``rho`` (``t``) for rounded multipliers, and
  :func:`inflated` rounds it up with a relative margin;
* :func:`check_certificate` proves the LipSDP matrix ``H(rho, lambda) ≻ 0`` exactly (python-flint, Sylvester's
  criterion) or by a verified floating-point Cholesky factorisation of an interval enclosure
  (:func:`lipverify.rigorous.verify_positive_definite`); :func:`float_enclosure` and :func:`prove_shifted`
  do the same for a matrix known in exact rationals (KSDP);
* :func:`check_diagonal_schur` proves a segment ``W_2 D W_1`` with a diagonal hidden block through its Schur
  complement, a matrix of the input side only (``lipsdp_fo`` on CNNs, ``proofs/lipsdp_fo.md`` §6);
* :func:`first_proven` is the candidate loop shared by both methods, :func:`certify` the LipSDP one.

No cvxpy, no CVXOPT: this module is imported without either (``tests/test_sdp.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import scipy.linalg

from ..errors import CertificationError
from ..rigorous import (
    ETA,
    UNIT_ROUNDOFF,
    Interval,
    add_up,
    down,
    float_down,
    float_up,
    fro_sq_upper,
    interval_product,
    sum_up,
    up,
    verify_positive_definite,
)

#: exact (python-flint) proof of positive definiteness up to this LMI side under ``check="auto"``
EXACT_MAX_SIZE = 100
#: relative inflations of rho tried, in order, until the proof goes through
MARGINS = (1e-9, 1e-7, 1e-5, 1e-3)
#: mixing weights toward the anchor tried by :func:`certify` (proofs/lipsdp.md §5)
MIX_WEIGHTS = tuple(10.0 ** (-j / 2) for j in range(20, -1, -1))
#: strict-feasibility margin of the anchor solve, relative to the largest multiplier of the balanced problem
ANCHOR_MARGIN = 1e-4
#: relative loss above which the result says so in its status and note
LOSS_WARN = 1e-4
#: significant bits kept when rounding the multipliers and rho to dyadic rationals
DYADIC_BITS = 30


# --------------------------------------------------------------------------- the LipSDP problem


@dataclass(frozen=True)
class LipSDPProblem:
    """A chain scaled by powers of two: ``weights[l] = 2**-shifts[l] * N_{l+1}^-1 W_{l+1} N_l`` (exactly), with
    ``N_l = diag(2**neuron_exps[l-1])`` for hidden layer ``l`` and ``N_0 = N_L = I`` (no per-neuron
    exponents: ``N_l = I``; ``proofs/lipsdp.md`` §3).

    ``exact[l]`` is the scaled weight as a ``Fraction`` object array when the exact weights are known
    (float weights without radius are exact dyadic rationals), else ``None``; ``radii[l]`` bounds
    ``|exact - weights|`` entrywise (or is ``None``).  ``slopes[l] = (alpha, beta)`` (Fractions) sits between
    ``weights[l]`` and ``weights[l+1]``.  ``neuron_slopes[l]``, when not ``None``, narrows it per neuron: float
    arrays ``(alpha_i, beta_i)`` (exact dyadic rationals, inside ``slopes[l]``) used by every block of the LMI instead
    of the layer's interval (``proofs/lipsdp.md`` §2: the quadratic constraint of neuron ``i`` with its own constants).
    """

    weights: tuple[np.ndarray, ...]
    radii: tuple[np.ndarray | None, ...]
    exact: tuple[np.ndarray, ...] | None
    slopes: tuple[tuple[Fraction, Fraction], ...]
    shifts: tuple[int, ...]
    neuron_exps: tuple[np.ndarray, ...] | None = None
    neuron_slopes: tuple[tuple[np.ndarray, np.ndarray] | None, ...] | None = None
    #: weighted norms (a segment between max-pool layers, ``proofs/lipsdp_fo.md`` §6): the input block is
    #: ``rho diag(input_weight)`` instead of ``rho I`` and the output term ``W_L^T diag(output_weight) W_L`` instead
    #: of ``W_L^T W_L``; nonnegative float arrays (exact dyadic rationals), ``None`` for ones
    input_weight: np.ndarray | None = None
    output_weight: np.ndarray | None = None

    def neuron_pair(self, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The per-neuron slopes ``(alpha, beta)`` (float arrays) of hidden layer ``k`` (0-based), or ``None``
        when the layer's interval ``slopes[k]`` holds for every neuron."""
        return None if self.neuron_slopes is None else self.neuron_slopes[k]

    def slope_terms(self, k: int):
        """Float ``(c, p)`` of hidden layer ``k`` (0-based): ``c = (alpha + beta) / 2``, ``p = alpha beta``, scalars
        for a layer interval, arrays for per-neuron slopes (rounded to nearest: for solvers and estimates only)."""
        pair = self.neuron_pair(k)
        if pair is None:
            a, b = self.slopes[k]
            return float((a + b) / 2), float(a * b)
        lo, hi = pair
        return (lo + hi) / 2, lo * hi

    def original_certificate(self, cert: Certificate) -> Certificate:
        """A certificate of this (scaled) problem as a certificate of the original chain (§3)."""
        if self.neuron_exps is not None:
            cert = cert.neurons_unscaled(self.neuron_exps)
        return cert.unscaled(self.shifts)

    @property
    def depth(self) -> int:
        return len(self.weights)

    @property
    def sizes(self) -> tuple[int, ...]:
        """Sides of the diagonal blocks: the input, then every hidden layer."""
        return (self.weights[0].shape[1],) + tuple(w.shape[0] for w in self.weights[:-1])

    @property
    def size(self) -> int:
        return sum(self.sizes)

    @property
    def hidden(self) -> tuple[int, ...]:
        return self.sizes[1:]



# --------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class Certificate:
    """``(rho, lambdas)`` in exact dyadic rationals; ``lambdas[l]`` multiplies hidden layer ``l + 1``."""

    rho: Fraction
    lambdas: tuple[tuple[Fraction, ...], ...]

    def scaled(self, shifts: tuple[int, ...]) -> Certificate:
        """The certificate of the chain whose weights are ``2**-shifts[l]`` times these (proofs/lipsdp.md §3)."""
        total = sum(shifts)
        cum = np.cumsum(shifts)
        rho = self.rho / Fraction(4) ** total if total >= 0 else self.rho * Fraction(4) ** (-total)
        lams = []
        for lam, c in zip(self.lambdas, cum[:-1]):
            k = int(total - c)
            f = Fraction(1, 4**k) if k >= 0 else Fraction(4 ** (-k))
            lams.append(tuple(x * f for x in lam))
        return Certificate(rho, tuple(lams))

    def unscaled(self, shifts: tuple[int, ...]) -> Certificate:
        """Inverse of :meth:`scaled`."""
        return self.scaled(tuple(-s for s in shifts))

    def neurons_unscaled(self, exps) -> Certificate:
        """The certificate of the chain before the per-neuron scaling ``N_l`` (§3): ``lambda_i 4**-n_i``."""
        lams = []
        for lam, ns in zip(self.lambdas, exps):
            lams.append(tuple(x * (Fraction(1, 4 ** int(n)) if n >= 0 else Fraction(4 ** int(-n))) for x, n in zip(lam, ns)))
        return Certificate(self.rho, tuple(lams))


def lmi_blocks(problem: LipSDPProblem, lambdas, rho):
    """Float blocks of ``H(rho, lambda)`` (no rounding control; used for the solver side and diagnostics).

    Returns ``(diag, lower)``: ``diag[k]`` is the k-th diagonal block, ``lower[k]`` the block below it
    (rows of block ``k + 1``, columns of block ``k``).
    """
    ws = problem.weights
    lam = [np.asarray(x, dtype=np.float64) for x in lambdas]
    n = problem.depth
    diag = [np.zeros((s, s)) for s in problem.sizes]
    lower = []
    d_in = np.ones(problem.sizes[0]) if problem.input_weight is None else problem.input_weight
    diag[0] += np.diag(float(rho) * d_in)
    for k in range(1, n):
        c, p = problem.slope_terms(k - 1)
        w = ws[k - 1]
        diag[k] += np.diag(lam[k - 1])
        if np.any(p != 0):
            diag[k - 1] += w.T @ ((p * lam[k - 1])[:, None] * w)
        lower.append(-((c * lam[k - 1])[:, None] * w))
    d_out = problem.output_weight
    diag[n - 1] -= ws[-1].T @ (ws[-1] if d_out is None else d_out[:, None] * ws[-1])
    return diag, lower


def assemble(diag, lower) -> np.ndarray:
    sizes = [d.shape[0] for d in diag]
    offs = np.concatenate([[0], np.cumsum(sizes)])
    h = np.zeros((offs[-1], offs[-1]))
    for k, d in enumerate(diag):
        h[offs[k]:offs[k + 1], offs[k]:offs[k + 1]] = d
    for k, c in enumerate(lower):
        h[offs[k + 1]:offs[k + 2], offs[k]:offs[k + 1]] = c
        h[offs[k]:offs[k + 1], offs[k + 1]:offs[k + 2]] = c.T
    return h


def check_certificate(problem: LipSDPProblem, cert: Certificate, *, method: str = "auto") -> bool:
    """Prove ``H(rho, lambda) ≻ 0`` for the exact (scaled) weights; ``True`` only when proven.

    ``method="exact"`` uses python-flint (needs exact weights), ``"float"`` a verified floating-point
    Cholesky factorisation of an interval enclosure of ``H``; ``"auto"`` picks exact up to
    :data:`EXACT_MAX_SIZE`.  ``False`` means "not proven" (a negative multiplier also gives ``False``).
    """
    if len(cert.lambdas) != problem.depth - 1 or any(
            len(lam) != s for lam, s in zip(cert.lambdas, problem.hidden)):
        raise ValueError(f"certificate has multipliers of sizes {[len(x) for x in cert.lambdas]}, "
                         f"the network's hidden layers have sizes {list(problem.hidden)}")
    if any(x < 0 for lam in cert.lambdas for x in lam):
        return False
    if method == "auto":
        method = "exact" if problem.exact is not None and problem.size <= EXACT_MAX_SIZE else "float"
    if method == "exact":
        if problem.exact is None:
            raise ValueError("the exact check needs exact weights; these carry conversion radii: use method='float'")
        return _check_exact(problem, cert)
    if method == "float":
        return _check_float(problem, cert)
    raise ValueError(f"method must be 'auto', 'exact' or 'float', got {method!r}")


def _fq(v: Fraction):
    import flint

    return flint.fmpq(v.numerator, v.denominator)


def _fmpq_matrix(x: np.ndarray):
    import flint

    rows, cols = x.shape
    return flint.fmpq_mat(rows, cols, [flint.fmpq(v.numerator, v.denominator) for v in x.ravel()])


def _check_exact(problem: LipSDPProblem, cert: Certificate) -> bool:
    """Sylvester's criterion: the leading principal minors of ``H`` are the diagonal of the fraction-free
    LU factor ``U`` when no row exchange occurs (Bareiss); all must be > 0."""
    import flint

    ws = [_fmpq_matrix(w) for w in problem.exact]
    sizes = problem.sizes
    n = problem.depth

    def diagm(values):
        m = len(values)
        return flint.fmpq_mat(m, m, [_fq(values[i]) if i == j else 0 for i in range(m) for j in range(m)])

    diag = [flint.fmpq_mat(s, s) for s in sizes]
    lower = []
    if problem.input_weight is None:
        diag[0] += diagm([cert.rho] * sizes[0])
    else:
        diag[0] += diagm([cert.rho * Fraction(float(v)) for v in problem.input_weight])
    for k in range(1, n):
        a, b = problem.slopes[k - 1]
        lam = diagm(cert.lambdas[k - 1])
        lw = lam * ws[k - 1]
        diag[k] += lam
        pair = problem.neuron_pair(k - 1)
        if pair is None:
            if a * b != 0:
                diag[k - 1] += ws[k - 1].transpose() * lw * _fq(a * b)
            lower.append(lw * _fq(-(a + b) / 2))
            continue
        # per-neuron slopes: the floats are exact dyadic rationals, used exactly
        al = [Fraction(float(v)) for v in pair[0]]
        be = [Fraction(float(v)) for v in pair[1]]
        lam_q = cert.lambdas[k - 1]
        prod = [x * y * t for x, y, t in zip(al, be, lam_q)]
        if any(prod):
            diag[k - 1] += ws[k - 1].transpose() * diagm(prod) * ws[k - 1]
        lower.append(diagm([-(x + y) / 2 * t for x, y, t in zip(al, be, lam_q)]) * ws[k - 1])
    if problem.output_weight is None:
        diag[n - 1] -= ws[-1].transpose() * ws[-1]
    else:
        diag[n - 1] -= ws[-1].transpose() * diagm([Fraction(float(v)) for v in problem.output_weight]) * ws[-1]
    size = sum(sizes)
    offs = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    entries = [flint.fmpq(0)] * (size * size)
    for k in range(n):
        block = diag[k]
        for i in range(sizes[k]):
            row = (offs[k] + i) * size + offs[k]
            for j in range(sizes[k]):
                entries[row + j] = block[i, j]
    for k, c in enumerate(lower):
        for i in range(sizes[k + 1]):
            for j in range(sizes[k]):
                v = c[i, j]
                entries[(offs[k + 1] + i) * size + offs[k] + j] = v
                entries[(offs[k] + j) * size + offs[k + 1] + i] = v
    h = flint.fmpq_mat(size, size, entries)
    num, den = h.numer_denom()
    if den <= 0:  # pragma: no cover - flint normalises denominators to be positive
        return False
    perm, lo, d, u = num.fflu()
    for i in range(size):
        for j in range(size):
            if perm[i, j] != (1 if i == j else 0):
                return False  # a row exchange: some leading minor vanishes, so H is not positive definite
    return all(u[i, i] > 0 for i in range(size))


def _half_sum(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float bounds of ``(lo + hi) / 2`` entrywise (the sum rounded outward; halving is exact or rounded outward)."""
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    s_lo, s_hi = down(lo + hi), up(lo + hi)
    return down(s_lo / 2), up(s_hi / 2)


def _iadd(x: Interval, y: Interval) -> Interval:
    mid = x.mid + y.mid
    return Interval(mid, add_up(x.rad, y.rad, up(2 * UNIT_ROUNDOFF * np.abs(mid))))


def _iscale(x: Interval, c: Fraction) -> Interval:
    """Enclosure of ``c * X`` for a rational ``c``."""
    lo, hi = _fraction_interval(c)
    m = x.mid.shape[0]
    return x.scale_rows(np.full(m, lo), np.full(m, hi))


def _fraction_interval(c: Fraction) -> tuple[float, float]:
    return float_down(c), float_up(c)


def _idiag(x: Interval, lo: np.ndarray, hi: np.ndarray) -> Interval:
    """Enclosure of ``X + diag(d)`` for every ``lo <= d <= hi`` (floats)."""
    d = Interval.from_bounds(np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64))
    mid = x.mid.copy()
    idx = np.diag_indices(mid.shape[0])
    mid[idx] += d.mid
    rad = x.rad.copy()
    rad[idx] = add_up(rad[idx], d.rad, up(2 * UNIT_ROUNDOFF * np.abs(mid[idx])))
    return Interval(mid, rad)


def _check_float(problem: LipSDPProblem, cert: Certificate) -> bool:
    """Interval enclosure of every block of ``H`` (weights with their radii), symmetrised, then
    :func:`~lipverify.rigorous.verify_positive_definite` with the spectral radius bound of the enclosure.  When the
    input block is ``rho I`` and wider than the first hidden layer, it is eliminated first: ``H ≻ 0`` iff ``rho > 0``
    and the rest minus ``B Bᵀ / rho`` is ``≻ 0`` (``B`` the block below it), proven on that smaller matrix."""
    eliminate_input = _input_block_is_rho_identity(problem) and problem.sizes[0] > problem.sizes[1]
    # rationals that are not floats are enclosed: rho only increases H, so its lower float is enough
    lam_lo = [np.array([float_down(t) for t in x], dtype=np.float64) for x in cert.lambdas]
    lam_hi = [np.array([float_up(t) for t in x], dtype=np.float64) for x in cert.lambdas]
    rho = float_down(cert.rho)
    n = problem.depth
    sizes = problem.sizes
    ws = [Interval.point(w, r) for w, r in zip(problem.weights, problem.radii)]
    diag = [Interval.point(np.zeros((s, s))) for s in sizes]
    lower = []
    if problem.input_weight is None:
        diag[0] = _idiag(diag[0], np.full(sizes[0], rho), np.full(sizes[0], rho))
    else:  # rho * d_in, rounded outward (rho is already the float below the rational rho: H increases in rho)
        w_in = np.asarray(problem.input_weight, dtype=np.float64)
        diag[0] = _idiag(diag[0], down(rho * w_in), up(rho * w_in))
    for k in range(1, n):
        a, b = problem.slopes[k - 1]
        lw = ws[k - 1].scale_rows(lam_lo[k - 1], lam_hi[k - 1])
        diag[k] = _idiag(diag[k], lam_lo[k - 1], lam_hi[k - 1])
        wt_rad = None if problem.radii[k - 1] is None else problem.radii[k - 1].T
        pair = problem.neuron_pair(k - 1)
        if pair is None:
            if a * b != 0:
                wtlw = lw.left_matmul(problem.weights[k - 1].T, wt_rad)
                diag[k - 1] = _iadd(diag[k - 1], _iscale(wtlw, a * b))
            lower.append(_iscale(lw, -(a + b) / 2))
            continue
        # per-neuron slopes (floats): enclose alpha_i beta_i and -(alpha_i + beta_i) / 2 per neuron, scale the rows
        p_lo, p_hi = interval_product((pair[0], pair[0]), (pair[1], pair[1]))
        if np.any(p_lo != 0) or np.any(p_hi != 0):
            wtlw = lw.scale_rows(p_lo, p_hi).left_matmul(problem.weights[k - 1].T, wt_rad)
            diag[k - 1] = _iadd(diag[k - 1], wtlw)
        c_lo, c_hi = _half_sum(pair[0], pair[1])
        lower.append(lw.scale_rows(-c_hi, -c_lo))
    wl = problem.weights[-1]
    last = ws[-1] if problem.output_weight is None else ws[-1].scale_rows(problem.output_weight, problem.output_weight)
    gram = last.left_matmul(wl.T, None if problem.radii[-1] is None else problem.radii[-1].T)
    diag[n - 1] = _iadd(diag[n - 1], Interval(-gram.mid, gram.rad))
    if n >= 2 and eliminate_input:
        # the input block is rho I: its Schur complement (proofs/lipsdp.md §4, step 4, "input block eliminated")
        if not rho > 0:
            return False
        b = lower[0]  # the block below the input block, enclosed: B = -C Lambda_1 W_1
        bbt = Interval(b.mid.T, b.rad.T).left_matmul(b.mid, b.rad)  # encloses B1 B2^T for all B1, B2 in the enclosure
        inv_lo, inv_hi = _fraction_interval(1 / Fraction(rho))
        bbt = bbt.scale_rows(np.full(sizes[1], inv_lo), np.full(sizes[1], inv_hi))
        diag[1] = _iadd(diag[1], Interval(-bbt.mid, bbt.rad))
        diag, lower = diag[1:], lower[1:]
    mid = assemble([d.mid for d in diag], [c.mid for c in lower])
    rad = assemble([d.rad for d in diag], [c.rad for c in lower])
    return _enclosure_positive_definite(mid, rad)


def _input_block_is_rho_identity(problem: LipSDPProblem) -> bool:
    """Whether block 0 of ``H`` is ``rho I`` exactly: no input weight and ``alpha_1 beta_1 = 0`` (per neuron too), so
    the float check may eliminate it by its Schur complement (``proofs/lipsdp.md`` §4)."""
    if problem.input_weight is not None or problem.depth < 2:
        return False
    pair = problem.neuron_pair(0)
    if pair is None:
        a, b = problem.slopes[0]
        return a * b == 0
    return bool(np.all((pair[0] == 0) | (pair[1] == 0)))



def diagonal_tail(problem: LipSDPProblem) -> bool:
    """Whether ``problem`` is ``W_2 D W_1`` with at most one nonzero in every row of ``W_2`` (exact; e.g. a segment
    ``I D W`` ending at a max-pool layer, dead neurons dropped): then the hidden block of ``H`` is diagonal and
    :func:`check_diagonal_schur` applies."""
    if problem.depth != 2:
        return False
    w, r = problem.weights[-1], problem.radii[-1]
    if r is not None and np.any(r):
        return False
    return bool(np.all(np.count_nonzero(w, axis=1) <= 1))  # W_2^T diag(d) W_2 is then diagonal


def check_diagonal_schur(problem: LipSDPProblem, cert: Certificate) -> bool:
    """Prove ``H(rho, lambda) ≻ 0`` for a :func:`diagonal_tail` problem through its Schur complement
    (``proofs/lipsdp_fo.md`` §6): the hidden block ``K = diag(lambda_i - sum_k d_k W2_ki^2)`` is checked ``> 0``
    exactly (rationals), then ``rho D_in + W_1^T diag(e) W_1 ≻ 0`` with
    ``e_i = p_i lambda_i - c_i^2 lambda_i^2 / K_i`` (exact, then enclosed by floats) by a verified Cholesky
    factorisation of an interval enclosure.  ``True`` only when proven."""
    if not diagonal_tail(problem):
        raise ValueError("check_diagonal_schur needs a problem W_2 D W_1 with at most one nonzero per row of W_2")
    (lam,) = cert.lambdas
    n = problem.hidden[0]
    if len(lam) != n:
        raise ValueError(f"certificate has {len(lam)} multipliers, the hidden layer has {n} neurons")
    if any(x < 0 for x in lam):
        return False
    w2 = problem.weights[-1]
    d_out = np.ones(w2.shape[0]) if problem.output_weight is None else problem.output_weight
    out_sq = [Fraction(0)] * n  # sum_k d_k W2_ki^2, exactly
    for k_row, i in zip(*np.nonzero(w2)):
        out_sq[i] += Fraction(float(d_out[k_row])) * Fraction(float(w2[k_row, i])) ** 2
    pair = problem.neuron_pair(0)
    a0, b0 = problem.slopes[0]
    e_lo, e_hi = np.empty(n), np.empty(n)
    for i in range(n):
        k = lam[i] - out_sq[i]
        if k <= 0:
            return False
        a, b = (a0, b0) if pair is None else (Fraction(float(pair[0][i])), Fraction(float(pair[1][i])))
        e = a * b * lam[i] - ((a + b) / 2) ** 2 * lam[i] ** 2 / k
        e_lo[i], e_hi[i] = float_down(e), float_up(e)
    if not (np.all(np.isfinite(e_lo)) and np.all(np.isfinite(e_hi))):
        return False
    w1, r1 = problem.weights[0], problem.radii[0]
    gram = Interval.point(w1, r1).scale_rows(e_lo, e_hi).left_matmul(w1.T, None if r1 is None else r1.T)
    rho = float_down(cert.rho)
    w_in = np.ones(w1.shape[1]) if problem.input_weight is None else np.asarray(problem.input_weight, dtype=np.float64)
    t = _idiag(gram, down(rho * w_in), up(rho * w_in))
    return _enclosure_positive_definite(t.mid.copy(), t.rad.copy())



# --------------------------------------------------------------------------- rounding


def _round_up_dyadic(x: float, bits: int) -> Fraction:
    """A dyadic rational (also a float) ``>= x`` with about ``bits`` significant bits."""
    if x <= 0:
        return Fraction(0)
    s = bits - math.frexp(x)[1]
    return Fraction(math.ceil(Fraction(x) * 2**s), 2**s) if s >= 0 else Fraction(math.ceil(Fraction(x) / 2 ** (-s)) * 2 ** (-s))


def schur_rho(problem: LipSDPProblem, lambdas) -> float:
    """Float estimate of the smallest ``rho`` with ``H(rho, lambda) ⪰ 0``: ``lambda_max(K0r Krr^-1 Kr0 - K00)``.

    Raises :class:`CertificationError` when the hidden block ``Krr`` is not (numerically) positive definite.
    """
    diag, lower = lmi_blocks(problem, lambdas, 0.0)
    k00 = diag[0]
    if problem.depth == 1:
        return float(np.max(np.linalg.eigvalsh(-k00)))
    krr = assemble(diag[1:], lower[1:])
    kr0 = np.zeros((krr.shape[0], k00.shape[0]))
    kr0[: lower[0].shape[0]] = lower[0]
    rho = schur_max(k00, kr0, krr)
    if rho is None:
        raise CertificationError(
            "lipsdp: the hidden-neuron block of the LMI returned by the solver is not positive definite "
            "after rounding the multipliers; try a tighter solver tolerance or solver='CVXOPT'"
        )
    return rho


def schur_max(k00, kr0: np.ndarray, krr: np.ndarray) -> float | None:
    """Float estimate of the least shift ``s`` with ``[[k00 + s I, kr0^T], [kr0, krr]] ⪰ 0``:
    ``lambda_max(kr0^T krr^-1 kr0 - k00)`` (for a vector ``kr0`` and a number ``k00``: ``kr0^T krr^-1 kr0 - k00``).
    ``None`` when ``krr`` is not numerically positive definite.  An estimate only: the proof comes after."""
    try:
        chol = scipy.linalg.cholesky(krr, lower=True)
    except np.linalg.LinAlgError:
        return None
    y = scipy.linalg.solve_triangular(chol, kr0, lower=True)
    if y.ndim == 1:
        return float(y @ y - k00)
    z = y.T @ y - k00
    return float(np.max(np.linalg.eigvalsh((z + z.T) / 2)))


def round_multipliers(lambdas_float, floor: float, *, signed: bool = False):
    """Dyadic multipliers, each with 30 significant bits of its own (the multipliers of a deep or unevenly
    scaled net span many orders of magnitude: a common grid would erase the small ones), at least ``floor``;
    entries below ``2**-80`` times the largest (in magnitude) are set to 0.  ``signed=True`` (multipliers of
    equality constraints, e.g. ``ksdp``) keeps negative entries and ignores ``floor``."""
    flat = np.concatenate([np.ravel(x) for x in lambdas_float]) if lambdas_float else np.zeros(0)
    top = max(float(np.max(np.abs(flat))) if flat.size else 0.0, floor)
    lam_q, lam_f = [], []
    for x in lambdas_float:
        x = np.asarray(x, dtype=np.float64)
        if not signed:
            x = np.maximum(x, floor)
        x = np.where(np.abs(x) > math.ldexp(top, -80), x, 0.0)
        e = np.frexp(x)[1]
        q = np.ldexp(np.rint(np.ldexp(x, DYADIC_BITS - e)), e - DYADIC_BITS)
        if not signed:
            q = np.maximum(q, 0.0)
        lam_f.append(q)
        lam_q.append(tuple(Fraction(float(v)) for v in q))
    return lam_q, lam_f


@dataclass(frozen=True)
class Certification:
    """What :func:`certify` proved: the certificate, the relative margin on ``rho`` that was needed, the float
    Schur estimate of ``rho`` for the chosen multipliers, the check used, and the mixing weight ``t`` toward the
    anchor (``None`` without an anchor; ``0.0`` when the solver's own multipliers were used)."""

    certificate: Certificate
    margin: float
    rho_estimate: float
    check: str
    mix: float | None = None


def _base_candidates(lambdas_float, scale: float):
    """The solver's multipliers, raised to a floor, or inflated (the optimum may sit on the boundary where the
    hidden block is singular, e.g. for ``|x| = relu(x) + relu(-x)``)."""
    for floor in (0.0, 2.0**-30 * scale, 2.0**-20 * scale, 2.0**-10 * scale):
        yield lambdas_float, floor
    for delta in (2.0**-30, 2.0**-20, 2.0**-12, 2.0**-6):
        yield [x * (1.0 + delta) for x in lambdas_float], 0.0


def inflated(estimate: float, margin: float) -> Fraction:
    """``estimate`` (clipped at 0) plus ``margin`` relative (at least ``margin * 2**-30``), rounded up to a dyadic
    rational with 30 significant bits, hence exactly a float (``proofs/lipsdp.md`` §4 step 3)."""
    return _round_up_dyadic(max(estimate, 0.0) + margin * max(abs(estimate), 2.0**-30), DYADIC_BITS)


def first_proven(candidates, prove, margins=MARGINS):
    """Try ``candidates`` (tuples whose first entry is the estimate of the certified quantity) in increasing
    order of that estimate: the margins ``<= 1e-7`` on the best eight, then every margin on all of them.
    ``prove(candidate, margins)`` returns a proof or ``None``; returns ``(candidate, proof)`` or ``None``."""
    candidates = sorted(candidates, key=lambda c: c[0])
    small = tuple(m for m in margins if m <= 1e-7)
    for ms, todo in ((small, candidates[:8]), (margins, candidates)):
        for cand in todo:
            proof = prove(cand, ms)
            if proof is not None:
                return cand, proof
    return None


def _prove(problem: LipSDPProblem, lam_q, lam_f, rho_est: float, check: str, margins) -> tuple[Certificate, float] | None:
    for m in margins:
        rho = inflated(rho_est, m)
        cert = Certificate(rho, tuple(lam_q))
        # cheap float pre-test before an expensive proof
        h = assemble(*lmi_blocks(problem, lam_f, float(rho)))
        try:
            np.linalg.cholesky(h)
        except np.linalg.LinAlgError:
            continue
        if check_certificate(problem, cert, method=check):
            return cert, m
    return None


def certify(problem: LipSDPProblem, lambdas_float, *, check: str = "auto", margins=MARGINS, anchor=None,
            mix_weights=MIX_WEIGHTS) -> Certification:
    """Turn the solver's multipliers into a proven certificate of the scaled problem (``proofs/lipsdp.md`` §4).

    Without ``anchor``: the first of the solver's multipliers, raised to a small floor or inflated by a small
    factor, whose hidden block is numerically positive definite.  With ``anchor`` (multipliers whose hidden
    block is safely positive definite, e.g. from a solve with a strict-feasibility margin): also the mixtures
    ``(1 - t) lambda + t anchor`` for ``t`` in ``mix_weights`` (§5).  Candidates are tried in increasing order
    of their Schur-complement ``rho`` (small margins first), so the proven ``rho`` is the smallest found.
    Every candidate is admissible; the proof is the same.  Raises :class:`CertificationError`.
    """
    lambdas_float = [np.asarray(x, dtype=np.float64) for x in lambdas_float]
    flat = np.concatenate([np.ravel(x) for x in lambdas_float]) if lambdas_float else np.zeros(0)
    if flat.size and not np.all(np.isfinite(flat)):
        raise CertificationError("lipsdp: the solver returned non-finite multipliers")
    if check == "auto":
        check = "exact" if problem.exact is not None and problem.size <= EXACT_MAX_SIZE else "float"
    scale = max(float(np.max(flat)) if flat.size else 0.0, 1.0)
    failure = None
    candidates = []  # (rho_estimate, mix, lam_q, lam_f)

    def add(lams, floor, mix):
        nonlocal failure
        lam_q, lam_f = round_multipliers(lams, floor)
        try:
            rho_est = schur_rho(problem, lam_f)
        except CertificationError as exc:
            failure = exc
            return False
        if not math.isfinite(rho_est):
            raise CertificationError("lipsdp: the Schur complement estimate of rho is not finite")
        candidates.append((rho_est, mix, lam_q, lam_f))
        return True

    for lams, floor in _base_candidates(lambdas_float, scale):
        if add(lams, floor, None if anchor is None else 0.0):
            break
    if anchor is not None:
        anchor = [np.asarray(x, dtype=np.float64) for x in anchor]
        if len(anchor) != len(lambdas_float) or not all(np.all(np.isfinite(x)) for x in anchor):
            raise ValueError("certify: the anchor must be finite multipliers of the same layers")
        for t in mix_weights:
            if t > 0:
                add([(1.0 - t) * x + t * y for x, y in zip(lambdas_float, anchor)], 0.0, float(t))
    if not candidates:
        raise failure
    found = first_proven(candidates, lambda c, ms: _prove(problem, c[2], c[3], c[0], check, ms), margins)
    if found is not None:
        (rho_est, mix, _, _), proven = found
        return Certification(proven[0], proven[1], rho_est, check, mix)
    raise CertificationError(
        f"lipsdp: could not prove the LMI certificate (check={check!r}) even with rho inflated by a relative "
        f"{margins[-1]:g}; the solver's multipliers are too inaccurate: try solver='CVXOPT' or tighter tolerances"
    )



# --------------------------------------------------------------------------- matrices known in exact rationals (KSDP)


def float_enclosure(y: np.ndarray) -> tuple[np.ndarray, float] | None:
    """A symmetric matrix of exact rationals (``Fraction`` object array) rounded to floats entry by entry
    (correctly rounded, error ``<= u |fl| + eta`` per entry), with an upper bound of the spectral norm of the
    rounding error (its Frobenius norm); ``None`` when an entry overflows (``proofs/ksdp.md`` §3)."""
    yf = np.array([[_frac_to_float(x) for x in row] for row in y], dtype=np.float64).reshape(y.shape)
    if not np.all(np.isfinite(yf)):
        return None
    conv_err = add_up(up(np.abs(yf) * UNIT_ROUNDOFF), np.full(yf.shape, ETA))
    return yf, float(up(math.sqrt(fro_sq_upper(conv_err))))


def prove_shifted(y: tuple[np.ndarray, float], t: float, rho: float) -> bool:
    """Prove ``Y + t e_0 e_0^T + rho I ≻ 0`` for the exact ``Y`` enclosed by ``y = float_enclosure(Y)``
    (``t``, ``rho`` floats) by a verified floating-point Cholesky factorisation."""
    yf, conv = y
    h = yf.copy()
    h[0, 0] += t
    if rho:
        h = h + rho * np.eye(h.shape[0])
    # the additions on the diagonal round: at most u |h_ii| each, twice at (0, 0)
    diag = float(up(2 * UNIT_ROUNDOFF * float(np.max(np.abs(np.diag(h))))))
    diag = float(up(diag + up(2 * UNIT_ROUNDOFF * (abs(t) + abs(yf[0, 0])))))
    return verify_positive_definite(h, err=float(up(conv + diag)))


def _frac_to_float(x: Fraction) -> float:
    try:
        return x.numerator / x.denominator  # correctly rounded integer division
    except OverflowError:
        return math.inf if x > 0 else -math.inf


def _enclosure_positive_definite(mid: np.ndarray, rad: np.ndarray) -> bool:
    """True when every symmetric matrix ``H`` with ``|H - mid| <= rad`` entrywise is proven positive definite.

    ``mid`` and ``rad`` (modified in place) are symmetrised by mirroring the upper triangle: ``|H - T| <= R`` still
    holds for the symmetric ``T``; then ``||H - T||_2 <= || |H - T| ||_2 <= ||R||_2 <= ||R||_inf`` (R symmetric and
    nonnegative) is the error the verified Cholesky allows for."""
    iu = np.triu_indices(mid.shape[0], 1)
    mid.T[iu] = mid[iu]
    rad.T[iu] = rad[iu]
    if not (np.all(np.isfinite(mid)) and np.all(np.isfinite(rad))):
        return False
    err = float(np.max(sum_up(rad, axis=1))) if rad.size else 0.0
    return verify_positive_definite(mid, err=err)
