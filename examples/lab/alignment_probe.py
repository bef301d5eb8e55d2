r"""Mechanism lab, alignment: how well an aligner's plans match the synthetic data's true alignment,
at initialisation and after every training epoch (docs/lab.md, "Alignment").

Trains the recipe epoch by epoch with mmcore's own trainer (same seed, batches and optimiser as
``mmcore run``) and, before the first epoch and after each one, scores on the test split:

* **plan** -- the aligner's ``alignment_plans()`` (relaxed_ot, sinkhorn, gmm_prototype_ot), or, for an
  aligner without plans (bimamba_text_centric), the **Jacobian probe**: the attribution plan

  $$J_m(i, j) = \Big\lVert \frac{\partial y_i}{\partial x^m_j} \Big\rVert_F$$

  where $x^m_j$ (d,) is encoded frame j of modality m (the aligner's input) and $y_i$ (d,) the
  aligner's output at anchor (text) position i: the aligned stream of m when the aligner puts m on
  the anchor's axis, else the anchor's own output stream (bimamba: the text stream, which is where
  a text-centric aligner would carry what it read from m). For relaxed_ot/sinkhorn with stream m,
  $y_i = \sum_j P_{ij} x^m_j$ (up to a row scale), so $J_m \propto P_m$: the probe reproduces the plan
  (``--probe jacobian`` on those checks this). Rows are scored like plans.
* scores (:func:`mmcore.alignment.plan_scores`): **top1**, **mass** against the true word spans and the
  uniform / proportional floors; plus an **index** floor (token i -> frame i: what index-based
  interleaving pairs) and **type**: the share of the row's mass on frames of the same word *type*
  (content match, ignoring position; chance = uniform plan), the meaningful number for an aligner that
  matches by content only (gmm_prototype_ot's prototypes cannot tell two occurrences of a word apart).

``--oracle`` instead scores the two OT solvers on an *oracle cost* built from the true word types
($C_{ij} = 0$ if frame j shows the word type of token i, else 1): the best a content-only cost can do.

``--oracle-nce W`` adds a **positive control** that no real data offers: a token-level InfoNCE on the
*encoded* features that uses the ground truth (train split only),

$$\mathcal L = -\frac{1}{|I|}\sum_{i \in I} \log \frac{\sum_{j \in S_i} e^{\cos(h^t_i, h^m_j)/\tau}}
  {\sum_{j\ \mathrm{valid}} e^{\cos(h^t_i, h^m_j)/\tau}},\quad \tau = 0.1,$$

summed over m = audio, vision, weight W: it makes the cosine cost informative, so it shows what the
OT aligners do *when* the encoded modalities are comparable token by token.

``--aligner lab_oracle_plan`` is the other positive control: an aligner that moves every frame of word
w onto text token w with the **true** plan (the mean of the word's frames; $\mathbf 0$ for a word without
frames), i.e. a perfect token aligner; it shows how much the task can gain from token-level alignment
at all, against ``identity`` (whose resampling fuser gives the proportional alignment).

``--aligner lab_sinkhorn_projected`` (with ``--oracle-nce``) separates plan quality from what the InfoNCE
does to the features: sinkhorn whose cost is the cosine of a learned linear projection of each modality
(the plan still moves the unprojected encoded frames), with the InfoNCE applied to the projection of the
*detached* encodings, so the pressure shapes the cost only, never the features the fuser reads.

``--runs RUN [RUN ...]`` probes trained runs (e.g. a sweep's bimamba_text_centric cells, best weights) in
both directions (gmm_prototype_ot: :func:`prototype_scores` instead; relaxed_ot/sinkhorn: the scores and
the share of text tokens whose plan row is empty) and prints: the Jacobian probe above
(text position i <- frames), the **frame-centric** probe
$R_m(i, j) = \lVert \partial C_m[j] / \partial x^t_i \rVert_F$ (frame j of the aligner's output stream m <-
text tokens; top1 = the argmax token is the frame's own word, with the uniform 1/n and proportional
floors), and where the text positions read from: the share of $J_m(i, \cdot)$ within ±1 frame of index i,
of the proportional centre and of the true centre of word i.

At the end the epoch with the best valid MAE is selected (as ``mmcore run`` does) and its test MAE and
alignment are printed and written with ``"selected": true``.

Usage (repository root):
  python examples/lab/alignment_probe.py examples/lab/alignment.yaml --aligner relaxed_ot --epochs 10 \
      --set data.params.misalignment=1 --out /tmp/lab/probe/relaxed_a1.jsonl
  python examples/lab/alignment_probe.py examples/lab/alignment.yaml --oracle --set data.params.misalignment=1
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile

import torch

import mmcore
from mmcore.alignment import aggregate, plan_scores
from mmcore.data.base import iterate_batches
from mmcore.data.load import load_dataset
from mmcore.params import NoParams
from mmcore.phases import phase_at
from mmcore.protocols import AlignerOutput
from mmcore.spec import load_spec
from mmcore.train.trainer import Trainer

ALIGNERS = {
    "identity": "{name: identity}",
    "lab_oracle_plan": "{name: lab_oracle_plan}",
    "lab_sinkhorn_projected": "{name: lab_sinkhorn_projected, params: {anchor: text}}",
    "relaxed_ot": "{name: relaxed_ot, params: {anchor: text}}",
    "sinkhorn": "{name: sinkhorn, params: {anchor: text}}",
    "gmm_prototype_ot": "{name: gmm_prototype_ot, params: {anchor: text}}",
    "bimamba_text_centric": "{name: bimamba_text_centric, params: {anchor: text, depth: 1, d_state: 8, expand: 2}}",
}
ANCHOR = "text"


_TRAIN_TRUTH: dict = {}  # the train split's word of every position, for the oracle loss (set in main)
_SPLIT = {"name": "train", "truth": {}, "index": None}  # the split being run, for lab_oracle_plan (set in main)


@mmcore.register("aligner", "lab_oracle_plan", params=NoParams,
                 description="mechanism lab only: the true word alignment as the plan (a positive control)")
class OraclePlanAligner(torch.nn.Module):
    """Every modality onto the text axis with the true plan: token i gets the mean of its word's frames."""

    anchor = ANCHOR

    def __init__(self, params, ctx):
        super().__init__()
        self._plans = {}

    def forward(self, seqs, valid):
        idx = _SPLIT["index"].cpu()
        tr = _SPLIT["truth"][_SPLIT["name"]]
        wa = tr[ANCHOR][idx].to(seqs[ANCHOR].device)  # (B, T_a)
        out, self._plans = {ANCHOR: seqs[ANCHOR]}, {}
        for m, x in seqs.items():
            if m == ANCHOR:
                continue
            wm = tr[m][idx].to(x.device)
            P = ((wa.unsqueeze(-1) == wm.unsqueeze(1)) & (wa >= 0).unsqueeze(-1) & valid[m].unsqueeze(1)).to(x.dtype)
            P = P / P.sum(-1, keepdim=True).clamp_min(1.0)  # (B, T_a, T_m): mean over the word's frames
            out[m] = torch.bmm(P, x)
            self._plans[m] = P.detach()
        va = valid[ANCHOR]
        return AlignerOutput(out, {m: va for m in out}, {})

    def alignment_plans(self):
        return dict(self._plans)


