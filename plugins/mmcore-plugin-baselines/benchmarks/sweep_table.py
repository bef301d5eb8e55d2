"""Tabulate a finished baselines sweep: test MAE, Corr, Acc-2, F1, Acc-7 (MMSA definitions), mean ± std over
seeds, wall time and parameter count per variant.

The npz loader reports only MAE/MSE/Corr for ICT-MMMO; the recipes shift its 1..5 scores by −3
(``label_offset``), so MMSA's "mosi" metric set (Acc-2 at 0, weighted F1, Acc-7 by clipping to ±3 and rounding)
applies; it is computed here from each cell's best checkpoint on the test split.

    python plugins/mmcore-plugin-baselines/benchmarks/sweep_table.py runs/baselines_mmmo [more sweeps ...]

A run on ICT-MMMO without ``label_offset`` (the four papers' recipes train on the raw 1..5 scores) gets its
predictions and labels shifted by −3 here before the metrics, which leaves MAE and Corr unchanged and puts
Acc-2's threshold at the scale's midpoint 3, as ``label_offset: -3`` does; its row is marked "†".

Several sweep folders give one table (rows in the order given, variants sorted within a sweep): a sweep cannot
grow new variants in place (``mmcore sweep`` refuses a different grid on the same ``--out``).
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


def main(sweeps: list[str]) -> None:
    print("| model | n | " + " | ".join(c[1] for c in COLS) + " | wall s / run | parameters |")
    print("|---|---|" + "---|" * (len(COLS) + 2))
    for sweep in sweeps:
        _rows(os.path.join(sweep, "cells"))


def _rows(cells: str) -> None:
    for variant in sorted(os.listdir(cells)):
        rows, walls, params = [], [], None
        for seed in sorted(os.listdir(os.path.join(cells, variant))):
            run = os.path.join(cells, variant, seed)
            trainer = load_run(run)
            pred, lab = trainer.predict(trainer.data.split("test"), trainer.eval_protocol, "test")
            data = trainer.spec.data
            params = data.params or {}
            shifted = data.name == "npz" and params.get("dataset") == "mmmo" and not params.get("label_offset")
            shift = -3.0 if shifted else 0.0
            rows.append(regression_metrics(pred.numpy() + shift, lab.numpy() + shift, "mosi"))
            with open(os.path.join(run, "metrics.jsonl")) as f:
                walls.append(sum(json.loads(line).get("seconds", 0.0) for line in f))
            params = sum(p.numel() for p in trainer.model.parameters())
        cells_txt = []
        for key, _ in COLS:
            v = np.array([r[key] for r in rows])
            cells_txt.append(f"{v.mean():.3f} ± {v.std(ddof=1):.3f}")
        print(f"| {variant}{' †' if shifted else ''} | {len(rows)} | " + " | ".join(cells_txt) + f" | {np.mean(walls):.1f} | {params:,} |")


if __name__ == "__main__":
    main(sys.argv[1:])
