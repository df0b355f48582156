"""The ``lipverify`` command line (also ``python -m lipverify``).

Exit codes: 0 success, 2 bad input (the message names the file, layer and shapes), 1 internal error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

from . import __version__
from .bounds import METHODS, Comparison, compare
from .errors import LipVerifyError, ModelFormatError, NotApplicableError, ShapeError
from .io import load
from .lower import lower_bound
from .network import Network
from .norms import NORMS, parse_norm
from .result import Skipped

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2


class BadInput(Exception):
    """A problem with the user's input: exit code 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lipverify",
        description="Certified upper bounds, exact values and lower bounds of Lipschitz constants of neural networks.",
    )
    parser.add_argument("--version", action="version", version=f"lipverify {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser, norms_default: Sequence[str]) -> None:
        p.add_argument("model", nargs="?", help="model file (.npz; see lipverify.io.npz for the format)")
        p.add_argument("--zoo", action="store_true", help="run on every built-in analytic network instead of MODEL")
        p.add_argument("--norm", nargs="+", default=list(norms_default), metavar="NORM",
                       help="norms: 1, 2, inf (also l1, l2, linf); default: %(default)s")
        p.add_argument("--method", nargs="+", default=None, metavar="METHOD",
                       help=f"methods (default: all): {', '.join(METHODS)}")
        p.add_argument("--conv", choices=("implicit", "explicit"), default=None,
                       help="how convolutions are handled (CNNs only)")
        p.add_argument("--json", action="store_true", help="print one JSON object (a list of them with --zoo)")
        p.add_argument("--no-lower", action="store_true", help="do not add the sampled lower bound row")

    p_bound = sub.add_parser("bound", help="compute bounds for one norm (default l∞) and the chosen methods")
    common(p_bound, ["inf"])
    p_compare = sub.add_parser("compare", help="compare every method in every norm")
    common(p_compare, list(NORMS))
    p_report = sub.add_parser("report", help="regenerate the bound-comparison report (Markdown + PNG)")
    p_report.add_argument("--suite", default="paper", help="paper (minutes) or quick (seconds); default: %(default)s")
    p_report.add_argument("--out", default="docs/reports", help="output folder; default: %(default)s")
    return parser


def _report(args) -> int:
    from .report import SUITES, generate

    if args.suite not in SUITES:
        raise BadInput(f"unknown suite {args.suite!r}; valid suites are {', '.join(SUITES)}")
    bar = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(file=sys.stderr, leave=False, desc="report", unit="step")

    def progress(message: str) -> None:
        if bar is not None:
            bar.set_postfix_str(message[:60])
            bar.update(1)

    try:
        pages = generate(args.out, args.suite, progress)
    finally:
        if bar is not None:
            bar.close()
    for page in pages:
        print(page)
    return EXIT_OK


def _models(args) -> list[tuple[str, Network, dict]]:
    if args.zoo:
        if args.model:
            raise BadInput("give either MODEL or --zoo, not both")
        from .zoo import ZOO

        return [(name, entry.build(), dict(entry.constants)) for name, entry in ZOO.items()]
    if not args.model:
        raise BadInput("a MODEL file is required (or --zoo for the built-in networks)")
    return [(args.model, load(args.model), {})]


def _run(net: Network, norms: list[str], methods: list[str] | None, conv: str | None, with_lower: bool,
         show_progress: bool) -> Comparison:
    names = list(METHODS) if methods is None else methods
    total = len(norms) * (len(names) + int(with_lower))
    bar = None
    if show_progress:
        from tqdm import tqdm

        bar = tqdm(total=total, file=sys.stderr, leave=False, desc="bounds")

    def progress(method: str, norm: str) -> None:
        if bar is not None:
            bar.set_postfix_str(f"{method} l{norm}")
            bar.update(1)

    options = {}
    if conv is not None:
        options = {m: {"conv": conv} for m in names}
    try:
        rows = list(compare(net, norms=norms, methods=names, progress=progress, **options))
        if with_lower:
            for n in norms:
                progress("lower_bound", n)
                started = time.perf_counter()
                try:
                    rows.append(lower_bound(net, n))
                except LipVerifyError as exc:
                    rows.append(Skipped("lower_bound", n, str(exc), time.perf_counter() - started))
    finally:
        if bar is not None:
            bar.close()
    return Comparison(rows)


def _table(name: str, net: Network, rows: Comparison, constants: dict) -> str:
    lines = [f"== {name}  input shape {net.input_shape}, output shape {net.output_shape}"]
    if constants:
        lines.append("   true constant: " + ", ".join(f"l{n} = {v}" for n, v in constants.items()))
    lines.append(rows.table())
    return "\n".join(lines)


def _json_object(name: str, net: Network, rows: Comparison) -> dict:
    return {"model": name, "input_shape": list(net.input_shape), "results": rows.to_dicts()}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "report":
            return _report(args)
        norms = [parse_norm(n) for n in args.norm]
        if args.method is not None:
            unknown = [m for m in args.method if m not in METHODS]
            if unknown:
                raise BadInput(f"unknown method(s) {', '.join(unknown)}; valid methods are {', '.join(METHODS)}")
        models = _models(args)
        outputs = []
        for name, net, constants in models:
            rows = _run(net, norms, args.method, args.conv, not args.no_lower,
                        show_progress=not args.json and sys.stderr.isatty())
            if args.command == "bound" and args.method is not None and len(args.method) == 1:
                failed = [r for r in rows if isinstance(r, Skipped) and r.method == args.method[0]]
                if failed and len(failed) == len(norms):
                    raise BadInput(failed[0].error)
            if args.json:
                outputs.append(_json_object(name, net, rows))
            else:
                print(_table(name, net, rows, constants))
                print()
        if args.json:
            print(json.dumps(outputs if args.zoo else outputs[0], indent=2))
        return EXIT_OK
    except (BadInput, ModelFormatError, ShapeError, NotApplicableError, ValueError, FileNotFoundError) as exc:
        print(f"lipverify: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except LipVerifyError as exc:
        print(f"lipverify: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT if isinstance(exc, ModelFormatError) else EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
