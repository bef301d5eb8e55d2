"""``mmcore sweep``: validate the grid, check the directory, run the cells, tabulate and plot."""

from __future__ import annotations

import logging
import os
import shlex
import time
from dataclasses import dataclass, field

from ..metrics import select_metric_problem
from .grid import Cell, SweepError, build_variants, looks_like_axis, resolve_cells
from .manifest import open_manifest, variant_record, write_manifest
from .runner import CellOutcome, CellTask, cell_state, read_test, run_tasks
from .summary import Summary, collect, default_metric, format_markdown, write_summary

log = logging.getLogger("mmcore.sweep")


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep; the message says what was kept and the one command that continues it."""


@dataclass
class SweepResult:
    """What :func:`run_sweep` did: the directory, its cells, this invocation's outcomes, the summary."""

    out: str
    cells: list[Cell]
    outcomes: list[CellOutcome]
    summary: Summary
    paths: dict[str, str] = field(default_factory=dict)  # md, csv, json, and png when drawn

    @property
    def failed(self) -> list[CellOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]


EXECUTORS = ("local", "ray")


def _check_args(seeds: int, jobs: int, metric: str | None, executor: str = "local", address: str | None = None) -> None:
    if executor not in EXECUTORS:
        raise SweepError.at(f"command line (--executor {executor})",
                            f"unknown executor; executors: {', '.join(EXECUTORS)}")
    if address is not None and executor != "ray":
        raise SweepError.at(f"command line (--address {address})", "--address joins a Ray cluster; add --executor ray")
    if seeds < 1:
        raise SweepError.at(f"command line (--seeds {seeds})", "need at least one seed")
    if jobs < 1:
        raise SweepError.at(f"command line (--jobs {jobs})", "need at least one process")
    problem = select_metric_problem(metric) if metric is not None else None
    if problem:
        raise SweepError.at(f"command line (--metric {metric})", *problem)


