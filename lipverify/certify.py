"""Certified robustness of a batch of inputs: per input the predicted class, a certified radius, a certified local
Lipschitz bound on the ε-ball and whether the input is certified at ε; the certified accuracy (proof:
``proofs/local.md``, §2 and the notes on ``certify``).

>>> import lipverify as lv
>>> net = lv.Network([lv.Dense([[1.0, 0.0], [0.0, 1.0]])])
>>> result = lv.certify(net, [[1.0, 0.0]], eps=0.1, norm="inf")
>>> r = result.results[0]
>>> r.predicted, r.certified, round(r.radius.value, 12), result.certified_accuracy
(0, True, 0.1, 1.0)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import NumericalError, ShapeError
from .network import Network
from .rigorous import down, up


@dataclass(frozen=True)
class CertifiedInput:
    """The answer for one input: ``radius`` is a :class:`~lipverify.result.Bound` of kind ``lower`` of the robustness
    radius of the predicted class (at most ``eps``); ``local_upper`` a Bound of kind ``upper`` of the Lipschitz
    constant of the whole network on the box ``x ± eps`` (which contains the ε-ball); ``certified`` says
    ``radius >= eps`` (and ``predicted == label`` when a label is given)."""

    index: int
    predicted: int
    label: int | None
    radius: Any
    local_upper: Any
    certified: bool

    def to_dict(self) -> dict:
        """The JSON row ``{"index", "predicted", "label", "radius", "local_upper", "certified"}`` (floats)."""
        return {"index": self.index, "predicted": self.predicted, "label": self.label,
                "radius": float(self.radius.value), "local_upper": self.local_upper.float_value(),
                "certified": self.certified}


@dataclass(frozen=True)
class Certification:
    """The answers for a batch, in input order, and the certified accuracy (the fraction of certified inputs)."""

    results: tuple[CertifiedInput, ...]
    norm: str
    eps: float
    method: str

    @property
    def certified_accuracy(self) -> float:
        return sum(r.certified for r in self.results) / len(self.results) if self.results else 0.0

    def to_dict(self, model: str | None = None) -> dict:
        """``{"model", "norm", "eps", "results": [...], "certified_accuracy"}`` (the CLI's ``--json``)."""
        return {"model": model, "norm": self.norm, "eps": self.eps, "results": [r.to_dict() for r in self.results],
                "certified_accuracy": self.certified_accuracy}


def default_method(norm: str) -> str:
    """The method of :func:`certify` unless given: K1 in l2, K4 in l1 and l∞ (as :func:`~lipverify.certified_radius`)."""
    return "k1" if norm == "2" else "k4"


def _certified_upper(net: Network, method: str, norm: str, box, what: str):
    """The Bound of ``method`` on ``box``; refuses anything but a finite certified upper (or exact) value."""
    from .bounds import bound

    result = bound(net, method, norm=norm, domain=box)
    value = result.float_value() if result.kind in ("upper", "exact") else None
    if value is None or not np.isfinite(value) or value < 0:
        raise NumericalError(f"certify: {method} gave no finite certified upper bound of {what} "
                             f"(kind {result.kind!r}, value {result.value!r}); choose another method")
    return result


def certify_one(net: Network, x: Any, eps: float, norm: str, label: int | None = None, method: str | None = None,
                index: int = 0) -> CertifiedInput:
    """One input of :func:`certify` (a picklable task: what ``--workers`` and ``--dask`` run).

    Box ``B = [down(x - eps), up(x + eps)]`` (outward rounded, so it contains the p-ball of radius ``eps`` for
    p = 1, 2, ∞).  The radius is :func:`lipverify.local.certified_radius` on that box: margins ``m_j <= f_y(x) -
    f_j(x)`` from the rigorous output enclosure at ``x``, ``L_j >= Lip_p(f_y - f_j)`` on ``B``, ``r = min(eps, min_j
    down(m_j / L_j))`` (``proofs/local.md`` §2).  The local upper bound is the method's bound of the whole network on
    ``B``."""
    from .local import certified_radius

    method = method or default_method(norm)
    x = np.asarray(x, dtype=np.float64)
    box = (down(x - eps), up(x + eps))
    r = certified_radius(net, x, norm, method=method, radius=float(eps))
    y, radius = int(r.details["label"]), float(r.value)
    local = _certified_upper(net, method, norm, box, "the network")
    return CertifiedInput(index, y, label, r, local, bool(radius >= eps and (label is None or label == y)))


def check_inputs(net: Network, inputs: Any, labels: Any = None) -> tuple[list[np.ndarray], list[int | None]]:
    """The inputs as float arrays of the network's input shape and the labels as ints (or ``None``); a
    :class:`~lipverify.errors.ShapeError` names the first bad input (its index and both shapes) or label."""
    if net.n_out < 2:
        raise ValueError(f"certify needs a classifier with at least two outputs; the network has {net.n_out}")
    xs = []
    for i, x in enumerate(inputs):
        x = np.asarray(x, dtype=np.float64)
        if x.shape != tuple(net.input_shape):
            raise ShapeError(f"certify: input {i} has shape {x.shape}, the network expects {tuple(net.input_shape)}")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"certify: input {i} has a NaN or infinite entry")
        xs.append(x)
    if labels is None:
        return xs, [None] * len(xs)
    ys = np.asarray(labels)
    if ys.shape != (len(xs),):
        raise ShapeError(f"certify: labels have shape {ys.shape}, expected ({len(xs)},) (one per input)")
    if ys.size and not np.issubdtype(ys.dtype, np.integer):
        raise ValueError(f"certify: labels have dtype {ys.dtype}; expected integer classes in 0..{net.n_out - 1}")
    if ys.size and (ys.min() < 0 or ys.max() >= net.n_out):
        bad = int(np.argmax((ys < 0) | (ys >= net.n_out)))
        raise ValueError(f"certify: label {bad} is {ys[bad]}, expected a class in 0..{net.n_out - 1}")
    return xs, [int(v) for v in ys]


