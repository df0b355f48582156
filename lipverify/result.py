"""Result objects: every number leaves lipverify labelled with its norm, method and kind.

**The kind rule.** ``kind`` always speaks of the Lipschitz constant of the *function* (on the domain, when one is
given), never of a method's own quantity: ``upper`` ≥ the constant, ``lower`` ≤ it, ``exact`` = it, ``estimate``
no guarantee either way.  That a method computed its *own* quantity exactly (K2's branch and bound closed, an SDP
solved to optimality) is the separate field ``quantity_exact``.  ``Bound.lower``, when set, is a certified lower
bound of the constant, nothing else.  Values are never NaN or ±inf: :class:`Bound` refuses them on every path.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ._lazy import LazyModule, is_instance
from .errors import InternalConsistencyError, NumericalError
from .rigorous import float_down, float_up  # noqa: F401  (re-exported: the Bound helpers use them)

if TYPE_CHECKING:
    import sympy
else:
    sympy = LazyModule("sympy")

Kind = Literal["upper", "exact", "lower", "estimate"]
KINDS: tuple[str, ...] = ("upper", "exact", "lower", "estimate")

#: how a value was rounded (the ``rounding`` field); the per-kind constructors record one of these
OUTWARD = "outward (rigorous float)"
EXACT_ROUNDED_UP = "exact rational, float rounded up"
EXACT_ROUNDED_DOWN = "exact rational, float rounded down"
EXACT_SYMBOLIC = "exact (sympy), float rounded outward"
NO_ROUNDING_GUARANTEE = "none (estimate)"
UNRECORDED = "not recorded (built with Bound(...))"
#: ``details["quantity"]`` of rows that bound the Lipschitz constant (the default; a certified radius says otherwise)
LIPSCHITZ = "lipschitz constant"


def _finite(x: Any) -> bool:
    """Whether ``x`` is a finite real number (or a sympy formula in free symbols with no infinity/NaN in it)."""
    if is_instance(x, "sympy", "Basic"):
        if any(x.has(s) for s in (sympy.oo, -sympy.oo, sympy.zoo, sympy.nan)):
            return False
        return x.free_symbols != set() or x.is_finite is not False
    if isinstance(x, (bool, np.bool_)):
        return True
    if isinstance(x, numbers.Integral):
        return True
    try:
        return math.isfinite(float(x))
    except OverflowError:  # a Fraction or Decimal beyond the float range is still a finite number
        return True
    except (TypeError, ValueError):
        return True  # not a number at all: not this check's business


def _require_finite(method: str, norm: str, name: str, x: Any) -> None:
    if x is not None and not _finite(x):
        raise NumericalError(
            f"{method}: the l{norm} {name} is {x!s} (NaN or infinite); no number is reported. The computation "
            "overflowed: rescale the network's weights or give them as exact rationals"
        )


@dataclass(frozen=True)
class Bound:
    """A labelled value: an upper bound, a lower bound, the exact value or an estimate of the Lipschitz constant.

    * ``kind="upper"``: ``value`` ≥ the Lipschitz constant in exact real arithmetic (rounded outward);
    * ``kind="exact"``: ``value`` equals the constant (a sympy number or expression);
    * ``kind="lower"``: ``value`` ≤ the constant;
    * ``kind="estimate"``: a heuristic number with no guarantee.

    ``kind`` always speaks of the constant of the function (on the domain if one was given).  Fields:
    ``exact_value`` the sympy value when computed in exact arithmetic; ``lower`` a *certified lower bound of the
    constant* (anytime methods report both ends), never a method's own intermediate quantity;
    ``quantity_exact`` whether the method computed its *own* quantity exactly (e.g. K2 closed: exact value of the
    bias-free bound, which is still only an upper bound of the constant); ``rounding`` how ``value`` was rounded.
    NaN and ±inf are refused (:class:`~lipverify.errors.NumericalError`).  Build results with the per-kind
    constructors :meth:`upper_bound`, :meth:`lower_bound`, :meth:`exact_constant`, :meth:`estimate`.

    >>> Bound.upper_bound(3.0, "inf", "k4", rounding=OUTWARD).kind
    'upper'
    >>> Bound.upper_bound(float("inf"), "inf", "k4", rounding=OUTWARD)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    lipverify.errors.NumericalError: k4: the linf value is inf (NaN or infinite); no number is reported. ...
    """

    value: Any
    norm: str
    method: str
    kind: Kind
    seconds: float = 0.0
    exact_value: sympy.Expr | None = None
    lower: float | None = None
    assumptions: tuple[str, ...] = ()
    solver: str | None = None
    status: str | None = None
    details: dict = field(default_factory=dict)
    quantity_exact: bool = False
    rounding: str = UNRECORDED

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        _require_finite(self.method, self.norm, "value", self.value)
        _require_finite(self.method, self.norm, "certified lower end", self.lower)
        _require_finite(self.method, self.norm, "exact value", self.exact_value)
        if self.lower is not None and self.kind in ("upper", "exact"):
            top = self.float_value()
            if top is not None and float(self.lower) > top:
                raise InternalConsistencyError(
                    f"{self.method} l{self.norm}: certified lower end {self.lower!r} above the {self.kind} value "
                    f"{top!r}; one of them is wrong. This is a bug: please report it with the network")

    # ---------------------------------------------------------------- one constructor per kind

    @classmethod
    def upper_bound(cls, value: Any, norm: str, method: str, *, rounding: str, seconds: float = 0.0,
                    **fields) -> Bound:
        """An upper bound of the Lipschitz constant; ``rounding`` says how ``value`` was made to hold despite float
        rounding (:data:`OUTWARD`, :data:`EXACT_ROUNDED_UP`, ...).  Raises ``NumericalError`` for NaN/±inf."""
        return cls(value, norm, method, "upper", seconds, rounding=rounding, **fields)

    @classmethod
    def lower_bound(cls, value: Any, norm: str, method: str, *, rounding: str, seconds: float = 0.0,
                    **fields) -> Bound:
        """A certified lower bound of the Lipschitz constant (rounded down).  Raises ``NumericalError`` for NaN/±inf."""
        return cls(value, norm, method, "lower", seconds, rounding=rounding, **fields)

    @classmethod
    def exact_constant(cls, value: Any, norm: str, method: str, *, rounding: str = EXACT_SYMBOLIC,
                       seconds: float = 0.0, **fields) -> Bound:
        """The exact Lipschitz constant (a sympy number or formula; ``exact_value`` defaults to ``value``)."""
        if is_instance(value, "sympy", "Basic"):
            fields.setdefault("exact_value", value)
        return cls(value, norm, method, "exact", seconds, rounding=rounding, **fields)

    @classmethod
    def estimate(cls, value: Any, norm: str, method: str, *, seconds: float = 0.0, **fields) -> Bound:
        """A heuristic number with no guarantee either way (``rounding`` is :data:`NO_ROUNDING_GUARANTEE`)."""
        fields.setdefault("rounding", NO_ROUNDING_GUARANTEE)
        return cls(value, norm, method, "estimate", seconds, **fields)

    # ---------------------------------------------------------------- views

    def __float__(self) -> float:
        return float(self.value)

    @property
    def error(self) -> None:
        return None

    @property
    def gap(self) -> float | None:
        """``value - lower`` for anytime methods that report a certified lower end of the constant."""
        if self.lower is None:
            return None
        return float(self.value) - self.lower

    def float_value(self) -> float | None:
        """``value`` as a float (rounded outward for upper/lower kinds), or ``None`` for a symbolic formula."""
        if is_instance(self.value, "sympy", "Basic"):
            if self.value.free_symbols:
                return None
            return float_down(self.value) if self.kind == "lower" else float_up(self.value)
        return float(self.value)

    def to_dict(self) -> dict:
        """The JSON row of DESIGN §4; exact sympy values also appear as text under ``"exact"``.

        ``"quantity_exact"`` is true when the method computed its own quantity exactly (not the constant:
        ``"kind"`` says what the value is for the constant); ``"lower"`` is a certified lower bound of the
        constant or null; ``"rounding"`` says how the value was rounded."""
        row = {"method": self.method, "norm": self.norm, "value": self.float_value(), "kind": self.kind,
               "seconds": self.seconds, "error": None, "quantity_exact": bool(self.quantity_exact),
               "lower": None if self.lower is None else float(self.lower), "rounding": self.rounding}
        if is_instance(self.value, "sympy", "Basic"):
            row["exact"] = str(self.value)
        return row

    def __str__(self) -> str:
        shown = self.value if is_instance(self.value, "sympy", "Basic") else f"{float(self.value):.6g}"
        own = ", own quantity exact" if self.quantity_exact else ""
        return f"{self.method} (l{self.norm}, {self.kind}{own}): {shown}"


@dataclass(frozen=True)
class Skipped:
    """A method that does not apply (or failed) for this norm, with the reason."""

    method: str
    norm: str
    error: str
    seconds: float = 0.0
    value: None = None
    kind: None = None

    def to_dict(self) -> dict:
        return {"method": self.method, "norm": self.norm, "value": None, "kind": None,
                "seconds": self.seconds, "error": self.error, "quantity_exact": False, "lower": None,
                "rounding": None}

    def __str__(self) -> str:
        return f"{self.method} (l{self.norm}): not computed: {self.error}"


# --------------------------------------------------------------------------- internal consistency


def _local(row: Bound) -> bool:
    return isinstance(row.details, dict) and bool(row.details.get("domain"))


def _name(row: Bound, end: str = "") -> str:
    conv = row.details.get("conv") if isinstance(row.details, dict) else None
    return f"{row.method}{f' (conv={conv})' if conv else ''} l{row.norm} {row.kind}{end}"


def _tops(row: Bound) -> list[tuple[str, Any, float | None]]:
    """``(label, exact value or None, float rounded up)`` of the upper ends a row asserts."""
    if row.kind not in ("upper", "exact"):
        return []
    top = row.float_value()
    if top is None and row.exact_value is None:
        return []
    return [(_name(row), row.exact_value, top)]


def _bottoms(row: Bound) -> list[tuple[str, Any, float | None]]:
    """``(label, exact value or None, float rounded down)`` of the certified lower ends a row asserts."""
    out = []
    if row.kind in ("lower", "exact"):
        if is_instance(row.value, "sympy", "Basic"):
            low = None if row.value.free_symbols else float_down(row.value)
        else:
            low = float(row.value)
        out.append((_name(row), row.exact_value, low))
    if row.lower is not None:
        out.append((_name(row, " (its certified lower end)"), None, float(row.lower)))
    return out


def _below(top: tuple, bottom: tuple) -> bool:
    """Whether ``top`` is strictly below ``bottom``: exactly when both carry exact values, else as floats."""
    if top[1] is not None and bottom[1] is not None:
        diff = sympy.simplify(sympy.sympify(top[1]) - sympy.sympify(bottom[1]))
        if diff.free_symbols:
            return False
        if diff.is_negative is not None:
            return bool(diff.is_negative)
    if top[2] is None or bottom[2] is None:
        return False
    return top[2] < bottom[2]


def check_consistency(rows: Iterable) -> None:
    """Raise :class:`~lipverify.errors.InternalConsistencyError` when an ``upper``/``exact`` value is strictly
    below a ``lower``/``exact`` value (or a certified ``lower`` end) of the same norm.

    Rows without a number (:class:`Skipped`, formulas in free symbols) are ignored.  A local upper bound (computed
    on a box, ``details["domain"]``) is only compared with local lower bounds; a local lower bound is compared with
    every upper bound (the local constant is at most the global one).  Floats are compared as reported (upper
    values are rounded up, lower ones down), so rounding alone never raises.

    >>> check_consistency([Bound(2.0, "inf", "k4", "upper"), Bound(3.0, "inf", "lower_bound", "lower")])
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    lipverify.errors.InternalConsistencyError: k4 linf upper = 2 is below lower_bound linf lower = 3: ...
    """
    # rows about another quantity (a certified robustness radius, details["quantity"]) are not Lipschitz values
    bounds = [r for r in rows if isinstance(r, Bound) and r.details.get("quantity", LIPSCHITZ) == LIPSCHITZ]
    for u in bounds:
        for lo in bounds:
            if lo.norm != u.norm or (_local(u) and not _local(lo)):
                continue
            for top in _tops(u):
                for bottom in _bottoms(lo):
                    if top[0] == bottom[0]:
                        continue
                    if _below(top, bottom):
                        shown_top = top[1] if top[1] is not None else f"{top[2]:.17g}"
                        shown_bottom = bottom[1] if bottom[1] is not None else f"{bottom[2]:.17g}"
                        raise InternalConsistencyError(
                            f"{top[0]} = {shown_top} is below {bottom[0]} = {shown_bottom}: one of these two "
                            "results is wrong, so neither is reported. This is a bug in lipverify (or an activation "
                            "that declares wrong slopes): please report it with the network")
