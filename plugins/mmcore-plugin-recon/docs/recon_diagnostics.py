"""What the trained reconstruction module does on the test split: gate values and reconstruction error.

For each finished cell ``<variant>_r<rate>/seed<k>`` of the sweep (``run_sweep.sh``), rebuild the run with its
selected weights, mask the test split with the run's own eval protocol, and report per modality:

- mean Γ on masked vs observed valid tokens (Γ → 1 keeps the encoder's token, Γ → 0 takes X̂);
- SmoothL1 per element on masked tokens of the read-out W_r X̂ vs two references that need no model:
  the train mean (0 after the loader's standardisation) and the last observed frame before the token.

    python plugins/mmcore-plugin-recon/docs/recon_diagnostics.py runs/mgmr_masking_sweep > plugins/mmcore-plugin-recon/docs/recon_diagnostics.md
"""

from __future__ import annotations

import os
import re
import sys

import torch
import torch.nn.functional as F

from mmcore.train.run import load_run

CELL = re.compile(r"^(?P<variant>recon(?:_alpha0)?)_r(?P<rate>\d\.\d)$")


def last_observed(x: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """(B, T, d): at each t, the features of the latest observed token at or before t (0 if none)."""
    B, T, d = x.shape
    idx = torch.where(observed, torch.arange(T).expand(B, T), torch.full((B, T), -1))
    idx = torch.cummax(idx, dim=1).values  # (B, T) latest observed index so far, -1 if none
    out = x.gather(1, idx.clamp(min=0).unsqueeze(-1).expand(B, T, d))
    return out.masked_fill((idx < 0).unsqueeze(-1), 0.0)


def masked_test_split(run_dir: str):
    """The run rebuilt with its selected weights, and its whole test split masked by the run's own eval protocol."""
    trainer = load_run(run_dir)
    split = trainer.data.split("test")
    batch = split.batch(torch.arange(len(split)))
    return trainer, trainer.eval_protocol.apply(batch, seed=trainer.spec.seed, epoch=None, split="test")


def forward_with_readouts(model, imp, batch):
    """One no-grad forward of ``model``; returns its output and each imputer branch's read-out W_r X̂."""
    raw = {}
    hooks = [b.register_forward_hook(lambda _m, _i, out, m=m: raw.__setitem__(m, out[3]))
             for m, b in imp.branches.items()]
    with torch.no_grad():
        out = model(batch)
    for h in hooks:
        h.remove()
    return out, raw


def finished_cells(sweep_dir: str, cell: re.Pattern):
    """(variant, rate, seed folder, run folder) of every finished cell of the sweep whose variant folder
    matches ``cell`` (groups ``variant`` and ``rate``), rate 0 left out."""
    for variant in sorted(os.listdir(os.path.join(sweep_dir, "cells"))):
        m = cell.match(variant)
        if not m or m["rate"] == "0.0":
            continue
        for seed in sorted(os.listdir(os.path.join(sweep_dir, "cells", variant))):
            run = os.path.join(sweep_dir, "cells", variant, seed)
            if os.path.exists(os.path.join(run, "results.json")):
                yield m["variant"], float(m["rate"]), seed, run


def cell_stats(run_dir: str) -> dict[str, dict[str, float]]:
    trainer, batch = masked_test_split(run_dir)
    model, imp = trainer.model.eval(), trainer.model.imputer
    _, raw = forward_with_readouts(model, imp, batch)
    stats = {}
    for m, gamma in imp.gates().items():
        valid, masked = batch.valid[m], batch.masked[m] & ~batch.missing[m][:, None]
        region, observed = masked & valid, valid & ~batch.masked[m]
        g = gamma.mean(-1)  # (B, T)
        target = batch.clean[m]
        err = lambda pred: F.smooth_l1_loss(pred[region], target[region]).item()  # noqa: E731
        stats[m] = {"gamma_masked": g[region].mean().item(), "gamma_observed": g[observed].mean().item(),
                    "recon": err(raw[m]), "mean": err(torch.zeros_like(target)),
                    "last_observed": err(last_observed(batch.features[m], observed)), "n": int(region.sum())}
    return stats


def main(sweep_dir: str) -> None:
    rows = [(variant, rate, seed, cell_stats(run)) for variant, rate, seed, run in finished_cells(sweep_dir, CELL)]
    mods = sorted({k for *_, s in rows for k in s})
    print("| variant | rate | modality | Γ masked | Γ observed | SmoothL1 W_r X̂ | SmoothL1 train mean | "
          "SmoothL1 last observed |")
    print("|---|---|---|---|---|---|---|---|")
    for variant in ("recon", "recon_alpha0"):
        for rate in sorted({r for v, r, *_ in rows if v == variant}):
            cell = [s for v, r, _, s in rows if v == variant and r == rate]
            for mod in mods:
                avg = {k: sum(c[mod][k] for c in cell) / len(cell) for k in cell[0][mod]}
                print(f"| {variant} | {rate:.1f} | {mod} | {avg['gamma_masked']:.3f} | {avg['gamma_observed']:.3f} | "
                      f"{avg['recon']:.3f} | {avg['mean']:.3f} | {avg['last_observed']:.3f} |")
    print(f"\nMeans over the {len({s for *_, s, _ in rows})} seeds of each cell; test split, the cell's own eval masks.")


if __name__ == "__main__":
    main(sys.argv[1])
