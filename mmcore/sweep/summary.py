"""Aggregate a sweep's cells into mean ± std over seeds; write summary.md/.csv/.json (torch-free).

Rows are read from the cells' files, so finished cells of earlier invocations count too:
``results.json`` ``test`` (the spec's own eval protocol) gives one row per variant, and
``missing_rates.json`` one row per (variant, rate) when rates were asked. The std is the sample
standard deviation over seeds (ddof = 1), undefined (null / no ``±``) for a single seed.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any

from ..metrics import METRIC_MODES

log = logging.getLogger("mmcore.sweep")

STD_NOTE = "mean ± std over seeds; std = sample standard deviation (ddof=1), not shown when n = 1"
_DEFAULT_METRICS = ("mae", "acc", "acc2_has0", "acc2")
_BASELINE_LABELS = {"train_mean": "baseline: train mean", "train_majority": "baseline: train majority"}


def alignment_columns(alignment: dict[str, Any]) -> dict[str, float]:
    """A run's alignment accuracy (results.json ``alignment``, see :mod:`mmcore.alignment`) as flat
    ``align_<key>`` columns: the mean over modalities of top1, mass and their uniform/proportional floors."""
    mean = alignment.get("mean") or {}
    return {f"align_{k}": v for k, v in mean.items() if isinstance(v, (int, float))}


def default_metric(available) -> str | None:
    """``mae`` for regression, ``acc`` (classification) or ``acc2_has0``/``acc2`` otherwise."""
    return next((m for m in _DEFAULT_METRICS if m in available), None)


@dataclass
class Stat:
    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return math.fsum(self.values) / len(self.values) if self.values else float("nan")

    @property
    def std(self) -> float | None:
        if len(self.values) < 2:
            return None
        m = self.mean
        return math.sqrt(math.fsum((v - m) ** 2 for v in self.values) / (len(self.values) - 1))

    def as_json(self) -> dict:
        return {"mean": _num(self.mean), "std": _num(self.std), "values": [_num(v) for v in self.values]}

    def format(self, digits: int = 4) -> str:
        if not self.values:
            return ""
        s = self.std
        return f"{self.mean:.{digits}f}" + (f" ± {s:.{digits}f}" if s is not None else "")


def _num(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else v


@dataclass
class Row:
    """One line of the table: a variant (or baseline) at a rate (None = the spec's eval protocol)."""

    variant: str
    rate: float | None
    seeds: list[int] = field(default_factory=list)
    metrics: dict[str, Stat] = field(default_factory=dict)

    def add(self, seed: int, metrics: dict[str, Any]) -> None:
        self.seeds.append(seed)
        for k, v in metrics.items():
            if k != "rate" and isinstance(v, (int, float)) and not isinstance(v, bool):
                self.metrics.setdefault(k, Stat([])).values.append(float(v))

    def as_json(self) -> dict:
        return {"variant": self.variant, "rate": self.rate, "n": len(self.seeds), "seeds": self.seeds,
                "metrics": {k: s.as_json() for k, s in self.metrics.items()}}


@dataclass
class Summary:
    metric: str
    test: list[Row]
    rates: list[Row]
    baselines: list[Row]
    failed: list[str]
    seeds: list[int]
    missing_rates: list[float]

    @property
    def mode(self) -> str:
        return METRIC_MODES.get(self.metric, "max")

    def columns(self) -> list[str]:
        cols = list(dict.fromkeys(k for r in self.test + self.rates for k in r.metrics))
        rest = [c for c in cols if c not in (self.metric, "loss")]
        return [self.metric, *rest, *(["loss"] if "loss" in cols else [])]

    def as_json(self) -> dict:
        return {"metric": self.metric, "mode": self.mode, "std": STD_NOTE, "seeds": self.seeds,
                "missing_rates": self.missing_rates, "test": [r.as_json() for r in self.test],
                "rates": [r.as_json() for r in self.rates], "baselines": [r.as_json() for r in self.baselines],
                "failed": self.failed}


def collect(out: str, cells, rates: list[float], metric: str | None, failed: list[str]) -> Summary:
    """Read every cell of ``cells`` (an iterable of :class:`~mmcore.sweep.grid.Cell`) from ``out``."""
    test: dict[str, Row] = {}
    by_rate: dict[tuple[str, float], Row] = {}
    baselines: dict[str, Row] = {}
    for cell in cells:
        run_dir = cell.run_dir(out)
        name = cell.variant.name
        path = os.path.join(run_dir, "results.json")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            results = json.load(f)
        align = alignment_columns(results["alignment"]) if results.get("alignment") else {}
        test.setdefault(name, Row(name, None)).add(cell.seed, {**results.get("test", {}), **align})
        for key, base in (results.get("baselines") or {}).items():
            label = _BASELINE_LABELS.get(key, f"baseline: {key}")
            row = baselines.setdefault(label, Row(label, None))
            if cell.seed not in row.seeds:  # the baseline depends on the data (seed), not the variant
                row.add(cell.seed, {k: v for k, v in base.items() if k != "value"})
        rpath = os.path.join(run_dir, "missing_rates.json")
        if rates and os.path.exists(rpath):
            with open(rpath) as f:
                rows = json.load(f).get("rows", [])
            for r in rates:
                match = next((x for x in rows if abs(x.get("rate", -1) - r) < 1e-9), None)
                if match is not None:
                    by_rate.setdefault((name, r), Row(name, r)).add(cell.seed, match)
    available = {k for r in test.values() for k in r.metrics}
    fallback = default_metric(available) or next(iter(sorted(available - {"loss"})), "loss")
    chosen = metric or fallback
    if available and chosen not in available:  # known only now; after a long sweep, warn rather than fail
        log.warning("--metric %s: the cells have no metric %r (they have %s); summarising %s instead",
                    chosen, chosen, ", ".join(sorted(available)), fallback)
        chosen = fallback
    order = list(dict.fromkeys(c.variant.name for c in cells))
    rate_rows = sorted(by_rate.values(), key=lambda r: (order.index(r.variant), r.rate))
    return Summary(chosen, [test[n] for n in order if n in test], rate_rows, list(baselines.values()), failed,
                   sorted({c.seed for c in cells}), list(rates))


def _table(rows: list[Row], cols: list[str], metric: str, mode: str, with_rate: bool) -> list[str]:
    arrow = "↓" if mode == "min" else "↑"
    head = ["variant", *(["rate"] if with_rate else []), "n",
            *(f"**{c}** {arrow} (mean ± std)" if c == metric else c for c in cols)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        cells = [r.variant, *([f"{r.rate:g}"] if with_rate else []), str(len(r.seeds)),
                 *(r.metrics[c].format() if c in r.metrics else "" for c in cols)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def format_markdown(s: Summary) -> str:
    """The summary as markdown: the test table (+ baselines), then the missing-rate table."""
    cols = s.columns()
    lines = [f"Test metrics per variant, {STD_NOTE}. Chosen metric: {s.metric} "
             f"({'lower' if s.mode == 'min' else 'higher'} is better).", ""]
    lines += _table(s.test + s.baselines, cols, s.metric, s.mode, with_rate=False)
    if s.rates:
        lines += ["", f"Test metrics across missing rates (every eval op's rate set to each; temporal masking of "
                      f"all modalities when the spec has none), {STD_NOTE}.", ""]
        lines += _table(s.rates, cols, s.metric, s.mode, with_rate=True)
    if s.failed:
        lines += ["", f"Failed cells (not in the table): {', '.join(s.failed)}; see sweep_error.txt in each."]
    return "\n".join(lines)


def format_csv(s: Summary) -> str:
    cols = s.columns()
    head = ["variant", "rate", "n", "seeds", *(f"{c}_{x}" for c in cols for x in ("mean", "std"))]
    out = [",".join(head)]
    for r in s.test + s.baselines + s.rates:
        vals = [_csv_text(r.variant), "" if r.rate is None else f"{r.rate:g}", str(len(r.seeds)),
                " ".join(map(str, r.seeds))]
        for c in cols:
            st = r.metrics.get(c)
            vals += ["", ""] if st is None else [_csv_num(st.mean), _csv_num(st.std)]
        out.append(",".join(vals))
    return "\n".join(out) + "\n"


def _csv_text(v: str) -> str:
    return '"' + v.replace('"', '""') + '"' if any(ch in v for ch in ',"\n') else v


def _csv_num(v: float | None) -> str:
    return "" if v is None or not math.isfinite(v) else repr(v)


def write_summary(out: str, s: Summary) -> dict[str, str]:
    """Write summary.md/.csv/.json into ``out``; returns {format: path}."""
    from ..train.checkpoint import atomic_write_text

    paths = {ext: os.path.join(out, f"summary.{ext}") for ext in ("md", "csv", "json")}
    atomic_write_text(paths["md"], format_markdown(s) + "\n")
    atomic_write_text(paths["csv"], format_csv(s))
    atomic_write_text(paths["json"], json.dumps(s.as_json(), indent=2) + "\n")
    return paths
