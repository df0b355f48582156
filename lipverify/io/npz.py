"""The lipverify ``.npz`` model format (version 1).

A numpy ``.npz`` archive with these arrays (``i`` is the 0-based layer index):

=====================  ==========================================================================
``format``             the string ``"lipverify-npz"``
``version``            the integer ``1``
``input_shape``        integer array, e.g. ``[784]`` or ``[1, 28, 28]``
``layers``             string array of layer types: ``dense``, ``flatten``, ``relu``, ``leakyrelu``,
                       ``identity``, ``tanh``, ``sigmoid``, ``gelu``, ``silu``, ``elu``, ``softplus``,
                       ``hardtanh``, ``relu6``, ``hardswish``, ``mish``, ``logsigmoid``, ``hardsigmoid``
``i.weight``           for ``dense``: float array ``(n_out, n_in)``
``i.bias``             for ``dense`` (optional): float array ``(n_out,)``
``i.negative_slope``   for ``leakyrelu``: float scalar
``i.alpha`` ...        the parameters of ``elu`` (``alpha``), ``softplus`` (``beta``), ``hardtanh`` (``min_val``,
                       ``max_val``), ``hardsigmoid`` (``alpha``, ``beta``): a float scalar or a string holding an
                       exact rational (``"1/6"``) or ``"inf"``/``"-inf"``; ``relu6``, ``hardswish``, ``mish``,
                       ``logsigmoid`` have none
=====================  ==========================================================================

Weights are stored as float64; exact (rational) weights are stored as their nearest floats, so a network
saved and loaded back is the float network.  Example::

    np.savez("net.npz", format="lipverify-npz", version=1, input_shape=[2],
             layers=["dense", "relu", "dense"], **{"0.weight": W1, "0.bias": b1, "2.weight": W2})
"""

from __future__ import annotations

import zipfile
from fractions import Fraction

import numpy as np

from ..errors import LipVerifyError, ModelFormatError
from ..layers import ACTIVATIONS, Activation, Dense, Flatten, Layer, LeakyReLU
from ..network import Network

FORMAT = "lipverify-npz"
VERSION = 1

#: the parameters of the activations that have some (the ``i.<name>`` arrays)
_PARAMS = {"elu": (("alpha", "_a_fraction"),), "softplus": (("beta", "_b_fraction"),),
           "hardtanh": (("min_val", "_lo"), ("max_val", "_hi")),
           "hardsigmoid": (("alpha", "_a_fraction"), ("beta", "_b_fraction"))}


def load_npz(path: str) -> Network:
    """Read a network in the format above; every problem raises :class:`ModelFormatError` naming the file."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            data = {k: archive[k] for k in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ModelFormatError(f"{path}: not a readable .npz archive ({exc})") from None
    if "format" not in data or str(data["format"]) != FORMAT:
        raise ModelFormatError(f"{path}: missing 'format' = {FORMAT!r}; see lipverify.io.npz for the format")
    version = int(data.get("version", -1))
    if version != VERSION:
        raise ModelFormatError(f"{path}: format version {version} is not supported (expected {VERSION})")
    for key in ("input_shape", "layers"):
        if key not in data:
            raise ModelFormatError(f"{path}: missing array {key!r}")
    layers: list[Layer] = []
    for i, kind in enumerate(str(k).lower() for k in data["layers"]):
        try:
            layers.append(_layer(kind, i, data))
        except ModelFormatError as exc:
            raise ModelFormatError(f"{path}: {exc}") from None
        except (LipVerifyError, ValueError, TypeError) as exc:
            raise ModelFormatError(f"{path}: layer {i} ({kind}): {exc}") from None
    try:
        return Network(layers, input_shape=tuple(int(d) for d in np.atleast_1d(data["input_shape"])))
    except LipVerifyError as exc:
        raise ModelFormatError(f"{path}: {exc}") from None


def _layer(kind: str, i: int, data: dict) -> Layer:
    if kind == "dense":
        if f"{i}.weight" not in data:
            raise ModelFormatError(f"layer {i} (dense): missing array '{i}.weight'")
        return Dense(data[f"{i}.weight"], data.get(f"{i}.bias"))
    if kind == "flatten":
        return Flatten()
    if kind == "leakyrelu":
        if f"{i}.negative_slope" not in data:
            raise ModelFormatError(f"layer {i} (leakyrelu): missing scalar '{i}.negative_slope'")
        return LeakyReLU(float(data[f"{i}.negative_slope"]))
    if kind in _PARAMS:
        args = []
        for name, _ in _PARAMS[kind]:
            if f"{i}.{name}" not in data:
                raise ModelFormatError(f"layer {i} ({kind}): missing scalar '{i}.{name}'")
            args.append(_param(data[f"{i}.{name}"], f"layer {i} ({kind}) {name}"))
        return ACTIVATIONS[kind](*args)
    if kind in ACTIVATIONS:
        return ACTIVATIONS[kind]()
    raise ModelFormatError(
        f"layer {i}: unsupported layer type {kind!r}; supported: dense, flatten, {', '.join(ACTIVATIONS)}"
    )


def _param(v: np.ndarray, where: str):
    """A stored parameter: a float scalar, or a string of an exact rational or ``±inf``."""
    v = np.asarray(v)
    if v.dtype.kind in "US":
        text = str(v)
        if text in ("inf", "-inf"):
            return float(text)
        try:
            return Fraction(text)
        except ValueError:
            raise ModelFormatError(f"{where}: {text!r} is not a rational number") from None
    if v.size != 1:
        raise ModelFormatError(f"{where}: expected a scalar, got shape {v.shape}")
    return float(v.reshape(()))


def save_npz(net: Network, path: str) -> None:
    """Write ``net`` in the format above (exact weights are rounded to the nearest floats)."""
    arrays: dict[str, np.ndarray] = {
        "format": np.array(FORMAT), "version": np.array(VERSION), "input_shape": np.array(net.input_shape),
    }
    kinds = []
    for i, layer in enumerate(net.layers):
        if isinstance(layer, Dense):
            kinds.append("dense")
            arrays[f"{i}.weight"] = np.asarray(layer.weight)
            if layer.has_bias:
                arrays[f"{i}.bias"] = np.asarray(layer.bias)
        elif isinstance(layer, Flatten):
            kinds.append("flatten")
        elif isinstance(layer, LeakyReLU):
            kinds.append("leakyrelu")
            arrays[f"{i}.negative_slope"] = np.array(float(layer.negative_slope))
        elif isinstance(layer, Activation) and layer.kind.lower() in _PARAMS:
            kinds.append(layer.kind.lower())
            for name, attr in _PARAMS[layer.kind.lower()]:
                v = getattr(layer, attr)
                arrays[f"{i}.{name}"] = np.array(str(v) if isinstance(v, Fraction) else ("inf" if v > 0 else "-inf"))
        elif isinstance(layer, Activation) and layer.kind.lower() in ACTIVATIONS:
            kinds.append(layer.kind.lower())
        else:
            raise ModelFormatError(f"layer {i} ({layer.describe()}) cannot be stored in the .npz format")
    arrays["layers"] = np.array(kinds)
    np.savez(path, **arrays)
