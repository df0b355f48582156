"""LipSDP-Neuron and LipSDP-Layer (Fazlyab et al., NeurIPS 2019) with a proven certificate.

Proof of the LMI and of the certification procedure: ``proofs/lipsdp.md``.

For a fully connected chain ``W_L D_{L-1} ⋯ D_1 W_1`` with diagonal ``D_l`` whose entries lie in the slope
interval ``[alpha_l, beta_l]``, a pair ``(rho, lambda)`` with ``lambda >= 0`` and

    H(rho, lambda) = rho E_0 + K(lambda) ≻ 0

(``-H`` is the LipSDP matrix ``M``; ``H`` is block tridiagonal, see :func:`lmi_blocks`) proves that the l2
Lipschitz constant is at most ``sqrt(rho)``.  The SDP solver only *suggests* ``(rho, lambda)``: the
multipliers are rounded to dyadic rationals, ``rho`` is recomputed from the Schur complement and rounded up,
and ``H ≻ 0`` is proven exactly (python-flint, Sylvester's criterion via fraction-free LU) or by a verified
floating-point Cholesky factorisation of an interval enclosure of ``H``.  Nothing else becomes a number.

Solvers: CVXOPT by default, called directly (``conelp``) with a KKT solver that uses the rank-2 structure of
every multiplier's matrix (:class:`_StructuredLMI`); SCS (fallback) and Clarabel (tiny LMIs only) through the
block-structured cvxpy formulation :func:`formulate`.  A status other than optimal raises SolverError.

Numerics: every weight matrix is first scaled by a power of two (exact) so that its spectral norm lies in
``[1/2, 1)``; the constant of the original chain is the scaled one times the product of the powers of two.
On deep nets with cancellations (the zoo's sawtooth) that is not enough: the solution is then rescaled per
neuron by powers of two and solved again (:func:`rebalance`), and a point on the boundary of the feasible set
is repaired by mixing it with a strictly feasible anchor (:func:`certify`); ``proofs/lipsdp.md`` §3, §5.
``Bound.details`` reports the solver's value, the certified value and the relative loss; a loss above 1e-4
is said in ``Bound.status`` and ``details["note"]``.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from .bounds.chain import LinearChain, linear_chain, to_fraction
from .bounds.common import require_norm
from .errors import CertificationError, NotApplicableError, NumericalError, SolverError
from .network import Network
from .norms import NormLike
from .result import OUTWARD, Bound
from .rigorous import ETA, UNIT_ROUNDOFF, Interval, add_up, sum_up, up, verify_positive_definite

#: default limit of the LMI side (inputs + hidden neurons) so that ``lv.compare`` stays fast
DEFAULT_MAX_NEURONS = 200
#: Clarabel is only allowed on LMIs up to this side (it ran out of 24 GB at 210)
CLARABEL_MAX_SIZE = 40
#: exact (python-flint) proof of positive definiteness up to this LMI side under ``check="auto"``
EXACT_MAX_SIZE = 100
#: solvers tried, in order, when ``solver=None``
DEFAULT_SOLVERS = ("CVXOPT", "SCS")
SOLVERS = ("CVXOPT", "SCS", "CLARABEL")
#: largest coefficient matrix ``W^T diag(lambda) W`` the cvxpy formulation (SCS, Clarabel) may build
FORMULATE_MAX_ENTRIES = 20_000_000
#: relative inflations of rho tried, in order, until the proof goes through
MARGINS = (1e-9, 1e-7, 1e-5, 1e-3)
#: mixing weights toward the anchor tried by :func:`certify` (proofs/lipsdp.md §5)
MIX_WEIGHTS = tuple(10.0 ** (-j / 2) for j in range(20, -1, -1))
#: strict-feasibility margin of the anchor solve, relative to the largest multiplier of the balanced problem
ANCHOR_MARGIN = 1e-4
#: relative loss (certified value over solver value, minus 1) above which the anchor repair is run
REPAIR_LOSS = 1e-7
#: rho and every layer's largest multiplier within 4**BALANCED of 1 count as balanced (no second solve)
BALANCED = 2
#: a first solution with rho outside [4**-RHO_BALANCED, 4**RHO_BALANCED] is rebalanced even if its certificate is
#: tight (CVXOPT's absolute tolerance 1e-7 would be a large relative error of a tiny rho)
RHO_BALANCED = 6
#: at most this many rescale-and-solve-again rounds (proofs/lipsdp.md §5)
REBALANCE_ROUNDS = 4
#: relative loss above which the result says so in its status and note
LOSS_WARN = 1e-4
#: significant bits kept when rounding the multipliers and rho to dyadic rationals
DYADIC_BITS = 30


# --------------------------------------------------------------------------- the problem


@dataclass(frozen=True)
class LipSDPProblem:
    """A chain scaled by powers of two: ``weights[l] = 2**-shifts[l] * N_{l+1}^-1 W_{l+1} N_l`` (exactly), with
    ``N_l = diag(2**neuron_exps[l-1])`` for hidden layer ``l`` and ``N_0 = N_L = I`` (no per-neuron
    exponents: ``N_l = I``; ``proofs/lipsdp.md`` §3).

    ``exact[l]`` is the scaled weight as a ``Fraction`` object array when the exact weights are known
    (float weights without radius are exact dyadic rationals), else ``None``; ``radii[l]`` bounds
    ``|exact - weights|`` entrywise (or is ``None``).  ``slopes[l] = (alpha, beta)`` (Fractions) sits between
    ``weights[l]`` and ``weights[l+1]``.
    """

    weights: tuple[np.ndarray, ...]
    radii: tuple[np.ndarray | None, ...]
    exact: tuple[np.ndarray, ...] | None
    slopes: tuple[tuple[Fraction, Fraction], ...]
    shifts: tuple[int, ...]
    neuron_exps: tuple[np.ndarray, ...] | None = None

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
        fr = list(chain.exact) if chain.exact is not None else [_float_fractions(_dense(w)) for w in chain.weights]
        items = [(_dense(w), r, f) for w, r, f in zip(chain.weights, radii0, fr)]
    else:
        items = [(_dense(w), r, None) for w, r in zip(chain.weights, radii0)]
    merged = [items[0]]
    slopes: list[tuple[Fraction, Fraction]] = []
    for s, nxt in zip(chain.slopes, items[1:]):
        a, b = to_fraction(s.lo), to_fraction(s.hi)
        if a == b:
            merged[-1] = _merge(nxt, merged[-1], a)
        else:
            slopes.append((a, b))
            merged.append(nxt)
    weights, radii, exact, shifts = [], [], [], []
    for w, r, f in merged:
        norm = float(np.linalg.norm(w, 2)) if w.size else 0.0
        e = math.frexp(norm)[1] if norm > 0 and math.isfinite(norm) else 0
        ws, rs, fs = _shift_weight(w, r, f, e)
        weights.append(ws)
        radii.append(rs)
        exact.append(fs)
        shifts.append(e)
    return LipSDPProblem(tuple(weights), tuple(radii), tuple(exact) if use_exact else None, tuple(slopes), tuple(shifts))


def _shift_weight(w: np.ndarray, r: np.ndarray | None, f: np.ndarray | None, e: int):
    """``2**-e`` times a (float, radius, Fractions-or-None) weight: exact unless the floats underflow, in which
    case ``eta`` per entry is added to the radius (the Fractions stay exact)."""
    ws = np.ldexp(w, -e)
    rs = None if r is None else up(np.ldexp(r, -e))
    if not np.array_equal(np.ldexp(ws, e), w):  # underflow made the scaling inexact: at most eta per entry
        rs = up((0.0 if rs is None else rs) + np.full(w.shape, ETA))
    return ws, rs, (None if f is None else _scaled_fractions(f, e))


def _scale_entries(w: np.ndarray, r: np.ndarray | None, f: np.ndarray | None, row_exp, col_exp):
    """``2**(col_exp[j] - row_exp[i])`` times entry ``(i, j)`` of a (float, radius, Fractions-or-None) weight;
    floats that underflow get ``eta`` added to their radius, overflow gives ``None``."""
    e = np.asarray(col_exp, dtype=np.int64)[None, :] - np.asarray(row_exp, dtype=np.int64)[:, None]
    ws = np.ldexp(w, e)
    rs = None if r is None else up(np.ldexp(r, e))
    if not (np.all(np.isfinite(ws)) and (rs is None or np.all(np.isfinite(rs)))):
        return None
    if not np.array_equal(np.ldexp(ws, -e), w):
        rs = up((0.0 if rs is None else rs) + np.full(w.shape, ETA))
    fs = None
    if f is not None:
        fs = np.empty(f.shape, dtype=object)
        for idx, v in np.ndenumerate(f):
            k = int(e[idx])
            fs[idx] = v * (Fraction(2**k) if k >= 0 else Fraction(1, 2 ** (-k)))
    return ws, rs, fs


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
        got = _scale_entries(problem.weights[k], problem.radii[k], None if problem.exact is None else problem.exact[k],
                             rows, cols)
        if got is None:
            return None
        weights.append(got[0])
        radii.append(got[1])
        exact.append(got[2])
    shifts = problem.shifts[:-1] + (problem.shifts[-1] + d,)
    return LipSDPProblem(tuple(weights), tuple(radii), None if problem.exact is None else tuple(exact), problem.slopes,
                         shifts, new)


def lmi_size(chain: LinearChain) -> int:
    """Side of the LipSDP matrix: the inputs plus the hidden neurons of the nonlinear layers."""
    widths = chain.widths
    return widths[0] + sum(widths[k + 1] for k, s in enumerate(chain.slopes) if s.lo != s.hi)


def _merge(second, first, a: Fraction):
    """``a * second @ first`` for (float, radius, Fractions-or-None) triples, exactly or as an enclosure."""
    w2, r2, f2 = second
    w1, r1, f1 = first
    if f1 is not None and f2 is not None:
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
    enc = _iscale(Interval.point(w1, r1).left_matmul(w2, r2), a)
    if not (np.all(np.isfinite(enc.mid)) and np.all(np.isfinite(enc.rad))):
        raise CertificationError("lipsdp: merging two linear layers overflowed the float range")
    return enc.mid, (enc.rad if np.any(enc.rad) else None), None


def _scaled_fractions(x: np.ndarray, e: int) -> np.ndarray:
    f = Fraction(1, 2**e) if e >= 0 else Fraction(2 ** (-e))
    out = np.empty(x.shape, dtype=object)
    for idx, v in np.ndenumerate(x):
        out[idx] = v * f
    return out


def _float_fractions(w: np.ndarray) -> np.ndarray:
    out = np.empty(w.shape, dtype=object)
    for idx, v in np.ndenumerate(w):
        out[idx] = Fraction(float(v))
    return out


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
    ws, sl = problem.weights, problem.slopes
    lam = [np.asarray(x, dtype=np.float64) for x in lambdas]
    n = problem.depth
    diag = [np.zeros((s, s)) for s in problem.sizes]
    lower = []
    diag[0] += float(rho) * np.eye(problem.sizes[0])
    for k in range(1, n):
        a, b = sl[k - 1]
        w = ws[k - 1]
        diag[k] += np.diag(lam[k - 1])
        if a * b != 0:
            diag[k - 1] += float(a * b) * (w.T @ (lam[k - 1][:, None] * w))
        lower.append(-float((a + b) / 2) * (lam[k - 1][:, None] * w))
    diag[n - 1] -= ws[-1].T @ ws[-1]
    return diag, lower


def _assemble(diag, lower) -> np.ndarray:
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
    diag[0] += diagm([cert.rho] * sizes[0])
    for k in range(1, n):
        a, b = problem.slopes[k - 1]
        lam = diagm(cert.lambdas[k - 1])
        lw = lam * ws[k - 1]
        diag[k] += lam
        if a * b != 0:
            diag[k - 1] += ws[k - 1].transpose() * lw * _fq(a * b)
        lower.append(lw * _fq(-(a + b) / 2))
    diag[n - 1] -= ws[-1].transpose() * ws[-1]
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


def _iadd(x: Interval, y: Interval) -> Interval:
    mid = x.mid + y.mid
    return Interval(mid, add_up(x.rad, y.rad, up(2 * UNIT_ROUNDOFF * np.abs(mid))))


def _iscale(x: Interval, c: Fraction) -> Interval:
    """Enclosure of ``c * X`` for a rational ``c``."""
    lo, hi = _fraction_interval(c)
    m = x.mid.shape[0]
    return x.scale_rows(np.full(m, lo), np.full(m, hi))


def _fraction_interval(c: Fraction) -> tuple[float, float]:
    f = float(c)
    if Fraction(f) == c:
        return f, f
    return float(np.nextafter(f, -np.inf)), float(np.nextafter(f, np.inf))


def _idiag(x: Interval, lo: np.ndarray, hi: np.ndarray) -> Interval:
    """Enclosure of ``X + diag(d)`` for every ``lo <= d <= hi`` (floats)."""
    d = Interval.from_bounds(np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64))
    mid = x.mid.copy()
    idx = np.diag_indices(mid.shape[0])
    mid[idx] += d.mid
    rad = x.rad.copy()
    rad[idx] = add_up(rad[idx], d.rad, up(2 * UNIT_ROUNDOFF * np.abs(mid[idx])))
    return Interval(mid, rad)


def _float_down(v: Fraction) -> float:
    f = float(v)  # correctly rounded
    return f if Fraction(f) <= v else float(np.nextafter(f, -np.inf))


def _float_up(v: Fraction) -> float:
    f = float(v)
    return f if Fraction(f) >= v else float(np.nextafter(f, np.inf))


def _check_float(problem: LipSDPProblem, cert: Certificate) -> bool:
    """Interval enclosure of every block of ``H`` (weights with their radii), symmetrised, then
    :func:`~lipverify.rigorous.verify_positive_definite` with the spectral radius bound of the enclosure."""
    # rationals that are not floats are enclosed: rho only increases H, so its lower float is enough
    lam_lo = [np.array([_float_down(t) for t in x], dtype=np.float64) for x in cert.lambdas]
    lam_hi = [np.array([_float_up(t) for t in x], dtype=np.float64) for x in cert.lambdas]
    rho = _float_down(cert.rho)
    n = problem.depth
    sizes = problem.sizes
    ws = [Interval.point(w, r) for w, r in zip(problem.weights, problem.radii)]
    diag = [Interval.point(np.zeros((s, s))) for s in sizes]
    lower = []
    diag[0] = _idiag(diag[0], np.full(sizes[0], rho), np.full(sizes[0], rho))
    for k in range(1, n):
        a, b = problem.slopes[k - 1]
        lw = ws[k - 1].scale_rows(lam_lo[k - 1], lam_hi[k - 1])
        diag[k] = _idiag(diag[k], lam_lo[k - 1], lam_hi[k - 1])
        if a * b != 0:
            wtlw = lw.left_matmul(problem.weights[k - 1].T, None if problem.radii[k - 1] is None else problem.radii[k - 1].T)
            diag[k - 1] = _iadd(diag[k - 1], _iscale(wtlw, a * b))
        lower.append(_iscale(lw, -(a + b) / 2))
    wl = problem.weights[-1]
    gram = ws[-1].left_matmul(wl.T, None if problem.radii[-1] is None else problem.radii[-1].T)
    diag[n - 1] = _iadd(diag[n - 1], Interval(-gram.mid, gram.rad))
    mid = _assemble([d.mid for d in diag], [c.mid for c in lower])
    rad = _assemble([d.rad for d in diag], [c.rad for c in lower])
    # symmetrise by mirroring the upper triangle: |H - T| <= R entrywise still holds for the symmetric T
    iu = np.triu_indices(mid.shape[0], 1)
    mid.T[iu] = mid[iu]
    rad.T[iu] = rad[iu]
    if not (np.all(np.isfinite(mid)) and np.all(np.isfinite(rad))):
        return False
    # ||H - T||_2 <= || |H - T| ||_2 <= ||R||_2 <= ||R||_inf (R symmetric and nonnegative)
    err = float(np.max(sum_up(rad, axis=1))) if rad.size else 0.0
    return verify_positive_definite(mid, err=err)


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
    krr = _assemble(diag[1:], lower[1:])
    kr0 = np.zeros((krr.shape[0], k00.shape[0]))
    kr0[: lower[0].shape[0]] = lower[0]
    try:
        chol = scipy.linalg.cholesky(krr, lower=True)
    except np.linalg.LinAlgError:
        raise CertificationError(
            "lipsdp: the hidden-neuron block of the LMI returned by the solver is not positive definite "
            "after rounding the multipliers; try a tighter solver tolerance or solver='CVXOPT'"
        ) from None
    y = scipy.linalg.solve_triangular(chol, kr0, lower=True)
    z = y.T @ y - k00
    return float(np.max(np.linalg.eigvalsh((z + z.T) / 2)))


def _round_multipliers(lambdas_float, floor: float):
    """Dyadic multipliers, each with 30 significant bits of its own (the multipliers of a deep or unevenly
    scaled net span many orders of magnitude: a common grid would erase the small ones), at least ``floor``;
    entries below ``2**-80`` times the largest are set to 0."""
    flat = np.concatenate([np.ravel(x) for x in lambdas_float]) if lambdas_float else np.zeros(0)
    top = max(float(np.max(np.abs(flat))) if flat.size else 0.0, floor)
    lam_q, lam_f = [], []
    for x in lambdas_float:
        x = np.maximum(np.asarray(x, dtype=np.float64), floor)
        x = np.where(x > math.ldexp(top, -80), x, 0.0)
        e = np.frexp(x)[1]
        q = np.maximum(np.ldexp(np.rint(np.ldexp(x, DYADIC_BITS - e)), e - DYADIC_BITS), 0.0)
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


def _prove(problem: LipSDPProblem, lam_q, lam_f, rho_est: float, check: str, margins) -> tuple[Certificate, float] | None:
    base = max(abs(rho_est), 2.0**-30)
    for m in margins:
        rho = _round_up_dyadic(max(rho_est, 0.0) + m * base, DYADIC_BITS)
        cert = Certificate(rho, tuple(lam_q))
        # cheap float pre-test before an expensive proof
        h = _assemble(*lmi_blocks(problem, lam_f, float(rho)))
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
        lam_q, lam_f = _round_multipliers(lams, floor)
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
    candidates.sort(key=lambda c: c[0])
    small = tuple(m for m in margins if m <= 1e-7)
    for passes in ((small, candidates[:8]), (margins, candidates)):
        for rho_est, mix, lam_q, lam_f in passes[1]:
            proven = _prove(problem, lam_q, lam_f, rho_est, check, passes[0])
            if proven is not None:
                return Certification(proven[0], proven[1], rho_est, check, mix)
    raise CertificationError(
        f"lipsdp: could not prove the LMI certificate (check={check!r}) even with rho inflated by a relative "
        f"{margins[-1]:g}; the solver's multipliers are too inaccurate: try solver='CVXOPT' or tighter tolerances"
    )


# --------------------------------------------------------------------------- the SDP


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
        w = ws[k - 1]
        lam = lams[k - 1]
        m = w.shape[1]
        if variant == "neuron":
            diag[k].append(cp.diag(lam))
            lw = cp.multiply(cp.reshape(lam, (w.shape[0], 1), order="F"), w)
        else:
            diag[k].append(lam * sp.identity(w.shape[0], format="csr"))
            lw = lam * w
        if a * b != 0:
            if variant == "neuron":
                if w.shape[0] * m * m > FORMULATE_MAX_ENTRIES:
                    raise NotApplicableError(
                        f"lipsdp: the cvxpy formulation of layer {k} (slopes [{a}, {b}], {w.shape[0]} neurons, "
                        f"{m} inputs) needs a dense {m * m} x {w.shape[0]} coefficient matrix; use solver='CVXOPT'"
                    )
                g = (w[:, :, None] * w[:, None, :]).reshape(w.shape[0], m * m).T
                wtlw = cp.reshape(g @ lam, (m, m), order="F")
            else:
                wtlw = lam * (w.T @ w)
            diag[k - 1].append(float(a * b) * wtlw)
        lower.append(-float((a + b) / 2) * lw)
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


class _StructuredLMI:
    """The LipSDP LMI as linear operators for CVXOPT's ``conelp`` with a custom KKT solver.

    Variables ``x = (rho, mu)``; ``lambda = J mu`` (``J = I`` for LipSDP-Neuron, one column per layer for
    LipSDP-Layer).  Cone constraints: ``mu >= 0`` ('l' cone) and ``H = rho E_0 + sum_i lambda_i F_i - Q ⪰ 0``
    ('s' cone of side N).  Each neuron's ``F_i = U_i S_i U_i^T`` has rank <= 2 (``U_i = [e_i, w_i]``), so the
    normal matrix ``G^T W^-1 W^-T G`` costs ``O(m N^2 + m^2 N)`` per iteration instead of the ``O(m N^3)``
    of a generic dense LMI column scaling.  Only the solver's suggestion comes from here; the bound is
    certified separately (:func:`certify`).
    """

    def __init__(self, problem: LipSDPProblem, variant: str, margin: float = 0.0):
        self.problem = problem
        self.sizes = problem.sizes
        self.offs = np.concatenate([[0], np.cumsum(self.sizes)]).astype(int)
        self.n = int(self.offs[-1])
        self.n0 = self.sizes[0]
        self.m = sum(problem.hidden)
        self.layers = []  # (layer k >= 1, W_k, c_k = (a+b)/2, d_k = ab)
        for k in range(1, problem.depth):
            a, b = problem.slopes[k - 1]
            self.layers.append((k, problem.weights[k - 1], float((a + b) / 2), float(a * b)))
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
            if d != 0.0:
                out[o[k - 1]:o[k], o[k - 1]:o[k]] += d * (w.T @ (lk[:, None] * w))
            blk = -c * (lk[:, None] * w)
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
            if d != 0.0:
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
            s.append(np.tile(np.array([[1.0, -c], [-c, d]]), (w.shape[0], 1, 1)))
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


def _single_threaded_blas():
    """numpy's BLAS threads spin while CVXOPT (its own single-threaded BLAS) works between our callbacks; on
    a busy machine that made the solve 10-30x slower.  One thread for the duration of the solve (needs the
    optional ``threadpoolctl``; without it nothing changes)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional speed-up
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _solve_cvxopt(problem: LipSDPProblem, variant: str, solver_options: dict, margin: float = 0.0):
    """LipSDP through CVXOPT's ``conelp`` with the structured operators of :class:`_StructuredLMI`
    (with ``H - margin E_hidden ⪰ 0`` in place of ``H ⪰ 0`` when ``margin > 0``)."""
    from cvxopt import matrix, solvers

    lmi = _StructuredLMI(problem, variant, margin)
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
        with _single_threaded_blas():
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


