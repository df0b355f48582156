"""Max pooling as a step of the network graph (``proofs/maxpool.md``).

``f(x) - f(y) = M (x - y)`` on a max-pooling layer for a matrix ``M >= 0`` whose rows lie in the simplex of
their windows.  :class:`TensorPool` works on tensors (implicit representation), :class:`SparsePool` through
the 0/1 window matrix ``S`` (explicit representation, ``M <= S`` entrywise).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from ..conv import ops
from ..conv.layers import MaxPool2d
from ..rigorous import _check_finite, relative_factor, up


class TensorPool:
    """Max pooling on tensors (implicit): window max forward, window sum of the transpose backward."""

    def __init__(self, layer: MaxPool2d, in_shape):
        self.layer = layer
        self.in_shape = tuple(in_shape)
        self.out_shape = layer.output_shape(self.in_shape)
        self.n_in = int(np.prod(self.in_shape))
        self.n_out = int(np.prod(self.out_shape))
        self.k = layer.kernel_size[0] * layer.kernel_size[1]
        self.overlap = layer.max_overlap(self.in_shape)

    def _win(self, v, fill):
        b = v.shape[0]
        lay = self.layer
        return ops.pool_windows(v.reshape(b, *self.in_shape), lay.kernel_size, lay.stride, lay.padding, fill)

    def window_max(self, v):
        return self._win(v, -np.inf).max(axis=(4, 5)).reshape(v.shape[0], -1)

    def window_min(self, v):
        return self._win(v, np.inf).min(axis=(4, 5)).reshape(v.shape[0], -1)

    def window_sum_t(self, u):
        b = u.shape[0]
        lay = self.layer
        out = ops.window_sum_transpose(u.reshape(b, *self.out_shape), self.in_shape[1:], lay.kernel_size, lay.stride,
                                       lay.padding)
        return out.reshape(b, -1)

    def window_sum_t_up(self, u):
        """Upper bound of ``S^T u`` for rows ``u >= 0`` (``S`` the 0/1 window matrix): sums of ``<= overlap`` terms."""
        return _check_finite(up(self.window_sum_t(u) * relative_factor(self.overlap)), "max-pool backward pass")

    def norm_up(self, p: str) -> float:
        """``sup ||M||_p`` over the max-pool set: 1 (l∞), max overlap (l1), sqrt(max overlap) (l2)."""
        if p == "inf":
            return 1.0
        if p == "1":
            return float(self.overlap)
        return float(up(math.sqrt(self.overlap)))


class SparsePool(TensorPool):
    """Max pooling through its 0/1 window matrix ``S`` (explicit): ``M <= S`` entrywise, same support."""

    def __init__(self, layer: MaxPool2d, in_shape):
        super().__init__(layer, in_shape)
        idx = layer.window_index(self.in_shape)
        rows = np.repeat(np.arange(idx.shape[0]), idx.shape[1])
        cols = idx.ravel()
        ok = cols >= 0
        self.matrix = sp.csr_matrix((np.ones(int(ok.sum())), (rows[ok], cols[ok])), shape=(self.n_out, self.n_in))
        self.matrix.sort_indices()
        self.matrix_t = self.matrix.T.tocsr()
        counts = np.diff(self.matrix_t.indptr)
        self.overlap = int(counts.max(initial=0))

    def window_max(self, v):
        m = self.matrix
        return np.maximum.reduceat(v[:, m.indices], m.indptr[:-1], axis=1)

    def window_min(self, v):
        m = self.matrix
        return np.minimum.reduceat(v[:, m.indices], m.indptr[:-1], axis=1)

    def window_sum_t(self, u):
        return np.asarray((self.matrix_t @ u.T).T)
