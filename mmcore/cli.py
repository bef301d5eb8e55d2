"""The ``mmcore`` command line.

``validate``, ``plugins``, ``list``, ``schema``, ``data list`` and ``data fetch`` never import
torch; ``run``, ``eval``, ``sweep``, ``plot`` and ``data verify`` (it loads the file) do. User
errors print one message and exit 2 (``--debug``: traceback). ``--debug`` and ``-q`` are accepted
before or after the command; ``mmcore`` (or ``mmcore data``) alone prints its help and exits 0.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
import traceback

from . import __version__
from .errors import MmcoreUserError
from .hookspecs import PLUGIN_API
from .registry import DISTRIBUTION

EXIT_USER_ERROR = 2


def _registry(args):
    from .registry import get_registry

    return get_registry()


def cmd_validate(args) -> int:
    from .errors import SpecError
    from .spec import load_spec

    failed = 0
    for path in args.spec:
        try:
            rs = load_spec(path, overrides=_overrides(args))
        except SpecError as e:
            print(str(e), file=sys.stderr)
            failed += 1
            continue
        parts = ", ".join(f"{k}={p.entry.name}" for k, p in rs.parts.items() if not k.startswith("encoders."))
        print(f"{path}: ok ({parts})")
    return EXIT_USER_ERROR if failed else 0


def cmd_plugins(args) -> int:
    reg = _registry(args)
    if args.json:
        print(json.dumps([p.as_json() for p in reg.plugins], indent=2))
        return 0
    broken = 0
    for p in reg.plugins:
        tag = " [builtin]" if p.builtin else ""
        api = f"plugin API {p.api}" if p.api is not None else "plugin API not declared"
        print(f"{p.dist} {p.version}{tag}  (entry point '{p.entry_point}', {api})  {p.status}")
        for kind, names in sorted(p.components.items()):
            print(f"    {kind}: {', '.join(sorted(names))}")
        if args.check and not p.status.failed:
            checked = [(k, n) for k, names in sorted(p.components.items()) if k != "dataset" for n in sorted(names)]
            mine = 0
            for kind, name in checked:
                problem = _contract_problem(kind, name, reg)
                if problem:
                    mine += 1
                    print(f"    contract: {kind} {name!r} FAILS: {problem}")
            if checked:
                print(f"    contract: {len(checked) - mine} of {len(checked)} components pass")
            broken += mine
    failed = [p for p in reg.plugins if p.status.failed]
    if broken:
        print(f"{broken} component(s) break the component contract (see above); their plugin's authors can "
              "reproduce it with mmcore.testing.check_component(kind, name)", file=sys.stderr)
        return 1
    return 0 if not failed or not args.strict else 1


def _contract_problem(kind: str, name: str, reg) -> str | None:
    """None if the component passes mmcore.testing's contract, else one line saying what breaks."""
    from .testing.contract import check_component

    try:
        check_component(kind, name, reg)
    except Exception as exc:  # the plugin boundary: whatever a component raises is its problem, reported
        text = " ".join(str(exc).split())
        return f"{type(exc).__name__}: {text[:300]}"
    return None


def cmd_list(args) -> int:
    import fnmatch

    from .registry import KINDS

    reg = _registry(args)
    if args.kind and args.kind not in KINDS:
        from .errors import UnknownComponentError

        raise UnknownComponentError(f"unknown kind {args.kind!r}; kinds are {', '.join(KINDS)}")
    rows = [e for e in reg.entries(args.kind) if fnmatch.fnmatchcase(e.name, args.pattern or "*")]
    if args.json:
        print(json.dumps([{"kind": e.kind, "name": e.name, "provider": e.provided_by, "target": e.target,
                           "description": e.description, "aux_losses": e.aux_losses} for e in rows], indent=2))
        return 0
    w = max([len(e.name) for e in rows] + [4])
    wp = max([len(e.provided_by) for e in rows] + [8])  # columns fit the longest provider, whatever its length
    for e in rows:
        print(f"{e.kind:<8} {e.name:<{w}}  {e.provided_by:<{wp}}  {e.target}")
        if args.verbose and e.description:
            print(f"{'':<8} {'':<{w}}  {e.description}")
    return 0


