"""Fusion efficiency (AlignMamba §4.3, Fig. 3/4): the interleaved Mamba fuser vs single- and multi-stream
Transformers, forward+backward time and memory against the interleaved length, and FLOPs at 1024.

Models (same width d_model and depth, B = 1, three streams audio/vision/text whose lengths sum to L):

- ``mamba``: the ``interleaved_mamba`` fuser (time-priority interleaving of the three streams into one
  sequence of L tokens, ``depth`` pre-norm residual Mamba blocks, d_state 16, expand 2, mean pool),
  scan backend ``auto`` (the C++ kernel on CPU, mamba-ssm on CUDA). ``mamba_torch``: the same with the
  pure-torch chunked scan.
- ``single``: a single-stream Transformer over the concatenated sequence [a; v; l] (L tokens):
  ``depth`` x ``nn.TransformerEncoderLayer(d, 8 heads, ff 4d, dropout=0, norm_first)``, mean pool.
  dropout=0 and no mask let ``scaled_dot_product_attention`` take its fused (flash) kernel, on CPU too,
  which keeps only O(L) activations: the strongest attention baseline. ``single_math``: the same with
  SDPA forced onto its math kernel (the O(L^2) attention matrix is materialised and kept for backward;
  run only up to ``--math-max-length``).
- ``multi``: the core's ``mult`` fuser (MulT-style multi-stream: cross-modal attention from every
  source stream into every target stream, 6 pairs for 3 streams, ``layers=depth``, ``self_layers=0``,
  8 heads, last-token pool). Its ``nn.MultiheadAttention`` calls also reach SDPA's fused kernel.

Time: per pass = one forward and backward of ``rep.sum()``, after one warm-up pass, median over the
timed passes. The paper aggregates 50 passes on a GPU; on CPU the long lengths take tens of seconds a
pass, so ``--passes`` (default 3 on CPU, 50 on CUDA) is capped to fit ``--max-seconds`` per
configuration (at least 1 timed pass), and the table reports seconds per pass and that number x 50.
``--clock thread`` (with ``--threads 1``) times the CPU time of the one computing thread, which
leaves out the time it waits for a core on a shared machine.

Memory on CPU, two measures, each configuration in its own subprocess:
``saved`` = MiB of distinct tensor storage autograd keeps for the backward pass (counted through
``torch.autograd.graph.saved_tensors_hooks``; the activation memory that grows with L; deterministic);
``rss`` = peak resident set during the passes minus the resident set just before them (the peak is
reset by writing 5 to ``/proc/self/clear_refs`` and read from ``VmHWM`` in ``/proc/self/status``;
includes transient workspaces, gradients and allocator slack; noisier). On CUDA:
``torch.cuda.max_memory_allocated`` minus the allocation before the passes.

FLOPs: forward pass at L = 1024, counted by ``torch.utils.flop_counter.FlopCounterMode`` (matmuls,
convolutions, attention). The selective scan is not an op it knows (a C++/CUDA kernel or elementwise
torch ops), so its analytic count is added: 9·B·L·E·N + 2·B·E·L per block (state update, readout, D
skip and z gate; the count VMamba's ``flops_selective_scan_fn`` uses). FlopCounterMode does not count
CPU's fused flash-attention op in this torch, so attention FLOPs are counted with SDPA on its math
kernel (the same arithmetic: QK^T and PV).

    python benchmarks/fusion_efficiency.py --threads 1 --clock thread
        [--lengths 1024 2048 4096 6400 12800 25600] [--d-model 128] [--depth 2] [--passes 3]
        [--max-seconds 150] [--models mamba mamba_torch single single_math multi]
        [--plot plugins/mmcore-plugin-mamba/docs/fusion_efficiency.png] [--json out.json] [--device cpu|cuda]

Writes nothing unless asked: ``--plot PATH`` draws the figure (needs matplotlib; the README's figure is
``plugins/mmcore-plugin-mamba/docs/fusion_efficiency.png``), ``--json PATH`` saves the rows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("mamba", "mamba_torch", "single", "single_math", "multi")
LABELS = {"mamba": "interleaved Mamba (cpu_kernel/cuda)", "mamba_torch": "interleaved Mamba (torch scan)",
          "single": "single-stream Transformer (SDPA fused)", "single_math": "single-stream Transformer (SDPA math)",
          "multi": "multi-stream cross-modal Transformer (mult)"}
STREAMS = ("audio", "vision", "text")


def stream_lengths(L: int) -> list[int]:
    """Three stream lengths that sum to L (differ by at most one)."""
    return [L // 3 + (1 if i < L % 3 else 0) for i in range(3)]


def build(model: str, L: int, d: int, depth: int, device: str):
    """(module, inputs) where module(*inputs) returns the (B, d') representation."""
    import torch
    from torch import nn

    from mmcore.protocols import BuildContext, ModalityInfo

    g = torch.Generator().manual_seed(0)
    lens = stream_lengths(L)
    seqs = {m: torch.randn(1, T, d, generator=g).to(device).requires_grad_() for m, T in zip(STREAMS, lens)}
    valid = {m: torch.ones(1, T, dtype=torch.bool, device=device) for m, T in zip(STREAMS, lens)}
    ctx = BuildContext(modalities={m: ModalityInfo(m, d, T) for m, T in zip(STREAMS, lens)}, d_model=d)
    torch.manual_seed(0)
    if model in ("mamba", "mamba_torch"):
        from mmcore_plugin_mamba.interleaved_mamba import InterleavedMambaFuser
        from mmcore_plugin_mamba.params import InterleavedMambaParams

        params = InterleavedMambaParams(depth=depth, backend="auto" if model == "mamba" else "torch")
        fuser = InterleavedMambaFuser(params, ctx)
        return fuser.to(device), (lambda: fuser(seqs, valid).rep)
    if model == "multi":
        from mmcore.builtins.fusers import MulTFuser
        from mmcore.builtins.params import MulTParams

        fuser = MulTFuser(MulTParams(layers=depth, self_layers=0, heads=8, pool="last"), ctx)
        return fuser.to(device), (lambda: fuser(seqs, valid).rep)
    layer = nn.TransformerEncoderLayer(d, 8, 4 * d, dropout=0.0, batch_first=True, norm_first=True)
    enc = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False).to(device)

    def run():
        x = torch.cat([seqs[m] for m in STREAMS], 1)  # (1, L, d): [a; v; l]
        if model == "single_math":
            from torch.nn.attention import SDPBackend, sdpa_kernel

            with sdpa_kernel(SDPBackend.MATH):
                return enc(x).mean(1)
        return enc(x).mean(1)

    return enc, run


