r"""Alignment accuracy of an aligner's plans against a ground-truth segmentation (the mechanism lab).

Data with a known alignment (the synthetic dataset) give, per modality, the segment (word) each
position belongs to: ``truth[m]`` (N, T_m), -1 for none (:meth:`MultimodalData.alignment_truth`). An
aligner that exposes ``alignment_plans() -> {m: (B, T_anchor, T_m)}`` and ``anchor`` is scored per
anchor token $i$ whose segment $w_i \ge 0$ has at least one valid frame in $m$ (its true span
$S_i = \{t : w^m_t = w_i\}$):

$$\mathrm{top1} = \frac{1}{|I|}\sum_{i \in I} [\arg\max_t P_{it} \in S_i],\qquad
  \mathrm{mass} = \frac{1}{|I|}\sum_{i \in I} \frac{\sum_{t \in S_i} P_{it}}{\sum_t P_{it}}$$

over the valid frames $t$ of $m$ and the scored anchor tokens $I$ of the whole split (micro average).
Two plans that know nothing give the floors: the *uniform* plan ($P_{it} = 1/T_m$; its top-1 is the
chance that a uniformly drawn frame lies in $S_i$, $|S_i|/T_m$, equal to its mass) and the
*proportional* (diagonal) plan, which sends anchor token $i$ of $T_a$ to the frames of
$[iT_m/T_a, (i+1)T_m/T_a)$ weighted by overlap (its top-1 frame is $\lfloor (i + \tfrac12) T_m/T_a\rfloor$),
with $T_a$, $T_m$ the row's valid lengths. ``mean`` averages the modalities' numbers (macro).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from . import capabilities
from .errors import MmcoreUserError

__all__ = ["AlignmentUnavailable", "plan_scores", "proportional_plan", "aggregate", "evaluate_alignment",
           "format_alignment"]

KEYS = ("top1", "mass", "uniform_top1", "uniform_mass", "proportional_top1", "proportional_mass")


class AlignmentUnavailable(MmcoreUserError):
    """Alignment accuracy cannot be computed for this run (no ground truth, or no plans), with the reason."""


def proportional_plan(valid_a: Tensor, valid_m: Tensor) -> Tensor:
    r"""The proportional (diagonal) plan: anchor token i covers $[iT_m/T_a, (i+1)T_m/T_a)$ of m's frames.

    $Q_{it} = |[t, t+1) \cap [iT_m/T_a, (i+1)T_m/T_a)|\,/\,T_m$ on valid rows and frames (rows sum to
    $1/T_a$), with $T_a$, $T_m$ each row's valid lengths.
    Shapes: valid_a (B, T_a), valid_m (B, T_m) bool prefixes -> (B, T_a, T_m) float64.
    """
    na = valid_a.sum(1).clamp_min(1).double().view(-1, 1, 1)  # (B, 1, 1)
    nm = valid_m.sum(1).clamp_min(1).double().view(-1, 1, 1)
    i = torch.arange(valid_a.shape[1], dtype=torch.float64, device=valid_a.device).view(1, -1, 1)
    t = torch.arange(valid_m.shape[1], dtype=torch.float64, device=valid_a.device).view(1, 1, -1)
    lo, hi = i * nm / na, (i + 1) * nm / na  # (B, T_a, 1)
    overlap = (torch.minimum(hi, t + 1) - torch.maximum(lo, t)).clamp_min(0.0)  # (B, T_a, T_m)
    keep = valid_a.unsqueeze(-1) & valid_m.unsqueeze(1)
    return torch.where(keep, overlap / nm, torch.zeros_like(overlap))


def plan_scores(plan: Tensor, words_a: Tensor, words_m: Tensor, valid_a: Tensor, valid_m: Tensor) -> dict[str, float]:
    """Sums over the scored anchor tokens of one batch: ``{key: sum}`` for :data:`KEYS` and ``tokens``.

    Shapes: plan (B, T_a, T_m) >= 0; words_a (B, T_a), words_m (B, T_m) long segment ids (-1 = none);
    valid_a (B, T_a), valid_m (B, T_m) bool.
    """
    if plan.shape != (*words_a.shape, words_m.shape[1]):
        raise ValueError(f"plan_scores: plan is {tuple(plan.shape)}; expected (B, T_a, T_m) = "
                         f"{(*words_a.shape, words_m.shape[1])} from the truth")
    P = plan.double() * valid_m.unsqueeze(1)  # (B, T_a, T_m): padding frames carry nothing
    match = (words_a.unsqueeze(-1) == words_m.unsqueeze(1)) & (words_a >= 0).unsqueeze(-1) & valid_m.unsqueeze(1)
    span = match.sum(-1)  # (B, T_a) |S_i|
    scored = valid_a & (words_a >= 0) & (span > 0)  # (B, T_a)
    n_m = valid_m.sum(1, keepdim=True).clamp_min(1)  # (B, 1)
    matchf = match.double()

    def row_scores(Q: Tensor, top: Tensor) -> tuple[Tensor, Tensor]:
        hit = matchf.gather(-1, top.unsqueeze(-1)).squeeze(-1)  # (B, T_a)
        total = Q.sum(-1)
        mass = torch.where(total > 0, (Q * matchf).sum(-1) / total.clamp_min(1e-300), torch.zeros_like(total))
        return hit, mass

    top1, mass = row_scores(P, P.argmax(-1))
    uni = span.double() / n_m.double()
    Q = proportional_plan(valid_a, valid_m)
    na = valid_a.sum(1, keepdim=True).clamp_min(1).double()
    centre = torch.floor((torch.arange(words_a.shape[1], device=plan.device).double().unsqueeze(0) + 0.5)
                         * n_m.double() / na).long().clamp(max=words_m.shape[1] - 1)  # (B, T_a)
    p_top1, p_mass = row_scores(Q, centre)
    out = {}
    for key, v in zip(KEYS, (top1, mass, uni, uni, p_top1, p_mass)):
        out[key] = float(v[scored].sum())
    out["tokens"] = int(scored.sum())
    return out


def aggregate(sums: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Per-modality sums -> means, plus ``mean`` over the modalities (macro)."""
    out: dict[str, Any] = {}
    for m, s in sums.items():
        n = s["tokens"]
        out[m] = {k: (s[k] / n if n else None) for k in KEYS} | {"tokens": n}
    scored = [v for v in out.values() if v["tokens"]]
    if scored:
        out["mean"] = {k: math.fsum(v[k] for v in scored) / len(scored) for k in KEYS}
    return out


