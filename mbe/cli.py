"""Command line: ``fit`` regenerates neuron tables, ``tables`` checks them, ``reproduce`` runs the
notebooks, ``bench`` measures speed and memory against baselines, ``convert`` converts a model and saves the
conversion, ``evaluate`` compares a model with its spiking twin (sharded under ``torchrun``)."""

from __future__ import annotations

import argparse
import shlex
import sys

from .tables import SHIPPED_DIR, TableKey, fit_tables, shipped_table_keys, verify_tables


def _cmd_fit(args: argparse.Namespace) -> int:
    from .functions import get_function

    if args.all:
        keys = shipped_table_keys()
    elif args.functions:
        keys = []
        for fn in args.functions:
            spec = get_function(fn)
            for t in args.timesteps or [16]:
                for n in args.n_basis or [spec.n_basis]:
                    keys.append(TableKey(fn, n, t, args.recipe, not args.no_decay))
    else:
        print("name functions to fit (e.g. `python -m mbe fit gelu --timesteps 8 16`) or pass --all", file=sys.stderr)
        return 2
    rows = fit_tables(keys, args.out, seed=args.seed, progress=not args.quiet)
    total = rows[-1]["total_seconds"] if rows else 0.0
    for row in rows:
        print(f"{row['table']:40s} mse={row['mse']:.3e}  {row['seconds']:6.1f}s")
    print(f"fitted {len(rows)} table(s) in {total:.1f} s -> {args.out or SHIPPED_DIR}")
    return 0


