"""Linear layers as operators, in two representations (``proofs/cnn_explicit.md``, ``proofs/cnn_implicit.md``).

* :class:`SparseOp` — the layer's matrix as a ``scipy.sparse`` CSR matrix (explicit method);
* :class:`ConvOp`, :class:`DenseOp`, :class:`ChannelScaleOp`, :class:`UpsampleOp` — matrix-free operators (implicit
  method).

All are :class:`scipy.sparse.linalg.LinearOperator` subclasses (``matvec``/``rmatvec``/``matmat``, dtype
float64 given, never guessed) with the same batched interface on rows ``X`` of shape ``(B, n)``:
``forward``/``backward`` (``W x`` / ``W^T y`` in float) and the rigorous nonnegative passes
``abs_forward_up``/``abs_backward_up``: for ``X >= 0`` an entrywise upper bound, in exact real arithmetic,
of ``(|W| + R) X`` where ``R`` bounds ``|W_exact - W_float|`` entrywise.  The rounding error of a product of
nonnegative operands with at most ``k`` products per entry is bounded a priori by
``gamma_k * computed + 2 (k + 1) eta`` (Higham (3.13), the bound of :func:`lipverify.rigorous.matmul_up`).
"""

from __future__ import annotations

import math
import weakref

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator

from ..conv import ops
from ..conv.layers import Conv2d
from ..errors import NumericalError
from ..rigorous import (
    _check_finite,
    _finite_float,
    _pow2_scale,
    _unscale,
    abs_norm_upper,
    add_up,
    bound_nonneg,
    nonneg_spectral_upper,
    spectral_norm_upper,
    up,
)

#: |W| (+ radius) of each layer, computed once per layer object (layers are immutable)
_ABS_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def cached_abs(layer, key: str, compute) -> np.ndarray:
    """``compute()`` (an absolute-value weight array), remembered for the immutable ``layer``."""
    per_layer = _ABS_CACHE.setdefault(layer, {})
    if key not in per_layer:
        arr = compute()
        arr.setflags(write=False)
        per_layer[key] = arr
    return per_layer[key]


