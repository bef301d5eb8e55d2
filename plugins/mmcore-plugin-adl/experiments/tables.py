"""Pivot a sweep.sh directory's summary.json into one row per setting, one column per imputer.

    python plugins/mmcore-plugin-adl/experiments/tables.py runs/adl_vision [--metric mae]

Cells are test mean ± std over seeds (sample std, ddof = 1), from the sweep's own summary.json.
The last column says whether `adl` (the recipe) has a lower mean than both zero and mean fill.
"""

import json
import sys
from pathlib import Path

root = Path(sys.argv[1])
metric = sys.argv[sys.argv.index("--metric") + 1] if "--metric" in sys.argv else "mae"
summary = json.loads((root / "summary.json").read_text())
cells = {}
for row in summary["test"]:
    setting, imputer = row["variant"].rsplit("-", 1)
    cells.setdefault(setting, {})[imputer] = row["metrics"][metric]
imputers = ["adl", "adl_paper", "zero", "mean"]
print("| setting | n | " + " | ".join(imputers) + " | adl < zero and mean? |")
print("|---|---|" + "---|" * len(imputers) + "---|")
for setting, by in cells.items():
    fmt = [f"{by[i]['mean']:.4f} ± {by[i]['std']:.4f}" if i in by else "" for i in imputers]
    beats = by["adl"]["mean"] < min(by["zero"]["mean"], by["mean"]["mean"])
    n = min(len(by[i]["values"]) for i in imputers if i in by)
    print(f"| {setting} | {n} | " + " | ".join(fmt) + f" | {'yes' if beats else 'no'} |")
