"""An independent oracle for the Lipschitz constant of small fully connected networks (tests only).

It shares no code with lipverify's methods: it reads only the weights (``Dense.weight``, ``Dense.bias``), the
activation types and LeakyReLU's ``negative_slope``, and does its own forward passes, Jacobians, norms and LPs
with numpy/scipy.

* :func:`pwl_regions` — piecewise-linear nets (ReLU, LeakyReLU, Identity): depth-first enumeration of the
  activation patterns, neuron by neuron; each partial pattern is kept when the LP
  ``max t : s_i (g_i·x + c_i) >= t ||g_i||, t <= 1`` (scipy ``linprog``, HiGHS) has optimum ``t > -LP_TOL``.
  A complete pattern is *verified* when its LP optimum exceeds ``VERIFY_T`` and a float forward pass at the LP
  point reproduces every sign with a clear margin: that point is interior to the region, so ``J_pattern`` is
  the gradient there and ``||J_pattern||_p <= Lip_p``.  The maximum over verified patterns is a lower value,
  the maximum over every LP-feasible pattern an upper value (every region with interior is LP-feasible); for
  these nets the two agree up to rounding and give the constant.
* :func:`sampled` — any net of Dense/ReLU/LeakyReLU/Identity/Tanh/Sigmoid/GELU/SiLU layers: forward-mode float
  Jacobians at random points at several scales; ``max ||J(x)||_p`` is a lower value (points where a
  piecewise-linear neuron is too close to its kink to trust the float sign are skipped).

Every value comes with ``err``, an allowance for the float error of the Jacobian products: ``2 (d+2) eps`` times
the norm of the product of the magnitudes ``|W_L| |D| ⋯ |W_1|`` (``d`` the largest width, a standard bound for
``d``-term dot products, doubled for slack).  Comparisons use ``value ± err`` and a relative slack.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import scipy.optimize
import scipy.special

import lipverify as lv

EPS = np.finfo(np.float64).eps
#: an LP optimum above -LP_TOL counts as feasible (the upper value is over-inclusive on purpose)
LP_TOL = 1e-9
#: hyperplanes farther than this from the origin are beyond what the LP solver represents (HiGHS: 1e20 is infinity)
HIGHS_RANGE = 1e12
#: an LP optimum (inscribed radius, rows normalised) above this gives a point taken as interior, then re-checked
VERIFY_T = 1e-7
#: a sign is trusted only when |z| exceeds this multiple of the magnitude sum |w|·|h| + |b|
SIGN_MARGIN = 1e-10
PWL = ("ReLU", "LeakyReLU", "Identity")
#: activations handled by the sampled oracle besides the piecewise-linear ones with a kink at 0
SMOOTH = ("Tanh", "Sigmoid", "GELU", "SiLU", "ELU", "Softplus", "Hardtanh", "ReLU6", "Hardswish", "Mish", "LogSigmoid",
          "Hardsigmoid")
#: the parameters the oracle reads (as floats) from the activations that have some
PARAMS = {"ELU": ("alpha",), "Softplus": ("beta",), "Hardtanh": ("min_val", "max_val"), "ReLU6": ("min_val", "max_val"),
          "Hardsigmoid": ("alpha", "beta")}
#: at most this many hidden neurons for the region enumeration
MAX_PWL_NEURONS = 15


@dataclass
class Stage:
    w: np.ndarray
    b: np.ndarray
    act: str | None        # activation name after the affine map (None for the output)
    slope: float | tuple = 0.0  # LeakyReLU's negative slope (0 for ReLU, 1 for Identity); PARAMS of the others


def stages(net: lv.Network) -> list[Stage]:
    """The affine maps and activations of a Dense/activation network, from the weights only."""
    n = net.n_in
    w, b = np.eye(n), np.zeros(n)
    out: list[Stage] = []
    for i, layer in enumerate(net.layers):
        if isinstance(layer, lv.Dense):
            lw, lb = np.asarray(layer.weight, dtype=np.float64), np.asarray(layer.bias, dtype=np.float64)
            w, b = lw @ w, lw @ b + lb
        elif isinstance(layer, lv.Flatten):
            continue
        elif isinstance(layer, lv.Activation):
            name = type(layer).__name__
            if name not in PWL + SMOOTH:
                raise TypeError(f"oracle: layer {i} ({name}) is not handled")
            slope = {"ReLU": 0.0, "Identity": 1.0}.get(name, 0.0)
            if name == "LeakyReLU":
                slope = float(layer.negative_slope)
            if name in PARAMS:
                slope = tuple(float(getattr(layer, a)) for a in PARAMS[name])
            out.append(Stage(w, b, name, slope))
            w, b = np.eye(w.shape[0]), np.zeros(w.shape[0])
        else:
            raise TypeError(f"oracle: layer {i} ({type(layer).__name__}) is not handled")
    out.append(Stage(w, b, None))
    return out


def is_pwl(net: lv.Network) -> bool:
    return all(s.act in PWL for s in stages(net)[:-1])


def hidden_neurons(net: lv.Network) -> int:
    return sum(s.w.shape[0] for s in stages(net)[:-1])


def induced_norm(j: np.ndarray, p: str) -> float:
    """``||J||_p`` written out: max column sum (l1), largest singular value (l2), max row sum (l∞)."""
    if j.size == 0:
        return 0.0
    if p == "1":
        return float(np.max(np.sum(np.abs(j), axis=0)))
    if p == "inf":
        return float(np.max(np.sum(np.abs(j), axis=1)))
    return float(np.linalg.svd(j, compute_uv=False)[0])


def _err(absprod: np.ndarray, p: str, width: int) -> float:
    return 2 * (width + 2) * EPS * induced_norm(absprod, p) + 1e-300


@dataclass
class OracleValue:
    lower: float           # the largest Jacobian norm at a verified differentiability point
    upper: float | None    # PWL only: the largest norm over every LP-feasible pattern
    err: float             # float error allowance of these norms
    regions: int = 0       # verified regions (PWL) or used sample points
    feasible: int = 0      # LP-feasible complete patterns (PWL)

    def below(self, value: float, rel: float = 1e-9) -> bool:
        """``value`` (an upper bound of the constant) is not below the oracle's lower value."""
        return value >= (self.lower - self.err) * (1 - rel) - 1e-150

    def above(self, value: float, rel: float = 1e-9) -> bool:
        """``value`` (a lower bound of the constant) does not exceed the oracle's upper value."""
        return self.upper is not None and value <= (self.upper + self.err) * (1 + rel) + 1e-150


