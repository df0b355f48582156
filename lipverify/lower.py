"""Lower bounds of the Lipschitz constant from Jacobians at chosen points (``kind="lower"``).

Proof: ``proofs/lower_bound.md``.  At a point ``x`` where ``f`` is differentiable, ``||J(x)||_p <= Lip_p(f)``.
The reported value is *certified*: a point is kept only when ``f`` is provably differentiable there (every
piecewise-linear activation input provably away from its kink; in CNNs also every max-pool window's maximum
provably unique, or all its candidates locally constant), and ``||J(x)||_p`` is bounded below through a
rigorous interval enclosure of ``J(x)`` built from a running error analysis of the forward pass.  Fully
connected and convolutional networks are certified; a CNN above :data:`CNN_CERTIFY_WORK` gets
``kind="estimate"`` (the float value, no guarantee) with the reason, and so does a search whose candidates
all fail certification.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import scipy.sparse as sp

from . import rigorous
from .errors import LipVerifyError, NumericalError, UnsupportedLayerError
from .ir.chain import Slopes
from .ir.graph import Graph, Step, explicit_nnz, is_cnn, lower
from .ir.passes import enclosure_rows
from .layers import LIBM_REL, Activation, Dense, Flatten, Identity, Layer, LeakyReLU, ReLU  # noqa: F401  (LIBM_REL: defined once, in rigorous/evaluation.py)
from .network import Network
from .norms import NormLike, parse_norm
from .result import OUTWARD, Bound
from .rigorous import ETA, add_up, down, gamma_up, interval_product, spectral_norm_lower, sum_down, up

#: how many of the best points are tried for certification
CANDIDATES = 16
#: CNNs are certified through their explicit layer matrices and an interval enclosure of the Jacobian; above this
#: many multiply-adds (nonzeros of the layer matrices times ``min(n_in, n_out)``) ``lower_bound`` reports an estimate
CNN_CERTIFY_WORK = 50_000_000
#: without a ``domain`` the constant is global: activation-pattern candidates (LPs) range over this many radii
GLOBAL_LP_SCALE = 16.0
#: linear programs the activation-pattern search may solve (per call of ``lower_bound``)
PATTERN_LP_BUDGET = 32
#: the single-flip pattern search runs when (neurons) x (multiply-adds of one pattern Jacobian) is below this
PATTERN_FLIP_WORK = 50_000_000
#: activation-pattern candidates are tried when the LP's constraint matrix (kink neurons x inputs) has at most this
#: many entries (HiGHS took ~35 s per LP at 1024 x 784 on a busy machine)
PATTERN_LP_ENTRIES = 200_000
#: hill climbing adapts each point's step (x1.1 after a success, x0.95 after a failure); False: the former common
#: geometric schedule (x0.9 per round), kept for ``benchmarks/bench_lower.py``
ADAPTIVE_STEPS: tuple[float, float] | None = (1.1, 0.95)
#: a hill-climbing move changes each coordinate with probability ``min(1, MOVE_COORDINATES / n_in)`` (about this
#: many coordinates); ``None``: every coordinate (the former moves).  In high dimension a full Gaussian move re-draws
#: the whole point, a sparse one keeps most of it: on the Fashion CNN (784 inputs) sparse moves raised the certified
#: values, on a 64-input MLP full moves did better (``benchmarks/bench_lower.py``)
MOVE_COORDINATES: int | None = 64
#: the search's float Jacobians are computed in chunks of samples using about this many bytes of float64 work arrays,
#: so the search's peak memory is bounded whatever ``samples`` is (plus the ``(samples, n_out, n_in)`` result)
JACOBIAN_CHUNK_BYTES = 256 * 2**20


def jacobian_norm(jac: np.ndarray, norm: str) -> np.ndarray:
    """Induced norms of a batch of Jacobians ``(N, n_out, n_in)`` (floating point, not certified)."""
    if norm == "inf":
        return np.abs(jac).sum(axis=2).max(axis=1)
    if norm == "1":
        return np.abs(jac).sum(axis=1).max(axis=1)
    return np.linalg.norm(jac, ord=2, axis=(1, 2))


def _derivative_interval(layer: Activation, z: np.ndarray, ez: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """An interval containing ``σ'(z_exact)``, or ``None`` when ``z`` may sit on a kink.

    ``|σ'(z_exact) - fl σ'(z)| <= |σ'(z_exact) - σ'(z)| + |σ'(z) - fl σ'(z)| <= κ ez + derivative_error(z)`` with
    ``κ >= sup |σ''|`` away from the kinks (``curvature``; 0 for piecewise-linear activations, which are linear on the
    side of ``z``); ``None`` when ``[z - ez, z + ez]`` may meet a kink (``Activation.kinks``)."""
    d = layer.derivative(z)
    own = np.asarray(layer.derivative_error(z), dtype=np.float64)
    for k_lo, k_hi in layer.kinks:  # z_exact may lie on a kink, or on its other side (``Activation.kinks``)
        if np.any((down(z - ez) <= k_hi) & (up(z + ez) >= k_lo)):
            return None
    if layer.is_piecewise_linear:
        spread = own
    else:
        spread = add_up(up(layer.curvature * ez), own)
    if not np.all(np.isfinite(spread)):
        return None
    return down(down(d) - spread), up(up(d) + spread)


def certified_jacobian_norm(net: Network, x: np.ndarray, norm: str, graph: Graph | None = None) -> float | None:
    """A rigorous lower bound of ``||J(x)||_p``, or ``None`` when ``f`` may not be differentiable at ``x`` (a kink, a
    max-pool tie between cells that are not locally constant).

    Claim: if a float is returned, ``f`` is differentiable at ``x`` and the value is ``<= ||J(x)||_p`` in exact
    arithmetic (so ``<= Lip_p(f)``).  Assumptions: IEEE binary64 round-to-nearest, the activations' declared error
    bounds.  One walk over the network's graph (dense, convolutional and residual alike, :func:`certified_walk`):
    a running error analysis of the forward pass, the kink test, the max-pool test, the derivative of every
    activation enclosed per neuron; then the graph's interval pass encloses ``J(x)`` from the smaller side
    (:func:`lipverify.ir.passes.enclosure_rows`).  Proof: ``proofs/lower_bound.md`` (certification).  ``graph`` is
    ``lower(net, "implicit")``, to reuse across points.

    >>> import numpy as np, lipverify as lv
    >>> net = lv.Network([lv.MaxPool2d(2), lv.Flatten()], input_shape=(1, 2, 2))
    >>> certified_jacobian_norm(net, np.array([[[1.0, 1.0], [0.0, 0.0]]]), "inf") is None  # a tie: no derivative
    True
    """
    graph = lower(net, "implicit", "lower_bound") if graph is None else graph
    h = np.asarray(x, dtype=np.float64).ravel()
    walked = certified_walk(graph.steps, h, np.zeros_like(h), np.zeros(h.shape, dtype=bool))
    if walked is None:
        return None
    steps = walked[3]
    if net.n_out <= net.n_in:  # rows of J from the outputs: n_out passes
        mid, rad = enclosure_rows(steps, np.eye(net.n_out), False)
        enc = rigorous.Interval(mid, rad)
    else:  # columns of J from the inputs
        mid, rad = enclosure_rows(steps, np.eye(net.n_in), True)
        enc = rigorous.Interval(np.ascontiguousarray(mid.T), np.ascontiguousarray(rad.T))
    return enclosure_norm_lower(enc, norm)


def certified_walk(steps, h: np.ndarray, err: np.ndarray, flat: np.ndarray, records: dict | None = None):
    """Float forward pass of the graph ``steps`` at ``h`` (with ``|h - h_exact| <= err``; ``flat`` marks entries
    provably constant near the point) that returns ``(h, err, flat, narrowed)``: ``narrowed`` has every activation
    step's slopes replaced by per-neuron intervals containing ``σ'`` at the exact inputs and every max pool by the
    selection of its (provably fixed) maximisers; ``None`` when an input may sit on a kink or a window's maximiser
    is not provably fixed.  ``records`` (if given) receives ``(z, |z - z_exact| bound)`` of every activation input
    by layer index.

    Linear step ``z = fl(M h + b)``: ``|z - z_exact| <= gamma_{k+1} ((|M| + R)|h| + |b|) + (|M| + R) err
    + R (|h| + err) + r_b + 4 (k + 2) eta`` (``k`` products per entry; the operator's rigorous nonnegative passes);
    activations: ``e_out <= max(|alpha|, |beta|) e_in + forward_error(z)`` (``proofs/activations.md`` §2); a residual
    block adds its branches' errors and the rounding of the sum, ``u |fl(a + b)| + eta`` (``proofs/residual.md``).
    """
    out: list = []
    for s in steps:
        if s.kind == "linear":
            h, err = _linear_with_error(s, h, err)
            flat = np.zeros(h.shape, dtype=bool)
            out.append(s)
        elif s.kind == "act":
            interval = None
            for layer in s.source:
                if records is not None:
                    records[s.index if len(s.source) == 1 else s.layers[s.source.index(layer)]] = (h, err)
                d = _derivative_interval(layer, h, err)
                if d is None:
                    return None
                flat = flat | _locally_constant(layer, h, err)
                h, err = _activation_with_error(layer, h, err)
                interval = d if interval is None else interval_product(interval, d)
            lo, hi = interval
            slopes = Slopes(Fraction(float(np.min(lo, initial=0.0))), Fraction(float(np.max(hi, initial=0.0))), lo, hi)
            out.append(Step("act", slopes, s.index, s.layer, s.layers))
        elif s.kind == "maxpool":
            res = _maxpool_with_error(s.source[0].window_index(s.shape), h, err, flat)
            if res is None:
                return None
            from .ir.operators import SparseOp  # here: ``import lipverify`` stays cheap

            n_in = h.size
            h, err, flat, sel = res
            select = SparseOp(sp.csr_matrix((np.ones(sel.size), (np.arange(sel.size), sel)), shape=(sel.size, n_in)))
            out.append(Step("linear", select, s.index, s.layer))
        elif s.kind == "sort":
            res = _sort_with_error(s.op, h, err, flat)
            if res is None:
                return None
            from .ir.operators import SparseOp

            h, err, flat, sel = res
            select = SparseOp(sp.csr_matrix((np.ones(sel.size), (np.arange(sel.size), sel)), shape=(sel.size, sel.size)))
            out.append(Step("linear", select, s.index, s.layer))
        else:
            parts = [certified_walk(b.steps, h, err, flat) for b in s.op]
            if any(part is None for part in parts):
                return None
            (hb, eb, fb, nb), (hs, es, fs, ns) = parts
            h = hb + hs
            err = add_up(eb, es, up(rigorous.UNIT_ROUNDOFF * np.abs(h)), np.full(h.shape, ETA))
            flat = fb & fs
            branches = tuple(Graph(tuple(n), b.n_in, b.n_out, b.variant) for n, b in zip((nb, ns), s.op))
            out.append(Step("sum", branches, s.index, s.layer))
    return h, err, flat, out


def _linear_with_error(s: Step, h: np.ndarray, err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    op = s.op
    bias, bias_radius = s.source[0].affine_shift(s.shape)
    where = f"lower_bound: layer {s.index} ({s.layer})"
    z = np.asarray(op.forward(h[None]), dtype=np.float64)[0] + bias
    ah = np.abs(h)
    k = op.k_forward
    mag = add_up(op.abs_forward_up(ah[None])[0], np.abs(bias))
    e = add_up(rigorous.scale_up(mag, gamma_up(k + 1)), op.abs_forward_up(err[None])[0], np.full(z.shape, 4.0 * (k + 2) * ETA))
    if op.has_radius:
        e = add_up(e, op.radius_forward_up(add_up(ah, err)[None])[0])
    if bias_radius is not None:
        e = add_up(e, bias_radius)
    return rigorous._check_finite(z, where), rigorous._check_finite(e, where)


def enclosure_norm_lower(enc: rigorous.Interval, norm: str) -> float:
    """A rigorous lower bound of ``min ||J||_p`` over the interval matrix ``enc`` (every member's norm is at
    least the value): entrywise magnitudes ``|mid| - rad`` rounded down for l1/l∞ (``proofs/lower_bound.md``)."""
    low = np.maximum(down(np.abs(enc.mid) - enc.rad), 0.0)
    if norm == "inf":
        return float(np.max(sum_down(low, axis=1)))
    if norm == "1":
        return float(np.max(sum_down(low, axis=0)))
    # ||M v|| / ||v|| rounded down for every M in the enclosure (R12 of proofs/rigorous_arithmetic.md)
    return spectral_norm_lower(enc.mid, enc.rad)


def lower_bound(net: Network, norm: NormLike = 2, *, samples: int = 256, steps: int = 50, radius: float = 1.0,
                seed: int = 0, domain: tuple | None = None, input_shape=None,
                progress: Callable[[int, int], None] | None = None) -> Bound:
    """The largest *certified* ``||J(x)||_p`` over searched points: a valid **lower** bound of ``Lip_p(f)``.

    Search (not certified): ``samples`` points drawn uniformly from ``domain`` (a pair of arrays) or from
    ``[-radius, radius]^n``, then ``steps`` rounds of random-direction hill climbing from the best eight (one step
    length per climber, adapted by ``ADAPTIVE_STEPS``; about ``MOVE_COORDINATES`` coordinates move), the moves
    reflected back into the box (never clipped onto its faces, where kinks may sit).  Float Jacobians by reverse mode
    when ``n_out < n_in`` (forward mode otherwise), in chunks of about ``JACOBIAN_CHUNK_BYTES``: the search's memory
    does not grow with ``samples``.  Fully connected networks with
    ReLU/LeakyReLU/Identity activations add activation-pattern candidates: the max-slope (for ReLU all-active)
    pattern and the pattern of the best sampled point, then single flips that increase the pattern's Jacobian norm,
    each made realizable by a linear program that finds the point of the box deepest inside the pattern's region
    (without ``domain``, whose constant is the global one, the LP box is ``GLOBAL_LP_SCALE`` times larger).
    Certification: candidates are certified one by one (module docstring); the best certified value is reported.
    Without a certified positive value: ``kind="lower"`` value 0 when every Jacobian seen is 0 or every certified
    point's lower end is 0, else ``kind="estimate"`` (the float value, no point certified) — the note says which.
    ``net`` may also be a live ``torch.nn.Module`` (with ``input_shape=``; :func:`lipverify.io.as_network`).
    ``progress(done, total)`` counts the work: ``samples`` (the sampled batch), one per hill-climbing step, one for
    the activation-pattern candidates and one per certified candidate (at most ``CANDIDATES``); it ends at
    ``total`` when the search ends (certification may stop early once no candidate can beat the best).
    Proof: ``proofs/lower_bound.md``.

    >>> import lipverify as lv
    >>> net = lv.Network([lv.Dense([[1, -2], [0, 1]], [0, 1]), lv.ReLU(), lv.Dense([[1, 1]])])
    >>> b = lv.lower_bound(net, "inf")
    >>> b.kind, round(float(b.value), 9)
    ('lower', 3.0)
    """
    from .io import as_network

    started = time.perf_counter()
    net = as_network(net, input_shape)
    p = parse_norm(norm)
    if net.free_symbols:
        raise LipVerifyError(f"lower_bound: the network has symbolic parameters {sorted(map(str, net.free_symbols))}; "
                             "use net.subs({...}) first, or lv.exact for a formula")
    if samples < 1 or steps < 0:
        raise ValueError(f"lower_bound: samples must be >= 1 and steps >= 0, got samples={samples}, steps={steps}")
    rng = np.random.default_rng(seed)
    shape = net.input_shape
    if domain is not None:
        lo = np.broadcast_to(np.asarray(domain[0], dtype=np.float64), shape)
        hi = np.broadcast_to(np.asarray(domain[1], dtype=np.float64), shape)
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(lo <= hi)):
            raise ValueError(f"lower_bound: domain must be finite with lower <= upper entrywise (input shape {shape})")
    else:
        if not (np.isfinite(radius) and radius >= 0):
            raise ValueError(f"lower_bound: radius must be a finite number >= 0, got {radius!r}")
        lo, hi = np.full(shape, -float(radius)), np.full(shape, float(radius))
    cnn = is_cnn(net)
    jacs = _search_jacobians(net)

    def jac_norms(pts: np.ndarray) -> np.ndarray:
        return jacs(pts, lambda j: jacobian_norm(j, p))

    total = samples + steps + 1 + CANDIDATES
    done = 0

    def tick(amount: int = 1) -> None:
        nonlocal done
        done = min(done + amount, total)
        if progress is not None:
            progress(done, total)

    # ---- search (float, not certified)
    x = rng.uniform(lo, hi, size=(samples, *shape))
    vals = jac_norms(x)
    tick(samples)
    top = x[np.argsort(vals)[-min(8, samples):]].copy()
    top_vals = jac_norms(top)
    width = float(np.max(hi - lo))
    step = np.full(len(top), 0.25 * width if width > 0 else 0.0)
    spread = (1,) * len(shape)
    fraction = 1.0 if MOVE_COORDINATES is None else min(1.0, MOVE_COORDINATES / net.n_in)
    pool, pool_vals = [x], [vals]
    for _ in range(steps):
        move = rng.standard_normal(top.shape)
        if fraction < 1.0:  # a random subset of the coordinates moves
            move = move * (rng.random(top.shape) < fraction)
        cand = _reflect(top + step.reshape(-1, *spread) * move, lo, hi)
        cv = jac_norms(cand)
        better = cv > top_vals
        top[better], top_vals[better] = cand[better], cv[better]
        pool.append(cand)
        pool_vals.append(cv)
        if ADAPTIVE_STEPS:  # per point: longer after a success, shorter after a failure (capped at the box width)
            step = np.minimum(np.where(better, ADAPTIVE_STEPS[0] * step, ADAPTIVE_STEPS[1] * step), width)
        else:
            step = 0.9 * step
        tick()
    points = np.concatenate(pool)
    values = np.concatenate(pool_vals)
    if not np.all(np.isfinite(values)):
        raise NumericalError("lower_bound: a Jacobian norm was not finite (overflow in the network); no bound is reported")
    order = np.argsort(values)[::-1]
    float_best = float(values[order[0]])
    search = f"{len(values)} points ({samples} samples, {steps} hill-climbing steps, seed {seed})"

    # ---- certification
    if cnn:
        work = explicit_nnz(net) * min(net.n_in, net.n_out)
        if work > CNN_CERTIFY_WORK:
            note = (f"not certified: float Jacobian norm at the best of {search}; certifying this CNN needs about "
                    f"{work} multiply-adds per point (limit CNN_CERTIFY_WORK = {CNN_CERTIFY_WORK} in lipverify.lower), "
                    "so no guarantee either way; use a smaller domain of inputs or the upper bounds")
            tick(total)
            return Bound.estimate(float_best, p, "lower_bound", seconds=time.perf_counter() - started, assumptions=(note,))
        structured: list[tuple[np.ndarray, str]] = []
    else:
        scale = 1.0 if domain is not None else GLOBAL_LP_SCALE
        structured = _pattern_candidates(net, p, lo.ravel() * scale, hi.ravel() * scale, points[order[:4]])
    graph = lower(net, "implicit", "lower_bound")

    def certify(point):
        return certified_jacobian_norm(net, point, p, graph)

    best, where, tried, certified, witness = 0.0, "", 0, 0, None
    for point, label in structured:
        v = certify(point.reshape(shape))
        certified += v is not None
        if v is not None and v > best:
            best, where, witness = v, label, point
    tick()
    for idx in order:
        if values[idx] <= best or tried >= CANDIDATES:
            break
        tried += 1
        v = certify(points[idx])
        certified += v is not None
        if v is not None and v > best:
            best, where, witness = v, "a sampled point", points[idx]
        tick()
    tick(total)  # the candidates left cannot beat the best: the search is complete
    seconds = time.perf_counter() - started
    extra = f", {len(structured)} activation-pattern LP points" if structured else ""
    if best > 0:
        note = f"certified at {where}; searched {search}{extra}"
        return Bound.lower_bound(best, p, "lower_bound", rounding=OUTWARD, seconds=seconds, assumptions=(note,),
                                 details={"witness": np.asarray(witness, dtype=np.float64).reshape(shape).tolist()})
    if float_best == 0.0:
        note = (f"every Jacobian seen is 0 ({search}{extra}): 0, the trivial lower bound, is the best found "
                "(the network may be constant on the searched box)")
        return Bound.lower_bound(0.0, p, "lower_bound", rounding=OUTWARD, seconds=seconds, assumptions=(note,))
    if certified:
        note = (f"0 is the best certified value: at the {certified} points certified differentiable the rigorous lower "
                f"end of ||J(x)|| is 0 (rounding or cancellation leaves it indistinguishable from 0); the float search "
                f"saw {float_best:.6g}, which is not certified ({search}{extra})")
        return Bound.lower_bound(0.0, p, "lower_bound", rounding=OUTWARD, seconds=seconds, assumptions=(note,))
    note = (f"not certified: no candidate point could be certified (each may lie on a kink or a max-pool tie; "
            f"{tried} tried of {search}{extra}); this is the float Jacobian norm at the best point, no guarantee "
            "either way; the only certified lower bound is the trivial 0")
    return Bound.estimate(float_best, p, "lower_bound", seconds=seconds, assumptions=(note,))


def _reflect(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``x`` folded back into the box ``[lo, hi]`` by reflection at its faces (a continuous distribution stays
    continuous, so no mass lands on a face, unlike clipping); degenerate coordinates are set to ``lo``."""
    width = hi - lo
    safe = np.where(width > 0, width, 1.0)
    y = np.mod(x - lo, 2.0 * safe)
    y = np.where(y > safe, 2.0 * safe - y, y)
    return np.where(width > 0, np.clip(lo + y, lo, hi), lo)


# --------------------------------------------------------------------------- activation patterns (FC, PWL)



@dataclass(frozen=True)
class _PwlNet:
    """A fully connected network whose activations are built-in ReLU/LeakyReLU/Identity: ``dense`` steps
    ``(W, b)`` and activation steps ``(slope_negative, slope_positive)`` (floats, for the search only)."""

    steps: tuple
    n_in: int

    @property
    def acts(self) -> list[tuple[int, float, float, int]]:
        """``(step index, negative slope, positive slope, width)`` of every activation step."""
        out, width = [], self.n_in
        for k, s in enumerate(self.steps):
            if s[0] == "dense":
                width = s[1].shape[0]
            else:
                out.append((k, s[1], s[2], width))
        return out


def _pwl_net(net: Network) -> _PwlNet | None:
    """The dense piecewise-linear form of the network's graph (dense layers, activations with declared ``pieces``),
    or ``None`` for anything else (convolutions, pooling, residual blocks, smooth activations)."""
    graph = lower(net, "explicit", "lower_bound")
    if graph.is_cnn:
        return None
    steps = []
    for s in graph.steps:
        if s.kind == "linear":
            steps.append(("dense", s.op.weight, s.source[0].affine_shift(s.shape)[0]))
        elif s.kind == "act" and all(a.pieces is not None for a in s.source):  # a subclass changing forward has none
            steps += [("act", *(float(v) for v in a.pieces)) for a in s.source]
        else:
            return None
    return _PwlNet(tuple(steps), net.n_in)


def _pattern_of(pwl: _PwlNet, x: np.ndarray) -> list[np.ndarray]:
    """Which side (True: positive) of its kink every activation input is on at ``x`` (float forward pass)."""
    h, pattern = np.asarray(x, dtype=np.float64).ravel(), []
    for s in pwl.steps:
        if s[0] == "dense":
            h = s[1] @ h + s[2]
        else:
            pattern.append(h > 0)
            h = np.where(h > 0, s[2], s[1]) * h
    return pattern


def _pattern_maps(pwl: _PwlNet, pattern: list[np.ndarray]) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """For a fixed pattern: the Jacobian ``J`` (float) and the affine maps ``z = A x + c`` of every activation input."""
    a, c, maps, k = None, np.zeros(pwl.n_in), [], 0
    for s in pwl.steps:
        if s[0] == "dense":
            a = s[1].copy() if a is None else s[1] @ a
            c = s[1] @ c + s[2]
        else:
            if a is None:
                a = np.eye(pwl.n_in)
            maps.append((a, c))
            slope = np.where(pattern[k], s[2], s[1])
            k += 1
            a, c = slope[:, None] * a, slope * c
    return (np.eye(pwl.n_in) if a is None else a), maps


def _realize(pwl: _PwlNet, maps, pattern, lo: np.ndarray, hi: np.ndarray) -> np.ndarray | None:
    """A point of the box deep inside the pattern's region: the LP ``max t`` s.t. ``s_i (A_i x + c_i) >= t ||A_i||``
    (HiGHS), or ``None`` when the best ``t`` is not positive (the region has no interior in the box)."""
    rows, rhs = [], []
    for (a, c), pos, (_, neg, posl, _) in zip(maps, pattern, pwl.acts):
        if neg == posl:
            continue  # no kink
        sgn = np.where(pos, 1.0, -1.0)
        nrm = np.linalg.norm(a, axis=1)
        const = nrm == 0
        if np.any(const & (sgn * c <= 0)):
            return None
        rows.append(np.hstack([-(sgn[~const, None] * a[~const]), nrm[~const, None]]))
        rhs.append(sgn[~const] * c[~const])
    width = float(np.max(hi - lo)) if lo.size else 0.0
    if not rows or width <= 0:
        return None
    n = lo.size
    import scipy.optimize  # here, not at the top: ``import lipverify`` stays cheap

    res = scipy.optimize.linprog(np.r_[np.zeros(n), -1.0], A_ub=np.vstack(rows), b_ub=np.concatenate(rhs),
                                 bounds=list(zip(lo, hi)) + [(None, width)], method="highs")
    if res.status != 0 or not -res.fun > 0:
        return None
    return np.clip(res.x[:n], lo, hi)


def _float_norm(j: np.ndarray, norm: str) -> float:
    return float(jacobian_norm(j[None], norm)[0])


def _pattern_candidates(net: Network, norm: str, lo: np.ndarray, hi: np.ndarray,
                        best_points: np.ndarray) -> list[tuple[np.ndarray, str]]:
    """Points (flat) deep inside strong activation patterns, with a label; empty unless ``net`` is a PWL FC net.

    Starts: the max-slope pattern (every neuron on the side of larger slope magnitude; all-active for ReLU) and the
    patterns of ``best_points``; then single flips of the best realizable pattern that raise its float Jacobian
    norm, each checked by an LP (at most ``PATTERN_LP_BUDGET`` LPs).  Certification happens afterwards.  Skipped
    (empty) when the LP would exceed ``PATTERN_LP_ENTRIES``.
    """
    pwl = _pwl_net(net)
    if pwl is None or not any(neg != pos for _, neg, pos, _ in pwl.acts):
        return []
    neurons = sum(w for _, neg, pos, w in pwl.acts if neg != pos)
    if neurons * pwl.n_in > PATTERN_LP_ENTRIES:
        return []
    lps = 0
    found: list[tuple[np.ndarray, str]] = []
    starts = [([np.full(w, pos >= abs(neg)) for _, neg, pos, w in pwl.acts], "the max-slope activation pattern")]
    starts += [(_pattern_of(pwl, x), "the activation pattern of a sampled point") for x in best_points[:1]]
    current, current_value = None, -1.0
    for pattern, label in starts:
        j, maps = _pattern_maps(pwl, pattern)
        lps += 1
        x = _realize(pwl, maps, pattern, lo, hi)
        if x is None:
            continue
        found.append((x, f"an LP point of {label}"))
        v = _float_norm(j, norm)
        if v > current_value:
            current, current_value = pattern, v
    if current is None:
        return found
    widths = [pwl.n_in] + [s[1].shape[0] for s in pwl.steps if s[0] == "dense"]
    per_pattern = sum(widths[i] * widths[i + 1] * pwl.n_in for i in range(1, len(widths) - 1)) + widths[1] * pwl.n_in
    if neurons * per_pattern > PATTERN_FLIP_WORK:
        return found
    improved = True
    while improved and lps < PATTERN_LP_BUDGET:
        improved = False
        for k, (_, neg, pos, w) in enumerate(pwl.acts):
            if neg == pos:
                continue
            for i in range(w):
                if lps >= PATTERN_LP_BUDGET:
                    break
                trial = [a.copy() for a in current]
                trial[k][i] = not trial[k][i]
                j, maps = _pattern_maps(pwl, trial)
                v = _float_norm(j, norm)
                if not v > current_value * (1 + 1e-12):
                    continue
                lps += 1
                x = _realize(pwl, maps, trial, lo, hi)
                if x is not None:
                    current, current_value, improved = trial, v, True
                    found.append((x, "an LP point of a flipped activation pattern"))
    return found


# --------------------------------------------------------------------------- float Jacobians (search)


def _tape(steps, h: np.ndarray) -> tuple[np.ndarray, list]:
    """Float forward pass of a batch ``h`` (flat rows) through the graph ``steps``, recording what the backward pass
    needs: the operators, the activations' derivatives (composed activations multiplied), each max pool's selected
    cells (the first maximal one, as ``Network.jacobian``), the branches' tapes of a residual block."""
    tape: list = []
    for s in steps:
        if s.kind == "linear":
            tape.append(("lin", s.op))
            h = np.asarray(s.op.forward(h), dtype=np.float64) + s.source[0].affine_shift(s.shape)[0]
        elif s.kind == "act":
            d = np.ones_like(h)
            for layer in s.source:
                d = d * layer.derivative(h)
                h = layer.forward(h)
            tape.append(("act", d))
        elif s.kind == "maxpool":
            layer = s.source[0]
            idx = layer.window_index(s.shape)
            vals = np.where(idx >= 0, h[:, np.maximum(idx, 0)], -np.inf)
            arg = np.take_along_axis(idx[None], vals.argmax(axis=2)[..., None], axis=2)[..., 0]
            tape.append(("pool", arg, h.shape[1], layer.max_overlap(s.shape) > 1))
            h = np.take_along_axis(h, arg, axis=1)
        elif s.kind == "sort":  # a permutation at the point (stable order at ties, as GroupSort.jvp)
            arg = s.source[0].selection(h)
            tape.append(("pool", arg, h.shape[1], False))
            h = np.take_along_axis(h, arg, axis=1)
        else:
            (hb, tb), (hs, ts) = (_tape(branch.steps, h) for branch in s.op)
            tape.append(("res", tb, ts))
            h = hb + hs
    return h, tape


def _backward(tape: list, g: np.ndarray, b: int, m: int) -> np.ndarray:
    """Rows ``g`` (``b * m`` of them, ``m`` per sample) pulled back through a recorded tape (vector-Jacobian products)."""
    for entry in reversed(tape):
        if entry[0] == "lin":
            g = entry[1].backward(g)
        elif entry[0] == "act":
            g = (g.reshape(b, m, -1) * entry[1][:, None, :]).reshape(b * m, -1)
        elif entry[0] == "res":
            g = _backward(entry[1], g, b, m) + _backward(entry[2], g, b, m)
        else:
            arg, n_in, overlap = entry[1:]
            rows = np.arange(b)[:, None]
            if overlap:  # a cell may be selected by several windows: accumulate
                gt = np.zeros((b, n_in, m))
                np.add.at(gt, (rows, arg), g.reshape(b, m, -1).transpose(0, 2, 1))
                gi = gt.transpose(0, 2, 1)
            else:  # disjoint windows select distinct cells
                gi = np.zeros((b, m, n_in))
                gi[rows[:, None], np.arange(m)[None, :, None], arg[:, None, :]] = g.reshape(b, m, -1)
            g = np.ascontiguousarray(gi).reshape(b * m, n_in)
    return g


def _shape_widths(net: Network) -> list[int]:
    """Sizes of the network's intermediate tensors, residual branches included (no lowering: any layer with a
    Jacobian rule counts)."""
    out = [int(np.prod(shape)) for shape in net.shapes]
    for layer, shape in zip(net.layers, net.shapes):
        for branch in (layer.branches(shape) if hasattr(layer, "branches") else ()):
            if branch is not None:
                out += _shape_widths(branch)
    return out


def _apply(reduce, jac: np.ndarray) -> np.ndarray:
    return jac if reduce is None else reduce(jac)


def _chunk_size(per_point_bytes: int, chunk_bytes: int | None) -> int:
    return max(1, int((JACOBIAN_CHUNK_BYTES if chunk_bytes is None else chunk_bytes) // max(1, per_point_bytes)))


def _reverse_jacobians(net: Network, chunk_bytes: int | None = None):
    """A function of a batch ``X`` giving the float Jacobians ``(B, n_out, n_in)`` by reverse mode (matrix-free
    layer operators, one backward pass of the ``n_out`` output basis vectors: cheaper than ``Network.jacobian``'s
    forward mode when ``n_out < n_in``), at kinks the one-sided derivative and for max-pool ties the first maximal
    cell (as ``Network.jacobian``).  Residual blocks add the pullbacks of their branches.  The batch is processed in
    chunks of about ``chunk_bytes`` (default :data:`JACOBIAN_CHUNK_BYTES`) of float64 working arrays, so the peak
    memory does not grow with ``B`` beyond the result.  For the search only; raises ``UnsupportedLayerError`` at
    construction when a layer has no reverse rule (the graph's lowering names it)."""
    graph = lower(net, "implicit", "lower_bound")
    m = net.n_out
    widths = _shape_widths(net)
    # per point: the backward rows (m x widest, a few live copies) and the tape (one vector per layer)
    chunk = _chunk_size(8 * (4 * m * max(widths) + 2 * sum(widths)), chunk_bytes)

    def batch(x: np.ndarray) -> np.ndarray:
        b = x.shape[0]
        _, tape = _tape(graph.steps, x.reshape(b, -1))
        g = np.broadcast_to(np.eye(m), (b, m, m)).reshape(b * m, m)
        return _backward(tape, g, b, m).reshape(b, m, -1)

    def jacobians(x: np.ndarray, reduce: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return np.concatenate([_apply(reduce, batch(x[s:s + chunk])) for s in range(0, x.shape[0], chunk)])

    return jacobians


def _forward_jacobians(net: Network, chunk_bytes: int | None = None):
    """``Network.jacobian`` (forward mode: ``n_in`` tangents through every layer) over a batch, in chunks of about
    ``chunk_bytes`` (default :data:`JACOBIAN_CHUNK_BYTES`) of float64 tangents.  For the search only."""
    chunk = _chunk_size(8 * 3 * net.n_in * max(_shape_widths(net)), chunk_bytes)

    def jacobians(x: np.ndarray, reduce: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return np.concatenate([_apply(reduce, net.jacobian(x[s:s + chunk]).reshape(-1, net.n_out, net.n_in))
                               for s in range(0, x.shape[0], chunk)])

    return jacobians


def _search_jacobians(net: Network, chunk_bytes: int | None = None):
    """The float Jacobian function of the search: reverse mode when ``n_out < n_in`` (falling back to forward mode
    when a layer has no reverse rule), forward mode otherwise; both chunked.  The returned function takes a batch and
    an optional ``reduce`` applied to each chunk's ``(b, n_out, n_in)`` Jacobians before concatenation (the search
    passes the norm, so the full batch of Jacobians never exists at once)."""
    if net.n_out < net.n_in:
        try:
            return _reverse_jacobians(net, chunk_bytes)
        except UnsupportedLayerError:
            pass
    return _forward_jacobians(net, chunk_bytes)


# --------------------------------------------------------------------------- CNNs: certification


def _activation_with_error(layer: Activation, z: np.ndarray, ez: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``fl(sigma(z))`` and a bound of its distance to ``sigma(z_exact)`` for ``|z - z_exact| <= ez``:
    ``max(|alpha|, |beta|) ez`` (mean value theorem) plus the activation's declared evaluation error at ``z``
    (``forward_error``, ``proofs/activations.md`` §2), as in :func:`certified_walk`."""
    lo, hi = layer.slope_interval
    out = layer.forward(z)
    err = add_up(up(max(abs(lo), abs(hi)) * ez), np.asarray(layer.forward_error(z), dtype=np.float64))
    return out, rigorous._check_finite(err, f"lower_bound: {layer.describe()} forward error bound")


def _locally_constant(layer: Activation, z: np.ndarray, ez: np.ndarray) -> np.ndarray:
    """Neurons whose output is provably constant near the point: a ReLU (or LeakyReLU(0)) input provably < 0."""
    if layer.pieces is not None and layer.pieces[0] == 0:  # σ(z) = 0 for z < 0 (ReLU, LeakyReLU(0))
        return up(z + ez) < 0
    return np.zeros(z.shape, dtype=bool)


def _maxpool_with_error(win: np.ndarray, h: np.ndarray, err: np.ndarray, flat: np.ndarray):
    """Certified max pooling at a point: ``(out, out_err, out_flat, selected)``, or ``None`` when some window's
    maximiser is not provably fixed.  Candidates of a window are the cells whose upper end reaches the largest
    lower end; one candidate: it is the maximiser near the point; several: allowed only when all are locally
    constant (then so is the window's max).  ``|max fl - max exact| <= max err`` over the window."""
    valid = win >= 0
    safe = np.where(valid, win, 0)
    hv = np.where(valid, h[safe], -np.inf)
    low = np.where(valid, down(h[safe] - err[safe]), -np.inf)
    high = np.where(valid, up(h[safe] + err[safe]), -np.inf)
    floor = low.max(axis=1)
    cand = valid & (high >= floor[:, None])
    multi = cand.sum(axis=1) > 1
    if np.any(multi & np.any(cand & ~flat[safe], axis=1)):
        return None
    sel = safe[np.arange(win.shape[0]), hv.argmax(axis=1)]
    out_err = np.where(valid, err[safe], 0.0).max(axis=1)
    return h[sel], out_err, np.where(multi, True, flat[sel]), sel


def _sort_with_error(op, h: np.ndarray, err: np.ndarray, flat: np.ndarray):
    """Certified sorting layer at a point: ``(out, out_err, out_flat, selected)``, or ``None`` when the order inside
    some group is not provably fixed near the exact point.  Along the float ranks of a group, a cut between ranks
    ``k - 1`` and ``k`` is proven when every upper end ``h + err`` below it is smaller than every lower end ``h - err``
    above it (then every exact value below is smaller than every exact value above); the segments between proven
    cuts keep their ranks.  A segment of one entry has a fixed rank; a longer one is allowed only when all its entries
    are locally constant (then so are the outputs at its ranks).  Every output is within its segment's largest ``err``
    of its exact value (sorting is 1-Lipschitz in l∞).  ``proofs/groupsort.md`` (certification)."""
    sel = op.layer.selection(h[None])[0]
    hs, es, fs = h[sel], err[sel], flat[sel]
    low, high = down(hs - es), up(hs + es)
    out_err, out_flat = es.copy(), fs.copy()
    for positions in op.groups:
        pos = positions[::-1] if op.layer.descending else positions  # ascending float values along pos
        below = np.maximum.accumulate(high[pos])  # below[k]: max upper end of ranks <= k
        above = np.minimum.accumulate(low[pos][::-1])[::-1]  # above[k]: min lower end of ranks >= k
        cuts = [0] + [k for k in range(1, len(pos)) if below[k - 1] < above[k]] + [len(pos)]
        for a, b in zip(cuts[:-1], cuts[1:]):
            if b - a > 1:
                segment = pos[a:b]
                if not np.all(fs[segment]):
                    return None
                out_err[segment] = np.max(es[segment])
                out_flat[segment] = True
    return hs, out_err, out_flat, sel
