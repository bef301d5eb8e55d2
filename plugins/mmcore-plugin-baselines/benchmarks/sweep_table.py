"""Tabulate a finished baselines sweep: test MAE, Corr, Acc-2, F1, Acc-7 (MMSA definitions), mean ± std over
seeds, wall time and parameter count per variant.

The npz loader reports only MAE/MSE/Corr for ICT-MMMO; the recipes shift its 1..5 scores by −3
(``label_offset``), so MMSA's "mosi" metric set (Acc-2 at 0, weighted F1, Acc-7 by clipping to ±3 and rounding)
applies; it is computed here from each cell's best checkpoint on the test split.

    python plugins/mmcore-plugin-baselines/benchmarks/sweep_table.py runs/baselines_mmmo
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from mmcore.metrics import regression_metrics
from mmcore.train.run import load_run

COLS = [("mae", "MAE ↓"), ("corr", "Corr"), ("acc2_has0", "Acc-2 (has-0)"), ("acc2_non0", "Acc-2 (non-0)"),
        ("f1_has0", "F1 (has-0)"), ("acc7", "Acc-7")]


def main(sweep: str) -> None:
    cells = os.path.join(sweep, "cells")
    print("| model | n | " + " | ".join(c[1] for c in COLS) + " | wall s / run | parameters |")
    print("|---|---|" + "---|" * (len(COLS) + 2))
    for variant in sorted(os.listdir(cells)):
        rows, walls, params = [], [], None
        for seed in sorted(os.listdir(os.path.join(cells, variant))):
            run = os.path.join(cells, variant, seed)
            trainer = load_run(run)
            pred, lab = trainer.predict(trainer.data.split("test"), trainer.eval_protocol, "test")
            rows.append(regression_metrics(pred.numpy(), lab.numpy(), "mosi"))
            with open(os.path.join(run, "metrics.jsonl")) as f:
                walls.append(sum(json.loads(line).get("seconds", 0.0) for line in f))
            params = sum(p.numel() for p in trainer.model.parameters())
        cells_txt = []
        for key, _ in COLS:
            v = np.array([r[key] for r in rows])
            cells_txt.append(f"{v.mean():.3f} ± {v.std(ddof=1):.3f}")
        print(f"| {variant} | {len(rows)} | " + " | ".join(cells_txt) + f" | {np.mean(walls):.1f} | {params:,} |")


if __name__ == "__main__":
    main(sys.argv[1])
