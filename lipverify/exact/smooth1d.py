"""Lipschitz constants of smooth networks with one input: ``sup_x ||f'(x)||_p``.

Proof: ``proofs/exact.md`` (section "One input: smooth activations").  Two techniques:

* **sympy**: for a scalar output and at most two hidden neurons, the critical points of ``f'`` are solved
  with ``solveset`` over the reals (or the domain); the supremum is the largest ``|f'|`` over them and the
  limits at the ends.  Accepted as ``kind="exact"`` only when an arb ball of it provably lies inside the rigorous
  enclosure below (:func:`certified_inside`).
* **arb branch and bound**: interval forward-mode differentiation (``f'`` and ``f''``) in python-flint
  ``arb`` ball arithmetic.  On a box ``X = m ± r`` the range of ``f'`` is enclosed by the naive extension
  intersected with the centred form ``f'(m) + f''(X)·[-r, r]``; the largest box bound is bisected until it is
  within ``tol`` of the best point value ``||f'(m)||`` (relative for constants below 1, :func:`branch_and_bound`).
  Over ``R`` the tails ``|x| >= R`` are enclosed by extended-real interval arithmetic (monotonicity pieces of each
  activation and of its derivative; the l2 norm of the tail vector through :func:`lipverify.rigorous.spectral_norm_upper`).
  Reported as ``kind="upper"`` with ``lower`` (the gap is ``value - lower``), never as exact.
"""

from __future__ import annotations

import heapq
import math
import time

import numpy as np
import sympy
from flint import arb, ctx, fmpq

from ..errors import NotApplicableError, NumericalError
from ..layers import Activation
from ..network import Network
from ..result import OUTWARD, Bound, float_down, float_up
from ..rigorous import arb_lower, arb_upper, ext_add, ext_mul_interval, ext_prod, fsum_up, spectral_norm_upper
from .common import Stage

# --------------------------------------------------------------------------- ball arithmetic helpers

_lo, _hi = arb_lower, arb_upper


def _ball(lo: float, hi: float) -> arb:
    return arb(lo).union(arb(hi))


class _Net:
    """The stages in arb (rational weights are enclosed exactly)."""

    def __init__(self, stage_list: list[Stage]) -> None:
        self.layers = []
        for st in stage_list:
            w = [[_arb(st.weight[i, j]) for j in range(st.weight.cols)] for i in range(st.weight.rows)]
            wq = [[st.weight[i, j] for j in range(st.weight.cols)] for i in range(st.weight.rows)]
            b = [_arb(st.bias[i]) for i in range(st.bias.rows)]
            act = st.act
            if act is not None and type(act).arb_forms is Activation.arb_forms and act.pieces is None:
                raise NotApplicableError(f"exact (smooth): layer {st.index} ({act.describe()}) declares no arb form "
                                         "(Activation.arb_forms); it is not supported")
            slopes = None if act is None else (float_down(act.slopes[0]), float_up(act.slopes[1]))
            self.layers.append((w, wq, b, act, slopes))

    def derivs(self, x: arb, second: bool = True) -> tuple[list[arb], list[arb] | None]:
        """``f'(X)`` and (if available) ``f''(X)`` componentwise on the ball ``X``."""
        v, d, dd = [x], [arb(1)], [arb(0)]
        for w, _, b, act, _ in self.layers:
            v = [sum((wr[k] * v[k] for k in range(len(v))), arb(0)) + bi for wr, bi in zip(w, b)]
            d = [sum((wr[k] * d[k] for k in range(len(d))), arb(0)) for wr in w]
            if dd is not None and second:
                dd = [sum((wr[k] * dd[k] for k in range(len(dd))), arb(0)) for wr in w]
            else:
                dd = None
            if act is None:
                break
            out_v, out_d, out_dd = [], [], []
            for i, z in enumerate(v):
                s0, s1, s2 = act.arb_forms(z)
                out_v.append(s0)
                out_d.append(s1 * d[i])
                if dd is not None and s2 is not None:
                    out_dd.append(s2 * d[i] * d[i] + s1 * dd[i])
                else:
                    dd = None
            v, d = out_v, out_d
            dd = out_dd if dd is not None else None
        return d, dd


def _arb(v: sympy.Expr) -> arb:
    v = sympy.sympify(v)
    if v.is_Rational:
        return arb(fmpq(int(v.p), int(v.q)))
    raise NotApplicableError(f"exact (smooth): weight {v} is not rational")