def cmd_schema(args) -> int:
    from .spec.schema import spec_schema

    text = json.dumps(spec_schema(_registry(args)), indent=2)
    if args.output:
        folder = os.path.dirname(os.path.abspath(args.output))
        os.makedirs(folder, exist_ok=True)
        with open(args.output, "w") as f:
            f.write(text + "\n")
        print(f"wrote {os.path.abspath(args.output)}", file=sys.stderr)
    else:
        print(text)
    return 0


def cmd_run(args) -> int:
    from .errors import CheckpointError
    from .spec import load_spec
    from .train.distributed import process_rank
    from .train.run import format_summary, parse_rates, train_run

    over = _overrides(args)
    if args.epochs is not None:
        over.append(f"train.epochs={args.epochs}")
    if args.seed is not None:
        over.append(f"seed={args.seed}")
    rs = load_spec(args.spec, overrides=over)
    if args.resume and not args.out:
        raise CheckpointError("--resume needs --out RUN_DIR (the run to continue)")
    results = train_run(rs, args.out, resume=args.resume, progress=not args.no_progress,
                        missing_rates=parse_rates(args.missing_rates))
    if process_rank()[0] == 0:
        print(format_summary(results))
    return 0


def cmd_eval(args) -> int:
    from .missing import format_rate_table
    from .train.checkpoint import write_json
    from .train.run import evaluate_rates, load_run, parse_rates, write_rate_table

    trainer = load_run(args.run_dir, args.data)
    rates = parse_rates(args.missing_rates)
    if args.alignment:
        from .alignment import evaluate_alignment, format_alignment

        res = evaluate_alignment(trainer.model, trainer.data, args.split, device=trainer.device)
        path = os.path.join(args.run_dir, "alignment.json" if args.split == "test" else f"alignment_{args.split}.json")
        write_json(path, res)
        print(format_alignment(res))
        print(f"wrote {path}")
        if not rates:
            return 0
    if rates:
        rows = evaluate_rates(trainer, rates, args.split)
        paths = write_rate_table(args.run_dir, rows, args.split)
        print(format_rate_table(rows))
        print(f"wrote {', '.join(paths)}")
    else:
        print(json.dumps(trainer.evaluate(args.split), indent=2))
    return 0


def sweep_command_line(args) -> list[str]:
    """The ``mmcore sweep`` argv equivalent to parsed ``args`` (recorded in sweep.json)."""
    argv = ["mmcore", "sweep", args.spec]
    for flag, values in (("--set", args.set), ("--grid", args.grid), ("--variant", args.variant)):
        for v in values or ():
            argv += [flag, v]
    argv += ["--seeds", str(args.seeds)]
    for flag, value in (("--missing-rates", args.missing_rates), ("--out", args.out), ("--data", args.data),
                        ("--jobs", args.jobs if args.jobs != 1 else None), ("--metric", args.metric),
                        ("--epochs", args.epochs),
                        ("--executor", args.executor if args.executor != "local" else None), ("--address", args.address),
                        ("--cpus-per-cell", args.cpus_per_cell if args.cpus_per_cell != 1 else None),
                        ("--gpus-per-cell", args.gpus_per_cell)):
        if value is not None:
            argv += [flag, str(value)]
    return argv


def cmd_sweep(args) -> int:
    from .sweep import print_result, run_sweep
    from .train.run import parse_rates

    result = run_sweep(args.spec, axes=args.grid, variants=args.variant, seeds=args.seeds,
                       missing_rates=parse_rates(args.missing_rates), out=args.out, data=args.data,
                       jobs=args.jobs, metric=args.metric, epochs=args.epochs, command=sweep_command_line(args),
                       overrides=args.set, executor=args.executor, address=args.address,
                       cpus_per_cell=args.cpus_per_cell, gpus_per_cell=args.gpus_per_cell)
    return print_result(result)


def cmd_plot(args) -> int:
    from .plots._mpl import require_matplotlib

    require_matplotlib()  # before loading data and model: a missing extra fails in a second, not after them
    from .plots import plot_curves, plot_missing, plot_ot_plan

    if args.what == "missing":
        path = plot_missing(args.run_dir, metric=args.metric, output=args.output)
    elif args.what == "curves":
        path = plot_curves(args.run_dir, output=args.output, metric=args.metric)
    else:
        path = plot_ot_plan(args.run_dir, args.sample, pair=args.pair, output=args.output)
    print(f"wrote {path}")
    return 0


