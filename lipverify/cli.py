"""The ``lipverify`` command line (also ``python -m lipverify``).

Exit codes: 0 answered; 2 bad or unsupported input (the message names the file, layer and shapes, or the limit
and the flag that raises it); 1 internal error only (among them contradictory results); 130 interrupted (Ctrl-C:
the rows done so far are printed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from . import __version__
from .bounds import (
    COMPARE_BUDGETS,
    LOGITS_NOTE,
    METHODS,
    TABLE_HEADER,
    Comparison,
    compare,
    logits_note,
    row_dict,
    table_line,
    time_exhausted,
)
from .bounds.records import Method, command_line
from .errors import InternalConsistencyError, LipVerifyError
from .io import load
from .lower import lower_bound
from .network import Network
from .norms import NORMS, parse_norm
from .result import Skipped, check_consistency

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
#: seconds for a whole ``bound`` / ``compare`` run unless ``--time-limit`` says otherwise
DEFAULT_TIME_LIMIT = 60.0


class BadInput(Exception):
    """A problem with the user's input: exit code 2."""


def _split(values: list[str] | None) -> list[str] | None:
    """Values of a repeatable option, each possibly a comma list: ``["k4,k1", "k3"]`` -> ``["k4", "k1", "k3"]``."""
    if values is None:
        return None
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def _positive(kind: type, what: str) -> Callable[[str], float | int]:
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            v = None
        if v is None or not v > 0:
            raise argparse.ArgumentTypeError(f"{what}: expected a positive {kind.__name__}, got {text!r}")
        return v
    return parse