def _norm_ball(comps: list[arb], norm: str) -> arb:
    absc = [c.abs_upper().union(c.abs_lower()) for c in comps]  # a ball enclosing [min |c|, max |c|]
    if norm == "inf":
        out = absc[0]
        for c in absc[1:]:
            out = out.max(c)
        return out
    if norm == "1":
        return sum(absc, arb(0))
    return sum((c * c for c in absc), arb(0)).nonnegative_part().sqrt()


# --------------------------------------------------------------------------- extended-real tails


def _tail(net: _Net, r: float, sign: int, norm: str) -> float:
    """An upper bound of ``||f'(x)||`` over ``x >= r`` (sign +1) or ``x <= -r`` (sign -1)."""
    v = [(r, math.inf) if sign > 0 else (-math.inf, -r)]
    d = [(1.0, 1.0)]
    for w_arb, _, b, act, slopes in net.layers:
        # each weight as a float interval [lo, hi] containing it (exact for dyadic weights)
        wf = [[(_lo(x), _hi(x)) for x in row] for row in w_arb]
        bf = [(_lo(bb), _hi(bb)) for bb in b]
        nv, nd = [], []
        for row, bi in zip(wf, bf):
            acc_v, acc_d = bi, (0.0, 0.0)
            for k, (wl, wh) in enumerate(row):
                acc_v = ext_add(acc_v, ext_mul_interval(wl, wh, v[k]))
                acc_d = ext_add(acc_d, ext_mul_interval(wl, wh, d[k]))
            nv.append(acc_v)
            nd.append(acc_d)
        v, d = nv, nd
        if act is None:
            break
        if act.pieces is not None or act.limits is None:
            return math.inf
        out_v, out_d = [], []
        for zi, di in zip(v, d):
            sv, sd = act.extended_enclosure(zi, slopes)
            out_v.append(sv)
            out_d.append(ext_prod(sd, di))
        v, d = out_v, out_d
    mags = [max(abs(lo), abs(hi)) for lo, hi in d]
    if norm == "inf" or not all(math.isfinite(m) for m in mags):
        return max(mags)
    if norm == "1":
        return fsum_up(mags)
    # the Euclidean norm of the vector of magnitudes, scaled by a power of two first: squares of magnitudes near
    # 1e-170 would underflow to 0, those near 1e170 overflow (R10/R11 of proofs/rigorous_arithmetic.md)
    try:
        return spectral_norm_upper(np.array(mags))
    except NumericalError:  # the bound is above the float range
        return math.inf


# --------------------------------------------------------------------------- branch and bound


def _enclose(net: _Net, a: fmpq, b: fmpq, norm: str) -> tuple[float, float]:
    """``(upper, lower)``: an upper bound of ``||f'||`` on ``[a, b]`` and the value at the midpoint (lower)."""
    m = (a + b) / 2
    r = (b - a) / 2
    box = arb(m, 0) + arb(0, 1) * arb(r)
    d_box, dd_box = net.derivs(box)
    d_mid, _ = net.derivs(arb(m), second=False)
    comps = []
    for i, naive in enumerate(d_box):
        c = naive
        if dd_box is not None:
            centred = d_mid[i] + dd_box[i] * arb(0, 1) * arb(r)
            if centred.overlaps(naive):
                c = centred.intersection(naive)
        comps.append(c)
    return _hi(_norm_ball(comps, norm)), max(_lo(_norm_ball(d_mid, norm)), 0.0)


