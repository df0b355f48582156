"""Train the small CNN fixture ``fashion_cnn.onnx`` used by Test 4 of the report.

Data: Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``),
28x28 grey images in [0, 1].  Needs PyTorch (``pip install torch==2.13.0``, CPU).  Deterministic (seed 0)::

    python -m lipverify.data.train_fashion_cnn [--epochs 2] [--out lipverify/data/fashion_cnn.onnx]

Architecture: conv 1->4 (3x3, pad 1), ReLU, max-pool 2, conv 4->8 (3x3, pad 1), ReLU, max-pool 2, flatten,
dense 392->32, ReLU, dense 32->10 (about 13k parameters).  The test accuracy is written to the model's
``doc_string``.
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np

DATA = Path("/usr/share/datasets/fashion-mnist")


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def main() -> None:
    import torch
    from torch import nn

    import lipverify as lv

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).with_name("fashion_cnn.onnx")))
    args = parser.parse_args()
    torch.manual_seed(0)
    x_train = torch.tensor(read_idx(DATA / "train-images-idx3-ubyte.gz"), dtype=torch.float32)[:, None] / 255
    y_train = torch.tensor(read_idx(DATA / "train-labels-idx1-ubyte.gz"), dtype=torch.long)
    x_test = torch.tensor(read_idx(DATA / "t10k-images-idx3-ubyte.gz"), dtype=torch.float32)[:, None] / 255
    y_test = torch.tensor(read_idx(DATA / "t10k-labels-idx1-ubyte.gz"), dtype=torch.long)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(392, 32), nn.ReLU(), nn.Linear(32, 10),
    )
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(0)
    for epoch in range(args.epochs):
        perm = torch.randperm(len(x_train), generator=gen)
        for i in range(0, len(perm), 128):
            idx = perm[i:i + 128]
            opt.zero_grad()
            loss = loss_fn(model(x_train[idx]), y_train[idx])
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            acc = float((model(x_test).argmax(1) == y_test).float().mean())
        model.train()
        print(f"epoch {epoch + 1}: test accuracy {acc:.4f}")
    model.eval()
    net = lv.from_torch(model, (1, 28, 28))
    lv.save(net, args.out)
    import onnx

    proto = onnx.load(args.out)
    proto.doc_string = f"lipverify Test 4 fixture: Fashion-MNIST CNN, seed 0, {args.epochs} epochs, test accuracy {acc:.4f}"
    onnx.save(proto, args.out)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size} bytes)")


if __name__ == "__main__":
    main()
