"""Helpers shared by the bound families: norm checks and result construction."""

from __future__ import annotations

import math
import time
from fractions import Fraction
from typing import TYPE_CHECKING

from .._lazy import LazyModule
from ..errors import NotApplicableError, NumericalError
from ..norms import NormLike, NormName, parse_norm
from ..result import EXACT_ROUNDED_UP, OUTWARD, Bound, float_up
from .chain import EXACT_WORK_LIMIT, LinearChain, exact_work

if TYPE_CHECKING:
    import sympy
else:
    sympy = LazyModule("sympy")


def require_norm(method: str, norm: NormLike, supported: tuple[str, ...], why: str = "") -> NormName:
    """Parse ``norm`` and raise :class:`NotApplicableError` when ``method`` does not support it."""
    name = parse_norm(norm)
    if name not in supported:
        listed = ", ".join(f"l{n}" for n in supported)
        raise NotApplicableError(
            f"{method} is defined for the {listed} norm(s) only, not l{name}" + (f": {why}" if why else "")
        )
    return name


def exact_upper_bound(method: str, norm: str, value: Fraction, started: float, assumptions=()) -> Bound:
    """A bound computed in exact rational arithmetic, reported with its float rounded upward."""
    exact = sympy.Rational(value.numerator, value.denominator)
    return Bound.upper_bound(float_up(exact), norm, method, rounding=EXACT_ROUNDED_UP,
                             seconds=time.perf_counter() - started, exact_value=exact,
                             assumptions=tuple(assumptions) + ("exact rational arithmetic",))


def float_upper_bound(method: str, norm: str, value: float, started: float, assumptions=(), **extra) -> Bound:
    """A bound computed in rigorously rounded floating point; an overflow raises instead of reporting inf."""
    if not math.isfinite(value):
        raise NumericalError(f"{method}: the l{norm} bound overflowed the float range; no bound is reported "
                             "(rescale the network or give exact rational weights)")
    return Bound.upper_bound(float(value), norm, method, rounding=OUTWARD, seconds=time.perf_counter() - started,
                             assumptions=tuple(assumptions) + ("floating point with rigorous rounding-error bounds",),
                             **extra)


def choose_arithmetic(method: str, arithmetic: str, chain: LinearChain, norm: str) -> bool:
    """Whether to compute in exact rational arithmetic.

    ``"auto"``: exactly when every weight was given exactly, the norm is l1/l∞ and the work is small;
    ``"exact"``: always (raises if impossible); ``"float"``: rigorous floating point.
    """
    possible = chain.exact is not None and norm != "2"
    if arithmetic == "float":
        return False
    if arithmetic == "exact":
        if not possible:
            raise NotApplicableError(
                f"{method}: exact arithmetic needs exact (integer/Fraction/sympy Rational) weights and the l1 or l∞ norm"
            )
        return True
    if arithmetic != "auto":
        raise ValueError(f"{method}: arithmetic must be 'auto', 'exact' or 'float', got {arithmetic!r}")
    return possible and exact_work(chain) * (chain.depth if method == "k1" else 1) <= EXACT_WORK_LIMIT
