"""Late-fusion DNN as one fuser (its sub-networks inside), equal to MMSA 2.2.1's ``LF_DNN``."""

from __future__ import annotations

import torch
from torch import Tensor

from ._subnets import PostFusionFuser


class LFDNNFuser(PostFusionFuser):
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

    def fused_width(self, widths: dict[str, int]) -> int:
        return sum(widths.values())

    def fuse(self, h: list[Tensor]) -> Tensor:
        return torch.cat(h, dim=-1)  # (B, Σ k_m)
