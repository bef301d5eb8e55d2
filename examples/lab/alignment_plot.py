r"""Mechanism lab, alignment: the table and the figure of the alignment sweep (docs/lab.md, "Alignment").

Reads a sweep made with examples/lab/alignment.yaml (variants = aligners, axis = data.params.misalignment)
and writes, per aligner and misalignment a (mean ± sample std over the seeds):

* alignment top-1 of the plans against the true word spans (the sweep's ``align_top1``), with the uniform
  and proportional floors; for ``bimamba_text_centric``, which has no plans, the top-1 of its Jacobian
  probe (examples/lab/alignment_probe.py) on each cell's selected weights, computed here once and cached
  in ``SWEEP/probe_bimamba.json``;
* the task MAE, with the margin against ``identity`` at the same a and the verdict of the 2-sd rule:
  an aligner beats identity when mean(identity) - mean(aligner) > 2 · sd, sd = the pooled seed std
  sqrt((s_aligner² + s_identity²) / 2).

Usage (repository root):
  python examples/lab/alignment_plot.py /tmp/lab/runs/alignment -o docs/lab/alignment/alignment.png
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys

ORDER = ["identity", "relaxed_ot", "sinkhorn", "gmm_prototype_ot", "bimamba_text_centric"]
COLORS = {"identity": "black", "relaxed_ot": "tab:blue", "sinkhorn": "tab:orange", "gmm_prototype_ot": "tab:green",
          "bimamba_text_centric": "tab:red"}


def _ms(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def load(sweep: str) -> tuple[dict, dict]:
    """{(aligner, a): {"mae": [...], "align_top1": [...], floors...}}, and the train-mean baseline per a."""
    with open(os.path.join(sweep, "sweep.json")) as f:
        manifest = json.load(f)
    with open(os.path.join(sweep, "summary.json")) as f:
        summary = json.load(f)
    rows = {r["variant"]: r for r in summary["test"]}
    cells, base = {}, {}
    for v in manifest["variants"]:
        spec = v["spec"]
        key = (spec["aligner"]["name"], float(spec["data"]["params"]["misalignment"]))
        row = rows.get(v["name"])
        if row is None:
            continue
        cells[key] = {k: m["values"] for k, m in row["metrics"].items()}
        cells[key]["seeds"] = row["seeds"]
        cells[key]["slug"] = v["slug"]
    for r in summary.get("baselines", []):
        base = r["metrics"]["mae"]["mean"]
    return cells, {"train_mean_mae": base}


def probe_bimamba(sweep: str, cells: dict) -> None:
    """Add ``align_top1`` (Jacobian probe) to the bimamba cells, cached in SWEEP/probe_bimamba.json."""
    cache_path = os.path.join(sweep, "probe_bimamba.json")
    cache = json.load(open(cache_path)) if os.path.exists(cache_path) else {}
    todo = [(k, c) for k, c in cells.items() if k[0] == "bimamba_text_centric"]
    if not todo:
        return
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from alignment_probe import score  # noqa: E402

    from mmcore.train.run import load_run

    for key, c in todo:
        tops, masses = [], []
        for seed in c["seeds"]:
            cell = os.path.join(sweep, "cells", c["slug"], f"seed{seed}")
            if cell not in cache:
                tr = load_run(cell)
                cache[cell] = score(tr.model, tr.data, probe="jacobian")["mean"]
                with open(cache_path, "w") as f:
                    json.dump(cache, f, indent=1)
            tops.append(cache[cell]["top1"])
            masses.append(cache[cell]["mass"])
        c["align_top1"], c["align_mass"], c["probe"] = tops, masses, True


def table(cells: dict, base: dict) -> str:
    avals = sorted({a for _, a in cells})
    lines = ["| aligner | a | task MAE ↓ | Δ vs identity (2·sd) | beats identity? | align top-1 | align mass | "
             "uniform top-1 | proportional top-1 |", "|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda m, s: "—" if m is None else (f"{m:.3f}" if s is None else f"{m:.3f} ± {s:.3f}")  # noqa: E731
    floor = {}  # the floors depend on the data only: take them from any aligner with plans at that a
    for (al, a), c in cells.items():
        for k in ("align_uniform_top1", "align_proportional_top1"):
            if c.get(k):
                floor.setdefault((a, k), _ms(c[k])[0])
    for al in ORDER:
        for a in avals:
            c = cells.get((al, a))
            if c is None:
                continue
            mae, sd = _ms(c["mae"])
            delta, verdict = "—", "—"
            ident = cells.get(("identity", a))
            if al != "identity" and ident is not None and sd is not None:
                im, isd = _ms(ident["mae"])
                pooled = math.sqrt((sd ** 2 + isd ** 2) / 2)
                d = im - mae
                delta = f"{d:+.3f} ({2 * pooled:.3f})"
                verdict = "yes" if d > 2 * pooled else ("worse" if -d > 2 * pooled else "no")
            top = fmt(*_ms(c.get("align_top1", [])))
            if c.get("probe"):
                top += " (probe)"
            lines.append(f"| {al} | {a:g} | {fmt(mae, sd)} | {delta} | {verdict} | {top} | "
                         f"{fmt(*_ms(c.get('align_mass', [])))} | {fmt(floor.get((a, 'align_uniform_top1')), None)} | "
                         f"{fmt(floor.get((a, 'align_proportional_top1')), None)} |")
    lines.append(f"\ntrain-mean predictor: test MAE {base['train_mean_mae']:.3f}")
    return "\n".join(lines)


def plot(cells: dict, base: dict, out: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    avals = sorted({a for _, a in cells})
    fig = Figure(figsize=(11, 4.2))
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    floors = {}
    for name in ("align_uniform_top1", "align_proportional_top1"):
        pts = [(a, _ms(c[name])[0]) for (al, a), c in cells.items() if name in c and c[name]]
        floors[name] = {a: v for a, v in sorted(pts)}
    for al in ORDER:
        xs = [a for a in avals if (al, a) in cells]
        if not xs:
            continue
        style = dict(color=COLORS[al], marker="o", capsize=3, label=al)
        tops = [_ms(cells[(al, a)].get("align_top1", [])) for a in xs]
        if all(m is not None for m, _ in tops):
            lab = al + (" (Jacobian probe)" if cells[(al, xs[0])].get("probe") else "")
            ax1.errorbar(xs, [m for m, _ in tops], yerr=[s or 0 for _, s in tops], **{**style, "label": lab})
        maes = [_ms(cells[(al, a)]["mae"]) for a in xs]
        ax2.errorbar(xs, [m for m, _ in maes], yerr=[s or 0 for _, s in maes], **style)
    prop_label = "floor: proportional plan\n(identity gets it from the resampling fuser)"
    for name, label, ls in (("align_proportional_top1", prop_label, "--"),
                            ("align_uniform_top1", "floor: uniform plan", ":")):
        if floors[name]:
            ax1.plot(list(floors[name]), list(floors[name].values()), color="gray", ls=ls, label=label)
    ax2.axhline(base["train_mean_mae"], color="gray", ls=":", label="train-mean predictor")
    ax1.set(xlabel="misalignment a", ylabel="alignment top-1 (test)", title="plan vs true word spans", ylim=(0, 1.05))
    ax2.set(xlabel="misalignment a", ylabel="test MAE (lower is better)", title="task error")
    for ax in (ax1, ax2):
        ax.set_xticks(avals)
        ax.grid(alpha=0.3)
    ax1.legend(fontsize=7)
    ax2.legend(fontsize=7)
    fig.suptitle("synthetic data, 5 seeds (mean ± std): examples/lab/alignment.yaml", fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=110)


def plot_diagnostics(probe_dir: str, cells: dict, out: str, a: float = 1.0) -> None:
    """Per-epoch plan top-1 (seed 0) and the positive controls' task MAE at misalignment a (probe JSONL files)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def rows(name):
        path = os.path.join(probe_dir, name)
        return [json.loads(line) for line in open(path)] if os.path.exists(path) else []

    fig = Figure(figsize=(12.5, 4.4))
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    per = {}
    for r in rows(f"epochs_a{a:g}.jsonl"):
        if not r.get("selected"):
            per.setdefault(r["aligner"], {})[r["epoch"]] = r["align"]["mean"]
    floors = None
    for al, ep in per.items():
        xs = sorted(ep)
        lab = al + (" (Jacobian probe)" if al == "bimamba_text_centric" else "")
        ax1.plot(xs, [ep[e]["top1"] for e in xs], marker="o", ms=3, color=COLORS.get(al, "gray"), label=lab)
        floors = ep[xs[0]]
    if floors:
        ax1.axhline(floors["proportional_top1"], color="gray", ls="--", label="floor: proportional")
        ax1.axhline(floors["uniform_top1"], color="gray", ls=":", label="floor: uniform")
    ax1.set(xlabel="epoch (0 = initialisation)", ylabel="alignment top-1 (test)", ylim=(0, 0.45),
            title=f"plans during training, a = {a:g}, seed 0")
    groups = [("identity", [v for v in cells.get(("identity", a), {}).get("mae", [])], None)]
    sel = lambda name, al, nce=None: [r for r in rows(name) if r.get("selected") and r["aligner"] == al  # noqa: E731
                                      and (nce is None or r.get("oracle_nce") == nce)
                                      and f"data.params.misalignment={a:g}" in r["overrides"]]
    for label, rs in (("perfect plan\n(lab_oracle_plan)", sel("oracle_plan.jsonl", "lab_oracle_plan")),
                      ("identity\n+ oracle NCE", sel("nce_a1.jsonl", "identity", 1.0)),
                      ("relaxed_ot\n+ oracle NCE", sel("nce_a1.jsonl", "relaxed_ot", 1.0)),
                      ("sinkhorn\n+ oracle NCE", sel("nce_a1.jsonl", "sinkhorn", 1.0)),
                      ("sinkhorn, NCE on\ncost projection", sel("projected.jsonl", "lab_sinkhorn_projected"))):
        if rs:
            groups.append((label, [r["test_mae"] for r in rs], _ms([r["align"]["mean"]["top1"] for r in rs])[0]))
    for k, (label, vals, top) in enumerate(groups):
        m, sd = _ms(vals)
        if m is None:
            continue
        ax2.bar(k, m, yerr=sd or 0, capsize=3, color="black" if k == 0 else "tab:purple", alpha=0.8)
        if top is not None and "identity" not in label:
            ax2.text(k, m + (sd or 0) + 0.01, f"top-1\n{top:.2f}", ha="center", fontsize=7)
    ax2.set_xticks(range(len(groups)), [g[0] for g in groups], fontsize=6.5)
    ax2.set(ylabel="test MAE (5 seeds, mean ± std)", ylim=(0.6, 1.15), title=f"positive controls, a = {a:g}")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3, axis="y")
    ax1.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep", help="sweep directory (mmcore sweep --out)")
    ap.add_argument("-o", "--output", default=None, help="PNG path (default SWEEP/alignment.png)")
    ap.add_argument("--no-probe", action="store_true", help="skip the Jacobian probe of bimamba_text_centric")
    ap.add_argument("--diagnostics", nargs=2, metavar=("PROBE_DIR", "PNG"),
                    help="also draw the diagnostics figure from alignment_probe.py's JSONL files in PROBE_DIR")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    cells, base = load(args.sweep)
    if not args.no_probe:
        probe_bimamba(args.sweep, cells)
    text = table(cells, base)
    print(text)
    with open(os.path.join(args.sweep, "alignment_table.md"), "w") as f:
        f.write(text + "\n")
    out = args.output or os.path.join(args.sweep, "alignment.png")
    plot(cells, base, out)
    print(f"wrote {out} and {os.path.join(args.sweep, 'alignment_table.md')}")
    if args.diagnostics:
        plot_diagnostics(args.diagnostics[0], cells, args.diagnostics[1])
        print(f"wrote {args.diagnostics[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
