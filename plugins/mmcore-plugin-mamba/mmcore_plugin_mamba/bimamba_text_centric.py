r"""MGMR-Net's Stage 1: text-centric cross-modal alignment with bidirectional Mamba, one branch per
text–modality pair; the text stream is the average of its branches.

$$[\,C^{(m)}_t;\ C_m\,] = \tfrac12\Big(\operatorname{Stack}^m_f(P_m) + \operatorname{Flip}\,
  \operatorname{Stack}^m_b(\operatorname{Flip} P_m)\Big), \qquad
  C_t = \frac{1}{|\mathcal M|}\sum_{m \in \mathcal M} C^{(m)}_t$$

where $P_m$ is the pair sequence of text and modality $m$ and $\mathcal M$ the non-anchor modalities.
"""

from __future__ import annotations

from torch import Tensor, nn

from mmcore.protocols import AlignerOutput, BuildContext

from ._interleave import deinterleave, interleave
from .params import BimambaTextCentricParams
from .stack import BiMambaStack, check_streams


class BimambaTextCentricAligner(nn.Module):
    r"""Bidirectional Mamba over each (anchor, m) pair; every stream keeps its length and valid mask.

    For each non-anchor modality $m$ (a branch with its own weights) and the anchor $t$ (text):

    $$P_m = \operatorname{pair}(X_m, X_t), \qquad Y_m = \tfrac12\big(H_f + \operatorname{Flip}(H_b)\big),$$
    $$H_f = \operatorname{Stack}^{(N)}_{m,f}(P_m), \qquad H_b = \operatorname{Stack}^{(N)}_{m,b}(\operatorname{Flip} P_m),$$
    $$[C_m, C^{(m)}_t] = \operatorname{unpair}(Y_m), \qquad C_t = \operatorname{mean}_m C^{(m)}_t$$

    with pair = ``interleave`` $[x^m_1, x^t_1, x^m_2, x^t_2, \dots]$ (row-compacted like the fuser, so
    padding never precedes a valid token), ``concat`` $[x^m_1..x^m_{T_m}, x^t_1..x^t_{T_t}]$
    (compacted), or ``shared`` (each stream alone through the branch: $C_m = Y(X_m)$,
    $C^{(m)}_t = Y(X_t)$); $\operatorname{Stack}^{(N)}$ is a pre-norm residual
    :class:`~mmcore_plugin_mamba.stack.MambaStack` of $N$ = ``depth`` layers and Flip reverses each row's
    valid prefix.

    Reference: MGMR-Net (Yang et al., Electronics 14(15):3088, 2025), §3.3.1 Stage 1, Fig. 2: the
    forward and backward recursions $H^{t,(n)}_{m,f}$, $H^{t,(n)}_{m,b}$, $C^t_m = \tfrac12(H_f + H_b)$
    and $C^t_t = \tfrac12(C^{(a),t}_t + C^{(v),t}_t)$; hyperparameters from Table 2 (MOSI: state 12,
    expansion 4, depth 1).
    Notation: the paper's $C^t_m$ is ``out.seqs[m]``, $C^t_t$ is ``out.seqs[anchor]``; its MambaLayer
    is one residual layer of :class:`~mmcore_plugin_mamba.stack.MambaStack`.
    Deviations: the text does not say how a branch combines its two streams (the recursion is
    written per modality, the figure shows both streams entering one Bi-Mamba): ``pair`` makes
    that explicit, default ``interleave`` (token-level mixing in time-priority order, as Stage 2).
    With ``shared`` a branch mixes nothing across modalities except through its shared weights.
    Whether the two directions share weights is not stated either (``share_directions``, default no).
    With more than one non-anchor modality the anchor is averaged over all branches (the paper has two).
    Shapes: seqs[m] (B, T_m, d), valid[m] (B, T_m) -> out.seqs[m] (B, T_m, d), out.valid[m] = valid[m].

    Args:
        params: :class:`~mmcore_plugin_mamba.params.BimambaTextCentricParams`.
        ctx: build context with the anchor and at least one other modality.
    Raises:
        ValueError: the anchor is not a modality or there is no other modality; at forward, missing
            streams or shapes that disagree.
    """

    def __init__(self, params: BimambaTextCentricParams, ctx: BuildContext):
        super().__init__()
        names = list(ctx.modalities)
        if params.anchor not in names:
            raise ValueError(f"bimamba_text_centric: anchor {params.anchor!r} is not a modality of this pipeline "
                             f"({names}); set anchor to one of them")
        self.anchor, self.others = params.anchor, [m for m in names if m != params.anchor]
        if not self.others:
            raise ValueError(f"bimamba_text_centric: pairs the anchor {params.anchor!r} with other modalities, "
                             f"but the pipeline has only {names}")
        self.pair, self.d_model = params.pair, ctx.d_model
        self.branches = nn.ModuleDict({
            m: BiMambaStack(ctx.d_model, params.depth, share=params.share_directions, d_state=params.d_state,
                            d_conv=params.d_conv, expand=params.expand, backend=params.backend, dropout=ctx.dropout)
            for m in self.others})

    def branch(self, m: str, xm: Tensor, vm: Tensor, xt: Tensor, vt: Tensor) -> tuple[Tensor, Tensor]:
        """One text–m branch: (C_m (B, T_m, d), C_t^(m) (B, T_t, d))."""
        bi = self.branches[m]
        if self.pair == "shared":
            return bi(xm, vm), bi(xt, vt)
        packed = interleave([xm, xt], [vm, vt], time_major=self.pair == "interleave")  # (B, L, d)
        cm, ct = deinterleave(bi(packed.x, packed.valid), packed)
        return cm, ct

    def forward(self, seqs: dict[str, Tensor], valid: dict[str, Tensor]) -> AlignerOutput:
        """Align; see the class docstring. Returns every stream with its input valid mask and no aux loss."""
        check_streams("bimamba_text_centric", seqs, valid, [self.anchor] + self.others, self.d_model)
        xt, vt = seqs[self.anchor], valid[self.anchor]
        out, anchor_views = {}, []
        for m in self.others:
            out[m], ct = self.branch(m, seqs[m], valid[m], xt, vt)
            anchor_views.append(ct)  # (B, T_t, d)
        out[self.anchor] = sum(anchor_views) / len(anchor_views)
        order = [k for k in seqs if k in out]  # the input's stream order
        return AlignerOutput({k: out[k] for k in order}, {k: valid[k] for k in order}, {})
