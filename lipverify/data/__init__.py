"""Data shipped with lipverify: the Fashion-MNIST CNN of the report's Test 4 (``fashion_cnn.onnx``, trained by
``train_fashion_cnn.py``) and the first 100 Fashion-MNIST test images (``fashion_test100.npz``, written by
``make_fixture.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: the archive of :func:`fashion_test` (arrays ``x`` float64 in [0, 1], shape (100, 1, 28, 28), and ``y`` int64)
FASHION_TEST = Path(__file__).resolve().parent / "fashion_test100.npz"


def fashion_test(n: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` (at most 100) Fashion-MNIST test images and labels: ``x`` float64 of shape ``(n, 1, 28, 28)``,
    grey levels ``pixel / 255`` in [0, 1] (the scaling the shipped CNN was trained with), ``y`` int64 in 0..9.

    Read from the shipped ``fashion_test100.npz`` (``python -m lipverify.data.make_fixture`` rewrites it from
    Debian's ``dataset-fashion-mnist``); no download.

    >>> from lipverify.data import fashion_test
    >>> x, y = fashion_test(3)
    >>> x.shape, x.dtype, y.tolist()
    ((3, 1, 28, 28), dtype('float64'), [9, 2, 1])
    """
    n = int(n)
    with np.load(FASHION_TEST) as data:
        x, y = data["x"], data["y"]
    if not 1 <= n <= len(x):
        raise ValueError(f"fashion_test: n must be in 1..{len(x)} (the images shipped in {FASHION_TEST.name}), got {n}")
    return x[:n].copy(), y[:n].copy()
