"""Checking a Lipschitz claim: is the network really ``L``-Lipschitz in the given norm?

``holds`` when a certified upper bound is at most ``L`` (the method is named), ``refuted`` when a certified lower
bound exceeds ``L`` (with the witness input, where ``||J(x)||_p`` was certified above ``L``), else ``undecided`` with
the best certified upper and lower values.  Every number comes from the library's certified methods (their proofs in
``proofs/``); nothing is estimated.  The power-iteration estimates that Lipschitz-by-construction libraries report are
lower estimates of a layer's norm, not bounds: here the l2 norms are proven (verified Cholesky, ``proofs/kstar.md``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .errors import LipVerifyError
from .norms import NormLike, parse_norm

#: the upper-bound methods tried, cheapest first (each one that applies; the first at most ``claim`` decides)
METHODS_BY_NORM = {"1": ("k3", "k4", "kstar", "k1", "kcp"), "inf": ("k3", "k4", "kstar", "k1", "kcp"),
                   "2": ("kstar", "k1", "lipsdp_fast", "lipsdp", "lipsdp_fo")}


@dataclass
class Verdict:
    """The answer of :func:`check_lipschitz`."""

    norm: str
    claim: float
    verdict: str  # "holds" | "refuted" | "undecided"
    upper: float | None
    upper_method: str | None
    lower: float | None
    witness: list | None = None
    tried: dict = field(default_factory=dict)

    def to_dict(self, model: str | None = None) -> dict:
        return {"model": model, "norm": self.norm, "claim": self.claim, "verdict": self.verdict, "upper": self.upper,
                "upper_method": self.upper_method, "lower": self.lower, "witness": self.witness}


def check_lipschitz(net: Any, claim: float, norm: NormLike = 2, *, methods: tuple[str, ...] | None = None,
                    input_shape=None, **lower_options) -> Verdict:
    """Decide whether ``Lip_p(net) <= claim``: ``holds`` (a certified upper bound ``<= claim``), ``refuted`` (a
    certified lower bound ``> claim``, with its witness input) or ``undecided``.

    Upper bounds: ``methods`` (default :data:`METHODS_BY_NORM`), each that applies, until one is at most ``claim``;
    a method that does not apply or fails is skipped (``Verdict.tried`` records why).  Lower bound:
    :func:`lipverify.lower_bound` (``lower_options`` are passed on), only when no upper bound decided.

    >>> import lipverify as lv
    >>> net = lv.Network([lv.Dense([[0.6, -0.8], [0.8, 0.6]]), lv.ReLU(), lv.Dense([[1.0, 0.0]])])
    >>> lv.check_lipschitz(net, 1.0 + 1e-9, 2).verdict
    'holds'
    >>> lv.check_lipschitz(net, 0.5, 2).verdict
    'refuted'
    """
    from .bounds import bound
    from .io import as_network
    from .lower import lower_bound

    net = as_network(net, input_shape)
    p = parse_norm(norm)
    claim = float(claim)
    if not (math.isfinite(claim) and claim >= 0):
        raise ValueError(f"check_lipschitz: the claim must be a finite number >= 0, got {claim!r}")
    upper, upper_method, tried = math.inf, None, {}
    for method in methods or METHODS_BY_NORM[p]:
        try:
            b = bound(net, method, norm=p)
        except LipVerifyError as exc:
            tried[method] = f"{type(exc).__name__}: {exc}"
            continue
        if b.kind not in ("upper", "exact"):
            tried[method] = f"kind {b.kind}: not an upper bound"
            continue
        value = b.float_value()
        tried[method] = value
        if value < upper:
            upper, upper_method = value, method
        if upper <= claim:
            return Verdict(p, claim, "holds", upper, upper_method, None, None, tried)
    lb = lower_bound(net, p, **lower_options)
    lower = float(lb.value) if lb.kind == "lower" else None
    finite_upper = upper if math.isfinite(upper) else None
    if lower is not None and lower > claim:
        return Verdict(p, claim, "refuted", finite_upper, upper_method, lower, lb.details.get("witness"), tried)
    return Verdict(p, claim, "undecided", finite_upper, upper_method, lower, None, tried)
