"""lipverify: certified bounds, exact values and lower bounds of Lipschitz constants of neural networks.

>>> import lipverify as lv
>>> net = lv.Network([lv.Dense([[1, -2], [0, 1]]), lv.ReLU(), lv.Dense([[1, 1]])])
>>> lv.bound(net, "k4", norm="inf").value
3.0
"""

# numpy and scipy.sparse first, near the bottom of the call stack: imported from deep inside the chain of this
# package's imports, numpy.f2py.crackfortran's module body (hundreds of regex compilations, loaded by scipy) ran
# ~50 ms slower on CPython 3.11, a quarter of the whole import (measured with benchmarks/bench_import.py)
import numpy  # noqa: F401
import scipy.sparse  # noqa: F401

from .bounds import METHODS, Comparison, bound, compare
from .certify import certify
from .check import check_lipschitz
from .conv import AvgPool1d, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv1d, Conv2d, MaxPool1d, MaxPool2d, Upsample
from .errors import (
    CertificationError,
    InternalConsistencyError,
    LipVerifyError,
    ModelFormatError,
    NotApplicableError,
    NumericalError,
    ShapeError,
    SolverError,
    UnsupportedLayerError,
)
from .exact import exact
from .io import from_torch, load, save
from .layers import (
    ELU,
    GELU,
    Activation,
    Dense,
    Flatten,
    Hardsigmoid,
    Hardswish,
    Hardtanh,
    Identity,
    Layer,
    LeakyReLU,
    LogSigmoid,
    Mish,
    ReLU,
    ReLU6,
    Sigmoid,
    SiLU,
    Softplus,
    Tanh,
)
from .local import certified_radius, localize
from .lower import lower_bound
from .network import Network
from .norms import NORMS, parse_norm
from .residual import Residual
from .result import Bound, Skipped
from .sort import FullSort, GroupSort, MaxMin

__version__ = "0.1.0"

__all__ = [
    "METHODS", "NORMS", "Activation", "AvgPool2d", "BatchNorm2d", "Bound", "CertificationError", "Comparison", "Conv2d",
    "Dense", "Flatten", "GELU", "MaxPool2d",
    "Identity", "Layer", "LeakyReLU", "LipVerifyError", "ModelFormatError", "Network", "NotApplicableError",
    "InternalConsistencyError", "NumericalError", "ReLU", "Residual", "SiLU", "ShapeError", "Sigmoid", "Skipped",
    "SolverError", "Tanh", "UnsupportedLayerError", "ELU", "Softplus", "Hardtanh", "ReLU6", "Hardswish", "Mish",
    "LogSigmoid", "Hardsigmoid", "bound", "certified_radius", "check_lipschitz", "certify", "compare", "exact",
    "from_torch", "load", "localize", "lower_bound", "parse_norm", "save", "GroupSort", "MaxMin", "FullSort",
    "AvgPool1d", "BatchNorm1d", "Conv1d", "MaxPool1d", "Upsample",
]