def branch_and_bound(net: _Net, norm: str, lo: fmpq, hi: fmpq, *, tol: float, deadline: float,
                     tails: bool, max_boxes: int = 200_000) -> tuple[float, float, dict]:
    """Rigorous enclosure ``[lower, upper]`` of ``sup ||f'||`` on ``[lo, hi]`` (plus the tails when ``tails``).

    Bisection stops when ``upper - lower <= tol * min(1, u0)`` (``u0`` the first finite upper end: absolute for
    constants of order 1 and above, relative below), the time limit or ``max_boxes``; the tolerance used is
    ``info["tol"]``."""
    best_lo = 0.0
    heap: list = []
    up0, l0 = _enclose(net, lo, hi, norm)
    best_lo = max(best_lo, l0)
    heapq.heappush(heap, (-up0, 0, lo, hi))
    counter = 1
    tail_up = 0.0
    r = float(max(abs(lo), abs(hi)))
    if tails:
        for s in (1, -1):
            pt = arb(fmpq(s) * fmpq(max(abs(lo), abs(hi))))
            best_lo = max(best_lo, _lo(_norm_ball(net.derivs(pt, second=False)[0], norm)))
        tail_up = max(_tail(net, r, 1, norm), _tail(net, r, -1, norm))
    boxes = 1
    scaled = False
    while heap:
        top = -heap[0][0]
        upper = max(top, tail_up)
        if not scaled and math.isfinite(upper):
            # relative below 1 (scaling the output weights by c scales the whole enclosure by c), absolute above
            tol, scaled = tol * min(1.0, upper), True
        if upper - best_lo <= tol or time.monotonic() > deadline or boxes >= max_boxes:
            break
        if tail_up >= top and tail_up - best_lo > tol:
            break  # only the tails are open; the enclosure there cannot be refined by bisection
        _, _, a, b = heapq.heappop(heap)
        m = (a + b) / 2
        for c, d in ((a, m), (m, b)):
            u, lval = _enclose(net, c, d, norm)
            boxes += 1
            best_lo = max(best_lo, lval)
            if u > best_lo:
                heapq.heappush(heap, (-u, counter, c, d))
                counter += 1
    top = -heap[0][0] if heap else best_lo
    upper = max(top, tail_up, best_lo)
    return upper, best_lo, {"boxes": boxes, "tol": tol, "tail_radius": r if tails else None,
                            "tail_bound": tail_up if tails else None}


# --------------------------------------------------------------------------- entry point


def _sympy_candidate(net: Network, stage_list: list[Stage], norm: str, dom) -> sympy.Expr | None:
    """The exact sup of ``|f'|`` from sympy's critical points, or None when sympy cannot give them."""
    hidden = sum(st.weight.rows for st in stage_list[:-1])
    if net.n_out != 1 or hidden > 2:
        return None
    x = sympy.Symbol("x", real=True)
    f = net.sympy([x])[0]
    g = sympy.diff(f, x)
    region = sympy.S.Reals if dom is None else sympy.Interval(_sym(dom[0][0]), _sym(dom[1][0]))
    try:
        crit = sympy.solveset(sympy.diff(g, x), x, region)
    except (NotImplementedError, ValueError, TypeError):
        return None
    if crit is sympy.S.EmptySet:
        points: list = []
    elif isinstance(crit, sympy.FiniteSet) and len(crit) <= 50:
        points = list(crit)
    else:
        return None
    cands = [sympy.Abs(g.subs(x, c)) for c in points]
    if dom is None:
        for end in (sympy.oo, -sympy.oo):
            lim = sympy.limit(g, x, end)
            if not lim.is_finite:
                return None
            cands.append(sympy.Abs(lim))
    else:
        cands += [sympy.Abs(g.subs(x, region.start)), sympy.Abs(g.subs(x, region.end))]
    cands = [sympy.nsimplify(c) if c.is_Float else sympy.simplify(c) for c in cands]
    if not all(c.is_real and c.is_finite for c in cands):
        return None
    return sympy.Max(*cands)


_ARB_FUNCS = {
    sympy.exp: arb.exp, sympy.log: arb.log, sympy.tanh: arb.tanh, sympy.sinh: arb.sinh, sympy.cosh: arb.cosh,
    sympy.atanh: arb.atanh, sympy.asinh: arb.asinh, sympy.acosh: arb.acosh, sympy.erf: arb.erf, sympy.sech: arb.sech,
    sympy.Abs: abs,
}


def _arb_value(expr: sympy.Expr) -> arb | None:
    """A ball (at the current ``flint.ctx.prec``) containing the real number ``expr``, or None when ``expr`` uses an
    operation outside the supported set (rationals, pi, E, +, *, powers, exp/log/hyperbolic/erf, Abs, Max, Min)."""
    if expr.is_Rational:
        return arb(fmpq(int(expr.p), int(expr.q)))
    if isinstance(expr, sympy.Float):
        q = sympy.Rational(expr)  # the binary value of the Float, exactly
        return arb(fmpq(int(q.p), int(q.q)))
    if expr is sympy.pi:
        return arb.pi()
    if expr is sympy.E:
        return arb.const_e()
    args = [_arb_value(a) for a in expr.args]
    if not args or any(a is None for a in args):
        return None
    if expr.is_Add:
        return sum(args[1:], args[0])
    if expr.is_Mul:
        out = args[0]
        for a in args[1:]:
            out = out * a
        return out
    if expr.is_Pow:
        base, ex = args
        if expr.exp.is_Integer:
            return base ** int(expr.exp)
        return base ** ex if base > 0 else None  # a non-integer power of a ball that may reach 0 or below: refuse
    if isinstance(expr, (sympy.Max, sympy.Min)):
        out = args[0]
        for a in args[1:]:
            out = out.max(a) if isinstance(expr, sympy.Max) else out.min(a)
        return out
    f = _ARB_FUNCS.get(expr.func)
    return None if f is None or len(args) != 1 else f(args[0])


