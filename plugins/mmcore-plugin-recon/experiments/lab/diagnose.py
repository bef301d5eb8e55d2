"""Why does (or doesn't) MGMR-Net's reconstruction help on the synthetic lab data? Per finished sweep cell.

For every cell ``<variant>_r<rate>/seed<k>`` of a sweep made by ``sweep.sh`` or its follow-ups (every
variant whose name starts with ``recon``; rate > 0), rebuild the run with its selected weights, mask the
test split with the cell's own eval protocol and report, per modality, on the masked valid tokens:

- ``recon``: SmoothL1 (per element, β = 1, the loss's own measure) of the read-out W_r X̂ vs the clean
  features; next to references that need no model: ``mean`` (the train mean per feature), ``last`` (the
  last observed token before t, any word: copy-the-neighbour, causal as the stack is), ``word_causal``
  (the last observed token of the SAME word before t, else the train mean: the best causal copy the
  generator allows) and ``word`` (the mean of the observed tokens of the same word on both sides, else
  the train mean: an oracle that knows the word boundaries).
- ``gamma_masked`` / ``gamma_observed``: mean Γ (Γ -> 1 keeps the encoder's token, Γ -> 0 takes X̂).
- event recovery (audio stress, vision cue): the event read off a token by projecting it on the
  generator's event pattern P_m, thresholded at 1/2; accuracy on masked tokens whose word has an
  observed token in that modality (``ev_recon`` from W_r X̂, ``ev_word`` from the same-word copy) and on
  tokens whose whole word is masked (``ev_lost``: information no intra-modal reconstruction can get back,
  the base rate being 1 - P(event)).
- test MAE as evaluated, with the gate forced to 1 (X̂ removed from every modality: ``mae_g1``), to 0
  (only X̂: ``mae_g0``) and with the stack's Mamba mixers off (X̂ = LN_f(X): ``mae_nomix``), to show
  whether the downstream model uses the reconstruction.

Also the information lost at rate r on the test split: the share of polar words whose text token is
masked, whose every audio frame is masked (stress lost), whose every vision frame is masked (cue lost).

    .venv-test/bin/python plugins/mmcore-plugin-recon/experiments/lab/diagnose.py /tmp/lab/runs/mgmr_main > /tmp/lab/mgmr_diag.md
"""

from __future__ import annotations

import json
import os
import re
import sys
import types

import torch
import torch.nn.functional as F

# the helpers of the published diagnostics (docs/recon_diagnostics.py), which this script extends
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs"))
from recon_diagnostics import finished_cells, forward_with_readouts, masked_test_split  # noqa: E402

CELL = re.compile(r"^(?P<variant>recon\w*?)_r(?P<rate>\d\.\d)$")
EVENT = {"audio": "stress", "vision": "cue"}


def last_observed(x: torch.Tensor, observed: torch.Tensor, same: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, d) features of the latest observed token strictly before t (of the same word if ``same``
    (B, T) word ids is given) and (B, T) whether there is one."""
    B, T, d = x.shape
    ar = torch.arange(T)
    # cand[b, t, s]: s < t observed (and same word)
    cand = observed[:, None, :] & (ar[None, :, None] > ar[None, None, :])
    if same is not None:
        cand &= same[:, :, None] == same[:, None, :]
    idx = torch.where(cand, ar[None, None, :].expand(B, T, T), torch.full((B, T, T), -1)).max(-1).values
    out = x.gather(1, idx.clamp(min=0).unsqueeze(-1).expand(B, T, d))
    return out, idx >= 0


def word_mean(x: torch.Tensor, observed: torch.Tensor, word: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, d) mean of the observed tokens of the word of t (t excluded), (B, T) whether any."""
    same = (word[:, :, None] == word[:, None, :]) & (word[:, :, None] >= 0)
    same &= observed[:, None, :] & ~torch.eye(word.shape[1], dtype=torch.bool)[None]
    n = same.sum(-1, keepdim=True)
    return (same.float() @ x) / n.clamp(min=1), n[..., 0] > 0


def forced_gate(value: float):
    def forward(self, x, valid):
        x_hat = self.reconstruct(x, valid)
        gamma = torch.full_like(x[..., :1], value)
        fused = gamma * x + (1.0 - gamma) * x_hat
        y = self.proj(F.relu(self.out_norm(fused)))
        return y.masked_fill(~valid.unsqueeze(-1), 0.0), gamma, x_hat, self.readout(x_hat)
    return forward


