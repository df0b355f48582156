"""The bound families, registered in one mapping :data:`METHODS` (id -> :class:`~lipverify.bounds.records.Method`).

Every method takes ``(net, norm, **options)`` and returns a :class:`~lipverify.Bound`.  Its record declares the
norms, layer kinds and conv representations it supports, what its value means, its cost class, its budgets and
its proof file; :func:`compare` and :func:`bound` read the records instead of probing (a norm or layer a record
does not list gives the record's reason).  ``METHODS["k4"](net, "inf")`` calls the method.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from ..errors import InternalConsistencyError, LipVerifyError, NotApplicableError
from ..local import localize
from ..network import Network
from ..norms import NORMS, NormLike, parse_norm
from ..relax import check_relaxation
from ..result import Bound, Skipped, check_consistency
from .k1 import k1
from .k2 import k2
from .k3 import k3
from .k4 import k4
from .kcp import kcp
from .kstar import kstar
from .records import (
    CNN_STEPS,
    COMPARE_FO_STEPS,
    COMPARE_KSDP_WORK,
    COMPARE_TIME,
    FC_STEPS,
    GRAPH_STEPS,
    K2_NODES,
    K2_SEED,
    K2_TIME,
    KSDP_SDPS,
    KSDP_SIZE,
    KSDP_TIME,
    KSDP_WORK,
    LIPSDP_FAST_SIZE,
    LIPSDP_FO_SIZE,
    LIPSDP_FO_STEPS,
    LIPSDP_NEURONS,
    Budget,
    Method,
    limit_hint,
    step_kind,
)

_L1_LINF = "bounds an l1/l∞ induced norm"


# The SDP methods are imported on their first call: their certificate kernel loads scipy.linalg (and the solvers
# cvxpy), which ``import lipverify`` should not pay for.
def lipsdp(net: Network, norm: NormLike = 2, **options) -> Bound:
    """:func:`lipverify.sdp.lipsdp` (LipSDP, certified l2 upper bound), imported on the first call."""
    from ..sdp import lipsdp as method

    return method(net, norm, **options)


def lipsdp_fast(net: Network, norm: NormLike = 2, **options) -> Bound:
    """:func:`lipverify.sdp.fast.lipsdp_fast` (closed-form LipSDP certificate, l2), imported on the first call."""
    from ..sdp.fast import lipsdp_fast as method

    return method(net, norm, **options)


def lipsdp_fo(net: Network, norm: NormLike = 2, **options) -> Bound:
    """:func:`lipverify.sdp.first_order.lipsdp_fo` (first-order LipSDP, certified, l2), imported on the first call."""
    from ..sdp.first_order import lipsdp_fo as method

    return method(net, norm, **options)


def _ksdp(net: Network, norm: NormLike = "inf", **options) -> Bound:
    """:func:`lipverify.bounds.ksdp.ksdp` (certified Shor relaxation of K2), imported on the first call."""
    from .ksdp import ksdp as method

    return method(net, norm, **options)


#: every registered bound method, by id (the README's methods table lists exactly these)
METHODS: dict[str, Method] = {m.id: m for m in (
    Method("kstar", kstar, ("1", "2", "inf"), GRAPH_STEPS, ("implicit", "explicit"), "upper", "linear",
           "proofs/kstar.md", "product of the layer norms times the largest slopes"),
    Method("k1", k1, ("1", "2", "inf"), GRAPH_STEPS, ("explicit",), "upper", "quadratic", "proofs/k1.md",
           "Combettes–Pesquet partial products, generalised to slopes in [α, β]",
           extra={"conv_reason": "K1 needs norms of partial products W_k ⋯ W_j of the layers, which are not "
                                 "computable from the kernels alone"}),
    Method("k2", k2, ("1", "2", "inf"), CNN_STEPS - {"maxpool"}, ("explicit",), "upper", "exponential",
           "proofs/k2.md", "Virmaux–Scaman: max over vertex activation patterns (branch and bound)",
           budgets=(K2_NODES, K2_TIME, K2_SEED), progress=True, progress_unit="nodes",
           extra={"conv_reason": "the vertex search evaluates products of the layer matrices"}),
    Method("k3", k3, ("1", "inf"), GRAPH_STEPS, ("implicit", "explicit"), "upper", "linear", "proofs/k3.md",
           "norm of the product of entrywise absolute weights",
           norm_reason="K3 bounds an l1/l∞ induced norm by a nonnegative matrix's row/column sums"),
    Method("k4", k4, ("1", "inf"), GRAPH_STEPS, ("implicit", "explicit"), "upper", "linear", "proofs/k4.md",
           "sign-aware path bound (interval enclosure)",
           norm_reason="K4 bounds an l1/l∞ induced norm by entrywise magnitudes"),
    Method("kcp", kcp, ("1", "inf"), FC_STEPS, (), "upper", "quadratic", "proofs/kcp.md",
           "Combettes–Pesquet expansion with entrywise absolute values",
           norm_reason="KCP bounds an l1/l∞ induced norm by entrywise magnitudes"),
    Method("ksdp", _ksdp, ("1", "inf"), FC_STEPS, (), "upper", "sdp", "proofs/ksdp.md",
           "certified Shor relaxation of K2, one SDP per output row (l∞) / input column (l1)",
           norm_reason="the relaxation bounds an l1/l∞ norm row by row", budgets=(KSDP_SIZE, KSDP_SDPS, KSDP_WORK, KSDP_TIME),
           progress=True, progress_unit="SDPs", extra={"compare": {"max_work": COMPARE_KSDP_WORK}}),
    Method("lipsdp", lipsdp, ("2",), FC_STEPS, (), "upper", "sdp", "proofs/lipsdp.md",
           "LipSDP-Neuron / -Layer (Fazlyab et al. 2019) with slopes [α, β], certified",
           norm_reason="LipSDP bounds the spectral (l2) Lipschitz constant only", budgets=(LIPSDP_NEURONS,),
           progress=True, progress_unit="stages"),
    Method("lipsdp_fast", lipsdp_fast, ("2",), CNN_STEPS, ("explicit",), "upper", "quadratic",
           "proofs/lipsdp_fast.md", "closed-form LipSDP-Neuron certificates (ECLipsE-Fast family, slopes [α, β]), "
           "verified, min with K1",
           norm_reason="LipSDP bounds the spectral (l2) Lipschitz constant only", budgets=(LIPSDP_FAST_SIZE,),
           extra={"conv_reason": "the certificate is checked on the LipSDP matrix built from the layer matrices"}),
    Method("lipsdp_fo", lipsdp_fo, ("2",), CNN_STEPS, ("explicit",), "upper", "sdp", "proofs/lipsdp_fo.md",
           "first-order LipSDP-Neuron (eigenvalue form, Adam on the multipliers from lipsdp_fast's start; CNNs with "
           "max-pool quadratic constraints), verified",
           norm_reason="LipSDP bounds the spectral (l2) Lipschitz constant only", budgets=(LIPSDP_FO_SIZE, LIPSDP_FO_STEPS),
           extra={"compare": {"steps": COMPARE_FO_STEPS},
                  "conv_reason": "the certificate is checked on the LipSDP matrices built from the layer matrices"}),
)}

#: the budgets of ``compare`` itself
COMPARE_BUDGETS: tuple[Budget, ...] = (COMPARE_TIME,)


def _method(method: str) -> Callable[..., Bound]:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid methods are {', '.join(METHODS)}")
    return METHODS[method]


def bound(net: Network, method: str, norm: NormLike = 2, *, input_shape: tuple[int, ...] | None = None,
          **options) -> Bound:
    """Compute one bound: ``lv.bound(net, "k4", norm="inf")``.

    ``net`` is a :class:`~lipverify.Network` or a live ``torch.nn.Module`` (converted by
    :func:`lipverify.io.as_network`; give ``input_shape=`` unless it starts with ``Linear``).

    ``domain=(lower, upper)`` bounds the Lipschitz constant on that input box: bounds of every activation's input
    there narrow its slopes (``lipverify.local``), and the method runs on the narrowed network; ``relaxation="crown"``
    (default: interval propagation intersected with a backward linear relaxation) or ``"interval"`` chooses those
    bounds, recorded in ``details["relaxation"]``.

    For a CNN, ``conv="implicit"`` (the default for kstar, k3, k4) or ``conv="explicit"`` (the default and
    only variant of k1, k2) selects the representation of the convolutions (``lipverify.conv``);
    fully connected networks ignore it.  Budgets (``max_nodes``, ``max_size``, ``max_sdps``, ``max_neurons``,
    ``time_limit``, ``seed``) are the keywords listed in the method's record (``METHODS[method].budgets``).

    Raises ``ValueError`` for an unknown method or norm (listing the valid ones) and
    :class:`~lipverify.errors.NotApplicableError` when the method's record does not list the norm.
    """
    from ..io import as_network
    from ..ir.graph import conv_variants as cnn

    net = as_network(net, input_shape)
    fn = _method(method)
    p = parse_norm(norm)
    conv = options.pop("conv", None)
    if isinstance(fn, Method):
        why = fn.norm_refusal(p)
        if why is not None:
            raise NotApplicableError(why)
        if conv is not None and not fn.conv:
            raise ValueError(fn.conv_refusal(conv))
        if conv is not None and cnn(net, conv) and fn.conv_refusal(conv) is not None:
            raise NotApplicableError(fn.conv_refusal(conv))
    if conv is not None:
        options["conv"] = conv
    domain = options.pop("domain", None)
    relaxation = check_relaxation(options.pop("relaxation", "crown"))
    if domain is None:
        return logits_note(fn(net, p, **options), net)
    report: dict = {}
    local = localize(net, domain, relaxation, report=report)
    return logits_note(_on_box(fn(local, p, **options), relaxation, report["cut"]), net)


#: the assumption every bound of a network whose final softmax was removed carries (``Network.stripped_output``)
LOGITS_NOTE = ("bound of the logits: the model's final {op} was removed (strip_output_softmax=True / --logits); it is "
               "not a bound of the {op} output")


def logits_note(result, net: Network):
    """``result`` with :data:`LOGITS_NOTE` among its assumptions when ``net`` is a model's logits (its final
    Softmax/LogSoftmax removed by the loader, ``Network.stripped_output``); added once; other rows unchanged."""
    op = getattr(net, "stripped_output", None)
    if op is None or not isinstance(result, Bound):
        return result
    note = LOGITS_NOTE.format(op=op)
    if note in result.assumptions:
        return result
    return replace(result, assumptions=result.assumptions + (note,))


def _on_box(result: Bound, relaxation: str, cut: bool = False) -> Bound:
    how = {"crown": "interval propagation and a backward linear relaxation (CROWN)", "interval": "interval propagation"}
    note = f"on the input box (slopes narrowed by {how[relaxation]}"
    note += "; its work limit left some neurons with interval bounds)" if cut else ")"
    details = {**result.details, "domain": True, "relaxation": relaxation}
    if cut:
        details["relaxation_cut"] = True
    return replace(result, assumptions=result.assumptions + (note,), details=details)


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
        return "\n".join([TABLE_HEADER] + [table_line(row) for row in self])

    def to_dicts(self) -> list[dict]:
        """One dict per row; rows of a CNN carry ``"conv"`` (``"implicit"``/``"explicit"``) as well."""
        return [row_dict(row) for row in self]


TABLE_HEADER = f"{'method':<12} {'norm':<5} {'kind':<9} {'value':>14} {'seconds':>9}  note"


def table_line(row) -> str:
    """One line of :meth:`Comparison.table` (the command line prints them as rows complete)."""
    if isinstance(row, Skipped):
        return f"{row.method:<12} {'l' + row.norm:<5} {'-':<9} {'-':>14} {row.seconds:>9.3f}  {row.error}"
    note = f"conv={row.details['conv']}  " if "conv" in row.details else ""
    note += row_note(row)
    return f"{row.method:<12} {'l' + row.norm:<5} {row.kind:<9} {float(row.value):>14.6g} {row.seconds:>9.3f}  {note}"


def row_dict(row) -> dict:
    """The JSON row of a Bound or Skipped row, with ``"conv"`` for a CNN row."""
    d = row.to_dict()
    if _conv_of(row) is not None:
        d["conv"] = _conv_of(row)
    return d


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


def time_exhausted(time_limit: float) -> str:
    """The reason of a row not started because the run's time budget ran out."""
    return (f"time budget exhausted ({limit_hint(COMPARE_TIME, f'{time_limit:g}')} seconds for the whole run were "
            "used up before this row started; raise it to compute this row)")


