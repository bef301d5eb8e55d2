"""Draw the README's masking-rate plot and table from the sweep of ``run_sweep.sh`` (torch-free).

The sweep names its variants ``<variant>_r<rate>`` and trains and tests each at that rate, so its
``summary.json`` has one test row per (variant, rate): this regroups them into one line per variant over
the rate (mmcore's own ``missing_rates.png`` of such a sweep is a bar per named variant).

    python plugins/mmcore-plugin-recon/docs/plot_sweep.py runs/mgmr_masking_sweep plugins/mmcore-plugin-recon/docs

Writes ``mgmr_masking_sweep.png`` (test MAE, mean ± std over seeds) and ``mgmr_masking_sweep.md`` (the
table, MAE and Corr; a difference column recon − no_recon with the number of seeds where recon is better).
"""

from __future__ import annotations

import json
import os
import re
import sys

NAME = re.compile(r"^(?P<variant>.+)_r(?P<rate>\d+(?:\.\d+)?)$")
ORDER = ("recon", "recon_alpha0", "no_recon")
LABELS = {"recon": "gated Mamba reconstruction (α = 1)", "recon_alpha0": "same module, α = 0 (no recon loss)",
          "no_recon": "no reconstruction module"}


def regroup(summary: dict) -> dict[str, dict[float, dict]]:
    """{variant: {rate: metrics}} from the sweep's test rows named ``<variant>_r<rate>``."""
    out: dict[str, dict[float, dict]] = {}
    for row in summary["test"]:
        m = NAME.match(row["variant"])
        if m:
            out.setdefault(m["variant"], {})[float(m["rate"])] = row["metrics"]
    return out


def fmt(st: dict | None) -> str:
    if not st or st["mean"] is None:
        return "—"
    return f"{st['mean']:.3f} ± {st['std']:.3f}" if st["std"] is not None else f"{st['mean']:.3f}"


def table(groups: dict[str, dict[float, dict]], baseline: float | None) -> str:
    names = [v for v in ORDER if v in groups] + sorted(set(groups) - set(ORDER))
    rates = sorted({r for g in groups.values() for r in g})
    head = ["rate"] + [f"MAE {v}" for v in names] + ["Δ MAE recon − no_recon (recon better)"] + [f"Corr {v}" for v in names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rates:
        cells = [f"{r:.1f}"] + [fmt(groups[v].get(r, {}).get("mae")) for v in names]
        a, b = groups.get("recon", {}).get(r, {}).get("mae"), groups.get("no_recon", {}).get(r, {}).get("mae")
        if a and b and len(a["values"]) == len(b["values"]):
            diffs = [x - y for x, y in zip(a["values"], b["values"])]
            cells.append(f"{sum(diffs) / len(diffs):+.3f} ({sum(d < 0 for d in diffs)}/{len(diffs)} seeds)")
        else:
            cells.append("—")
        cells += [fmt(groups[v].get(r, {}).get("corr")) for v in names]
        lines.append("| " + " | ".join(cells) + " |")
    if baseline is not None:
        lines.append(f"\nTrain-mean predictor: test MAE {baseline:.3f}.")
    return "\n".join(lines) + "\n"


def main(sweep_dir: str, out_dir: str) -> None:
    from mmcore.plots.missing import plot_rate_lines

    with open(os.path.join(sweep_dir, "summary.json")) as f:
        summary = json.load(f)
    groups = regroup(summary)
    series = {LABELS.get(v, v): [(r, s["mae"]["mean"], s["mae"]["std"]) for r, s in sorted(groups[v].items())]
              for v in ORDER if v in groups}
    png = plot_rate_lines(series, "mae", os.path.join(out_dir, "mgmr_masking_sweep.png"),
                          "MGMR-Net, ICT-MMMO audio+vision: test MAE\n"
                          "temporal masking rate r in training = at test; mean ± std, 3 seeds")
    base = next((b["metrics"]["mae"]["mean"] for b in summary.get("baselines", []) if "mae" in b["metrics"]), None)
    md = os.path.join(out_dir, "mgmr_masking_sweep.md")
    with open(md, "w") as f:
        f.write(table(groups, base))
    print(png)
    print(md)


if __name__ == "__main__":
    main(*sys.argv[1:3])