def cmd_data(args) -> int:
    from .data import commands

    if args.data_command == "list":
        return commands.data_list(args.name, data_dir=args.dir, as_json=args.json)
    if args.data_command == "fetch":
        return commands.data_fetch(args.name, data_dir=args.dir, from_dir=args.from_dir,
                                   verified_only=args.verified_only, force=args.force, retries=args.retries,
                                   progress=not args.no_progress and sys.stderr.isatty(), axes=args.axes)
    return commands.data_verify(args.path, sha256=args.sha256)


def _overrides(args) -> list[str]:
    from .spec.yaml_source import data_overrides

    over = list(getattr(args, "set", None) or [])
    data = getattr(args, "data", None)
    if data:
        over += data_overrides(data)
    return over


def _global_options(top: bool) -> argparse.ArgumentParser:
    """``--debug`` and ``-q`` as a parent parser, so they are accepted before or after any sub-command.

    Why ``default=SUPPRESS`` below the top: a sub-command that does not see the flag must leave the
    top-level value alone (``mmcore --debug validate x`` keeps debug on).
    """
    g = argparse.ArgumentParser(add_help=False)
    default = {} if top else {"default": argparse.SUPPRESS}
    g.add_argument("--debug", action="store_true", help="show tracebacks for user errors", **default)
    g.add_argument("-q", "--quiet", action="store_true", help="less logging (warnings and errors only)", **default)
    return g


def _show_help(parser: argparse.ArgumentParser, args) -> int:
    """A command given without its sub-command prints its help and succeeds (as git does)."""
    parser.print_help()
    return 0