def compare(net: Network, norms: Iterable[NormLike] = NORMS, methods: Iterable[str] | None = None,
            *, progress: Callable[[str, str], None] | None = None, conv: str | None = None, domain=None,
            time_limit: float | None = None, deadline: float | None = None, on_row: Callable[[Any], None] | None = None,
            work_progress: Callable[[str, str, int, int], None] | None = None,
            input_shape: tuple[int, ...] | None = None, relaxation: str = "crown", **options) -> Comparison:
    """Every registered (or every listed) method in every listed norm.

    ``net`` is a :class:`~lipverify.Network` or a live ``torch.nn.Module`` (with ``input_shape=``, see
    :func:`lipverify.io.as_network`).  A norm, layer kind or conv representation that a method's record does
    not list gives a :class:`Skipped` row with the record's reason (the method is not called); a method that
    fails (e.g. ``NumericalError`` on overflow, a size budget) gives a Skipped row with the reason; nothing is
    dropped.  An upper bound below a certified lower bound of the same norm raises
    :class:`~lipverify.errors.InternalConsistencyError` (both cannot be true; neither is reported); rows are
    checked as they complete.  ``domain=(lower, upper)`` gives local bounds on that box, with ``relaxation`` (see
    :func:`bound`).
    ``options`` maps a method id to its keyword arguments, e.g. ``k2={"max_nodes": 500}``.

    Budget: ``time_limit`` seconds for the whole run; a row not started in time is a Skipped row "time budget
    exhausted", and a method with a wall-clock budget (K2, KSDP) gets the remaining time as an extra cap
    (``deadline``, a :func:`time.perf_counter` instant, shares one budget between several calls instead).  The
    deterministic work limits of the records (K2 nodes, KSDP size and SDP count, LipSDP neurons) apply always, and
    KSDP's total work is bounded by ``records.COMPARE_KSDP_WORK`` here (rows past it keep min(K4, KCP), listed in the
    row's ``details["work_capped_rows"]`` with the reason in ``details["work_note"]``; ``ksdp={"max_work": ...}``).
    ``on_row(row)`` is called with every row as soon as it is complete and checked; ``progress(method, norm)``
    before each row; ``work_progress(method, norm, done, total)`` inside methods whose record has
    ``progress=True`` (K2 nodes, KSDP SDPs, LipSDP stages; ``METHODS[m].progress_unit``).
    For a CNN every method with convolution support gives two rows, ``conv="implicit"`` then ``conv="explicit"``
    (only the given one with ``conv=...``): a Bound's ``details["conv"]`` names its variant, a Skipped row's
    reason starts with ``conv=<variant>: ``.  Fully connected networks ignore ``conv``.
    """
    from ..io import as_network
    from ..ir.graph import conv_variants as cnn

    started = time.perf_counter()
    if time_limit is not None and not time_limit >= 0:
        raise ValueError(f"compare: time_limit must be >= 0 seconds or None, got {time_limit!r}")
    if deadline is None and time_limit is not None:
        deadline = started + time_limit
    elif deadline is not None and time_limit is None:
        time_limit = max(deadline - started, 0.0)
    net = as_network(net, input_shape)
    check_relaxation(relaxation)
    given = net
    names = list(METHODS) if methods is None else [m for m in methods]
    if domain is not None:
        report: dict = {}
        net = localize(net, domain, relaxation, report=report)
    for m in names:
        _method(m)
    is_cnn = cnn(net, conv)
    variants: tuple = (None,)
    if is_cnn:
        variants = ("implicit", "explicit") if conv is None else (conv,)
    steps = [(i, step_kind(layer), layer.describe()) for i, layer in enumerate(net.layers)]
    rows: list = []
    for n in [parse_norm(x) for x in norms]:
        for m in names:
            record = METHODS[m]
            conv_aware = isinstance(record, Method) and bool(record.conv)
            for v in variants if conv_aware else (None,):
                if progress is not None:
                    progress(m, n)
                row = _row(record, m, net, n, v, dict(options.get(m, {})), deadline, time_limit, steps, work_progress)
                if domain is not None and isinstance(row, Bound):
                    row = _on_box(row, relaxation, report["cut"])
                row = logits_note(row, given)
                rows.append(row)
                check_consistency(rows)
                if on_row is not None:
                    on_row(row)
    return Comparison(rows)


