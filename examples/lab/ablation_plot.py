"""Figures of the ablation section (docs/lab.md, "Ablations").

usage (repository root):
  python examples/lab/ablation_plot.py RUNS DIAG_AM.json DIAG_DA.json OUTDIR
  e.g.  python examples/lab/ablation_plot.py /tmp/lab/runs /tmp/lab/abl/diag_am.json /tmp/lab/abl/diag_da.json docs/lab/ablations

RUNS holds the sweeps alignmamba_mmd{,_seed1,_cs05} and decalign_ablation{,_seed1,_cs05} (see the headers of
examples/lab/alignmamba_mmd.yaml and examples/lab/decalign_ablation.yaml); the JSONs are ablation_diagnose.py's.
Writes to OUTDIR:
  ablation_mae.png        test MAE per variant, mean ± sample sd over seeds, one bar per generator setting;
  ablation_terms.png      each aux term (unweighted, train, mean over seeds) per epoch, with and without its weight;
  ablation_gradients.png  ‖∇ w·aux‖ / ‖∇ task‖ on the encoders and cos(∇ w·aux, ∇ task), at init and at the
                          selected weights (runs with every term on: full / authors).
"""

from __future__ import annotations

import collections
import glob
import json
import os
import statistics as st
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SETTINGS = {"": "data_seed 0 (main)", "_seed1": "data_seed 1", "_cs05": "content_share 0.5, misalignment 0.5"}


def cells(sweep):
    """{variant: [(results.json, metrics.jsonl rows), ...]} over the finished cells."""
    out = collections.defaultdict(list)
    for d in sorted(glob.glob(os.path.join(sweep, "cells", "*", "seed*"))):
        if os.path.exists(os.path.join(d, "results.json")):
            rows = [json.loads(line) for line in open(os.path.join(d, "metrics.jsonl"))]
            out[d.split(os.sep)[-2]].append((json.load(open(os.path.join(d, "results.json"))), rows))
    return out


def bars(ax, runs, name, title):
    sweeps = [(os.path.join(runs, name + s), lab) for s, lab in SETTINGS.items()
              if os.path.exists(os.path.join(runs, name + s, "sweep.json"))]
    variants = [v["slug"] for v in json.load(open(os.path.join(sweeps[0][0], "sweep.json")))["variants"]]
    width = 0.8 / len(sweeps)
    for k, (sw, lab) in enumerate(sweeps):
        c = cells(sw)
        xs = [i + (k - (len(sweeps) - 1) / 2) * width for i, v in enumerate(variants) if v in c]
        maes = [[r["test"]["mae"] for r, _ in c[v]] for v in variants if v in c]
        ax.bar(xs, [st.mean(m) for m in maes], width, yerr=[st.stdev(m) for m in maes], capsize=3, label=lab)
    ax.set_xticks(range(len(variants)), variants, rotation=30, ha="right")
    ax.set_ylabel("test MAE ↓ (mean ± sd, 5 seeds)")
    ax.set_ylim(0.55, None)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left")


def curve(ax, sweep, variants, term, title):
    c = cells(sweep)
    for v in variants:
        n = max(len(rows) for _, rows in c[v])
        ys = [st.mean([rows[e][f"train_{term}"] for _, rows in c[v] if e < len(rows)]) for e in range(n)]
        ax.plot(range(1, n + 1), ys, marker=".", label=v)
    ax.set_xlabel("epoch")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)


def grad_panel(axes, diag_am, diag_da):
    """One group per (computation, term): ratio of gradient norms and cosine, init vs selected weights."""
    groups = [("AlignMamba", diag_am, "full", "mmd")] + \
        [(lab, diag_da, v, t) for lab, v in (("mmcore", "full"), ("authors", "authors"))
         for t in ("decoupling", "prototype_ot", "prototype_calibration", "homogeneity")]
    names = [f"{lab}\n{t}" for lab, _, _, t in groups]
    for k, when in enumerate(("grads_init", "grads_best")):
        ratio, cos = [], []
        for _, diag, v, t in groups:
            rs = [r[when] for r in diag if r["run"].rstrip("/").split("/")[-2] == v]
            ratio.append([g[t]["norm_enc"] / g["task"]["norm_enc"] for g in rs])
            cos.append([g[t]["cos_task_enc"] for g in rs])
        x = [i + (k - 0.5) * 0.4 for i in range(len(groups))]
        lab = "at initialisation" if k == 0 else "at the selected weights"
        axes[0].bar(x, [st.mean(r) for r in ratio], 0.4, yerr=[st.stdev(r) for r in ratio], capsize=2, label=lab)
        axes[1].bar(x, [st.mean(c) for c in cos], 0.4, yerr=[st.stdev(c) for c in cos], capsize=2, label=lab)
    axes[0].set_yscale("log")
    axes[0].axhline(1, color="k", lw=0.8)
    axes[0].set_ylabel("‖∇ w·aux‖ / ‖∇ task‖ (encoders)")
    axes[1].axhline(0, color="k", lw=0.8)
    axes[1].set_ylim(-0.3, 0.3)
    axes[1].set_ylabel("cos(∇ w·aux, ∇ task) (encoders)")
    for ax in axes:
        ax.set_xticks(range(len(groups)), names, fontsize=7)
        ax.legend(fontsize=7)


def main(runs, diag_am, diag_da, outdir):
    os.makedirs(outdir, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2), gridspec_kw={"width_ratios": [1, 2.4]})
    bars(axes[0], runs, "alignmamba_mmd", "AlignMamba: MMD global alignment on/off")
    bars(axes[1], runs, "decalign_ablation", "DecAlign: decoupling / prototype OT + calibration / homogeneity off")
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "ablation_mae.png"), dpi=110)
    plt.close(fig)

    am, da = os.path.join(runs, "alignmamba_mmd"), os.path.join(runs, "decalign_ablation")
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5))
    curve(axes[0, 0], am, ["full", "no_mmd", "mmd_x10"], "mmd", "AlignMamba: MMD² (aligned vs text)")
    curve(axes[0, 1], da, ["full", "no_dec", "authors", "authors_no_dec"], "decoupling", "DecAlign: decoupling")
    curve(axes[0, 2], da, ["full", "no_hete"], "prototype_ot", "DecAlign (mmcore): prototype OT")
    curve(axes[1, 0], da, ["full", "no_hete"], "prototype_calibration", "DecAlign (mmcore): calibration")
    curve(axes[1, 1], da, ["full", "no_homo"], "homogeneity", "DecAlign (mmcore): homogeneity")
    curve(axes[1, 2], da, ["authors", "authors_no_homo"], "homogeneity", "DecAlign (authors): homogeneity")
    for ax in axes[:, 0]:
        ax.set_ylabel("train term, unweighted (mean of 5 seeds)")
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "ablation_terms.png"), dpi=100)
    plt.close(fig)

    fig, axes = plt.subplots(2, 1, figsize=(12, 6.5))
    grad_panel(axes, json.load(open(diag_am)), json.load(open(diag_da)))
    axes[0].set_title("Aux-loss gradients vs the task gradient, on 8 train batches (5 seeds; weights as in the recipes)")
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "ablation_gradients.png"), dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