def _cmd_tables(args: argparse.Namespace) -> int:
    bad = 0
    for name, status in verify_tables(args.dir):
        if status != "ok":
            bad += 1
            print(f"FAIL {name}: {status}")
        elif args.verbose:
            print(f"ok   {name}")
    print(f"{len(shipped_table_keys()) - bad} ok, {bad} missing/stale/corrupt")
    return 1 if bad else 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from .reproduce import HubUnreachable, LocalCopiesMissing, NotebookFailed, run_notebooks, write_run_report

    if (args.models is None) != (args.data is None) or (args.models and args.profile != "paper"):
        print("--models and --data go together, with --profile paper", file=sys.stderr)
        return 2
    try:
        rows = run_notebooks(
            args.profile,
            args.notebooks,
            args.results,
            args.figures,
            args.only,
            models_dir=args.models,
            data_dir=args.data,
            parameters=dict(args.param or []),
        )
    except NotebookFailed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    except HubUnreachable as exc:
        print(f"cannot run the paper profile: {exc}", file=sys.stderr)
        return 2
    except LocalCopiesMissing as exc:
        print(f"cannot run the paper profile from local copies: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for row in rows:
        note = "  (fixture: tiny random models, not a result)" if row.get("fixture") else ""
        print(f"{row['notebook']:32s} {row['seconds']:8.1f} s{note}")
    report = write_run_report(rows, args.profile, args.results)
    print(
        f"profile {args.profile}: {len(rows)} notebook(s) ran; CSVs in {args.results}/, figures in {args.figures}/; "
        f"report: {report}"
    )
    return 0


def _bench_command(args: argparse.Namespace) -> str:
    """The ``python -m mbe bench`` command line that reruns what ``args`` asked for (every option spelled out)."""
    words = ["python", "-m", "mbe", "bench", "--suites", *args.suites, "--timesteps", *map(str, args.timesteps)]
    words += ["--event-timesteps", *map(str, args.event_timesteps)]
    if args.only:
        words += ["--only", *args.only]
    words += ["--repeats", str(args.repeats), "--name", args.name, "--out", str(args.out)]
    return shlex.join(words)


def _cmd_bench(args: argparse.Namespace) -> int:
    from .benchmarks import run_suites, write_report

    try:
        frame = run_suites(
            suites=args.suites,
            timesteps=tuple(args.timesteps),
            repeats=args.repeats,
            event_timesteps=tuple(args.event_timesteps),
            only=args.only,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    csv, md = write_report(frame, args.out, name=args.name, command=_bench_command(args))
    print(md.read_text())
    print(f"wrote {csv} and {md}")
    return 0


def _cmd_zoo(args: argparse.Namespace) -> int:
    from .zoo import MODELS, ZooError, hub

    if args.action == "list":
        for name, module in MODELS.items():
            try:
                print(f"{name}: {module.info()['metrics']}")
            except FileNotFoundError:
                print(f"{name}: no weights yet (python -m mbe zoo train {name})")
        for name, e in hub.HUB.items():
            print(f"{name} (hub, needs a network): {e.model_id} on {'/'.join(x for x in e.dataset if x)}")
        return 0
    if args.model not in MODELS:
        print(f"unknown zoo model {args.model!r}; available: {', '.join(MODELS)}", file=sys.stderr)
        return 2
    module = MODELS[args.model]
    try:
        model, metrics = module.train()
    except ZooError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = module.save(model, metrics)
    quality = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
    print(f"{args.model}: {quality} -> {path}")
    return 0


def _cmd_support_matrix(args: argparse.Namespace) -> int:
    from .convert.matrix import support_matrix, write_support_matrix
    from .zoo.tiny import TINY_ARCHS

    unknown = sorted(set(args.archs or ()) - set(TINY_ARCHS))
    if unknown:
        print(f"unknown architecture(s) {unknown}; choose from {list(TINY_ARCHS)}")
        return 2
    frame = support_matrix(args.archs or None, timesteps=args.timesteps, progress=not args.quiet)
    csv, md = write_support_matrix(frame, args.out)
    print(md.read_text())
    print(f"wrote {csv} and {md}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from .convert import SITE_KINDS, conversion_report
    from .jobs import convert_source
    from .zoo import ZooError

    try:
        _, snn = convert_source(
            args.model,
            timesteps=args.timesteps,
            preset=args.preset,
            calibration=args.calibration,
            batch_size=args.batch_size,
            out=args.out,
            models_dir=args.models,
            data_dir=args.data,
            progress=not args.quiet,
        )
    except ZooError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = conversion_report(snn)
    sites = report[report["kind"].isin(SITE_KINDS)]
    print(
        f"{args.model}: {int(sites.spiking.sum())} of {len(sites)} site(s) spiking at T={args.timesteps} -> {args.out}"
    )
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from . import distributed
    from .convert import ConversionFileError
    from .jobs import evaluate_source, write_rows
    from .zoo import ZooError

    try:
        frame = evaluate_source(
            args.model,
            args.timesteps,
            conversion=args.conversion,
            preset=args.preset,
            calibration=args.calibration,
            limit=args.limit,
            batch_size=args.batch_size,
            context=args.context,
            stride=args.stride,
            models_dir=args.models,
            data_dir=args.data,
            progress=not args.quiet,
        )
    except (ZooError, ConversionFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        distributed.close()
    if distributed.is_main():
        print(frame.drop(columns=[c for c in frame if c.endswith(("_ci_low", "_ci_high"))]).to_string(index=False))
        if args.out:
            print(f"appended {len(frame)} row(s) to {write_rows(frame, args.out)}")
    return 0


def _parameter(text: str) -> tuple:
    """``NAME=VALUE`` with VALUE a Python literal (``timesteps=[16, 8]``, ``test_limit=100``)."""
    import ast

    name, sep, value = text.partition("=")
    if not sep or not name.strip().isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name.strip(), ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        raise argparse.ArgumentTypeError(f"{name.strip()}: {value!r} is not a Python literal") from None


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every command that loads a named model takes."""
    parser.add_argument("model", help="an embedded zoo model or one of the paper's (python -m mbe zoo list)")
    parser.add_argument("--models", default=None, help="folder of local Hugging Face model copies (paper's models)")
    parser.add_argument("--data", default=None, help="folder of local data sets in the documented layouts")
    parser.add_argument("--preset", default="default", choices=["default", "paper"], help="ConversionConfig preset")
    parser.add_argument(
        "--calibration",
        type=int,
        default=None,
        help="calibration samples (classifiers; default 64) or context windows (language models; default 8)",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mbe", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    fit = sub.add_parser("fit", help="fit neuron tables (with a progress bar) and save them")
    fit.add_argument("functions", nargs="*", help="registry names, e.g. gelu rsqrt")
    fit.add_argument("--all", action="store_true", help="every table the package ships")
    fit.add_argument("--n-basis", type=int, nargs="+", help="N values (default: the registry's)")
    fit.add_argument("--timesteps", type=int, nargs="+", help="T values (default: 16)")
    fit.add_argument("--recipe", default="best", choices=["best", "paper"])
    fit.add_argument("--no-decay", action="store_true", help="constant kernels (the decay ablation)")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--out", default=None, help=f"output folder (default: the package's {SHIPPED_DIR.name}/)")
    fit.add_argument("--quiet", action="store_true", help="no progress bar")
    fit.set_defaults(run=_cmd_fit)

    tables = sub.add_parser("tables", help="verify every shipped table (hash, recipe, domain)")
    tables.add_argument("--dir", default=None)
    tables.add_argument("-v", "--verbose", action="store_true")
    tables.set_defaults(run=_cmd_tables)

    rep = sub.add_parser("reproduce", help="run the notebook suite with papermill")
    rep.add_argument(
        "--profile",
        default="default",
        choices=["smoke", "default", "paper"],
        help="smoke: minutes (the tests); default: embedded models, offline; paper: hub models (network) or "
        "local copies (--models, --data)",
    )
    rep.add_argument("--notebooks", default="notebooks")
    rep.add_argument("--results", default="results")
    rep.add_argument("--figures", default="figures")
    rep.add_argument("--only", nargs="+", help="notebook name prefixes, e.g. 01")
    rep.add_argument(
        "--param",
        action="append",
        type=_parameter,
        metavar="NAME=VALUE",
        help="a notebook parameter for every notebook that takes it, VALUE a Python literal, e.g. 'timesteps=[16, 8]'",
    )
    rep.add_argument(
        "--models",
        metavar="DIR",
        help="paper profile from local copies: Hugging Face model folders DIR/<model id>/ (README: local copies)",
    )
    rep.add_argument(
        "--data",
        metavar="DIR",
        help="with --models: the data sets, DIR/<data set>[/<config>]/<split>... (README: local copies)",
    )
    rep.set_defaults(run=_cmd_reproduce)

    bench = sub.add_parser(
        "bench",
        help="benchmarks: neuron, operator, model and fitting cost, ratios to "
        "baselines measured in the same run (results/bench.csv)",
    )
    bench.add_argument(
        "--suites",
        nargs="+",
        default=["neuron", "operators", "models", "fitting"],
        choices=["neuron", "operators", "models", "fitting"],
    )
    bench.add_argument("--timesteps", type=int, nargs="+", default=[4, 8, 16, 32])
    bench.add_argument("--event-timesteps", type=int, nargs="*", default=[16])
    bench.add_argument(
        "--only", nargs="+", metavar="TEXT", help="only the cases whose label contains one of these (e.g. vit-mnist)"
    )
    bench.add_argument("--name", default="bench", help="output file stem under --out")
    bench.add_argument("--repeats", type=int, default=5)
    bench.add_argument("--out", default="results")
    bench.set_defaults(run=_cmd_bench)

    zoo = sub.add_parser("zoo", help="the embedded models: list them or retrain one from its recipe")
    zoo.add_argument("action", choices=["list", "train"])
    zoo.add_argument("model", nargs="?", default="vit-mnist", help="a zoo model name (see: python -m mbe zoo list)")
    zoo.set_defaults(run=_cmd_zoo)

    matrix = sub.add_parser(
        "support-matrix", help="convert tiny random models of many transformers architectures and tabulate the result"
    )
    matrix.add_argument("archs", nargs="*", help="architectures (default: every one in mbe.zoo.tiny.TINY_ARCHS)")
    matrix.add_argument("--timesteps", type=int, nargs="+", default=[8, 16, 32])
    matrix.add_argument("--out", default="results", help="folder for support_matrix.csv and .md")
    matrix.add_argument("--quiet", action="store_true", help="no progress bar")
    matrix.set_defaults(run=_cmd_support_matrix)

    conv = sub.add_parser(
        "convert", help="convert a model on its calibration data and save the conversion (mbe.save) to a folder"
    )
    _model_arguments(conv)
    conv.add_argument("--timesteps", type=int, default=16)
    conv.add_argument("--out", required=True, help="folder for the saved conversion")
    conv.set_defaults(run=_cmd_convert)

    ev = sub.add_parser(
        "evaluate",
        help="ANN vs SNN on a model's held-out data at each T (shards over processes under torchrun/accelerate)",
    )
    _model_arguments(ev)
    ev.add_argument("--timesteps", type=int, nargs="+", default=[8, 16])
    ev.add_argument("--conversion", default=None, help="a folder written by `python -m mbe convert` (no calibration)")
    ev.add_argument("--limit", type=int, default=None, help="held-out samples or tokens (default: all)")
    ev.add_argument("--context", type=int, default=None, help="language models: window length (default: the model's)")
    ev.add_argument("--stride", type=int, default=None, help="language models: window step (default: context / 2)")
    ev.add_argument("--out", default=None, help="CSV to append the rows to")
    ev.set_defaults(run=_cmd_evaluate)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)
