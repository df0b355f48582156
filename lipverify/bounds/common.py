"""Helpers shared by the bound families: norm checks and result construction."""

from __future__ import annotations

import math
import time
from fractions import Fraction
from typing import TYPE_CHECKING

from .._lazy import LazyModule
from ..errors import NotApplicableError, NumericalError
from ..ir.chain import EXACT_WORK_LIMIT, LinearChain, exact_work
from ..norms import NormLike, NormName, parse_norm
from ..result import EXACT_ROUNDED_UP, OUTWARD, Bound, float_up

if TYPE_CHECKING:
    import sympy
else:
    sympy = LazyModule("sympy")


def overflow_checked(fn):
    """Run a bound with numpy's overflow/invalid warnings off: overflow and NaN are detected on the results
    (:class:`~lipverify.NumericalError` from the finiteness checks), never turned into numbers."""
    import functools

    import numpy as np

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with np.errstate(over="ignore", invalid="ignore"):
            return fn(*args, **kwargs)

    return wrapper


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


def graph_upper_bound(method: str, norm: str, value: float, started: float, graph, details: dict | None = None) -> Bound:
    """A float bound computed over the graph: convolutional networks name their representation in the
    assumptions and ``details["conv"]``; residual networks say so in ``details["residual"]``."""
    extra: dict = {}
    assumptions: tuple = ()
    info = dict(details or {})
    if graph.is_cnn:
        assumptions = ({"implicit": "convolutions as matrix-free operators (conv='implicit')",
                        "explicit": "layers as scipy.sparse matrices (conv='explicit')"}[graph.variant],)
        info = {"conv": graph.variant, "maxpool": graph.has_maxpool, **info}
    if graph.has_sum:
        info["residual"] = True
    if info:
        extra["details"] = info
    return float_upper_bound(method, norm, value, started, assumptions, **extra)


def choose_graph_arithmetic(method: str, arithmetic: str, exact: dict | None, widths: list[int], norm: str) -> bool:
    """:func:`choose_arithmetic` for a graph: ``exact`` holds the Fraction matrices (or ``None``)."""
    possible = exact is not None and norm != "2"
    if arithmetic == "float":
        return False
    if arithmetic == "exact":
        if not possible:
            raise NotApplicableError(
                f"{method}: exact arithmetic needs exact (integer/Fraction/sympy Rational) weights of dense layers "
                "(no pooling, no per-neuron slopes) and the l1 or l∞ norm")
        return True
    if arithmetic != "auto":
        raise ValueError(f"{method}: arithmetic must be 'auto', 'exact' or 'float', got {arithmetic!r}")
    work = sum(widths[i] * widths[i + 1] * max(widths[0], widths[-1]) for i in range(len(widths) - 1))
    return possible and work <= EXACT_WORK_LIMIT
