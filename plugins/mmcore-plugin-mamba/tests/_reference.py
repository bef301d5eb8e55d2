r"""Sequential reference selective scan: one autograd step per time step (tests and benchmarks only).

$$h_t = \exp(\Delta_t A) \odot h_{t-1} + \Delta_t u_t B_t, \quad y_t = \langle C_t, h_t\rangle + D u_t,
  \quad \mathrm{out}_t = y_t \operatorname{silu}(z_t)$$

Reference: Gu & Dao 2023 (arXiv:2312.00752), §3.2, Alg. 2; the same semantics as mamba-ssm's
``selective_scan_ref``. Its loop walks ``unbind``-ed time slices: indexing ``x[:, :, i]`` instead
(as ``selective_scan_ref`` does) gives the same values but an O(L^2) backward, since every index
op's backward allocates a full-size gradient (175 s vs 0.75 s at L = 4096, D = 128 on 2 cores).
Shapes: as ``mmcore_plugin_mamba.scan.selective_scan``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def selective_scan_reference(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                             backend=None):
    """Sequential scan in the compute dtype of ``selective_scan`` (float64 stays float64, else float32).

    ``backend`` is accepted and ignored, so the function can stand in for ``selective_scan``.
    """
    dtype = torch.float64 if u.dtype == torch.float64 else torch.float32
    batch, dim, L = u.shape
    uc, dc = u.to(dtype), delta.to(dtype)
    if delta_bias is not None:
        dc = dc + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        dc = F.softplus(dc)
    Bd, Cd = (t.to(dtype).unsqueeze(1) if t.dim() == 3 else t.to(dtype) for t in (B, C))  # (batch, G, N, L)
    Bd = Bd.repeat_interleave(dim // Bd.shape[1], dim=1)  # (batch, dim, N, L)
    Cd = Cd.repeat_interleave(dim // Cd.shape[1], dim=1)
    h = uc.new_zeros(batch, dim, A.shape[1])
    ys = []
    for dt, ut, bt, ct in zip(dc.unbind(-1), uc.unbind(-1), Bd.unbind(-1), Cd.unbind(-1)):
        h = torch.exp(dt[..., None] * A.to(dtype)) * h + (dt * ut)[..., None] * bt  # (batch, dim, N)
        ys.append((h * ct).sum(-1))  # (batch, dim)
    y = torch.stack(ys, dim=-1)  # (batch, dim, L)
    if D is not None:
        y = y + uc * D.to(dtype)[:, None]
    if z is not None:
        y = y * F.silu(z.to(dtype))
    return y.to(u.dtype)
