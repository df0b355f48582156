"""Convolutional networks: layers (:mod:`.layers`), operators in two representations (:mod:`.operators`:
scipy sparse matrices for the explicit method, matrix-free convolutions for the implicit one) and the
bounds K*, K1, K3, K4 on them (:mod:`.bounds`).  Proofs: ``proofs/cnn_explicit.md``,
``proofs/cnn_implicit.md``, ``proofs/maxpool.md``.
"""

from .layers import AvgPool2d, BatchNorm2d, Conv2d, MaxPool2d
from .program import EXPLICIT_NNZ_LIMIT, build_program, is_cnn

__all__ = ["EXPLICIT_NNZ_LIMIT", "AvgPool2d", "BatchNorm2d", "Conv2d", "MaxPool2d", "build_program", "is_cnn"]