def no_mixer(self, x, valid):
    """The reconstruction stack with its Mamba mixers' outputs removed: X̂ = LN_f(X) (residual path only)."""
    y = self.norm_f(x.masked_fill(~valid[..., None], 0.0))
    return y.masked_fill(~valid[..., None], 0.0)


def mae(model, batch) -> float:
    with torch.no_grad():
        return (model(batch).pred.float() - batch.labels).abs().mean().item()


def cell_stats(run_dir: str) -> dict:
    trainer, batch = masked_test_split(run_dir)
    model, imp, data = trainer.model.eval(), trainer.model.imputer, trainer.data
    output, raw = forward_with_readouts(model, imp, batch)
    pred = output.pred.float()
    gates = imp.gates()  # Γ of this forward (the ablations below overwrite the imputer's record)
    out = {"mae": (pred - batch.labels).abs().mean().item()}
    for value, key in ((1.0, "mae_g1"), (0.0, "mae_g0")):
        for b in imp.branches.values():
            b.forward = types.MethodType(forced_gate(value), b)
        out[key] = mae(model, batch)
        for b in imp.branches.values():
            del b.forward
    stacks = [s for b in imp.branches.values()  # MambaStack, or the two stacks of a BiMambaStack
              for s in ([b.reconstruct] if hasattr(b.reconstruct, "norm_f") else
                        {id(x): x for x in (b.reconstruct.forward_stack, b.reconstruct.backward_stack)}.values())]
    for s in stacks:
        s.forward = types.MethodType(no_mixer, s)
    out["mae_nomix"] = mae(model, batch)
    for s in stacks:
        del s.forward
    truth = data.alignment_truth("test")
    train = data.split("train")
    for m in imp.branches:
        valid, masked = batch.valid[m], batch.masked[m] & batch.valid[m]
        observed = valid & ~batch.masked[m]
        target, x = batch.clean[m], batch.features[m]
        mu = train.features[m][train.valid[m]].mean(0)  # (d,)
        word = truth[m]
        sl1 = lambda pred: F.smooth_l1_loss(pred[masked], target[masked]).item()  # noqa: E731
        lo, _ = last_observed(x, observed)
        wc, has_wc = last_observed(x, observed, word)
        wm, has_wm = word_mean(x, observed, word)
        fill = lambda v, has: torch.where(has[..., None], v, mu)  # noqa: E731
        g = gates[m].mean(-1)
        s = {"n": int(masked.sum()), "recon": sl1(raw[m]), "mean": sl1(mu.expand_as(target)), "last": sl1(lo),
             "word_causal": sl1(fill(wc, has_wc)), "word": sl1(fill(wm, has_wm)),
             "gamma_masked": g[masked].mean().item(), "gamma_observed": g[observed].mean().item()}
        if m in EVENT:
            P = data.language[EVENT[m]]
            proj = lambda v: (v @ P) / (P @ P) > 0.5  # noqa: E731
            ev = proj(target)  # the event as the clean token shows it
            rec, lost = masked & has_wm, masked & ~has_wm & (word >= 0)
            s["ev_recon"] = (proj(raw[m]) == ev)[rec].float().mean().item()
            s["ev_word"] = (proj(wm) == ev)[rec].float().mean().item()
            s["ev_lost_recon"] = (proj(raw[m]) == ev)[lost].float().mean().item() if lost.any() else float("nan")
            s["ev_base"] = 1 - ev[valid & (word >= 0)].float().mean().item()
            s["share_lost"] = (lost.sum() / masked.sum().clamp(min=1)).item()
        out[m] = s
    return out


def info_lost(run_dir: str) -> dict[str, float]:
    trainer, batch = masked_test_split(run_dir)
    data = trainer.data
    meta, truth = data.meta["test"], data.alignment_truth("test")
    polar = meta["polarity"] != 0  # (N, T_t)
    res = {"text": batch.masked["text"][polar].float().mean().item()}
    for m in ("audio", "vision"):
        word, obs = truth[m], batch.valid[m] & ~batch.masked[m]
        seen = torch.zeros_like(polar)
        for j in range(polar.shape[1]):
            seen[:, j] = ((word == j) & obs).any(1)
        res[m] = (~seen)[polar].float().mean().item()
    return res