# --------------------------------------------------------------------------------------------- PWL regions
class Budget(Exception):
    """The enumeration needed more than ``max_lps`` LPs, or an LP gave no reliable answer."""


def _margin_lp(rows: list[tuple[np.ndarray, float]], n: int) -> tuple[float, np.ndarray | None]:
    """``max t : a_i·x + c_i >= t ||a_i||, t <= 1`` over free ``x``; returns ``(t*, x*)`` (``-inf`` if it fails)."""
    live = [(a, c) for a, c in rows if np.any(a != 0)]
    for a, c in rows:
        if not np.any(a != 0) and c <= 0:
            return -np.inf, None
    if not live:
        return 1.0, np.zeros(n)
    a = np.array([r[0] for r in live])
    c = np.array([r[1] for r in live])
    scale = np.max(np.abs(a), axis=1)  # normalise in two steps: a row of subnormals has a float 2-norm of 0
    with np.errstate(over="ignore", divide="ignore"):
        a, c = a / scale[:, None], c / scale
    nrm = np.linalg.norm(a, axis=1)
    a, c = a / nrm[:, None], c / nrm
    if np.any(c == -np.inf):
        return -np.inf, None  # a hyperplane beyond the float range on the wrong side
    keep = np.isfinite(c)     # c = +inf: the row holds everywhere within the float range
    if np.any(np.abs(c[keep]) > HIGHS_RANGE):  # HiGHS reads |b| >= 1e20 as infinite: the LP would be a different one
        raise Budget(f"a region boundary at distance {np.max(np.abs(c[keep])):.3g} from the origin")
    if not np.any(keep):
        return 1.0, np.zeros(n)
    a_ub = np.hstack([-a[keep], np.ones((int(keep.sum()), 1))])
    b_ub = c[keep]
    cost = np.zeros(n + 1)
    cost[-1] = -1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            res = scipy.optimize.linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=[(None, None)] * n + [(None, 1.0)],
                                         method="highs")
        except Warning as w:
            raise Budget(f"LP warning {w}") from None
    if res.status == 2:
        return -np.inf, None  # infeasible
    if res.status != 0 or res.x is None or not np.all(np.isfinite(res.x)):
        raise Budget(f"LP status {res.status}")  # no reliable answer: the caller falls back to sampling
    return float(res.x[-1]), res.x[:n]