@mmcore.register("loss", "lab_oracle_token_nce", params=NoParams,
                 description="mechanism lab only: token-level InfoNCE with the synthetic ground truth "
                             "(a positive control)")
class OracleTokenNCE(torch.nn.Module):
    """The positive-control loss of ``--oracle-nce`` (module docstring); 0 outside training."""

    tau = 0.1

    def __init__(self, params, ctx):
        super().__init__()

    def forward(self, state):
        enc, b = (dict(_PROJ) if _PROJ else state.encoded), state.batch
        if not self.training:
            return enc[ANCHOR].sum() * 0.0
        idx = b.index.cpu()
        wa = _TRAIN_TRUTH[ANCHOR][idx].to(enc[ANCHOR].device)  # (B, T_a)
        xt = torch.nn.functional.normalize(enc[ANCHOR], dim=-1)
        total = enc[ANCHOR].sum() * 0.0
        for m, x in enc.items():
            if m == ANCHOR:
                continue
            wm = _TRAIN_TRUTH[m][idx].to(x.device)  # (B, T_m)
            vm = b.valid[m]
            logits = xt @ torch.nn.functional.normalize(x, dim=-1).transpose(1, 2) / self.tau  # (B, T_a, T_m)
            pos = (wa.unsqueeze(-1) == wm.unsqueeze(1)) & (wa >= 0).unsqueeze(-1) & vm.unsqueeze(1)
            scored = b.valid[ANCHOR] & pos.any(-1)
            if not bool(scored.any()):
                continue
            neg_inf = torch.finfo(logits.dtype).min
            num = torch.logsumexp(logits.masked_fill(~pos, neg_inf), -1)
            den = torch.logsumexp(logits.masked_fill(~vm.unsqueeze(1), neg_inf), -1)
            total = total + (den - num)[scored].mean()
        return total


