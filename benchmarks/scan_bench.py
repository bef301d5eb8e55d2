"""Selective scan and Mamba block speed on CPU: every backend vs the sequential reference, and vs attention.

Part 1 - the scan alone (B=1, D=128, N=16, with D-skip, z gate, delta bias and softplus as the block
uses it) at L = 1024, 4096: forward and forward+backward of each backend against the sequential
reference of the tests (``tests/_reference.py``, one autograd step per time step). The loop of
mamba-ssm's ``selective_scan_ref`` (indexing ``x[:, :, i]``; same values, O(L^2) backward) is timed
at L = 1024 only, unless ``--slow-ref`` (it takes minutes at L = 4096).
Part 2 - one MambaBlock(d_model=128) (E=256, N=16) forward+backward per backend against one
nn.TransformerEncoderLayer(d_model=128, nhead=8, batch_first=True, dropout=0.0), B=1, and the size of
the tensors each keeps for its backward pass. dropout=0 lets SDPA take its fused (flash) CPU kernel,
the strongest attention baseline: with the default dropout=0.1 it falls back to the math kernel,
~5x slower at L=4096 with quadratic memory.

    python benchmarks/scan_bench.py [--repeats 3] [--threads N] [--clock wall|thread]
                                    [--block-lengths 1024 4096 6400 25600] [--slow-ref]

Times are medians over ``--repeats`` runs after one warm-up run (the indexing loop: one cold run).
``--clock thread`` (with ``--threads 1``) measures the CPU time of the one computing thread instead of
wall time: on a machine shared with other jobs it leaves out the time the thread waits for a core.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins/mmcore-plugin-mamba"), str(ROOT / "plugins/mmcore-plugin-mamba/tests")]

from _reference import selective_scan_reference  # noqa: E402

from mmcore_plugin_mamba import _cpu_kernel  # noqa: E402
from mmcore_plugin_mamba.block import MambaBlock  # noqa: E402
from mmcore_plugin_mamba.scan import selective_scan  # noqa: E402


def indexed_loop_reference(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, backend=None):
    """The loop of mamba-ssm's ``selective_scan_ref``: per-step indexing, whose backward is O(L^2)."""
    delta = F.softplus(delta + delta_bias[:, None]) if delta_softplus else delta
    dA = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))
    dBu = torch.einsum("bdl,bnl,bdl->bdln", delta, B, u)
    h, ys = u.new_zeros(u.shape[0], u.shape[1], A.shape[1]), []
    for i in range(u.shape[2]):
        h = dA[:, :, i] * h + dBu[:, :, i]
        ys.append(torch.einsum("bdn,bn->bd", h, C[:, :, i]))
    return (torch.stack(ys, dim=2) + u * D[:, None]) * F.silu(z)


CLOCK = time.perf_counter  # or time.thread_time with --clock thread


def median_seconds(fn, repeats: int, warmup: bool = True) -> float:
    if warmup:  # also the kernel's first load
        fn()
    times = []
    for _ in range(repeats):
        t0 = CLOCK()
        fn()
        times.append(CLOCK() - t0)
    return statistics.median(times)


