"""Training epochs of shipped recipes at 1 vs N torch threads (the thread policy's measurements, issue 17 P6).

Per recipe: one trainer per thread count, built alike from the recipe's seed; rounds alternate the
order of the sides, each round one training epoch per side (the trainer's own `_train_epoch`, no
evaluation). Printed per side: medians of the wall time and of the process CPU time (every thread of
the process, so spinning OpenMP workers count), the model's parameter count, and the ratio
wall(N threads) / wall(1 thread): above 1 means N threads lose.

    OMP_NUM_THREADS=1 python benchmarks/threads_bench.py examples/baseline.yaml [more.yaml ...] \\
        [--threads 1 2] [--rounds 3] [--set model.d_model=128] [--data synthetic]

Writes nothing into the repository (run folders are temporary); no matplotlib.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from _common import footer, header


def _trainers(path: str, threads: list[int], overrides: list[str], data: str | None, tmp: str):
    from mmcore.data.load import load_dataset
    from mmcore.spec import load_spec
    from mmcore.spec.yaml_source import data_overrides
    from mmcore.train.trainer import Trainer

    over = list(overrides) + (data_overrides(data) if data else [])
    out = {}
    for n in threads:
        rs = load_spec(path, overrides=over + [f"train.num_threads={n}"])
        ds = load_dataset(rs)
        out[n] = Trainer.for_training(rs, ds, f"{tmp}/{n}", progress=False)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("specs", nargs="+", help="recipes (YAML)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts to compare (default 1 2)")
    ap.add_argument("--rounds", type=int, default=3, help="epochs per side (default 3)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="spec override for every recipe")
    ap.add_argument("--data", help="data for every recipe (a file or a dataset name, as `mmcore run --data`)")
    args = ap.parse_args()
    print(header("wall (perf_counter) and process CPU (process_time, all threads)"))
    base = args.threads[0]
    print(f"| recipe | params | " + " | ".join(f"{n} thr wall / CPU s" for n in args.threads)
          + " | " + " | ".join(f"wall {n}/{base}" for n in args.threads[1:]) + " |")
    print("|---|---:|" + "---:|" * (2 * len(args.threads) - 1))
    for path in args.specs:
        with tempfile.TemporaryDirectory() as tmp:
            trainers = _trainers(path, args.threads, args.set, args.data, tmp)
            params = sum(p.numel() for p in trainers[base].model.parameters())
            wall = {n: [] for n in args.threads}
            cpu = {n: [] for n in args.threads}
            for r in range(args.rounds):
                order = args.threads if r % 2 == 0 else args.threads[::-1]
                for n in order:
                    tr = trainers[n]
                    torch.set_num_threads(n)
                    w0, c0 = time.perf_counter(), time.process_time()
                    tr._train_epoch(r, tr.phases[0])
                    wall[n].append(time.perf_counter() - w0)
                    cpu[n].append(time.process_time() - c0)
        med_w = {n: statistics.median(v) for n, v in wall.items()}
        med_c = {n: statistics.median(v) for n, v in cpu.items()}
        print(f"| {path} {' '.join(args.set)} | {params:,} | "
              + " | ".join(f"{med_w[n]:.3f} / {med_c[n]:.3f}" for n in args.threads) + " | "
              + " | ".join(f"{med_w[n] / med_w[base]:.2f}x" for n in args.threads[1:]) + " |", flush=True)
    print(footer())


if __name__ == "__main__":
    main()