@functools.lru_cache(maxsize=1)
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmcore", description="Multimodal sequence learning from YAML recipes.",
                                epilog="Run `mmcore COMMAND --help` for a command's options.",
                                parents=[_global_options(top=True)])
    p.add_argument("--version", action="version", help="print the version and exit",
                   version=f"mmcore {__version__} (distribution {DISTRIBUTION}, plugin API {PLUGIN_API})")
    p.set_defaults(func=functools.partial(_show_help, p))
    sub = p.add_subparsers(dest="command", metavar="COMMAND", title="commands",
                           help="one of the commands below")
    local = _global_options(top=False)

    def command(parent, name: str, summary: str, details: str = "") -> argparse.ArgumentParser:
        """A sub-command: ``summary`` is its line in the parent's list and the first line of its help."""
        description = summary[0].upper() + summary[1:] + "." + (f" {details}" if details else "")
        return parent.add_parser(name, help=summary, description=description, parents=[local])

    def spec_opts(sp, multiple=False):
        sp.add_argument("spec", nargs="+" if multiple else None, help="pipeline spec (YAML)")
        sp.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a spec value (repeatable)")
        sp.add_argument("--data", metavar="PATH|NAME", help="use this data file (.npz or MMSA .pkl), or a fetched "
                        "dataset (e.g. mmmo: mmcore data list), instead of the spec's data")

    json_help = "print JSON instead of a table (for scripts)"

    sp = command(sub, "validate", "check specs and report every problem with its line",
                 "Exit 0 if every spec is valid, 2 otherwise. Never imports torch.")
    spec_opts(sp, multiple=True)
    sp.set_defaults(func=cmd_validate)

    sp = command(sub, "plugins", "installed plugins, their versions, components and load errors",
                 "Built-ins are listed too, marked [builtin].")
    sp.add_argument("--json", action="store_true", help=json_help)
    sp.add_argument("--strict", action="store_true", help="exit 1 if any plugin failed to load")
    sp.add_argument("--check", action="store_true",
                    help="also run the component contract (mmcore.testing) on every component; exit 1 if one breaks it")
    sp.set_defaults(func=cmd_plugins)

    sp = command(sub, "list", "registered components: kind, name, provider, module:Class",
                 "The name is what a spec writes (e.g. aligner: {name: relaxed_ot}); module:Class is its code.")
    sp.add_argument("kind", nargs="?", help="encoder, aligner, fuser, imputer, head, loss or dataset")
    sp.add_argument("pattern", nargs="?", help="fnmatch pattern over names, e.g. '*ot*'")
    sp.add_argument("--json", action="store_true", help=json_help)
    sp.add_argument("-v", "--verbose", action="store_true", help="show descriptions")
    sp.set_defaults(func=cmd_list)

    sp = command(sub, "schema", "JSON Schema of the spec, with every installed component's params",
                 "Printed to stdout unless -o names a file; point your editor's YAML language server at it.")
    sp.add_argument("-o", "--output", metavar="PATH", help="write to PATH (folders created) instead of stdout")
    sp.set_defaults(func=cmd_schema)

    sp = command(sub, "run", "train and evaluate a pipeline",
                 "Trains into a run folder (checkpoints, per-epoch metrics, train.log), selects the best epoch on "
                 "validation and prints its test metrics.")
    spec_opts(sp)
    sp.add_argument("--out", metavar="DIR", help="run directory (default: <output_dir>/<spec name>-<time>)")
    sp.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    sp.add_argument("--epochs", type=int, help="shortcut for --set train.epochs=N")
    sp.add_argument("--seed", type=int, help="shortcut for --set seed=N")
    sp.add_argument("--missing-rates", metavar="R1,R2,...", help="after training, evaluate test across these rates")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar")
    sp.set_defaults(func=cmd_run)

    sp = command(sub, "eval", "re-evaluate a finished run, optionally across missing rates",
                 "Prints the metrics; files it writes into the run folder are named on the last line.")
    sp.add_argument("run_dir", help="a run folder written by `mmcore run` (holds spec.yaml and best.pt)")
    sp.add_argument("--missing-rates", metavar="R1,R2,...",
                    help="evaluate with every eval op's rate set to each; writes missing_rates.{csv,json} into the run")
    sp.add_argument("--split", default="test", choices=["valid", "test"], help="the split to evaluate (default: test)")
    sp.add_argument("--data", metavar="PATH", help="evaluate on this data file instead of the run's")
    sp.add_argument("--alignment", action="store_true",
                    help="score the aligner's plans against the data's ground-truth alignment (synthetic data), "
                         "with the uniform and proportional floors; writes alignment.json into the run")
    sp.set_defaults(func=cmd_eval)

    sp = command(sub, "sweep", "run a grid of variants x seeds x missing rates, then tabulate and plot",
                 "Cells are normal run folders under OUT/cells/; OUT/sweep.json records the grid. Interrupted or "
                 "failed cells continue when you run the same command again.")
    sp.add_argument("spec", help="pipeline spec (YAML) every cell starts from")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override a spec value in every cell (repeatable), as in `mmcore run --set`")
    sp.add_argument("--grid", action="append", metavar="KEY=V1,V2",
                    help="a grid axis: one variant per value, crossed with the other axes (repeatable)")
    sp.add_argument("--variant", action="append", metavar="NAME:KEY=V[;KEY=V]", help="a named variant (repeatable)")
    sp.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per cell (default 3)")
    sp.add_argument("--missing-rates", metavar="R1,R2,...", help="evaluate each trained cell across these rates")
    sp.add_argument("--out", metavar="DIR", help="sweep directory (default: <output_dir>/sweep-<spec>-<time>); "
                    "rerun with the same --out to continue")
    sp.add_argument("--data", metavar="PATH", help="data file for every cell")
    sp.add_argument("--jobs", type=int, default=1, help="cells run in parallel processes (default 1); with "
                    "--executor ray and no --address: a local Ray instance with room for this many cells")
    sp.add_argument("--metric", default=None, help="metric for the table and plot (default: mae or acc)")
    sp.add_argument("--epochs", type=int, help="train.epochs of every cell")
    sp.add_argument("--executor", choices=["local", "ray"], default="local",
                    help="local: processes on this machine (default); ray: one Ray task per cell (needs the ray "
                         "extra: pip install 'mmcore-lib[ray]')")
    sp.add_argument("--address", metavar="ADDR", help="ray: join this running Ray cluster (auto, HOST:PORT or "
                    "ray://HOST:10001) instead of starting a local instance; --out must be on a shared filesystem")
    sp.add_argument("--cpus-per-cell", type=int, default=1, metavar="N",
                    help="ray: CPUs each cell declares, also its torch threads (default 1)")
    sp.add_argument("--gpus-per-cell", type=float, metavar="G",
                    help="ray: GPUs each cell declares (default 1 when the cluster has GPUs, else 0; 0.5 shares one)")
    sp.set_defaults(func=cmd_sweep)

    sp = command(sub, "data", "public datasets: list them, fetch + verify + convert one, verify a file")
    dsub = sp.add_subparsers(dest="data_command", metavar="ACTION", title="actions", help="one of the actions below")
    sp.set_defaults(func=functools.partial(_show_help, sp))
    dp = command(dsub, "list", "known datasets: source, files, size, licence, whether cached")
    dp.add_argument("name", nargs="?", help="one dataset, with every file's URL, size and sha256")
    dp.add_argument("--dir", metavar="DIR", help="data dir (default: $MMCORE_DATA_DIR, else the user cache)")
    dp.add_argument("--json", action="store_true", help=json_help)
    dp.set_defaults(func=cmd_data)
    dp = command(dsub, "fetch", "download a dataset's release files, verify their sha256, convert to npz")
    dp.add_argument("name", help="a dataset from `mmcore data list`, e.g. mmmo")
    dp.add_argument("--dir", metavar="DIR", help="data dir (default: $MMCORE_DATA_DIR, else the user cache)")
    dp.add_argument("--from", dest="from_dir", metavar="DIR",
                    help="use release files downloaded by hand into DIR instead of the network (verified the same)")
    dp.add_argument("--verified-only", action="store_true",
                    help="only the files with a pinned sha256 (mmmo: the copy behind docs/papers.md, no train text)")
    dp.add_argument("--force", action="store_true", help="verify, fetch and convert again even if cached")
    dp.add_argument("--retries", type=int, default=3, metavar="N", help="retries per file after a failure (default 3)")
    dp.add_argument("--axes", choices=["auto", "ntd", "tnd"], default="auto",
                    help="axis order of the h5 feature arrays (default auto: the axis with the label count is N)")
    dp.add_argument("--no-progress", action="store_true", help="no progress bar")
    dp.set_defaults(func=cmd_data)
    dp = command(dsub, "verify", "checksum a file (e.g. an MMSA pickle) against known hashes, check its layout")
    dp.add_argument("path", help="a .pkl (MMSA), .npz or release .h5 file")
    dp.add_argument("--sha256", metavar="HEX", help="the sha256 its distributor publishes (a mismatch is an error)")
    dp.set_defaults(func=cmd_data)

    sp = command(sub, "plot", "plots from a run or sweep directory (needs the plots extra: matplotlib)",
                 "Kinds: ot-plan (an aligner's plan for one test sample, as a heatmap), missing (metric vs "
                 "missing rate, or per variant for a sweep without rates), curves (train/valid curves per epoch).")
    sp.add_argument("what", choices=["ot-plan", "missing", "curves"], metavar="KIND",
                    help="ot-plan, missing or curves (see above)")
    sp.add_argument("run_dir", help="a run folder (`mmcore run`) or, for missing, a sweep folder (`mmcore sweep`)")
    sp.add_argument("--sample", type=int, default=0, help="ot-plan: test sample index")
    sp.add_argument("--pair", help="ot-plan: only this modality's plan, e.g. audio (default: every plan)")
    sp.add_argument("--metric", help="missing, curves: the metric to draw (default: the sweep's, else mae or acc)")
    sp.add_argument("-o", "--output", metavar="PATH", help="PNG path (default: a file in the run folder)")
    sp.set_defaults(func=cmd_plot)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # third-party loggers (torch's included) show warnings only; mmcore's own show progress at INFO
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    for handler in logging.getLogger().handlers:  # records marked file_only go to train.log, not the console
        if type(handler) is logging.StreamHandler and not any(isinstance(f, _FileOnly) for f in handler.filters):
            handler.addFilter(_FileOnly())
    logging.getLogger("mmcore").setLevel(logging.DEBUG if args.debug else logging.WARNING if args.quiet else logging.INFO)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # inside the try: a closed pipe surfaces here, not at interpreter exit
        return code
    except MmcoreUserError as e:
        if args.debug:
            traceback.print_exc()
        print(str(e), file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as e:  # a RunInterrupted says what was kept and how to continue
        print(str(e) or "interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # whoever read stdout went away (e.g. `mmcore list | head -1`): stop quietly
        _silence_stdout()
        return 0


class _FileOnly(logging.Filter):
    """Drops records logged with ``extra={"file_only": True}`` (e.g. the test metrics that the
    command itself prints once on stdout) from the console; run folders' train.log keeps them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "file_only", False)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail on the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (e.g. captured in tests)
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
