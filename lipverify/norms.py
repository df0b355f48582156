"""Parsing of norm arguments: ``1, 2, "inf"`` and ``"1", "2", "inf", "l1", "l2", "linf"``."""

from __future__ import annotations

import math
from typing import Literal, Union

NormName = Literal["1", "2", "inf"]
NormLike = Union[int, float, str]

NORMS: tuple[NormName, ...] = ("1", "2", "inf")

_ALIASES: dict[str, NormName] = {
    "1": "1", "l1": "1",
    "2": "2", "l2": "2",
    "inf": "inf", "linf": "inf", "l_inf": "inf", "infinity": "inf", "∞": "inf", "l∞": "inf",
}


def parse_norm(norm: NormLike) -> NormName:
    """Return the canonical name ``"1"``, ``"2"`` or ``"inf"`` of ``norm``.

    >>> parse_norm("linf"), parse_norm(2), parse_norm(float("inf"))
    ('inf', '2', 'inf')
    """
    if isinstance(norm, (int, float)) and not isinstance(norm, bool):
        if norm == 1:
            return "1"
        if norm == 2:
            return "2"
        if isinstance(norm, float) and math.isinf(norm) and norm > 0:
            return "inf"
    elif isinstance(norm, str):
        key = norm.strip().lower()
        if key in _ALIASES:
            return _ALIASES[key]
    raise ValueError(
        f"unknown norm {norm!r}; valid norms are 1, 2, 'inf' and the strings "
        "'1', '2', 'inf', 'l1', 'l2', 'linf'"
    )
