"""Reading and writing networks: the documented ``.npz`` format (:mod:`lipverify.io.npz`), ONNX
(:mod:`lipverify.io.onnx`) and PyTorch ``.pt``/``.pth`` files (:mod:`lipverify.io.torch`, optional extra)."""

from __future__ import annotations

import os

from ..errors import ModelFormatError
from ..network import Network
from .npz import load_npz, save_npz
from .onnx import load_onnx, save_onnx
from .torch import as_network, from_torch, load_torch

#: loaders by file suffix
LOADERS = {".npz": load_npz, ".onnx": load_onnx, ".pt": load_torch, ".pth": load_torch}
#: writers by file suffix
SAVERS = {".npz": save_npz, ".onnx": save_onnx}
_TAKES_INPUT_SHAPE = {".onnx", ".pt", ".pth"}


def load(path: str | os.PathLike, *, input_shape: tuple[int, ...] | None = None,
         strip_output_softmax: bool = False) -> Network:
    """Load a network from a model file, chosen by its suffix (``.npz``, ``.onnx``, ``.pt``, ``.pth``).

    ``input_shape`` (without the batch dimension) is needed for ONNX graphs with a dynamic input shape and
    for PyTorch files that do not start with ``Linear``; for other files it is checked against the file's.
    Raises :class:`~lipverify.ModelFormatError` naming the file for a missing, corrupt or unsupported file.
    A model ending in ``Softmax``/``LogSoftmax`` (ONNX, PyTorch) is refused unless ``strip_output_softmax=True``:
    then the final op is removed, the network is the logits, and every bound's assumptions say so.
    """
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in LOADERS:
        raise ModelFormatError(f"{path}: unsupported model format {suffix!r}; supported: {', '.join(LOADERS)}")
    if not os.path.isfile(path):
        raise ModelFormatError(f"{path}: no such file")
    kw = {"strip_output_softmax": True} if strip_output_softmax and suffix in _TAKES_INPUT_SHAPE else {}
    if input_shape is None:
        return LOADERS[suffix](path, **kw)
    if suffix in _TAKES_INPUT_SHAPE:
        return LOADERS[suffix](path, input_shape=tuple(input_shape), **kw)
    net = LOADERS[suffix](path)
    if tuple(net.input_shape) != tuple(int(d) for d in input_shape):
        raise ModelFormatError(f"{path}: the model's input shape is {net.input_shape}, not {tuple(input_shape)}")
    return net


def save(net: Network, path: str | os.PathLike) -> None:
    """Save a network; the format is chosen by the suffix (``.npz``, ``.onnx``)."""
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in SAVERS:
        raise ModelFormatError(f"{path}: cannot save format {suffix!r}; supported: {', '.join(SAVERS)}")
    SAVERS[suffix](net, path)


__all__ = ["LOADERS", "SAVERS", "as_network", "from_torch", "load", "load_npz", "load_onnx", "load_torch", "save", "save_npz",
           "save_onnx"]