def _solve(problem: LipSDPProblem, variant: str, solvers: tuple[str, ...], solver_options: dict, margin: float = 0.0):
    """Try ``solvers`` in order: CVXOPT through :func:`_solve_cvxopt` (structured KKT solver), the others
    through cvxpy (:func:`formulate`), with a strict-feasibility ``margin`` on the hidden blocks.
    Returns ``(solver, status, rho, lambdas)``; raises SolverError."""
    import cvxpy as cp

    errors = []
    for name in solvers:
        if name == "CVXOPT":
            try:
                rho_value, values = _solve_cvxopt(problem, variant, solver_options, margin)
            except SolverError as exc:
                errors.append(str(exc))
                continue
            return name, "optimal", rho_value, values
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


def _solver_list(solver: str | None, size: int) -> tuple[str, ...]:
    if solver is None:
        return DEFAULT_SOLVERS
    name = str(solver).upper()
    if name not in SOLVERS:
        raise ValueError(f"lipsdp: solver must be one of {', '.join(SOLVERS)} (or None for CVXOPT then SCS), "
                         f"got {solver!r}")
    if name == "CLARABEL" and size > CLARABEL_MAX_SIZE:
        raise NotApplicableError(
            f"lipsdp: Clarabel is only allowed on tiny LMIs (side <= {CLARABEL_MAX_SIZE}); this one has side {size} "
            "and Clarabel's memory use explodes (>24 GB at side 210): use solver='CVXOPT' or 'SCS'"
        )
    return (name,)