def _pattern_agrees(st: list[Stage], x: np.ndarray, expected: list[bool | None]) -> bool:
    """A float forward pass at ``x`` gives every expected sign (``None``: any) with a clear margin."""
    h, i = x, 0
    for s in st[:-1]:
        z = s.w @ h + s.b
        scale = np.abs(s.w) @ np.abs(h) + np.abs(s.b)
        for r in range(z.size):
            e = expected[i + r]
            if e is not None and (abs(z[r]) <= SIGN_MARGIN * scale[r] + 1e-300 or (z[r] > 0) != e):
                return False
        i += z.size
        h = z if s.act == "Identity" else np.where(z > 0, z, s.slope * z)
    return True


def pwl_regions(net: lv.Network, max_lps: int = 600) -> dict[str, OracleValue]:
    """Enumerate the activation regions of a piecewise-linear net over ``R^n`` (see the module docstring).

    A child polyhedron that contains the parent's witness point strictly (float check with a margin) is
    feasible without an LP; the other child gets the margin LP.  Raises :class:`Budget` beyond ``max_lps``.
    """
    st = stages(net)
    n = net.n_in
    width = max([n] + [s.w.shape[0] for s in st])
    leaves = []   # (J, |W_L||D|...|W_1|, verified)
    lps = 0

    def lp(rows):
        nonlocal lps
        lps += 1
        if lps > max_lps:
            raise Budget
        t, x = _margin_lp(rows, n)
        return (x if t > VERIFY_T else None), t

    # a node: layer k, its input h = P x + q on the node's polyhedron, |W_k-1||D|...|W_1| (for the error
    # allowance), the slopes chosen in layer k so far, the rows a·x + c > 0, the expected signs so far
    # (None: no matter) and a witness point (None when the polyhedron may be thin)
    stack = [(0, np.eye(n), np.zeros(n), np.eye(n), [], [], [], np.zeros(n))]
    while stack:
        k, pm, q, pabs, ds, rows, signs, x = stack.pop()
        s = st[k]
        g_all, c_all = s.w @ pm, s.w @ q + s.b
        if s.act is None:  # a complete pattern: J = W_L P
            verified = x is not None and _pattern_agrees(st, x, signs)
            if not verified and rows:
                x, _ = lp(rows)
                verified = x is not None and _pattern_agrees(st, x, signs)
            leaves.append((g_all, np.abs(s.w) @ pabs, verified))
            continue
        j = len(ds)
        if j == s.w.shape[0]:  # layer complete: apply the slopes
            d = np.array(ds)
            stack.append((k + 1, d[:, None] * g_all, d * c_all, np.abs(d)[:, None] * (np.abs(s.w) @ pabs), [], rows,
                          signs, x))
            continue
        g, c = g_all[j], c_all[j]
        left = 1.0 if s.act == "Identity" else s.slope
        if left == 1.0:  # no kink: nothing to split
            stack.append((k, pm, q, pabs, ds + [1.0], rows, signs + [None], x))
            continue
        if not np.any(g != 0):  # constant pre-activation: its sign is fixed (for c = 0 either slope: the row is 0)
            stack.append((k, pm, q, pabs, ds + [1.0 if c >= 0 else left], rows, signs + [None], x))
            continue
        for side in (1, -1):
            child_rows = rows + [(side * g, side * c)]
            child_x = None
            if x is not None:
                v = side * float(g @ x + c)
                if v > SIGN_MARGIN * float(np.abs(g) @ np.abs(x) + abs(c)) + 1e-300:
                    child_x = x  # the parent's witness lies strictly inside this child
            if child_x is None:
                child_x, t = lp(child_rows)
                if not t > -LP_TOL:
                    continue
            stack.append((k, pm, q, pabs, ds + [1.0 if side > 0 else left], child_rows, signs + [side > 0], child_x))
    out = {}
    for p in ("1", "2", "inf"):
        o = OracleValue(lower=0.0, upper=0.0, err=0.0, feasible=len(leaves))
        for jac, absprod, verified in leaves:
            val = induced_norm(jac, p)
            o.upper = max(o.upper, val)
            o.err = max(o.err, _err(absprod, p, width))
            if verified:
                o.lower = max(o.lower, val)
                o.regions += 1
        out[p] = o
    return out