def run_sweep(spec: str, *, axes: list[str] | None = None, variants: list[str] | None = None, seeds: int = 3,
              missing_rates: list[float] | None = None, out: str | None = None, data: str | None = None,
              jobs: int = 1, metric: str | None = None, epochs: int | None = None,
              command: list[str] | None = None, overrides: list[str] | None = None, executor: str = "local",
              address: str | None = None, cpus_per_cell: int = 1, gpus_per_cell: float | None = None) -> SweepResult:
    """Train every (variant, seed) cell of a grid into ``out`` and summarise it.

    Args: spec — YAML path; axes — ``KEY=V1,V2`` items (``--grid``); variants — ``NAME:KEY=V;KEY=V`` items;
    overrides — ``KEY=VALUE`` items applied to every cell (``--set``);
    seeds — seeds 0..seeds-1; missing_rates — evaluate test across these after training;
    out — sweep directory (resumable); data — data file for every cell; jobs — parallel
    processes (local executor) or the CPUs of a local Ray instance in cells (ray executor without address);
    metric — the table's and plot's metric; epochs — ``train.epochs`` of every cell;
    command — the command line (argv) recorded in the manifest; ``--out`` is added if absent;
    executor — ``local`` (processes on this machine) or ``ray`` (one Ray task per cell, see
    :mod:`mmcore.sweep.ray_executor` for address, cpus_per_cell and gpus_per_cell).
    Raises: SweepError / SpecError before anything trains (bad grid, invalid cells, a directory
    of another grid). A failing cell does not raise: see ``SweepResult.failed``.
    """
    from ..spec.yaml_source import data_overrides

    _check_args(seeds, jobs, metric, executor, address)
    rates = list(missing_rates or [])
    grid = build_variants(axes, variants, overrides)
    base = (data_overrides(data) if data else []) + ([f"train.epochs={epochs}"] if epochs is not None else [])
    seed_list = list(range(seeds))
    try:
        resolved = resolve_cells(spec, base, grid, seed_list)
    except SweepError as e:
        lists = [o for o in overrides or () if looks_like_axis(o)]
        if not lists:
            raise
        # earlier versions made sweep's --set KEY=V1,V2 a grid axis; it is now a fixed override, as in mmcore run
        raise SweepError(f"{e}\n  hint: --set {lists[0]} sets one value, the whole list; "
                         f"did you mean --grid {lists[0]} (one variant per value)?") from None
    if out is None:
        stem = os.path.splitext(os.path.basename(spec))[0]
        first = resolved[Cell(grid[0], 0)].spec
        out = os.path.join(first.output_dir, f"sweep-{stem}-{time.strftime('%Y%m%d-%H%M%S')}")
    records = [variant_record(v, resolved[Cell(v, 0)]) for v in grid]
    argv = list(command or ["mmcore", "sweep", spec])
    if "--out" not in argv:
        argv += ["--out", out]
    manifest = open_manifest(out, spec, records, seed_list, rates, shlex.join(argv))
    os.makedirs(out, exist_ok=True)
    write_manifest(out, manifest)

    cells = [Cell(v, s) for s in seed_list for v in grid]  # seed-major: every variant at seed 0 first
    done = [c for c in cells if cell_state(c.run_dir(out), tuple(rates)) == "done"]
    todo = [c for c in cells if c not in done]
    log.info("sweep %s: %d variants x %d seeds = %d cells (%d finished, %d to run), %s", out, len(grid), seeds,
             len(cells), len(done), len(todo), f"jobs={jobs}" if executor == "local" else f"executor={executor}")
    counter = {"i": 0}
    started = time.perf_counter()

    def report(o: CellOutcome) -> None:
        counter["i"] += 1
        key_metric = metric or default_metric(o.test)
        tail = (f"; test {key_metric}={o.test[key_metric]:.4f}" if key_metric in o.test else "")
        if o.status == "failed":
            lines = (o.error or "?").strip().splitlines() or ["?"]
            # a user error leads with "where: error: what"; a traceback ends with the exception
            log.error("[%d/%d] %s seed %d: FAILED after %.1fs: %s", counter["i"], len(cells), o.variant, o.seed,
                      o.seconds, lines[-1] if lines[0].startswith("Traceback") else lines[0])
        else:
            log.info("[%d/%d] %s seed %d: %s in %.1fs%s (sweep %.0fs)", counter["i"], len(cells), o.variant, o.seed,
                     o.status, o.seconds, tail, time.perf_counter() - started)

    outcomes = []
    for c in done:
        o = CellOutcome(c.key, c.variant.name, c.seed, "skipped", test=read_test(c.run_dir(out)))
        report(o)
        outcomes.append(o)
    tasks = [CellTask(c.key, c.variant.name, c.seed, c.run_dir(out), resolved[c].to_data(),
                      f"{spec} [{c.key}]", tuple(rates), progress=jobs == 1 and executor == "local") for c in todo]
    try:
        if executor == "ray" and tasks:
            from .ray_executor import run_tasks_ray

            outcomes += run_tasks_ray(tasks, report, jobs=jobs, address=address, cpus_per_cell=cpus_per_cell,
                                      gpus_per_cell=gpus_per_cell)
        else:
            outcomes += run_tasks(tasks, jobs, report, {c.key: resolved[c] for c in todo})
    except KeyboardInterrupt:  # replaces a cell's own "mmcore run --resume" advice: the sweep resumes its cells
        raise SweepInterrupted(f"sweep interrupted: finished cells are kept in {out} and interrupted ones continue "
                               f"from their last finished epoch; run the same command again: {shlex.join(argv)}") from None

    manifest["cells"].update({o.key: o.as_json() for o in outcomes})
    write_manifest(out, manifest)
    failed = [o.key for o in outcomes if o.status == "failed"]
    for o in outcomes:
        if o.status == "failed":
            log.error("cell %s failed:\n%s", o.key, o.error)
    summary = collect(out, cells, rates, metric, failed)
    paths = write_summary(out, summary)
    png = _plot(out, summary)
    if png:
        paths["png"] = png
    return SweepResult(out, cells, outcomes, summary, paths)


def _plot(out: str, summary: Summary) -> str | None:
    from ..plots._mpl import INSTALL_HINT, PlotDependencyError
    from ..plots.missing import plot_summary, summary_plot_name

    if not summary.test and not summary.rates:
        return None
    name = summary_plot_name(summary.as_json())
    try:
        return plot_summary(summary.as_json(), os.path.join(out, name))
    except PlotDependencyError:
        log.warning("skipping %s: matplotlib is not installed (%s)", name, INSTALL_HINT)
        return None


def print_result(result: SweepResult) -> int:
    """Print the table and what was written; the exit code: 1 when a cell failed."""
    print(format_markdown(result.summary))
    print()
    print("wrote " + ", ".join(result.paths[k] for k in ("md", "csv", "json", "png") if k in result.paths))
    if result.failed:
        print(f"{len(result.failed)} of {len(result.cells)} cells failed: {', '.join(o.key for o in result.failed)} "
              f"(errors above and in each cell's sweep_error.txt); rerun the same command to retry them")
        return 1
    return 0
