r"""Decoding mode: impute the victim sequence from the present one through a (predicted) plan.

``mode="barycentric"`` (default):

$$\hat z^2_j = \frac{\sum_i \hat A_{ij}\, z^1_i}{\sum_i \hat A_{ij}}$$

with $\hat A$ the dense plan (rows = present positions $i$, columns = victim positions $j$). For
equal lengths and a plan with uniform marginals, $\sum_i \hat A_{ij} = 1$ after the row
normalisation the fitter predicts, and this is exactly Eq. 14, $\hat z^2_j = \sum_i \hat A_{ij} z^1_i$.
A permutation plan reproduces the permuted sequence exactly. Victim positions that no row
reaches (uncovered, or padding) are 0.

``mode="rows"`` (the authors' ``SinkhornFitter.inference``): $h^2_i = \sum_j \hat A_{ij} z^1_j$ — the
predicted rows applied to the present sequence, no normalisation, square plans only ($T_1 = T_2$).

Reference: MM-Align (Han et al., EMNLP 2022), §3.4, Eq. 14–15.
Deviations: the column normalisation (barycentric projection) keeps $\hat z^2$ on the scale of
$z^1$ when $T_1 \ne T_2$ or the predicted rows do not give every column the same mass. The
authors' code applies the rows instead (a transpose of Eq. 14, ``rows``), which needs $T_1 = T_2$;
its scale follows the row mass the fitter predicts inside ``[0, l)``. The [CLS] slot of Eq. 15 does
not exist in mmcore's encoders (the authors' inference does not reassign it either).
Shapes: plan (B, T_1, T_2), z1 (B, T_1, d) -> (B, T_2, d).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["decode"]

_MASS_FLOOR = 1e-12  # a column with less mass than this counts as unreached (its output is 0)


def decode(plan: Tensor, z1: Tensor, mode: str = "barycentric") -> Tensor:
    r"""$\hat z^2 = \mathrm{colnorm}(\hat A)^\top z^1$ (``barycentric``) or $h^2 = \hat A z^1$ (``rows``).

    Args:
        plan: (B, T_1, T_2) non-negative; rows of padded present tokens must be 0 (``rows``: T_1 = T_2).
        z1: (B, T_1, d) present-modality encodings.
        mode: ``"barycentric"`` or ``"rows"``.
    Returns:
        (B, T_2, d); ``barycentric``: 0 on columns with no mass.
    Raises:
        ValueError: on shape mismatch or an unknown mode.
    """
    if plan.dim() != 3 or z1.dim() != 3 or plan.shape[:2] != z1.shape[:2]:
        raise ValueError(f"decode: plan is {tuple(plan.shape)} and z1 is {tuple(z1.shape)}; need plan (B, T_1, T_2) "
                         "and z1 (B, T_1, d)")
    if mode == "rows":
        if plan.shape[1] != plan.shape[2]:
            raise ValueError(f"decode: mode 'rows' (the authors' inference) needs a square plan; got "
                             f"{tuple(plan.shape)}")
        return torch.bmm(plan.to(z1.dtype), z1)  # (B, T, d): h2_i = sum_j A_ij z1_j
    if mode != "barycentric":
        raise ValueError(f"decode: mode must be 'barycentric' or 'rows'; got {mode!r}")
    mass = plan.sum(1)  # (B, T_2)
    reached = mass > _MASS_FLOOR
    weights = plan / torch.where(reached, mass, torch.ones_like(mass)).unsqueeze(1)  # (B, T_1, T_2)
    out = torch.einsum("bij,bid->bjd", weights.to(z1.dtype), z1)  # (B, T_2, d)
    return out * reached.unsqueeze(-1).to(out.dtype)
