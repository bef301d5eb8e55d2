"""Table and plot of a ``sweep.sh`` / ``robustness.sh`` sweep (torch-free): test MAE vs masking rate per variant.

The sweep names its variants ``<variant>_r<rate>`` and trains and tests each at that rate (MGMR-Net §4.4),
so its ``summary.json`` has one test row per (variant, rate); this regroups them into one line per variant.
``recon_alpha0`` at r = 0 is not trained (the loss is identically 0 there, so it is ``recon`` exactly) and
is shown as ``recon``'s row.

    .venv-test/bin/python plugins/mmcore-plugin-recon/experiments/lab/table.py SWEEP_DIR [PNG] [TITLE]

Prints a markdown table: MAE and Corr mean ± sd over seeds (sample sd); for each ablation A in
(recon_alpha0, no_recon): Δ = mean MAE(A) − mean MAE(recon) (> 0: recon better), Δ / pooled sd
(pooled sd = sqrt((sd_recon² + sd_A²) / 2), the "> 2 sd" criterion), and the seeds where recon is better
(paired by seed).
"""

from __future__ import annotations

import json
import math
import os
import sys

# the regrouping and number format of the README's sweep table (docs/plot_sweep.py), which this script extends
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs"))
import plot_sweep  # noqa: E402
from plot_sweep import ORDER, fmt as ms  # noqa: E402

LABELS = {"recon": "recon: gated Mamba reconstruction, α = 1", "recon_alpha0": "recon_alpha0: same module, α = 0",
          "no_recon": "no_recon: zero imputer"}


def regroup(summary: dict) -> dict[str, dict[float, dict]]:
    """``plot_sweep.regroup``, with ``recon``'s r = 0 row standing for ``recon_alpha0``'s (not trained there)."""
    out = plot_sweep.regroup(summary)
    if "recon" in out and 0.0 in out["recon"] and "recon_alpha0" in out:
        out["recon_alpha0"].setdefault(0.0, out["recon"][0.0])
    return out


def compare(rec: dict | None, abl: dict | None) -> str:
    if not rec or not abl or len(rec["values"]) != len(abl["values"]) or len(rec["values"]) < 2:
        return "—"
    d = abl["mean"] - rec["mean"]
    pooled = math.sqrt((rec["std"] ** 2 + abl["std"] ** 2) / 2)
    better = sum(a > r for a, r in zip(abl["values"], rec["values"]))
    return f"{d:+.3f} ({d / pooled:+.1f} sd; {better}/{len(rec['values'])})" if pooled > 0 else f"{d:+.3f}"


def table(groups: dict[str, dict[float, dict]]) -> str:
    names = [v for v in ORDER if v in groups]
    rates = sorted({r for g in groups.values() for r in g})
    head = (["r"] + [f"MAE {v}" for v in names] + ["Δ vs recon_alpha0", "Δ vs no_recon"]
            + [f"Corr {v}" for v in names])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rates:
        get = lambda v, k: groups.get(v, {}).get(r, {}).get(k)  # noqa: E731
        cells = [f"{r:.1f}"] + [ms(get(v, "mae")) for v in names]
        cells += [compare(get("recon", "mae"), get(a, "mae")) if r > 0 or a == "no_recon" else "0 (identical)"
                  for a in ("recon_alpha0", "no_recon")]
        cells += [ms(get(v, "corr")) for v in names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(sweep_dir: str, png: str | None = None, title: str = "") -> None:
    with open(os.path.join(sweep_dir, "summary.json")) as f:
        summary = json.load(f)
    groups = regroup(summary)
    print(table(groups))
    base = next((b["metrics"]["mae"]["mean"] for b in summary.get("baselines", []) if "mae" in b["metrics"]), None)
    if base is not None:
        print(f"Train-mean predictor: test MAE {base:.3f}. Seeds: {summary.get('seeds')}.")
    if png:
        from mmcore.plots.missing import plot_rate_lines

        series = {LABELS[v]: [(r, s["mae"]["mean"], s["mae"]["std"]) for r, s in sorted(groups[v].items())]
                  for v in ORDER if v in groups}
        print(plot_rate_lines(series, "mae", png, title or "test MAE vs masking rate (trained and tested at r)"))


if __name__ == "__main__":
    main(sys.argv[1], *(a.replace("\\n", "\n") for a in sys.argv[2:4]))
