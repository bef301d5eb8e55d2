"""Late-fusion DNN as one fuser (its sub-networks inside), equal to MMSA 2.2.1's ``LF_DNN``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmcore.protocols import BuildContext, FuserOutput

from ._subnets import subnets
from .params import LFDNNParams


class LFDNNFuser(nn.Module):
    r"""Late fusion: concatenate the modalities' sub-network outputs, then two ReLU layers.

    $$r = \mathrm{ReLU}(W_2\,\mathrm{ReLU}(W_1\,\mathrm{drop}([h_1; h_2; \dots; h_M])))$$

    $h_m$ is modality m's sub-network output (TextSubNet for ``sequence_modalities``, SubNet otherwise).
    The last layer $W_3$ is the head ``mmsa_output``.

    Reference: MMSA 2.2.1 ``MMSA/models/singleTask/LF_DNN.py`` (the late-fusion DNN baseline of
    Williams et al., Recognizing Emotions in Video Using Multimodal DNN Feature Fusion, ACL Workshop 2018).
    Notation: $W_1, W_2$ are ``post_fusion_layer_1/2``; the concatenation follows the spec's modality order
    (MMSA: audio, vision, text — ``mmsa_mapping.lf_dnn`` permutes ``post_fusion_layer_1``'s columns).
    Deviations: sequences are averaged / read by the LSTM over valid steps only (MMSA includes the padding);
    identical on full-length data.
    Shapes: seqs[m] (B, T_m, d), valid[m] (B, T_m) -> rep (B, post_fusion_dim).
    """

    def __init__(self, params: LFDNNParams, ctx: BuildContext):
        super().__init__()
        self.names = list(ctx.names)
        self.subnets, widths = subnets(params, ctx, lambda hidden: params.lstm_out)
        self.post_fusion_dropout = nn.Dropout(params.post_fusion_dropout)
        self.post_fusion_layer_1 = nn.Linear(sum(widths.values()), params.post_fusion_dim)
        self.post_fusion_layer_2 = nn.Linear(params.post_fusion_dim, params.post_fusion_dim)
        self.out_dim = params.post_fusion_dim

    def forward(self, seqs: dict[str, Tensor], valid: dict[str, Tensor]) -> FuserOutput:
        h = torch.cat([self.subnets[m](seqs[m], valid[m]) for m in self.names], dim=-1)  # (B, Σ k_m)
        r = F.relu(self.post_fusion_layer_1(self.post_fusion_dropout(h)))
        return FuserOutput(F.relu(self.post_fusion_layer_2(r)), {})  # (B, post_fusion_dim)
