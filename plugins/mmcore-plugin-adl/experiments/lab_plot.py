"""Mechanism-lab plot and table: test MAE vs recoverability per imputer, one panel per setting.

Reads the ``summary.json`` of ``mmcore sweep`` directories whose variants are named
``<imputer>[,data.params.recoverable=<r>]`` (examples/lab/mm_align.yaml's commands; r is read from
each variant's resolved spec in ``sweep.json``):

    python plugins/mmcore-plugin-adl/experiments/lab_plot.py -o docs/lab/mm_align/mae_vs_recoverable.png \
        A=/tmp/lab/runs/mm_align_A B=/tmp/lab/runs/mm_align_B

Prints, per setting, a markdown table (mean ± sample std over seeds) with the margin of ``adl`` over
the better naive fill in units of the larger of the two standard deviations, and the per-seed paired
differences adl − zero and adl − mean (mean ± sample std of the five differences; same seed = same
initialisation draw, batch order and missing-modality masks).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
from collections import defaultdict

ORDER = ("adl", "adl_paper", "zero", "mean")
STYLE = {"adl": ("tab:blue", "o"), "adl_paper": ("tab:purple", "D"), "zero": ("tab:gray", "s"), "mean": ("tab:orange", "^")}


def load(sweep: str, metric: str = "mae"):
    """{imputer: {r: (mean, std, values)}} and the train-mean baseline of one sweep."""
    with open(os.path.join(sweep, "summary.json")) as f:
        s = json.load(f)
    with open(os.path.join(sweep, "sweep.json")) as f:  # each variant's resolved spec: its r and imputer
        resolved = {v["name"]: v["spec"] for v in json.load(f)["variants"]}
    out: dict[str, dict[float, tuple]] = defaultdict(dict)
    for row in s["test"]:
        spec = resolved.get(row["variant"])
        if spec is None:
            continue
        imputer = re.split(r"[,:]", row["variant"])[0]  # the variant's own name: adl, zero, mean, adl_paper, ...
        v = row["metrics"][metric]
        out[imputer][float(spec["data"]["params"]["recoverable"])] = (v["mean"], v["std"] or 0.0, v["values"])
    base = [b["metrics"][metric]["mean"] for b in s.get("baselines", []) if metric in b["metrics"]]
    return out, (base[0] if base else None)


def table(name: str, res) -> str:
    rs = sorted({r for d in res.values() for r in d})
    lines = [f"| setting {name}: r | " + " | ".join(i for i in ORDER if i in res) + " | adl − best fill (in SD) "
             "| adl − zero, paired by seed | adl − mean, paired by seed |",
             "|---" * (len([i for i in ORDER if i in res]) + 4) + "|"]
    for r in rs:
        cells = []
        for i in ORDER:
            if i in res and r in res[i]:
                mu, sd, vals = res[i][r]
                cells.append(f"{mu:.4f} ± {sd:.4f}")
        margin = ""
        if all(i in res and r in res[i] for i in ("adl", "zero", "mean")):
            best = min(("zero", "mean"), key=lambda i: res[i][r][0])
            d = res["adl"][r][0] - res[best][r][0]
            sd = max(res["adl"][r][1], res[best][r][1])
            margin = f"{d:+.4f} vs {best} ({d / sd:+.1f})" if sd > 0 else f"{d:+.4f} vs {best}"
        paired = []
        for f in ("zero", "mean"):
            if all(i in res and r in res[i] for i in ("adl", f)) and len(res["adl"][r][2]) == len(res[f][r][2]) > 1:
                diff = [x - y for x, y in zip(res["adl"][r][2], res[f][r][2])]
                paired.append(f"{statistics.mean(diff):+.4f} ± {statistics.stdev(diff):.4f}")
            else:
                paired.append("")
        lines.append(f"| {r:g} | " + " | ".join(cells) + f" | {margin} | " + " | ".join(paired) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sweeps", nargs="+", help="NAME=SWEEP_DIR, one per setting (panel)")
    ap.add_argument("-o", "--out", help="PNG path (none: tables only)")
    ap.add_argument("--metric", default="mae")
    ap.add_argument("--subtitle", action="append", default=[], help="one per panel, in order")
    ap.add_argument("--title", default="MM-Align mechanism lab: ADL vs naive fills (synthetic, audio → vision)")
    a = ap.parse_args()
    panels = [s.split("=", 1) for s in a.sweeps]
    if not a.out:
        for name, path in panels:
            print(table(name, load(path, a.metric)[0]) + "\n")
        return
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * len(panels), 3.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for k, (ax, (name, path)) in enumerate(zip(axes, panels)):
        res, base = load(path, a.metric)
        print(table(name, res) + "\n")
        for i in ORDER:
            if i not in res:
                continue
            rs = sorted(res[i])
            mu = [res[i][r][0] for r in rs]
            sd = [res[i][r][1] for r in rs]
            c, mk = STYLE[i]
            ax.errorbar(rs, mu, yerr=sd, color=c, marker=mk, capsize=3, label={"adl": "adl (MM-Align recipe)", "adl_paper": "adl (paper config)"}.get(i, f"{i}-fill"))
        if base is not None:
            ax.axhline(base, color="k", ls=":", lw=1, label="train-mean predictor")
        sub = f"\n{a.subtitle[k]}" if k < len(a.subtitle) else ""
        ax.set_title(f"setting {name}{sub}", fontsize=9)
        ax.set_xlabel("recoverable r")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"test {a.metric.upper()} (mean ± std, 5 seeds)")
    axes[0].legend(fontsize=8)
    fig.suptitle(a.title, fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    fig.savefig(a.out, dpi=120)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