def _row(record, m: str, net: Network, n: str, v: str | None, kwargs: dict, deadline: float | None,
         time_limit: float | None, steps: list, work_progress) -> Bound | Skipped:
    """One row of :func:`compare`: the record's refusal, a time-budget refusal, the method's result or its error."""
    started = time.perf_counter()
    prefix = "" if v is None else f"conv={v}: "
    if isinstance(record, Method):
        why = record.norm_refusal(n) or (record.conv_refusal(v) if v is not None else None) \
            or record.step_refusal(steps)
        if why is not None:
            return Skipped(m, n, prefix + why, 0.0)
    if deadline is not None and started >= deadline:
        return Skipped(m, n, prefix + time_exhausted(time_limit), 0.0)
    if v is not None:
        kwargs["conv"] = v
    if isinstance(record, Method):
        for key, default in record.extra.get("compare", {}).items():  # compare's own defaults (e.g. KSDP's work)
            kwargs.setdefault(key, default)
        cap = record.budget("time_limit")
        if deadline is not None and cap is not None and cap.kind == "wallclock":
            remaining = max(deadline - started, 1e-3)
            given = kwargs.get("time_limit")
            kwargs["time_limit"] = remaining if given is None else min(given, remaining)
        if record.progress and work_progress is not None:
            kwargs["progress"] = lambda done, total: work_progress(m, n, done, total)
    try:
        return record(net, n, **kwargs)
    except InternalConsistencyError:
        raise  # a bug, never a skipped row
    except NotApplicableError as exc:
        return Skipped(m, n, prefix + str(exc), time.perf_counter() - started)
    except LipVerifyError as exc:
        return Skipped(m, n, f"{prefix}{type(exc).__name__}: {exc}", time.perf_counter() - started)
