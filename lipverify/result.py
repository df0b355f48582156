"""Result objects: every number leaves lipverify labelled with its norm, method and kind."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import sympy

Kind = Literal["upper", "exact", "lower", "estimate"]
KINDS: tuple[str, ...] = ("upper", "exact", "lower", "estimate")


@dataclass(frozen=True)
class Bound:
    """A labelled value of the Lipschitz constant (or of a bound on it).

    * ``kind="upper"``: ``value`` is at least the quantity in exact real arithmetic (rounded outward);
    * ``kind="exact"``: ``value`` equals it (a sympy number or expression), or, for a float value, is a
      certified upper bound whose certified lower end ``lower`` matches it up to rounding;
    * ``kind="lower"``: ``value`` is at most the true Lipschitz constant;
    * ``kind="estimate"``: a heuristic number with no guarantee.

    ``exact_value`` holds the sympy value when the method computed it in exact arithmetic.
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

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if isinstance(self.value, (float, int, np.floating)) and math.isnan(float(self.value)):
            raise ValueError(f"{self.method}: a NaN never becomes a number")

    def __float__(self) -> float:
        return float(self.value)

    @property
    def error(self) -> None:
        return None

    @property
    def gap(self) -> float | None:
        """``value - lower`` for anytime methods that report both ends."""
        if self.lower is None:
            return None
        return float(self.value) - self.lower

    def float_value(self) -> float | None:
        """``value`` as a float (rounded outward for upper/lower kinds), or ``None`` for a symbolic formula."""
        if isinstance(self.value, sympy.Basic):
            if self.value.free_symbols:
                return None
            return float_down(self.value) if self.kind == "lower" else float_up(self.value)
        return float(self.value)

    def to_dict(self) -> dict:
        """The JSON row of DESIGN §4; exact sympy values also appear as text under ``"exact"``."""
        row = {"method": self.method, "norm": self.norm, "value": self.float_value(), "kind": self.kind,
               "seconds": self.seconds, "error": None}
        if isinstance(self.value, sympy.Basic):
            row["exact"] = str(self.value)
        return row

    def __str__(self) -> str:
        shown = self.value if isinstance(self.value, sympy.Basic) else f"{float(self.value):.6g}"
        return f"{self.method} (l{self.norm}, {self.kind}): {shown}"


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
                "seconds": self.seconds, "error": self.error}

    def __str__(self) -> str:
        return f"{self.method} (l{self.norm}): not computed: {self.error}"


def float_up(x: sympy.Expr) -> float:
    """The smallest float ``>= x`` for a real sympy number ``x`` (a rigorous upward rounding)."""
    x = sympy.Rational(x) if isinstance(x, sympy.Float) else sympy.sympify(x)  # a Float's exact binary value
    f = float(sympy.N(x, 30))
    if not math.isfinite(f):
        return f
    while sympy.Rational(f) < x:
        f = float(np.nextafter(f, math.inf))
    while True:
        below = float(np.nextafter(f, -math.inf))
        if sympy.Rational(below) >= x:
            f = below
        else:
            return f


def float_down(x: sympy.Expr) -> float:
    """The largest float ``<= x`` for a real sympy number ``x``."""
    x = sympy.Rational(x) if isinstance(x, sympy.Float) else sympy.sympify(x)
    return -float_up(-x)
