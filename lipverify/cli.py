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
from .errors import InternalConsistencyError, LipVerifyError, ModelFormatError, NotApplicableError, ShapeError
from .io import load
from .lower import lower_bound
from .network import Network
from .norms import NORMS, parse_norm
from .result import Skipped, check_consistency

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
        p.add_argument("model", nargs="?", help="model file: .npz (see lipverify.io.npz), .onnx, .pt/.pth (needs torch)")
        p.add_argument("--input-shape", default=None, metavar="SHAPE",
                       help="per-sample input shape, e.g. 1,28,28 (for .pt files and dynamic ONNX inputs)")
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
    p_compare.add_argument("--plot", metavar="OUT.png", default=None,
                           help="also draw a bar chart (log scale, one group per norm) to this file; needs matplotlib")
    p_exact = sub.add_parser("exact", help="the exact Lipschitz constant (sympy) of a small network")
    p_exact.add_argument("model", nargs="?", help="model file (.npz, .onnx, .pt)")
    p_exact.add_argument("--zoo", action="store_true", help="every built-in analytic network instead of MODEL")
    p_exact.add_argument("--norm", nargs="+", default=["inf"], metavar="NORM", help="norms; default: %(default)s")
    p_exact.add_argument("--input-shape", default=None, help="input shape for model files without one, e.g. 1,28,28")
    p_exact.add_argument("--json", action="store_true", help="print one JSON object (a list with --zoo)")
    p_report = sub.add_parser("report", help="regenerate the bound-comparison report (Markdown + PNG)")
    p_report.add_argument("--suite", default="paper", help="paper (minutes) or quick (seconds); default: %(default)s")
    p_report.add_argument("--out", default="docs/reports", help="output folder; default: %(default)s")
    return parser


def _input_shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(d) for d in text.replace("x", ",").split(",") if d.strip())
    except ValueError:
        shape = ()
    if not shape or any(d <= 0 for d in shape):
        raise BadInput(f"--input-shape {text!r}: expected positive integers separated by commas, e.g. 1,28,28")
    return shape


def _exact(args) -> int:
    from .exact import exact

    norms = [parse_norm(n) for n in args.norm]
    outputs = []
    for name, net, constants in _models(args):
        rows = []
        for n in norms:
            started = time.perf_counter()
            try:
                rows.append(exact(net, n))
            except NotApplicableError as exc:
                rows.append(Skipped("exact", n, str(exc), time.perf_counter() - started))
        check_consistency(rows)
        result = Comparison(rows)
        if args.json:
            outputs.append(_json_object(name, net, result))
            continue
        print(f"== {name}  input shape {net.input_shape}, output shape {net.output_shape}")
        for row in result:
            if isinstance(row, Skipped):
                print(f"  l{row.norm}: not computed: {row.error}")
            else:
                gap = "" if row.lower is None else f"  (certified enclosure [{row.lower:.10g}, {float(row.value):.10g}])"
                print(f"  l{row.norm}: {row.value}  [{row.kind}, {row.seconds:.3f} s]{gap}")
                if constants.get(row.norm) is not None:
                    print(f"        closed form: {constants[row.norm]}")
        print()
    if args.json:
        print(json.dumps(outputs if args.zoo else outputs[0], indent=2))
    return EXIT_OK


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
    return [(args.model, load(args.model, input_shape=_input_shape(args.input_shape)), {})]


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
    check_consistency(rows)  # the sampled lower bound against every upper bound
    return Comparison(rows)


def _table(name: str, net: Network, rows: Comparison, constants: dict) -> str:
    lines = [f"== {name}  input shape {net.input_shape}, output shape {net.output_shape}"]
    if constants:
        lines.append("   true constant: " + ", ".join(f"l{n} = {v}" for n, v in constants.items()))
    lines.append(rows.table())
    return "\n".join(lines)


def _json_object(name: str, net: Network, rows: Comparison) -> dict:
    return {"model": name, "input_shape": list(net.input_shape), "results": rows.to_dicts()}


_KIND_STYLE = {  # colour and hatch per result kind, so upper / exact / lower / estimate read apart in grey too
    "upper": ("#4c72b0", ""), "exact": ("#55a868", "//"), "lower": ("#c44e52", ".."), "estimate": ("#8c8c8c", "xx"),
}


