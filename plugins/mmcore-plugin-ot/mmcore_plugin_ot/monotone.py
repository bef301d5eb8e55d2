r"""Soft monotone alignment: forward-backward path marginals over an order-penalised lattice.

Each frame $j < m$ of a sequence is assigned to one anchor token $z_j < n$; a path $z$ scores

$$s(z) = \sum_{j<m} S_{z_j j} \;-\; \lambda\,\Pi(z),\qquad
\Pi(z) = z_0 + \sum_{j<m-1} \pi(z_j, z_{j+1}) + (n - 1 - z_{m-1}),\qquad
\pi(i, k) = \begin{cases} 0 & k \in \{i, i+1\} \\ k - i - 1 & k > i + 1 \ \text{(skipped tokens)} \\
i - k & k < i \ \text{(steps back)} \end{cases}$$

and the kernel returns the marginals $\gamma_{ij} = \Pr(z_j = i)$ under $\Pr(z) \propto e^{s(z)}$ by
the forward-backward algorithm. $\lambda$ = ``order`` is the order strength: $\lambda = 0$ makes the
frames independent, $\gamma_{\cdot j} = \operatorname{softmax}(S_{\cdot j})$; $\lambda \to \infty$
keeps only the left-to-right paths that start at token 0, end at token $n-1$ and move by 0 or 1
token per frame (HMM forced alignment; soft-DTW's path set for the (0, +1) steps).

Why a hand-written backward: the recursion is sequential in the frames, and autograd through a
Python loop of ~10 small ops per frame costs ~15x a Sinkhorn solve at MOSI sizes. Since
$\gamma = \nabla_S \log Z$, its Jacobian $\partial\gamma/\partial S = \nabla^2_S \log Z$ is symmetric,
so the vector-Jacobian product the backward needs equals a Jacobian-vector product, which is one
more forward-backward sweep carrying tangents (the expectation semiring of Li & Eisner 2009):
$\nabla_S \langle G, \gamma\rangle = \operatorname{Cov}_z\big(\mathbf 1[z_j = i],\ \textstyle\sum_l G_{z_l l}\big)$.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ._masks import tiny

__all__ = ["MonotoneResult", "monotone_marginals"]

#: Log-potential of padded tokens: finite (so no ``inf - inf`` and no NaN gradient) yet far below any
#: real path score.
NEG = -1e20


class MonotoneResult(NamedTuple):
    """Marginals ``gamma`` (B, n, m): column j is the distribution of frame j over the anchor tokens
    (each valid column sums to 1, padded rows and columns are 0)."""

    gamma: Tensor


def _penalty(n: int, dtype: torch.dtype, device) -> Tensor:
    """The transition penalty pi(i, k) of the module docstring: (n, n)."""
    i = torch.arange(n, device=device).view(-1, 1)
    k = torch.arange(n, device=device).view(1, -1)
    return torch.where(k > i + 1, k - i - 1, torch.where(k < i, i - k, torch.zeros_like(k))).to(dtype)


class _Lattice(NamedTuple):
    """Inputs of the two sweeps, run stacked in one loop ("2" = α, β'). β' runs on the frames in
    reverse; a row shorter than m starts its β' at step m - m_b (a "reset"), before which its state is
    finite junk, as are α's states at padded frames: nothing reads them."""

    E: Tensor  # (2, m, B, n): log-potential added at step t (α: frame t; β': frame m - 1 - t)
    init: Tensor  # (2, B, n): α_0 = S_0 + start, β'_{m-1} = S_{m-1} + end
    end: Tensor  # (B, n): what a reset adds to E[1, t]
    resets: list[tuple[int, Tensor]]  # (step t > 0, mask (B, 1)): rows whose β' starts at step t


def _lattice(S: Tensor, va: Tensor, vm: Tensor, start: Tensor, end: Tensor, fill: float) -> _Lattice:
    """The sweeps' inputs from scores S (B, n, m); padded tokens get ``fill``, padded frames 0."""
    B, n, m = S.shape
    E = S.new_empty((2, m, B, n))
    keep = (va.unsqueeze(2) & vm.unsqueeze(1)).permute(2, 0, 1)  # (m, B, n)
    pad = torch.where(va, torch.zeros((), dtype=S.dtype, device=S.device),
                      torch.full((), fill, dtype=S.dtype, device=S.device))  # (B, n)
    torch.where(keep, S.permute(2, 0, 1), pad, out=E[0])  # (m, B, n) frame-major emissions
    torch.index_select(E[0], 0, torch.arange(m - 1, -1, -1, device=S.device), out=E[1])  # frames reversed
    first = m - vm.sum(1)  # (B,): β' step of each row's last valid frame
    resets = [(t, (first == t).view(B, 1)) for t in sorted(set(first.tolist())) if 0 < t < m]
    return _Lattice(E, torch.stack([E[0, 0] + start, E[1, 0] + end]), end, resets)


def _sweep(lat: _Lattice, mats: Tensor) -> tuple[Tensor, Tensor]:
    """α and β' together: states (m, 2, B, n) and each step's q, (m - 1, 2, B, n).

    Step t: p = softmax(state) (a per-row rescaling of e^state, which cancels in gamma);
    q = p K' (α) or p K'^T (β'); state = log q + E[t]. Results go straight into preallocated
    buffers (``out=``): the loop is dispatch-bound.
    """
    m = lat.E.shape[1]
    states = lat.E.new_empty((m, *lat.init.shape))  # (m, 2, B, n)
    q = lat.E.new_empty((max(m - 1, 0), *lat.init.shape))
    states[0] = lat.init
    resets = dict(lat.resets)
    for t in range(1, m):
        torch.bmm(torch.softmax(states[t - 1], -1), mats, out=q[t - 1])  # (2, B, n), >= floor: see K'
        torch.log(q[t - 1], out=states[t]).add_(lat.E[:, t])
        if t in resets:
            states[t, 1] = torch.where(resets[t], lat.E[1, t] + lat.end, states[t, 1])
    return states, q


def _transitions(lam: Tensor, pi: Tensor) -> tuple[Tensor, Tensor]:
    r"""$K' = e^{-\lambda\pi} + \mathrm{tiny}$ for α and β' (2, n, n), and $dK'/d\lambda$.

    Why ``+ tiny``: p sums to 1, so every q = p K' is >= tiny and log q is finite without a clamp
    (a jump weight of 1e-38 in float32 instead of an underflowed 0).
    """
    K = torch.exp(-lam * pi)
    Kf = K + tiny(K.dtype)
    return torch.stack([Kf, Kf.t()]), torch.stack([-pi * K, (-pi * K).t()])


def _pair(states: Tensor, E0: Tensor) -> Tensor:
    """α_j + β_j per frame: (m, 2, B, n) -> (m, B, n), with β_j = β'_j - S_j."""
    return states[:, 0] + states[:, 1].flip(0) - E0


def _ends(va: Tensor, lam, fill: float) -> tuple[Tensor, Tensor]:
    """Log-potentials of the first and last frame's token: -λ i and -λ (n_b - 1 - i), ``fill`` on padding."""
    n = va.shape[1]
    idx = torch.arange(n, dtype=lam.dtype, device=va.device).view(1, -1)  # (1, n)
    n_b = va.sum(1, keepdim=True).to(lam.dtype)
    f = torch.full((), fill, dtype=lam.dtype, device=va.device)
    return torch.where(va, -lam * idx, f), torch.where(va, -lam * (n_b - 1 - idx), f)


class _MonotoneMarginals(torch.autograd.Function):
    @staticmethod
    def forward(ctx, S: Tensor, lam: Tensor, va: Tensor, vm: Tensor) -> Tensor:
        B, n, m = S.shape
        pi = _penalty(n, S.dtype, S.device)
        mats, _ = _transitions(lam, pi)
        start, end = _ends(va, lam, NEG)
        lat = _lattice(S, va, vm, start, end, NEG)
        states, q = _sweep(lat, mats)
        gamma = torch.softmax(_pair(states, lat.E[0]), -1)  # (m, B, n)
        keep = (va.unsqueeze(0) & vm.t().unsqueeze(2)) & (va.any(1) & vm.any(1)).view(1, B, 1)  # (m, B, n)
        gamma = torch.where(keep, gamma, torch.zeros((), dtype=S.dtype, device=S.device))
        ctx.save_for_backward(gamma, states, q, lam, va, vm, pi)
        return gamma.permute(1, 2, 0)  # (B, n, m)

    @staticmethod
    @once_differentiable
    def backward(ctx, G: Tensor):
        gamma, states, q, lam, va, vm, pi = ctx.saved_tensors
        want_S, want_lam = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        m, B, n = gamma.shape
        # tangent directions, stacked on the batch: d = 0 is dS = G (-> grad S, by symmetry), d = 1 is dλ = 1
        D = 2 if want_lam else 1
        vaD, vmD = va.repeat(D, 1), vm.repeat(D, 1)
        dS = torch.cat([G, torch.zeros_like(G)]) if want_lam else G
        mats, dmats = _transitions(lam, pi)
        lam_dot = torch.tensor([0.0, 1.0][:D], dtype=G.dtype, device=G.device).repeat_interleave(B).view(D * B, 1)
        start, end = _ends(vaD, lam_dot, 0.0)  # d(-λ i)/dλ etc., only in the λ direction
        lat = _lattice(dS, vaD, vmD, start, end, 0.0)
        p = torch.softmax(states[:-1], -1)  # (m - 1, 2, B, n): the forward's p, recomputed at once
        q_inv = q.reciprocal()
        E = lat.E  # what each step adds; resets and _pair need the emissions' own tangents (lat.E)
        if want_lam:
            p, q_inv = p.repeat(1, 1, D, 1), q_inv.repeat(1, 1, D, 1)
            # the λ direction's d log q = (p dK') / q depends on the forward only: one batched product
            E = E.clone()
            E[:, 1:] += (lam_dot.view(1, 1, D * B, 1) * torch.matmul(p, dmats.unsqueeze(0)) * q_inv).transpose(0, 1)
        sd = torch.empty_like(E.transpose(0, 1))  # (m, 2, D B, n): tangents of the states
        sd[0] = lat.init
        resets = dict(lat.resets)
        for t in range(1, m):
            torch.addcmul(E[:, t], torch.bmm(p[t - 1] * sd[t - 1], mats), q_inv[t - 1], out=sd[t])
            if t in resets:
                sd[t, 1] = torch.where(resets[t], lat.E[1, t] + lat.end, sd[t, 1])
        tau = _pair(sd, lat.E[0])  # (m, D B, n): E[Σ_l dS_l | z_j = i] + a constant per frame
        g = gamma.repeat(1, D, 1)
        dgamma = g * (tau - (g * tau).sum(-1, keepdim=True))  # (m, D B, n) = Cov(1[z_j = i], f)
        grad_S = dgamma[:, :B].permute(1, 2, 0) if want_S else None  # zero wherever gamma is
        grad_lam = (G * dgamma[:, B:].permute(1, 2, 0)).sum().reshape(lam.shape) if want_lam else None
        return grad_S, grad_lam, None, None


def monotone_marginals(score: Tensor, valid_a: Tensor, valid_m: Tensor, order: float | Tensor) -> MonotoneResult:
    r"""Frame-to-token path marginals of the order-penalised alignment lattice, batched.

    $$\gamma_{ij} = \Pr(z_j = i), \qquad \Pr(z) \propto \exp\Big(\sum_j S_{z_j j} - \lambda\,\Pi(z)\Big)$$

    with $\Pi(z)$ = tokens skipped at the start, between frames and at the end, plus steps back (see
    the module docstring); $n$, $m$ are each pair's valid lengths.

    Reference: forward-backward (Rabiner 1989, §III-A, Eq. 18-27) on a left-to-right lattice as in
    HMM forced alignment; $\gamma = \partial \log Z / \partial S$ (Mensch & Blondel 2018, differentiable
    dynamic programming) is soft-DTW's expected alignment (Cuturi & Blondel 2017) for the (0, +1) step
    set when $\lambda \to \infty$.
    Notation: $S$ is ``score`` (e.g. $-C/\varepsilon$), $\lambda$ is ``order``.
    Numerics: log-domain states, rescaled (softmax) at every step, which cancels in the per-frame
    normalisation, so nothing accumulates over long sequences. Transitions are one (B, n) x (n, n)
    product per step with $K' = e^{-\lambda\pi} + \mathrm{tiny}$ (a jump costing more than ~87 nats
    in float32 keeps weight 1e-38). Padded tokens get the finite log-potential ``NEG``; padded frames
    are never read.
    Gradients: a hand-written backward (see the module docstring) for ``score`` and ``order``;
    not twice differentiable.
    Shapes: score (B, n, m), valid_a (B, n), valid_m (B, m) bool prefix masks -> gamma (B, n, m).

    Args:
        score: log-potential of assigning frame j to token i; padded cells may hold anything finite.
        valid_a: True on real anchor tokens.
        valid_m: True on real frames.
        order: λ >= 0, nats per skipped token or step back (a float or a 0-dim tensor, which may require grad).
    Returns:
        :class:`MonotoneResult`; a pair with no valid token or frame gets gamma = 0.
    """
    lam = torch.as_tensor(order, dtype=score.dtype, device=score.device)
    if lam.dim() != 0:
        raise ValueError(f"monotone_marginals: order must be a scalar; got shape {tuple(lam.shape)}")
    return MonotoneResult(_MonotoneMarginals.apply(score, lam, valid_a.bool(), valid_m.bool()))
