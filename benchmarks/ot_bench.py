"""Benchmark the OT plugin's kernels against POT, side by side in one run.

1. Batched log-domain Sinkhorn (``mmcore_plugin_ot.sinkhorn.sinkhorn_plan``) on B = 32 pairs of
   50 x 500 cosine costs (in [0, 2], AlignMamba Eq. 3) against a Python loop over POT's
   ``ot.sinkhorn(..., method="sinkhorn_log")``: same problem, same reg, same stopping rule (column
   marginal L2 error < tol, checked every 10 iterations), plans compared entry by entry.
2. Multi-marginal Sinkhorn for DecAlign's prototype alignment: K = 7 Gaussian prototypes in each of
   3 modalities, cost = sum of pairwise squared Bures–Wasserstein distances (DecAlign Eq. 5–6).

Run from the repository root (no install needed):

    python benchmarks/ot_bench.py              # CPU (and CUDA when available)
    OMP_NUM_THREADS=1 python benchmarks/ot_bench.py --repeats 11 --threads 1
    python benchmarks/ot_bench.py --repeats 11 --threads 1 --thread-counts 1 2   # + 1 vs 2 threads

Timings are medians over ``--repeats`` rounds after one warm-up; each round runs every side once
(interleaved), so a change in machine load hits the POT loop and ours alike. With one torch thread the
clock is the CPU time of the computing thread (``time.thread_time``, immune to being descheduled on a
shared machine), otherwise wall time; ``--clock`` overrides. On CPU the Sinkhorn table's last column
times ``sinkhorn_plan`` with its compiled passes switched off (``_cpu_sinkhorn.ENABLED``: validation,
kernel, iterations and plan), i.e. torch's ops and two mat-vecs per iteration. ``--thread-counts`` times
``sinkhorn_plan`` at each torch thread count, interleaved in one process, on the wall clock (CPU time
would miss the other threads' work). The load average is printed too. Targets (issue 17, P3): Sinkhorn
>= 50x faster than the POT loop at 1 thread with plans equal to 1e-5 (float64), never slower at 2
threads than at 1; multi-marginal < 5 ms per batch on CPU.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import ot
import torch

try:
    import mmcore_plugin_ot  # noqa: F401  (installed distribution)
except ImportError:  # running from a checkout: use the plugin's source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "mmcore-plugin-ot"))

from mmcore_plugin_ot import _cpu_sinkhorn  # noqa: E402
from mmcore_plugin_ot.gaussian import bures_wasserstein_squared_diag  # noqa: E402
from mmcore_plugin_ot.multimarginal import multimarginal_sinkhorn_plan  # noqa: E402
from mmcore_plugin_ot.sinkhorn import ConvergenceWarning, sinkhorn_plan  # noqa: E402

from _common import footer, header  # noqa: E402

B, N, M, D = 32, 50, 500, 64  # pairs, source length, target length, feature size
REG = 0.05
K, N_MODALITIES, D_PROTO = 7, 3, 16
MM_REG, MM_TOL = 0.05, 1e-6


CLOCK = time.perf_counter  # time.thread_time with one torch thread (see main)


def interleaved_ms(fns, repeats: int, sync=lambda: None) -> list[float]:
    """Median milliseconds of each fn over ``repeats`` rounds that run every fn once, after a warm-up."""
    for fn in fns:
        fn()
    sync()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for t, fn in zip(times, fns):
            t0 = CLOCK()
            fn()
            sync()
            t.append(CLOCK() - t0)
    return [1e3 * statistics.median(t) for t in times]


def median_ms(fn, repeats: int, sync=lambda: None) -> float:
    return interleaved_ms([fn], repeats, sync)[0]


def cosine_problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((B, N, D)), rng.standard_normal((B, M, D))
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    y /= np.linalg.norm(y, axis=-1, keepdims=True)
    cost = 1.0 - x @ y.transpose(0, 2, 1)  # (B, N, M) in [0, 2]
    return np.full((B, N), 1.0 / N), np.full((B, M), 1.0 / M), cost


def pot_loop(a, b, cost, tol, method="sinkhorn_log"):
    plans, iters = [], []
    for i in range(B):
        plan, log = ot.sinkhorn(a[i], b[i], cost[i], REG, method=method, stopThr=tol, log=True)
        plans.append(plan)
        iters.append(log["niter"] + 1)
    return np.stack(plans), max(iters)


def sinkhorn_rows(device: str, repeats: int) -> list[str]:
    a, b, cost = cosine_problem()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    rows = []
    for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 1e-6)):
        pot_plans, pot_iters = pot_loop(a, b, cost, tol)  # POT runs on the CPU in float64 whatever the device
        at, bt, ct = (torch.as_tensor(v, dtype=dtype, device=device) for v in (a, b, cost))
        res = sinkhorn_plan(at, bt, ct, REG, tol=tol)
        diff = float(np.abs(res.plan.double().cpu().numpy() - pot_plans).max())
        cg = ct.clone().requires_grad_(True)

        def fwd_bwd():
            sinkhorn_plan(at, bt, cg, REG, tol=tol).plan.sum().backward()

        def torch_loop():  # the same solve with torch's ops instead of the compiled passes
            _cpu_sinkhorn.ENABLED = False
            try:
                sinkhorn_plan(at, bt, ct, REG, tol=tol)
            finally:
                _cpu_sinkhorn.ENABLED = True

        compiled = device == "cpu" and _cpu_sinkhorn.load().lib is not None
        pot_ms, knopp_ms, ms, ms_bwd, *torch_ms = interleaved_ms(
            [lambda: pot_loop(a, b, cost, tol), lambda: pot_loop(a, b, cost, tol, "sinkhorn"),
             lambda: sinkhorn_plan(at, bt, ct, REG, tol=tol), fwd_bwd] + ([torch_loop] if compiled else []),
            repeats, sync)
        torch_cell = f"{torch_ms[0]:.2f} ({pot_ms / torch_ms[0]:.1f}x)" if torch_ms else "(same)"
        rows.append(
            f"| sinkhorn_plan | {device} | {str(dtype)[6:]} | {tol:.0e} | {ms:.2f} | {pot_ms:.0f} | "
            f"**{pot_ms / ms:.1f}x** | {res.n_iter} / {pot_iters} | {diff:.1e} | "
            f"{knopp_ms:.1f} ({knopp_ms / ms:.1f}x) | {torch_cell} |"
        )
        ms = ms_bwd
        rows.append(
            f"| + backward | {device} | {str(dtype)[6:]} | {tol:.0e} | {ms:.1f} | {pot_ms:.0f} | "
            f"{pot_ms / ms:.1f}x | {res.n_iter} / {pot_iters} | (POT: no gradient) | | |"
        )
    return rows


def thread_rows(counts: list[int], repeats: int) -> list[str]:
    """sinkhorn_plan (CPU) at each torch thread count, interleaved round by round, wall clock."""
    a, b, cost = cosine_problem()
    before = torch.get_num_threads()
    rows = []
    for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 1e-6)):
        at, bt, ct = (torch.as_tensor(v, dtype=dtype) for v in (a, b, cost))
        times: list[list[float]] = [[] for _ in counts]
        for r in range(repeats + 1):  # round 0 warms every thread count up
            for t, k in zip(times, counts):
                torch.set_num_threads(k)
                t0 = time.perf_counter()
                sinkhorn_plan(at, bt, ct, REG, tol=tol)
                if r:
                    t.append(time.perf_counter() - t0)
        ms = [1e3 * statistics.median(t) for t in times]
        cells = " | ".join(f"{x:.2f}" for x in ms)
        ratios = " | ".join(f"{ms[0] / x:.2f}x" for x in ms[1:])
        rows.append(f"| {str(dtype)[6:]} | {cells} | {ratios} |")
    torch.set_num_threads(before)
    return rows


def gmm_cost(batch: int, seed: int = 0) -> torch.Tensor:
    """(batch, K, K, K) DecAlign cost: Σ_{i<j} W₂²(N(μ_i^{k_i}, diag s_i^{k_i}), N(μ_j^{k_j}, ...)), scaled to max 1."""
    gen = torch.Generator().manual_seed(seed)
    means = torch.randn(batch, N_MODALITIES, K, D_PROTO, generator=gen, dtype=torch.float64)
    var = torch.rand(batch, N_MODALITIES, K, D_PROTO, generator=gen, dtype=torch.float64) + 0.1
    cost = torch.zeros(batch, K, K, K, dtype=torch.float64)
    for i in range(N_MODALITIES):
        for j in range(i + 1, N_MODALITIES):
            pair = bures_wasserstein_squared_diag(
                means[:, i, :, None], var[:, i, :, None], means[:, j, None], var[:, j, None]
            )  # (batch, K, K)
            shape = [batch, 1, 1, 1]
            shape[1 + i], shape[1 + j] = K, K
            cost = cost + pair.reshape(shape)
    return cost / cost.amax(dim=(1, 2, 3), keepdim=True)


def multimarginal_rows(device: str, repeats: int) -> list[str]:
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    rows = []
    for batch in (1, 32):
        for dtype in (torch.float32, torch.float64):
            cost = gmm_cost(batch).to(device=device, dtype=dtype)
            nus = torch.full((batch, N_MODALITIES, K), 1.0 / K, dtype=dtype, device=device)
            res = multimarginal_sinkhorn_plan(nus, cost, MM_REG, tol=MM_TOL)
            ms = median_ms(lambda: multimarginal_sinkhorn_plan(nus, cost, MM_REG, tol=MM_TOL), repeats, sync)
            cg = cost.clone().requires_grad_(True)

            def fwd_bwd():
                multimarginal_sinkhorn_plan(nus, cg, MM_REG, tol=MM_TOL).plan.sum().backward()

            ms_bwd = median_ms(fwd_bwd, repeats, sync)
            rows.append(
                f"| {batch} | {device} | {str(dtype)[6:]} | {ms:.2f} | {ms_bwd:.2f} | {res.n_iter} "
                f"| {float(res.err.max()):.1e} |"
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15,
                        help="timed rounds, each running every side once (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--clock", choices=["thread", "wall"], default=None,
                        help="thread: CPU time of the computing thread (needs 1 torch thread); "
                        "default: thread with 1 torch thread, else wall")
    parser.add_argument("--thread-counts", type=int, nargs="+", default=None, metavar="K",
                        help="also time sinkhorn_plan at these torch thread counts (wall clock), e.g. 1 2")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = args.clock or ("thread" if torch.get_num_threads() == 1 else "wall")
    if clock == "thread" and torch.get_num_threads() != 1:
        parser.error("--clock thread measures one thread: add --threads 1")
    global CLOCK
    CLOCK = time.thread_time if clock == "thread" else time.perf_counter
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    gpu = f", CUDA: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", CUDA: none"
    print(header("CPU time of the computing thread (thread_time)" if clock == "thread" else "wall (perf_counter)"))
    print(f"POT {ot.__version__}, numpy {np.__version__}, Python {platform.python_version()}{gpu}\n")
    # a non-converged run on either side would make the comparison meaningless
    warnings.filterwarnings("error", category=ConvergenceWarning)
    warnings.filterwarnings("error", message="Sinkhorn did not converge")

    print(f"Sinkhorn: B={B} pairs of {N}x{M}, cosine cost in [0, 2], reg={REG}, uniform marginals, check every 10;"
          f" POT: a loop of ot.sinkhorn(method='sinkhorn_log') (next-to-last column: method='sinkhorn', Sinkhorn-Knopp in"
          f" the kernel domain, unstable at small reg; last: ours with torch's ops and mat-vecs instead of the"
          f" compiled passes); sides interleaved, medians of {args.repeats}")
    print(
        "| kernel | device | dtype | tol | ms (median) | POT loop ms | speed-up | iters ours / POT "
        "| max abs plan diff vs POT | POT kernel-domain loop ms (speed-up) | ours, torch mat-vecs ms (speed-up) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for device in devices:
        for row in sinkhorn_rows(device, args.repeats):
            print(row, flush=True)

    if args.thread_counts:
        counts = args.thread_counts
        print(f"\nsinkhorn_plan (cpu) at torch threads {counts}, interleaved, wall clock, medians of {args.repeats}")
        print("| dtype | " + " | ".join(f"{k} thr ms" for k in counts) + " | "
              + " | ".join(f"{k} thr speed-up vs {counts[0]}" for k in counts[1:]) + " |")
        print("|---|" + "---|" * (2 * len(counts) - 1))
        for row in thread_rows(counts, args.repeats):
            print(row, flush=True)

    print(
        f"\nMulti-marginal: {N_MODALITIES} marginals x K={K} GMM prototypes (d={D_PROTO}), "
        f"BW² cost scaled to [0, 1], reg={MM_REG}, tol={MM_TOL:.0e}"
    )
    print("| problems per call | device | dtype | forward ms | forward+backward ms | sweeps | max marginal err |")
    print("|---|---|---|---|---|---|---|")
    for device in devices:
        for row in multimarginal_rows(device, args.repeats):
            print(row, flush=True)
    print("\n" + footer())


if __name__ == "__main__":
    main()