def _check_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise BadInput("--plot needs matplotlib, which is not installed: pip install 'lipverify[plot]' "
                       "(or pip install matplotlib)") from None


def _plot(models: list[tuple[str, Comparison]], norms: list[str], out: str) -> None:
    """Bar chart of every numeric row: one group per norm, one bar per method, coloured by kind, log scale."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    fig = Figure(figsize=(9, 3.6 * len(models)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(models), 1, squeeze=False)[:, 0]
    for ax, (name, rows) in zip(axes, models):
        methods = list(dict.fromkeys(r.method for r in rows))
        width = 0.8 / max(len(methods), 1)
        positive = [float(r.value) for r in rows if r.value is not None and float(r.value) > 0]
        for g, norm in enumerate(norms):
            for k, method in enumerate(methods):
                row = next((r for r in rows if r.method == method and r.norm == norm), None)
                x = g + (k - (len(methods) - 1) / 2) * width
                if row is None or row.value is None:
                    continue
                value = float(row.value)
                if not value > 0:  # a zero lower bound has no place on a log axis: label it instead
                    ax.annotate(f"{method}=0", (x, 0), xycoords=("data", "axes fraction"), rotation=90,
                                ha="center", va="bottom", fontsize=7)
                    continue
                colour, hatch = _KIND_STYLE[row.kind]
                ax.bar(x, value, width * 0.9, color=colour, hatch=hatch, edgecolor="black", linewidth=0.4)
                ax.annotate(f"{method} {value:.4g}", (x, value), rotation=90, ha="center", va="bottom", fontsize=7,
                            xytext=(0, 2), textcoords="offset points")
        ax.set_yscale("log")
        if positive:  # at least a factor 10 on the axis, room above the bars for the labels
            ax.set_ylim(min(positive) / 3, max(positive) * 6)
        ax.set_xticks(range(len(norms)), [f"l{n}" for n in norms])
        ax.set_ylabel("Lipschitz constant (bound)")
        ax.set_title(name, fontsize=10)
    kinds = [k for k in _KIND_STYLE if any(r.kind == k for _, rows in models for r in rows)]
    fig.legend(handles=[Patch(facecolor=_KIND_STYLE[k][0], hatch=_KIND_STYLE[k][1], edgecolor="black", label=k)
                        for k in kinds], loc="outside upper right", ncols=len(kinds) or 1)
    try:
        fig.savefig(out, dpi=110)
    except (OSError, ValueError) as exc:
        raise BadInput(f"--plot {out}: cannot write the figure ({exc})") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "report":
            return _report(args)
        if args.command == "exact":
            return _exact(args)
        norms = [parse_norm(n) for n in args.norm]
        if args.method is not None:
            unknown = [m for m in args.method if m not in METHODS]
            if unknown:
                raise BadInput(f"unknown method(s) {', '.join(unknown)}; valid methods are {', '.join(METHODS)}")
        plot = getattr(args, "plot", None)
        if plot is not None:
            _check_matplotlib()
        models = _models(args)
        outputs = []
        plotted = []
        for name, net, constants in models:
            rows = _run(net, norms, args.method, args.conv, not args.no_lower,
                        show_progress=not args.json and sys.stderr.isatty())
            if args.command == "bound" and args.method is not None and len(args.method) == 1:
                failed = [r for r in rows if isinstance(r, Skipped) and r.method == args.method[0]]
                if failed and len(failed) == len(norms):
                    raise BadInput(failed[0].error)
            plotted.append((name, rows))
            if args.json:
                outputs.append(_json_object(name, net, rows))
            else:
                print(_table(name, net, rows, constants))
                print()
        if args.json:
            print(json.dumps(outputs if args.zoo else outputs[0], indent=2))
        if plot is not None:
            _plot(plotted, norms, plot)
        return EXIT_OK
    except (BadInput, ModelFormatError, ShapeError, NotApplicableError, ValueError, FileNotFoundError) as exc:
        print(f"lipverify: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except InternalConsistencyError as exc:
        print(f"lipverify: internal error: {type(exc).__name__}: {exc}\n"
              "lipverify: no result is printed because two of them contradict each other; please report this "
              "(the command line, the model file and `lipverify --version`) to the lipverify maintainers",
              file=sys.stderr)
        return EXIT_INTERNAL
    except LipVerifyError as exc:
        print(f"lipverify: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT if isinstance(exc, ModelFormatError) else EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
