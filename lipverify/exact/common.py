"""Shared pieces of the exact methods: the network as affine stages, domains, exact Jacobian norms.

A network ``f = A_L ∘ σ_{L-1} ∘ ⋯ ∘ σ_1 ∘ A_1`` is read into :class:`Stage` objects: stage ``k`` is the
affine map ``z = W h + b`` (exact sympy matrices; float weights enter as the exact dyadic rationals of the
floats) followed by the activation ``act`` (``None`` for the output stage).  Consecutive affine layers are
composed, consecutive activations get an identity affine map between them, Flatten is a reshape.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from .._lazy import LazyModule, is_instance
from ..errors import NotApplicableError
from ..layers import Activation, Dense, ReLU
from ..network import Network
from ..rigorous import float_down, float_up, up

if TYPE_CHECKING:
    import sympy
else:
    sympy = LazyModule("sympy")


@dataclass(frozen=True)
class Stage:
    """``h -> act(W h + b)``; ``act`` is ``None`` for the output stage.  ``index`` is the activation's layer index."""

    weight: sympy.Matrix
    bias: sympy.Matrix
    act: Activation | None
    index: int | None

    @property
    def n_out(self) -> int:
        return self.weight.rows


def stages(net: Network, method: str = "exact") -> list[Stage]:
    """The affine stages of the network's exact graph (see the module docstring)."""
    from ..ir.graph import lower

    n = net.n_in
    w: sympy.Matrix = sympy.eye(n)
    b: sympy.Matrix = sympy.zeros(n, 1)
    out: list[Stage] = []
    for s in lower(net, "exact", method).steps:
        if s.kind == "linear":
            lw, lb = s.source[0].sympy_matrices()
            w, b = lw * w, lw * b + lb
        elif s.kind == "act":
            for act, index in zip(s.source, s.layers):  # composed activations: one stage each
                out.append(Stage(w, b, act, index))
                w, b = sympy.eye(w.rows), sympy.zeros(w.rows, 1)
        else:
            raise NotApplicableError(f"{method}: layer {s.index} ({s.layer}): a residual block here is not rewritten "
                                     "into a chain (sequential_equivalent)")
    out.append(Stage(w, b, None, None))
    return out


def sequential_equivalent(net: Network, method: str = "exact") -> Network:
    """A network without residual blocks that computes exactly the same function (``proofs/exact.md``).

    A block ``y = P x + c + B(x)`` whose body ``B`` is ``A_k relu(⋯ relu(A_1 x + a_1) ⋯) + a_k`` (Dense layers and
    ReLUs; nested blocks first rewritten the same way) and whose shortcut is the identity or Dense layers becomes
    the chain ``[A_1; I; -I]`` → ReLU → ``diag(A_2, I_{2n})`` → ReLU → ⋯ → ``[A_k, P, -P]``: the carried parts
    ``relu(x)``, ``relu(-x)`` are nonnegative, so every later ReLU leaves them unchanged, and ``x = relu(x) - relu(-x)``.
    The rewrite adds the hyperplanes ``x_i = 0`` as kinks, which refine the activation regions but do not change the
    function, so every exact method gives the same constant.  Other blocks raise :class:`NotApplicableError`.
    A sorting layer (GroupSort/MaxMin/FullSort) becomes its sorting network of compare-exchanges, each round
    ``[D; I; -I]`` → ReLU → ``[B, I, -I]`` (:meth:`lipverify.sort.GroupSort.relu_chain`, ``proofs/groupsort.md``).
    """
    if not net.has_residual and not any(getattr(layer, "step_kind", None) == "sort" for layer in net.layers):
        return net
    from ..ir.graph import lower

    return Network(_chain_layers(lower(net, "exact", method).steps, net.n_in, method), input_shape=net.input_shape)