def scan_flops(model, L: int) -> int:
    """Analytic selective-scan FLOPs of one forward: 9·B·L·E·N + 2·B·E·L per Mamba block (B = 1)."""
    from mmcore_plugin_mamba.block import MambaBlock

    return sum(9 * L * m.d_inner * m.d_state + 2 * m.d_inner * L for m in model.modules() if isinstance(m, MambaBlock))


def count_flops(model_name: str, L: int, d: int, depth: int) -> dict:
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    module, run = build(model_name, L, d, depth, "cpu")
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        run()
    counted = counter.get_total_flops()
    scan = scan_flops(module, L) if model_name.startswith("mamba") else 0
    return {"counted": counted, "scan": scan, "total": counted + scan}


def _status_mib(key: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith(key + ":"))


def reset_peak_rss() -> float:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0) and return the current RSS in MiB."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_mib("VmRSS")


def saved_mib(run) -> float:
    import torch

    storages = {}

    def pack(t):
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = run()
    out.sum().backward()
    return sum(storages.values()) / 2**20


def child(args) -> dict:
    """One (model, L) measurement in this process (called through a subprocess)."""
    import torch

    torch.set_num_threads(args.threads)
    model, L = args.child[0], int(args.child[1])
    cuda = args.device == "cuda"
    clock = time.thread_time if args.clock == "thread" else time.perf_counter
    module, run = build(model, L, args.d_model, args.depth, args.device)

    def step():
        module.zero_grad(set_to_none=True)
        run().sum().backward()
        if cuda:
            torch.cuda.synchronize()

    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    base_rss = None if cuda else reset_peak_rss()
    t0 = time.perf_counter()
    step()  # warm-up (also the kernel's first load)
    warm = time.perf_counter() - t0
    passes = max(1, min(args.passes, int(args.max_seconds / max(warm, 1e-9))))
    times, walls = [], []
    for _ in range(passes):
        c0, w0 = clock(), time.perf_counter()
        step()
        times.append(clock() - c0)
        walls.append(time.perf_counter() - w0)
    out = {"model": model, "L": L, "passes": passes, "per_pass_s": statistics.median(times),
           "wall_per_pass_s": statistics.median(walls), "warmup_wall_s": warm}
    if cuda:
        out["peak_mib"] = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        out["rss_peak_mib"] = _status_mib("VmHWM") - base_rss
        module.zero_grad(set_to_none=True)
        out["saved_mib"] = saved_mib(run)
    return out