# --------------------------------------------------------------------------- public entry point


def lipsdp(net: Network, norm: NormLike = 2, *, variant: str = "neuron", solver: str | None = None,
           max_neurons: int = DEFAULT_MAX_NEURONS, check: str = "auto", solver_options: dict | None = None) -> Bound:
    """LipSDP (Fazlyab et al. 2019): a certified upper bound of the l2 Lipschitz constant.

    Claim: if ``H(rho, lambda) ≻ 0`` (proven exactly or by a verified Cholesky) then ``L_2 <= sqrt(rho)``, for
    every activation whose derivative lies in its declared slope interval ``[alpha, beta]``.
    ``variant="neuron"`` uses one multiplier per hidden neuron, ``"layer"`` one per layer (never smaller).
    Proof: ``proofs/lipsdp.md``.  Only l2 (other norms raise :class:`NotApplicableError`); nets whose LMI side
    (inputs + hidden neurons) exceeds ``max_neurons`` raise :class:`NotApplicableError`.  The solver is
    CVXOPT (then SCS) unless ``solver`` names one; a non-optimal status raises :class:`SolverError`; an
    unprovable certificate raises :class:`CertificationError`.  Ill-conditioned nets are rebalanced and
    re-solved, near-boundary optima repaired through an anchor (``proofs/lipsdp.md`` §5); ``details`` has
    ``solver_value``, ``certified_value`` and ``relative_loss`` (above 1e-4 it is also in ``status``).

    >>> import lipverify as lv
    >>> net = lv.Network([lv.Dense([[1, 1], [1, -1]]), lv.ReLU(), lv.Dense([[1, 0], [0, 1]])])
    >>> b = lv.bound(net, "lipsdp", norm=2)
    >>> 1.41421356 <= b.value <= 1.4143
    True
    """
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
    solvers = _solver_list(solver, problem.size)
    options = dict(solver_options or {})
    t0 = time.perf_counter()
    name, status, rho_solver, lam = _solve(problem, variant, solvers, options)
    t_solve = time.perf_counter() - t0
    cert, failure = _try_certify(problem, lam, check)
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
                found = _solve(balanced, variant, solvers, options)
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
    anchor_margin = None
    if cert is None or _loss(cert, rho_solver) > REPAIR_LOSS:
        # §5: mix toward a strictly feasible anchor (same LMI with a margin on the hidden blocks)
        top = max((float(np.max(x)) for x in lam if np.size(x)), default=0.0)
        anchor_margin = ANCHOR_MARGIN * (top if math.isfinite(top) and top > 0 else 1.0)
        try:
            t = time.perf_counter()
            try:
                anchor = _solve(problem, variant, solvers, options, anchor_margin)[3]
            finally:
                t_solve += time.perf_counter() - t
            repaired = certify(problem, lam, check=check, anchor=anchor)
            if cert is None or repaired.certificate.rho < cert.certificate.rho:
                cert = repaired
        except (SolverError, CertificationError):
            pass
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