def saved_mib(fn) -> float:
    """MiB of distinct tensor storage that autograd keeps for the backward pass of fn()."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values()) / 2**20


def scan_inputs(L: int, dim: int = 128, N: int = 16) -> dict:
    g = torch.Generator().manual_seed(0)
    t = {"u": torch.randn(1, dim, L, generator=g), "delta": torch.randn(1, dim, L, generator=g) - 2,
         "A": -torch.arange(1, N + 1.0).repeat(dim, 1), "B": torch.randn(1, N, L, generator=g),
         "C": torch.randn(1, N, L, generator=g), "D": torch.ones(dim), "z": torch.randn(1, dim, L, generator=g),
         "delta_bias": torch.zeros(dim)}
    return {k: v.requires_grad_() for k, v in t.items()}


def fwd_bwd(fn, inputs, **kw):
    def run():
        for v in inputs.values():
            v.grad = None
        fn(**inputs, delta_softplus=True, **kw).sum().backward()
    return run


def fwd_only(fn, inputs, **kw):
    def run():
        with torch.no_grad():
            fn(**inputs, delta_softplus=True, **kw)
    return run


def scan_table(args, backends) -> None:
    print("\n## Selective scan, B=1 D=128 N=16 (ms; ratio = sequential reference / row)")
    print("| L | implementation | fwd | fwd+bwd | fwd ratio | fwd+bwd ratio |")
    print("|---|---|---|---|---|---|")
    for L in (1024, 4096):
        x = scan_inputs(L)
        rows = [("sequential reference (tests)", selective_scan_reference, {})]
        if L <= 1024 or args.slow_ref:
            rows.append(("selective_scan_ref loop (indexing)", indexed_loop_reference, {}))
        rows += [(f"backend {b}", selective_scan, {"backend": b}) for b in backends]
        ref_f = ref_fb = None
        for name, fn, kw in rows:
            slow = fn is indexed_loop_reference  # one cold run: minutes at L = 4096
            tf = median_seconds(fwd_only(fn, x, **kw), 1 if slow else args.repeats, warmup=not slow)
            tfb = median_seconds(fwd_bwd(fn, x, **kw), 1 if slow else args.repeats, warmup=not slow)
            ref_f, ref_fb = ref_f or tf, ref_fb or tfb
            print(f"| {L} | {name} | {tf * 1e3:.1f} | {tfb * 1e3:.1f} | {ref_f / tf:.1f}x | {ref_fb / tfb:.1f}x |", flush=True)


def block_table(args, backends) -> None:
    print("\n## One block forward+backward at d_model=128, B=1 (s; ratio = Transformer layer / row)")
    names = ["TransformerEncoderLayer"] + [f"MambaBlock {b}" for b in backends]
    print("| L | " + " | ".join(names) + " | " + " | ".join(f"ratio {b}" for b in backends)
          + " | saved MiB: " + " / ".join(names) + " |")
    print("|---" * (2 + 2 * len(backends) + 1) + "|")
    torch.manual_seed(0)
    layers = [nn.TransformerEncoderLayer(128, args.nhead, batch_first=True, dropout=0.0)]
    layers += [MambaBlock(128, backend=b) for b in backends]
    for L in args.block_lengths:
        x = torch.randn(1, L, 128, requires_grad=True)
        times, mibs = [], []
        for layer in layers:
            def run(layer=layer):
                x.grad = None
                layer.zero_grad(set_to_none=True)
                layer(x).sum().backward()
            times.append(median_seconds(run, args.repeats))
            mibs.append(saved_mib(lambda layer=layer: layer(x)))
        ratios = " | ".join(f"{times[0] / t:.1f}x" for t in times[1:])
        print(f"| {L} | " + " | ".join(f"{t:.3f}" for t in times) + f" | {ratios} | "
              + " / ".join(f"{m:.0f}" for m in mibs) + " |", flush=True)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--nhead", type=int, default=8, help="heads of the Transformer layer")
    ap.add_argument("--block-lengths", type=int, nargs="+", default=[1024, 4096, 6400, 25600])
    ap.add_argument("--slow-ref", action="store_true", help="also time the indexing reference at L = 4096")
    ap.add_argument("--clock", choices=["wall", "thread"], default="wall",
                    help="thread: CPU time of the calling thread (needs --threads 1)")
    ap.add_argument("--skip-scan", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.clock == "thread":
        if torch.get_num_threads() != 1:
            ap.error("--clock thread measures one thread: add --threads 1")
        global CLOCK
        CLOCK = time.thread_time
    build = _cpu_kernel.load_kernel()
    backends = ["torch"] + (["cpu_kernel"] if build.lib is not None else [])
    mamba = importlib.util.find_spec("mamba_ssm") is not None
    print(f"# scan_bench: torch {torch.__version__}, Python {platform.python_version()}, mamba-ssm "
          f"{'installed (not used: CPU tensors)' if mamba else 'not installed'}")
    print(f"# device: {cpu_name()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
          f"ISA {torch.backends.cpu.get_cpu_capability()}; load average {os.getloadavg()[0]:.1f} at start")
    kernel = (f"compiled in {build.compile_seconds:.1f} s" if build.compile_seconds else "loaded from cache") \
        if build.lib is not None else f"unavailable ({build.error})"
    print(f"# cpu_kernel: {kernel}; medians of {args.repeats} runs after a warm-up; clock: "
          + ("CPU time of the computing thread" if args.clock == "thread" else "wall"))
    if not args.skip_scan:
        scan_table(args, backends)
    block_table(args, backends)
    print(f"\n# load average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