_PROJ: dict = {}  # lab_sinkhorn_projected's projected, detached encodings of the last forward (for the InfoNCE)


def _register_projected():
    try:
        from mmcore_plugin_ot.params import SinkhornParams
        from mmcore_plugin_ot.sinkhorn_aligner import SinkhornAligner
    except ImportError:  # without mmcore-plugin-ot there is no sinkhorn to project
        return

    @mmcore.register("aligner", "lab_sinkhorn_projected", params=SinkhornParams,
                     description="mechanism lab only: sinkhorn with its cost on a learned projection")
    class ProjectedSinkhorn(SinkhornAligner):
        def __init__(self, params, ctx):
            super().__init__(params, ctx)
            self.proj = torch.nn.ModuleDict({m: torch.nn.Linear(ctx.d_model, ctx.d_model) for m in ctx.modalities})

        def forward(self, seqs, valid):
            xa, va = seqs[self.anchor], valid[self.anchor].bool()
            pa = self.proj[self.anchor](xa)
            out, plans = {self.anchor: xa}, {}
            _PROJ.clear()
            _PROJ.update({m: self.proj[m](x.detach()) for m, x in seqs.items()})
            for m, xm in seqs.items():
                if m == self.anchor:
                    continue
                vm = valid[m].bool()
                P = self.plan(pa, va, self.proj[m](xm), vm)  # (B, T_a, T_m): cost on the projections
                out[m] = self.project(P, xm, vm)  # the encoded frames themselves are moved
                plans[m] = P.detach()
            self._plans = plans
            return AlignerOutput(out, {m: va for m in out}, {})


_register_projected()


def jacobian_plans(model, batch) -> dict[str, torch.Tensor]:
    """{m: J_m (B, T_a, T_m)}: Frobenius norm of d y_i / d x^m_j (see the module docstring)."""
    with torch.no_grad():
        enc = model.encode(batch)
    seqs = {m: x.detach().clone().requires_grad_(m != ANCHOR) for m, x in enc.items()}
    out = model.aligner(seqs, {m: batch.valid[m] for m in seqs})
    T_a = batch.valid[ANCHOR].shape[1]
    plans = {}
    for m in seqs:
        if m == ANCHOR:
            continue
        y = out.seqs[m] if m in out.seqs and out.seqs[m].shape[1] == T_a else out.seqs[ANCHOR]
        if not y.requires_grad:  # the stream does not depend on m at all (identity): nothing flows
            plans[m] = torch.zeros(y.shape[0], T_a, seqs[m].shape[1])
            continue
        J = torch.zeros(y.shape[0], T_a, seqs[m].shape[1])
        for i in range(T_a):
            for c in range(y.shape[-1]):
                (g,) = torch.autograd.grad(y[:, i, c].sum(), seqs[m], retain_graph=True, allow_unused=True)
                if g is not None:
                    J[:, i] += g.detach().pow(2).sum(-1)
        plans[m] = J.sqrt()
    return plans


def reverse_plans(model, batch) -> dict[str, torch.Tensor]:
    """{m: R_m (B, T_a, T_m)}: Frobenius norm of d C_m[j] / d x^text_i, C_m the aligner's output stream m."""
    with torch.no_grad():
        enc = model.encode(batch)
    seqs = {m: x.detach().clone().requires_grad_(m == ANCHOR) for m, x in enc.items()}
    out = model.aligner(seqs, {m: batch.valid[m] for m in seqs})
    plans = {}
    for m in seqs:
        if m == ANCHOR:
            continue
        y = out.seqs[m]  # (B, T_m', d)
        R = torch.zeros(y.shape[0], seqs[ANCHOR].shape[1], y.shape[1])
        for j in range(y.shape[1]):
            for c in range(y.shape[-1]):
                (g,) = torch.autograd.grad(y[:, j, c].sum(), seqs[ANCHOR], retain_graph=True, allow_unused=True)
                if g is not None:
                    R[:, :, j] += g.detach().pow(2).sum(-1)
        plans[m] = R.sqrt()
    return plans


