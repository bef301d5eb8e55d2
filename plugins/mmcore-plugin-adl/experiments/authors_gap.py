"""How far mmcore's stabilised ADL pieces are from the authors' on the authors' fixtures (mm_align.npz).

Prints, per window case of ``../shared/reference/mm_align.npz``:

* targets: max |balanced row-normalised targets - authors' targets| per pair, inside the l x l block,
  with the balanced solver at the authors' mu = 5 (``reg: 5``) and at mmcore's default mu = 0.1;
* row / column sums of the authors' targets (they are neither);
* fit loss: the authors' ``_criterion_fit`` on the fixture's predictions and targets vs mmcore's
  ``fit_loss: mse`` (window cells, mean over pairs) and ``paper`` (Eq. 13) on the same arrays.

    python plugins/mmcore-plugin-adl/experiments/authors_gap.py
"""

from __future__ import annotations

import warnings

import torch

from mmcore.testing import load_reference
from mmcore_plugin_adl import authors
from mmcore_plugin_adl.losses import fit_loss
from mmcore_plugin_adl.solver import ot_targets
from mmcore_plugin_adl.window import to_dense, to_window, window_geometry


def main() -> None:
    torch.set_num_threads(1)
    R = load_reference("mm_align")
    for case in R.cases("compute_optimal_transport"):
        g, pd, fit = (R.group(f, case) for f in ("compute_optimal_transport", "pairwise_distances", "criterion_fit"))
        lens = torch.from_numpy(g["lengths"].copy())
        L = g["cost"].shape[1]
        v = authors.prefix_mask(lens, L)
        geo = window_geometry(v, v, g.scalar("win_size"))
        theirs = g.tensor("targets")
        m1, m2 = pd.tensor("m1").transpose(0, 1), pd.tensor("m2").transpose(0, 1)
        print(f"case {case} (W = {g.scalar('win_size')}, lengths {lens.tolist()})")
        for reg in (5.0, 0.1):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ours = to_dense(ot_targets(m1, m2, v, geo, reg, max_iter=5000, tol=1e-7), geo, L).double()
            gap = [(ours[b, :n, :n] - theirs[b, :n, :n]).abs().max().item() for b, n in enumerate(lens.tolist())]
            print(f"  balanced targets (reg {reg}) vs authors': max |diff| per pair " + " ".join(f"{x:.3f}" for x in gap))
        n0 = int(lens[0])
        t0 = theirs[0, :n0, :n0]
        print(f"  authors' targets, pair 0: row sums {t0.sum(1).min():.3f}..{t0.sum(1).max():.3f}, "
              f"column sums {t0.sum(0).min():.3f}..{t0.sum(0).max():.3f}")
        preds, truths = fit.tensor("preds"), fit.tensor("truths")
        a = authors.criterion_fit(preds, truths, lens).item()
        win_t = to_window(truths, geo)
        mse = fit_loss(preds, win_t, geo.ok, "mse").item()
        paper = fit_loss(preds, win_t, geo.ok, "paper").item()
        print(f"  fit loss on the fixture: authors {a:.5f}, mmcore mse {mse:.5f} (authors / mse = {a / mse:.2f}), "
              f"paper {paper:.5f}")


if __name__ == "__main__":
    main()
