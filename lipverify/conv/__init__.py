"""Convolutional layers (:mod:`.layers`) and their numeric kernels (:mod:`.ops`).  The bounds see them through the
network's graph (:mod:`lipverify.ir`): operators in two representations (scipy sparse matrices for the explicit
method, matrix-free convolutions for the implicit one).  Proofs: ``proofs/cnn_explicit.md``,
``proofs/cnn_implicit.md``, ``proofs/maxpool.md``.
"""

from .layers import AvgPool2d, BatchNorm2d, Conv2d, MaxPool2d

__all__ = ["AvgPool2d", "BatchNorm2d", "Conv2d", "MaxPool2d"]
