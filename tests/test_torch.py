"""PyTorch import (lipverify.io.torch): from_torch, .pt/.pth files, errors.  Needs torch (optional extra)."""

import importlib.util
import io
import warnings

import numpy as np
import pytest

import lipverify as lv
from lipverify.cli import main

torch = pytest.importorskip("torch")
nn = torch.nn
HAS_CONV = importlib.util.find_spec("lipverify.conv") is not None
needs_conv = pytest.mark.skipif(not HAS_CONV, reason="lipverify.conv (CNN layers) is not on this branch yet")


def _fc():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(),
        nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Dropout(0.5), nn.Linear(6, 5, bias=False), nn.LeakyReLU(0.2)),
        nn.Linear(5, 5), nn.Tanh(), nn.Linear(5, 5), nn.Sigmoid(), nn.Identity(), nn.Linear(5, 4), nn.GELU(),
        nn.Linear(4, 4), nn.SiLU(), nn.Linear(4, 2),
    )


def _cnn():
    torch.manual_seed(1)
    m = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 3, 3, stride=2, padding=1, groups=1), nn.AvgPool2d(1), nn.Flatten(), nn.Linear(12, 3),
    )
    with torch.no_grad():  # non-trivial running statistics
        m[1].running_mean.uniform_(-1, 1)
        m[1].running_var.uniform_(0.5, 2)
        m[1].weight.uniform_(0.5, 1.5)
    return m


def _torch_out(module, x):
    with torch.no_grad():
        return module.eval()(torch.from_numpy(x).float()).double().numpy()


def test_fc_sequential_matches_forward_and_copies_weights_exactly():
    module = _fc()
    net = lv.from_torch(module, input_shape=(1, 2, 2))
    assert [type(layer).__name__ for layer in net.layers] == [
        "Flatten", "Dense", "ReLU", "Dense", "LeakyReLU", "Dense", "Tanh", "Dense", "Sigmoid", "Dense", "GELU",
        "Dense", "SiLU", "Dense"]
    assert module.training, "from_torch must leave the module's training flag alone"
    linear = module[1][0]
    np.testing.assert_array_equal(net.layers[1].weight, linear.weight.detach().numpy().astype(np.float64))
    assert not net.layers[3].has_bias
    x = np.random.default_rng(0).standard_normal((8, 1, 2, 2))
    np.testing.assert_allclose(net(x), _torch_out(module, x), rtol=1e-5, atol=1e-6)
    # a float64 module agrees to float64 accuracy
    np.testing.assert_allclose(lv.from_torch(_fc().double().eval(), (1, 2, 2))(x),
                               _fc().double().eval()(torch.from_numpy(x)).detach().numpy(), rtol=1e-12, atol=1e-12)


def test_input_shape_is_inferred_from_a_leading_linear_and_otherwise_required():
    net = lv.from_torch(nn.Sequential(nn.ReLU(), nn.Linear(3, 2)))
    assert net.input_shape == (3,)
    with pytest.raises(lv.ModelFormatError, match="pass input_shape"):
        lv.from_torch(_fc())


@needs_conv
def test_cnn_sequential_matches_forward():
    module = _cnn()
    net = lv.from_torch(module, input_shape=(2, 8, 8))
    assert [type(layer).__name__ for layer in net.layers] == [
        "Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Conv2d", "AvgPool2d", "Flatten", "Dense"]
    x = np.random.default_rng(1).standard_normal((5, 2, 8, 8))
    np.testing.assert_allclose(net(x), _torch_out(module, x), rtol=1e-5, atol=1e-5)
    with warnings.catch_warnings():  # a scripted CNN keeps stride, padding, eps, ...
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(module)
    np.testing.assert_array_equal(lv.from_torch(scripted, input_shape=(2, 8, 8))(x), net(x))


