"""Bar chart of the r = 0.6 follow-ups (torch-free): test MAE, mean ± sd over seeds 0-4, 20 and 40 epochs.

    .venv-test/bin/python plugins/mmcore-plugin-recon/experiments/lab/plot_r06.py /tmp/lab/runs docs/lab/mgmr/mgmr_r06_followups.png

Reads RUNS/mgmr_main, mgmr_better, mgmr_longer, mgmr_better-ep40 (sweep summaries) and mgmr_oracle,
mgmr_oracle_ep40 (oracle_fill.py run directories).
"""

from __future__ import annotations

import json
import math
import os
import sys

from mmcore.plots._mpl import new_figure, save


def sweep(runs: str, d: str, v: str) -> list[float]:
    s = json.load(open(os.path.join(runs, d, "summary.json")))
    return next(r["metrics"]["mae"]["values"] for r in s["test"] if r["variant"] == v)


def oracle(runs: str, d: str, tag: str) -> list[float]:
    return [json.load(open(os.path.join(runs, d, f"{tag}_r0.6", f"seed{k}", "results.json")))["test"]["mae"]
            for k in range(5)]


def main(runs: str, png: str) -> None:
    groups = {
        "20 epochs": [("zero imputer", sweep(runs, "mgmr_main", "no_recon_r0.6")),
                      ("recon (paper: causal, α=1)", sweep(runs, "mgmr_main", "recon_r0.6")),
                      ("recon α=0", sweep(runs, "mgmr_main", "recon_alpha0_r0.6")),
                      ("recon bidirectional", sweep(runs, "mgmr_better", "recon_bi_r0.6")),
                      ("recon bidirectional, α=10", sweep(runs, "mgmr_better", "recon_bi_a10_r0.6")),
                      ("no imputer", oracle(runs, "mgmr_oracle", "nofill")),
                      ("no imputer + oracle same-word fill", oracle(runs, "mgmr_oracle", "fill"))],
        "40 epochs": [("zero imputer", sweep(runs, "mgmr_longer", "no_recon_r0.6")),
                      ("recon (paper: causal, α=1)", sweep(runs, "mgmr_longer", "recon_r0.6")),
                      ("recon bidirectional, α=10", sweep(runs, "mgmr_better-ep40", "recon_bi_a10_r0.6")),
                      ("no imputer", oracle(runs, "mgmr_oracle_ep40", "nofill")),
                      ("no imputer + oracle same-word fill", oracle(runs, "mgmr_oracle_ep40", "fill"))],
    }
    fig = new_figure(12.0, 4.6)
    for i, (title, bars) in enumerate(groups.items()):
        ax = fig.add_subplot(1, 2, i + 1)
        mus = [sum(v) / len(v) for _, v in bars]
        sds = [math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) for (_, v), m in zip(bars, mus)]
        ax.barh(range(len(bars)), mus, xerr=sds, capsize=3, color=["#999999"] + ["#4c72b0"] * (len(bars) - 3)
                + ["#999999", "#55a868"])
        ax.set_yticks(range(len(bars)))
        ax.set_yticklabels([b[0] for b in bars], fontsize="small")
        ax.invert_yaxis()
        ax.set_xlim(0.55, 1.0)
        ax.set_xlabel("test MAE at r = 0.6, mean ± sd over 5 seeds (lower is better)", fontsize="small")
        ax.set_title(title)
        ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    print(save(fig, png))


if __name__ == "__main__":
    main(*sys.argv[1:3])
