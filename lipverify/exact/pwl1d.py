"""Exact Lipschitz constants of piecewise-linear networks with one input, by sorting breakpoints.

Proof: ``proofs/exact.md`` (section "One input: breakpoints").  The network ``f: R -> R^m`` is propagated
layer by layer as a continuous piecewise-affine function on a partition of the line (or of the domain
interval): on every piece each coordinate is ``s x + c`` with exact ``s, c``.  An activation layer adds the
zeros of its pre-activations that fall strictly inside a piece as new breakpoints; on the refined pieces
the sign of each pre-activation is constant and read off at an interior point.  The constant is the
largest norm of the slope vector over the pieces.

Numbers are ``Fraction`` for rational weights (float weights are their exact dyadic rationals) and sympy
expressions otherwise.  With symbolic weights every sign that sympy cannot decide is *branched on*
(``e > 0``, ``e = 0``, ``e < 0``) and the result is a ``Piecewise`` over the consistent branches.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import sympy

from ..errors import NotApplicableError, NumericalError
from .common import Stage, column_norm, pwl_slopes

#: at most this many symbolic case branches
MAX_BRANCHES = 4096


class Signs:
    """Decides the sign of numbers; for symbolic expressions it follows (and records) a branch script."""

    def __init__(self, script: list[int] | None = None) -> None:
        self.script = list(script or [])
        self.made: list[int] = []
        self.conditions: list[sympy.Basic] = []
        self._cache: dict[sympy.Expr, int] = {}

    def sign(self, e: Any) -> int:
        if isinstance(e, Fraction):
            return (e > 0) - (e < 0)
        e = sympy.expand(sympy.sympify(e))
        known = _known_sign(e)
        if known is not None:
            return known
        if not e.free_symbols:
            return _numeric_sign(e)
        num, den = sympy.together(e).as_numer_denom()
        if den != 1:  # sign(p / q) = sign(p) sign(q): branch on the factors, not on the quotient
            return self.sign(num) * self.sign(den)
        coeff, factors = sympy.factor_terms(num).as_coeff_mul()
        if len(factors) > 1 or coeff != 1:
            out = self.sign(coeff) if coeff != 1 else 1
            for f in factors:
                base, expo = f.as_base_exp()
                if expo.is_Integer and expo > 0:
                    sb = self.sign(base)
                    out *= sb if expo % 2 else sb * sb
                else:
                    out *= self._branch(f)
            return out
        return self._branch(e)

    def _branch(self, e: sympy.Expr) -> int:
        e = sympy.expand(e)
        known = _known_sign(e)
        if known is not None:
            return known
        if e in self._cache:
            return self._cache[e]
        if -e in self._cache:
            return -self._cache[-e]
        pos = len(self.made)
        choice = self.script[pos] if pos < len(self.script) else 1
        self.made.append(choice)
        self.conditions.append({1: sympy.StrictGreaterThan(e, 0), 0: sympy.Eq(e, 0), -1: sympy.StrictLessThan(e, 0)}[choice])
        self._cache[e] = choice
        return choice


def _known_sign(e: sympy.Expr) -> int | None:
    """The sign sympy can decide from assumptions alone, or ``None``."""
    if e.is_zero:
        return 0
    if e.is_positive:
        return 1
    if e.is_negative:
        return -1
    return None


def _numeric_sign(e: sympy.Expr) -> int:
    """Sign of a constant sympy expression (algebraic weights): exact when sympy decides, else by evalf with
    an error-tracked precision of 60 digits; raises when the value cannot be separated from 0."""
    if e.equals(0):
        return 0
    v = sympy.N(e, 60)
    if v.is_Number and v != 0 and abs(v) > sympy.Float(10) ** -50:
        return 1 if v > 0 else -1
    raise NumericalError(f"exact: cannot decide the sign of {e}; give rational weights")


def _convert(stage_list: list[Stage]) -> tuple[list, bool]:
    """Stage weights as nested lists of Fractions (all rational) or sympy expressions; and the symbolic flag."""
    rational = all(v.is_Rational for st in stage_list for m in (st.weight, st.bias) for v in m)
    if rational:
        conv = lambda v: Fraction(int(v.p), int(v.q))  # noqa: E731
    else:
        conv = sympy.sympify
    out = []
    for st in stage_list:
        w = [[conv(st.weight[i, j]) for j in range(st.weight.cols)] for i in range(st.weight.rows)]
        b = [conv(st.bias[i]) for i in range(st.bias.rows)]
        if st.act is None:
            slopes = None
        else:
            left, right = pwl_slopes(st.act)
            slopes = (conv(left), conv(right))
        out.append((w, b, slopes))
    return out, not rational


def _run(conv: list, domain: tuple | None, signs: Signs) -> tuple[list, list]:
    """One pass: the breakpoints and the slope vectors of the final pieces."""
    zero = Fraction(0) if isinstance(conv[0][0][0][0], Fraction) else sympy.Integer(0)
    one = zero + 1
    lo, hi = (None, None) if domain is None else (domain[0][0] + zero, domain[1][0] + zero)
    bps: list = []
    pieces: list[tuple[list, list]] = [([one], [zero])]
    for w, b, slopes in conv:
        pieces = [([sum((wr[k] * s[k] for k in range(len(s))), zero) for wr in w],
                   [sum((wr[k] * c[k] for k in range(len(c))), zero) + bi for wr, bi in zip(w, b)]) for s, c in pieces]
        if slopes is None:
            break
        left, right = slopes
        if signs.sign(left - right) == 0:
            pieces = [([left * v for v in s], [left * v for v in c]) for s, c in pieces]
            continue
        new_bps: list = []
        new_pieces: list = []
        for i, (s, c) in enumerate(pieces):
            a = bps[i - 1] if i > 0 else lo
            z = bps[i] if i < len(bps) else hi
            roots: list = []
            for sj, cj in zip(s, c):
                if signs.sign(sj) == 0:
                    continue
                r = -cj / sj
                if (a is None or signs.sign(r - a) > 0) and (z is None or signs.sign(z - r) > 0):
                    _insert(roots, r, signs)
            if i > 0:
                new_bps.append(bps[i - 1])
            new_bps.extend(roots)
            new_pieces.extend([(s, c)] * (len(roots) + 1))
        bps = new_bps
        pieces = []
        for i, (s, c) in enumerate(new_pieces):
            a = bps[i - 1] if i > 0 else lo
            z = bps[i] if i < len(bps) else hi
            if a is None and z is None:
                p = zero
            elif a is None:
                p = z - 1
            elif z is None:
                p = a + 1
            else:
                p = (a + z) / 2
            ds = [right if signs.sign(sj * p + cj) >= 0 else left for sj, cj in zip(s, c)]
            pieces.append(([d * v for d, v in zip(ds, s)], [d * v for d, v in zip(ds, c)]))
    return bps, [s for s, _ in pieces]


def _insert(sorted_list: list, r: Any, signs: Signs) -> None:
    """Insert ``r`` into an increasing list unless an equal element is there."""
    for k, t in enumerate(sorted_list):
        sg = signs.sign(r - t)
        if sg == 0:
            return
        if sg < 0:
            sorted_list.insert(k, r)
            return
    sorted_list.append(r)


def _fraction_norm(col: list[Fraction], norm: str) -> Fraction:
    """``||col||_1``, ``||col||_inf`` or ``||col||_2^2`` of a rational vector."""
    if norm == "1":
        return sum((abs(v) for v in col), Fraction(0))
    if norm == "inf":
        return max(abs(v) for v in col)
    return sum((v * v for v in col), Fraction(0))


def breakpoints_constant(stage_list: list[Stage], norm: str, domain: tuple | None = None) -> tuple[sympy.Expr, dict]:
    """The exact constant of a piecewise-linear network with one input, and details.

    ``domain`` is ``([lower], [upper])`` as Fractions or ``None`` for the whole line.  Returns a sympy
    number, or for symbolic weights a ``Piecewise`` over sign cases of the symbols.
    """
    conv, symbolic = _convert(stage_list)
    if not symbolic:
        signs = Signs()
        bps, cols = _run(conv, domain, signs)
        if cols and isinstance(cols[0][0], Fraction):
            vals = [_fraction_norm(col, norm) for col in cols]
            best = max(vals)
            k = vals.index(best)
            value = sympy.Rational(best.numerator, best.denominator)
            if norm == "2":
                value = sympy.sqrt(value)
        else:
            norms = [column_norm(col, norm) for col in cols]
            value = sympy.Max(*norms)
            k = norms.index(max(norms, key=lambda v: sympy.N(v, 30)))
        a = bps[k - 1] if k > 0 else (None if domain is None else domain[0][0])
        z = bps[k] if k < len(bps) else (None if domain is None else domain[1][0])
        return value, {"technique": "breakpoints", "pieces": len(cols), "argmax_piece": (_show(a), _show(z))}
    cases: list[tuple[sympy.Expr, sympy.Basic]] = []
    script: list[int] = []
    while True:
        signs = Signs(script)
        _, cols = _run(conv, domain, signs)
        value = sympy.Max(*[column_norm(col, norm) for col in cols])
        cases.append((value, sympy.And(*signs.conditions)))
        if len(cases) > MAX_BRANCHES:
            raise NotApplicableError(
                f"exact: more than {MAX_BRANCHES} sign cases of the symbolic weights; substitute some symbols "
                "(net.subs) or declare their signs (sympy.Symbol('a', positive=True))"
            )
        made = signs.made
        while made and made[-1] == -1:
            made.pop()
        if not made:
            break
        made[-1] = {1: 0, 0: -1}[made[-1]]
        script = made
    return _piecewise(cases), {"technique": "breakpoints (symbolic cases)", "cases": len(cases)}


def _piecewise(cases: list[tuple[sympy.Expr, sympy.Basic]]) -> sympy.Expr:
    """Merge cases with the same value into ``Piecewise((value, Or(conditions)), ...)``.

    With a single symbol, each case's condition is solved to a set of reals: contradictory cases drop out
    and the conditions become intervals.
    """
    syms = set().union(*[c.free_symbols for _, c in cases])
    if len(syms) == 1:
        sym = next(iter(syms))
        sets: dict[sympy.Expr, sympy.Set] = {}
        for value, cond in cases:
            region = sympy.S.Reals
            for part in sympy.And.make_args(cond):
                if part is sympy.true:
                    continue
                region = sympy.Intersection(region, sympy.solveset(part, sym, sympy.S.Reals))
            if region is sympy.S.EmptySet:
                continue
            sets[value] = sympy.Union(sets.get(value, sympy.S.EmptySet), region)
        if len(sets) == 1:
            return next(iter(sets))
        items = list(sets.items())
        args = [(v, region.as_relational(sym)) for v, region in items[:-1]]
        args.append((items[-1][0], True))
        return sympy.Piecewise(*args)
    merged: dict[sympy.Expr, list] = {}
    for value, cond in cases:
        merged.setdefault(value, []).append(cond)
    if len(merged) == 1:
        return next(iter(merged))
    items = list(merged.items())
    args = [(v, sympy.Or(*conds)) for v, conds in items[:-1]]
    args.append((items[-1][0], True))  # the cases are exhaustive
    return sympy.Piecewise(*args)


def _show(v: Any) -> str | None:
    if v is None:
        return None
    return str(v)