def _budget_flags() -> dict[str, list[tuple[str, str]]]:
    """``flag -> [(method id, keyword), ...]`` for the deterministic work limits and seeds of the method records."""
    flags: dict[str, list[tuple[str, str]]] = {}
    for record in METHODS.values():
        if isinstance(record, Method):
            for b in record.budgets:
                if b.kind in ("work", "seed"):
                    flags.setdefault(b.flag, []).append((record.id, b.name))
    return flags


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lipverify",
        description="Certified upper bounds, exact values and lower bounds of Lipschitz constants of neural networks.",
        epilog="Options may come before or after MODEL. Exit codes: 0 answered, 2 bad or unsupported input, "
               "1 internal error, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"lipverify {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def norms_option(p: argparse.ArgumentParser, default: Sequence[str]) -> None:
        p.add_argument("--norm", action="append", default=None, metavar="NORM",
                       help=f"a norm: 1, 2, inf (also l1, l2, linf); repeat the flag or give a comma list "
                            f"(--norm 1,inf); default: {','.join(default)}")

    def common(p: argparse.ArgumentParser, norms_default: Sequence[str]) -> None:
        p.add_argument("model", nargs="?", help="model file: .npz (see lipverify.io.npz), .onnx, .pt/.pth (needs torch)")
        p.add_argument("--input-shape", default=None, metavar="SHAPE",
                       help="per-sample input shape, e.g. 1,28,28 (for .pt files and dynamic ONNX inputs)")
        p.add_argument("--zoo", action="store_true", help="run on every built-in analytic network instead of MODEL")
        norms_option(p, norms_default)
        p.add_argument("--method", action="append", default=None, metavar="METHOD",
                       help=f"a method; repeat the flag or give a comma list (--method k4,k1); default: all of "
                            f"{', '.join(METHODS)}")
        p.add_argument("--conv", choices=("implicit", "explicit"), default=None,
                       help="how convolutions are handled (CNNs only)")
        p.add_argument("--json", action="store_true", help="print one JSON object at the end (a list with --zoo)")
        p.add_argument("--jsonl", action="store_true",
                       help="stream one JSON object per row as it completes (each with a \"model\" key)")
        p.add_argument("--no-lower", action="store_true", help="do not add the sampled lower bound row")
        p.add_argument("--logits", action="store_true",
                       help="remove a final Softmax/LogSoftmax (ONNX, PyTorch) and bound the logits; every result says "
                            "so (without it such a model is refused)")
        p.add_argument("--time-limit", type=_positive(float, "--time-limit"), default=DEFAULT_TIME_LIMIT,
                       metavar="SECONDS",
                       help="seconds for the whole run (per model); rows not started in time are skipped with "
                            "\"time budget exhausted\", K2 and KSDP get the remaining time as a cap; "
                            "default: %(default)s")
        seen = {COMPARE_BUDGETS[0].flag}
        for record in METHODS.values():
            if not isinstance(record, Method):
                continue
            for b in record.budgets:
                if b.kind not in ("work", "seed") or b.flag in seen:
                    continue
                seen.add(b.flag)
                users = ", ".join(f"{m}.{name}" for m, name in _budget_flags()[b.flag])
                if b.kind == "seed":
                    p.add_argument(b.flag, type=int, default=None, metavar="N",
                                   help=f"seed of every randomised step ({users}, lower_bound.seed); default: 0")
                else:
                    p.add_argument(b.flag, type=_positive(int, b.flag), default=None, metavar="N",
                                   help=f"{b.help} ({users}); default: {b.default}")

    p_bound = sub.add_parser("bound", help="compute bounds for one norm (default l∞) and the chosen methods")
    common(p_bound, ["inf"])
    p_compare = sub.add_parser("compare", help="compare every method in every norm")
    common(p_compare, list(NORMS))
    p_compare.add_argument("--plot", metavar="OUT.png", default=None,
                           help="also draw a bar chart (one bar per row, coloured by kind) to this file; needs matplotlib")
    p_exact = sub.add_parser("exact", help="the exact Lipschitz constant (sympy) of a small network")
    p_exact.add_argument("model", nargs="?", help="model file (.npz, .onnx, .pt)")
    p_exact.add_argument("--zoo", action="store_true", help="every built-in analytic network instead of MODEL")
    norms_option(p_exact, ["inf"])
    p_exact.add_argument("--input-shape", default=None, help="input shape for model files without one, e.g. 1,28,28")
    p_exact.add_argument("--json", action="store_true", help="print one JSON object (a list with --zoo)")
    p_exact.add_argument("--max-input-dim", type=_positive(int, "--max-input-dim"), default=None, metavar="N",
                         help="region enumeration: largest input dimension tried (default 12)")
    p_exact.add_argument("--max-neurons", type=_positive(int, "--max-neurons"), default=None, metavar="N",
                         help="region enumeration: most hidden neurons tried (default 256)")
    p_exact.add_argument("--time-limit", type=_positive(float, "--time-limit"), default=None, metavar="SECONDS",
                         help="wall-clock cap of region enumeration and of the smooth method (an extra cap)")
    _certify_parser(sub)
    p_check = sub.add_parser("check", help="check a Lipschitz claim: holds (certified upper <= L), refuted (certified "
                             "lower > L, with a witness input) or undecided")
    p_check.add_argument("model", help="model file (.npz, .onnx, .pt)")
    p_check.add_argument("--claim", required=True, type=float, metavar="L", help="the claimed Lipschitz constant")
    p_check.add_argument("--norm", default="2", metavar="NORM", help="1, 2 or inf (also l1, l2, linf); default: %(default)s")
    p_check.add_argument("--input-shape", default=None, metavar="SHAPE", help="per-sample input shape, e.g. 1,28,28")
    p_check.add_argument("--logits", action="store_true", help="remove a final Softmax/LogSoftmax and check the logits")
    p_check.add_argument("--json", action="store_true", help="print one JSON object")
    p_report = sub.add_parser("report", help="regenerate the bound-comparison report (Markdown + PNG)")
    p_report.add_argument("--suite", default="paper", help="paper (minutes) or quick (seconds); default: %(default)s")
    p_report.add_argument("--out", default="docs/reports", help="output folder; default: %(default)s")
    return parser


def _certify_parser(sub) -> None:
    p = sub.add_parser("certify", help="certified radii, local Lipschitz bounds and certified accuracy of a batch of inputs")
    p.add_argument("model", help="model file (.npz, .onnx, .pt) of a classifier")
    p.add_argument("--inputs", required=True, metavar="X.npy",
                   help="a batch of inputs, shape (N, *input shape): .npy, or .npz with arrays x (and optionally y)")
    p.add_argument("--labels", default=None, metavar="y.npy", help="the true classes, shape (N,) (.npy)")
    p.add_argument("--eps", required=True, type=_positive(float, "--eps"), metavar="E", help="the radius to certify")
    p.add_argument("--norm", default="inf", metavar="NORM", help="1, 2 or inf (also l1, l2, linf); default: %(default)s")
    p.add_argument("--method", default=None, metavar="METHOD",
                   help="the bound of the margins and of the local constant; default: k4 in l1/l∞, k1 in l2")
    p.add_argument("--input-shape", default=None, metavar="SHAPE", help="per-sample input shape, e.g. 1,28,28")
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")
    p.add_argument("--workers", type=_positive(int, "--workers"), default=1, metavar="N",
                   help="run the inputs in N local processes (joblib); default: %(default)s")
    p.add_argument("--dask", default=None, metavar="ADDRESS",
                   help="run the inputs on the existing Dask cluster at ADDRESS (e.g. tcp://host:8786); "
                        "needs pip install 'lipverify[dask]'")


def _load_array(path: str, what: str) -> np.ndarray | dict:
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise BadInput(f"{what} {path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise BadInput(f"{what} {path}: not a .npy/.npz array file ({exc})") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            return {k: data[k] for k in data.files}
    return data


def _certify(args) -> int:
    from .certify import certify

    norm = parse_norm(args.norm)
    if args.method is not None and args.method not in METHODS:
        raise BadInput(f"unknown method {args.method}; valid methods are {', '.join(METHODS)}")
    if args.dask is not None and args.workers > 1:
        raise BadInput("give either --workers or --dask, not both")
    if args.dask is not None:
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise BadInput("--dask needs dask.distributed, which is not installed: pip install 'lipverify[dask]'") from None
    data = _load_array(args.inputs, "--inputs")
    labels = None
    if isinstance(data, dict):
        if "x" not in data:
            raise BadInput(f"--inputs {args.inputs}: the .npz has arrays {sorted(data)}, expected x (and optionally y)")
        data, labels = data["x"], data.get("y")
    if args.labels is not None:
        if labels is not None:
            raise BadInput(f"labels given twice: --labels {args.labels} and the array y of {args.inputs}; give one")
        labels = _load_array(args.labels, "--labels")
        if isinstance(labels, dict):
            raise BadInput(f"--labels {args.labels}: expected a .npy array of shape (N,)")
    net = load(args.model, input_shape=_input_shape(args.input_shape))
    if data.ndim == 0:
        raise BadInput(f"--inputs {args.inputs}: a scalar; expected a batch of shape (N, {', '.join(map(str, net.input_shape))})")
    if not (np.issubdtype(data.dtype, np.number) or data.dtype == bool):
        raise BadInput(f"--inputs {args.inputs}: dtype {data.dtype} is not numeric")
    bar = None
    if not args.json and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=len(data), file=sys.stderr, leave=False, desc="certify", unit="input")
    try:
        result = certify(net, data, args.eps, norm, labels=labels, method=args.method, workers=args.workers,
                         dask=args.dask, progress=None if bar is None else (lambda _r: bar.update(1)))
    except OSError as exc:  # TimeoutError included: the Dask scheduler cannot be reached
        if args.dask is None:
            raise
        raise BadInput(f"--dask {args.dask}: cannot use the Dask cluster ({type(exc).__name__}: {exc}); "
                       "check the scheduler address (e.g. tcp://host:8786)") from None
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        print(json.dumps(result.to_dict(args.model), indent=2))
        return EXIT_OK
    print(f"== {args.model}  certify at eps = {args.eps:g} in l{norm} ({result.method}), {len(data)} input(s)")
    print(f"{'index':>6} {'predicted':>9} {'label':>5} {'radius':>12} {'local_upper':>12} certified")
    for r in result.results:
        row = r.to_dict()
        label = "-" if r.label is None else str(r.label)
        print(f"{r.index:>6} {r.predicted:>9} {label:>5} {row['radius']:>12.6g} {row['local_upper']:>12.6g} "
              f"{'yes' if r.certified else 'no'}")
    certified = sum(r.certified for r in result.results)
    print(f"certified accuracy: {result.certified_accuracy:.4f} ({certified}/{len(result.results)})")
    return EXIT_OK


def _check(args) -> int:
    from .check import check_lipschitz

    norm = parse_norm(args.norm)
    if not (np.isfinite(args.claim) and args.claim >= 0):
        raise BadInput(f"--claim {args.claim}: expected a finite number >= 0")
    net = load(args.model, input_shape=_input_shape(args.input_shape), strip_output_softmax=args.logits)
    verdict = check_lipschitz(net, args.claim, norm)
    if args.json:
        print(json.dumps(verdict.to_dict(args.model), indent=2))
        return EXIT_OK
    print(f"== {args.model}  claim: Lip_l{norm} <= {args.claim!r}")
    if verdict.verdict == "holds":
        print(f"holds: certified upper bound {verdict.upper:.17g} ({verdict.upper_method}) <= {args.claim!r}")
    elif verdict.verdict == "refuted":
        print(f"refuted: certified lower bound {verdict.lower:.17g} > {args.claim!r}: ||J(x)||_{norm} at the witness "
              f"input x (--json prints it) is certified above the claim")
    else:
        up = "none" if verdict.upper is None else f"{verdict.upper:.17g} ({verdict.upper_method})"
        low = "none" if verdict.lower is None else f"{verdict.lower:.17g}"
        print(f"undecided: certified upper {up}, certified lower {low}")
    return EXIT_OK


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


def _norms(args, default: Sequence[str]) -> list[str]:
    return [parse_norm(n) for n in (_split(args.norm) or list(default))]


def _exact(args) -> int:
    from .exact import exact

    norms = _norms(args, ["inf"])
    options = {k: v for k, v in (("max_input_dim", args.max_input_dim), ("max_neurons", args.max_neurons),
                                 ("time_limit", args.time_limit)) if v is not None}
    outputs = []
    for name, net, constants in _models(args):
        rows = []
        for n in norms:
            started = time.perf_counter()
            try:
                rows.append(exact(net, n, **options))
            except TypeError as exc:  # a flag the technique chosen for this network does not take
                given = ", ".join("--" + k.replace("_", "-") for k in options)
                raise BadInput(f"exact: not every option of {given} applies to the technique chosen for this network "
                               f"({exc}); --max-input-dim and --max-neurons apply to region enumeration only "
                               "(piecewise-linear networks with several inputs)") from None
            except LipVerifyError as exc:
                if isinstance(exc, InternalConsistencyError):
                    raise
                reason = str(exc)
                if "max_input_dim=" in reason:
                    reason += " (on the command line: --max-input-dim N, --max-neurons N)"
                rows.append(Skipped("exact", n, reason, time.perf_counter() - started))
        check_consistency(rows)
        if not args.zoo and all(isinstance(r, Skipped) for r in rows):
            # nothing computed for the one model asked about: that is an answer of "unsupported", exit 2
            raise BadInput("; ".join(dict.fromkeys(f"l{r.norm}: {r.error}" for r in rows)))
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
    return [(args.model, load(args.model, input_shape=_input_shape(args.input_shape),
                              strip_output_softmax=bool(getattr(args, "logits", False))), {})]


def _options(args) -> dict[str, dict]:
    """Per-method keyword arguments from the budget flags the user gave (``--k2-nodes 500`` -> ``k2.max_nodes``)."""
    out: dict[str, dict] = {}
    for flag, users in _budget_flags().items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"), None)
        if value is None:
            continue
        for method, name in users:
            out.setdefault(method, {})[name] = value
    return out


def _cli_words(row):
    """A Skipped row whose reason names a budget by its Python keyword also gets the command-line flag."""
    record = METHODS.get(row.method)
    if not isinstance(row, Skipped) or not isinstance(record, Method):
        return row
    flags = [b.flag for b in record.budgets if b.kind == "work" and b.name in row.error and b.flag not in row.error]
    if not flags:
        return row
    return replace(row, error=f"{row.error} (on the command line: {', '.join(flags)})")


class _Run:
    """One ``bound``/``compare`` invocation: the rows done so far (printed on Ctrl-C), the progress bar."""

    def __init__(self, args, norms: list[str]):
        self.args, self.norms = args, norms
        self.methods = _split(args.method)
        self.options = _options(args)
        self.done: list[tuple[str, Network, list]] = []
        self.bar = None
        self.stream_table = not args.json and not args.jsonl

    def out(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stdout)
        else:
            print(line, flush=True)

    def model(self, name: str, net: Network, constants: dict) -> Comparison:
        from .ir.graph import conv_variants as cnn

        args = self.args
        rows: list = []
        self.done.append((name, net, rows))
        names = list(METHODS) if self.methods is None else self.methods
        variants = 2 if cnn(net, args.conv) and args.conv is None else 1
        per_norm = sum(variants if isinstance(METHODS[m], Method) and METHODS[m].conv else 1 for m in names)
        if self.stream_table:
            self.out(f"== {name}  input shape {net.input_shape}, output shape {net.output_shape}")
            if constants:
                self.out("   true constant: " + ", ".join(f"l{n} = {v}" for n, v in constants.items()))
            if getattr(net, "stripped_output", None):
                self.out(f"   --logits: the final {net.stripped_output} was removed; every bound below is of the logits")
            self.out(TABLE_HEADER)
        if not args.json and not args.jsonl and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=len(self.norms) * (per_norm + int(not args.no_lower)), file=sys.stderr, leave=False,
                            desc="bounds", unit="row")

        def emit(row) -> None:
            row = _cli_words(logits_note(row, net))
            rows.append(row)
            check_consistency(rows)  # against the lower bound rows too, before anything is printed
            if self.bar is not None:
                self.bar.update(1)
            if args.jsonl:
                self.out(json.dumps({"model": name, **row_dict(row), **_logits_fields(net)}))
            elif self.stream_table:
                self.out(table_line(row))

        def progress(method: str, norm: str) -> None:
            if self.bar is not None:
                self.bar.set_postfix_str(f"{method} l{norm}")

        def work(method: str, norm: str, done: int, total: int) -> None:
            if self.bar is not None:
                unit = METHODS[method].progress_unit if method in METHODS else "steps"
                self.bar.set_postfix_str(f"{method} l{norm}: {done}/{total} {unit}")

        deadline = time.perf_counter() + args.time_limit
        seed = getattr(args, "seed", None)
        try:
            for n in self.norms:
                if not args.no_lower:
                    progress("lower_bound", n)
                    started = time.perf_counter()
                    if started >= deadline:
                        emit(Skipped("lower_bound", n, time_exhausted(args.time_limit)))
                    else:
                        try:
                            emit(lower_bound(net, n, seed=0 if seed is None else seed,
                                             progress=lambda done, total, n=n: work("lower_bound", n, done, total)))
                        except InternalConsistencyError:
                            raise
                        except LipVerifyError as exc:
                            emit(Skipped("lower_bound", n, str(exc), time.perf_counter() - started))
                compare(net, norms=[n], methods=names, conv=args.conv, deadline=deadline, time_limit=args.time_limit,
                        on_row=emit, progress=progress, work_progress=work, **self.options)
        finally:
            if self.bar is not None:
                self.bar.close()
                self.bar = None
        if self.stream_table:
            self.out("")
        return Comparison(rows)

    def interrupted(self) -> None:
        """Ctrl-C: the rows done are on stdout already (table, --jsonl); with --json print them now."""
        if self.bar is not None:
            self.bar.close()
        if self.args.json:
            objs = [_json_object(name, net, Comparison(rows)) for name, net, rows in self.done]
            print(json.dumps(objs if self.args.zoo else (objs[0] if objs else {}), indent=2))
        count = sum(len(rows) for _, _, rows in self.done)
        print(f"lipverify: interrupted; {count} row(s) done, printed above", file=sys.stderr)


