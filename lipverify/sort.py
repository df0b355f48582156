"""Sorting activations on flat vectors: :class:`GroupSort`, :class:`MaxMin`, :class:`FullSort` (``proofs/groupsort.md``).

The ``n`` coordinates are partitioned into groups of ``g`` (``group_size``; ``None``: one group, a full sort); each
group is sorted and written back to the same positions.  ``layout="contiguous"`` groups ``{0..g-1}, {g..2g-1}, …``
(deel-torchlip ``GroupSort``/``GroupSort2``/``FullSort``, ascending); ``layout="strided"`` groups
``{j, j + n/g, j + 2n/g, …}`` — for ``g = 2`` the two halves of the vector, paired coordinate by coordinate
(orthogonium ``MaxMin``: ``[max(a, b), min(a, b)]`` for the halves ``a``, ``b``, i.e. descending).

Not elementwise and not linear: ``S(x) - S(y) = M (x - y)`` with ``M`` a convex combination of permutation matrices
that permute inside the groups (doubly stochastic per group), so ``||M||_p <= 1`` for every p, ``(M v)_i`` and
``(M^T v)_i`` are at most ``max_{k in group(i)} v_k`` for ``v >= 0``, and ``M`` maps an interval vector into the group
min/max of its ends.  The graph step is ``"sort"`` (:class:`SortOp`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ._lazy import LazyModule
from .layers import Layer, Shape

if TYPE_CHECKING:
    import sympy
else:
    sympy = LazyModule("sympy")

LAYOUTS = ("contiguous", "strided")


@dataclass(frozen=True, eq=False)
class GroupSort(Layer):
    """Sort every group of ``group_size`` coordinates of a flat vector (``None``: the whole vector).

    ``layout`` ``"contiguous"`` (consecutive coordinates, the deel-torchlip convention) or ``"strided"`` (group ``j``
    is ``{j, j + n/g, …}``); ``descending`` False sorts each group ascending along its positions.  Acts on flat inputs
    ``(n,)`` only (put a ``Flatten`` before it); ``g`` must divide ``n``.  Lipschitz constant 1 in every p-norm; proof
    ``proofs/groupsort.md``.

    >>> import numpy as np
    >>> GroupSort(2).forward(np.array([[3.0, 1.0, -1.0, 2.0]]))
    array([[ 1.,  3., -1.,  2.]])
    """

    group_size: int | None = 2
    layout: str = "contiguous"
    descending: bool = False
    kind: ClassVar[str] = "GroupSort"
    step_kind: ClassVar[str] = "sort"

    def __post_init__(self) -> None:
        g = self.group_size
        if g is not None and (isinstance(g, bool) or not isinstance(g, (int, np.integer)) or g < 1):
            raise ValueError(f"{self.kind}: group_size must be a positive integer or None (one group), got {g!r}")
        if g is not None:
            object.__setattr__(self, "group_size", int(g))
        if self.layout not in LAYOUTS:
            raise ValueError(f"{self.kind}: layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if not isinstance(self.descending, (bool, np.bool_)):
            raise ValueError(f"{self.kind}: descending must be a bool, got {self.descending!r}")

    def describe(self) -> str:
        order = ", descending" if self.descending else ""
        layout = ", strided" if self.layout == "strided" else ""
        return f"{self.kind}({self.group_size}{layout}{order})"

    def size(self, n: int) -> int:
        """The group size on ``n`` coordinates."""
        return n if self.group_size is None else self.group_size

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 1:
            raise ValueError(f"{self.kind} sorts groups of a flat vector (n,) but receives shape {tuple(input_shape)}; "
                             "put a Flatten before it (grouping along channels of (C, H, W) is not supported)")
        n, g = int(input_shape[0]), self.size(int(input_shape[0]))
        if n % g:
            raise ValueError(f"{self.kind}: the group size {g} does not divide the {n} inputs")
        return (n,)

    def groups(self, n: int) -> np.ndarray:
        """``(n / g, g)`` input indices: row ``j`` lists the positions of group ``j`` in sorting order."""
        g = self.size(n)
        idx = np.arange(n)
        if self.layout == "contiguous":
            return idx.reshape(n // g, g)
        return idx.reshape(g, n // g).T.copy()

    def selection(self, x: np.ndarray) -> np.ndarray:
        """``(batch, n)`` indices: output ``i`` is input ``selection[:, i]`` at the points ``x`` (batch, n).  At ties the
        stable order is taken; any order of tied entries gives the same output values."""
        b, n = x.shape
        grp = self.groups(n)
        order = np.argsort(x[:, grp], axis=-1, kind="stable")
        if self.descending:
            order = order[..., ::-1]
        sel = np.take_along_axis(np.broadcast_to(grp, (b, *grp.shape)), order, axis=-1)
        out = np.empty((b, n), dtype=np.intp)
        out[:, grp.ravel()] = sel.reshape(b, -1)
        return out

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return np.take_along_axis(x, self.selection(x), axis=1)

    def jvp(self, h, jac, shape_in, shape_out):
        """Jacobian rule: the permutation that sorts ``h``.  At a tie it is the one-sided derivative in the directions
        that keep the stable order, an element of the Clarke Jacobian (``proofs/groupsort.md``)."""
        sel = self.selection(np.asarray(h, dtype=np.float64))
        return np.take_along_axis(jac, sel[..., None], axis=1)

    def sympy_apply_vector(self, hvec, shape_in, shape_out):
        """Each group through the compare-exchanges of odd–even transposition sort, written with ``Abs``:
        ``min(a, b) = (a + b - |a - b|) / 2``, ``max(a, b) = (a + b + |a - b|) / 2``.  Not with ``Min``/``Max``: sympy
        1.14 evaluates some nested ``Min``/``Max`` trees of a sorting network to a wrong value (e.g. the third smallest
        of six rationals), which ``tests/test_groupsort.py`` checks against ``sorted``."""
        n = int(shape_in[0])
        out = list(hvec)
        for positions in self.groups(n):
            pos = [int(k) for k in (positions[::-1] if self.descending else positions)]
            vals = [out[k] for k in pos]
            for a, b in compare_exchanges(len(pos)):
                total, gap = vals[a] + vals[b], sympy.Abs(vals[a] - vals[b])
                vals[a], vals[b] = (total - gap) / 2, (total + gap) / 2
            for k, v in zip(pos, vals):
                out[k] = v
        return sympy.Matrix(out)

    def relu_chain(self, n: int) -> list:
        """Dense and ReLU layers computing exactly this layer on ``R^n`` (``proofs/groupsort.md``, exact rewrite):
        every round of the sorting network is ``[D; I; -I]`` → ReLU → ``[±D^T-part, I, -I]``, with
        ``min(a, b) = a - relu(a - b)``, ``max(a, b) = b + relu(a - b)`` and ``x = relu(x) - relu(-x)``."""
        from .layers import Dense, ReLU

        rounds: list[list[tuple[int, int]]] = []
        for positions in self.groups(n):
            pos = [int(k) for k in (positions[::-1] if self.descending else positions)]
            for r, pairs in enumerate(compare_rounds(len(pos))):
                while len(rounds) <= r:
                    rounds.append([])
                rounds[r] += [(pos[a], pos[b]) for a, b in pairs]
        eye = sympy.eye(n)
        out: list = []
        for pairs in rounds:
            m = len(pairs)
            diff = sympy.zeros(m, n)
            back = sympy.zeros(n, m)
            for q, (a, b) in enumerate(pairs):  # position a receives the min, b the max
                diff[q, a], diff[q, b] = 1, -1
                back[a, q], back[b, q] = -1, 1
            out += [Dense(sympy.Matrix.vstack(diff, eye, -eye)), ReLU(), Dense(sympy.Matrix.hstack(back, eye, -eye))]
        return out


@dataclass(frozen=True, eq=False)
class MaxMin(GroupSort):
    """orthogonium's ``MaxMin``: the halves ``a``, ``b`` of a flat vector become ``[max(a, b), min(a, b)]``
    (``GroupSort(2, layout="strided", descending=True)``).  deel-torchlip's ``MaxMin`` is a different map,
    ``[relu(x), relu(-x)]``, imported as a Dense layer and a ReLU.

    >>> import numpy as np
    >>> MaxMin().forward(np.array([[1.0, 5.0, 2.0, 4.0]]))
    array([[2., 5., 1., 4.]])
    """

    group_size: int | None = field(default=2, init=False)
    layout: str = field(default="strided", init=False)
    descending: bool = field(default=True, init=False)
    kind: ClassVar[str] = "MaxMin"

    def describe(self) -> str:
        return "MaxMin"


@dataclass(frozen=True, eq=False)
class FullSort(GroupSort):
    """Sort the whole flat vector ascending (deel-torchlip ``FullSort``; ``GroupSort(None)``)."""

    group_size: int | None = field(default=None, init=False)
    layout: str = field(default="contiguous", init=False)
    descending: bool = field(default=False, init=False)
    kind: ClassVar[str] = "FullSort"

    def describe(self) -> str:
        return "FullSort"


def compare_rounds(g: int) -> list[list[tuple[int, int]]]:
    """Odd–even transposition sort of ``g`` items: ``g`` rounds of disjoint compare-exchanges ``(a, a + 1)`` (the
    smaller value to ``a``); sorts every input (Knuth, TAOCP vol. 3, §5.3.4, exercise 37; ``proofs/groupsort.md``)."""
    if g <= 1:
        return []
    if g == 2:
        return [[(0, 1)]]
    return [[(a, a + 1) for a in range(r % 2, g - 1, 2)] for r in range(g)]


def compare_exchanges(g: int) -> list[tuple[int, int]]:
    return [pair for rnd in compare_rounds(g) for pair in rnd]


class SortOp:
    """A sorting layer as a step of the network graph (``"sort"``): the group structure on ``n`` coordinates.  Every
    difference quotient is ``M`` in the convex hull of the in-group permutations (``proofs/groupsort.md``)."""

    def __init__(self, layer: GroupSort, in_shape) -> None:
        self.layer = layer
        self.n_in = self.n_out = int(in_shape[0])
        self.shape = (self.n_out, self.n_in)
        self.groups = layer.groups(self.n_in)

    def _reduce(self, v: np.ndarray, fn) -> np.ndarray:
        v = np.asarray(v)
        red = fn(v[..., self.groups], axis=-1)  # (..., n_groups)
        out = np.empty_like(v)
        out[..., self.groups] = red[..., None]
        return out

    def group_max(self, v: np.ndarray) -> np.ndarray:
        """Every entry (last axis) replaced by the max over its group (exact, floats or Fractions): bounds ``(M v)_i``
        and ``(M^T v)_i`` for ``v >= 0``, and the upper end of ``M [lo, hi]``."""
        return self._reduce(v, np.max)

    def group_min(self, v: np.ndarray) -> np.ndarray:
        return self._reduce(v, np.min)

    def apply(self, v: np.ndarray) -> np.ndarray:
        """The layer on rows ``v`` (batch, n): monotone in each coordinate, so it maps the ends of a box to the ends
        of an enclosure of the image."""
        return self.layer.forward(v)

    def norm_up(self, p: str) -> float:
        """``sup ||M||_p = 1`` in every norm (a convex combination of permutation matrices)."""
        return 1.0


#: PyTorch module class names read as sorting layers (deel-torchlip, orthogonium and look-alikes; matched by name, the
#: converted network is then checked against the module's forward by ``from_torch``)
TORCH_KINDS = ("GroupSort", "GroupSort2", "FullSort", "MaxMin")


def from_torch_module(m, path: str, kind: str) -> list:
    """The lipverify layers of a PyTorch sorting module ``m`` of class name ``kind`` (:data:`TORCH_KINDS`), read by
    its attributes:

    * ``GroupSort`` with ``group_size`` (or ``n``; ``None``: the whole vector) — deel-torchlip's ``GroupSort``:
      contiguous groups, ascending;
    * ``GroupSort2`` — ``GroupSort(2)``; ``FullSort`` — ``GroupSort(None)``;
    * ``MaxMin`` with ``axis`` (orthogonium): the halves ``a``, ``b`` become ``[max(a, b), min(a, b)]``, :class:`MaxMin`.
      deel-torchlip's ``MaxMin`` (attribute ``_dim``) computes ``[relu(x), relu(-x)]``, doubling the width: refused,
      saying so.

    A Lipschitz coefficient ``k_coef_lip != 1`` (deel-torchlip's ``_coefficient_lip``) is refused.  The caller checks
    the forward pass against the module's (``from_torch``), which catches a look-alike with other semantics.
    """
    from .errors import ModelFormatError

    where = f"module {path!r} ({kind})"
    coef = getattr(m, "_coefficient_lip", 1.0)
    if float(coef) != 1.0:
        raise ModelFormatError(f"{where}: k_coef_lip={float(coef):g} scales the output; only k_coef_lip=1 is supported "
                               "(put the factor into the next Linear layer)")
    if kind == "MaxMin":
        if hasattr(m, "_dim") and not hasattr(m, "axis"):
            raise ModelFormatError(f"{where}: deel-torchlip's MaxMin computes [relu(x), relu(-x)] (it doubles the width), "
                                   "which is not a sorting layer and is not supported; replace it by nn.Linear with the "
                                   "weight [I; -I] (no bias) followed by nn.ReLU, which computes the same")
        axis = getattr(m, "axis", 1)
        if axis not in (1, -1):
            raise ModelFormatError(f"{where}: axis={axis} is not supported; lipverify sorts flat vectors (axis 1 of a "
                                   "(batch, n) input)")
        return [MaxMin()]
    if kind == "GroupSort2":
        return [GroupSort(2)]
    if kind == "FullSort":
        return [FullSort()]
    for name in ("group_size", "n"):
        if hasattr(m, name):
            g = getattr(m, name)
            break
    else:
        raise ModelFormatError(f"{where}: no attribute group_size (or n) giving the group size")
    for name in ("axis", "dim", "_dim"):
        axis = getattr(m, name, None)
        if axis not in (None, 1, -1):
            raise ModelFormatError(f"{where}: {name}={axis} is not supported; lipverify sorts flat vectors (axis 1 of a "
                                   "(batch, n) input)")
    try:
        return [FullSort() if g is None else GroupSort(int(g))]
    except (TypeError, ValueError) as exc:
        raise ModelFormatError(f"{where}: {exc}") from None
