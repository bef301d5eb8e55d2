"""Top-1 alignment accuracy of the OT aligners on untrained, directly comparable features (issue 20).

Generator (per clip): an anchor of n ~ U{6..12} word tokens; a second modality of m ~ U{24..60}
frames spread over the words by a random monotone warp (word j covers frames [b_j, b_{j+1}),
b_j = j + floor((m - n) (j/n)^gamma), gamma = exp(warp * z), z ~ N(0, 1), so every word has >= 1
frame); anchor token j = the word's code c_{k_j}; frame t of word j = c_{k_j} + noise * xi,
codes and xi ~ N(0, I_d). "distinct words": every token of a clip has its own code; "12-word
vocabulary": k_j ~ U{0..11}, so words repeat within a clip. No training: each aligner's plan is
computed on these features as they are, and scored by ``mmcore.alignment.plan_scores`` (top-1 =
the argmax of each anchor row lies in the word's true frame span; the proportional and uniform
columns are that module's reference plans).

    python plugins/mmcore-plugin-ot/experiments/order_alignment.py            # the table (seed 0)
    python plugins/mmcore-plugin-ot/experiments/order_alignment.py --sweep    # order_ot over reg x order
"""

from __future__ import annotations

import argparse
import shlex
import sys
import warnings

import torch

from mmcore.alignment import plan_scores
from mmcore.protocols import BuildContext, ModalityInfo
from mmcore.registry import get_registry

SETTINGS = [("distinct words", "distinct", 0.5), ("distinct words", "distinct", 1.0),
            ("12-word vocabulary", "vocab12", 0.5), ("12-word vocabulary", "vocab12", 1.0)]


def make_batch(kind: str, noise: float, *, N: int, d: int, warp: float, seed: int):
    """Clips of one setting: (xa (N, 12, d), va, xm (N, 60, d), vm, words_a (N, 12), words_m (N, 60))."""
    g = torch.Generator().manual_seed(seed)
    T_a, T_m = 12, 60
    n = torch.randint(6, T_a + 1, (N,), generator=g)
    m = torch.randint(24, T_m + 1, (N,), generator=g)
    va = torch.arange(T_a)[None] < n[:, None]
    vm = torch.arange(T_m)[None] < m[:, None]
    if kind == "distinct":
        codes = torch.randn(N, T_a, d, generator=g)  # (N, T_a, d): a fresh code per token
    else:
        vocab = torch.randn(12, d, generator=g)
        codes = vocab[torch.randint(0, 12, (N, T_a), generator=g)]  # (N, T_a, d): words repeat
    gamma = torch.exp(warp * torch.randn(N, generator=g))
    j = torch.arange(T_a + 1)
    u = (j[None].float() / n[:, None].float()).clamp(max=1.0) ** gamma[:, None]  # (N, T_a + 1)
    b = j[None] + torch.floor((m - n)[:, None].float() * u).long()
    b = torch.where(j[None] <= n[:, None], b, torch.full_like(b, 1 << 40))  # boundaries
    t = torch.arange(T_m)
    word = torch.searchsorted(b, t[None].expand(N, T_m).contiguous(), right=True) - 1  # (N, T_m)
    word = torch.where(vm, word, torch.full_like(word, -1))
    xm = torch.gather(codes, 1, word.clamp_min(0)[..., None].expand(N, T_m, d))
    xm = (xm + noise * torch.randn(N, T_m, d, generator=g)) * vm[..., None]
    xa = codes * va[..., None]
    words_a = torch.where(va, torch.arange(T_a)[None].expand(N, T_a), torch.full((N, T_a), -1))
    return xa, va, xm, vm, words_a, word


def aligner(name: str, d: int, **params):
    entry = get_registry().get("aligner", name)
    ctx = BuildContext(modalities={m: ModalityInfo(m, d, 0) for m in ("text", "audio")}, d_model=d)
    return entry.load()(entry.params(anchor="text", **params), ctx)


def top1(al, batch) -> dict[str, float]:
    xa, va, xm, vm, wa, wm = batch
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sinkhorn's ConvergenceWarning does not change the argmax much
        al({"text": xa, "audio": xm}, {"text": va, "audio": vm})
    s = plan_scores(al.alignment_plans()["audio"], wa, wm, va, vm)
    return {k: s[k] / s["tokens"] for k in ("top1", "proportional_top1", "uniform_top1")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=512, help="clips per setting")
    ap.add_argument("--d", type=int, default=8, help="feature size")
    ap.add_argument("--warp", type=float, default=0.25, help="std of log gamma (d and warp chosen so that the other "
                    "columns come near the issue's table)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reg", type=float, default=None, help="order_ot reg (default: its params default)")
    ap.add_argument("--order", type=float, default=None, help="order_ot order (default: its params default)")
    ap.add_argument("--sweep", action="store_true", help="order_ot top-1 over reg x order instead of the table")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print("$ python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]))
    batches = [make_batch(k, s, N=args.clips, d=args.d, warp=args.warp, seed=args.seed + 7 * i)
               for i, (_, k, s) in enumerate(SETTINGS)]
    if args.sweep:
        regs, orders = (0.03, 0.1, 0.3), (0.0, 1.0, 3.0, 10.0, 30.0)
        print("| setting | reg | " + " | ".join(f"order {o:g}" for o in orders) + " |")
        print("|---|---|" + "---|" * len(orders))
        for (label, _, s), batch in zip(SETTINGS, batches):
            for r in regs:
                row = [top1(aligner("order_ot", args.d, reg=r, order=o), batch)["top1"] for o in orders]
                print(f"| {label}, noise {s:g} | {r:g} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
        return 0
    ours = {k: v for k, v in (("reg", args.reg), ("order", args.order)) if v is not None}
    columns = [("relaxed_ot", "relaxed_ot", {}), ("sinkhorn", "sinkhorn", {}),
               ("sinkhorn, window 2", "sinkhorn", {"window": 2}), ("order_ot", "order_ot", ours)]
    print(f"clips per setting: {args.clips}, d = {args.d}, warp = {args.warp}, seed = {args.seed}; "
          f"order_ot: order = {ours.get('order', 'default')}, reg = {ours.get('reg', 'default')}")
    print("| setting | relaxed_ot | sinkhorn | sinkhorn, window 2 | proportional (diagonal) prior | uniform | order_ot |")
    print("|---|---|---|---|---|---|---|")
    for (label, _, s), batch in zip(SETTINGS, batches):
        got = {c: top1(aligner(name, args.d, **p), batch) for c, name, p in columns}
        ref = got["relaxed_ot"]
        cells = [got[c]["top1"] for c in ("relaxed_ot", "sinkhorn", "sinkhorn, window 2")]
        cells += [ref["proportional_top1"], ref["uniform_top1"], got["order_ot"]["top1"]]
        print(f"| {label}, noise {s:g} | " + " | ".join(f"{v:.3f}" for v in cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