def test_torch_onnx_export_and_from_torch_give_the_same_network(tmp_path):
    module = nn.Sequential(nn.Linear(3, 5), nn.GELU(), nn.Linear(5, 4), nn.SiLU(), nn.Linear(4, 2)).eval()
    path = tmp_path / "t.onnx"
    with warnings.catch_warnings():  # the TorchScript-based exporter is deprecated; it still works offline
        warnings.simplefilter("ignore")
        torch.onnx.export(module, torch.zeros(1, 3), str(path), dynamo=False, opset_version=17,
                          input_names=["x"], dynamic_axes={"x": {0: "N"}})
    from_onnx = lv.load(path)
    direct = lv.from_torch(module)
    assert [type(layer) for layer in from_onnx.layers] == [type(layer) for layer in direct.layers]
    for a, b in zip(from_onnx.layers, direct.layers):
        if isinstance(a, lv.Dense):
            np.testing.assert_array_equal(a.weight, b.weight)
    for norm in ("1", "2", "inf"):
        for method in ("kstar", "k1") + (("k3", "k4") if norm != "2" else ()):
            assert lv.bound(from_onnx, method, norm=norm).value == lv.bound(direct, method, norm=norm).value
    x = np.random.default_rng(2).standard_normal((4, 3))
    np.testing.assert_allclose(from_onnx(x), direct(x), rtol=1e-7)


@needs_conv
def test_cnn_through_torch_onnx_export_matches_from_torch(tmp_path):
    module = _cnn().eval()
    path = tmp_path / "cnn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, torch.zeros(1, 2, 8, 8), str(path), dynamo=False, opset_version=17)
    from_onnx = lv.load(path)  # the exporter folds BatchNorm into the convolution, in float32
    direct = lv.from_torch(module, input_shape=(2, 8, 8))
    x = np.random.default_rng(4).standard_normal((3, 2, 8, 8))
    np.testing.assert_allclose(from_onnx(x), _torch_out(module, x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(from_onnx(x), direct(x), rtol=1e-5, atol=1e-5)
    rows_onnx = lv.compare(from_onnx, norms=["inf"], methods=["kstar", "k4"])
    rows_direct = lv.compare(direct, norms=["inf"], methods=["kstar", "k4"])
    numeric = [(a.value, b.value) for a, b in zip(rows_onnx, rows_direct) if a.value is not None]
    assert numeric, [r.error for r in rows_onnx]  # the CNN bounds apply to both imports
    for a, b in numeric:
        assert a == pytest.approx(b, rel=1e-4)


def test_pt_files_pickled_and_torchscript(tmp_path, capsys):
    module = nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(0.1), nn.Linear(4, 2)).eval()
    x = np.random.default_rng(3).standard_normal((4, 3))
    pickled, scripted, traced = tmp_path / "m.pt", tmp_path / "s.pth", tmp_path / "t.pt"
    torch.save(module, pickled)
    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; files written with it still exist
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(module), scripted)
        torch.jit.save(torch.jit.trace(module, torch.zeros(1, 3)), traced)
    for path in (pickled, scripted):
        net = lv.load(path)
        np.testing.assert_allclose(net(x), _torch_out(module, x), rtol=1e-5, atol=1e-6)
    assert main(["bound", str(pickled), "--json", "--method", "k4"]) == 0
    capsys.readouterr()
    # a traced module keeps no hyper-parameters: LeakyReLU's slope is gone
    with pytest.raises(lv.ModelFormatError, match=r"t\.pt: module '1' \(LeakyReLU\) has no attribute 'negative_slope'"):
        lv.load(traced)


def test_bad_pt_files(tmp_path, capsys):
    state = tmp_path / "state.pt"
    torch.save(nn.Linear(2, 2).state_dict(), state)
    with pytest.raises(lv.ModelFormatError, match="state.pt: the file holds a dict"):
        lv.load(state)
    buf = io.BytesIO()
    torch.save(nn.Sequential(nn.Linear(2, 2)), buf)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(buf.getvalue()[:200])
    with pytest.raises(lv.ModelFormatError, match="cut.pt: not a readable PyTorch file"):
        lv.load(cut)
    assert main(["compare", str(cut)]) == 2
    assert "cut.pt: not a readable PyTorch file" in capsys.readouterr().err
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(2), tensor)
    with pytest.raises(lv.ModelFormatError, match="holds a Tensor, not a torch.nn.Module"):
        lv.load(tensor)


class _Custom(nn.Sequential):
    def forward(self, x):
        return 2 * super().forward(x)


