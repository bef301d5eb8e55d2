r"""The Mamba block (selective SSM mixer) with mamba-ssm's parameter layout, and ``flip_valid``.

Reference: Gu & Dao 2023, Mamba: Linear-Time Sequence Modeling with Selective State Spaces
(arXiv:2312.00752), §3.2-3.4, Fig. 3; parameters, initialisation and forward follow the slow path of
``mamba_ssm.modules.mamba_simple.Mamba`` so that one state dict loads into either implementation.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import _cpu_kernel
from .scan import BACKENDS, resolve_backend, selective_scan, selective_scan_time_major

__all__ = ["MambaBlock", "flip_valid"]


class MambaBlock(nn.Module):
    r"""Mamba block: gated, causally convolved selective SSM over a sequence.

    $$[x; z] = W_{in} u_t, \quad \tilde x = \operatorname{silu}(\operatorname{conv1d}_{causal}(x)), \quad
      [\delta_r; B_t; C_t] = W_x \tilde x_t, \quad \delta = W_\Delta \delta_r$$
    $$y = \operatorname{SelectiveScan}(\tilde x, \delta, A = -e^{A_{log}}, B, C, D, z, b_\Delta,
      \text{softplus}), \quad \mathrm{out}_t = W_{out} y_t$$

    with $u_t \in \mathbb{R}^{d_{model}}$, $x_t, z_t, \tilde x_t, y_t \in \mathbb{R}^{E}$ ($E$ = expand ·
    d_model), $\delta_r \in \mathbb{R}^{R}$ (R = dt_rank), $B_t, C_t \in \mathbb{R}^{N}$ (N = d_state),
    $A_{log} \in \mathbb{R}^{E \times N}$, $D, b_\Delta \in \mathbb{R}^{E}$; see ``scan.selective_scan``.

    Reference: Mamba (arXiv:2312.00752) §3.4 Fig. 3, Alg. 2; ``mamba_ssm.modules.mamba_simple.Mamba``.
    Notation: $W_{in}$ ``in_proj``, conv1d ``conv1d`` (depthwise, kernel ``d_conv``), $W_x$ ``x_proj``,
    $W_\Delta, b_\Delta$ ``dt_proj``, $A_{log}$ ``A_log``, $D$ ``D``, $W_{out}$ ``out_proj``: the same names,
    shapes and initialisation (S4D-real A, inverse-softplus dt bias in [dt_min, dt_max]).
    Deviations: no inference cache / step decoding; ``valid`` masks end padding (not in mamba-ssm).
    Shapes: x (B, T, d_model), valid (B, T) -> (B, T, d_model).

    Args:
        d_model: model width.
        d_state: SSM state size N per channel.
        d_conv: causal depthwise convolution width.
        expand: inner width E = expand * d_model.
        dt_rank: rank R of the Δ projection; "auto" = ceil(d_model / 16).
        dt_min, dt_max: range of the initial Δ = softplus(b_Δ) (log-uniform).
        dt_init: "random" (uniform ±R^-1/2·dt_scale) or "constant" init of the Δ projection weight.
        dt_scale: scale of that init.
        dt_init_floor: lower clamp of the initial Δ.
        conv_bias: bias in the convolution.
        bias: biases in the in/out projections.
        backend: selective-scan backend, one of ``scan.BACKENDS`` (resolved per call, logged once).
    Raises:
        ValueError: unknown backend or dt_init.
    """

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2, dt_rank="auto",
                 dt_min: float = 0.001, dt_max: float = 0.1, dt_init: str = "random", dt_scale: float = 1.0,
                 dt_init_floor: float = 1e-4, conv_bias: bool = True, bias: bool = False, backend: str = "auto",
                 device=None, dtype=None):
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"MambaBlock: unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        if dt_init not in ("random", "constant"):
            raise ValueError(f"MambaBlock: dt_init must be 'random' or 'constant', got {dt_init!r}")
        factory = {"device": device, "dtype": dtype}
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.backend = backend
        E, R, N = self.d_inner, self.dt_rank, d_state
        self.in_proj = nn.Linear(d_model, 2 * E, bias=bias, **factory)
        self.conv1d = nn.Conv1d(E, E, kernel_size=d_conv, groups=E, padding=d_conv - 1, bias=conv_bias, **factory)
        self.x_proj = nn.Linear(E, R + 2 * N, bias=False, **factory)
        self.dt_proj = nn.Linear(R, E, bias=True, **factory)
        std = R**-0.5 * dt_scale  # keeps the variance of Δ's pre-activation at init
        with torch.no_grad():
            if dt_init == "constant":
                self.dt_proj.weight.fill_(std)
            else:
                self.dt_proj.weight.uniform_(-std, std)
            dt = torch.exp(torch.rand(E, **factory) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
            dt = dt.clamp(min=dt_init_floor)
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^{-1}(dt)
        self.dt_proj.bias._no_reinit = True
        A = torch.arange(1, N + 1, dtype=torch.float32, device=device).repeat(E, 1)  # S4D-real: A_n = -n
        self.A_log = nn.Parameter(torch.log(A))  # kept in float32, as mamba-ssm
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(E, device=device))
        self.D._no_weight_decay = True
        self.out_proj = nn.Linear(E, d_model, bias=bias, **factory)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Run the block; padded positions (valid False, at the end of a row) are zeroed on input and output.

        Args:
            x: (B, T, d_model) sequence.
            valid: optional (B, T) bool, True = real token; padding must sit at the end of each row.
        Returns:
            (B, T, d_model); causal, so valid outputs never depend on padded positions.
        Raises:
            ValueError: wrong shapes.
        """
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"MambaBlock: x must be (B, T, d_model={self.d_model}), got {tuple(x.shape)}")
        Bsz, T, _ = x.shape
        if valid is not None:
            if valid.shape != (Bsz, T) or valid.dtype != torch.bool:
                raise ValueError(f"MambaBlock: valid must be a bool tensor of shape (B, T)=({Bsz}, {T}), "
                                 f"got {valid.dtype} {tuple(valid.shape)}")
            x = x.masked_fill(~valid[..., None], 0.0)  # not x * valid: NaN padding would survive that
        backend = resolve_backend(self.backend, x.device)
        if backend == "cpu_kernel" and x.dtype in (torch.float32, torch.float64) and self.d_conv <= 64:
            out = self._forward_cpu_kernel(x)
            return out if valid is None else out.masked_fill(~valid[..., None], 0.0)
        if backend in ("torch", "cpu_kernel"):
            out = self._forward_time_major(x)
            return out if valid is None else out.masked_fill(~valid[..., None], 0.0)
        xz = self.in_proj(x).transpose(1, 2)  # (B, 2E, T)
        xi, z = xz.chunk(2, dim=1)  # (B, E, T) each
        xi = self._conv(xi, backend)  # (B, E, T)
        x_dbl = self.x_proj(xi.transpose(1, 2))  # (B, T, R + 2N)
        dt, Bm, Cm = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.linear(dt, self.dt_proj.weight).transpose(1, 2)  # (B, E, T); bias added inside the scan
        A = -torch.exp(self.A_log.float())  # (E, N)
        y = selective_scan(xi, delta, A, Bm.transpose(1, 2), Cm.transpose(1, 2), self.D.float(), z=z,
                           delta_bias=self.dt_proj.bias.float(), delta_softplus=True,
                           backend=self.backend)  # (B, E, T)
        out = self.out_proj(y.transpose(1, 2))  # (B, T, d_model)
        return out if valid is None else out.masked_fill(~valid[..., None], 0.0)

    def _forward_cpu_kernel(self, x: torch.Tensor) -> torch.Tensor:
        """The ``cpu_kernel`` path: conv, silu, scan, activations, D skip and gate in one node (``MixerFn``).

        Time-major throughout, no transposes or concatenations; see ``_cpu_kernel.MixerFn``.
        """
        dtype = x.dtype  # A, D and the Δ bias pass through float32, as on the other paths (mamba-ssm)
        A = -torch.exp(self.A_log.float())  # (E, N)
        y = _cpu_kernel.MixerFn.apply(
            self.in_proj(x), self.conv1d.weight[:, 0], self.conv1d.bias, self.x_proj.weight, self.dt_proj.weight,
            self.dt_proj.bias.float().to(dtype), A.to(dtype), self.D.float().to(dtype))  # (B, T, E)
        return self.out_proj(y)  # (B, T, d_model)

    def _forward_time_major(self, x: torch.Tensor) -> torch.Tensor:
        """The ``torch`` path (and ``cpu_kernel`` in other dtypes): every tensor stays (B, T, ·), nothing is transposed.

        The scan reads z, B and C as strided views of ``in_proj``'s and ``x_proj``'s outputs and applies
        the Δ bias, softplus, D skip and z gate itself (inside the C++ kernel on ``cpu_kernel``).
        """
        E, R, N = self.d_inner, self.dt_rank, self.d_state
        xi, z = _SplitHalves.apply(self.in_proj(x), E)  # (B, T, E) views of (B, T, 2E)
        u = _CausalConvSiluTimeMajor.apply(xi, self.conv1d.weight[:, 0], self.conv1d.bias)  # (B, T, E)
        x_dbl = self.x_proj(u)  # (B, T, R + 2N)
        delta = F.linear(x_dbl[..., :R], self.dt_proj.weight)  # (B, T, E); bias added inside the scan
        A = -torch.exp(self.A_log.float())  # (E, N)
        y = selective_scan_time_major(u, delta, A, x_dbl[..., R:R + N], x_dbl[..., R + N:], self.D.float(), z=z,
                                      delta_bias=self.dt_proj.bias.float(), delta_softplus=True,
                                      backend=self.backend)  # (B, T, E)
        return self.out_proj(y)  # (B, T, d_model)

    def _conv(self, xi: torch.Tensor, backend: str) -> torch.Tensor:
        """silu(causal depthwise conv1d): causal_conv1d's CUDA kernel when the scan runs on mamba-ssm."""
        if backend == "cuda":
            try:
                from causal_conv1d import causal_conv1d_fn
            except ImportError:  # optional even with mamba-ssm: the torch conv below is equivalent
                causal_conv1d_fn = None
            if causal_conv1d_fn is not None:
                weight = self.conv1d.weight.squeeze(1)  # (E, d_conv)
                return causal_conv1d_fn(xi.contiguous(), weight, self.conv1d.bias, activation="silu")
        return F.silu(self.conv1d(xi)[..., : xi.shape[-1]])


