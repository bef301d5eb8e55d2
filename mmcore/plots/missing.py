"""Metric vs missing rate: from a run's ``missing_rates.json`` or a sweep's ``summary.json``.

A sweep gives one line per variant with a ±std band over seeds; without rates it gives a bar
chart per variant with std error bars. A single run gives one line (no band).
"""

from __future__ import annotations

import json
import os
from typing import Any

from ..errors import MmcoreUserError, did_you_mean
from ..metrics import METRIC_MODES
from ._mpl import new_figure, save

Point = tuple[float, float, "float | None"]  # (x, mean, std)


def _ylabel(metric: str) -> str:
    mode = METRIC_MODES.get(metric)
    return f"{metric} ({'lower' if mode == 'min' else 'higher'} is better)" if mode in ("min", "max") else metric


def plot_rate_lines(series: dict[str, list[Point]], metric: str, path: str, title: str = "") -> str:
    """One line per series over the missing rate, with a ±std band where std is known."""
    fig = new_figure()
    ax = fig.add_subplot(1, 1, 1)
    for name, pts in series.items():
        pts = sorted(pts)
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        (line,) = ax.plot(xs, ys, marker="o", label=name)
        if all(p[2] is not None for p in pts) and len(pts) > 0:
            lo = [p[1] - p[2] for p in pts]
            hi = [p[1] + p[2] for p in pts]
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xticks(sorted({p[0] for pts in series.values() for p in pts}))
    ax.set_xlabel("missing rate")
    ax.set_ylabel(_ylabel(metric))
    ax.set_title(title or f"test {metric} vs missing rate")
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize="small")
    return save(fig, path)


def plot_bars(bars: list[tuple[str, float, float | None]], metric: str, path: str, title: str = "") -> str:
    """One bar per variant with a std error bar (none for a single seed)."""
    fig = new_figure(max(5.0, 1.2 * len(bars) + 2), 4.2)
    ax = fig.add_subplot(1, 1, 1)
    xs = list(range(len(bars)))
    errs = [b[2] if b[2] is not None else 0.0 for b in bars]
    ax.bar(xs, [b[1] for b in bars], yerr=errs, capsize=4, color="#4c72b0")
    ax.set_xticks(xs)
    ax.set_xticklabels([b[0] for b in bars], rotation=20, ha="right", fontsize="small")
    ax.set_ylabel(_ylabel(metric))
    ax.set_title(title or f"test {metric} per variant\n(mean ± std over seeds)", fontsize="medium")
    ax.grid(axis="y", alpha=0.3)
    return save(fig, path)


def _metric_or_error(metric: str, available: set[str], where: str) -> str:
    if metric in available:
        return metric
    raise MmcoreUserError.at(where, f"no metric {metric!r} here", did_you_mean(metric, sorted(available))
                             + (f"metrics available: {', '.join(sorted(available)) or '(none)'}",))


def summary_plot_name(summary: dict[str, Any], metric: str | None = None) -> str:
    """The file name of a sweep summary's plot, named for what it shows: ``missing_rates.png``
    (metric vs missing rate) or, for a sweep without rates, ``test_by_variant.png`` (bars)."""
    stem = "missing_rates" if summary.get("rates") else "test_by_variant"
    return f"{stem}{'_' + metric if metric else ''}.png"


def plot_summary(summary: dict[str, Any], path: str, metric: str | None = None, where: str = "summary.json") -> str:
    """Draw a sweep summary (the dict of ``summary.json``): lines over rates, or bars without rates."""
    metric = metric or summary.get("metric")
    rows = summary.get("rates") or []
    source = rows or summary.get("test") or []
    metric = _metric_or_error(metric, {k for r in source for k in r["metrics"]}, where)
    if rows:
        series: dict[str, list[Point]] = {}
        for r in rows:
            if metric in r["metrics"] and r["metrics"][metric]["mean"] is not None:
                st = r["metrics"][metric]
                series.setdefault(r["variant"], []).append((r["rate"], st["mean"], st["std"]))
        return plot_rate_lines(series, metric, path, f"test {metric} vs missing rate (mean ± std over seeds)")
    bars = [(r["variant"], r["metrics"][metric]["mean"], r["metrics"][metric]["std"])
            for r in source if metric in r["metrics"] and r["metrics"][metric]["mean"] is not None]
    return plot_bars(bars, metric, path)


def plot_missing(directory: str, metric: str | None = None, output: str | None = None) -> str:
    """Plot a sweep's summary.json or a run's missing_rates.json; returns the PNG path.

    Raises: MmcoreUserError if the directory has neither file, or has no such metric.
    """
    from ..sweep.summary import default_metric

    summary = os.path.join(directory, "summary.json")
    table = os.path.join(directory, "missing_rates.json")
    out = output or os.path.join(directory, f"missing_rates{'_' + metric if metric else ''}.png")
    if os.path.exists(summary):
        with open(summary) as f:
            data = json.load(f)
        return plot_summary(data, output or os.path.join(directory, summary_plot_name(data, metric)), metric, summary)
    if not os.path.exists(table):
        raise MmcoreUserError.at(directory, "nothing to plot: no summary.json (a sweep directory) and no "
                                 "missing_rates.json (a run evaluated across rates)",
                                 (f"hint: mmcore eval {directory} --missing-rates 0,0.3,0.5,0.7",))
    with open(table) as f:
        rows = json.load(f).get("rows", [])
    available = {k for r in rows for k in r if k != "rate"}
    metric = _metric_or_error(metric or default_metric(available) or "loss", available, table)
    name = os.path.basename(os.path.normpath(directory))
    return plot_rate_lines({name: [(r["rate"], r[metric], None) for r in rows]}, metric, out)
