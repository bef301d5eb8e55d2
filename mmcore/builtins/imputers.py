"""Built-in imputers: zero-fill and mean-fill baselines."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..batch import Batch
from ..functional import zero_invalid
from ..protocols import BuildContext, ImputerOutput
from .params import MeanImputerParams, ZeroImputerParams


def absent_positions(batch: Batch, m: str) -> Tensor:
    """(B, T) bool: tokens of modality m with no observed content (masked, or the instance missing)."""
    return batch.masked[m] | batch.missing[m].unsqueeze(1)


class ZeroImputer(nn.Module):
    r"""Zero-fill: $\hat z_{m,t} = 0$ wherever modality m is missing or token t is masked.

    Shapes: seqs[m] (B, T_m, d) -> (B, T_m, d).
    """

    def __init__(self, params: ZeroImputerParams, ctx: BuildContext):
        super().__init__()

    def forward(self, seqs: dict[str, Tensor], batch: Batch) -> ImputerOutput:
        out = {m: x.masked_fill(absent_positions(batch, m).unsqueeze(-1), 0.0) for m, x in seqs.items()}
        return ImputerOutput(out, {})


class MeanImputer(nn.Module):
    r"""Mean-fill: absent tokens take $\mu_m$, an EMA (momentum α) of observed encoded tokens.

    $$\mu_m \leftarrow (1-\alpha)\mu_m + \alpha \cdot \mathrm{mean}\{z_{m,t} : t \text{ observed}\}$$
    updated in training mode only (detached), over the global batch under DDP (Σz and counts are
    all-reduced); used as the fill value in both modes.

    Shapes: seqs[m] (B, T_m, d) -> (B, T_m, d).
    """

    def __init__(self, params: MeanImputerParams, ctx: BuildContext):
        super().__init__()
        self.momentum = params.momentum
        self.names = list(ctx.modalities)
        self.register_buffer("mean", torch.zeros(len(self.names), ctx.d_model))
        self.register_buffer("seen", torch.zeros(len(self.names), dtype=torch.bool))

    def forward(self, seqs: dict[str, Tensor], batch: Batch) -> ImputerOutput:
        from ..train.distributed import sum_across_ranks

        out = {}
        for i, m in enumerate(self.names):
            x = zero_invalid(seqs[m], batch.valid[m])  # padding holds nothing (not even NaN)
            absent = absent_positions(batch, m)  # (B, T)
            if self.training:  # every rank reaches the all-reduce: never behind a data-dependent if
                observed = batch.valid[m] & ~absent  # (B, T)
                stats = torch.cat([zero_invalid(x.detach().float(), observed).sum((0, 1)),
                                   observed.sum().float().view(1)])
                stats = sum_across_ranks(stats)  # (d + 1,): exact over the global batch under DDP
                with torch.no_grad():
                    if stats[-1] > 0:
                        cur = stats[:-1] / stats[-1]
                        self.mean[i] = torch.where(self.seen[i], (1 - self.momentum) * self.mean[i] + self.momentum * cur, cur)
                        self.seen[i] = True
            out[m] = torch.where(absent.unsqueeze(-1), self.mean[i].to(x.dtype), x)
        return ImputerOutput(out, {})