def probe_runs(run_dirs: list[str], batch_size: int = 256) -> None:
    """Both probes and the read-out offsets of trained runs (``--runs``); see the module docstring."""
    from mmcore.train.run import load_run

    for run in run_dirs:
        tr = load_run(run)
        model, data = tr.model, tr.data
        model.eval()
        if tr.spec.aligner.name == "gmm_prototype_ot":  # batch-coupled (EM on the batch): prototype level instead
            print(json.dumps({"run": run, **{k: round(v, 3) for k, v in prototype_scores(model, data).items()}}))
            continue
        if callable(getattr(model.aligner, "alignment_plans", None)):  # OT aligners: the share of tokens left empty
            empty = tokens = 0
            for batch in iterate_batches(data.split("test"), batch_size):
                with torch.no_grad():
                    model(batch)
                    for P in model.aligner.alignment_plans().values():
                        empty += int(((P.sum(-1) <= 0) & batch.valid[ANCHOR]).sum())
                        tokens += int(batch.valid[ANCHOR].sum())
            print(json.dumps({"run": run, "empty_tokens": round(empty / max(tokens, 1), 3),
                              **{k: round(v, 3) for k, v in score(model, data)["mean"].items()}}))
            continue
        truth_, _ = truth(data, "test")
        acc: dict[str, float] = {}
        for batch in iterate_batches(data.split("test"), batch_size):
            idx, va = batch.index, batch.valid[ANCHOR]
            wa, na = truth_[ANCHOR][idx], va.sum(1)
            J, R = jacobian_plans(model, batch), reverse_plans(model, batch)
            for m in J:
                wm, vm = truth_[m][idx], batch.valid[m]
                nm = vm.sum(1)
                # frame-centric: does frame j read most from its own word's token?
                Rm = R[m].masked_fill(~va.unsqueeze(-1), 0.0)
                ok = vm & (wm >= 0)
                jj = torch.arange(vm.shape[1]).unsqueeze(0)
                prop = torch.floor((jj + 0.5) * na.unsqueeze(1) / nm.unsqueeze(1).clamp_min(1)).long()
                own = torch.gather(Rm, 1, wm.clamp(min=0).unsqueeze(1)).squeeze(1) / Rm.sum(1).clamp_min(1e-12)
                for k, v in (("f_top1", (Rm.argmax(1) == wm) & ok), ("f_mass", own * ok), ("f_prop", (prop == wm) & ok),
                             ("f_uni", ok / na.unsqueeze(1).float()), ("f_n", ok)):
                    acc[k] = acc.get(k, 0.0) + float(v.float().sum())
                # text-centric: where does token i read from (share of J within +-1 frame of a centre)?
                Jm = J[m] / J[m].sum(-1, keepdim=True).clamp_min(1e-12)  # (B, T_a, T_m)
                ii = torch.arange(va.shape[1]).view(1, -1, 1).double()
                t = torch.arange(vm.shape[1]).view(1, 1, -1).double()
                span = (wa.unsqueeze(-1) == wm.unsqueeze(1)) & (wa >= 0).unsqueeze(-1)
                true_c = (span * t).sum(-1) / span.sum(-1).clamp_min(1)  # (B, T_a)
                prop_c = (ii.squeeze(-1) + 0.5) * nm.unsqueeze(1) / na.unsqueeze(1).clamp_min(1) - 0.5
                scored = va & (span.sum(-1) > 0)
                for k, c in (("near_index", ii.squeeze(-1).expand_as(true_c)), ("near_prop", prop_c),
                             ("near_true", true_c)):
                    near = ((t - c.unsqueeze(-1)).abs() <= 1.0) & vm.unsqueeze(1)
                    acc[k] = acc.get(k, 0.0) + float(((Jm * near).sum(-1) * scored).sum())
                s = plan_scores(J[m], wa, wm, va, vm)
                acc["t_top1"] = acc.get("t_top1", 0.0) + s["top1"]
                acc["t_mass"] = acc.get("t_mass", 0.0) + s["mass"]
                acc["t_n"] = acc.get("t_n", 0.0) + float(scored.sum())
        f = {k: acc[k] / acc["f_n"] for k in ("f_top1", "f_mass", "f_prop", "f_uni")}
        t = {k: acc[k] / acc["t_n"] for k in ("t_top1", "t_mass", "near_index", "near_prop", "near_true")}
        print(json.dumps({"run": run, **{k: round(v, 3) for k, v in {**t, **f}.items()}}), flush=True)