def main(sweep_dir: str) -> None:
    cells = os.path.join(sweep_dir, "cells")
    rows = [(variant, rate, seed, cell_stats(run)) for variant, rate, seed, run in finished_cells(sweep_dir, CELL)]
    json.dump([{"variant": v, "rate": r, "seed": s, **st} for v, r, s, st in rows],
              open(os.path.join(sweep_dir, "recon_diagnostics.json"), "w"), indent=1)
    avg = lambda cs, f: sum(f(c) for c in cs) / len(cs)  # noqa: E731
    print("Reconstruction of masked tokens, test split, the cell's own masks; mean over seeds. SmoothL1 per element.\n")
    print("| variant | r | modality | Γ masked | Γ observed | W_r X̂ | train mean | last observed | same word, causal |"
          " same word, both sides |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    keys = ("gamma_masked", "gamma_observed", "recon", "mean", "last", "word_causal", "word")
    groups = sorted({(v, r) for v, r, *_ in rows})
    for v, r in groups:
        cs = [st for vv, rr, _, st in rows if (vv, rr) == (v, r)]
        for mod in ("text", "audio", "vision"):
            vals = " | ".join(f"{avg(cs, lambda c, k=k: c[mod][k]):.3f}" for k in keys)
            print(f"| {v} | {r:.1f} | {mod} | {vals} |")
    print("\nEvent (audio stress, vision cue) read off masked tokens, accuracy; mean over seeds.\n")
    print("| variant | r | modality | word has an observed token: from W_r X̂ | same: from the same-word copy | "
          "word fully masked (share of masked tokens): from W_r X̂ | base rate (always 'no event') |")
    print("|---|---|---|---|---|---|---|")
    for v, r in groups:
        cs = [st for vv, rr, _, st in rows if (vv, rr) == (v, r)]
        for mod in ("audio", "vision"):
            a = lambda k: avg(cs, lambda c: c[mod][k])  # noqa: E731
            print(f"| {v} | {r:.1f} | {mod} | {a('ev_recon'):.3f} | {a('ev_word'):.3f} | "
                  f"{a('ev_lost_recon'):.3f} ({a('share_lost'):.2f}) | {a('ev_base'):.3f} |")
    print("\nTest MAE with the module as trained; with Γ forced to 1 (X̂ unused); forced to 0 (only X̂, which holds X")
    print("through the stack's residual); with the stack's Mamba mixers switched off (X̂ = LN_f(X), no sequence")
    print("reconstruction). Mean ± sd over seeds.\n")
    print("| variant | r | as trained | Γ = 1 | Γ = 0 | mixers off |")
    print("|---|---|---|---|---|---|")
    for v, r in groups:
        cs = [st for vv, rr, _, st in rows if (vv, rr) == (v, r)]
        fmt = lambda k: _ms([c[k] for c in cs])  # noqa: E731
        print(f"| {v} | {r:.1f} | {fmt('mae')} | {fmt('mae_g1')} | {fmt('mae_g0')} | {fmt('mae_nomix')} |")
    print("\nLabel information removed by the test masks (seed-0 cell of `recon` per rate): share of polar words whose")
    print("text token is masked / whose every audio frame is masked (stress unreadable) / every vision frame (cue).\n")
    print("| r | text token masked | all audio frames masked | all vision frames masked |")
    print("|---|---|---|---|")
    for r in sorted({r for _, r, *_ in rows}):
        run = os.path.join(cells, f"recon_r{r:.1f}", "seed0")
        if os.path.exists(os.path.join(run, "results.json")):
            il = info_lost(run)
            print(f"| {r:.1f} | {il['text']:.3f} | {il['audio']:.3f} | {il['vision']:.3f} |")


def _ms(xs: list[float]) -> str:
    n = len(xs)
    mu = sum(xs) / n
    sd = (sum((x - mu) ** 2 for x in xs) / (n - 1)) ** 0.5 if n > 1 else float("nan")
    return f"{mu:.3f} ± {sd:.3f}"


if __name__ == "__main__":
    main(sys.argv[1])
