"""Tables of the ablation section (docs/lab.md, "Ablations"). Markdown (CSV for ``cells``) on stdout.

usage (repository root):
  python examples/lab/ablation_tables.py sweep SWEEP_DIR 'name:with_variant:without_variant' ...
      per-variant test metrics (mean ± sd over seeds) and one verdict row per mechanism, e.g.
      python examples/lab/ablation_tables.py sweep /tmp/lab/runs/alignmamba_mmd mmd:full:no_mmd
      (SWEEP_DIR may join sweeps of one setting: DIR1+DIR2)
  python examples/lab/ablation_tables.py diag DIAG.json PATH ...
      mean ± sd over seeds, per variant, of dotted paths of ablation_diagnose.py's JSON, e.g.
      python examples/lab/ablation_tables.py diag /tmp/lab/abl/diag_am.json grads_init.mmd.norm_enc
  python examples/lab/ablation_tables.py curves SWEEP_DIR 1,2,5,14
      mean over seeds of validation MAE and train task loss at the given epochs;
  python examples/lab/ablation_tables.py cells SWEEP_DIR ...
      CSV, one row per finished cell: sweep, variant, seed, test MAE/corr/Acc-2, best epoch.

Verdict criterion ("beats its ablation by more than 2 standard deviations over 5 seeds"):
Δ = mean MAE(without) − mean MAE(with) > 2·s, s = the larger of the two variants' sample standard
deviations (ddof 1) over seeds. The paired difference (same seed = same data order and, within one
architecture, the same initialisation) is shown too: mean ± sd of the per-seed differences, t = mean/(sd/√n).
"""

from __future__ import annotations

import collections
import glob
import json
import math
import os
import statistics as st
import sys


def load(sweep):
    """{variant: {seed: metrics}}; SWEEP may join sweeps of the same setting with '+' (DIR1+DIR2)."""
    out = {}
    for d in sorted(d for sw in sweep.split("+") for d in glob.glob(os.path.join(sw, "cells", "*", "seed*"))):
        var, seed = d.split(os.sep)[-2], int(d.split(os.sep)[-1][4:])
        rp = os.path.join(d, "results.json")
        if not os.path.exists(rp):
            continue
        r = json.load(open(rp))
        rows = [json.loads(line) for line in open(os.path.join(d, "metrics.jsonl"))]
        best = r["best_epoch"]
        rec = next(x for x in rows if x["epoch"] == best)
        train_terms = {k[6:]: v for k, v in rec.items() if k.startswith("train_")}
        first_terms = {k[6:]: v for k, v in rows[0].items() if k.startswith("train_")}
        al = r.get("alignment", {}).get("mean", {})
        out.setdefault(var, {})[seed] = {"mae": r["test"]["mae"], "corr": r["test"]["corr"],
                                         "acc2": r["test"]["acc2_non0"], "best_epoch": best,
                                         "epochs_run": r["epochs_run"], "train": train_terms, "first": first_terms,
                                         "align_top1": al.get("top1"), "align_mass": al.get("mass"),
                                         "train_mean_mae": r["baselines"]["train_mean"]["mae"]}
    return out


def ms(xs, nd=3):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "—"
    if len(xs) == 1:
        return f"{xs[0]:.{nd}f}"
    return f"{st.mean(xs):.{nd}f} ± {st.stdev(xs):.{nd}f}"


def variant_table(res, order=None):
    order = order or list(res)
    terms = sorted({k for v in res.values() for s in v.values() for k in s["train"] if k != "task"})
    has_align = any(s["align_top1"] is not None for v in res.values() for s in v.values())
    head = ["variant", "n", "test MAE ↓", "corr ↑", "Acc-2 (non0) ↑"] + (["align top1", "align mass"] if has_align else []) \
        + ["best epoch"] + [f"train {t} (best ep.)" for t in terms]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for v in order:
        if v not in res:
            continue
        S = [res[v][k] for k in sorted(res[v])]
        row = [v, str(len(S)), ms([s["mae"] for s in S], 4), ms([s["corr"] for s in S]), ms([s["acc2"] for s in S])]
        if has_align:
            row += [ms([s["align_top1"] for s in S]), ms([s["align_mass"] for s in S])]
        row += [ms([s["best_epoch"] for s in S], 1)]
        row += [ms([s["train"].get(t) for s in S]) for t in terms]
        lines.append("| " + " | ".join(row) + " |")
    tm = [s["train_mean_mae"] for v in res.values() for s in v.values()][0]
    lines.append(f"\nTrain-mean predictor: test MAE {tm:.4f}.")
    return "\n".join(lines)


