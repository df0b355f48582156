"""Run one command in a child process, one BLAS thread, and measure it: wall time, CPU seconds (user + sys, from
``os.wait4`` on that child) and peak RSS in MB (its ``ru_maxrss``, KiB on Linux)."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path


def run_child(cmd: list[str], cwd: Path, pythonpath: Path) -> dict:
    """``{"stdout", "wall", "cpu", "rss_mb"}`` of ``cmd``; a nonzero exit raises with the end of its stderr."""
    env = dict(os.environ, PYTHONPATH=str(pythonpath), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               MKL_NUM_THREADS="1")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... exited {code}: {stderr[-2000:]}")
    return {"stdout": stdout, "wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024}
