"""Small builders shared by this plugin's tests."""

import torch

from mmcore.protocols import BuildContext, ModalityInfo


def ctx(d: int = 8, modalities=("text", "audio", "vision")) -> BuildContext:
    """A BuildContext with the given modalities (dims and lengths are unused by the aligners)."""
    return BuildContext(modalities={m: ModalityInfo(m, d, 0) for m in modalities}, d_model=d)


def prefix_valid(lengths, T: int) -> torch.Tensor:
    """(B, T) prefix masks with the given valid lengths."""
    return torch.arange(T).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
