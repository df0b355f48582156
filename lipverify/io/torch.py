"""PyTorch import: :func:`from_torch` for ``nn.Sequential`` modules and residual models, :func:`load_torch` for
``.pt``/``.pth`` files.

Needs the optional extra ``torch`` (``pip install torch==2.13.0``, the CPU wheel).  Supported, nested
``nn.Sequential`` containers included: ``Linear``, ``Conv2d`` (zero padding), ``ReLU``, ``LeakyReLU``,
``Tanh``, ``Sigmoid``, ``GELU`` (``approximate='none'``), ``SiLU``, ``ELU``, ``Softplus`` (``threshold >= 15``, see
:class:`~lipverify.Softplus`), ``Hardtanh``, ``ReLU6``, ``Hardswish``, ``Mish``, ``LogSigmoid``, ``Hardsigmoid``,
``MaxPool2d``, ``AvgPool2d``,
``BatchNorm2d``, ``Conv1d`` (zero padding), ``MaxPool1d``, ``AvgPool1d``, ``BatchNorm1d``, ``Upsample``
(``mode='nearest'``, integer ``scale_factor`` or a ``size`` that is an integer multiple), ``Flatten``
(``start_dim=1, end_dim=-1``), ``Identity``, ``Dropout``; sorting modules matched by
class name (``GroupSort``, ``GroupSort2``, ``FullSort``, ``MaxMin`` of deel-torchlip / orthogonium,
:func:`lipverify.sort.from_torch_module`).  The module is read
in inference mode (running statistics of batch norm; dropout is the identity), whatever its
``training`` flag.  Parameters are copied as float64, exactly (float16/bfloat16/float32 embed in
float64).  A final ``Softmax``/``LogSoftmax`` is refused unless ``strip_output_softmax=True``
removes it (then the network is the logits and ``Network.stripped_output`` names the removed op; every bound says
so).  Anything else raises :class:`~lipverify.ModelFormatError` naming the module path and type.

Modules that are not such a chain (a model class whose ``forward`` has skip connections, e.g.
``out = self.bn2(self.conv2(...)); out += self.downsample(x)``) are traced with ``torch.fx.symbolic_trace``
and read as a chain of the modules above, of a few functions (``torch.relu``, ``torch.flatten(x, 1)``,
``x.view(x.size(0), -1)``, ``F.max_pool2d``, ``F.adaptive_avg_pool2d``, ...; ``nn.AdaptiveAvgPool2d`` when
the size divides) and of residual blocks ``y = a + b`` whose branches start at one tensor
(:class:`~lipverify.Residual`, as in :mod:`lipverify.io.onnx`).  A forward that cannot be traced
(data-dependent control flow) raises saying to export the model to ONNX instead.

After the conversion the module and the network are run on two random inputs and must agree (to a
float32 tolerance): this catches subclasses with a custom ``forward``, hooks and the like
(``check=False`` skips it).

**Security.** :func:`load_torch` calls ``torch.load(path, weights_only=False)`` for pickled modules,
which runs arbitrary code stored in the file: load only files you trust.  TorchScript files
(``torch.jit.save``; deprecated by PyTorch but still readable) are read with ``torch.jit.load`` instead;
scripted modules keep every hyper-parameter, traced ones keep only the weights (layers that need more,
such as ``Conv2d``, then raise).

Example::

    net = lv.from_torch(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10)),
                        input_shape=(1, 28, 28))
    net = lv.load("model.pt", input_shape=(1, 28, 28))
"""

from __future__ import annotations

import os
import warnings
import zipfile
from typing import Any

import numpy as np

