"""Benchmark of ``lipverify compare`` on the shipped Fashion-MNIST CNN (issue 14 item 6): CPU seconds and peak RSS of
the current tree against an older revision, side by side in one run.

Each side runs ``python -m lipverify compare MODEL --json --time-limit T`` in a child process whose ``PYTHONPATH`` and
working directory are that side's tree, with one BLAS thread (``OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=MKL_NUM_THREADS=1``).
CPU seconds are the child's user + sys time and the peak RSS its ``ru_maxrss``, both from ``os.wait4`` on that child
alone (``resource.getrusage(RUSAGE_CHILDREN)`` would mix the two runs).  ``--time-limit`` defaults to a value no run
reaches, so that neither side skips rows for lack of time (the CLI's default budget is 60 s of wall time, which on a
busy machine would cut the slower side's work short); the rows of both sides are printed with their values so that
the work done can be compared.  The issue's goal: ≤ 1 GB peak RSS and ≥ 5× less CPU time than "today" (178 CPU s,
10 GB).

``--old REV`` checks ``REV`` out (``git worktree add --detach``) into ``--old-dir`` (default: a temporary directory,
removed afterwards; an existing directory is used as it is).  Run from the repository root::

    python benchmarks/bench_compare.py [--old REV] [--old-dir DIR] [--model lipverify/data/fashion_cnn.onnx]

Not a test, and slow (minutes per side on a busy machine): run it once.

Measured 2026-12-02, ``python benchmarks/bench_compare.py --old 58bcf3d --old-dir /work/wt/report_old``, 2 cores
shared with four other jobs (load average 3.0 at the start, 6.3 at the end).  ``58bcf3d`` is main just before the
``lowerb`` merge (``93aa660``), the last revision whose ``lower_bound`` pushed the n_in tangent directions of all samples
at once (the state the issue describes)::

    new (this tree)   13.4 CPU s,  1001 MB peak RSS,  48 rows (lipsdp_fast rows added since)
    old 58bcf3d      210.3 CPU s,  9845 MB peak RSS,  42 rows (lower_bound rows 231 + 410 + 315 s of wall time)
    old / new: 15.7x CPU, 9.8x peak RSS; every shared upper-bound row has the same value.

The new peak (1001 MB, under the 1 GiB goal by 2%) comes from K1 in l2 (explicit matrices): ``lipverify bound
fashion_cnn.onnx --method k1 --norm 2`` alone peaks at 905 MB (``lipsdp_fast``, which takes the min with K1, too).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _child import run_child  # benchmarks/_child.py (the script's directory is on sys.path)

ROOT = Path(__file__).resolve().parent.parent


def run_compare(tree: Path, model: Path, time_limit: float) -> dict:
    """One ``lipverify compare`` in a child process on ``tree``: its rows, CPU seconds, peak RSS and wall time."""
    cmd = [sys.executable, "-m", "lipverify", "compare", str(model), "--json"]
    if "--time-limit" in (tree / "lipverify" / "cli.py").read_text():  # older trees have no time budget at all
        cmd += ["--time-limit", str(time_limit)]
    run = run_child(cmd, tree, tree)
    return {"tree": str(tree), "rows": json.loads(run.pop("stdout"))["results"], **run}


def checkout(rev: str, directory: Path | None) -> tuple[Path, bool]:
    """A worktree of ``rev``: ``directory`` if it exists already, else a new detached worktree there (or in a temporary
    directory); the flag says whether this run created it."""
    if directory is not None and directory.exists():
        return directory, False
    target = directory or Path(tempfile.mkdtemp(prefix="bench_compare_old_")) / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(target), rev], check=True,
                   stdout=subprocess.DEVNULL)
    return target, True


def _key(row: dict) -> str:
    conv = row.get("conv")
    return f"{row['method']} l{row['norm']}" + (f" ({conv})" if conv else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", default=None, metavar="REV", help="an older revision to measure beside this tree")
    parser.add_argument("--old-dir", default=None, type=Path, help="where to check REV out (default: a temporary dir)")
    parser.add_argument("--model", default=ROOT / "lipverify" / "data" / "fashion_cnn.onnx", type=Path)
    parser.add_argument("--time-limit", type=float, default=100_000.0,
                        help="compare's --time-limit, the same on both sides (default: never reached)")
    args = parser.parse_args()
    model = args.model.resolve()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()} at start")
    sides = [("new", ROOT, False)]
    if args.old:
        tree, created = checkout(args.old, args.old_dir)
        sides.append((f"old {args.old}", tree, created))
    results = {}
    try:
        for name, tree, _ in sides:
            print(f"running {name} ({tree}) ...", flush=True)
            results[name] = run_compare(tree, model, args.time_limit)
            r = results[name]
            print(f"  {name}: {r['cpu']:.1f} CPU s (user+sys), peak RSS {r['rss_mb']:.0f} MB, wall {r['wall']:.1f} s, "
                  f"load average now {os.getloadavg()}", flush=True)
    finally:
        for _, tree, created in sides:
            if created:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
                shutil.rmtree(tree.parent, ignore_errors=True)
    names = list(results)
    print()
    print("| row | " + " | ".join(f"{n} value (kind, s)" for n in names) + " |")
    print("|---|" + "---|" * len(names))
    table: dict[str, dict[str, str]] = {}
    for n in names:
        seen: dict[str, int] = {}
        for row in results[n]["rows"]:
            key = _key(row)
            seen[key] = seen.get(key, 0) + 1
            if seen[key] > 1:
                key += f" #{seen[key]}"
            cell = (f"{row['value']:.6g} ({row['kind']}, {row['seconds']:.2f})" if row.get("value") is not None
                    else f"– ({(row.get('error') or '')[:40]})")
            table.setdefault(key, {})[n] = cell
    for key, cells in table.items():
        print(f"| {key} | " + " | ".join(cells.get(n, "(absent)") for n in names) + " |")
    print()
    for n in names:
        r = results[n]
        print(f"{n}: {r['cpu']:.1f} CPU s, peak RSS {r['rss_mb']:.0f} MB, wall {r['wall']:.1f} s, {len(r['rows'])} rows")
    if len(names) == 2:
        new, old = results[names[0]], results[names[1]]
        print(f"ratio old/new: CPU {old['cpu'] / new['cpu']:.2f}x, peak RSS {old['rss_mb'] / new['rss_mb']:.2f}x "
              f"(goal: new <= 1024 MB and >= 5x faster than the issue's 178 CPU s / 10 GB)")
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