def _chain_layers(steps, n: int, method: str) -> list:
    """The layers of an exact graph, each residual block unrolled into the chain of :func:`sequential_equivalent`."""
    out: list = []
    for s in steps:
        if s.kind == "linear":
            out.append(s.source[0])
            n = s.source[0].n_out
        elif s.kind == "act":
            out += list(s.source)
        elif s.kind == "sort":  # compare-exchanges as Dense and ReLU layers (proofs/groupsort.md, exact rewrite)
            out += s.source[0].relu_chain(n)
        else:
            out += _unroll(s, n, f"{method}: layer {s.index} (Residual)", method)
    return out


def _affine_groups(steps, n: int, where: str) -> list:
    """The steps as exact affine maps ``(W, b)`` (consecutive linear steps composed; an identity map before a ReLU
    that follows no linear step) alternating with ``"relu"``; the list starts with a map.  Every activation must be a
    ReLU (declared ``pieces`` ``(0, 1)``: a subclass that changes the forward pass declares none)."""
    out: list = []
    width = n
    for s in steps:
        if s.kind == "linear":
            w, b = s.source[0].sympy_matrices()
            if out and out[-1] != "relu":
                w0, b0 = out[-1]
                out[-1] = (w * w0, w * b0 + b)
            else:
                out.append((w, b))
            width = w.rows
            continue
        bad = [a for a in s.source if getattr(a, "pieces", None) != (0, 1)] if s.kind == "act" else [s]
        if bad:
            what = bad[0].describe() if s.kind == "act" else f"a nested {s.layer}"
            raise NotApplicableError(f"{where}: {what} in a residual block; exact constants of residual networks are "
                                     "computed for bodies of Dense and ReLU layers and Dense shortcuts")
        for _ in s.source:
            if not out or out[-1] == "relu":
                out.append((sympy.eye(width), sympy.zeros(width, 1)))
            out.append("relu")
    return out


def _unroll(step, n: int, where: str, method: str) -> list:
    body_graph, short_graph = step.op
    body_layers = _chain_layers(body_graph.steps, n, method)  # nested blocks first
    from ..ir.graph import lower

    body = lower(Network(body_layers, input_shape=(n,)), "exact", method).steps
    groups = _affine_groups(body, n, where + " body")
    if short_graph.steps:
        short = _affine_groups(short_graph.steps, n, where + " shortcut")
        if len(short) != 1:
            raise NotApplicableError(f"{where}: the shortcut has an activation; exact constants of residual networks "
                                     "need an affine shortcut (identity or Dense layers)")
        p, c = short[0]
    else:
        p, c = sympy.eye(n), sympy.zeros(n, 1)
    if len(groups) == 1:  # an affine block
        w, b = groups[0]
        return [Dense(w + p, b + c)]
    if groups[-1] == "relu":
        width = groups[-2][0].rows
        groups.append((sympy.eye(width), sympy.zeros(width, 1)))
    eye, carry = sympy.eye(n), sympy.zeros(2 * n, 1)
    out: list = []
    for k, g in enumerate(groups[:-1]):
        if g == "relu":
            out.append(ReLU())
        elif k == 0:  # [A_1; I; -I] x + [a_1; 0; 0]
            out.append(Dense(sympy.Matrix.vstack(g[0], eye, -eye), sympy.Matrix.vstack(g[1], carry)))
        else:  # diag(A_k, I_2n): the carried parts pass unchanged
            out.append(Dense(sympy.diag(g[0], sympy.eye(2 * n)), sympy.Matrix.vstack(g[1], carry)))
    w, b = groups[-1]
    out.append(Dense(sympy.Matrix.hstack(w, p, -p), b + c))
    return out


def pwl_slopes(act: Activation) -> tuple[sympy.Expr, sympy.Expr]:
    """``(left, right)``: the slopes of a two-piece linear activation on ``z < 0`` and ``z > 0`` (its declared
    ``pieces``)."""
    if act.pieces is None:
        raise TypeError(f"{act.describe()} is not a piecewise-linear activation")
    return act.pieces


def is_pwl(act: Activation) -> bool:
    return act.pieces is not None


