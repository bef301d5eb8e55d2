"""Seconds per training epoch of a core-only pipeline on MOSI-shaped synthetic data.

1,284 training samples shaped like CMU-MOSI (unaligned): text 50×768, audio 375×5, vision 500×20,
with the built-in MulT-style cross-modal fuser; also the time spent building + collating batches
alone, so the data share of an epoch is visible. Target (issue 4): well under a minute on 2 cores.

    python benchmarks/epoch_bench.py [--epochs 2] [--d-model 32] [--threads N]
"""

from __future__ import annotations

import time

import torch

from mmcore.data.base import iterate_batches
from mmcore.missing import MissingOp, MissingProtocol
from mmcore.spec import spec_from_dict

from _common import apply_threads, epoch_parser, footer, header


def main() -> None:
    ap = epoch_parser(__doc__, epochs=2)
    ap.add_argument("--d-model", type=int, default=32)
    args = ap.parse_args()
    apply_threads(args.threads)
    print(header("wall"))
    spec = {
        "modalities": {"text": {}, "audio": {}, "vision": {}}, "model": {"d_model": args.d_model, "dropout": 0.1},
        "encoders": {"default": {"name": "conv1d"}}, "fuser": {"name": "mult", "params": {"layers": 1, "self_layers": 1}},
        "head": {"name": "regression_mlp"},
        "data": {"name": "synthetic", "params": {"n_train": 1284, "n_valid": 229, "n_test": 686,
                                                 "dims": {"text": 768, "audio": 5, "vision": 20},
                                                 "lengths": {"text": 50, "audio": 375, "vision": 500}}},
        "missing": {"train": [{"type": "temporal", "rate": 0.1}], "eval": []},
        "train": {"epochs": args.epochs, "batch_size": args.batch_size},
    }
    rs = spec_from_dict(spec)
    from mmcore.data.load import load_dataset
    from mmcore.train.trainer import Trainer

    t0 = time.perf_counter()
    data = load_dataset(rs)
    t_build = time.perf_counter() - t0
    split = data.split("train")
    proto = MissingProtocol([MissingOp("temporal", 0.1)])
    t0 = time.perf_counter()
    n = 0
    for b in iterate_batches(split, args.batch_size, shuffle=True, generator=torch.Generator().manual_seed(0)):
        n += proto.apply(b, seed=0, epoch=0, split="train").batch_size
    t_data = time.perf_counter() - t0

    import tempfile

    with tempfile.TemporaryDirectory() as d:
        trainer = Trainer.for_training(rs, data, d, progress=False)
        times = []
        for epoch in range(args.epochs):
            t0 = time.perf_counter()
            trainer._train_epoch(epoch, trainer.phases[0])
            times.append(time.perf_counter() - t0)
    med = sorted(times)[len(times) // 2]
    print(f"dataset build (train+valid+test): {t_build:.2f} s")
    print(f"batching + missing protocol only, one epoch of {n} samples: {t_data:.2f} s ({n / t_data:.0f} samples/s)")
    print(f"training epoch (MulT fuser, d_model={args.d_model}): " + ", ".join(f"{t:.1f} s" for t in times)
          + f" (median {med:.1f} s; {n / med:.0f} samples/s)")
    print(f"data share of an epoch: {t_data / med:.1%}")
    print(footer())


if __name__ == "__main__":
    main()