def verdicts(res, mechs):
    head = ["mechanism", "with", "without", "MAE with", "MAE without", "Δ = without − with", "2·s",
            "paired Δ (mean ± sd)", "paired t", "seeds where it helps", "> 2 sd?"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for spec in mechs:
        name, a, b = spec.split(":")
        if a not in res or b not in res:
            continue
        seeds = sorted(set(res[a]) & set(res[b]))
        xa = [res[a][k]["mae"] for k in seeds]
        xb = [res[b][k]["mae"] for k in seeds]
        d = [y - x for x, y in zip(xa, xb)]
        s = max(st.stdev(xa), st.stdev(xb)) if len(seeds) > 1 else float("nan")
        delta = st.mean(xb) - st.mean(xa)
        sd = st.stdev(d) if len(d) > 1 else float("nan")
        t = st.mean(d) / (sd / math.sqrt(len(d))) if len(d) > 1 and sd > 0 else float("nan")
        helps = sum(x > 0 for x in d)
        ok = "yes" if delta > 2 * s else ("no: worse by > 2 sd" if -delta > 2 * s else "no")
        lines.append(f"| {name} | {a} | {b} | {ms(xa, 4)} | {ms(xb, 4)} | {delta:+.4f} | {2 * s:.4f} | "
                     f"{st.mean(d):+.4f} ± {sd:.4f} | {t:+.2f} | {helps}/{len(d)} | {ok} |")
    return "\n".join(lines)


def diag_table(path, paths):
    res = json.load(open(path))
    by = collections.defaultdict(list)
    for r in res:
        by[r["run"].rstrip("/").split("/")[-2]].append(r)

    def get(r, p):
        for k in p.split("."):
            if r is None or k not in r:
                return None
            r = r[k]
        return r

    lines = ["| variant | n | " + " | ".join(paths) + " |", "|---|---|" + "---|" * len(paths)]
    for v, rs in by.items():
        cells = []
        for p in paths:
            xs = [x for x in (get(r, p) for r in rs) if x is not None]
            cells.append("—" if not xs else (f"{st.mean(xs):.3f} ± {st.stdev(xs):.3f}" if len(xs) > 1 else f"{xs[0]:.3f}"))
        lines.append(f"| {v} | {len(rs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def curves_table(sweep, eps):
    man = json.load(open(os.path.join(sweep, "sweep.json")))
    lines = ["| variant | " + " | ".join(f"valid MAE ep {e}" for e in eps) + " | "
             + " | ".join(f"train task ep {e}" for e in eps) + " |", "|---|" + "---|" * (2 * len(eps))]
    for v in [x["slug"] for x in man["variants"]]:
        runs = [[json.loads(line) for line in open(f)]
                for f in sorted(glob.glob(os.path.join(sweep, "cells", v, "seed*", "metrics.jsonl")))]

        def at(e, k):
            xs = [r[e - 1][k] for r in runs if len(r) >= e]
            return f"{st.mean(xs):.3f}" if xs else "—"

        lines.append(f"| {v} | " + " | ".join(at(e, "valid_mae") for e in eps) + " | "
                     + " | ".join(at(e, "train_task") for e in eps) + " |")
    return "\n".join(lines)


def cells_csv(sweeps):
    lines = ["sweep,variant,seed,test_mae,test_corr,test_acc2_non0,best_epoch"]
    for sw in sweeps:
        for v, seeds in load(sw).items():
            for k in sorted(seeds):
                s = seeds[k]
                lines.append(f"{os.path.basename(sw.rstrip('/'))},{v},{k},{s['mae']:.4f},{s['corr']:.4f},{s['acc2']:.4f},{s['best_epoch']}")
    return "\n".join(lines)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "sweep":
        sweep, mechs = sys.argv[2], sys.argv[3:]
        res = load(sweep)
        order = [v["slug"] for sw in sweep.split("+") for v in json.load(open(os.path.join(sw, "sweep.json")))["variants"]]
        print(variant_table(res, order))
        print()
        print(verdicts(res, mechs))
    elif mode == "diag":
        print(diag_table(sys.argv[2], sys.argv[3:]))
    elif mode == "curves":
        print(curves_table(sys.argv[2], [int(e) for e in sys.argv[3].split(",")]))
    elif mode == "cells":
        print(cells_csv(sys.argv[2:]))
    else:
        sys.exit(f"unknown mode {mode!r}: sweep, diag, curves or cells")