def parse_domain(domain: Any, n: int) -> tuple[list[Fraction], list[Fraction]] | None:
    """``(lower, upper)`` as exact Fractions (floats enter exactly); checks shapes and ``lower < upper``."""
    if domain is None:
        return None
    try:
        lower, upper = domain
    except (TypeError, ValueError):
        raise ValueError("domain must be a pair (lower, upper) of numbers or arrays of the input size") from None
    lo = [_fraction(v, "domain lower") for v in np.broadcast_to(np.asarray(lower, dtype=object), (n,))]
    hi = [_fraction(v, "domain upper") for v in np.broadcast_to(np.asarray(upper, dtype=object), (n,))]
    for k, (a, c) in enumerate(zip(lo, hi)):
        if not a < c:
            raise ValueError(
                f"domain: coordinate {k} has lower {a} >= upper {c}; give a box with lower < upper in every coordinate"
            )
    return lo, hi


def _fraction(v: Any, where: str) -> Fraction:
    if isinstance(v, (np.ndarray,)) and v.shape == ():
        v = v.item()
    if isinstance(v, bool):
        raise TypeError(f"{where}: {v!r} is not a number")
    if is_instance(v, "sympy", "Basic"):
        v = sympy.nsimplify(v) if isinstance(v, sympy.Float) else v
        if not v.is_Rational:
            raise TypeError(f"{where}: {v} is not a rational number")
        return Fraction(int(v.p), int(v.q))
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            raise ValueError(f"{where}: {v} is not finite")
        return Fraction(float(v))
    if isinstance(v, (int, np.integer, Fraction)):
        return Fraction(v)
    raise TypeError(f"{where}: {v!r} is not a number")


def column_norm(col: list, norm: str) -> sympy.Expr:
    """The induced norm of an ``m x 1`` Jacobian (1-D input): l1 sum, l∞ max, l2 Euclidean."""
    col = [sympy.sympify(c) for c in col]
    if norm == "1":
        return sympy.Add(*[sympy.Abs(c) for c in col])
    if norm == "inf":
        return sympy.Max(*[sympy.Abs(c) for c in col])
    return sympy.sqrt(sympy.Add(*[c**2 for c in col]))


def rational_matrix_norm(rows: list[list[Fraction]], norm: str) -> sympy.Expr:
    """The induced ``norm`` of an exact rational matrix (list of rows) as a sympy number.

    l1: max column sum, l∞: max row sum (exact Rationals); l2: ``sqrt`` of the largest eigenvalue of the
    smaller Gram matrix, an exact algebraic number (``CRootOf``) — never ``sympy.Matrix.norm``.
    """
    m = len(rows)
    n = len(rows[0]) if m else 0
    if m == 0 or n == 0:
        return sympy.Integer(0)
    if norm == "inf":
        return _q(max(sum((abs(v) for v in r), Fraction(0)) for r in rows))
    if norm == "1":
        return _q(max(sum((abs(rows[i][j]) for i in range(m)), Fraction(0)) for j in range(n)))
    if m == 1 or n == 1:
        return sympy.sqrt(_q(sum((v * v for r in rows for v in r), Fraction(0))))
    a = sympy.Matrix([[_q(v) for v in r] for r in rows])
    gram = a * a.T if m <= n else a.T * a
    lam = sympy.Symbol("lam")
    poly = sympy.Poly(gram.charpoly(lam).as_expr(), lam)
    roots = poly.real_roots()  # sorted increasingly, exact (Rationals or CRootOf)
    return sympy.sqrt(roots[-1])


def _q(f: Fraction) -> sympy.Rational:
    return sympy.Rational(f.numerator, f.denominator)



#: precisions (bits) tried in turn by :func:`compare_exact` and :func:`float_enclosure`
_PRECISIONS = (64, 256, 1024, 4096, 16384)


