"""Reading and writing networks: the documented ``.npz`` format (see :mod:`lipverify.io.npz`)."""

from __future__ import annotations

import os

from ..errors import ModelFormatError
from ..network import Network
from .npz import load_npz, save_npz

#: loaders by file suffix
LOADERS = {".npz": load_npz}
#: writers by file suffix
SAVERS = {".npz": save_npz}


def load(path: str | os.PathLike) -> Network:
    """Load a network from a model file, chosen by its suffix (``.npz``).

    Raises :class:`~lipverify.ModelFormatError` naming the file for a missing, corrupt or unsupported file.
    """
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in LOADERS:
        raise ModelFormatError(f"{path}: unsupported model format {suffix!r}; supported: {', '.join(LOADERS)}")
    if not os.path.isfile(path):
        raise ModelFormatError(f"{path}: no such file")
    return LOADERS[suffix](path)


def save(net: Network, path: str | os.PathLike) -> None:
    """Save a network; the format is chosen by the suffix (``.npz``)."""
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in SAVERS:
        raise ModelFormatError(f"{path}: cannot save format {suffix!r}; supported: {', '.join(SAVERS)}")
    SAVERS[suffix](net, path)


__all__ = ["LOADERS", "SAVERS", "load", "load_npz", "save", "save_npz"]
