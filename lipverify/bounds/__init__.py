"""The bound families, registered in one mapping :data:`METHODS` (id -> function).

Every function takes ``(net, norm, **options)`` and returns a :class:`~lipverify.Bound`; a method that
does not apply to a norm raises :class:`~lipverify.errors.NotApplicableError` with the reason.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterable
from dataclasses import replace

from ..errors import InternalConsistencyError, LipVerifyError, NotApplicableError
from ..local import localize
from ..network import Network
from ..norms import NORMS, NormLike, parse_norm
from ..result import Bound, Skipped, check_consistency
from ..sdp import lipsdp
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
    "lipsdp": lipsdp,
}


def _method(method: str) -> Callable[..., Bound]:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid methods are {', '.join(METHODS)}")
    return METHODS[method]


def bound(net: Network, method: str, norm: NormLike = 2, **options) -> Bound:
    """Compute one bound: ``lv.bound(net, "k4", norm="inf")``.

    ``domain=(lower, upper)`` bounds the Lipschitz constant on that input box: interval propagation narrows every
    activation's slopes there (``lipverify.local``), and the method runs on the narrowed network.

    For a CNN, ``conv="implicit"`` (the default for kstar, k3, k4) or ``conv="explicit"`` (the default and
    only variant of k1, k2) selects the representation of the convolutions (``lipverify.conv``);
    fully connected networks ignore it.

    Raises ``ValueError`` for an unknown method or norm (listing the valid ones) and
    :class:`~lipverify.errors.NotApplicableError` when the method does not apply to the norm.
    """
    fn = _method(method)
    if options.get("conv") is not None and not _accepts_conv(fn):
        raise ValueError(f"{method} has no conv option (it supports fully connected networks only)")
    options = {k: v for k, v in options.items() if not (k == "conv" and v is None)}
    domain = options.pop("domain", None)
    if domain is None:
        return fn(net, parse_norm(norm), **options)
    return _on_box(fn(localize(net, domain), parse_norm(norm), **options))


def _on_box(result: Bound) -> Bound:
    return replace(result, assumptions=result.assumptions + ("on the input box (slopes narrowed by interval propagation)",),
                   details={**result.details, "domain": True})


class Comparison(tuple):
    """The rows of :func:`compare`: :class:`Bound` objects and :class:`Skipped` rows with reasons."""

    def value(self, method: str, norm: NormLike, conv: str | None = None) -> float | None:
        """The value of the first row of ``method`` and ``norm`` (for a CNN, of the ``conv`` variant if given)."""
        n = parse_norm(norm)
        for row in self:
            if row.method == method and row.norm == n and (conv is None or _conv_of(row) == conv):
                return None if row.value is None else float(row.value)
        raise KeyError(f"no row for method {method!r} and norm l{n}" + (f" with conv={conv!r}" if conv else ""))

    def table(self) -> str:
        """An aligned text table."""
        lines = [f"{'method':<12} {'norm':<5} {'kind':<9} {'value':>14} {'seconds':>9}  note"]
        for row in self:
            if isinstance(row, Skipped):
                lines.append(f"{row.method:<12} {'l' + row.norm:<5} {'-':<9} {'-':>14} {row.seconds:>9.3f}  {row.error}")
            else:
                note = f"conv={row.details['conv']}  " if "conv" in row.details else ""
                note += row_note(row)
                lines.append(f"{row.method:<12} {'l' + row.norm:<5} {row.kind:<9} {float(row.value):>14.6g} "
                             f"{row.seconds:>9.3f}  {note}")
        return "\n".join(lines)

    def to_dicts(self) -> list[dict]:
        """One dict per row; rows of a CNN carry ``"conv"`` (``"implicit"``/``"explicit"``) as well."""
        out = []
        for row in self:
            d = row.to_dict()
            if _conv_of(row) is not None:
                d["conv"] = _conv_of(row)
            out.append(d)
        return out


def row_note(row: Bound) -> str:
    """The table note of a row: what a method computed exactly about its *own* quantity (never the constant, which
    ``kind`` speaks of), K2's search state, a certified lower end, an exact value."""
    parts = []
    if row.method == "k2" and row.quantity_exact:
        parts.append("K2 closed: the bias-free bound itself, not the constant")
    elif row.method == "k2" and "best_vertex" in row.details:
        capped = row.details.get("capped_by")
        parts.append(f"K2 not closed (best vertex {row.details['best_vertex']:.6g})"
                     + (f"; capped by {capped}" if capped not in (None, "k2") else ""))
    elif row.quantity_exact:
        parts.append(f"{row.method}'s own quantity computed exactly, not the constant")
    if row.lower is not None:
        parts.append(f"certified lower end {row.lower:.6g}")
    if row.exact_value is not None:
        parts.append(f"exact: {row.exact_value}")
    return "; ".join(parts)


