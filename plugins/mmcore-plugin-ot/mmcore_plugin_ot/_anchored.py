"""Shared frame of the token aligners: every modality is moved onto the anchor's time axis by a plan.

A subclass computes one plan per non-anchor modality, ``(B, T_anchor, T_m)`` (row ``i`` = anchor
token, column ``j`` = frame ``j`` of ``m``), and the frame projects ``X_m`` through it. The plans of
the last forward are kept, detached, for ``mmcore plot ot-plan`` (see :mod:`mmcore.plots`).

Plans are computed with autocast disabled, in float32 (float64 for float64 inputs): under bf16
autocast the cost's matrix products and the Sinkhorn mat-vecs would otherwise run in bfloat16
and the marginals would be off by ~1e-3. Only the projection follows the autocast dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmcore.functional import zero_invalid
from mmcore.protocols import AlignerOutput, BuildContext


class AnchoredAligner(nn.Module):
    """Base class: validation, the per-modality loop, projection and ``alignment_plans``.

    Subclasses set ``self.normalize`` ("paper" or "barycentric") and implement :meth:`plan`; their
    docstrings refer here for what every token aligner shares:

    Shapes: seqs[anchor] (B, T_a, d), seqs[m] (B, T_m, d) -> every output (B, T_a, d) with the
    anchor's valid mask; ``alignment_plans()[m]`` is the plan of :meth:`plan` (B, T_a, T_m).

    Args (of a subclass's constructor):
        params: the subclass's params model (its ``anchor`` is passed here).
        ctx: the build context (the anchor must be one of its modalities).
    Raises:
        ValueError: when the anchor is not a modality, or the inputs disagree on B or d.
    """

    normalize: str = "paper"

    def __init__(self, anchor: str, ctx: BuildContext):
        super().__init__()
        if ctx.modalities and anchor not in ctx.modalities:
            raise ValueError(f"{type(self).__name__}: anchor {anchor!r} is not a modality of this pipeline; "
                             f"modalities are {list(ctx.modalities)}")
        self.anchor = anchor
        self._plans: dict[str, Tensor] = {}

    def plan(self, xa: Tensor, va: Tensor, xm: Tensor, vm: Tensor) -> Tensor:
        """The plan of one modality: xa (B, T_a, d), va (B, T_a), xm (B, T_m, d), vm (B, T_m) -> (B, T_a, T_m)."""
        raise NotImplementedError

    def forward(self, seqs: dict[str, Tensor], valid: dict[str, Tensor]) -> AlignerOutput:
        if self.anchor not in seqs:
            raise ValueError(f"{type(self).__name__}: the anchor {self.anchor!r} is not among the inputs "
                             f"{sorted(seqs)}")
        xa, va = seqs[self.anchor], valid[self.anchor].bool()
        B, T_a, d = xa.shape
        xa = zero_invalid(xa, va)  # padding holds nothing, not even NaN: selected away before any arithmetic
        out, plans = {self.anchor: xa}, {}
        for m, xm in seqs.items():
            if m == self.anchor:
                continue
            vm = valid[m].bool()
            if xm.dim() != 3 or xm.shape[0] != B or xm.shape[2] != d or tuple(vm.shape) != tuple(xm.shape[:2]):
                raise ValueError(f"{type(self).__name__}: {self.anchor} is {tuple(xa.shape)} but {m} is "
                                 f"{tuple(xm.shape)} with valid {tuple(vm.shape)}; need (B={B}, T_m, d={d}) "
                                 "and valid (B, T_m)")
            xm = zero_invalid(xm, vm)
            with torch.autocast(device_type=xa.device.type, enabled=False):  # plans in >= float32, even under bf16
                P = self.plan(xa, va, xm, vm)  # (B, T_a, T_m)
            out[m] = self.project(P, xm, vm)  # (B, T_a, d)
            plans[m] = P.detach()
        self._plans = plans
        return AlignerOutput(out, {m: va for m in out}, {})

    def project(self, P: Tensor, xm: Tensor, vm: Tensor) -> Tensor:
        r"""$\tilde X = P X_m$ ("paper"), or $\operatorname{diag}(P\mathbf 1)^{-1} P X_m$ ("barycentric").

        Padded frames are zeroed first (their plan column is 0, and ``0 * inf`` would be NaN);
        an anchor token that received no mass gets 0 under "barycentric".
        Shapes: P (B, T_a, T_m), xm (B, T_m, d), vm (B, T_m) -> (B, T_a, d) in ``xm.dtype``.
        """
        x0 = torch.where(vm.unsqueeze(-1), xm, torch.zeros((), dtype=xm.dtype, device=xm.device))  # (B, T_m, d)
        y = torch.bmm(P.to(xm.dtype), x0)  # (B, T_a, d)
        if self.normalize == "barycentric":
            mass = P.sum(-1, keepdim=True)  # (B, T_a, 1)
            y = torch.where(mass > 0, y / mass.clamp_min(torch.finfo(mass.dtype).tiny).to(y.dtype), torch.zeros_like(y))
        return y

    def alignment_plans(self) -> dict[str, Tensor]:
        """Plans of the last forward, ``{modality: (B, T_anchor, T_m)}``, detached (for ``mmcore plot ot-plan``)."""
        return dict(self._plans)