def _bounds(args, run_holder: list) -> int:
    norms = _norms(args, ["inf"] if args.command == "bound" else list(NORMS))
    methods = _split(args.method)
    if methods is not None:
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            raise BadInput(f"unknown method(s) {', '.join(unknown)}; valid methods are {', '.join(METHODS)}")
    if args.json and args.jsonl:
        raise BadInput("give either --json or --jsonl, not both")
    plot = getattr(args, "plot", None)
    if plot is not None:
        _check_matplotlib()
    models = _models(args)
    run = _Run(args, norms)
    run_holder.append(run)
    plotted = []
    for name, net, constants in models:
        rows = run.model(name, net, constants)
        if args.command == "bound" and methods is not None and len(methods) == 1:
            failed = [r for r in rows if isinstance(r, Skipped) and r.method == methods[0]]
            if failed and len(failed) == len([r for r in rows if r.method == methods[0]]):
                raise BadInput(failed[0].error)
        plotted.append((name, rows))
    if args.json:
        objs = [_json_object(name, net, Comparison(rows)) for name, net, rows in run.done]
        print(json.dumps(objs if args.zoo else objs[0], indent=2))
    if plot is not None:
        _plot(plotted, norms, plot)
    return EXIT_OK


def _json_object(name: str, net: Network, rows: Comparison) -> dict:
    obj = {"model": name, "input_shape": list(net.input_shape), "results": rows.to_dicts()}
    obj.update(_logits_fields(net))
    return obj


