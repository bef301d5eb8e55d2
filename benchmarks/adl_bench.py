"""Seconds per training batch: the ADL (MM-Align) pipeline vs a MulT-style cross-modal translation baseline.

Both pipelines are examples/mm_align.yaml (transformer encoders, MulT fuser, d_model 32, batch 32,
present audio -> victim vision on ../shared/data/mmmo.npz, length 20) under setting B, p' = 0.5
(half of every training batch has no vision), and differ only in the imputer:

* ``adl``: per batch a fitter step (GRU fitter on the complete rows, windowed Sinkhorn targets,
  fit loss; only ψ updated) and a backbone step (the fitter decodes the missing rows' vision),
  exactly as the trainer runs the plugin's phases.
* ``translation`` (Modal-Trans-like, MM-Align §4.2 / Appendix D): a transformer decoder of the
  same width (1 layer, 4 heads) translating the present sequence into the victim sequence. On
  complete rows it is trained with a teacher-forced reconstruction loss (MSE to the real victim
  encoding); on missing rows there is no target to teacher-force, so it decodes autoregressively,
  T_2 sequential steps, each re-running the decoder over the prefix (the O(l^3 d) of Eq. 19-20),
  with gradients flowing through the decoded sequence into the backbone. One step per batch.

Timing: the trainer's own per-epoch training loop (``Trainer._train_epoch``, no evaluation),
median over epochs, divided by the number of batches, with the split per step (ADL: ``fitter``
and ``backbone``; the trainer calls ``set_step`` before each, so the time between calls is a step's); plus the imputation module alone (forward
+ backward of the imputer on one batch of encoded sequences, as MM-Align's Table 8 times "the
imputation module"). Both in one run, side by side, with the ratio. MM-Align (Table 8, CMU-MOSI,
GPU): Modal-Trans 0.811 s/batch vs MM-Align 0.278 s/batch (2.9x).

    python benchmarks/adl_bench.py [--epochs 3] [--threads 2] [--rate 0.5] [--window 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
from torch import nn

import mmcore
from mmcore.params import ComponentParams
from mmcore.protocols import ImputerOutput

from _common import footer, header


class TranslationParams(ComponentParams):
    """Benchmark-only: present -> victim transformer-decoder translation imputer."""

    present: str = "audio"
    victim: str = "vision"
    layers: int = 1
    heads: int = 4


class TranslationImputer(nn.Module):
    """Modal-Trans-style imputer: teacher-forced reconstruction on complete rows, autoregressive
    decoding (T_2 steps) for missing rows. Shapes: seqs[m] (B, T_m, d) -> (B, T_m, d)."""

    has_unused_parameters = True

    def __init__(self, params: TranslationParams, ctx):
        super().__init__()
        d = ctx.d_model
        self.present, self.victim = params.present, params.victim
        layer = nn.TransformerDecoderLayer(d, params.heads, 4 * d, dropout=ctx.dropout, batch_first=True)
        self.decoder = nn.TransformerDecoder(layer, params.layers)
        self.start = nn.Parameter(torch.zeros(d))
        self.pos = nn.Parameter(torch.randn(512, d) * 0.02)

    def _decode(self, tgt_in, memory, mem_pad):
        T = tgt_in.shape[1]
        causal = torch.triu(torch.full((T, T), float("-inf"), device=tgt_in.device), 1)
        return self.decoder(tgt_in + self.pos[:T], memory, tgt_mask=causal, memory_key_padding_mask=mem_pad)

    def forward(self, seqs, batch):
        z1, z2 = seqs[self.present], seqs[self.victim]
        B, T2, d = z2.shape
        mem_pad = ~batch.valid[self.present]
        missing = batch.missing[self.victim]
        out = dict(seqs)
        aux = {}
        start = self.start.expand(B, 1, d)
        if self.training and bool((~missing).any()):  # teacher forcing: one parallel pass
            c = ~missing
            pred = self._decode(torch.cat([start[c], z2[c][:, :-1]], 1), z1[c], mem_pad[c])  # (n, T_2, d)
            v = batch.valid[self.victim][c].unsqueeze(-1)
            aux["translation_recon"] = ((pred - z2[c]) ** 2 * v).sum() / (v.sum() * d).clamp_min(1)
        if bool(missing.any()):  # autoregressive: T_2 sequential decoder passes over the growing prefix
            m = missing
            seq = start[m]  # (n, 1, d)
            for _ in range(T2):
                nxt = self._decode(seq, z1[m], mem_pad[m])[:, -1:]  # (n, 1, d)
                seq = torch.cat([seq, nxt], 1)
            imputed = seq[:, 1:] * batch.valid[self.victim][m].unsqueeze(-1)  # (n, T_2, d)
            full = z2.clone()
            full[m] = imputed
            out[self.victim] = full
        return ImputerOutput(out, aux)


def spec_for(imputer: dict, args) -> dict:
    import yaml

    with open(os.path.join(os.path.dirname(__file__), "..", "examples", "mm_align.yaml")) as f:
        spec = yaml.safe_load(f)
    op = {"type": "victim", "modality": "vision", "rate": args.rate}
    spec.update(imputer=imputer, missing={"train": [op], "eval": [op]})
    spec["train"].update(epochs=100, patience=None)
    spec["data"]["params"]["path"] = args.data
    return spec


def time_pipeline(name: str, spec: dict, args) -> tuple[float, int]:
    """Median seconds per training batch over ``args.epochs`` epochs of the trainer's loop."""
    from mmcore.data.load import load_dataset
    from mmcore.spec import spec_from_dict
    from mmcore.train.trainer import Trainer

    rs = spec_from_dict(spec)
    data = load_dataset(rs)
    with tempfile.TemporaryDirectory() as d:
        tr = Trainer.for_training(rs, data, d, progress=False)
        phase = tr.phases[-1]  # ADL: the denoise phase (fitter step + backbone step); baseline: its one phase
        n_batches = -(-len(data.split("train")) // spec["train"]["batch_size"])
        per_step: dict[str, float] = {}
        marks: list[tuple[str, float]] = []
        set_step = tr.model.set_step

        def timed_set_step(ph, st):  # the trainer calls this right before each step's forward
            marks.append((st, time.perf_counter()))
            set_step(ph, st)

        tr.model.set_step = timed_set_step
        times = []
        for e in range(args.epochs + 1):  # epoch 0 warms up allocators and caches, not counted
            marks.clear()
            t0 = time.perf_counter()
            tr._train_epoch(e, phase)
            end = time.perf_counter()
            if e:
                times.append((end - t0) / n_batches)
                for (st, a), (_, b) in zip(marks, marks[1:] + [("", end)]):
                    per_step[st] = per_step.get(st, 0.0) + (b - a) / (n_batches * args.epochs)
    return statistics.median(times), per_step


def time_module(imp: nn.Module, args, reps: int = 20) -> float:
    """Median seconds of the imputer's forward + backward on one training batch of encoded sequences
    (half the rows missing their victim), ADL counting both of its steps."""
    from mmcore.batch import Batch

    B, T, d = 32, 20, 32
    g = torch.Generator().manual_seed(0)
    valid = torch.ones(B, T, dtype=torch.bool)
    missing = torch.arange(B) % 2 == 0
    batch = Batch(features={"audio": torch.zeros(B, T, 1), "vision": torch.zeros(B, T, 1)},
                  valid={"audio": valid, "vision": valid}, labels=torch.zeros(B),
                  missing={"audio": torch.zeros(B, dtype=torch.bool), "vision": missing}, index=torch.arange(B))
    steps = ["fitter", "backbone"] if hasattr(imp, "set_step") else [None]
    imp.train()
    times = []
    for r in range(reps + 2):
        seqs = {m: torch.randn(B, T, d, generator=g).requires_grad_() for m in ("audio", "vision")}
        t0 = time.perf_counter()
        for s in steps:
            if s:
                imp.set_step("denoise", s)
            out = imp(seqs, batch)
            loss = out.seqs["vision"].pow(2).mean() + sum(out.aux.values())
            imp.zero_grad(set_to_none=True)
            loss.backward()
        if r >= 2:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per pipeline (after one untimed)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--rate", type=float, default=0.5, help="p': share of training rows without the victim")
    ap.add_argument("--window", type=int, default=8, help="ADL window W (MM-Align Table 8: 8)")
    ap.add_argument("--data", default="../shared/data/mmmo.npz")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import logging

    logging.getLogger("mmcore").setLevel(logging.WARNING)
    mmcore.register("imputer", "bench_translation", params=TranslationParams,
                    aux_losses={"translation_recon": 1.0})(TranslationImputer)

    adl = {"name": "adl", "params": {"present": "audio", "victim": "vision", "window": args.window}}
    trans = {"name": "bench_translation", "params": {}}
    print(header("wall (perf_counter)"))
    print(f"mmmo train split (220 rows), batch 32, d_model 32, length 20, p' = {args.rate}, ADL window {args.window}")
    print("| pipeline | s/batch (trainer loop, median of epochs) | per step (mean s/batch) | imputer fwd+bwd s/batch |")
    print("|---|---|---|---|")
    res = {}
    from mmcore.builder import build
    from mmcore.spec import spec_from_dict

    for name, imp in (("translation", trans), ("adl", adl)):  # interleaved in one process, same data
        spec = spec_for(imp, args)
        per_batch, per_step = time_pipeline(name, spec, args)
        torch.manual_seed(0)
        module = build(spec_from_dict(spec)).imputer
        res[name] = (per_batch, time_module(module, args))
        steps = ", ".join(f"{k} {v:.4f}" for k, v in per_step.items())
        print(f"| {name} | {res[name][0]:.4f} | {steps} | {res[name][1]:.4f} |", flush=True)
    ratio_p = res["translation"][0] / res["adl"][0]
    ratio_m = res["translation"][1] / res["adl"][1]
    print(f"\ntranslation / adl: {ratio_p:.2f}x per pipeline batch, {ratio_m:.2f}x for the imputation module "
          f"(MM-Align Table 8, MOSI on GPU: 0.811 / 0.278 = 2.92x)")
    print(footer())


if __name__ == "__main__":
    main()
