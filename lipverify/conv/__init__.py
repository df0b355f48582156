"""Convolutional layers (:mod:`.layers`) and their numeric kernels (:mod:`.ops`).  The bounds see them through the
network's graph (:mod:`lipverify.ir`): operators in two representations (scipy sparse matrices for the explicit
method, matrix-free convolutions for the implicit one).  Proofs: ``proofs/cnn_explicit.md``,
``proofs/cnn_implicit.md``, ``proofs/maxpool.md``.
"""

from .layers import AvgPool1d, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv1d, Conv2d, MaxPool1d, MaxPool2d, Upsample

__all__ = ["AvgPool1d", "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "Conv1d", "Conv2d", "MaxPool1d", "MaxPool2d", "Upsample"]