def _arb(x: sympy.Expr):
    """A rigorous ``arb`` ball around a real algebraic sympy number (Rational, +, *, integer or 1/2 powers,
    ``Abs``, ``CRootOf``) at the current ``flint.ctx.prec``."""
    from flint import arb, ctx, fmpq

    if x.is_Rational:
        return arb(fmpq(int(x.p), int(x.q)))
    if isinstance(x, sympy.Add):
        out = arb(0)
        for t in x.args:
            out += _arb(t)
        return out
    if isinstance(x, sympy.Mul):
        out = arb(1)
        for t in x.args:
            out *= _arb(t)
        return out
    if isinstance(x, sympy.Abs):
        return abs(_arb(x.args[0]))
    if isinstance(x, sympy.Pow) and x.exp.is_Integer:
        return _arb(x.base) ** int(x.exp)
    if isinstance(x, sympy.Pow) and x.exp == sympy.Rational(1, 2):
        return _arb(x.base).sqrt()
    if isinstance(x, sympy.Pow) and x.exp == sympy.Rational(-1, 2):
        return 1 / _arb(x.base).sqrt()
    if isinstance(x, sympy.CRootOf) and x.is_real:
        d = sympy.Rational(1, 2 ** (ctx.prec + 8))
        r = x.eval_rational(dx=d, dy=d)  # within d of the root (exact interval refinement)
        return arb(fmpq(int(r.p), int(r.q))) + arb(0, 2.0 ** -(ctx.prec + 7))
    raise TypeError(f"exact: cannot enclose {type(x).__name__} {x} rigorously")


def compare_exact(a: sympy.Expr, b: sympy.Expr) -> int:
    """The sign of ``a - b`` for real algebraic numbers (``-1, 0, 1``), decided rigorously.

    sympy's ``a > b`` decides most cases but raises TypeError when ``a`` and ``b`` agree to ~30 digits (e.g.
    norms of Jacobians with entries 1 and 1e-269): then the difference is enclosed in ``arb`` balls of growing
    precision; a difference no ball separates from 0 is confirmed to be exactly 0 by sympy (``equals``), else
    SolverError.  Proof: ``proofs/exact.md`` ("Comparing and rounding exact norms").
    """
    from flint import ctx

    if a == b:  # the same expression
        return 0
    try:  # sympy decides almost every case by itself
        return int(bool(a > b)) - int(bool(a < b))
    except TypeError:
        pass
    saved = ctx.prec
    try:
        for prec in _PRECISIONS:
            ctx.prec = prec
            d = _arb(a) - _arb(b)
            if d > 0:
                return 1
            if d < 0:
                return -1
    finally:
        ctx.prec = saved
    if sympy.simplify(a - b) == 0 or (a - b).equals(0):
        return 0
    from ..errors import SolverError

    raise SolverError(f"exact: could not compare {a} and {b} (equal to {_PRECISIONS[-1]} bits)")


def float_enclosure(x: sympy.Expr) -> tuple[float, float]:
    """``(lo, hi)`` floats with ``lo <= x <= hi`` (adjacent or equal floats) for a real algebraic number.

    ``result.float_down``/``float_up`` decide comparisons through sympy, which fails when ``x`` is within
    ~1e-30 relative of a float (e.g. ``sqrt(1 + 1e-538)``); here the ends of rigorous ``arb`` balls are
    rounded outward in exact rationals.
    """
    from flint import ctx

    if x.is_Rational:
        q = Fraction(int(x.p), int(x.q))
        return float_down(q), float_up(q)
    saved = ctx.prec
    try:
        for prec in _PRECISIONS:
            ctx.prec = prec
            ball = _arb(x)
            lo, hi = float_down(_arb_end(ball.lower())), float_up(_arb_end(ball.upper()))
            if hi <= up(lo):
                return lo, hi
    finally:
        ctx.prec = saved
    return lo, hi


def _arb_end(v) -> Fraction:
    m, e = v.man_exp()
    return Fraction(int(m)) * (Fraction(2) ** int(e))