def _conv_of(row) -> str | None:
    """The conv variant of a CNN row: ``details["conv"]`` of a Bound, the ``conv=...:`` prefix of a Skipped row."""
    if isinstance(row, Skipped):
        for v in ("implicit", "explicit"):
            if row.error.startswith(f"conv={v}: "):
                return v
        return None
    return row.details.get("conv") if isinstance(row.details, dict) else None


def _accepts_conv(fn: Callable[..., Bound]) -> bool:
    return "conv" in inspect.signature(fn).parameters


def compare(net: Network, norms: Iterable[NormLike] = NORMS, methods: Iterable[str] | None = None,
            *, progress: Callable[[str, str], None] | None = None, conv: str | None = None, domain=None,
            **options) -> Comparison:
    """Every registered (or every listed) method in every listed norm.

    A method that does not apply, or fails, gives a :class:`Skipped` row with the reason; nothing is
    dropped; a method that overflows (``NumericalError``) gives a Skipped row with the reason.  An upper bound
    below a certified lower bound of the same norm raises :class:`~lipverify.errors.InternalConsistencyError`
    (both cannot be true; neither is reported).  ``domain=(lower, upper)`` gives local bounds on that box (see
    :func:`bound`).  ``options`` maps a
    method id to its keyword arguments, e.g. ``k2={"time_limit": 1}``.
    For a CNN every method gives two rows, ``conv="implicit"`` then ``conv="explicit"`` (only the given
    one with ``conv=...``): a Bound's ``details["conv"]`` names its variant, a Skipped row's reason starts
    with ``conv=<variant>: ``.  Fully connected networks ignore ``conv``.
    """
    from ..conv.dispatch import cnn

    names = list(METHODS) if methods is None else [m for m in methods]
    if domain is not None:
        net = localize(net, domain)
    for m in names:
        _method(m)
    variants: tuple = (None,)
    if cnn(net, conv):
        variants = ("implicit", "explicit") if conv is None else (conv,)
    rows = []
    for n in [parse_norm(x) for x in norms]:
        for m in names:
            # methods without a conv option meet CNN layers in their chain extraction and say so
            for v in variants if _accepts_conv(METHODS[m]) else (None,):
                if progress is not None:
                    progress(m, n)
                started = time.perf_counter()
                kwargs = dict(options.get(m, {}))
                prefix = ""
                if v is not None:
                    kwargs["conv"] = v
                    prefix = f"conv={v}: "
                try:
                    rows.append(METHODS[m](net, n, **kwargs))
                except InternalConsistencyError:
                    raise  # a bug, never a skipped row
                except NotApplicableError as exc:
                    rows.append(Skipped(m, n, prefix + str(exc), time.perf_counter() - started))
                except LipVerifyError as exc:
                    rows.append(Skipped(m, n, f"{prefix}{type(exc).__name__}: {exc}", time.perf_counter() - started))
    if domain is not None:
        rows = [_on_box(r) if isinstance(r, Bound) else r for r in rows]
    check_consistency(rows)
    return Comparison(rows)