def _logits_fields(net: Network) -> dict:
    """``{"stripped_output": op, "note": ...}`` for a model whose final softmax ``--logits`` removed, else ``{}``."""
    op = getattr(net, "stripped_output", None)
    return {} if op is None else {"stripped_output": op, "note": LOGITS_NOTE.format(op=op)}


_KIND_STYLE = {  # colour and hatch per result kind, so upper / exact / lower / estimate read apart in grey too
    "upper": ("#4c72b0", ""), "exact": ("#55a868", "//"), "lower": ("#c44e52", ".."), "estimate": ("#8c8c8c", "xx"),
}
_CONV_SHORT = {"implicit": "impl", "explicit": "expl"}


def _check_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise BadInput("--plot needs matplotlib, which is not installed: pip install 'lipverify[plot]' "
                       "(or pip install matplotlib)") from None


def _label(row) -> str:
    """``"kstar"``, or ``"kstar impl"`` / ``"kstar expl"`` for the two rows of a CNN."""
    conv = row_dict(row).get("conv")
    return row.method if conv is None else f"{row.method} {_CONV_SHORT[conv]}"


def plot_figure(models: list[tuple[str, Comparison]], norms: list[str]):
    """The ``--plot`` figure: one panel per model, one group per norm, one bar per row with a value (CNN rows
    ``implicit`` and ``explicit`` side by side), labelled ``method [impl|expl] value``, coloured and hatched by
    kind; a log axis when the values span at least a factor 10.  Each bar's gid is ``"label|lNORM|kind"``."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    fig = Figure(figsize=(11, 4.2 * len(models)), layout="constrained")
    axes = fig.subplots(len(models), 1, squeeze=False)[:, 0]
    for ax, (name, rows) in zip(axes, models):
        numeric = [r for r in rows if not isinstance(r, Skipped) and r.value is not None and r.float_value() is not None]
        groups = {n: [r for r in numeric if r.norm == n] for n in norms}
        width = 0.86 / max([len(g) for g in groups.values()] + [1])
        positive = [r.float_value() for r in numeric if r.float_value() > 0]
        log = bool(positive) and max(positive) >= 10 * min(positive)
        for g, norm in enumerate(norms):
            group = groups[norm]
            for k, row in enumerate(group):
                x = g + (k - (len(group) - 1) / 2) * width
                value = row.float_value()
                label = _label(row)
                colour, hatch = _KIND_STYLE[row.kind]
                if log and not value > 0:  # a zero lower bound has no place on a log axis: label it instead
                    ax.annotate(f"{label} = 0 ({row.kind})", (x, 0), xycoords=("data", "axes fraction"), rotation=90,
                                ha="center", va="bottom", fontsize=7)
                    continue
                (bar,) = ax.bar(x, value, width * 0.9, color=colour, hatch=hatch, edgecolor="black", linewidth=0.4)
                bar.set_gid(f"{label}|l{norm}|{row.kind}")
                ax.annotate(f"{label} {value:.4g}", (x, value), rotation=90, ha="center", va="bottom", fontsize=7,
                            xytext=(0, 2), textcoords="offset points")
        if log:
            ax.set_yscale("log")
            ax.set_ylim(min(positive) / 3, max(positive) * 8)  # room above the bars for the labels
        elif positive:
            ax.set_ylim(0, max(positive) * 1.6)
        ax.set_xticks(range(len(norms)), [f"l{n}" for n in norms])
        ax.set_ylabel("Lipschitz constant" + (" (log scale)" if log else ""))
        ax.set_title(name, fontsize=10)
    kinds = [k for k in _KIND_STYLE if any(r.kind == k for _, rows in models for r in rows)]
    fig.legend(handles=[Patch(facecolor=_KIND_STYLE[k][0], hatch=_KIND_STYLE[k][1], edgecolor="black", label=k)
                        for k in kinds], loc="outside upper right", ncols=len(kinds) or 1)
    return fig


def _plot(models: list[tuple[str, Comparison]], norms: list[str], out: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = plot_figure(models, norms)
    FigureCanvasAgg(fig)
    try:
        fig.savefig(out, dpi=110)
    except (OSError, ValueError) as exc:
        raise BadInput(f"--plot {out}: cannot write the figure ({exc})") from None


def _cli_advice(args, message: str) -> str:
    """Advice worded for the command line where the library's message is worded for Python."""
    shape = getattr(args, "input_shape", None)
    if "insert Flatten()" in message and shape:
        try:
            flat = int(np.prod(_input_shape(shape)))
        except BadInput:
            return ""
        return f" (on the command line: give the flat input size, --input-shape {flat})"
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    import signal

    parser = _parser()
    args = parser.parse_args(argv)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # e.g. started in the background by a shell
        signal.signal(signal.SIGINT, signal.default_int_handler)
    run: list[_Run] = []
    try:
        with command_line():
            if args.command == "report":
                return _report(args)
            if args.command == "exact":
                return _exact(args)
            if args.command == "certify":
                return _certify(args)
            if args.command == "check":
                return _check(args)
            return _bounds(args, run)
    except KeyboardInterrupt:
        if run:
            run[0].interrupted()
        else:
            print("lipverify: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except InternalConsistencyError as exc:
        print(f"lipverify: internal error: {type(exc).__name__}: {exc}\n"
              "lipverify: the contradicting rows are not reported (a row printed above that is named here is "
              "withdrawn); please report this (the command line, the model file and `lipverify --version`) to the "
              "lipverify maintainers", file=sys.stderr)
        return EXIT_INTERNAL
    except (BadInput, LipVerifyError, ValueError, FileNotFoundError) as exc:
        # every other LipVerifyError describes the input (a layer, a shape, a limit, an overflow), never a bug
        name = "" if isinstance(exc, (BadInput, ValueError, FileNotFoundError)) else f"{type(exc).__name__}: "
        print(f"lipverify: error: {name}{exc}{_cli_advice(args, str(exc))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # a bug: show where, exit 1
        traceback.print_exc()
        print(f"lipverify: internal error: {type(exc).__name__}: {exc}; please report it to the lipverify maintainers",
              file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
