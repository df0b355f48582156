"""The lipverify ``.npz`` model format (version 1).

A numpy ``.npz`` archive with these arrays (``i`` is the 0-based layer index):

=====================  ==========================================================================
``format``             the string ``"lipverify-npz"``
``version``            the integer ``1``
``input_shape``        integer array, e.g. ``[784]`` or ``[1, 28, 28]``
``layers``             string array of layer types: ``dense``, ``flatten``, ``relu``, ``leakyrelu``,
                       ``identity``, ``tanh``, ``sigmoid``, ``gelu``, ``silu``, ``elu``, ``softplus``,
                       ``hardtanh``, ``relu6``, ``hardswish``, ``mish``, ``logsigmoid``, ``hardsigmoid``, ``residual``
``i.weight``           for ``dense``: float array ``(n_out, n_in)``
``i.bias``             for ``dense`` (optional): float array ``(n_out,)``
``i.negative_slope``   for ``leakyrelu``: float scalar
``i.alpha`` ...        the parameters of ``elu`` (``alpha``), ``softplus`` (``beta``), ``hardtanh`` (``min_val``,
                       ``max_val``), ``hardsigmoid`` (``alpha``, ``beta``): a float scalar or a string holding an
                       exact rational (``"1/6"``) or ``"inf"``/``"-inf"``; ``relu6``, ``hardswish``, ``mish``,
                       ``logsigmoid`` have none
``i.body.layers``      for ``residual`` (a block ``y = shortcut(x) + body(x)``): the body's layer types,
                       whose arrays are ``i.body.j.weight`` and so on (``j`` indexes the body; blocks nest)
``i.shortcut.layers``  for ``residual`` (optional; absent for the identity shortcut): the same for the
                       shortcut, arrays ``i.shortcut.j.*``
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
from ..residual import Residual

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
    try:
        layers = _layers("", data["layers"], data)
    except ModelFormatError as exc:
        raise ModelFormatError(f"{path}: {exc}") from None
    try:
        return Network(layers, input_shape=tuple(int(d) for d in np.atleast_1d(data["input_shape"])))
    except LipVerifyError as exc:
        raise ModelFormatError(f"{path}: {exc}") from None


def _layers(prefix: str, kinds: np.ndarray, data: dict) -> list[Layer]:
    """The layers listed in ``kinds``, whose arrays are ``{prefix}{i}.*``."""
    layers: list[Layer] = []
    for i, kind in enumerate(str(k).lower() for k in np.atleast_1d(kinds)):
        try:
            layers.append(_layer(kind, f"{prefix}{i}", data))
        except ModelFormatError:
            raise
        except (LipVerifyError, ValueError, TypeError) as exc:
            raise ModelFormatError(f"layer {prefix}{i} ({kind}): {exc}") from None
    return layers


def _layer(kind: str, i: str, data: dict) -> Layer:
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
    if kind == "residual":
        if f"{i}.body.layers" not in data:
            raise ModelFormatError(f"layer {i} (residual): missing array '{i}.body.layers'")
        body = _layers(f"{i}.body.", data[f"{i}.body.layers"], data)
        short = _layers(f"{i}.shortcut.", data[f"{i}.shortcut.layers"], data) if f"{i}.shortcut.layers" in data else None
        return Residual(body, short)
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
        f"layer {i}: unsupported layer type {kind!r}; supported: dense, flatten, residual, {', '.join(ACTIVATIONS)}"
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
    arrays["layers"] = _store("", net.layers, arrays)
    np.savez(path, **arrays)


def _store(prefix: str, layers: tuple[Layer, ...], arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Put the arrays of ``layers`` into ``arrays`` under ``{prefix}{i}.*``; return their type names."""
    kinds = []
    for j, layer in enumerate(layers):
        i = f"{prefix}{j}"
        if isinstance(layer, Residual):
            kinds.append("residual")
            arrays[f"{i}.body.layers"] = _store(f"{i}.body.", layer.body, arrays)
            if layer.shortcut:
                arrays[f"{i}.shortcut.layers"] = _store(f"{i}.shortcut.", layer.shortcut, arrays)
        elif isinstance(layer, Dense):
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
    return np.array(kinds)
