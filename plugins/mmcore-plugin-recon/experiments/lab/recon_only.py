"""Can the reconstruction module learn to reconstruct at all? Train ONLY its loss (no task) and watch it converge.

Builds the lab recipe's model (``examples/lab/mgmr_recon.yaml``, masking rate 0.6 unless overridden), then runs
Adam (lr 3e-3, batch 64) on the ``recon`` aux loss alone — as if α were infinite — for STEPS steps, printing
every 10 epochs the per-element SmoothL1 of the read-out W_r X̂ on the masked tokens of the test split (the
seed-0 eval masks, the same as the ``recon_r0.6/seed0`` cell of ``sweep.sh``). Compare with the references of
``diagnose.py`` (train mean, causal same-word copy, two-sided same-word copy): if the module reaches the causal
copy, its loss, targets and gradient path are sound and what limits it in the joint runs is the training signal.

    OMP_NUM_THREADS=1 .venv-test/bin/python plugins/mmcore-plugin-recon/experiments/lab/recon_only.py 1600
    OMP_NUM_THREADS=1 .venv-test/bin/python plugins/mmcore-plugin-recon/experiments/lab/recon_only.py 1600 imputer.params.bidirectional=true
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

from mmcore.data.base import iterate_batches
from mmcore.data.load import load_dataset
from mmcore.spec import load_spec
from mmcore.train.trainer import Trainer


def masked_error(model, batch) -> dict[str, float]:
    imp, raw = model.imputer, {}
    hooks = [b.register_forward_hook(lambda _m, _i, out, m=m: raw.__setitem__(m, out[3])) for m, b in imp.branches.items()]
    model.eval()
    with torch.no_grad():
        model(batch)
    model.train()
    for h in hooks:
        h.remove()
    region = {m: batch.masked[m] & batch.valid[m] for m in raw}
    return {m: round(F.smooth_l1_loss(raw[m][region[m]], batch.clean[m][region[m]]).item(), 3) for m in raw}


def main(steps: int, overrides: list[str]) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rs = load_spec("examples/lab/mgmr_recon.yaml", overrides=overrides + ["output_dir=/tmp/lab/runs/recon_only"])
    data = load_dataset(rs)
    tr = Trainer.for_training(rs, data, "/tmp/lab/runs/recon_only/run", progress=False)
    model = tr.model
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    test = data.split("test")
    tb = tr.eval_protocol.apply(test.batch(torch.arange(len(test))), seed=rs.spec.seed, epoch=None, split="test")
    k = epoch = 0
    while k < steps:
        for batch in iterate_batches(data.split("train"), 64, shuffle=True, generator=torch.Generator().manual_seed(epoch)):
            batch = tr.train_protocol.apply(batch, seed=rs.spec.seed, epoch=epoch, split="train")
            loss = model(batch).aux["recon"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            k += 1
        epoch += 1
        if epoch % 10 == 0:
            print(f"epoch {epoch} step {k}: train recon {loss.item():.4f}; test masked SmoothL1 {masked_error(model, tb)}",
                  flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2:])
