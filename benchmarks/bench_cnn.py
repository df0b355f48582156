"""CIFAR-size CNN: speed of the implicit K3/K4 passes against one forward pass, and peak memory of the
explicit against the implicit method (both measured in the same run).

Network (random weights, seed 0): conv 3->32, conv 32->32, maxpool 2, conv 32->64, conv 64->64, maxpool 2,
dense 4096->512->10; 3x3 kernels, padding 1, ReLU after every conv and the hidden dense layer.

Run: ``PYTHONPATH=. python benchmarks/bench_cnn.py``.  Goals: K3 l∞ / forward <= 1.5, K4 l∞ / forward <= 2 n_out.
Times are the best of several runs in **CPU time of this process** (``time.process_time``) with BLAS limited to
one thread (set below, before numpy is imported), so that other load on the machine does not distort the
ratios; both sides of every ratio are measured the same way in the same run.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import time  # noqa: E402
import tracemalloc  # noqa: E402

import numpy as np  # noqa: E402

import lipverify as lv  # noqa: E402


def cifar_cnn(seed: int = 0, pool=lv.MaxPool2d) -> lv.Network:
    """The benchmark network; ``pool=lv.AvgPool2d`` gives a variant whose K4 l∞ runs every layer backward."""
    rng = np.random.default_rng(seed)

    def conv(c_in, c_out):
        return lv.Conv2d(rng.normal(0, np.sqrt(2 / (9 * c_in)), (c_out, c_in, 3, 3)), rng.normal(0, 0.01, c_out), padding=1)

    return lv.Network([
        conv(3, 32), lv.ReLU(), conv(32, 32), lv.ReLU(), pool(2),
        conv(32, 64), lv.ReLU(), conv(64, 64), lv.ReLU(), pool(2), lv.Flatten(),
        lv.Dense(rng.normal(0, np.sqrt(2 / 4096), (512, 4096)), np.zeros(512)), lv.ReLU(),
        lv.Dense(rng.normal(0, np.sqrt(2 / 512), (10, 512)), np.zeros(10)),
    ], input_shape=(3, 32, 32))


def best_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return min(times)


def peak_memory(fn) -> tuple[float, object]:
    tracemalloc.start()
    out = fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20, out


def main() -> None:
    from lipverify.ir.operators import _ABS_CACHE

    net = cifar_cnn()
    x = np.random.default_rng(1).normal(size=net.input_shape)
    net(x)  # warm-up of numpy/BLAS
    t_fwd = best_time(lambda: net(x), 30)
    _ABS_CACHE.clear()
    t_k3_cold = best_time(lambda: lv.bound(net, "k3", "inf", conv="implicit"), 1)  # |W| computed in this call
    t_k3 = best_time(lambda: lv.bound(net, "k3", "inf", conv="implicit"), 10)  # |W| cached on the layers
    t_k4 = best_time(lambda: lv.bound(net, "k4", "inf", conv="implicit"), 5)
    print(f"network: {net}")
    print(f"forward pass (one input)        {t_fwd * 1e3:9.2f} ms")
    print(f"implicit K3 l∞ (first call)     {t_k3_cold * 1e3:9.2f} ms   ratio {t_k3_cold / t_fwd:6.2f}")
    print(f"implicit K3 l∞                  {t_k3 * 1e3:9.2f} ms   ratio {t_k3 / t_fwd:6.2f}  (goal <= 1.5)")
    print(f"implicit K4 l∞                  {t_k4 * 1e3:9.2f} ms   ratio {t_k4 / t_fwd:6.2f}  (goal <= {2 * net.n_out}; "
          "rows enclosed after the last max pool)")
    avg = cifar_cnn(pool=lv.AvgPool2d)
    t_fwd_avg = best_time(lambda: avg(x), 30)
    t_k4_avg = best_time(lambda: lv.bound(avg, "k4", "inf", conv="implicit"), 5)
    print(f"AvgPool variant: forward {t_fwd_avg * 1e3:.2f} ms, implicit K4 l∞ (10 rows through every layer) "
          f"{t_k4_avg * 1e3:.2f} ms, ratio {t_k4_avg / t_fwd_avg:.2f}  (goal <= {2 * avg.n_out})")
    results = {}
    for variant in ("implicit", "explicit"):
        for method in ("k3", "k4"):
            _ABS_CACHE.clear()
            t = time.perf_counter()
            mem, b = peak_memory(lambda v=variant, m=method: lv.bound(net, m, "inf", conv=v))
            results[variant, method] = (mem, float(b.value), time.perf_counter() - t)
    for (variant, method), (mem, value, secs) in results.items():
        print(f"{variant:<9} {method} l∞: value {value:.9g}, peak traced memory {mem:9.1f} MiB, {secs:7.2f} s")
    for method in ("k3", "k4"):
        ratio = results["explicit", method][0] / results["implicit", method][0]
        print(f"peak memory explicit / implicit ({method} l∞): {ratio:.1f}")


if __name__ == "__main__":
    main()