# --------------------------------------------------------------------------------------------- sampling
def _act(name: str, slope: float, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Value and derivative of an activation, written out (GELU = z Φ(z), SiLU = z σ(z))."""
    if name == "ReLU":
        return np.maximum(z, 0.0), (z > 0).astype(np.float64)
    if name == "LeakyReLU":
        return np.where(z > 0, z, slope * z), np.where(z > 0, 1.0, slope)
    if name == "Identity":
        return z, np.ones_like(z)
    if name == "Tanh":
        t = np.tanh(z)
        return t, 1.0 - t * t
    if name == "Sigmoid":
        s = scipy.special.expit(z)
        return s, s * (1.0 - s)
    if name == "GELU":
        cdf = scipy.special.ndtr(z)
        pdf = np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)
        return z * cdf, cdf + z * pdf
    if name == "SiLU":
        s = scipy.special.expit(z)
        return z * s, s + z * s * (1.0 - s)
    if name == "ELU":
        (a,) = slope
        e = np.exp(np.minimum(z, 0.0))
        return np.where(z > 0, z, a * (e - 1.0)), np.where(z > 0, 1.0, a * e)
    if name in ("Softplus", "LogSigmoid", "Mish"):
        beta = slope[0] if name == "Softplus" else 1.0
        sp = np.logaddexp(0.0, beta * z) / beta  # log(1 + e^{beta z}) / beta
        if name == "Softplus":
            return sp, scipy.special.expit(beta * z)
        if name == "LogSigmoid":  # -softplus(-z)
            return -np.logaddexp(0.0, -z), scipy.special.expit(-z)
        t = np.tanh(sp)  # Mish = z tanh(softplus z)
        return z * t, t + z * (1.0 - t * t) * scipy.special.expit(z)
    if name in ("Hardtanh", "ReLU6"):
        lo, hi = slope
        return np.clip(z, lo, hi), ((z > lo) & (z < hi)).astype(np.float64)
    if name == "Hardswish":
        r = np.clip(z + 3.0, 0.0, 6.0)
        return z * r / 6.0, np.where(z < -3, 0.0, np.where(z > 3, 1.0, (2.0 * z + 3.0) / 6.0))
    if name == "Hardsigmoid":
        a, b = slope
        u = a * z + b
        return np.clip(u, 0.0, 1.0), np.where((u > 0) & (u < 1), a, 0.0)
    raise TypeError(name)


def sampled(net: lv.Network, p: str, points: int = 128, seed: int = 0) -> OracleValue:
    """Max of ``||J(x)||_p`` over random points (normal, scales 0.1, 1, 10, 100) and the origin (batched)."""
    st = stages(net)
    n = net.n_in
    width = max([n] + [s.w.shape[0] for s in st])
    rng = np.random.default_rng(seed)
    scales = np.repeat([0.1, 1.0, 10.0, 100.0], points // 4 + 1)[:points]
    xs = np.vstack([np.zeros((1, n)), rng.standard_normal((points, n)) * scales[:, None]])
    m = xs.shape[0]
    h, jac, absprod = xs, np.broadcast_to(np.eye(n), (m, n, n)), np.broadcast_to(np.eye(n), (m, n, n))
    ok = np.ones(m, dtype=bool)
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        for s in st:
            z = h @ s.w.T + s.b
            jac, absprod = np.einsum("oi,mij->moj", s.w, jac), np.einsum("oi,mij->moj", np.abs(s.w), absprod)
            if s.act is None:
                break
            if s.act in ("ReLU", "LeakyReLU"):  # too close to a kink to trust the float sign: drop the point
                scale = np.abs(h) @ np.abs(s.w).T + np.abs(s.b)
                ok &= ~np.any(np.any(s.w != 0, axis=1)[None, :] & (np.abs(z) <= SIGN_MARGIN * scale + 1e-300), axis=1)
            h, d = _act(s.act, s.slope, z)
            jac, absprod = d[:, :, None] * jac, np.abs(d)[:, :, None] * absprod
        ok &= np.all(np.isfinite(jac), axis=(1, 2)) & np.all(np.isfinite(absprod), axis=(1, 2))
    out = OracleValue(lower=0.0, upper=None, err=0.0)
    for i in np.flatnonzero(ok):
        out.regions += 1
        out.lower = max(out.lower, induced_norm(jac[i], p))
        out.err = max(out.err, _err(absprod[i], p, width))
    return out


def oracle(net: lv.Network) -> dict[str, OracleValue]:
    """Per norm: region enumeration for small piecewise-linear nets, dense sampled Jacobians otherwise."""
    if is_pwl(net) and hidden_neurons(net) <= MAX_PWL_NEURONS:
        try:
            return pwl_regions(net)
        except Budget:
            pass
    return {p: sampled(net, p) for p in ("1", "2", "inf")}


# --------------------------------------------------------------------------------------------- residual nets


def _walk_residual(layers, h: np.ndarray, jac: np.ndarray, absprod: np.ndarray, ok: np.ndarray):
    """Forward mode through Dense / activation / Residual layers (batched), from the weights only: a block's Jacobian
    is the sum of its branches' (identity shortcut: the incoming one)."""
    for layer in layers:
        name = type(layer).__name__
        if isinstance(layer, lv.Dense):
            w, b = np.asarray(layer.weight, dtype=np.float64), np.asarray(layer.bias, dtype=np.float64)
            h, jac, absprod = h @ w.T + b, np.einsum("oi,mij->moj", w, jac), np.einsum("oi,mij->moj", np.abs(w), absprod)
        elif name == "Residual":
            hb, jb, ab, ok = _walk_residual(layer.body, h, jac, absprod, ok)
            if layer.shortcut:
                hs, js, as_, ok = _walk_residual(layer.shortcut, h, jac, absprod, ok)
            else:
                hs, js, as_ = h, jac, absprod
            h, jac, absprod = hb + hs, jb + js, ab + as_
        elif name in PWL + SMOOTH:
            slope = float(layer.negative_slope) if name == "LeakyReLU" else {"Identity": 1.0}.get(name, 0.0)
            if name in PARAMS:
                slope = tuple(float(getattr(layer, a)) for a in PARAMS[name])
            if name in ("ReLU", "LeakyReLU"):  # too close to a kink to trust the float sign: drop the point
                ok &= ~np.any(np.abs(h) <= 1e-8 * (1.0 + np.abs(h).max(axis=1, keepdims=True)), axis=1)
            h, d = _act(name, slope, h)
            jac, absprod = d[:, :, None] * jac, np.abs(d)[:, :, None] * absprod
        elif name != "Flatten":
            raise TypeError(f"oracle: {name} is not handled")
    return h, jac, absprod, ok


def sampled_residual(net: lv.Network, p: str, points: int = 128, seed: int = 0) -> OracleValue:
    """:func:`sampled` for fully connected networks with residual blocks."""
    n = net.n_in
    rng = np.random.default_rng(seed)
    scales = np.repeat([0.1, 1.0, 10.0, 100.0], points // 4 + 1)[:points]
    xs = np.vstack([np.zeros((1, n)), rng.standard_normal((points, n)) * scales[:, None]])
    m = xs.shape[0]
    eye = np.broadcast_to(np.eye(n), (m, n, n))
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        _, jac, absprod, ok = _walk_residual(net.layers, xs, eye, eye, np.ones(m, dtype=bool))
        ok &= np.all(np.isfinite(jac), axis=(1, 2)) & np.all(np.isfinite(absprod), axis=(1, 2))
    width = max([n] + [layer.n_out for layer in _dense_layers(net.layers)])
    out = OracleValue(lower=0.0, upper=None, err=0.0)
    for i in np.flatnonzero(ok):
        out.regions += 1
        out.lower = max(out.lower, induced_norm(jac[i], p))
        out.err = max(out.err, 4 * _err(absprod[i], p, width))
    return out


def _dense_layers(layers):
    for layer in layers:
        if isinstance(layer, lv.Dense):
            yield layer
        yield from _dense_layers(getattr(layer, "layers", ()))


# --------------------------------------------------------------------------------------------- sorting layers


def sort_groups(n: int, g: int | None, layout: str) -> list[list[int]]:
    g = n if g is None else g
    if layout == "contiguous":
        return [list(range(j * g, (j + 1) * g)) for j in range(n // g)]
    return [list(range(j, n, n // g)) for j in range(n // g)]


def sort_vector(v, g=2, layout="contiguous", descending=False):
    """The layer on one vector (floats or Fractions), by ``sorted``."""
    out = list(v)
    for grp in sort_groups(len(v), g, layout):
        vals = sorted((v[k] for k in grp), reverse=descending)
        for k, val in zip(grp, vals):
            out[k] = val
    return out


def sort_permutation(v, g=2, layout="contiguous", descending=False) -> np.ndarray:
    """The permutation matrix that sorts ``v`` (distinct entries within groups)."""
    n = len(v)
    p = np.zeros((n, n))
    for grp in sort_groups(n, g, layout):
        order = sorted(grp, key=lambda k: v[k], reverse=descending)
        for k, src in zip(grp, order):
            p[k, src] = 1.0
    return p


def pwl1d_sort_constant(net: lv.Network, p: str) -> Fraction:
    """The Lipschitz constant (squared for l2) of a one-input network of Dense and sorting layers, exactly: every
    coordinate is a piecewise-linear function of x, kept as its values at sorted knots and its slopes on the two rays;
    a sorting layer adds the crossing points of every pair of a group as knots (between knots the order is fixed)."""
    knots: list[Fraction] = [Fraction(0)]
    vals = [[Fraction(0)]]  # vals[k][i]: coordinate i at knot k (one coordinate: x itself)
    left, right = [Fraction(1)], [Fraction(1)]
    for layer in net.layers:
        if isinstance(layer, lv.Dense):
            w = [[Fraction(int(v.p), int(v.q)) for v in row] for row in _matrix_rows(layer.weight_exact)]
            b = [Fraction(int(v.p), int(v.q)) for v in layer.bias_exact] if layer.has_bias else [Fraction(0)] * len(w)
            vals = [[sum(wi[j] * v[j] for j in range(len(v))) + bi for wi, bi in zip(w, b)] for v in vals]
            left = [sum(wi[j] * left[j] for j in range(len(left))) for wi in w]
            right = [sum(wi[j] * right[j] for j in range(len(right))) for wi in w]
            continue
        spec = (layer.group_size, layer.layout, layer.descending)
        n = len(left)
        new = set(knots)
        for grp in sort_groups(n, layer.group_size, layer.layout):
            for a in grp:
                for c in grp:
                    if a < c:
                        new |= _crossings(knots, vals, left, right, a, c)
        new_knots = sorted(new)
        vals = [_at(knots, vals, left, right, t) for t in new_knots]
        knots = new_knots
        # rays: the order beyond the end knots, ties broken by the slopes
        first, last = vals[0], vals[-1]
        lo_order = {k: v for k, v in zip(range(n), sort_vector(list(zip(first, [-s for s in left], range(n))), *spec))}
        hi_order = {k: v for k, v in zip(range(n), sort_vector(list(zip(last, right, range(n))), *spec))}
        left = [left[lo_order[k][2]] for k in range(n)]
        right = [right[hi_order[k][2]] for k in range(n)]
        vals = [sort_vector(v, *spec) for v in vals]
    slopes = [left, right] + [[(b - a) / (t1 - t0) for a, b in zip(v0, v1)]
                              for t0, t1, v0, v1 in zip(knots, knots[1:], vals, vals[1:])]
    if p == "2":
        return max(sum(s * s for s in col) for col in slopes)
    if p == "1":
        return max(sum(abs(s) for s in col) for col in slopes)
    return max(max(abs(s) for s in col) for col in slopes)


def _matrix_rows(m):
    return [[m[i, j] for j in range(m.cols)] for i in range(m.rows)]


def _at(knots, vals, left, right, t):
    if t <= knots[0]:
        return [v + s * (t - knots[0]) for v, s in zip(vals[0], left)]
    if t >= knots[-1]:
        return [v + s * (t - knots[-1]) for v, s in zip(vals[-1], right)]
    k = max(i for i, u in enumerate(knots) if u <= t)
    if knots[k] == t:
        return list(vals[k])
    lam = (t - knots[k]) / (knots[k + 1] - knots[k])
    return [a + lam * (b - a) for a, b in zip(vals[k], vals[k + 1])]


def _crossings(knots, vals, left, right, a, c) -> set:
    out = set()
    d = [v[a] - v[c] for v in vals]
    for k in range(len(knots) - 1):
        if d[k] * d[k + 1] < 0:
            out.add(knots[k] + (knots[k + 1] - knots[k]) * d[k] / (d[k] - d[k + 1]))
    for end, slope, sign in ((0, left[a] - left[c], -1), (-1, right[a] - right[c], 1)):
        if slope != 0:
            t = knots[end] - d[end] / slope
            if (t - knots[end]) * sign > 0:
                out.add(t)
    return out


def sampled_sort(net: lv.Network, p: str, points: int = 128, seed: int = 0) -> OracleValue:
    """:func:`sampled` for networks of Dense and sorting layers (GroupSort/MaxMin/FullSort): the Jacobian at a point is
    the product of the weights and of the permutations that sort each group (:func:`sort_permutation`, by ``sorted``),
    kept only where every group's sorted values are apart by more than ``1e-9`` relative (differentiable there)."""
    rng = np.random.default_rng(seed)
    scales = np.repeat([0.1, 1.0, 10.0, 100.0], points // 4 + 1)[:points]
    xs = np.vstack([np.zeros((1, net.n_in)), rng.standard_normal((points, net.n_in)) * scales[:, None]])
    width = max([net.n_in] + [layer.n_out for layer in net.layers if isinstance(layer, lv.Dense)])
    out = OracleValue(lower=0.0, upper=None, err=0.0)
    for x in xs:
        h, jac, absprod, ok = x.copy(), np.eye(net.n_in), np.eye(net.n_in), True
        for layer in net.layers:
            if isinstance(layer, lv.Dense):
                h = layer.weight @ h + (layer.bias if layer.has_bias else 0.0)
                jac, absprod = layer.weight @ jac, np.abs(layer.weight) @ absprod
                continue
            spec = (layer.group_size, layer.layout, layer.descending)
            for grp in sort_groups(len(h), layer.group_size, layer.layout):
                vals = np.sort(h[grp])
                if np.any(np.diff(vals) <= 1e-9 * (1.0 + np.abs(vals[1:]))):
                    ok = False
            perm = sort_permutation(list(h), *spec)
            h, jac, absprod = perm @ h, perm @ jac, perm @ absprod
        if ok and np.all(np.isfinite(jac)):
            out.regions += 1
            out.lower = max(out.lower, induced_norm(jac, p))
            out.err = max(out.err, 4 * _err(absprod, p, width))
    return out
