"""The bound families, registered in one mapping :data:`METHODS` (id -> function).

Every function takes ``(net, norm, **options)`` and returns a :class:`~lipverify.Bound`; a method that
does not apply to a norm raises :class:`~lipverify.errors.NotApplicableError` with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from ..errors import LipVerifyError, NotApplicableError
from ..network import Network
from ..norms import NORMS, NormLike, parse_norm
from ..result import Bound, Skipped
from .k1 import k1
from .k2 import k2
from .k3 import k3
from .k4 import k4
from .kcp import kcp
from .ksdp import ksdp
from .kstar import kstar

METHODS: dict[str, Callable[..., Bound]] = {
    "kstar": kstar,
    "k1": k1,
    "k2": k2,
    "k3": k3,
    "k4": k4,
    "kcp": kcp,
    "ksdp": ksdp,
}


def _method(method: str) -> Callable[..., Bound]:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid methods are {', '.join(METHODS)}")
    return METHODS[method]


def bound(net: Network, method: str, norm: NormLike = 2, **options) -> Bound:
    """Compute one bound: ``lv.bound(net, "k4", norm="inf")``.

    Raises ``ValueError`` for an unknown method or norm (listing the valid ones) and
    :class:`~lipverify.errors.NotApplicableError` when the method does not apply to the norm.
    """
    fn = _method(method)
    return fn(net, parse_norm(norm), **options)


class Comparison(tuple):
    """The rows of :func:`compare`: :class:`Bound` objects and :class:`Skipped` rows with reasons."""

    def value(self, method: str, norm: NormLike) -> float | None:
        n = parse_norm(norm)
        for row in self:
            if row.method == method and row.norm == n:
                return None if row.value is None else float(row.value)
        raise KeyError(f"no row for method {method!r} and norm l{n}")

    def table(self) -> str:
        """An aligned text table."""
        lines = [f"{'method':<12} {'norm':<5} {'kind':<9} {'value':>14} {'seconds':>9}  note"]
        for row in self:
            if isinstance(row, Skipped):
                lines.append(f"{row.method:<12} {'l' + row.norm:<5} {'-':<9} {'-':>14} {row.seconds:>9.3f}  {row.error}")
            else:
                note = ""
                if row.method == "k2":
                    note = ("K2 closed: exact value of the bias-free bound" if row.kind == "exact"
                            else f"K2 not closed; best vertex {row.lower:.6g}")
                elif row.exact_value is not None:
                    note = f"exact: {row.exact_value}"
                lines.append(f"{row.method:<12} {'l' + row.norm:<5} {row.kind:<9} {float(row.value):>14.6g} "
                             f"{row.seconds:>9.3f}  {note}")
        return "\n".join(lines)

    def to_dicts(self) -> list[dict]:
        return [row.to_dict() for row in self]


def compare(net: Network, norms: Iterable[NormLike] = NORMS, methods: Iterable[str] | None = None,
            *, progress: Callable[[str, str], None] | None = None, **options) -> Comparison:
    """Every registered (or every listed) method in every listed norm.

    A method that does not apply, or fails, gives a :class:`Skipped` row with the reason; nothing is
    dropped.  ``options`` maps a method id to its keyword arguments, e.g. ``k2={"time_limit": 1}``.
    """
    names = list(METHODS) if methods is None else [m for m in methods]
    for m in names:
        _method(m)
    rows = []
    for n in [parse_norm(x) for x in norms]:
        for m in names:
            if progress is not None:
                progress(m, n)
            started = time.perf_counter()
            try:
                rows.append(METHODS[m](net, n, **options.get(m, {})))
            except NotApplicableError as exc:
                rows.append(Skipped(m, n, str(exc), time.perf_counter() - started))
            except LipVerifyError as exc:
                rows.append(Skipped(m, n, f"{type(exc).__name__}: {exc}", time.perf_counter() - started))
    return Comparison(rows)