from ..errors import LipVerifyError, ModelFormatError
from ..layers import (
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
from ..network import Network
from ..residual import Residual
from ._graph import Block, SeriesParallel

SUPPORTED = ("Sequential, Linear, Conv2d, ReLU, LeakyReLU, Tanh, Sigmoid, GELU(approximate='none'), SiLU, ELU, "
             "Softplus(threshold >= 15), Hardtanh, ReLU6, Hardswish, Mish, LogSigmoid, Hardsigmoid, MaxPool2d, "
             "AvgPool2d, BatchNorm2d, Conv1d, MaxPool1d, AvgPool1d, BatchNorm1d, Upsample(mode='nearest', integer "
             "factors), AdaptiveAvgPool1d (the length divisible by the output size), Flatten, Identity, Dropout, "
             "GroupSort/GroupSort2/FullSort/MaxMin (by class name); a final Softmax/LogSoftmax with "
             "strip_output_softmax=True")
_DROPOUTS = ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout")
_SIMPLE = {"ReLU": ReLU, "Tanh": Tanh, "Sigmoid": Sigmoid, "SiLU": SiLU, "ReLU6": ReLU6, "Hardswish": Hardswish,
           "Mish": Mish, "LogSigmoid": LogSigmoid, "Hardsigmoid": Hardsigmoid}
_SOFTMAX = ("Softmax", "LogSoftmax")
#: PyTorch's Softplus returns ``x`` where ``beta x > threshold``: a jump of ``log1p(e^-threshold) / beta``, below the
#: float32 resolution of the output there (``2^-24 threshold / beta``) from this threshold on
_SOFTPLUS_MIN_THRESHOLD = 15.0
_KNOWN = {*_SIMPLE, *_DROPOUTS, *_SOFTMAX, "Sequential", "Identity", "LeakyReLU", "GELU", "ELU", "Softplus", "Hardtanh",
          "Flatten", "Linear", "Conv2d", "MaxPool2d", "AvgPool2d", "BatchNorm2d", "Conv1d", "MaxPool1d", "AvgPool1d",
          "BatchNorm1d", "Upsample", "AdaptiveAvgPool1d"}
_KNOWN |= {"GroupSort", "GroupSort2", "FullSort", "MaxMin"}  # lipverify.sort.TORCH_KINDS, matched by class name


def _torch():
    try:
        import torch
    except ImportError:
        raise ModelFormatError(
            "PyTorch models need the optional dependency torch: pip install torch==2.13.0 (the CPU wheel)"
        ) from None
    return torch


def from_torch(module: Any, input_shape: tuple[int, ...] | int | None = None, *, check: bool = True,
               strip_output_softmax: bool = False) -> Network:
    """Convert a PyTorch ``nn.Sequential`` (or TorchScript module of one), or a module with skip connections
    (traced with ``torch.fx``, see the module docstring), to a :class:`~lipverify.Network`.

    ``input_shape`` is the per-sample shape (no batch dimension), e.g. ``(1, 28, 28)``; it may be omitted
    when the first weighted layer is ``Linear``.  Raises :class:`~lipverify.ModelFormatError` naming the
    module path (``"features.3"``) and type for anything unsupported or a shape that does not fit.
    Example: ``lv.from_torch(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)))``.
    A final ``Softmax``/``LogSoftmax`` is refused unless ``strip_output_softmax=True`` removes it (the network is then
    the logits, ``Network.stripped_output`` names the op and every bound's assumptions say so); elsewhere it is refused.
    """
    torch = _torch()
    if not isinstance(module, torch.nn.Module):
        raise ModelFormatError(f"from_torch expects a torch.nn.Module, got {type(module).__name__}")
    if _needs_tracing(torch, module):
        net = _FxImporter(torch, module).run(input_shape)
        if check:
            _check_forward(torch, module, net)
        return net
    leaves: list[tuple[str, Any, str]] = []
    _walk(torch, module, "", leaves)
    stripped = None
    if leaves and leaves[-1][2] in _SOFTMAX:
        path, m, kind = leaves[-1]
        if not strip_output_softmax:
            raise ModelFormatError(
                f"module {path!r} ({kind}): the model ends in {kind}; lipverify bounds the logits only if told so: "
                f"pass strip_output_softmax=True (lv.load(path, strip_output_softmax=True); on the command line "
                f"--logits) to remove the final {kind} and bound the logits")
        stripped = leaves.pop()
    for path, _, kind in leaves:
        if kind in _SOFTMAX:
            raise ModelFormatError(f"module {path!r} ({kind}) is not the last module; a {kind} inside the network is "
                                   "not supported (only a final one can be removed, with strip_output_softmax=True)")
    layers: list[tuple[str, Layer]] = []
    known: tuple[int, ...] | None = None  # the shape reaching the module, when input_shape is given (Upsample(size=))
    if input_shape is not None:
        known = (int(input_shape),) if isinstance(input_shape, (int, np.integer)) else tuple(int(d) for d in input_shape)
    for path, m, kind in leaves:
        for layer in _convert(torch, m, path, kind, known):
            layers.append((path, layer))
            try:
                known = None if known is None else tuple(layer.output_shape(known))
            except (ValueError, LipVerifyError):
                known = None  # reported with the module's path below
    if input_shape is None:
        first = next((layer for _, layer in layers if not isinstance(layer, Activation)), None)
        if not isinstance(first, Dense):
            raise ModelFormatError("from_torch: pass input_shape=(C, L), (C, H, W) or (n,): it cannot be inferred because the "
                                   "first weighted layer is not Linear")
        input_shape = (first.n_in,)
    elif isinstance(input_shape, (int, np.integer)):
        input_shape = (int(input_shape),)
    shape = tuple(int(d) for d in input_shape)
    for k, (path, layer) in enumerate(layers):
        try:
            shape = tuple(layer.output_shape(shape))
        except (ValueError, LipVerifyError) as exc:
            raise ModelFormatError(f"module {path!r} (layer {k}, {layer.describe()}): input shape {shape} does not "
                                   f"fit: {exc}") from None
    net = Network([layer for _, layer in layers] or [Identity()], input_shape=tuple(int(d) for d in input_shape))
    if check:
        _check_forward(torch, module, net, post=None if stripped is None else stripped[1])
    if stripped is not None:
        net.stripped_output = stripped[2]
    return net


def as_network(obj: Any, input_shape: tuple[int, ...] | int | None = None) -> Network:
    """The :class:`~lipverify.Network` to analyse: ``obj`` itself if it is one (``input_shape``, if given, must
    match), or a live ``torch.nn.Module`` converted as :func:`from_torch` does (``input_shape`` needed unless its
    first weighted layer is ``Linear``).  Anything else raises ``TypeError`` saying what is accepted.

    Used by ``lv.bound`` and ``lv.compare`` so that they take a PyTorch module directly.  torch is imported only
    when ``obj`` is not a Network and torch is already loaded (a module object implies it is).
    """
    import sys

    if isinstance(obj, Network):
        if input_shape is not None:
            want = (int(input_shape),) if isinstance(input_shape, (int, np.integer)) else tuple(int(d) for d in input_shape)
            if tuple(obj.input_shape) != want:
                raise ModelFormatError(f"input_shape={want} does not match the network's input shape {obj.input_shape}")
        return obj
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(obj, torch.nn.Module):
        return from_torch(obj, input_shape)
    raise TypeError(f"expected a lipverify.Network or a torch.nn.Module, got {type(obj).__module__}."
                    f"{type(obj).__qualname__}; for a model file use lv.load(path)")


def _kind(torch: Any, m: Any) -> str:
    if isinstance(m, torch.jit.ScriptModule):
        return str(getattr(m, "original_name", type(m).__name__))
    nn = torch.nn
    bases = [nn.Sequential, nn.Linear, nn.Conv2d, nn.Conv1d, nn.MaxPool1d, nn.AvgPool1d, nn.BatchNorm1d, nn.Upsample,
             nn.AdaptiveAvgPool1d, nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.SiLU,
             nn.ELU, nn.Softplus, nn.ReLU6, nn.Hardtanh, nn.Hardswish, nn.Mish, nn.LogSigmoid, nn.Hardsigmoid,
             nn.Softmax, nn.LogSoftmax, nn.MaxPool2d, nn.AvgPool2d, nn.BatchNorm2d, nn.Flatten, nn.Identity, nn.Dropout,
             nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout]
    for base in bases:
        if isinstance(m, base):
            if type(m).forward is not base.forward:
                return f"{type(m).__name__} (a {base.__name__} subclass with its own forward)"
            return base.__name__
    return type(m).__name__


def _walk(torch: Any, m: Any, path: str, out: list) -> None:
    kind = _kind(torch, m)
    if getattr(m, "_forward_hooks", None) or getattr(m, "_forward_pre_hooks", None):
        raise ModelFormatError(f"module {path or '(root)'!r} ({kind}) has forward hooks, which lipverify cannot read")
    if kind == "Sequential":
        for name, child in m.named_children():
            _walk(torch, child, f"{path}.{name}" if path else name, out)
    else:
        out.append((path or "(root)", m, kind))


def _get(m: Any, name: str, path: str, kind: str) -> Any:
    if not hasattr(m, name):
        raise ModelFormatError(f"module {path!r} ({kind}) has no attribute {name!r} (a traced TorchScript module keeps "
                               "only weights: save the model with torch.jit.script or torch.save instead)")
    return getattr(m, name)


def _array(t: Any, path: str, what: str) -> np.ndarray | None:
    if t is None:
        return None
    if t.is_complex() or not t.is_floating_point():
        raise ModelFormatError(f"module {path!r}: {what} has dtype {t.dtype}; expected a real floating point tensor")
    return t.detach().cpu().double().numpy().copy()  # float16/bfloat16/float32 -> float64 is exact


def _pair(v: Any) -> tuple[int, ...]:
    if isinstance(v, (int, np.integer)):
        return (int(v), int(v))
    return tuple(int(u) for u in v)


def _compact(v: tuple[int, ...]) -> int | tuple[int, ...]:
    return int(v[0]) if len(set(v)) == 1 else tuple(v)


def _conv_module(path: str, kind: str):
    try:
        from .. import conv
    except ImportError:
        raise ModelFormatError(f"module {path!r} ({kind}) needs lipverify.conv, which is not available") from None
    return conv


def _build(cls: type, path: str, kind: str, *args: Any, **kwargs: Any) -> Layer:
    try:
        return cls(*args, **kwargs)
    except (TypeError, ValueError, LipVerifyError) as exc:
        shown = ", ".join([f"array{a.shape}" if isinstance(a, np.ndarray) else repr(a) for a in args]
                          + [f"{k}={v!r}" for k, v in kwargs.items()])
        raise ModelFormatError(f"module {path!r} ({kind}): {cls.__name__}({shown}) is not accepted by lipverify: "
                               f"{exc}") from None


def _convert(torch: Any, m: Any, path: str, kind: str, shape: tuple[int, ...] | None = None) -> list[Layer]:
    """The layers of the leaf module ``m``; ``shape`` is the per-sample shape reaching it when known (``None``
    otherwise; only ``Upsample(size=...)`` needs it)."""
    def get(name: str) -> Any:
        return _get(m, name, path, kind)

    if kind in ("Conv1d", "MaxPool1d", "AvgPool1d", "BatchNorm1d", "Upsample", "AdaptiveAvgPool1d"):
        return [_convert_1d(m, path, kind, get, shape)]

    if kind in _SIMPLE:
        return [_SIMPLE[kind]()]
    if kind in ("GroupSort", "GroupSort2", "FullSort", "MaxMin"):  # deel-torchlip / orthogonium (lipverify/sort.py)
        from ..sort import from_torch_module

        return from_torch_module(m, path, kind)
    if kind == "Identity" or kind in _DROPOUTS:
        return []
    if kind == "LeakyReLU":
        return [LeakyReLU(float(get("negative_slope")))]
    if kind == "ELU":
        return [_build(ELU, path, kind, float(get("alpha")))]
    if kind == "Hardtanh":
        return [_build(Hardtanh, path, kind, float(get("min_val")), float(get("max_val")))]
    if kind == "Softplus":
        beta, threshold = float(get("beta")), float(get("threshold"))
        if not threshold >= _SOFTPLUS_MIN_THRESHOLD:
            raise ModelFormatError(
                f"module {path!r} (Softplus): threshold={threshold:g} is not supported: PyTorch then returns x where "
                f"beta*x > threshold, a jump of log1p(exp(-threshold))/beta = {np.log1p(np.exp(-threshold)) / beta:.3g} "
                f"(not Lipschitz); use threshold >= {_SOFTPLUS_MIN_THRESHOLD:g} (the default is 20), where the jump is "
                "below float32 resolution and lipverify bounds the smooth softplus")
        return [_build(Softplus, path, kind, beta)]
    if kind == "GELU":
        approx = get("approximate")
        if approx != "none":
            raise ModelFormatError(f"module {path!r} (GELU): approximate={approx!r} is not supported; only 'none' "
                                   "(the erf form)")
        return [GELU()]
    if kind == "Flatten":
        if (int(get("start_dim")), int(get("end_dim"))) != (1, -1):
            raise ModelFormatError(f"module {path!r} (Flatten): only start_dim=1, end_dim=-1 is supported, got "
                                   f"start_dim={m.start_dim}, end_dim={m.end_dim}")
        return [Flatten()]
    if kind == "Linear":
        try:
            return [Dense(_array(get("weight"), path, "weight"), _array(getattr(m, "bias", None), path, "bias"))]
        except (ValueError, TypeError, LipVerifyError) as exc:
            raise ModelFormatError(f"module {path!r} (Linear): {exc}") from None
    if kind == "Conv2d":
        conv = _conv_module(path, kind)
        if get("padding_mode") != "zeros":
            raise ModelFormatError(f"module {path!r} (Conv2d): padding_mode={m.padding_mode!r} is not supported; "
                                   "only 'zeros'")
        w = _array(get("weight"), path, "weight")
        dilation = _pair(get("dilation"))
        padding = get("padding")
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":
            total = [d * (k - 1) for d, k in zip(dilation, w.shape[2:])]
            if any(t % 2 for t in total):
                raise ModelFormatError(f"module {path!r} (Conv2d): padding='same' with an even kernel pads "
                                       "asymmetrically, which is not supported")
            padding = tuple(t // 2 for t in total)
        return [_build(conv.Conv2d, path, kind, w, _array(getattr(m, "bias", None), path, "bias"),
                       stride=_compact(_pair(get("stride"))), padding=_compact(_pair(padding)),
                       dilation=_compact(dilation), groups=int(get("groups")))]
    if kind in ("MaxPool2d", "AvgPool2d"):
        conv = _conv_module(path, kind)
        if get("ceil_mode"):
            raise ModelFormatError(f"module {path!r} ({kind}): ceil_mode=True is not supported")
        kernel = _pair(get("kernel_size"))
        stride = get("stride")
        stride = kernel if stride is None or stride == () or stride == [] else _pair(stride)
        padding = _pair(get("padding"))
        if kind == "MaxPool2d":
            if any(d != 1 for d in _pair(get("dilation"))):
                raise ModelFormatError(f"module {path!r} (MaxPool2d): dilation={m.dilation} is not supported")
            if get("return_indices"):
                raise ModelFormatError(f"module {path!r} (MaxPool2d): return_indices=True is not supported")
            cls = conv.MaxPool2d
        else:
            if get("divisor_override") is not None:
                raise ModelFormatError(f"module {path!r} (AvgPool2d): divisor_override is not supported")
            if any(padding) and not get("count_include_pad"):
                raise ModelFormatError(f"module {path!r} (AvgPool2d): count_include_pad=False with padding is not "
                                       "supported (lipverify divides by the full window)")
            cls = conv.AvgPool2d
        return [_build(cls, path, kind, _compact(kernel), stride=_compact(stride), padding=_compact(padding))]
    if kind == "BatchNorm2d":
        conv = _conv_module(path, kind)
        mean, var = getattr(m, "running_mean", None), getattr(m, "running_var", None)
        if mean is None or var is None:
            raise ModelFormatError(f"module {path!r} (BatchNorm2d): track_running_stats=False (no running statistics) "
                                   "is not supported")
        c = mean.shape[0]
        gamma = _array(getattr(m, "weight", None), path, "weight")
        beta = _array(getattr(m, "bias", None), path, "bias")
        gamma = np.ones(c) if gamma is None else gamma
        beta = np.zeros(c) if beta is None else beta
        return [_build(conv.BatchNorm2d, path, kind, gamma, beta, _array(mean, path, "running_mean"),
                       _array(var, path, "running_var"), float(get("eps")))]
    hint = ""
    if isinstance(m, torch.jit.ScriptModule) and kind != type(m).__name__:
        hint = ("; a TorchScript module is read only as a chain of these: for a model with skip connections pass the "
                "Python module (from_torch traces it with torch.fx) or export it to ONNX")
    raise ModelFormatError(f"module {path!r} ({kind}) is not supported; supported modules: {SUPPORTED}{hint}")


def _single(v: Any) -> int:
    """PyTorch's 1-D hyper-parameters are ints or 1-tuples."""
    return int(v[0]) if isinstance(v, (tuple, list)) and len(v) == 1 else int(v)


def _convert_1d(m: Any, path: str, kind: str, get: Any, shape: tuple[int, ...] | None) -> Layer:
    """``Conv1d``, ``MaxPool1d``, ``AvgPool1d``, ``BatchNorm1d``, ``Upsample`` (nearest, integer factors) and
    ``AdaptiveAvgPool1d`` (equal windows)."""
    conv = _conv_module(path, kind)
    if kind == "Conv1d":
        if get("padding_mode") != "zeros":
            raise ModelFormatError(f"module {path!r} (Conv1d): padding_mode={m.padding_mode!r} is not supported; "
                                   "only 'zeros'")
        w = _array(get("weight"), path, "weight")
        dilation = _single(get("dilation"))
        padding = get("padding")
        if padding == "valid":
            padding = 0
        elif padding == "same":
            total = dilation * (w.shape[2] - 1)
            if total % 2:
                raise ModelFormatError(f"module {path!r} (Conv1d): padding='same' with an even kernel pads "
                                       "asymmetrically, which is not supported")
            padding = total // 2
        return _build(conv.Conv1d, path, kind, w, _array(getattr(m, "bias", None), path, "bias"),
                      stride=_single(get("stride")), padding=_single(padding), dilation=dilation,
                      groups=int(get("groups")))
    if kind in ("MaxPool1d", "AvgPool1d"):
        if get("ceil_mode"):
            raise ModelFormatError(f"module {path!r} ({kind}): ceil_mode=True is not supported")
        kernel = _single(get("kernel_size"))
        stride = get("stride")
        stride = kernel if stride is None or stride == () or stride == [] else _single(stride)
        padding = _single(get("padding"))
        if kind == "MaxPool1d":
            if _single(get("dilation")) != 1:
                raise ModelFormatError(f"module {path!r} (MaxPool1d): dilation={m.dilation} is not supported")
            if get("return_indices"):
                raise ModelFormatError(f"module {path!r} (MaxPool1d): return_indices=True is not supported")
            cls = conv.MaxPool1d
        else:
            if padding and not get("count_include_pad"):
                raise ModelFormatError(f"module {path!r} (AvgPool1d): count_include_pad=False with padding is not "
                                       "supported (lipverify divides by the full window)")
            cls = conv.AvgPool1d
        return _build(cls, path, kind, kernel, stride=stride, padding=padding)
    if kind == "BatchNorm1d":
        mean, var = getattr(m, "running_mean", None), getattr(m, "running_var", None)
        if mean is None or var is None:
            raise ModelFormatError(f"module {path!r} (BatchNorm1d): track_running_stats=False (no running statistics) "
                                   "is not supported")
        c = mean.shape[0]
        gamma = _array(getattr(m, "weight", None), path, "weight")
        beta = _array(getattr(m, "bias", None), path, "bias")
        return _build(conv.BatchNorm1d, path, kind, np.ones(c) if gamma is None else gamma,
                      np.zeros(c) if beta is None else beta, _array(mean, path, "running_mean"),
                      _array(var, path, "running_var"), float(get("eps")))
    if kind == "AdaptiveAvgPool1d":
        out = _single(get("output_size"))
        if shape is None or len(shape) != 2 or shape[1] % out:
            raise ModelFormatError(f"module {path!r} (AdaptiveAvgPool1d): output_size={out} on the input shape {shape} "
                                   "is not supported; only a (C, L) input whose length the output size divides (equal "
                                   "windows; pass input_shape=... when it is not known)")
        k = shape[1] // out
        return _build(conv.AvgPool1d, path, kind, k, stride=k)
    # Upsample
    mode = get("mode")
    if mode not in ("nearest", "nearest-exact"):
        raise ModelFormatError(f"module {path!r} (Upsample): mode={mode!r} is not supported; only 'nearest' (and "
                               "'nearest-exact', the same map for integer factors) with integer factors")
    size, factor = get("size"), get("scale_factor")
    if size is not None:
        if shape is None or len(shape) < 2:
            raise ModelFormatError(f"module {path!r} (Upsample): size={size} needs the input shape (C, L) or (C, H, W) "
                                   f"(got {shape}); pass input_shape=... or use scale_factor=")
        sizes = (int(size),) * (len(shape) - 1) if isinstance(size, (int, np.integer)) else tuple(int(v) for v in size)
        if len(sizes) != len(shape) - 1 or any(o % n for o, n in zip(sizes, shape[1:])):
            raise ModelFormatError(f"module {path!r} (Upsample): size={size} is not an integer multiple of the input "
                                   f"size {shape[1:]}; only integer factors are supported")
        factors = tuple(o // n for o, n in zip(sizes, shape[1:]))
    else:
        items = tuple(factor) if isinstance(factor, (tuple, list)) else (factor,)
        if any(float(f) != int(f) or f < 1 for f in items):
            raise ModelFormatError(f"module {path!r} (Upsample): scale_factor={factor} is not supported; only positive "
                                   "integer factors")
        factors = tuple(int(f) for f in items)
    return _build(conv.Upsample, path, kind, factors[0] if len(set(factors)) == 1 else factors)


# --------------------------------------------------------------------------- modules with skip connections (torch.fx)

_FX_SUPPORTED = (f"the modules {SUPPORTED}, AdaptiveAvgPool2d; x + y of two branches (residual blocks); the functions "
                 "torch.relu/tanh/sigmoid/flatten/reshape, F.relu/gelu/silu/leaky_relu/dropout/avg_pool2d/max_pool2d/"
                 "adaptive_avg_pool2d/avg_pool1d/max_pool1d/interpolate(mode='nearest'); the methods .relu() .sigmoid() "
                 ".tanh() .flatten(1) .view(x.size(0), -1) .reshape(...) .contiguous()")


def _needs_tracing(torch: Any, module: Any) -> bool:
    """True when ``module`` is not a (nested) Sequential of supported modules: some leaf of the walk is a
    user module with its own ``forward`` (a residual block, a custom model class)."""
    if isinstance(module, torch.jit.ScriptModule):
        return False
    leaves: list[tuple[str, Any, str]] = []
    _walk(torch, module, "", leaves)
    return any(kind == type(m).__name__ and kind not in _KNOWN and not type(m).__module__.startswith("torch.")
               for _, m, kind in leaves)


def _fx_name(target: Any) -> str:
    return getattr(target, "__name__", str(target))


class _FxImporter:
    """A module traced with ``torch.fx.symbolic_trace``: a chain of layers and residual blocks."""

    def __init__(self, torch: Any, module: Any):
        import operator

        self.torch = torch
        self.module = module
        for name, sub in module.named_modules():  # tracing runs forward methods, not hooks
            if getattr(sub, "_forward_hooks", None) or getattr(sub, "_forward_pre_hooks", None):
                raise ModelFormatError(f"module {name or '(root)'!r} ({type(sub).__name__}) has forward hooks, which "
                                       "lipverify cannot read")
        try:
            class Tracer(torch.fx.Tracer):  # sorting modules (lipverify.sort.TORCH_KINDS) stay whole, read by class name
                def is_leaf_module(self, m, qualname):
                    return type(m).__name__ in ("GroupSort", "GroupSort2", "FullSort", "MaxMin") or \
                        super().is_leaf_module(m, qualname)

            gm = torch.fx.GraphModule(module, Tracer().trace(module))
        except Exception as exc:  # torch.fx.proxy.TraceError, data-dependent control flow, unsupported Python
            raise ModelFormatError(
                f"from_torch: {type(module).__name__} is not a chain of supported modules (nn.Sequential), and "
                f"torch.fx cannot trace its forward ({type(exc).__name__}: {exc}); export it to ONNX instead "
                "(torch.onnx.export(model.eval(), example_input, 'model.onnx', dynamo=False)) and load the .onnx file "
                "with lv.load") from None
        self.nodes = list(gm.graph.nodes)
        self.index = {n.name: i for i, n in enumerate(self.nodes)}
        self.adds = {operator.add, operator.iadd, torch.add}
        F = torch.nn.functional
        self.functions = {f: name for name, fs in (
            ("relu", (torch.relu, torch.relu_, F.relu, F.relu_)), ("tanh", (torch.tanh, F.tanh)),
            ("sigmoid", (torch.sigmoid, F.sigmoid)), ("gelu", (F.gelu,)), ("silu", (F.silu,)),
            ("leaky_relu", (F.leaky_relu,)), ("flatten", (torch.flatten,)), ("reshape", (torch.reshape,)),
            ("dropout", (F.dropout,)), ("avg_pool2d", (F.avg_pool2d,)), ("max_pool2d", (F.max_pool2d,)),
            ("avg_pool1d", (F.avg_pool1d,)), ("max_pool1d", (F.max_pool1d,)), ("interpolate", (F.interpolate,)),
            ("adaptive_avg_pool2d", (F.adaptive_avg_pool2d,))) for f in fs}
        self.aux: set[str] = set()  # x.size(0), x.shape[0]: shape values, not data
        for n in self.nodes:
            if ((n.op == "call_method" and n.target == "size")
                    or (n.op == "call_function" and n.target is getattr and n.args[1:] == ("shape",))
                    or (n.op == "call_function" and n.target is operator.getitem and _is_node(n.args[0])
                        and n.args[0].name in self.aux)):
                self.aux.add(n.name)

    def err(self, msg: str, i: int | None = None) -> ModelFormatError:
        return ModelFormatError(f"from_torch (traced with torch.fx): {self.label(i) + ': ' if i is not None else ''}{msg}")

    def label(self, i: int) -> str:
        n = self.nodes[i]
        if n.op == "call_module":
            what = f"module {n.target!r} ({_kind(self.torch, self.module.get_submodule(n.target))})"
        elif n.op == "call_method":
            what = f"method .{n.target}()"
        elif n.op == "call_function":
            what = f"function {_fx_name(n.target)}"
        else:
            what = n.op
        return f"node {i} {n.name!r} ({what})"

    def data_inputs(self, n: Any) -> list[str]:
        return [a.name for a in n.all_input_nodes if a.name not in self.aux]

    def is_merge(self, n: Any) -> bool:
        binary = (n.op == "call_function" and n.target in self.adds) or (n.op == "call_method" and n.target == "add")
        return binary and len(n.args) == 2 and not n.kwargs and all(_is_node(a) for a in n.args) and len(
            set(self.data_inputs(n))) == 2

    def run(self, input_shape: tuple[int, ...] | int | None) -> Network:
        placeholders = [i for i, n in enumerate(self.nodes) if n.op == "placeholder"]
        if len(placeholders) != 1:
            raise self.err(f"forward takes {len(placeholders)} tensor arguments; only single-input models are supported")
        outputs = [n for n in self.nodes if n.op == "output"]
        result = outputs[0].args[0]
        if not _is_node(result):
            raise self.err(f"forward returns a {type(result).__name__}; a single tensor is needed")
        data: dict[int, tuple[list[str], list[str]]] = {}
        for i, n in enumerate(self.nodes):
            if n.op not in ("placeholder", "output") and n.name not in self.aux:
                data[i] = (self.data_inputs(n), [n.name])
        self.consumers: dict[str, list[int]] = {}
        for i, (ins, _) in data.items():
            for t in dict.fromkeys(ins):
                self.consumers.setdefault(t, []).append(i)
        source = self.nodes[placeholders[0]].name
        merges = [i for i in data if self.is_merge(self.nodes[i])]
        self.sp = SeriesParallel(data, source, merges, {result.name}, self.err, self.label)
        if input_shape is None:  # the first module with weights, in the order of the traced forward
            nn = self.torch.nn
            first = next((sub for n in self.nodes if n.op == "call_module"
                          for sub in [self.module.get_submodule(n.target)]
                          if not isinstance(sub, (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.SiLU))), None)
            if not isinstance(first, nn.Linear):
                raise ModelFormatError("from_torch: pass input_shape=(C, L), (C, H, W) or (n,): it cannot be inferred because "
                                       "the first weighted layer of the traced forward is not Linear")
            input_shape = (int(first.in_features),)
        elif isinstance(input_shape, (int, np.integer)):
            input_shape = (int(input_shape),)
        shape = tuple(int(d) for d in input_shape)
        self.used: set[int] = set()
        layers, _ = self.walk(source, result.name, set(data), shape)
        left = [i for i in data if i not in self.used]
        if left:
            raise self.err("is not on a path from the input to the output; only forwards that are a chain of "
                           "layers and residual blocks are supported", left[0])
        return Network(layers or [Identity()], input_shape=shape)

    def walk(self, x: str, end: str, allowed: set[int] | frozenset[int], shape: tuple[int, ...]
             ) -> tuple[list[Layer], tuple[int, ...]]:
        layers: list[Layer] = []
        while x != end:
            cons = [c for c in self.consumers.get(x, []) if c in allowed]
            if not cons:
                raise self.err(f"the tensor {x!r} feeds no operation and is not the output {end!r}")
            block = self.sp.block_at(x, allowed)
            if block is not None:
                new, origin = [self._residual(block, shape)], block.merge
            elif len(cons) == 1:
                new, origin = self.convert(cons[0], x, shape), cons[0]
            else:
                joins = [j for j in self.sp.joins_at(x) if j in allowed and j not in self.sp.merges]
                why = ""
                if joins:
                    j = self.nodes[joins[0]]
                    extra = f" with the arguments {dict(j.kwargs)}" if j.kwargs and (
                        j.target in self.adds or j.target == "add") else ""
                    why = (f"; {self.label(joins[0])} joins the branches{extra}, but only a plain x + y (a residual block) "
                           "can join them")
                raise self.err(f"the tensor {x!r} branches into {', '.join(self.label(c) for c in cons)}; only a "
                               f"chain and residual blocks (branches that rejoin at one addition) are supported{why}")
            self.used.add(origin)
            x = self.nodes[origin].name
            for layer in new:
                try:
                    shape = tuple(layer.output_shape(shape))
                except (ValueError, LipVerifyError) as exc:
                    raise self.err(f"{layer.describe()} does not fit the input shape {shape}: {exc}", origin) from None
                layers.append(layer)
        return layers, shape

    def _residual(self, block: Block, shape: tuple[int, ...]) -> Layer:
        branches = [self.walk(block.branch, t, nodes, shape) for t, nodes in zip(block.inputs, block.nodes)]
        (a, sa), (b, sb) = branches
        if sa != sb:
            raise self.err(f"adds tensors of per-sample shapes {sa} and {sb}; a residual block needs equal shapes "
                           "(broadcasting is not supported)", block.merge)
        body, short = (a, b) if len(a) >= len(b) else (b, a)
        try:
            return Residual(body or [Identity()], short or None)
        except (ValueError, LipVerifyError) as exc:
            raise self.err(f"the residual block is not accepted: {exc}", block.merge) from None

    def convert(self, i: int, x: str, shape: tuple[int, ...]) -> list[Layer]:

        torch = self.torch
        n = self.nodes[i]
        others = [t for t in self.data_inputs(n) if t != x]
        if others:
            other = self.nodes[self.index[others[0]]]
            if other.op == "get_attr":
                raise self.err(f"uses the tensor attribute {other.target!r} directly; only modules (nn.Linear, "
                               "nn.Conv2d, ...) carry weights that lipverify reads: export to ONNX, or use modules", i)
            if (n.target in self.adds or n.target == "add") and n.kwargs:
                raise self.err(f"adds with the arguments {dict(n.kwargs)}; only a plain x + y joins two branches", i)
            if n.target in self.adds or n.target == "add":
                raise self.err(f"adds {x!r} and {others[0]!r}, which do not form a residual block (their branches do "
                               "not start at one tensor of the chain)", i)
            raise self.err(f"combines the tensors {x!r} and {others[0]!r}; only x + y of two branches (a residual "
                           "block) can join tensors", i)

        def arg(pos: int, name: str, default: Any = None) -> Any:
            return n.args[pos] if len(n.args) > pos else n.kwargs.get(name, default)

        if n.op == "call_module":
            m = self.module.get_submodule(n.target)
            kind = _kind(torch, m)
            if getattr(m, "_forward_hooks", None) or getattr(m, "_forward_pre_hooks", None):
                raise self.err("has forward hooks, which lipverify cannot read", i)
            if kind == "AdaptiveAvgPool2d":
                return [self._adaptive(i, m.output_size, shape)]
            try:
                return _convert(torch, m, n.target, kind, shape)
            except ModelFormatError as exc:
                raise self.err(str(exc), i) from None
        target = n.target if n.op == "call_method" else self.functions.get(n.target) if n.op == "call_function" else None
        if target in ("relu", "relu_"):
            return [ReLU()]
        if target in ("tanh", "sigmoid"):
            return [{"tanh": Tanh, "sigmoid": Sigmoid}[target]()]
        if target == "silu":
            return [SiLU()]
        if target == "gelu":
            if arg(1, "approximate", "none") != "none":
                raise self.err("approximate='tanh' is not supported; only 'none' (the erf form)", i)
            return [GELU()]
        if target == "leaky_relu":
            return [LeakyReLU(float(arg(1, "negative_slope", 0.01)))]
        if target in ("contiguous", "dropout", "identity"):
            return []
        if target == "flatten":
            if (arg(1, "start_dim", 0), arg(2, "end_dim", -1)) != (1, -1):
                raise self.err("only flatten(x, 1) (start_dim=1, end_dim=-1) is supported", i)
            return [] if len(shape) == 1 else [Flatten()]
        if target in ("view", "reshape"):
            rest = list(n.args[1:])
            if len(rest) == 1 and isinstance(rest[0], (tuple, list)):
                rest = list(rest[0])
            size = int(np.prod(shape))
            batch_ok = len(rest) == 2 and (_is_node(rest[0]) and rest[0].name in self.aux or rest[0] == -1)
            if not (batch_ok and (rest[1] in (-1, size)) and not (rest[0] == -1 and rest[1] == -1)):
                raise self.err(f"{target} to {tuple(str(r) for r in rest)} from per-sample shape {shape} is not a "
                               "flatten; only x.view(x.size(0), -1) and the like are supported", i)
            return [] if len(shape) == 1 else [Flatten()]
        if target in ("avg_pool2d", "max_pool2d"):
            conv = _conv_module(n.name, target)
            k = arg(1, "kernel_size")
            stride = arg(2, "stride", None)
            stride = k if stride is None or stride == [] or stride == () else stride
            padding = arg(3, "padding", 0)
            if target == "avg_pool2d":
                if arg(4, "ceil_mode", False) or arg(6, "divisor_override", None) is not None or (
                        _pair(padding) != (0, 0) and not arg(5, "count_include_pad", True)):
                    raise self.err("only ceil_mode=False, divisor_override=None and count_include_pad=True (with "
                                   "padding) are supported", i)
                return [_build(conv.AvgPool2d, n.name, target, _compact(_pair(k)), stride=_compact(_pair(stride)),
                               padding=_compact(_pair(padding)))]
            if _pair(arg(4, "dilation", 1)) != (1, 1) or arg(5, "ceil_mode", False) or arg(6, "return_indices", False):
                raise self.err("only dilation=1, ceil_mode=False and return_indices=False are supported", i)
            return [_build(conv.MaxPool2d, n.name, target, _compact(_pair(k)), stride=_compact(_pair(stride)),
                           padding=_compact(_pair(padding)))]
        if target == "adaptive_avg_pool2d":
            return [self._adaptive(i, arg(1, "output_size"), shape)]
        if target in ("avg_pool1d", "max_pool1d", "interpolate"):
            return [self._functional_1d(i, target, arg, shape)]
        raise self.err(f"is not supported in a traced forward; supported: {_FX_SUPPORTED}", i)

    def _functional_1d(self, i: int, target: str, arg: Any, shape: tuple[int, ...]) -> Layer:
        """``F.max_pool1d``, ``F.avg_pool1d`` and ``F.interpolate`` (nearest, integer factors) as the module forms."""
        from types import SimpleNamespace

        name = self.nodes[i].name
        if target == "interpolate":
            if arg(4, "align_corners", None) or arg(6, "antialias", False):
                raise self.err("interpolate with align_corners or antialias is not supported (only mode='nearest')", i)
            ns = SimpleNamespace(mode=arg(3, "mode", "nearest"), size=arg(1, "size", None),
                                 scale_factor=arg(2, "scale_factor", None))
            kind = "Upsample"
        else:
            ns = SimpleNamespace(kernel_size=arg(1, "kernel_size"), stride=arg(2, "stride", None),
                                 padding=arg(3, "padding", 0))
            if target == "max_pool1d":
                ns.dilation, ns.ceil_mode, ns.return_indices = (arg(4, "dilation", 1), arg(5, "ceil_mode", False),
                                                                arg(6, "return_indices", False))
                kind = "MaxPool1d"
            else:
                ns.ceil_mode, ns.count_include_pad = arg(4, "ceil_mode", False), arg(5, "count_include_pad", True)
                kind = "AvgPool1d"
        try:
            return _convert_1d(ns, name, kind, lambda attr: getattr(ns, attr), shape)
        except ModelFormatError as exc:
            raise self.err(str(exc), i) from None

    def _adaptive(self, i: int, output_size: Any, shape: tuple[int, ...]) -> Layer:
        """Adaptive average pooling to ``output_size`` on a (C, H, W) input: ``AvgPool2d`` when the size divides."""
        conv = _conv_module(self.nodes[i].name, "AdaptiveAvgPool2d")
        if len(shape) != 3:
            raise self.err(f"adaptive average pooling needs a (C, H, W) input, not shape {shape}", i)
        out = _pair(output_size) if not isinstance(output_size, (tuple, list)) or None not in output_size else tuple(
            shape[1 + k] if o is None else int(o) for k, o in enumerate(output_size))
        if any(s % o for s, o in zip(shape[1:], out)):
            raise self.err(f"adaptive average pooling from {shape[1:]} to {out} has unequal windows (the size does "
                           "not divide); only divisible sizes are supported", i)
        k = tuple(s // o for s, o in zip(shape[1:], out))
        return _build(conv.AvgPool2d, self.nodes[i].name, "AdaptiveAvgPool2d", _compact(k), stride=_compact(k))


def _is_node(a: Any) -> bool:
    return type(a).__name__ == "Node" and hasattr(a, "op")


def _check_forward(torch: Any, module: Any, net: Network, post: Any = None) -> None:
    modes = [(m, m.training) for m in module.modules()]
    param = next(iter(module.parameters()), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    device = param.device if param is not None else torch.device("cpu")
    x = np.random.default_rng(0).standard_normal((2, *net.input_shape))
    try:
        module.train(False)
        with torch.no_grad():
            got = module(torch.from_numpy(x).to(device=device, dtype=dtype)).to(torch.float64).cpu().numpy()
    except Exception as exc:  # the module's own error, e.g. a shape mismatch inside torch
        raise ModelFormatError(f"from_torch: the module fails on an input of shape {(2, *net.input_shape)}: "
                               f"{type(exc).__name__}: {exc}") from None
    finally:
        for m, mode in modes:
            m.training = mode
    want = net(x)
    if post is not None:  # the removed final softmax, applied to the network's logits
        with torch.no_grad():
            want = post(torch.from_numpy(np.asarray(want, dtype=np.float64))).numpy()
    if got.shape != want.shape:
        raise ModelFormatError(f"from_torch: the module outputs shape {got.shape[1:]} but the converted network "
                               f"{want.shape[1:]}")
    eps = {torch.float64: 1e-12, torch.float32: 1e-4}.get(dtype, 5e-2)  # float16, bfloat16: 5e-2
    tol = eps * (1.0 + float(np.max(np.abs(want))))
    err = float(np.max(np.abs(got - want))) if want.size else 0.0
    if not err <= tol:
        raise ModelFormatError(f"from_torch: the module and the converted network differ by {err:.3g} (tolerance "
                               f"{tol:.3g}) on random inputs; the module probably has a custom forward or hooks "
                               "(pass check=False to skip this test)")


def _pickled_globals(path: str) -> list[tuple[str, str]]:
    """The ``(module, name)`` pairs a ``torch.save`` archive's pickle refers to (read with :mod:`pickletools`,
    which executes nothing); empty if the file is not such an archive."""
    import pickletools

    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
            data = archive.read(name) if name is not None else b""
        pairs, strings = [], []
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                strings.append(arg)
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                pairs.append((strings[-2], strings[-1]))
            elif op.name == "GLOBAL":
                pairs.append(tuple(arg.split(" ", 1)))
        return pairs
    except Exception:  # not a zip archive, a truncated pickle: no names to report
        return []


def _missing_class(path: str, exc: Exception) -> str | None:
    """``module.Name`` of the class whose absence made unpickling fail, or None for another failure."""
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        wanted = [(m, n) for m, n in _pickled_globals(path) if m == exc.name or m.startswith(exc.name + ".")]
        return f"{wanted[0][0]}.{wanted[0][1]}" if wanted else f"{exc.name}.<class>"
    if isinstance(exc, AttributeError):
        import re

        found = re.search(r"Can't get attribute '([^']+)' on <module '([^']+)'", str(exc))
        if found:  # the pickle's own module name (``__main__`` for a script's class), not the one searched
            wanted = [m for m, n in _pickled_globals(path) if n == found.group(1)]
            return f"{(wanted or [found.group(2)])[0]}.{found.group(1)}"
    return None


def load_torch(path: str, input_shape: tuple[int, ...] | None = None, *, strip_output_softmax: bool = False) -> Network:
    """Read a ``.pt``/``.pth`` file holding a whole module (pickled by ``torch.save``: an ``nn.Sequential``, or a
    model class with skip connections whose code is importable) or a TorchScript module of a chain
    (``torch.jit.save``), and convert it with :func:`from_torch`.

    Unpickling runs code stored in the file: load only files you trust (see the module docstring).
    A file holding only a ``state_dict`` raises :class:`~lipverify.ModelFormatError`: build the module,
    load the weights and call :func:`from_torch`.
    """
    torch = _torch()
    path = os.fspath(path)
    try:
        scripted = zipfile.is_zipfile(path) and any(n.endswith("constants.pkl") for n in zipfile.ZipFile(path).namelist())
        if scripted:
            with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; reading it still works
                warnings.simplefilter("ignore", DeprecationWarning)
                obj = torch.jit.load(path, map_location="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # unpickling errors, truncated archives, missing classes
        missing = _missing_class(path, exc)
        if missing is not None:
            raise ModelFormatError(
                f"{path}: the pickled module needs the class {missing}, which is not importable here "
                f"({type(exc).__name__}: {exc}); a pickle stores only the class's name, so the code defining it must "
                f"be importable: import the module that defines {missing} before lipverify.load (on the command "
                "line: put its directory on PYTHONPATH; a class defined in a script's __main__ must move to a "
                "module), or save a TorchScript module (torch.jit.script(model).save(path)) or export to ONNX "
                "(torch.onnx.export), which need no Python class") from None
        raise ModelFormatError(f"{path}: not a readable PyTorch file ({type(exc).__name__}: {exc})") from None
    if isinstance(obj, dict):
        raise ModelFormatError(f"{path}: the file holds a dict (a state_dict?), not a module; build the nn.Sequential, "
                               "load the weights into it and call lipverify.from_torch(module, input_shape)")
    if not isinstance(obj, torch.nn.Module):
        raise ModelFormatError(f"{path}: the file holds a {type(obj).__name__}, not a torch.nn.Module")
    try:
        return from_torch(obj, input_shape, strip_output_softmax=strip_output_softmax)
    except ModelFormatError as exc:
        raise ModelFormatError(f"{path}: {exc}") from None
