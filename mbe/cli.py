"""Command line: ``fit`` regenerates neuron tables, ``tables`` checks them, ``reproduce`` runs the
notebooks, ``bench`` measures speed and memory against baselines."""

from __future__ import annotations

import argparse
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
    from .reproduce import HubUnreachable, NotebookFailed, run_notebooks, write_run_report

    try:
        rows = run_notebooks(args.profile, args.notebooks, args.results, args.figures, args.only)
    except NotebookFailed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    except HubUnreachable as exc:
        print(f"cannot run the paper profile: {exc}", file=sys.stderr)
        return 2
    for row in rows:
        print(f"{row['notebook']:32s} {row['seconds']:8.1f} s")
    report = write_run_report(rows, args.profile, args.results)
    print(
        f"profile {args.profile}: {len(rows)} notebook(s) ran; CSVs in {args.results}/, figures in {args.figures}/; "
        f"report: {report}"
    )
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from .benchmarks import run_suites, write_report

    frame = run_suites(
        suites=args.suites,
        timesteps=tuple(args.timesteps),
        repeats=args.repeats,
        event_timesteps=tuple(args.event_timesteps),
    )
    csv, md = write_report(frame, args.out, name=args.name)
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
        help="smoke: minutes (the tests); default: embedded models, offline; paper: hub models (network)",
    )
    rep.add_argument("--notebooks", default="notebooks")
    rep.add_argument("--results", default="results")
    rep.add_argument("--figures", default="figures")
    rep.add_argument("--only", nargs="+", help="notebook name prefixes, e.g. 01")
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
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)