class BatchedOp(LinearOperator):
    """Base: ``shape = (n_out, n_in)``; subclasses define ``forward``/``backward`` on row batches and
    ``abs_forward``/``abs_backward`` (float passes with ``|W| + R``) plus the inner dimensions ``k_forward``,
    ``k_backward`` of those passes."""

    k_forward: int = 1
    k_backward: int = 1
    has_radius: bool = False

    def __init__(self, n_out: int, n_in: int):
        super().__init__(dtype=np.float64, shape=(n_out, n_in))

    # scipy LinearOperator protocol (columns) on top of the batched row interface
    def _matmat(self, x):
        return self.forward(np.asarray(x, dtype=np.float64).T).T

    def _rmatmat(self, y):
        return self.backward(np.asarray(y, dtype=np.float64).T).T

    def _matvec(self, x):
        return self.forward(np.asarray(x, dtype=np.float64).reshape(1, -1))[0]

    def _rmatvec(self, y):
        return self.backward(np.asarray(y, dtype=np.float64).reshape(1, -1))[0]

    def _adjoint(self):
        return _Adjoint(self)

    def abs_operator(self) -> LinearOperator:
        """``|W| + R`` as a LinearOperator (float, no rounding control): for tests of adjointness."""
        return _AbsView(self)

    # rigorous passes
    def abs_forward_up(self, x: np.ndarray) -> np.ndarray:
        """Upper bound of ``(|W| + R) x`` for rows ``x >= 0``."""
        return bound_nonneg(self.abs_forward(x), self.k_forward)

    def abs_backward_up(self, y: np.ndarray) -> np.ndarray:
        """Upper bound of ``(|W| + R)^T y`` for rows ``y >= 0``."""
        return bound_nonneg(self.abs_backward(y), self.k_backward)

    def radius_forward_up(self, x: np.ndarray) -> np.ndarray:
        """Upper bound of ``R x`` for rows ``x >= 0`` (zero without radius)."""
        raise NotImplementedError

    def radius_backward_up(self, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def norm_up(self, p: str) -> float:
        """Upper bound of ``sup ||W||_p`` over ``|W - W_float| <= R``.  l1/l∞: one nonnegative pass of ones
        (exact up to rounding); l2: :meth:`l2_up`."""
        if p == "inf":
            return float(np.max(self.abs_forward_up(np.ones((1, self.shape[1])))))
        if p == "1":
            return float(np.max(self.abs_backward_up(np.ones((1, self.shape[0])))))
        return self.l2_up()

    def l2_up(self, iterations: int = 30) -> float:
        """Upper bound of ``||W||_2`` through the nonnegative majorant ``N = |W| + R`` (``||W||_2 <= ||N||_2``).

        ``N`` is first scaled by an exact power of two ``2^-e`` to largest entry in ``[1/2, 1)`` (entries that
        underflow are rounded up, :meth:`scaled_majorant`), so entries anywhere in the float range give a bound; on
        the scaled ``N'``: Collatz–Wielandt ``||N'||_2^2 <= max_i (B x)_i / x_i`` for ``B = N'^T N'`` and any ``x > 0``
        (``x`` from power iteration, floored at ``1e-6`` to be positive, the quotient rounded up), never above
        ``sqrt(||N'||_1 ||N'||_∞)``; the result times ``2^e`` rounded up. The same argument as
        :func:`lipverify.rigorous.nonneg_spectral_upper`, on an operator. Raises :class:`NumericalError` when the
        bound is not a float. Proof: ``proofs/cnn_implicit.md`` (K* per layer, 1.).
        """
        return _finite_float(self._majorant_l2(iterations), f"{type(self).__name__}.l2_up (shape {self.shape})")

    def scaled_majorant(self) -> tuple[BatchedOp | None, int]:
        """``(op, e)``: an operator whose nonnegative passes use a float matrix ``N' >= 2^-e (|W| + R)`` entrywise with
        ``max N'`` in ``[1/2, 1)``; ``(None, 0)`` when ``|W| + R`` is zero."""
        raise NotImplementedError(f"{type(self).__name__} has no scaled nonnegative majorant; it must override l2_up")

    def _majorant_l2(self, iterations: int) -> float:
        """:meth:`l2_up` before the finiteness check: ``inf`` when the bound exceeds the float range."""
        op, e = self.scaled_majorant()
        if op is None:
            return 0.0
        return float(_unscale(_collatz_wielandt_up(op, iterations), e, up))


def _collatz_wielandt_up(op: BatchedOp, iterations: int) -> float:
    """Upper bound of ``||N||_2`` for the nonnegative matrix ``N`` of ``op``'s passes, ``max N`` in ``[1/2, 1)``
    (then no pass overflows, and ``||N||_1 ||N||_∞ >= 1/4`` does not underflow); ``proofs/cnn_implicit.md``."""
    cheap = float(up(math.sqrt(up(op.norm_up("1") * op.norm_up("inf")))))
    x = np.ones((1, op.shape[1]))
    for _ in range(iterations):
        y = op.abs_backward(op.abs_forward(x))  # plain floats: only chooses x
        m = float(np.max(y))
        if not (m > 0 and math.isfinite(m)):
            return cheap
        x = y / m
    # any x > 0 gives a valid bound; the floor makes x positive (zero columns of N give zeros) and keeps the
    # quotients below max(B x) 10^6, so the value of the floor decides tightness, never soundness
    x = np.maximum(x, 1e-6)
    bx = op.abs_backward_up(op.abs_forward_up(x))  # >= N^T (N x) in exact arithmetic
    rho = float(np.max(up(bx / x)))
    return min(cheap, float(up(math.sqrt(rho))))


class _Adjoint(LinearOperator):
    def __init__(self, op: BatchedOp):
        self.op = op
        super().__init__(dtype=np.float64, shape=(op.shape[1], op.shape[0]))

    def _matvec(self, x):
        return self.op._rmatvec(x)

    def _rmatvec(self, y):
        return self.op._matvec(y)

    def _matmat(self, x):
        return self.op._rmatmat(x)


class _AbsView(LinearOperator):
    def __init__(self, op: BatchedOp):
        self.op = op
        super().__init__(dtype=np.float64, shape=op.shape)

    def _matvec(self, x):
        return self.op.abs_forward(np.asarray(x, dtype=np.float64).reshape(1, -1))[0]

    def _rmatvec(self, y):
        return self.op.abs_backward(np.asarray(y, dtype=np.float64).reshape(1, -1))[0]


# --------------------------------------------------------------------------- explicit


class SparseOp(BatchedOp):
    """A layer as an explicit CSR matrix ``matrix`` with optional entrywise radius matrix ``radius``."""

    def __init__(self, matrix, radius=None):
        self.matrix = sp.csr_matrix(matrix, dtype=np.float64)
        self.radius = None if radius is None else sp.csr_matrix(radius, dtype=np.float64)
        self.has_radius = self.radius is not None and self.radius.nnz > 0
        absm = abs(self.matrix)
        self.abs_matrix = absm if not self.has_radius else _sparse_add_up(absm, self.radius)
        self.abs_matrix_t = self.abs_matrix.T  # a CSC view, no copy
        nnz_rows = np.diff(self.abs_matrix.indptr)
        nnz_cols = np.bincount(self.abs_matrix.indices, minlength=self.abs_matrix.shape[1])
        self.k_forward = max(int(nnz_rows.max(initial=0)), 1)
        self.k_backward = max(int(nnz_cols.max(initial=0)), 1)
        super().__init__(*self.matrix.shape)

    def forward(self, x):
        return np.asarray((self.matrix @ x.T).T)

    def backward(self, y):
        return np.asarray((self.matrix.T @ y.T).T)

    def abs_forward(self, x):
        return np.asarray((self.abs_matrix @ x.T).T)

    def abs_backward(self, y):
        return np.asarray((self.abs_matrix_t @ y.T).T)

    def radius_forward_up(self, x):
        return bound_nonneg(np.asarray((self.radius @ x.T).T), self.k_forward)

    def radius_backward_up(self, y):
        return bound_nonneg(np.asarray((self.radius.T @ y.T).T), self.k_backward)

    def l2_up(self, iterations: int = 30) -> float:
        """The smaller of the Collatz–Wielandt bound of ``|| |W| + R ||_2`` (:func:`lipverify.rigorous.nonneg_spectral_upper`
        on the majorant matrix, scaled by a power of two there) and, when the matrix has at most ``DENSE_L2_LIMIT``
        entries, its rigorous spectral norm (:func:`lipverify.rigorous.spectral_norm_upper`, radius included).
        Raises :class:`NumericalError` when neither is a float."""
        n_out, n_in = self.shape
        try:
            value = nonneg_spectral_upper(self.abs_matrix, iterations)
        except NumericalError:
            value = math.inf  # the majorant's bound left the float range; the dense bound may not
        if n_out * n_in <= DENSE_L2_LIMIT:
            if not self.has_radius:
                value = min(value, spectral_norm_upper(self.matrix.toarray()))
            else:
                value = min(value, abs_norm_upper(self.matrix.toarray(), self.radius.toarray(), "2"))
        return _finite_float(value, f"SparseOp.l2_up ({n_out}x{n_in} matrix)")


#: explicit l2 norms use a dense verified Cholesky up to this many matrix entries
DENSE_L2_LIMIT = 4_000_000


def _sparse_add_up(a, r):
    """``a + r`` (nonnegative sparse, same shape) rounded upward entrywise."""
    s = (a + r).tocsr()
    s.data = up(s.data)
    return s


# --------------------------------------------------------------------------- implicit


class ConvOp(BatchedOp):
    """A :class:`~lipverify.conv.Conv2d` (bias dropped) on a fixed input shape, never as a matrix.

    ``kernel_radius`` bounds ``|exact kernel - kernel|`` entrywise.  Inner dimensions: ``(C_in/groups) kh kw``
    forward and ``(C_out/groups) kh kw`` backward (the products in one output, resp. input, entry).
    """

    def __init__(self, layer: Conv2d, in_shape, kernel: np.ndarray | None = None, kernel_radius: np.ndarray | None = None):
        self.layer = layer
        self.in_shape = tuple(in_shape)
        self.out_shape = layer.output_shape(self.in_shape)
        self.kernel = layer.weight if kernel is None else kernel
        radius = layer.weight_radius if kernel is None else kernel_radius
        self.has_radius = radius is not None and bool(np.any(radius))
        self.kernel_radius = radius if self.has_radius else None
        if kernel is None:
            self.abs_kernel = cached_abs(layer, "kernel", lambda: up(np.abs(self.kernel) + radius) if self.has_radius
                                         else np.abs(self.kernel))
        else:
            self.abs_kernel = up(np.abs(self.kernel) + radius) if self.has_radius else np.abs(self.kernel)
        co, cg, kh, kw = self.kernel.shape
        self.k_forward = cg * kh * kw
        self.k_backward = (co // layer.groups) * kh * kw
        super().__init__(int(np.prod(self.out_shape)), int(np.prod(self.in_shape)))

    def _fwd(self, x, kernel):
        b = x.shape[0]
        out = self.layer.apply_linear(x.reshape(b, *self.in_shape), kernel)
        return out.reshape(b, -1)

    def _bwd(self, y, kernel):
        b = y.shape[0]
        out = self.layer.apply_transpose(y.reshape(b, *self.out_shape), self.in_shape[1:], kernel)
        return out.reshape(b, -1)

    def forward(self, x):
        return self._fwd(x, self.kernel)

    def backward(self, y):
        return self._bwd(y, self.kernel)

    def max_overlap(self) -> int:
        """The largest number of (output position, tap) pairs that read one input cell (exact small integers)."""
        lay = self.layer
        ones = np.ones((1, 1, *self.out_shape[1:]))
        counts = ops.conv2d_transpose(ones, np.ones((1, 1, *self.kernel.shape[2:])), self.in_shape[1:], lay.stride,
                                      lay.padding, lay.dilation, 1)
        return int(np.max(counts))

    def l2_up(self, iterations: int = 30) -> float:
        """The smallest of three sound bounds of ``||W||_2`` (``proofs/cnn_implicit.md``): the nonnegative bound of
        the base class, ``sqrt(c) max_g ||K_g||_2`` (``K_g`` the ``og x (cg kh kw)`` kernel matrix of group ``g``,
        ``c`` = :meth:`max_overlap`: the im2col map has norm ``sqrt(c)``), and ``sum_taps max_g ||K_g[:, :, i, j]||_2``
        (each tap is a partial shift, a contraction).  Spectral norms of kernel matrices are verified
        (:func:`lipverify.rigorous.abs_norm_upper`, radius included)."""
        co, cg, kh, kw = self.kernel.shape
        groups = self.layer.groups
        og = co // groups
        rad = self.kernel_radius

        def block_norm(k, r) -> float:
            return abs_norm_upper(np.ascontiguousarray(k), None if r is None else np.ascontiguousarray(r), "2")

        best = self._majorant_l2(iterations)
        im2col = 0.0
        for g in range(groups):
            sl = slice(g * og, (g + 1) * og)
            kg = self.kernel[sl].reshape(og, cg * kh * kw)
            im2col = max(im2col, block_norm(kg, None if rad is None else rad[sl].reshape(og, cg * kh * kw)))
        im2col = float(up(im2col * float(up(math.sqrt(self.max_overlap())))))
        taps = 0.0
        for i in range(kh):
            for j in range(kw):
                tap = 0.0
                for g in range(groups):
                    sl = slice(g * og, (g + 1) * og)
                    tap = max(tap, block_norm(self.kernel[sl, :, i, j], None if rad is None else rad[sl, :, i, j]))
                taps = float(up(taps + tap))
        return _finite_float(min(best, im2col, taps), f"ConvOp.l2_up (kernel {self.kernel.shape}, input {self.in_shape})")

    def scaled_majorant(self) -> tuple[ConvOp | None, int]:
        """The convolution with kernel ``fl(2^-e up(|K| + R_K))``, rounded up where the scaling underflowed (R11 of
        ``proofs/rigorous_arithmetic.md``), ``e`` = ``frexp(max up(|K| + R_K))[1]``."""
        k = _check_finite(self.abs_kernel, f"ConvOp (kernel {self.kernel.shape}): |K| + R")
        top = float(np.max(k, initial=0.0))
        if top == 0.0:
            return None, 0
        e = math.frexp(top)[1]
        scaled, inexact = _pow2_scale(k, e)
        return ConvOp(self.layer, self.in_shape, np.where(inexact, up(scaled), scaled)), e

    def abs_forward(self, x):
        return self._fwd(x, self.abs_kernel)

    def abs_backward(self, y):
        return self._bwd(y, self.abs_kernel)

    def radius_forward_up(self, x):
        return bound_nonneg(self._fwd(x, self.kernel_radius), self.k_forward)

    def radius_backward_up(self, y):
        return bound_nonneg(self._bwd(y, self.kernel_radius), self.k_backward)


class DenseOp(BatchedOp):
    """A Dense layer's matrix (dense numpy; a Dense layer is its matrix in both methods)."""

    def __init__(self, weight: np.ndarray, radius: np.ndarray | None = None, layer=None):
        self.weight = weight
        self.layer = layer  # the Dense layer (its exact weights serve the exact-arithmetic passes), or None
        self.has_radius = radius is not None and bool(np.any(radius))
        self.radius = radius if self.has_radius else None

        def absolute():
            return add_up(np.abs(weight), radius) if self.has_radius else np.abs(weight)

        self.abs_weight = absolute() if layer is None else cached_abs(layer, "weight", absolute)
        self.k_forward = max(weight.shape[1], 1)
        self.k_backward = max(weight.shape[0], 1)
        super().__init__(*weight.shape)

    def forward(self, x):
        return x @ self.weight.T

    def backward(self, y):
        return y @ self.weight

    def abs_forward(self, x):
        return x @ self.abs_weight.T

    def abs_backward(self, y):
        return y @ self.abs_weight

    def radius_forward_up(self, x):
        return bound_nonneg(x @ self.radius.T, self.k_forward)

    def radius_backward_up(self, y):
        return bound_nonneg(y @ self.radius, self.k_backward)

    def norm_up(self, p: str) -> float:
        """``sup ||W||_p`` over ``|W - W_float| <= R`` by :func:`lipverify.rigorous.abs_norm_upper` (every norm)."""
        return abs_norm_upper(self.weight, self.radius, p)

    def l2_up(self, iterations: int = 30) -> float:
        return abs_norm_upper(self.weight, self.radius, "2")


class ChannelScaleOp(BatchedOp):
    """``x -> s_c x`` per channel (eval-mode BatchNorm without its shift); ``radius`` bounds ``|s_exact - s|``."""

    def __init__(self, scale: np.ndarray, radius: np.ndarray, in_shape):
        self.in_shape = tuple(in_shape)
        hw = int(np.prod(self.in_shape[1:]))
        self.scale = np.repeat(scale, hw)
        self.radius = np.repeat(radius, hw)
        self.has_radius = bool(np.any(radius))
        with np.errstate(over="ignore"):  # an overflow is refused where abs_scale is used (check_finite, l2_up)
            self.abs_scale = up(np.abs(self.scale) + self.radius)
        n = self.scale.size
        super().__init__(n, n)

    def forward(self, x):
        return x * self.scale

    backward = forward

    def abs_forward(self, x):
        return x * self.abs_scale

    abs_backward = abs_forward

    def radius_forward_up(self, x):
        return bound_nonneg(x * self.radius, 1)

    radius_backward_up = radius_forward_up

    def l2_up(self, iterations: int = 30) -> float:
        """``||diag(s)||_2 = max |s_c|``, bounded by ``max up(|s_c| + r_c)``; ``NumericalError`` if that overflowed."""
        return _finite_float(np.max(self.abs_scale), f"ChannelScaleOp.l2_up (BatchNorm scale of {self.in_shape[0]} channels)")

    def sparse(self) -> SparseOp:
        return SparseOp(sp.diags(self.scale, format="csr"), sp.diags(self.radius, format="csr"))


class UpsampleOp(BatchedOp):
    """Nearest upsampling by integer factors ``scales`` (one per spatial axis) on ``in_shape = (C, *spatial)``,
    matrix-free: forward repeats every cell ``k_i`` times along axis ``i``, backward (the adjoint) sums each block of
    ``k_1 ⋯ k_d`` copies.  The matrix ``U`` is 0/1 with one 1 per row and ``K = k_1 ⋯ k_d`` per column, exact in
    float (no radius), so ``|U| = U``; ``||U||_∞ = 1``, ``||U||_1 = K``, ``||U||_2 = sqrt(K)``
    (``proofs/cnn_explicit.md``, "Nearest upsampling").  Inner dimensions: 1 forward (copies), ``K`` backward."""

    def __init__(self, in_shape, scales):
        self.in_shape = tuple(int(d) for d in in_shape)
        self.scales = tuple(int(k) for k in scales)
        if len(self.scales) != len(self.in_shape) - 1 or min(self.scales, default=0) < 1:
            raise ValueError(f"UpsampleOp: scales {self.scales} do not fit the input shape {self.in_shape}")
        self.out_shape = (self.in_shape[0], *(n * k for n, k in zip(self.in_shape[1:], self.scales)))
        self.block = math.prod(self.scales)
        self.k_forward = 1
        self.k_backward = self.block
        super().__init__(int(np.prod(self.out_shape)), int(np.prod(self.in_shape)))

    def forward(self, x):
        b = x.shape[0]
        v = x.reshape(b, *self.in_shape)
        for axis, k in enumerate(self.scales, start=2):
            if k != 1:
                v = np.repeat(v, k, axis=axis)
        return v.reshape(b, -1)

    def backward(self, y):
        b = y.shape[0]
        split = [b, self.in_shape[0]]
        for n, k in zip(self.in_shape[1:], self.scales):
            split += [n, k]
        axes = tuple(range(3, len(split), 2))
        return y.reshape(split).sum(axis=axes).reshape(b, -1)

    abs_forward = forward
    abs_backward = backward

    def radius_forward_up(self, x):
        return np.zeros((x.shape[0], self.shape[0]))

    def radius_backward_up(self, y):
        return np.zeros((y.shape[0], self.shape[1]))

    def norm_up(self, p: str) -> float:
        """The exact norms: 1 (l∞), ``K`` (l1), ``sqrt(K)`` rounded up (l2)."""
        if p == "inf":
            return 1.0
        if p == "1":
            return float(self.block)  # an integer far below 2^53
        return self.l2_up()

    def l2_up(self, iterations: int = 30) -> float:
        return float(up(math.sqrt(self.block)))

    def matrix(self) -> sp.csr_matrix:
        """The 0/1 matrix ``U`` (one 1 per row, at the copied input cell)."""
        n_out, n_in = self.shape
        cols = self.forward(np.arange(n_in, dtype=np.float64)[None])[0].astype(np.int64)
        return sp.csr_matrix((np.ones(n_out), (np.arange(n_out), cols)), shape=(n_out, n_in))

    def sparse(self) -> SparseOp:
        return SparseOp(self.matrix())
