"""Is data loading the bottleneck? Samples/s of batching + missing protocol vs one model step.

MOSI-sized synthetic data: 1,284 train samples, text 50×768, audio 375×5, vision 500×20,
batch 32. "data" = index-slice batching (``iterate_batches``, shuffled) plus the missing-modality
protocol (temporal 0.3 + instance 0.3); "model" = forward + backward + Adam step of a small model
(per-modality Linear to 64, masked mean pool, Linear to 1). A ratio data/model well above 1
means loading is not the bottleneck.

Run:  python benchmarks/data_bench.py [--epochs 3] [--threads N]
On a shared or small CPU machine, ``--threads 1`` avoids OpenMP oversubscription, which can slow
every small tensor op (both loops) by an order of magnitude.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from mmcore.data.base import iterate_batches  # noqa: E402
from mmcore.data.params import SyntheticParams  # noqa: E402
from mmcore.data.synthetic import SyntheticDataset  # noqa: E402
from mmcore.missing import MissingOp, MissingProtocol  # noqa: E402

from _common import apply_threads, epoch_parser, footer, header  # noqa: E402

MOSI = dict(n_train=1284, n_valid=229, n_test=686, dims={"text": 768, "audio": 5, "vision": 20},
            lengths={"text": 50, "audio": 375, "vision": 500})


class SmallModel(nn.Module):
    def __init__(self, dims: dict[str, int], width: int = 64):
        super().__init__()
        self.proj = nn.ModuleDict({m: nn.Linear(d, width) for m, d in dims.items()})
        self.head = nn.Linear(width * len(dims), 1)

    def forward(self, batch) -> torch.Tensor:
        pooled = []
        for m, lin in self.proj.items():
            h = lin(batch.features[m])  # (B, T_m, 64)
            v = (batch.valid[m] & ~batch.masked[m]).unsqueeze(-1).float()  # (B, T_m, 1)
            pooled.append((h * v).sum(1) / v.sum(1).clamp(min=1.0))  # (B, 64)
        return self.head(torch.cat(pooled, -1)).squeeze(-1)  # (B,)


def main() -> None:
    args = epoch_parser(__doc__, epochs=3).parse_args()
    apply_threads(args.threads)
    print(header("wall"))

    t0 = time.perf_counter()
    ds = SyntheticDataset(SyntheticParams(**MOSI), ["text", "audio", "vision"], seed=0)
    build_s = time.perf_counter() - t0
    train = ds.splits["train"]
    N = len(train)
    proto = MissingProtocol([MissingOp("temporal", 0.3), MissingOp("instance", 0.3)])
    total = sum(len(sp) for sp in ds.splits.values())
    print(f"build MOSI-sized synthetic dataset ({total} samples, all splits): {build_s:.2f} s  "
          f"({total / build_s:,.0f} samples/s)")

    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    keep = []  # a few batches for the model loop; the rest are dropped as a training loop would
    for epoch in range(args.epochs):
        for b in iterate_batches(train, args.batch_size, shuffle=True, generator=g):
            b = proto.apply(b, seed=0, epoch=epoch, split="train")
            if len(keep) < 8:
                keep.append(b)
    data_s = time.perf_counter() - t0
    data_rate = args.epochs * N / data_s
    print(f"data: batching + missing protocol, {args.epochs} epochs × {N} samples: {data_s:.2f} s  "
          f"({data_rate:,.0f} samples/s)")

    model = SmallModel(ds.info.dims)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    steps = args.epochs * -(-N // args.batch_size)
    for b in keep[:3]:  # warm-up
        opt.zero_grad()
        nn.functional.mse_loss(model(b), b.labels).backward()
        opt.step()
    t0 = time.perf_counter()
    seen = 0
    for i in range(steps):  # the same number of steps, cycling over the kept batches
        b = keep[i % len(keep)]
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(b), b.labels)
        loss.backward()
        opt.step()
        seen += b.batch_size
    model_s = time.perf_counter() - t0
    model_rate = seen / model_s
    print(f"model: forward + backward + Adam (Linear→64, mean pool, Linear), {steps} steps: {model_s:.2f} s  "
          f"({model_rate:,.0f} samples/s)")
    print(f"ratio data/model: {data_rate / model_rate:.1f}× (threads: {torch.get_num_threads()})")
    print(footer())


if __name__ == "__main__":
    main()