def certified_inside(value: sympy.Expr, lower: float, upper: float) -> bool:
    """True only if the real number ``value`` (a sympy expression) provably lies in ``[lower, upper]`` (floats).

    ``value`` is enclosed in an arb ball at 128, 512 and 2048 bits (:func:`_arb_value`); the claim holds when a ball
    lies inside ``[lower, upper]`` (both ends exact floats, no tolerance: the enclosure of ``smooth_constant`` is already
    rounded outward).  False when no ball decides it or ``value`` uses an unsupported operation.

    >>> certified_inside(sympy.Rational(3, 10**12), 2.9e-12, 3.1e-12), certified_inside(sympy.Rational(3, 10**12), 0.0, 2.9e-12)
    (True, False)
    """
    if not (math.isfinite(lower) and math.isfinite(upper)) or lower > upper:
        return False
    lo, hi = arb(lower), arb(upper)
    old = ctx.prec
    try:
        for prec in (128, 512, 2048):
            ctx.prec = prec
            ball = _arb_value(sympy.sympify(value))
            if ball is None or not ball.is_finite():
                return False
            if lo <= ball and ball <= hi:
                return True
            if ball < lo or ball > hi:
                return False
    finally:
        ctx.prec = old
    return False


def _sym(f) -> sympy.Rational:
    return sympy.Rational(f.numerator, f.denominator)


def smooth_constant(net: Network, stage_list: list[Stage], norm: str, dom, started: float, *, tol: float = 1e-9,
                    time_limit: float = 10.0, use_sympy: bool = True) -> Bound:
    """``sup ||f'||_p`` for a one-input network with smooth activations (see the module docstring)."""
    anet = _Net(stage_list)
    if dom is None:
        # the bisection interval covers every first-layer transition region generously
        w, b = stage_list[0].weight, stage_list[0].bias
        scale = max([abs(b[i] / w[i, 0]) for i in range(w.rows) if w[i, 0] != 0] + [sympy.Integer(1)])
        r = 2 ** max(3, int(math.ceil(math.log2(float(scale) + 1))) + 4)
        lo, hi = fmpq(-r), fmpq(r)
    else:
        lo, hi = (fmpq(v.numerator, v.denominator) for v in (dom[0][0], dom[1][0]))
    deadline = time.monotonic() + time_limit
    upper, lower, info = branch_and_bound(anet, norm, lo, hi, tol=tol, deadline=deadline, tails=dom is None)
    if dom is None and upper - lower > info["tol"]:  # widen the bisected interval while only the tails stay open
        for _ in range(6):
            if info["tail_bound"] is None or info["tail_bound"] <= lower + info["tol"] or time.monotonic() > deadline:
                break
            lo, hi = lo * 8, hi * 8
            upper, lower, info = branch_and_bound(anet, norm, lo, hi, tol=tol, deadline=deadline, tails=True)
    info = {"technique": "arb branch and bound", **info}
    if use_sympy:
        cand = _sympy_candidate(net, stage_list, norm, dom)
        if cand is not None:
            if certified_inside(cand, lower, upper):
                return Bound.exact_constant(cand, norm, "exact", seconds=time.perf_counter() - started, exact_value=cand,
                                            lower=float_down(cand), solver="sympy solveset", status="optimal",
                                            assumptions=("critical points of f' by sympy, inside a rigorous arb enclosure",),
                                            details={"technique": "sympy critical points", "enclosure": (lower, upper)})
    if not (math.isfinite(upper) and math.isfinite(lower)):
        raise NotApplicableError("exact (smooth): no finite enclosure; the tails could not be bounded")
    status = "converged" if upper - lower <= info["tol"] else "gap above tolerance (time limit or open tails)"
    return Bound.upper_bound(upper, norm, "exact", rounding=OUTWARD, seconds=time.perf_counter() - started, lower=lower,
                             solver="python-flint arb", status=status,
                             assumptions=("rigorous interval enclosure; not an exact value",), details=info)


__all__ = ["smooth_constant", "branch_and_bound", "certified_inside"]