def test_unsupported_modules_name_the_path_and_type(tmp_path, capsys):
    with pytest.raises(lv.ModelFormatError, match=r"module '1\.1' \(Softsign\) is not supported; supported modules"):
        lv.from_torch(nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU(), nn.Softsign())))
    with pytest.raises(lv.ModelFormatError, match=r"module '1' \(GELU\): approximate='tanh' is not supported"):
        lv.from_torch(nn.Sequential(nn.Linear(2, 2), nn.GELU(approximate="tanh")))
    with pytest.raises(lv.ModelFormatError, match=r"module '\(root\)' \(_Custom \(a Sequential subclass with its own"):
        lv.from_torch(_Custom(nn.Linear(2, 2)))
    with pytest.raises(lv.ModelFormatError, match=r"module '0' \(Flatten\): only start_dim=1"):
        lv.from_torch(nn.Sequential(nn.Flatten(0), nn.Linear(2, 2)))
    with pytest.raises(lv.ModelFormatError, match=r"module '2' \(layer 2, Dense\(3->1\)\): input shape \(2,\) does not fit"):
        lv.from_torch(nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(3, 1)))
    with pytest.raises(lv.ModelFormatError, match="expects a torch.nn.Module"):
        lv.from_torch([nn.Linear(2, 2)])
    hooked = nn.Sequential(nn.Linear(2, 2))
    hooked[0].register_forward_hook(lambda m, i, o: o * 2)
    with pytest.raises(lv.ModelFormatError, match=r"module '0' \(Linear\) has forward hooks"):
        lv.from_torch(hooked)
    path = tmp_path / "soft.pt"
    torch.save(nn.Sequential(nn.Linear(2, 2), nn.Softmax(dim=1)), path)
    assert main(["compare", str(path)]) == 2
    err = capsys.readouterr().err  # a final softmax: refused unless --logits, which the message suggests
    assert "module '1' (Softmax): the model ends in Softmax" in err and "--logits" in err


@needs_conv
def test_conv_options_that_lipverify_cannot_express():
    with pytest.raises(lv.ModelFormatError, match=r"module '0' \(Conv2d\): padding_mode='reflect'"):
        lv.from_torch(nn.Sequential(nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect")), (1, 4, 4))
    with pytest.raises(lv.ModelFormatError, match=r"module '0' \(MaxPool2d\): ceil_mode=True"):
        lv.from_torch(nn.Sequential(nn.MaxPool2d(2, ceil_mode=True)), (1, 4, 4))
    with pytest.raises(lv.ModelFormatError, match=r"module '0' \(Conv2d\): padding='same' with an even kernel"):
        lv.from_torch(nn.Sequential(nn.Conv2d(1, 1, 2, padding="same")), (1, 4, 4))


# ---- a pickled module whose class is not importable (issue 16, "Why": "not a readable PyTorch file")

_USER_CLASS = '''
import torch


class UserNet(torch.nn.Sequential):
    def __init__(self):
        super().__init__(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
'''


def _lipverify_cli(*argv, cwd):
    """``python -m lipverify`` from this checkout (PYTHONPATH), run in ``cwd``, with only the checkout on the path."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run([sys.executable, "-m", "lipverify", *map(str, argv)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def _save_in_subprocess(code: str, cwd):
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", code], cwd=cwd, check=True, timeout=600)


@pytest.mark.parametrize("where", ["module", "script"])
def test_load_of_a_pickled_user_class_names_the_class_and_what_to_do(tmp_path, where):
    src, run = tmp_path / "src", tmp_path / "elsewhere"
    src.mkdir()
    run.mkdir()
    model = tmp_path / "user.pt"
    if where == "module":  # the class lives in user_net_mod.py, importable only from src/
        (src / "user_net_mod.py").write_text(_USER_CLASS)
        _save_in_subprocess(f"import torch, user_net_mod; torch.save(user_net_mod.UserNet(), {str(model)!r})", src)
        needed = "user_net_mod.UserNet"
    else:  # the class is defined in the user's script itself
        _save_in_subprocess(_USER_CLASS + f"\ntorch.save(UserNet(), {str(model)!r})\n", src)
        needed = "__main__.UserNet"
    out = _lipverify_cli("bound", model, "--method", "k4", cwd=run)
    assert out.returncode == 2, out.stderr
    message = " ".join(out.stderr.split())
    assert f"needs the class {needed}, which is not importable here" in message
    assert f"import the module that defines {needed} before lipverify.load" in message
    assert "TorchScript" in message and "ONNX" in message
    assert "Traceback" not in out.stderr
    if where == "module":  # with the defining module importable the same file loads
        env_out = _lipverify_cli("bound", model, "--method", "k4", "--json", cwd=src)
        assert env_out.returncode == 0, env_out.stderr
