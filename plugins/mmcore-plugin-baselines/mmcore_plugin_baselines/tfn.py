"""Tensor Fusion Network as one fuser (its sub-networks inside), equal to MMSA 2.2.1's ``TFN``."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._subnets import PostFusionFuser


class TFNFuser(PostFusionFuser):
    r"""Tensor fusion: the outer product of every modality's embedding, each extended by a constant 1.

    $$z = \begin{bmatrix}h_1\\1\end{bmatrix} \otimes \begin{bmatrix}h_2\\1\end{bmatrix} \otimes \cdots
    \otimes \begin{bmatrix}h_M\\1\end{bmatrix},\qquad
    r = \mathrm{ReLU}(W_2\,\mathrm{ReLU}(W_1\,\mathrm{drop}(\mathrm{vec}\,z)))$$

    $h_m \in \mathbb R^{k_m}$ is modality m's sub-network output (a TextSubNet LSTM for
    ``sequence_modalities``, a time-averaged SubNet MLP otherwise), $z \in \mathbb R^{\prod_m (k_m+1)}$.
    MMSA prepends the 1 (``cat(1, h)``); so does this class. The last layer $W_3$ and TFN's output squashing
    $\hat y = 6\sigma(W_3 r) - 3$ are the head ``mmsa_output`` with ``output_range: [-3, 3]``.

    Reference: Zadeh et al., Tensor Fusion Network for Multimodal Sentiment Analysis, EMNLP 2017, §3.2, Eq. 1;
    MMSA 2.2.1 ``MMSA/models/singleTask/TFN.py``.
    Notation: $h^a, h^v, h^l$ (the paper's $z^a, z^v, z^l$) are ``subnets[m]`` outputs; $W_1, W_2$ are
    ``post_fusion_layer_1/2``; the flattening order is the spec's modality order (MMSA: audio, vision, text —
    ``mmsa_mapping.tfn`` permutes ``post_fusion_layer_1`` accordingly).
    Deviations: sequences are averaged / read by the LSTM over valid steps only (MMSA includes the padding);
    identical on full-length data.
    Shapes: seqs[m] (B, T_m, d), valid[m] (B, T_m) -> rep (B, post_fusion_dim).
    """

    def fused_width(self, widths: dict[str, int]) -> int:
        return math.prod(k + 1 for k in widths.values())  # Π (k_m + 1)

    def fuse(self, h: list[Tensor]) -> Tensor:
        B = h[0].shape[0]
        z = None
        for hm in h:  # (B, k_m)
            h1 = torch.cat((torch.ones(B, 1, dtype=hm.dtype, device=hm.device), hm), dim=1)  # (B, k_m + 1)
            z = h1 if z is None else (z.unsqueeze(2) * h1.unsqueeze(1)).reshape(B, -1)  # (B, Π (k+1))
        return z