def measure(args, model: str, L: int) -> dict:
    cmd = [sys.executable, __file__, "--child", model, str(L), "--d-model", str(args.d_model), "--depth",
           str(args.depth), "--passes", str(args.passes), "--max-seconds", str(args.max_seconds), "--threads",
           str(args.threads), "--clock", args.clock, "--device", args.device]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        return {"model": model, "L": L, "error": (r.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def fmt(x, spec=".3g") -> str:
    return "—" if x is None else format(x, spec)


def plot(rows: list[dict], models: list[str], path: Path, args, mem_key: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    for m in models:
        pts = [r for r in rows if r["model"] == m and "error" not in r and "skipped" not in r]
        if not pts:
            continue
        Ls = [r["L"] for r in pts]
        ax_t.plot(Ls, [r["per_pass_s"] for r in pts], "o-", label=LABELS[m])
        ax_m.plot(Ls, [r[mem_key] for r in pts], "o-", label=LABELS[m])
    for ax, title, ylabel in ((ax_t, "forward+backward time per pass", "seconds"),
                              (ax_m, "memory kept for backward" if mem_key == "saved_mib" else "peak memory", "MiB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("interleaved length L (tokens)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    ax_t.legend(fontsize=7)
    fig.suptitle(f"d_model {args.d_model}, depth {args.depth}, B=1, {args.device}, {args.threads} thread(s), "
                 f"torch {__import__('torch').__version__}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096, 6400, 12800, 25600])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--passes", type=int, default=None, help="timed passes (default 3 on CPU, 50 on CUDA)")
    p.add_argument("--max-seconds", type=float, default=150.0, help="cap on the timed passes of one configuration")
    p.add_argument("--math-max-length", type=int, default=4096, help="single_math only up to this L (O(L^2) memory)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", choices=["wall", "thread"], default="wall")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--plot", type=Path, default=None, help="draw the figure into this PNG (needs matplotlib)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    args.passes = args.passes or (50 if args.device == "cuda" else 3)
    if args.child:
        print(json.dumps(child(args)))
        return
    import torch

    if args.clock == "thread" and args.threads != 1:
        p.error("--clock thread measures one thread's CPU time: use it with --threads 1")
    print(f"# fusion_efficiency: torch {torch.__version__}, Python {platform.python_version()}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, threads {args.threads}, "
          f"device {args.device}, clock {args.clock}; load average {os.getloadavg()[0]:.1f} at start")
    print(f"# d_model {args.d_model}, depth {args.depth}, B=1, passes {args.passes} "
          f"(capped to {args.max_seconds:.0f} s per configuration) after one warm-up")
    flops = {m: count_flops(m, 1024, args.d_model, args.depth) for m in args.models}
    print("\n## Forward FLOPs at L = 1024 (G; scan = analytic selective-scan FLOPs added to FlopCounterMode's count)")
    print("| model | counted | + scan | total | vs interleaved Mamba |")
    print("|---|---|---|---|---|")
    for m in args.models:
        f = flops[m]
        ratio = f["total"] / flops["mamba"]["total"] if "mamba" in flops else None
        print(f"| {LABELS[m]} | {f['counted'] / 1e9:.2f} | {f['scan'] / 1e9:.2f} | {f['total'] / 1e9:.2f} | "
              f"{fmt(ratio, '.2f')}x |")
    rows = []
    for L in args.lengths:
        for m in args.models:
            if m == "single_math" and L > args.math_max_length:
                rows.append({"model": m, "L": L, "skipped": f"L > --math-max-length {args.math_max_length}"})
                continue
            r = measure(args, m, L)
            rows.append(r)
            print(f"# {m} L={L}: {r}", file=sys.stderr, flush=True)
    mem_key = "peak_mib" if args.device == "cuda" else "saved_mib"
    print("\n## Forward+backward per pass (s; x50 = per pass x 50, the paper's aggregate) and memory (MiB)")
    mem_cols = "peak alloc" if args.device == "cuda" else "saved for bwd | peak RSS delta"
    print(f"| L | model | passes | s/pass | x50 (s) | {mem_cols} | time / Mamba | memory / Mamba |")
    print("|---|---|---|---|---|---|" + ("" if args.device == "cuda" else "---|") + "---|---|")
    for L in args.lengths:
        base = next((r for r in rows if r["L"] == L and r["model"] == "mamba" and "per_pass_s" in r), None)
        for r in (r for r in rows if r["L"] == L):
            label = LABELS[r["model"]]
            if "per_pass_s" not in r:
                why = r.get("skipped") or r.get("error")
                print(f"| {L} | {label} | — | {why} |")
                continue
            mem = fmt(r.get(mem_key), ".0f")
            if args.device != "cuda":
                mem += f" | {fmt(r.get('rss_peak_mib'), '.0f')}"
            tr = r["per_pass_s"] / base["per_pass_s"] if base else None
            mr = r[mem_key] / base[mem_key] if base else None
            print(f"| {L} | {label} | {r['passes']} | {r['per_pass_s']:.3f} | {r['per_pass_s'] * 50:.1f} | {mem} | "
                  f"{fmt(tr, '.2f')}x | {fmt(mr, '.2f')}x |")
    def per_pass(model: str, L: int) -> float | None:
        return next((r["per_pass_s"] for r in rows if r["model"] == model and r["L"] == L and "per_pass_s" in r), None)

    for other in ("single", "multi"):
        pairs = [(L, per_pass("mamba", L), per_pass(other, L)) for L in args.lengths]
        faster = [L for L, mine, theirs in pairs if mine is not None and theirs is not None and mine < theirs]
        if other in args.models and "mamba" in args.models:
            print(f"# interleaved Mamba faster than {other} at L = {faster or 'none'} of the measured lengths")
    if args.plot:
        plot(rows, args.models, args.plot, args, mem_key)
        print(f"\n# plot: {args.plot}")
    print(f"# load average {os.getloadavg()[0]:.1f} at end")
    if args.json:
        meta = {k: str(v) for k, v in vars(args).items()}
        args.json.write_text(json.dumps({"flops": flops, "rows": rows, "args": meta}, indent=1))


if __name__ == "__main__":
    main()