def _run(net: Network, xs: Sequence[np.ndarray], ys: Sequence[int | None], eps: float, norm: str, method: str,
         workers: int, dask: str | None) -> Iterator[CertifiedInput]:
    """The per-input tasks, serially, in ``workers`` local processes (joblib) or on the Dask cluster at ``dask``;
    yields results as they complete (in any order)."""
    if dask is not None:
        from distributed import Client, as_completed

        with Client(dask) as client:
            remote = client.scatter(net, broadcast=True)
            futures = [client.submit(certify_one, remote, x, eps, norm, y, method, i, pure=False)
                       for i, (x, y) in enumerate(zip(xs, ys))]
            for future in as_completed(futures):
                yield future.result()
        return
    if workers > 1:
        from joblib import Parallel, delayed

        yield from Parallel(n_jobs=workers, return_as="generator_unordered")(
            delayed(certify_one)(net, x, eps, norm, y, method, i) for i, (x, y) in enumerate(zip(xs, ys)))
        return
    for i, (x, y) in enumerate(zip(xs, ys)):
        yield certify_one(net, x, eps, norm, y, method, i)


def certify(net: Network, inputs: Iterable, eps: float, norm: Any = "inf", labels: Any = None, method: str | None = None,
            *, workers: int = 1, dask: str | None = None,
            progress: Callable[[CertifiedInput], None] | None = None) -> Certification:
    """Certify every input of the batch ``inputs`` (each of the network's input shape) at radius ``eps`` in the
    ``norm``.

    Per input (:func:`certify_one`): the predicted class ``argmax f(x)``, a certified radius (kind ``lower`` of the
    robustness radius, at most ``eps``) from the margins' Lipschitz bounds on the box ``x ± eps`` (``method``; default
    K4 in l1/l∞, K1 in l2), the certified upper bound of the local Lipschitz constant of the whole network on that box,
    and ``certified`` (radius ≥ eps, and predicted = label when ``labels`` are given).  ``workers=N`` runs inputs in
    N local processes (joblib), ``dask="host:port"`` on an existing Dask cluster; the answers are the same.
    ``progress(result)`` is called as each input completes.  Proof: ``proofs/local.md``.
    """
    from .norms import parse_norm

    p = parse_norm(norm)
    eps = float(eps)
    if not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"certify: eps must be a positive finite number, got {eps!r}")
    if int(workers) < 1:
        raise ValueError(f"certify: workers must be a positive integer, got {workers!r}")
    method = method or default_method(p)
    xs, ys = check_inputs(net, inputs, labels)
    done: dict[int, CertifiedInput] = {}
    for result in _run(net, xs, ys, eps, p, method, int(workers), dask):
        done[result.index] = result
        if progress is not None:
            progress(result)
    return Certification(tuple(done[i] for i in range(len(xs))), p, eps, method)