def type_scores(plan, types_a, types_m, valid_a, valid_m):
    """Sums over tokens with a word: (type-match mass of the plan, of the uniform plan, count)."""
    P = plan.double() * valid_m.unsqueeze(1)
    same = (types_a.unsqueeze(-1) == types_m.unsqueeze(1)) & (types_a >= 0).unsqueeze(-1) & valid_m.unsqueeze(1)
    same = same.double()
    scored = valid_a & (types_a >= 0) & (same.sum(-1) > 0)
    total = P.sum(-1)
    mass = torch.where(total > 0, (P * same).sum(-1) / total.clamp_min(1e-300), torch.zeros_like(total))
    chance = same.sum(-1) / valid_m.sum(1, keepdim=True).clamp_min(1).double()
    return float(mass[scored].sum()), float(chance[scored].sum()), int(scored.sum())


def index_plan(valid_a, valid_m):
    """Token i -> frame min(i, T_m - 1): what index interleaving puts next to token i."""
    B, T_a = valid_a.shape
    T_m = valid_m.shape[1]
    n_m = valid_m.sum(1).clamp_min(1)
    j = torch.minimum(torch.arange(T_a).unsqueeze(0).expand(B, -1), (n_m - 1).unsqueeze(1))
    return torch.zeros(B, T_a, T_m).scatter_(2, j.unsqueeze(-1), 1.0)


def truth(data, split):
    meta, tr = data.meta[split], data.alignment_truth(split)
    tok = meta["tokens"]  # (N, T_t) word type, -1 on padding
    types = {ANCHOR: tok}
    for m, seg in tr.items():
        if m != ANCHOR:
            types[m] = torch.where(seg >= 0, torch.gather(tok, 1, seg.clamp(min=0)), torch.full_like(seg, -1))
    return tr, types


def score(model, data, split="test", probe="auto", batch_size=256):
    """Alignment scores of the model's plans (or Jacobian probe) on ``split``."""
    tr, types = truth(data, split)
    sp = data.split(split)
    model.eval()
    model.set_step("eval", "eval")
    has_plans = callable(getattr(model.aligner, "alignment_plans", None))
    use_jac = probe == "jacobian" or (probe == "auto" and not has_plans)
    sums, idx_sums, tsum = {}, {}, {}
    for batch in iterate_batches(sp, batch_size):
        if use_jac:
            plans = jacobian_plans(model, batch)
        else:
            with torch.no_grad():
                model(batch)
                plans = model.aligner.alignment_plans()
        idx = batch.index
        va = batch.valid[ANCHOR]
        for m, P in plans.items():
            vm = batch.valid[m]
            s = plan_scores(P.cpu(), tr[ANCHOR][idx], tr[m][idx], va, vm)
            acc = sums.setdefault(m, dict.fromkeys(s, 0))
            for k, v in s.items():
                acc[k] += v
            si = plan_scores(index_plan(va, vm), tr[ANCHOR][idx], tr[m][idx], va, vm)
            acc = idx_sums.setdefault(m, dict.fromkeys(si, 0))
            for k, v in si.items():
                acc[k] += v
            t = type_scores(P.cpu(), types[ANCHOR][idx], types[m][idx], va, vm)
            tsum[m] = [a + b for a, b in zip(tsum.get(m, [0.0, 0.0, 0]), t)]
    res = aggregate(sums)
    idx_res = aggregate(idx_sums)
    out = {"probe": "jacobian" if use_jac else "plans"}
    for m in list(sums) + ["mean"]:
        out[m] = {k: res[m][k] for k in ("top1", "mass", "uniform_top1", "proportional_top1", "proportional_mass")}
        out[m]["index_top1"] = idx_res[m]["top1"]
    for m, (mass, chance, n) in tsum.items():
        out[m]["type_mass"], out[m]["type_chance"] = mass / max(n, 1), chance / max(n, 1)
    out["mean"]["type_mass"] = sum(out[m]["type_mass"] for m in tsum) / len(tsum)
    out["mean"]["type_chance"] = sum(out[m]["type_chance"] for m in tsum) / len(tsum)
    return out


