"""Speed of ``order_ot`` against the ``sinkhorn`` aligner: forward + backward, CPU, one thread.

Both aligners run with their default params on the same random features (the anchor "text"
and one other modality), the loss is a fixed random projection of the aligned output, and the
timed call is ``forward`` + ``backward``. Timings are CPU time of this thread (``time.thread_time``,
so other processes on a shared machine add little), the two sides interleaved call by call, medians
over ``--repeats`` after one warm-up each; the load average is printed because a loaded machine
still slows both (caches, memory bandwidth). Goal (issue 20): order_ot <= 2x sinkhorn.

    OMP_NUM_THREADS=1 python plugins/mmcore-plugin-ot/benchmarks/bench_order_ot.py
    OMP_NUM_THREADS=1 python plugins/mmcore-plugin-ot/benchmarks/bench_order_ot.py --repeats 21
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
import warnings

import torch

from mmcore.protocols import BuildContext, ModalityInfo
from mmcore.registry import get_registry

SIZES = [(32, 50, 375, 32), (32, 12, 30, 16)]  # (B, T_a, T_m, d): MOSI-like (50 words, 375 audio frames); the lab's


def build(name: str, d: int):
    entry = get_registry().get("aligner", name)
    ctx = BuildContext(modalities={m: ModalityInfo(m, d, 0) for m in ("text", "audio")}, d_model=d)
    return entry.load()(entry.params(anchor="text"), ctx)


def problem(B: int, T_a: int, T_m: int, d: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    xa, xm = torch.randn(B, T_a, d, generator=g), torch.randn(B, T_m, d, generator=g)
    la = torch.randint(T_a // 2, T_a + 1, (B,), generator=g)
    lm = torch.randint(T_m // 2, T_m + 1, (B,), generator=g)
    la[0], lm[0] = T_a, T_m
    va, vm = torch.arange(T_a)[None] < la[:, None], torch.arange(T_m)[None] < lm[:, None]
    w = torch.randn(B, T_a, d, generator=g)
    return xa, xm, va, vm, w


def step(al, xa, xm, va, vm, w) -> float:
    """CPU seconds of one forward + backward."""
    a, m = xa.clone().requires_grad_(), xm.clone().requires_grad_()
    t0 = time.thread_time()
    out = al({"text": a, "audio": m}, {"text": va, "audio": vm}).seqs["audio"]
    (out * w).sum().backward()
    return time.thread_time() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=11)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print("$ OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "unset") + " python "
          + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, load average (1, 5, 15 min) "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("| B | T_a | T_m | d | sinkhorn ms | order_ot ms | ratio |")
    print("|---|---|---|---|---|---|---|")
    warnings.simplefilter("ignore")  # a ConvergenceWarning of sinkhorn on random features does not change its cost
    for B, T_a, T_m, d in SIZES:
        prob = problem(B, T_a, T_m, d)
        sides = {n: build(n, d) for n in ("sinkhorn", "order_ot")}
        times = {n: [] for n in sides}
        for n, al in sides.items():
            step(al, *prob)  # warm-up
        for _ in range(args.repeats):
            for n, al in sides.items():  # interleaved: a load change hits both sides alike
                times[n].append(step(al, *prob))
        s, o = (1e3 * statistics.median(times[n]) for n in ("sinkhorn", "order_ot"))
        print(f"| {B} | {T_a} | {T_m} | {d} | {s:.1f} | {o:.1f} | {o / s:.2f} |")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
