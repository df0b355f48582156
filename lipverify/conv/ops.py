"""Numpy kernels for 2-D convolution and pooling on batches ``(B, C, H, W)``, and their adjoints.

The convolution is an im2col product (``sliding_window_view`` + one BLAS matmul per group); its
adjoint scatters the columns back with one vectorised add per kernel offset.  Each output entry of
:func:`conv2d` is a sum of at most ``(C_in / groups) * kh * kw`` products, each entry of
:func:`conv2d_transpose` of at most ``(C_out / groups) * kh * kw``: the inner dimensions used by the
a-priori rounding-error bound of :func:`lipverify.rigorous.matmul_up` (``proofs/cnn_implicit.md``).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

Pair = tuple[int, int]


def pair(v, name: str, *, minimum: int) -> Pair:
    """``v`` or ``(v, v)`` as a pair of ints ``>= minimum``; ``ValueError`` naming ``name`` otherwise."""
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        out = (int(v), int(v))
    else:
        try:
            a, b = v
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}") from None
        if any(isinstance(x, bool) or not isinstance(x, (int, np.integer)) for x in (a, b)):
            raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
        out = (int(a), int(b))
    if min(out) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v!r}")
    return out


def out_size(n: int, k: int, stride: int, padding: int, dilation: int) -> int:
    """Output length of a sliding window (floor mode, as in PyTorch)."""
    return (n + 2 * padding - dilation * (k - 1) - 1) // stride + 1


def _windows(xp: np.ndarray, kernel: Pair, stride: Pair, dilation: Pair, out: Pair) -> np.ndarray:
    """View ``(B, C, Ho, Wo, kh, kw)`` of the windows of the padded batch ``xp``."""
    kh, kw = kernel
    ext_h, ext_w = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    v = sliding_window_view(xp, (ext_h, ext_w), axis=(2, 3))
    v = v[:, :, :: stride[0], :: stride[1], :: dilation[0], :: dilation[1]]
    return v[:, :, : out[0], : out[1]]


def pad(x: np.ndarray, padding: Pair, value: float = 0.0) -> np.ndarray:
    if padding == (0, 0):
        return x
    ph, pw = padding
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


#: batches are processed in chunks whose column matrices hold about this many floats (cache-friendly)
CHUNK_FLOATS = 1 << 19


def _chunks(b: int, per_item: int) -> list[slice]:
    step = max(1, CHUNK_FLOATS // max(per_item, 1))
    return [slice(i, min(i + step, b)) for i in range(0, b, step)]


def conv2d(x: np.ndarray, kernel: np.ndarray, stride: Pair, padding: Pair, dilation: Pair, groups: int) -> np.ndarray:
    """Cross-correlation (PyTorch's ``conv2d`` without bias) of ``x`` ``(B, C_in, H, W)`` with ``kernel``
    ``(C_out, C_in / groups, kh, kw)``: ``kernel (og, cg kh kw) @ columns (B, cg kh kw, Ho Wo)`` per group."""
    b, c_in, h, w = x.shape
    c_out, cg, kh, kw = kernel.shape
    ho = out_size(h, kh, stride[0], padding[0], dilation[0])
    wo = out_size(w, kw, stride[1], padding[1], dilation[1])
    parts = _chunks(b, c_in * kh * kw * ho * wo)
    if len(parts) > 1:
        out = np.empty((b, c_out, ho, wo), dtype=np.result_type(x.dtype, kernel.dtype))
        for sl in parts:
            out[sl] = _conv2d(x[sl], kernel, stride, padding, dilation, groups)
        return out
    return _conv2d(x, kernel, stride, padding, dilation, groups)


def _conv2d(x, kernel, stride, padding, dilation, groups):
    b, c_in, h, w = x.shape
    c_out, cg, kh, kw = kernel.shape
    ho = out_size(h, kh, stride[0], padding[0], dilation[0])
    wo = out_size(w, kw, stride[1], padding[1], dilation[1])
    view = _windows(pad(x, padding), (kh, kw), stride, dilation, (ho, wo))  # (B, C, Ho, Wo, kh, kw)
    og = c_out // groups
    cols = view.transpose(0, 1, 4, 5, 2, 3)  # (B, C, kh, kw, Ho, Wo)
    if groups == 1:
        out = np.matmul(kernel.reshape(c_out, cg * kh * kw), cols.reshape(b, cg * kh * kw, ho * wo))
    else:
        cols = cols.reshape(b, groups, cg * kh * kw, ho * wo)
        out = np.einsum("gok,bgkp->bgop", kernel.reshape(groups, og, cg * kh * kw), cols, optimize=True)
    return out.reshape(b, c_out, ho, wo)


def conv2d_transpose(y: np.ndarray, kernel: np.ndarray, in_hw: Pair, stride: Pair, padding: Pair, dilation: Pair,
                     groups: int) -> np.ndarray:
    """The adjoint of :func:`conv2d`: ``y`` ``(B, C_out, Ho, Wo)`` to ``(B, C_in, H, W)``; the columns
    ``kernel^T (cg kh kw, og) @ y (B, og, Ho Wo)`` are added back at every kernel offset."""
    b, c_out, ho, wo = y.shape
    _, cg, kh, kw = kernel.shape
    if stride == (1, 1) and padding[0] <= dilation[0] * (kh - 1) and padding[1] <= dilation[1] * (kw - 1):
        # stride 1: the adjoint is the convolution with the flipped, channel-transposed kernel and padding
        # d (k - 1) - p (each input entry: the same og kh kw products, in another order)
        og = c_out // groups
        flipped = kernel[:, :, ::-1, ::-1].reshape(groups, og, cg, kh, kw).transpose(0, 2, 1, 3, 4)
        flipped = np.ascontiguousarray(flipped).reshape(groups * cg, og, kh, kw)
        pad_t = (dilation[0] * (kh - 1) - padding[0], dilation[1] * (kw - 1) - padding[1])
        return conv2d(y, flipped, (1, 1), pad_t, dilation, groups)
    parts = _chunks(b, cg * groups * kh * kw * ho * wo)
    if len(parts) > 1:
        return np.concatenate([_conv2d_transpose(y[sl], kernel, in_hw, stride, padding, dilation, groups) for sl in parts])
    return _conv2d_transpose(y, kernel, in_hw, stride, padding, dilation, groups)


def _conv2d_transpose(y, kernel, in_hw, stride, padding, dilation, groups):
    b, c_out, ho, wo = y.shape
    _, cg, kh, kw = kernel.shape
    h, w = in_hw
    og = c_out // groups
    c_in = cg * groups
    xp = np.zeros((b, c_in, h + 2 * padding[0], w + 2 * padding[1]), dtype=np.result_type(y.dtype, kernel.dtype))
    if groups == 1:
        kt = np.ascontiguousarray(kernel.reshape(c_out, cg * kh * kw).T)
        cols = np.matmul(kt, y.reshape(b, c_out, ho * wo))
    else:
        ym = y.reshape(b, groups, og, ho * wo)
        cols = np.einsum("gok,bgop->bgkp", kernel.reshape(groups, og, cg * kh * kw), ym, optimize=True)
    cols = cols.reshape(b, c_in, kh, kw, ho, wo)
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dilation[0], j * dilation[1]
            xp[:, :, r0:r0 + stride[0] * (ho - 1) + 1:stride[0], c0:c0 + stride[1] * (wo - 1) + 1:stride[1]] += cols[:, :, i, j]
    return xp[:, :, padding[0]:padding[0] + h, padding[1]:padding[1] + w]


def pool_windows(x: np.ndarray, kernel: Pair, stride: Pair, padding: Pair, fill: float) -> np.ndarray:
    """View ``(B, C, Ho, Wo, kh, kw)`` of the pooling windows of ``x`` padded with ``fill``."""
    h, w = x.shape[2:]
    ho = out_size(h, kernel[0], stride[0], padding[0], 1)
    wo = out_size(w, kernel[1], stride[1], padding[1], 1)
    return _windows(pad(x, padding, fill), kernel, stride, (1, 1), (ho, wo))


def window_sum_transpose(y: np.ndarray, in_hw: Pair, kernel: Pair, stride: Pair, padding: Pair) -> np.ndarray:
    """``S^T y`` for the 0/1 window matrix ``S`` of a pooling layer (padding cells dropped)."""
    b, c, ho, wo = y.shape
    h, w = in_hw
    xp = np.zeros((b, c, h + 2 * padding[0], w + 2 * padding[1]), dtype=y.dtype)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            xp[:, :, i:i + stride[0] * (ho - 1) + 1:stride[0], j:j + stride[1] * (wo - 1) + 1:stride[1]] += y
    return xp[:, :, padding[0]:padding[0] + h, padding[1]:padding[1] + w]


def window_index(shape: tuple[int, int, int], kernel: Pair, stride: Pair, padding: Pair) -> np.ndarray:
    """Flat input indices ``(C*Ho*Wo, kh*kw)`` of every pooling window; ``-1`` marks a padding cell."""
    c, h, w = shape
    idx = np.arange(c * h * w, dtype=np.float64).reshape(1, c, h, w)
    win = pool_windows(idx, kernel, stride, padding, -1.0)[0]
    return win.reshape(-1, kernel[0] * kernel[1]).astype(np.int64)


def max_overlap(shape: tuple[int, int, int], kernel: Pair, stride: Pair, padding: Pair) -> int:
    """The largest number of pooling windows that contain one input cell."""
    ho = out_size(shape[1], kernel[0], stride[0], padding[0], 1)
    wo = out_size(shape[2], kernel[1], stride[1], padding[1], 1)
    counts = window_sum_transpose(np.ones((1, 1, ho, wo)), shape[1:], kernel, stride, padding)
    return int(np.max(counts))
