r"""Decoding mode: impute the victim sequence from the present one through a (predicted) plan.

$$\hat z^2_j = \frac{\sum_i \hat A_{ij}\, z^1_i}{\sum_i \hat A_{ij}}$$

with $\hat A$ the dense plan (rows = present positions $i$, columns = victim positions $j$). For
equal lengths and a plan with uniform marginals, $\sum_i \hat A_{ij} = 1$ after the row
normalisation the fitter predicts, and this is exactly Eq. 14, $\hat z^2_j = \sum_i \hat A_{ij} z^1_i$.
A permutation plan reproduces the permuted sequence exactly. Victim positions that no row
reaches (uncovered, or padding) are 0.

Reference: MM-Align (Han et al., EMNLP 2022), §3.4, Eq. 14–15.
Deviations: the column normalisation (barycentric projection) keeps $\hat z^2$ on the scale of
$z^1$ when $T_1 \ne T_2$ or the predicted rows do not give every column the same mass; the
authors' code applies the predicted rows to the present sequence (a transpose of Eq. 14) and only
handles $T_1 = T_2$. The [CLS] slot of Eq. 15 does not exist in mmcore's encoders.
Shapes: plan (B, T_1, T_2), z1 (B, T_1, d) -> (B, T_2, d).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["decode"]

_MASS_FLOOR = 1e-12  # a column with less mass than this counts as unreached (its output is 0)


def decode(plan: Tensor, z1: Tensor) -> Tensor:
    r"""$\hat z^2 = \mathrm{colnorm}(\hat A)^\top z^1$.

    Args:
        plan: (B, T_1, T_2) non-negative; rows of padded present tokens must be 0.
        z1: (B, T_1, d) present-modality encodings.
    Returns:
        (B, T_2, d); 0 on columns with no mass.
    Raises:
        ValueError: on shape mismatch.
    """
    if plan.dim() != 3 or z1.dim() != 3 or plan.shape[:2] != z1.shape[:2]:
        raise ValueError(f"decode: plan is {tuple(plan.shape)} and z1 is {tuple(z1.shape)}; need plan (B, T_1, T_2) "
                         "and z1 (B, T_1, d)")
    mass = plan.sum(1)  # (B, T_2)
    reached = mass > _MASS_FLOOR
    weights = plan / torch.where(reached, mass, torch.ones_like(mass)).unsqueeze(1)  # (B, T_1, T_2)
    out = torch.einsum("bij,bid->bjd", weights.to(z1.dtype), z1)  # (B, T_2, d)
    return out * reached.unsqueeze(-1).to(out.dtype)
