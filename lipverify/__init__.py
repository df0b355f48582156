"""lipverify: certified bounds, exact values and lower bounds of Lipschitz constants of neural networks.

>>> import lipverify as lv
>>> net = lv.Network([lv.Dense([[1, -2], [0, 1]]), lv.ReLU(), lv.Dense([[1, 1]])])
>>> lv.bound(net, "k4", norm="inf").value
3.0
"""

from .bounds import METHODS, Comparison, bound, compare
from .errors import (
    CertificationError,
    LipVerifyError,
    ModelFormatError,
    NotApplicableError,
    NumericalError,
    ShapeError,
    SolverError,
    UnsupportedLayerError,
)
from .exact import exact
from .layers import GELU, Activation, Dense, Flatten, Identity, Layer, LeakyReLU, ReLU, Sigmoid, SiLU, Tanh
from .lower import lower_bound
from .network import Network
from .norms import NORMS, parse_norm
from .result import Bound, Skipped

__version__ = "0.1.0"

__all__ = [
    "METHODS", "NORMS", "Activation", "Bound", "CertificationError", "Comparison", "Dense", "Flatten", "GELU",
    "Identity", "Layer", "LeakyReLU", "LipVerifyError", "ModelFormatError", "Network", "NotApplicableError",
    "NumericalError", "ReLU", "SiLU", "ShapeError", "Sigmoid", "Skipped", "SolverError", "Tanh",
    "UnsupportedLayerError", "bound", "compare", "exact", "lower_bound", "parse_norm",
]
