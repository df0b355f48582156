"""Method records: what each bound method supports, what its value means, what it costs and how it is limited.

:data:`lipverify.bounds.METHODS` maps a method id to a :class:`Method`.  ``compare``, ``bound``, the command line
and the report read these records instead of probing signatures or catching errors to find out what applies.
A :class:`Budget` names one limit of a method: its Python keyword, its default and its command-line flag, so that
refusal messages name the flag when run from the command line and the keyword in Python (:func:`limit_hint`).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

#: the step kinds a network is made of (see :func:`step_kind`)
STEP_KINDS = ("dense", "activation", "flatten", "conv", "avgpool", "batchnorm", "upsample", "maxpool", "residual", "sort")
FC_STEPS = frozenset({"dense", "activation", "flatten"})
CNN_STEPS = FC_STEPS | {"conv", "avgpool", "batchnorm", "upsample", "maxpool"}
#: the methods written over the graph's sums (``proofs/residual.md``)
GRAPH_STEPS = CNN_STEPS | {"residual", "sort"}
#: cost classes, cheapest first
COSTS = ("linear", "quadratic", "sdp", "exponential")

_FROM_CLI: contextvars.ContextVar[bool] = contextvars.ContextVar("lipverify_from_cli", default=False)


@contextlib.contextmanager
def command_line() -> Iterator[None]:
    """Within this block, :func:`limit_hint` words advice with command-line flags (used by :mod:`lipverify.cli`)."""
    token = _FROM_CLI.set(True)
    try:
        yield
    finally:
        _FROM_CLI.reset(token)


@dataclass(frozen=True)
class Budget:
    """One limit of a method: the Python keyword ``name``, its ``default``, the command-line ``flag`` and what
    it counts (``kind``: ``"work"`` a deterministic work limit, ``"wallclock"`` seconds, an extra cap only,
    ``"seed"`` the seed of a randomised choice)."""

    name: str
    default: Any
    flag: str
    kind: str
    help: str


def limit_hint(budget: Budget, value: Any) -> str:
    """How to raise ``budget`` to ``value``: ``"--k2-nodes 5000"`` from the command line, ``"max_nodes=5000"`` in
    Python.

    >>> limit_hint(Budget("max_size", 250, "--max-size", "work", ""), 300)
    'max_size=300'
    >>> with command_line():
    ...     limit_hint(Budget("max_size", 250, "--max-size", "work", ""), 300)
    '--max-size 300'
    """
    return f"{budget.flag} {value}" if _FROM_CLI.get() else f"{budget.name}={value}"


K2_NODES = Budget("max_nodes", 2_000, "--k2-nodes", "work",
                  "K2 branch-and-bound nodes (deterministic); out of nodes, K2 reports a certified upper end")
K2_TIME = Budget("time_limit", None, "--time-limit", "wallclock",
                 "K2 wall-clock cap in seconds (none by default; compare passes its remaining time)")
K2_SEED = Budget("seed", 0, "--seed", "seed", "seed of K2's random starting vertices")
KSDP_SIZE = Budget("max_size", 250, "--max-size", "work", "largest KSDP relaxation matrix (1 + n_0 + Σ n_l)")
KSDP_SDPS = Budget("max_sdps", 16, "--max-sdps", "work",
                   "most SDPs KSDP solves (one per output row for l∞, per input column for l1)")
KSDP_TIME = Budget("time_limit", None, "--time-limit", "wallclock",
                   "KSDP wall-clock cap: rows not started in time keep min(K4, KCP)")
KSDP_WORK = Budget("max_work", None, "--ksdp-work", "work",
                   "KSDP total work in units of N³ per SDP (N the relaxation side); rows past it keep min(K4, KCP) "
                   "(none for lv.bound; compare's default is COMPARE_KSDP_WORK)")
#: the default of ``max_work`` inside ``compare``: about 30 s of CVXOPT on this machine class (e.g. 4 SDPs of side 200)
COMPARE_KSDP_WORK = 32_000_000
LIPSDP_NEURONS = Budget("max_neurons", 200, "--max-neurons", "work", "largest LipSDP LMI side (inputs + hidden neurons)")
LIPSDP_FAST_SIZE = Budget("max_size", 3000, "--fast-size", "work",
                          "largest lipsdp_fast LMI side (inputs + hidden neurons; the certificate is checked densely)")
LIPSDP_FO_SIZE = Budget("max_size", 3000, "--fo-size", "work",
                        "largest lipsdp_fo LMI side (inputs + hidden neurons; the certificate is checked densely)")
LIPSDP_FO_STEPS = Budget("steps", 300, "--fo-steps", "work",
                         "first-order steps of lipsdp_fo (Adam on the multipliers; deterministic)")
#: the default of ``steps`` of lipsdp_fo inside ``compare`` (lipsdp itself is in the same table)
COMPARE_FO_STEPS = 30
COMPARE_TIME = Budget("time_limit", None, "--time-limit", "wallclock",
                      "seconds for a whole compare run; rows not started in time are skipped")


@dataclass(frozen=True)
class Method:
    """The record of one bound method.

    ``norms`` the norms it bounds (``norm_reason`` says why not the others); ``steps`` the layer kinds it handles
    (:data:`STEP_KINDS`); ``conv`` the representations of convolutions it supports (``"implicit"``,
    ``"explicit"``; empty for fully connected networks only); ``kind`` what its value is for the Lipschitz
    constant (always ``"upper"`` for the registered bounds); ``cost`` its cost class (:data:`COSTS`); ``budgets``
    its limits; ``proof`` the proof file; ``progress`` whether it takes a ``progress(done, total)`` callback, counting
    ``progress_unit`` (K2 nodes, KSDP SDPs, LipSDP stages).  A record is
    callable like the function it wraps: ``METHODS["k4"](net, "inf")``.
    """

    id: str
    function: Callable[..., Any]
    norms: tuple[str, ...]
    steps: frozenset[str]
    conv: tuple[str, ...]
    kind: str
    cost: str
    proof: str
    summary: str
    norm_reason: str = ""
    budgets: tuple[Budget, ...] = ()
    progress: bool = False
    progress_unit: str = "steps"
    extra: dict = field(default_factory=dict)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    def budget(self, name: str) -> Budget | None:
        """The budget with Python keyword ``name``, if the method has one."""
        return next((b for b in self.budgets if b.name == name), None)

    def norm_refusal(self, norm: str) -> str | None:
        """Why the method does not apply to ``norm`` (``None`` when it does)."""
        if norm in self.norms:
            return None
        listed = ", ".join("l" + n for n in self.norms)
        return f"{self.id} is defined for the {listed} norm(s) only, not l{norm}" + (
            f": {self.norm_reason}" if self.norm_reason else "")

    def step_refusal(self, kinds: list[tuple[int, str, str]]) -> str | None:
        """Why the method does not handle a network with these ``(index, step kind, description)`` layers."""
        for i, kind, described in kinds:
            if kind not in self.steps:
                handled = ", ".join(k for k in STEP_KINDS if k in self.steps)
                able = [m for m in _CNN_HINT if m != self.id]
                hint = f"; for CNNs use {', '.join(able[:-1])} or {able[-1]}" if kind != "maxpool" else \
                    "; use k4 or k3 (or kstar)"
                if kind == "residual":
                    hint = "; for residual networks use kstar, k1, k3 or k4"
                if kind == "sort":
                    hint = "; for GroupSort/MaxMin/FullSort layers use kstar, k1, k3 or k4"
                return f"{self.id}: layer {i} ({described}) is not supported: {self.id} handles {handled} layers{hint}"
        return None

    def conv_refusal(self, conv: str) -> str | None:
        """Why the method does not offer the ``conv`` representation (``None`` when it does)."""
        if conv in self.conv:
            return None
        if not self.conv:
            return f"{self.id} has no conv option (it supports fully connected networks only)"
        return f"{self.id} with conv={conv!r}: {self.extra.get('conv_reason', '')}; use conv={self.conv[0]!r}"


_CNN_HINT = ("kstar", "k1", "k2", "k3", "k4")


def step_kind(layer: Any) -> str:
    """The step kind of a layer (:data:`STEP_KINDS`, declared by the layer class), else its type name."""
    return getattr(layer, "step_kind", None) or type(layer).__name__
