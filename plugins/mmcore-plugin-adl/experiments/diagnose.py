"""Where does ADL's imputation stand? Test MAE of trained ADL runs with the victim filled five ways.

For each run directory (best weights), on the test split with complete data:

* ``real``: the real victim (no missing modality) — what the backbone could do with the victim;
* ``adl``: the fitter's imputation (setting A: every row's victim missing) — the reported number;
* ``oracle_ot``: decoded with the OT plan computed from the *real* victim encoding (the fitter's
  target, by the run's own solver and decoder — default or ``reference: authors``): the best any
  fitter could do with this decoder;
* ``mean``: the mean victim encoding of the train split at every position;
* ``zero``: zeros.

Also the mean cosine between each imputation and the real victim encoding at valid tokens.

    python plugins/mmcore-plugin-adl/experiments/diagnose.py runs/adl_vision/cells/A-adl/seed*
"""

from __future__ import annotations

import statistics
import sys

import torch

import torch.nn.functional as F

from mmcore.data.base import iterate_batches
from mmcore.train.run import load_run
from mmcore_plugin_adl.decode import decode
from mmcore_plugin_adl.window import window_geometry

torch.set_num_threads(1)
METHODS = ("real", "adl", "oracle_ot", "mean", "zero")


def rest(model, seqs, batch):
    """The pipeline after the imputer: aligner -> fuser -> head."""
    valid = {m: batch.valid[m] for m in seqs}
    al = model.aligner(seqs, valid)
    return model.head(model.fuser(al.seqs, al.valid).rep)


@torch.no_grad()
def diagnose(run_dir: str) -> dict[str, tuple[float, float]]:
    tr = load_run(run_dir)
    model = tr.model.eval()
    imp = model.imputer
    m1, m2, p = imp.present, imp.victim, imp.p
    num = 0
    mean_tok = 0.0
    for b in iterate_batches(tr.data.split("train"), 64):  # mean real victim encoding over train tokens
        z = model.encode(b)[m2]
        v = b.valid[m2].unsqueeze(-1)
        mean_tok = mean_tok + (z * v).sum((0, 1))
        num += int(v.sum())
    mean_tok = mean_tok / num
    err = {k: 0.0 for k in METHODS}
    cos = {k: [] for k in METHODS if k != "real"}
    n = 0
    for b in iterate_batches(tr.data.split("test"), 64):
        enc = model.encode(b)
        z1, z2, v1, v2 = enc[m1], enc[m2], b.valid[m1], b.valid[m2]
        # the imputer itself with every victim missing (any mode: default or reference: authors)
        gone = b.replace(missing={**b.missing, m2: torch.ones_like(b.missing[m2])})
        adl = imp({m1: z1, m2: torch.zeros_like(z2)}, gone).seqs[m2]
        # the same decoder applied to the imputer's own fitting target, computed from the real victim
        w1, w2, wv1, wv2 = imp._square_view(z1, z2, v1, v2) if imp.square else (z1, z2, v1, v2)
        target = imp._targets(w1, w2, wv1, wv2, window_geometry(wv1, wv2, p.window))  # dense
        oracle = decode(target.to(z1.dtype), w1, p.decode)
        oracle = F.pad(oracle, (0, 0, 0, z2.shape[1] - oracle.shape[1])) * v2.unsqueeze(-1)
        fills = {
            "real": z2,
            "adl": adl,
            "oracle_ot": oracle,
            "mean": mean_tok.expand_as(z2) * v2.unsqueeze(-1),
            "zero": torch.zeros_like(z2),
        }
        for k, fill in fills.items():
            pred = rest(model, {m1: z1, m2: fill}, b).reshape(-1)
            err[k] += float((pred - b.labels).abs().sum())
            if k != "real":
                c = torch.nn.functional.cosine_similarity(fill[v2], z2[v2], dim=-1)
                cos[k].append(c)
        n += b.batch_size
    return {k: (err[k] / n, float(torch.cat(cos[k]).mean()) if k in cos else 1.0) for k in METHODS}


def main() -> None:
    runs = sys.argv[1:]
    rows = [diagnose(r) for r in runs]
    print(f"{len(runs)} runs: {', '.join(runs)}")
    print("| victim filled with | test MAE (mean ± std over runs) | cosine to the real victim encoding |")
    print("|---|---|---|")
    for k in METHODS:
        maes = [r[k][0] for r in rows]
        coss = [r[k][1] for r in rows]
        sd = f" ± {statistics.stdev(maes):.4f}" if len(maes) > 1 else ""
        print(f"| {k} | {statistics.mean(maes):.4f}{sd} | {statistics.mean(coss):.3f} |")


if __name__ == "__main__":
    main()