class _SplitHalves(torch.autograd.Function):
    """(x[..., :E], x[..., E:]) as views; the backward writes both gradients into one tensor.

    Why: autograd's slice backward gives each half its own zero-filled full-size gradient, two extra
    (B, T, 2E) tensors at the block's peak memory.
    """

    @staticmethod
    def forward(ctx, x, E):  # noqa: D102
        ctx.E = E
        return x[..., :E], x[..., E:]

    @staticmethod
    def backward(ctx, g1, g2):  # noqa: D102
        if g1 is None:
            g1 = torch.zeros_like(g2)
        if g2 is None:
            g2 = torch.zeros_like(g1)
        return torch.cat((g1, g2), -1), None


class _CausalConvSiluTimeMajor(torch.autograd.Function):
    r"""silu(causal depthwise conv1d) on a time-major (B, T, E) input, without transposes.

    $$u_t = \operatorname{silu}\big(b + \textstyle\sum_{k=0}^{K-1} w_k \odot x_{t-K+1+k}\big), \quad x_{t<0} = 0$$

    the same as ``silu(conv1d(x.transpose(1, 2), padding=K-1)[..., :T])``. Keeps only x (a view of
    ``in_proj``'s output), w and b; the backward recomputes the pre-activation.
    Shapes: x (B, T, E), w (E, K), b (E,) or None -> u (B, T, E).
    """

    @staticmethod
    def _preact(x, w, b):
        T, K = x.shape[1], w.shape[1]
        acc = x * w[:, K - 1]  # (B, T, E)
        if b is not None:
            acc += b
        for k in range(K - 1):
            shift = K - 1 - k
            if shift < T:
                acc[:, shift:].addcmul_(x[:, :T - shift], w[:, k])
        return acc

    @staticmethod
    def forward(ctx, x, w, b):  # noqa: D102
        ctx.save_for_backward(x, w, b)
        return F.silu(_CausalConvSiluTimeMajor._preact(x, w, b))

    @staticmethod
    def backward(ctx, du):  # noqa: D102
        x, w, b = ctx.saved_tensors
        T, K = x.shape[1], w.shape[1]
        acc = _CausalConvSiluTimeMajor._preact(x, w, b)
        sg = torch.sigmoid(acc)
        dacc = torch.sub(1.0, sg).mul_(acc).add_(1.0).mul_(sg).mul_(du)  # du silu'(a) = du sg (1 + a (1 - sg))
        dx = dacc * w[:, K - 1]
        dw = torch.empty_like(w)
        dw[:, K - 1] = torch.einsum("bte,bte->e", dacc, x)
        for k in range(K - 1):
            shift = K - 1 - k
            if shift < T:
                dx[:, :T - shift].addcmul_(dacc[:, shift:], w[:, k])
                dw[:, k] = torch.einsum("bte,bte->e", dacc[:, shift:], x[:, :T - shift])
            else:
                dw[:, k] = 0
        return dx, dw, None if b is None else dacc.sum((0, 1))


