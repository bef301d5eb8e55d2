"""Upper bound for any intra-modal reconstruction on the lab data: an oracle that fills each masked audio/vision
frame with the mean of the OBSERVED frames of the same word (true word boundaries from the generator).

On the synthetic data a frame is (word code + event pattern + noise) of its word, and words are drawn
independently, so the same-word copy is (up to noise) the best any reconstruction from the same modality can
do; where every frame of a word is masked there is nothing in that modality to copy from and the frame stays
zero. Text tokens stay masked (one token per word: nothing intra-modal to copy). If this oracle does not
improve MAE over the same pipeline without it, no intra-modal reconstruction can.

Runs, per rate and seed, the recipe with ``imputer: null`` (the zero imputer would zero the filled tokens
again), with and without the oracle fill (train, valid and test batches alike), in-process, one at a time:

    OMP_NUM_THREADS=1 .venv-test/bin/python plugins/mmcore-plugin-recon/experiments/lab/oracle_fill.py OUT --rates 0.6,0.9 --seeds 5 \
        [--set data.params.data_seed=1 ...]

Writes OUT/<fill|nofill>_r<rate>/seed<k>/ (normal run directories) and prints a table of test MAE.
"""

from __future__ import annotations

import argparse
import json
import math
import os

import torch

from mmcore.batch import Batch
from mmcore.data.load import load_dataset
from mmcore.missing import MissingProtocol
from mmcore.spec import load_spec
from mmcore.train.trainer import Trainer

RECIPE = "examples/lab/mgmr_recon.yaml"


def same_word_fill(batch: Batch, truth: dict[str, torch.Tensor]) -> Batch:
    """Fill masked audio/vision frames with the mean of the observed frames of their word (if any)."""
    feats = dict(batch.features)
    for m in ("audio", "vision"):
        if m not in feats:
            continue
        word = truth[m][batch.index.cpu()].to(feats[m].device)  # (B, T)
        observed = batch.valid[m] & ~batch.masked[m]
        same = (word[:, :, None] == word[:, None, :]) & (word[:, :, None] >= 0) & observed[:, None, :]
        n = same.sum(-1, keepdim=True)
        fill = (same.to(feats[m].dtype) @ feats[m]) / n.clamp(min=1)
        put = batch.masked[m] & batch.valid[m] & (n[..., 0] > 0)
        feats[m] = torch.where(put[..., None], fill, feats[m])
    return batch.replace(features=feats)


def run_cell(out: str, fill: bool, rate: float, seed: int, extra: list[str]) -> float:
    run_dir = os.path.join(out, f"{'fill' if fill else 'nofill'}_r{rate}", f"seed{seed}")
    res_path = os.path.join(run_dir, "results.json")
    if os.path.exists(res_path):
        return json.load(open(res_path))["test"]["mae"]
    miss = f"{{train: [{{type: temporal, rate: {rate}}}], eval: [{{type: temporal, rate: {rate}}}]}}"
    rs = load_spec(RECIPE, overrides=[f"missing={miss}", "imputer=null", f"seed={seed}", f"output_dir={out}"] + extra)
    data = load_dataset(rs)
    truth = {s: data.alignment_truth(s) for s in ("train", "valid", "test")}
    original = MissingProtocol.apply

    def apply(self, batch, *, seed, epoch, split):
        b = original(self, batch, seed=seed, epoch=epoch, split=split)
        return same_word_fill(b, truth[split]) if fill else b

    MissingProtocol.apply = apply
    try:
        os.makedirs(run_dir, exist_ok=True)
        res = Trainer.for_training(rs, data, run_dir, progress=False).fit()
    finally:
        MissingProtocol.apply = original
    json.dump(res, open(res_path, "w"), default=float)
    return res["test"]["mae"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--rates", default="0.6,0.9")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--set", action="append", default=[])
    a = ap.parse_args()
    torch.set_num_threads(1)
    rates = [float(r) for r in a.rates.split(",")]
    res = {}
    for rate in rates:
        for seed in range(a.seeds):
            for fill in (False, True):
                res[(fill, rate, seed)] = run_cell(a.out, fill, rate, seed, a.set)
                print(f"{'fill' if fill else 'nofill'} r={rate} seed {seed}: test mae {res[(fill, rate, seed)]:.4f}",
                      flush=True)
    print("\n| r | MAE no fill (imputer null) | MAE oracle same-word fill | Δ (> 0: fill better), seeds better |")
    print("|---|---|---|---|")
    for rate in rates:
        a0 = [res[(False, rate, s)] for s in range(a.seeds)]
        a1 = [res[(True, rate, s)] for s in range(a.seeds)]
        d = sum(a0) / len(a0) - sum(a1) / len(a1)
        print(f"| {rate:.1f} | {_ms(a0)} | {_ms(a1)} | {d:+.3f} ({sum(x > y for x, y in zip(a0, a1))}/{a.seeds}) |")


def _ms(xs: list[float]) -> str:
    mu = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - mu) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else float("nan")
    return f"{mu:.3f} ± {sd:.3f}"


if __name__ == "__main__":
    main()
