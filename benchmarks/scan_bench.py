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

Times are medians over ``--repeats`` rounds after one warm-up run (the indexing loop: one cold run);
within a round the sides run one after the other (interleaved), so a change in machine load hits
every side alike. ``--clock thread`` (with ``--threads 1``) measures the CPU time of the one computing
thread instead of wall time: on a machine shared with other jobs it leaves out the time the thread
waits for a core. ``--peak`` adds each block's peak memory: a fresh child process per (layer, L)
runs one warm-up pass, resets the high-water mark (``5 > /proc/self/clear_refs``) and reports
``VmHWM`` after one more forward+backward minus the resident set before it (Linux only).
Nothing is written to disk; matplotlib is not used.

Goals of issue 17 (printed ratios): P2 - ``backend torch`` >= 20x the sequential reference fwd+bwd at
L = 4096; P1 - ``MambaBlock cpu_kernel`` >= 40x the Transformer layer at L = 25600 with peak memory
<= the Transformer layer's.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import subprocess
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


def interleaved_medians(fns, repeats: int, warmup: bool = True) -> list[float]:
    """Median seconds of each fn, timed in ``repeats`` rounds that run every fn once (interleaved)."""
    if warmup:
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = CLOCK()
            fn()
            times[i].append(CLOCK() - t0)
    return [statistics.median(t) for t in times]


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
        slow = [r for r in rows if r[1] is indexed_loop_reference]  # one cold run: minutes at L = 4096
        fast = [r for r in rows if r[1] is not indexed_loop_reference]
        tf = interleaved_medians([fwd_only(fn, x, **kw) for _, fn, kw in fast], args.repeats)
        tfb = interleaved_medians([fwd_bwd(fn, x, **kw) for _, fn, kw in fast], args.repeats)
        results = {name: (a, b) for (name, _, _), a, b in zip(fast, tf, tfb)}
        for name, fn, kw in slow:
            results[name] = (median_seconds(fwd_only(fn, x, **kw), 1, warmup=False),
                             median_seconds(fwd_bwd(fn, x, **kw), 1, warmup=False))
        ref_f, ref_fb = results[rows[0][0]]
        for name, _, _ in rows:
            f, fb = results[name]
            print(f"| {L} | {name} | {f * 1e3:.1f} | {fb * 1e3:.1f} | {ref_f / f:.1f}x | {ref_fb / fb:.1f}x |", flush=True)


def make_layer(name: str, nhead: int) -> nn.Module:
    torch.manual_seed(0)
    if name == "transformer":
        return nn.TransformerEncoderLayer(128, nhead, batch_first=True, dropout=0.0)
    return MambaBlock(128, backend=name)


def peak_mib(name: str, L: int, nhead: int) -> float:
    """Peak resident memory (MiB) of one forward+backward of a fresh layer, in a child process."""
    code = ("import sys; sys.argv = ['scan_bench', '--peak-child', %r, '%d', '--nhead', '%d', '--threads', '1']; "
            "import runpy; runpy.run_path(%r, run_name='__main__')" % (name, L, nhead, __file__))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _status_mib(key: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":")) / 1024


def peak_child(name: str, L: int, nhead: int) -> None:
    layer = make_layer(name, nhead)
    x = torch.randn(1, L, 128, requires_grad=True)
    layer(x).sum().backward()  # warm-up: kernel load, allocator pools
    x.grad = None
    layer.zero_grad(set_to_none=True)
    base = _status_mib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    layer(x).sum().backward()
    print(f"{_status_mib('VmHWM') - base:.1f}")


def block_table(args, backends) -> None:
    print("\n## One block forward+backward at d_model=128, B=1 (s; ratio = Transformer layer / row)")
    names = ["TransformerEncoderLayer"] + [f"MambaBlock {b}" for b in backends]
    mem = " | peak MiB: " + " / ".join(names) if args.peak else ""
    print("| L | " + " | ".join(names) + " | " + " | ".join(f"ratio {b}" for b in backends)
          + " | saved MiB: " + " / ".join(names) + mem + " |")
    print("|---" * (2 + 2 * len(backends) + 1 + bool(args.peak)) + "|")
    keys = ["transformer"] + list(backends)
    layers = [make_layer(k, args.nhead) for k in keys]
    for L in args.block_lengths:
        x = torch.randn(1, L, 128, requires_grad=True)
        runs = []
        for layer in layers:
            def run(layer=layer):
                x.grad = None
                layer.zero_grad(set_to_none=True)
                layer(x).sum().backward()
            runs.append(run)
        times = interleaved_medians(runs, args.repeats)
        mibs = [saved_mib(lambda layer=layer: layer(x)) for layer in layers]
        ratios = " | ".join(f"{times[0] / t:.1f}x" for t in times[1:])
        peaks = (" | " + " / ".join(f"{peak_mib(k, L, args.nhead):.0f}" for k in keys)) if args.peak else ""
        print(f"| {L} | " + " | ".join(f"{t:.3f}" for t in times) + f" | {ratios} | "
              + " / ".join(f"{m:.0f}" for m in mibs) + peaks + " |", flush=True)


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
    ap.add_argument("--peak", action="store_true", help="also measure each block's peak memory (child processes)")
    ap.add_argument("--peak-child", nargs=2, metavar=("LAYER", "L"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.peak_child:
        peak_child(args.peak_child[0], int(args.peak_child[1]), args.nhead)
        return
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
    print(f"\n# load average {os.getloadavg()[0]:.1f} at end; torch threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
