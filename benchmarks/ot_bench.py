"""Benchmark the OT plugin's kernels against POT, side by side in one run.

1. Batched log-domain Sinkhorn (``mmcore_plugin_ot.sinkhorn.sinkhorn_plan``) on B = 32 pairs of
   50 x 500 cosine costs (in [0, 2], AlignMamba Eq. 3) against a Python loop over POT's
   ``ot.sinkhorn(..., method="sinkhorn_log")``: same problem, same reg, same stopping rule (column
   marginal L2 error < tol, checked every 10 iterations), plans compared entry by entry.
2. Multi-marginal Sinkhorn for DecAlign's prototype alignment: K = 7 Gaussian prototypes in each of
   3 modalities, cost = sum of pairwise squared Bures–Wasserstein distances (DecAlign Eq. 5–6).

Run from the repository root (no install needed):

    python benchmarks/ot_bench.py              # CPU (and CUDA when available)
    python benchmarks/ot_bench.py --repeats 21 --threads 1

Timings are medians over ``--repeats`` runs after one warm-up; the machine may be shared, so the
load average is printed too. Targets: Sinkhorn >= 20x faster than the POT loop with plans equal to
1e-5 (float64), multi-marginal < 5 ms per batch on CPU.
"""

from __future__ import annotations

import argparse
import os
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

from mmcore_plugin_ot.gaussian import bures_wasserstein_squared_diag  # noqa: E402
from mmcore_plugin_ot.multimarginal import multimarginal_sinkhorn_plan  # noqa: E402
from mmcore_plugin_ot.sinkhorn import ConvergenceWarning, sinkhorn_plan  # noqa: E402

B, N, M, D = 32, 50, 500, 64  # pairs, source length, target length, feature size
REG = 0.05
K, N_MODALITIES, D_PROTO = 7, 3, 16
MM_REG, MM_TOL = 0.05, 1e-6


def median_ms(fn, repeats: int, sync=lambda: None) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def cosine_problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((B, N, D)), rng.standard_normal((B, M, D))
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    y /= np.linalg.norm(y, axis=-1, keepdims=True)
    cost = 1.0 - x @ y.transpose(0, 2, 1)  # (B, N, M) in [0, 2]
    return np.full((B, N), 1.0 / N), np.full((B, M), 1.0 / M), cost


def pot_loop(a, b, cost, tol):
    plans, iters = [], []
    for i in range(B):
        plan, log = ot.sinkhorn(a[i], b[i], cost[i], REG, method="sinkhorn_log", stopThr=tol, log=True)
        plans.append(plan)
        iters.append(log["niter"] + 1)
    return np.stack(plans), max(iters)


def sinkhorn_rows(device: str, repeats: int, pot_cache: dict) -> list[str]:
    a, b, cost = cosine_problem()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    rows = []
    for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 1e-6)):
        if tol not in pot_cache:  # POT runs on the CPU in float64 whatever the device
            plans, iters = pot_loop(a, b, cost, tol)
            ms = median_ms(lambda: pot_loop(a, b, cost, tol), max(3, repeats // 4))
            pot_cache[tol] = (plans, iters, ms)
        pot_plans, pot_iters, pot_ms = pot_cache[tol]
        at, bt, ct = (torch.as_tensor(v, dtype=dtype, device=device) for v in (a, b, cost))
        res = sinkhorn_plan(at, bt, ct, REG, tol=tol)
        diff = float(np.abs(res.plan.double().cpu().numpy() - pot_plans).max())
        ms = median_ms(lambda: sinkhorn_plan(at, bt, ct, REG, tol=tol), repeats, sync)
        rows.append(
            f"| sinkhorn_plan | {device} | {str(dtype)[6:]} | {tol:.0e} | {ms:.1f} | {pot_ms:.0f} | "
            f"**{pot_ms / ms:.1f}x** | {res.n_iter} / {pot_iters} | {diff:.1e} |"
        )
        cg = ct.clone().requires_grad_(True)

        def fwd_bwd():
            sinkhorn_plan(at, bt, cg, REG, tol=tol).plan.sum().backward()

        ms = median_ms(fwd_bwd, repeats, sync)
        rows.append(
            f"| + backward | {device} | {str(dtype)[6:]} | {tol:.0e} | {ms:.1f} | {pot_ms:.0f} | "
            f"{pot_ms / ms:.1f}x | {res.n_iter} / {pot_iters} | (POT: no gradient) |"
        )
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
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per row (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    gpu = f", CUDA: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", CUDA: none"
    print(
        f"torch {torch.__version__}, POT {ot.__version__}, numpy {np.__version__}, Python {platform.python_version()}\n"
        f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
        f"{torch.get_num_threads()}{gpu}; load average before: {os.getloadavg()[0]:.2f}\n"
    )
    # a non-converged run on either side would make the comparison meaningless
    warnings.filterwarnings("error", category=ConvergenceWarning)
    warnings.filterwarnings("error", message="Sinkhorn did not converge")

    print(f"Sinkhorn: B={B} pairs of {N}x{M}, cosine cost in [0, 2], reg={REG}, uniform marginals, check every 10")
    print(
        "| kernel | device | dtype | tol | ms (median) | POT loop ms | speed-up | iters ours / POT "
        "| max abs plan diff vs POT |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    pot_cache: dict = {}
    for device in devices:
        for row in sinkhorn_rows(device, args.repeats, pot_cache):
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
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