def flip_valid(x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    r"""Reverse the valid prefix of every row in time, leaving its end padding in place.

    $$\mathrm{out}_{b,t} = x_{b,\ \ell_b - 1 - t} \text{ for } t < \ell_b, \qquad \mathrm{out}_{b,t} = x_{b,t}
      \text{ otherwise}, \qquad \ell_b = \textstyle\sum_t \mathrm{valid}_{b,t}$$

    An involution. A backward (right-to-left) pass of a causal block over end-padded rows is
    ``flip_valid(block(flip_valid(x, valid), valid), valid)``: a plain ``x.flip(1)`` would move the padding
    to the front, where the causal scan would carry it into every valid position.
    Shapes: x (B, T, ...), valid (B, T) bool with its True entries first in each row -> (B, T, ...).

    Raises:
        ValueError: valid has the wrong shape or dtype, or a row is not a prefix mask.
    """
    if valid is None:
        return x.flip(1)
    Bsz, T = x.shape[:2]
    if valid.shape != (Bsz, T) or valid.dtype != torch.bool:
        raise ValueError(f"flip_valid: valid must be a bool tensor of shape (B, T)=({Bsz}, {T}), "
                         f"got {valid.dtype} {tuple(valid.shape)}")
    t = torch.arange(T, device=x.device)
    lengths = valid.sum(1, keepdim=True)  # (B, 1)
    if not torch.equal(valid, t < lengths):
        raise ValueError("flip_valid: every row of valid must be True then False (padding at the end)")
    idx = torch.where(t < lengths, lengths - 1 - t, t)  # (B, T)
    return x.gather(1, idx.view(Bsz, T, *[1] * (x.dim() - 2)).expand_as(x))