@torch.no_grad()
def prototype_scores(model, data, split="test", batch_size=256):
    """gmm_prototype_ot at prototype level: does T* couple prototypes that hold the same words?

    Per modality m and prototype k, p_m(w | k) = the posterior-weighted share of word type w among the
    tokens of m that k holds (test split, the batch's EM refit as in evaluation). Returns, per non-anchor
    m, **agree** = sum_{k,l} T*_am(k, l) sum_w p_a(w|k) p_m(w|l) (the chance that a token and a frame
    coupled through the plan show the same word type), **agree_indep** = the same under the independent
    coupling pi_a x pi_m (the plan's marginals), and **purity** = sum_k pi_m(k) max_w p_m(w|k) per modality.
    """
    al = model.aligner
    _, types = truth(data, split)
    sp = data.split(split)
    model.eval()
    out = {}
    for batch in iterate_batches(sp, batch_size):
        model(batch)
        T = al.last_joint_plan  # (K, K, K) over al.modalities
        enc = model.encode(batch)
        uni = {m: torch.where(batch.valid[m].unsqueeze(-1), al.unique[m](enc[m]), 0.0) for m in al.modalities}
        _, resp = al._fit_prototypes(uni, {m: batch.valid[m] for m in al.modalities})
        idx = batch.index
        pw = {}
        for i, m in enumerate(al.modalities):
            r = resp[i].reshape(-1, resp[i].shape[-1])  # (N, K)
            t = types[m][idx].reshape(-1)
            onehot = torch.nn.functional.one_hot(t.clamp(min=0), 12).double() * (t >= 0).unsqueeze(1)
            counts = r.double().T @ onehot  # (K, 12)
            pw[m] = counts / counts.sum(1, keepdim=True).clamp_min(1e-12)
            tot = counts.sum(1)
            out.setdefault(f"purity_{m}", float((tot / tot.sum() * pw[m].max(1).values).sum()))
        a = al.modalities.index(ANCHOR)
        for j, m in enumerate(al.modalities):
            if m == ANCHOR:
                continue
            others = tuple(k for k in range(T.dim()) if k not in (a, j))
            Tam = T.sum(dim=others) if others else T
            Tam = Tam if a < j else Tam.T
            sim = pw[ANCHOR] @ pw[m].T  # (K, K)
            indep = Tam.sum(1, keepdim=True) @ Tam.sum(0, keepdim=True)
            out[f"agree_{m}"] = float((Tam.double() * sim).sum() / Tam.sum())
            out[f"agree_indep_{m}"] = float((indep.double() * sim).sum() / indep.sum())
        break  # one batch of batch_size rows
    return out