def _aligner_plans(aligner) -> tuple[str, Any]:
    """(anchor, bound alignment_plans) of an aligner that exposes them; AlignmentUnavailable otherwise."""
    name = type(aligner).__name__
    if capabilities.alignment_plans(aligner) is None or capabilities.anchor(aligner) is None:
        raise AlignmentUnavailable(f"the aligner ({name}) exposes no alignment plans (alignment_plans() and anchor), "
                                   "so there is nothing to score; aligners that do: relaxed_ot, sinkhorn, order_ot, "
                                   "gmm_prototype_ot (reference: mmcore); `mmcore plot ot-plan` lists the installed ones")
    return aligner.anchor, aligner.alignment_plans


@torch.no_grad()
def evaluate_alignment(model, data, split: str = "test", *, batch_size: int = 64, device="cpu") -> dict[str, Any]:
    """Score the aligner of ``model`` (a :class:`~mmcore.pipeline.Pipeline`) on ``split`` of ``data``.

    The split is run with nothing removed (no missing-modality protocol: the truth is about content)
    in eval mode. Returns :func:`aggregate`'s dict plus ``anchor`` and ``split``.
    Raises :class:`AlignmentUnavailable` when the data has no ground truth or the aligner no plans.
    """
    from .data.base import iterate_batches

    truth = data.alignment_truth(split)
    if truth is None:
        raise AlignmentUnavailable(f"the dataset ({data.info.name}) records no ground-truth alignment, so alignment "
                                   "accuracy cannot be computed; the built-in synthetic dataset does "
                                   "(data: {name: synthetic}, knobs max_shift / warp / misalignment)")
    anchor, plans_of = _aligner_plans(model.aligner)
    sp = data.split(split)
    if anchor not in truth or anchor not in sp.features:
        raise AlignmentUnavailable(f"the aligner's anchor {anchor!r} has no ground truth in this dataset "
                                   f"(truth for {sorted(truth)})")
    model.eval()
    capabilities.set_step(model, "eval", "eval")
    sums: dict[str, dict[str, float]] = {}
    for batch in iterate_batches(sp, batch_size):
        batch = batch.to(device)
        model(batch)
        try:
            plans = plans_of()
        except MmcoreUserError as e:  # an aligner that says why it has no plans
            raise AlignmentUnavailable(str(e)) from None
        idx = batch.index.cpu()
        for m, plan in plans.items():
            if m not in truth:
                continue
            s = plan_scores(plan.cpu(), truth[anchor][idx], truth[m][idx], batch.valid[anchor].cpu(),
                            batch.valid[m].cpu())
            acc = sums.setdefault(m, dict.fromkeys((*KEYS, "tokens"), 0))
            for k, v in s.items():
                acc[k] += v
    if not sums:
        raise AlignmentUnavailable(f"the aligner returned no plan for a modality with ground truth ({sorted(truth)})")
    return {"split": split, "anchor": anchor, **aggregate(sums)}


def format_alignment(alignment: dict[str, Any]) -> str:
    """A plain-text table: one row per modality (and the mean), plan vs uniform vs proportional."""
    head = f"alignment on {alignment['split']} (anchor {alignment['anchor']}):"
    rows = [head, f"  {'modality':<10} {'tokens':>7}  {'top1':>6} {'mass':>6}  {'uniform':>15}  {'proportional':>15}"]
    for m, v in alignment.items():
        if not isinstance(v, dict):
            continue
        tok = str(v.get("tokens", "")) if "tokens" in v else ""
        fmt = lambda k: "  -  " if v.get(k) is None else f"{v[k]:.3f}"  # noqa: E731
        rows.append(f"  {m:<10} {tok:>7}  {fmt('top1'):>6} {fmt('mass'):>6}  "
                    f"{fmt('uniform_top1'):>7} {fmt('uniform_mass'):>7}  {fmt('proportional_top1'):>7} "
                    f"{fmt('proportional_mass'):>7}")
    rows.append("  (top1: argmax of the anchor token's plan row inside its true span; mass: plan mass on it; "
                "uniform and proportional: the floors, top1 then mass)")
    return "\n".join(rows)
