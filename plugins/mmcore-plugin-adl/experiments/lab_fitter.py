"""Is the ADL fitter under-trained, or is the plan not predictable from the present modality?

For a trained ``adl`` run on the synthetic dataset: freeze the encoders, compute the OT targets of
every train and test pair (the run's own solver), and train copies of the run's fitter alone on the
train targets (Adam, lr 2e-3, ``--steps`` batches of 64, losses ``paper`` = Eq. 13 and ``kl``).
Prints, on train and on test, the fit loss (Eq. 13) of the fitter, of the uniform window, and the share
of each source row's mass that lands on victim frames of the same word (truth: the generator's
alignment) for the fitter and for the OT target. If more fitting lowers the train loss but not the
test loss, the fitter is at the limit of what the present modality predicts about the plan.

    python plugins/mmcore-plugin-adl/experiments/lab_fitter.py RUN_DIR [--steps 900]
"""

from __future__ import annotations

import argparse
import copy

import torch

from mmcore.data.base import iterate_batches
from mmcore.train.run import load_run
from mmcore_plugin_adl.losses import fit_loss
from mmcore_plugin_adl.window import to_dense, to_window, window_geometry

torch.set_num_threads(1)


@torch.no_grad()
def _prep(model, imp, ds, split):
    out, p = [], imp.p
    for b in iterate_batches(ds.split(split), 64):
        enc = model.encode(b)
        z1, z2, v1, v2 = enc[imp.present], enc[imp.victim], b.valid[imp.present], b.valid[imp.victim]
        geo = window_geometry(v1, v2, p.window)
        tgt = to_window(imp._targets(z1, z2, v1, v2, geo), geo)
        seg1 = ds.meta[split][f"segment_{imp.present}"][b.index]
        seg2 = ds.meta[split][f"segment_{imp.victim}"][b.index]
        truth = ((seg1.unsqueeze(2) == seg2.unsqueeze(1)) & (seg1.unsqueeze(2) >= 0)).float()
        out.append((z1, v1, geo, tgt, truth, seg1 >= 0))
    return out


@torch.no_grad()
def _evaluate(fitter, data):
    fit = unif = 0.0
    n, mass, tmass = 0, [], []
    for z1, v1, geo, tgt, truth, has in data:
        rows = fitter(z1, v1, geo)
        u = geo.ok.float() / geo.ok.float().sum(-1, keepdim=True).clamp_min(1)
        fit += float(fit_loss(rows, tgt, geo.ok, "paper")) * len(z1)
        unif += float(fit_loss(u, tgt, geo.ok, "paper")) * len(z1)
        n += len(z1)
        mass.append((to_dense(rows, geo, truth.shape[2]) * truth).sum(-1)[has])
        tmass.append((to_dense(tgt, geo, truth.shape[2]) * truth).sum(-1)[has])
    return (f"fit {fit / n:.5f} (uniform window {unif / n:.5f}), same-word mass: fitter "
            f"{float(torch.cat(mass).mean()):.3f}, OT target {float(torch.cat(tmass).mean()):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run")
    ap.add_argument("--steps", type=int, default=900)
    a = ap.parse_args()
    torch.manual_seed(0)
    tr = load_run(a.run)
    model, ds = tr.model.eval(), tr.data
    imp = model.imputer
    trn, tst = _prep(model, imp, ds, "train"), _prep(model, imp, ds, "test")
    print(f"{a.run}\ntrained fitter: train {_evaluate(imp.fitter, trn)}\n                test  {_evaluate(imp.fitter, tst)}")
    for kind in ("paper", "kl"):
        f = copy.deepcopy(imp.fitter).train()
        opt = torch.optim.Adam(f.parameters(), lr=2e-3)
        for s in range(a.steps):
            z1, v1, geo, tgt, _, _ = trn[s % len(trn)]
            loss = fit_loss(f(z1, v1, geo), tgt, geo.ok, kind)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if (s + 1) % (a.steps // 3) == 0:
                f.eval()
                print(f"+{s + 1} steps ({kind}): train {_evaluate(f, trn)}\n{'':>22}test  {_evaluate(f, tst)}")
                f.train()


if __name__ == "__main__":
    main()