def oracle(data, split="test", reg=0.1):
    """Top-1 / mass / type of relaxed argmin and Sinkhorn on the oracle type cost (no model)."""
    from mmcore_plugin_ot._masks import uniform_weights
    from mmcore_plugin_ot.sinkhorn import sinkhorn_plan

    tr, types = truth(data, split)
    sp = data.split(split)
    va = sp.valid[ANCHOR]
    res = {}
    for kind in ("relaxed", "sinkhorn"):
        sums, tsum = {}, {}
        for m in tr:
            if m == ANCHOR:
                continue
            vm = sp.valid[m]
            same = (types[ANCHOR].unsqueeze(-1) == types[m].unsqueeze(1)) & (types[m] >= 0).unsqueeze(1)
            cost = 1.0 - same.float()  # (N, T_a, T_m)
            if kind == "relaxed":
                c = cost.masked_fill(~va.unsqueeze(2), float("inf"))
                w = uniform_weights(vm, torch.float32).unsqueeze(1)
                P = torch.zeros_like(c).scatter_(1, c.argmin(1, keepdim=True), w)
            else:
                c = cost.masked_fill(~(va.unsqueeze(2) & vm.unsqueeze(1)), float("inf"))
                P = sinkhorn_plan(uniform_weights(va, torch.float32), uniform_weights(vm, torch.float32), c, reg,
                                  max_iter=2000, tol=1e-5).plan
            sums[m] = plan_scores(P, tr[ANCHOR], tr[m], va, vm)
            tsum[m] = type_scores(P, types[ANCHOR], types[m], va, vm)
        agg = aggregate(sums)
        res[kind] = {"top1": agg["mean"]["top1"], "mass": agg["mean"]["mass"],
                     "uniform_top1": agg["mean"]["uniform_top1"], "proportional_top1": agg["mean"]["proportional_top1"],
                     "type_mass": sum(t[0] / t[2] for t in tsum.values()) / len(tsum)}
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe")
    ap.add_argument("--aligner", choices=sorted(ALIGNERS),
                    help="replace the recipe's aligner (as the sweep's variants)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="spec override (repeatable)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=None, help="default: the recipe's train.epochs")
    ap.add_argument("--probe", choices=("auto", "jacobian"), default="auto",
                    help="auto: the aligner's plans, the Jacobian probe when it has none; jacobian: always the probe")
    ap.add_argument("--oracle", action="store_true", help="score the OT solvers on the oracle word-type cost and exit")
    ap.add_argument("--oracle-nce", type=float, default=0.0, metavar="W",
                    help="add the ground-truth token InfoNCE (a positive control) with weight W")
    ap.add_argument("--out", help="append one JSON line per scored epoch here")
    ap.add_argument("--runs", nargs="+", metavar="RUN", help="probe these trained runs in both directions and exit")
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if args.runs:
        probe_runs(args.runs)
        return 0
    overrides = list(args.set) + [f"seed={args.seed}"]
    if args.aligner:
        overrides.append(f"aligner={ALIGNERS[args.aligner]}")
    if args.oracle_nce:
        overrides.append(f"losses={{lab_oracle_token_nce: {{weight: {args.oracle_nce}}}}}")
    rs = load_spec(args.recipe, overrides=overrides)
    data = load_dataset(rs)
    _TRAIN_TRUTH.update(data.alignment_truth("train"))
    _SPLIT["truth"] = {sp: data.alignment_truth(sp) for sp in ("train", "valid", "test")}
    if args.oracle:
        print(json.dumps({"oracle": oracle(data), "overrides": args.set}))
        return 0
    epochs = args.epochs if args.epochs is not None else rs.spec.train.epochs
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer.for_training(rs, data, tmp, progress=False)
        trainer.model.register_forward_pre_hook(lambda mod, a: _SPLIT.__setitem__("index", a[0].index))
        evaluate = trainer.evaluate

        def in_split(name, fn, *a, **k):
            _SPLIT["name"] = name
            return fn(*a, **k)

        trainer.evaluate = lambda name, *a, **k: in_split(name, evaluate, name, *a, **k)
        best = (float("inf"), None, 0)
        base = {"aligner": rs.spec.aligner.name, "overrides": args.set, "seed": args.seed,
                "oracle_nce": args.oracle_nce}
        for epoch in range(epochs + 1):
            row = {**base, "epoch": epoch}
            if epoch > 0:
                terms = in_split("train", trainer._train_epoch, epoch - 1, phase_at(trainer.phases, epoch - 1))
                row["train"] = terms
                row["valid_mae"] = trainer.evaluate("valid")["mae"]
                if row["valid_mae"] < best[0]:
                    best = (row["valid_mae"], copy.deepcopy(trainer.model.state_dict()), epoch)
            row["align"] = in_split("test", score, trainer.model, data, probe=args.probe)
            m = row["align"]["mean"]
            print(f"epoch {epoch:2d}  valid mae {row.get('valid_mae', float('nan')):.3f}  top1 {m['top1']:.3f} "
                  f"mass {m['mass']:.3f}  type {m['type_mass']:.3f} (chance {m['type_chance']:.3f})  floors: uniform "
                  f"{m['uniform_top1']:.3f} proportional {m['proportional_top1']:.3f} index {m['index_top1']:.3f}",
                  flush=True)
            _write(args.out, row)
        if best[1] is not None:
            trainer.model.load_state_dict(best[1])
            row = {**base, "epoch": best[2], "selected": True, "valid_mae": best[0],
                   "test_mae": trainer.evaluate("test")["mae"],
                   "align": in_split("test", score, trainer.model, data, probe=args.probe)}
            m = row["align"]["mean"]
            if rs.spec.aligner.name == "gmm_prototype_ot":
                row["prototypes"] = prototype_scores(trainer.model, data)
            print(f"selected epoch {best[2]}: test mae {row['test_mae']:.3f}  top1 {m['top1']:.3f} "
                  f"mass {m['mass']:.3f} "
                  f"type {m['type_mass']:.3f}" + (f"  prototypes {row['prototypes']}" if "prototypes" in row else ""),
                  flush=True)
            _write(args.out, row)
    return 0


def _write(path, row):
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    sys.exit(main())
