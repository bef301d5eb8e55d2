"""Validation (model-selection) MAE per variant of a sweep directory: mean ± std over seeds.

    python plugins/mmcore-plugin-adl/experiments/valid_table.py runs/adl_explore [--test]

``best_valid`` is the validation MAE of the selected epoch (results.json); ``--test`` adds the
test MAE column (look at it only after choosing on validation).
"""

import json
import statistics
import sys
from pathlib import Path

root = Path(sys.argv[1])
show_test = "--test" in sys.argv
rows = {}
for res in sorted(root.glob("cells/*/seed*/results.json")):
    r = json.loads(res.read_text())
    rows.setdefault(res.parent.parent.name, []).append((r["best_valid"], r["test"]["mae"]))


def fmt(xs):
    return f"{statistics.mean(xs):.4f} ± {statistics.stdev(xs):.4f}" if len(xs) > 1 else f"{xs[0]:.4f}"


print("| variant | n | valid mae |" + (" test mae |" if show_test else ""))
print("|---|---|---|" + ("---|" if show_test else ""))
for name, vals in rows.items():
    line = f"| {name} | {len(vals)} | {fmt([v for v, _ in vals])} |"
    print(line + (f" {fmt([t for _, t in vals])} |" if show_test else ""))
