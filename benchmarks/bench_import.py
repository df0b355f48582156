"""Import cost: ``import lipverify`` against ``import numpy, scipy.sparse`` (issue 16 item 8, goal ratio <= 1.5).

Each sample is a fresh ``python -c`` process that times its one import statement, both in wall-clock time
(``time.perf_counter``) and in CPU time of the process (``time.process_time``, less distorted by other load on the
machine).  The two statements alternate, so both sides see the same load; the best of ``--repeat`` samples is kept.
A third process imports numpy and scipy.sparse first and then times ``import lipverify`` alone: what lipverify adds.

lipverify is byte-compiled first (``compileall``, as ``pip install`` does; skip with ``--no-compile``): numpy and
scipy are imported from their installed ``.pyc`` files, and with ``PYTHONDONTWRITEBYTECODE`` set a source checkout
would otherwise be recompiled in every process.  ``--modules`` also lists the heavy optional packages that
``import lipverify`` loaded (there should be none).

Run: ``python benchmarks/bench_import.py [--repeat 7] [--no-compile] [--modules]`` from the repository root.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "import numpy, scipy.sparse"
TARGET = "import lipverify"
#: both in one process: the second timer is what lipverify adds on top of numpy and scipy.sparse
SPLIT = "import numpy, scipy.sparse\nw2, c2 = time.perf_counter(), time.process_time()\nimport lipverify"
HEAVY = ("sympy", "cvxpy", "highspy", "flint", "onnx", "torch", "matplotlib", "tqdm", "scipy.optimize",
         "scipy.linalg", "scipy.sparse.linalg", "scipy.special", "hypothesis")

_PROBE = """
import json, sys, time
w, c = time.perf_counter(), time.process_time()
{statement}
w, c = time.perf_counter() - w, time.process_time() - c
extra = {{"wall_added": time.perf_counter() - w2, "cpu_added": time.process_time() - c2}} if "w2" in globals() else {{}}
print(json.dumps({{"wall": w, "cpu": c, "heavy": [m for m in {heavy!r} if m in sys.modules], **extra}}))
"""


def sample(statement: str) -> dict:
    """One fresh interpreter that runs ``statement`` (from the repository root, one BLAS thread)."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    out = subprocess.run([sys.executable, "-c", _PROBE.format(statement=statement, heavy=HEAVY)], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7, help="fresh processes per statement (best one kept)")
    ap.add_argument("--no-compile", action="store_true", help="do not byte-compile lipverify first")
    ap.add_argument("--modules", action="store_true", help="list the heavy packages import lipverify loaded")
    args = ap.parse_args(argv)
    if not args.no_compile:
        compileall.compile_dir(ROOT / "lipverify", quiet=1)
    inf = float("inf")
    best = {BASELINE: {"wall": inf, "cpu": inf}, TARGET: {"wall": inf, "cpu": inf}}
    added = {"wall": inf, "cpu": inf}
    heavy: set[str] = set()
    sample(BASELINE)  # warm the file cache once
    for _ in range(args.repeat):
        for statement in (BASELINE, TARGET):
            s = sample(statement)
            for key in ("wall", "cpu"):
                best[statement][key] = min(best[statement][key], s[key])
            if statement == TARGET:
                heavy.update(s["heavy"])
        s = sample(SPLIT)
        for key in ("wall", "cpu"):
            added[key] = min(added[key], s[f"{key}_added"])
    print(f"best of {args.repeat} fresh processes ({'byte-compiled' if not args.no_compile else 'as found'}; "
          f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}):")
    print(f"  {'statement':<28} {'wall [s]':>9} {'cpu [s]':>9}")
    for statement in (BASELINE, TARGET):
        print(f"  {statement:<28} {best[statement]['wall']:>9.3f} {best[statement]['cpu']:>9.3f}")
    for key in ("wall", "cpu"):
        print(f"  ratio ({key}): {best[TARGET][key] / best[BASELINE][key]:.2f}  (goal <= 1.5)")
    print(f"  {TARGET!r} right after {BASELINE!r} in the same process adds {added['wall']:.3f} s wall, "
          f"{added['cpu']:.3f} s cpu: ratio {(best[BASELINE]['cpu'] + added['cpu']) / best[BASELINE]['cpu']:.2f} "
          "(less sensitive to other load)")
    if args.modules:
        print(f"  heavy packages loaded by {TARGET!r}: {', '.join(sorted(heavy)) or 'none'}")


if __name__ == "__main__":
    main()
