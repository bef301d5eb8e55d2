r"""Diagonal Gaussian mixtures refit per batch by a few MAP-EM steps, NaN-free by construction.

The mixture of one modality is $p(x) = \sum_k \pi_k \mathcal N(x; \mu_k, \operatorname{diag}(s_k))$.
Each batch starts from the stored prototypes $(\mu^0, s^0, \pi^0)$ and runs EM steps whose M-step
treats the stored Gaussian $k$ as ``κ`` (``prior_count``) pseudo-observations:

$$N_k = \sum_n w_n r_{nk},\quad
  \mu_k = \frac{\sum_n w_n r_{nk} x_n + \kappa \mu^0_k}{N_k + \kappa},\quad
  s_k = \max\Big(\frac{\sum_n w_n r_{nk} (x_n - \mu_k)^2 + \kappa\, s^0_k}{N_k + \kappa},\ s_{\min}\Big),\quad
  \pi_k = \frac{N_k + \kappa}{\sum_{k'} N_{k'} + K\kappa}$$

with the E-step $\log r_{nk} = \log \pi_k + \log \mathcal N(x_n; \mu_k, s_k) - \mathrm{lse}_{k'}(\cdot)$ in the
log domain, $w_n \in \{0, 1\}$ the valid-token weights and $s_{\min}$ = ``var_floor``. So: an empty
or tiny component stays at (or near) its stored Gaussian instead of dividing by zero; a
component collapsing onto duplicate points stops at the variance floor; the weights are
Laplace-smoothed (never 0, so $\log \pi$ is finite); the responsibilities are a softmax of finite
log-joints, so they are never NaN. Every update is a ratio of non-negative sums over a denominator
$\ge \kappa > 0$. The prior's pull is $O(\kappa / N_k)$: negligible for a populated component.

Reference: Bishop 2006, PRML §9.2.2 (EM for Gaussian mixtures), MAP-EM with a conjugate prior as
in Ormoneit & Tresp 1998; DecAlign (arXiv 2503.11892), §3.2.1, Eq. 2-4.
Shapes: x (N, d), w (N,) -> means, vars (K, d), log_weights (K,), responsibilities (N, K).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor


class Gmm(NamedTuple):
    """A diagonal mixture: means (K, d), vars (K, d) > 0, log_weights (K,) (log-probabilities)."""

    means: Tensor
    vars: Tensor
    log_weights: Tensor

    def detach(self) -> "Gmm":
        return Gmm(self.means.detach(), self.vars.detach(), self.log_weights.detach())


def log_joint(x: Tensor, g: Gmm) -> Tensor:
    r"""$\log \pi_k + \log \mathcal N(x_n; \mu_k, \operatorname{diag} s_k)$: x (N, d) -> (N, K).

    Computed from the differences (not the expanded square) so nothing cancels.
    """
    d = x.shape[-1]
    diff2 = (x.unsqueeze(1) - g.means.unsqueeze(0)).square()  # (N, K, d)
    quad = (diff2 / g.vars.unsqueeze(0)).sum(-1)  # (N, K)
    log_det = g.vars.log().sum(-1)  # (K,)
    return g.log_weights - 0.5 * (quad + log_det + d * math.log(2 * math.pi))  # (N, K)


def responsibilities(x: Tensor, g: Gmm) -> Tensor:
    """Posterior $r_{nk}$ (rows sum to 1): x (N, d) -> (N, K)."""
    return torch.softmax(log_joint(x, g), dim=-1)


def em_step(x: Tensor, w: Tensor, g: Gmm, prior: Gmm, var_floor: float, prior_count: float) -> Gmm:
    """One E-step and MAP M-step (module docstring): x (N, d), w (N,) -> the updated mixture."""
    K = g.means.shape[0]
    r = responsibilities(x, g) * w.unsqueeze(1)  # (N, K), 0 on padding
    Nk = r.sum(0)  # (K,)
    denom = (Nk + prior_count).unsqueeze(1)  # (K, 1) >= prior_count > 0
    means = (r.transpose(0, 1) @ x + prior_count * prior.means) / denom  # (K, d)
    scatter = (r.unsqueeze(2) * (x.unsqueeze(1) - means.unsqueeze(0)).square()).sum(0)  # (K, d)
    vars_ = ((scatter + prior_count * prior.vars) / denom).clamp_min(var_floor)  # (K, d)
    log_weights = torch.log(Nk + prior_count) - torch.log(Nk.sum() + K * prior_count)  # (K,)
    return Gmm(means, vars_, log_weights)


def fit(x: Tensor, w: Tensor, prior: Gmm, *, steps: int, grad_steps: int, var_floor: float,
        prior_count: float) -> Gmm:
    """``steps`` EM steps from ``prior``; only the last ``grad_steps`` are recorded by autograd.

    Why: the earlier steps only move the responsibilities towards their fixed point; keeping them
    out of the graph bounds memory at ``grad_steps`` x O(N K d) however many steps run.
    Shapes: x (N, d), w (N,) -> a :class:`Gmm` with (K, d) means.
    """
    prior = prior.detach()
    g = prior
    for step in range(steps):
        with torch.set_grad_enabled(torch.is_grad_enabled() and step >= steps - grad_steps):
            g = em_step(x, w, g, prior, var_floor, prior_count)
    return g


def init_from_data(x: Tensor, w: Tensor, K: int, generator: torch.Generator, var_floor: float) -> Gmm:
    """First prototypes by k-means++ seeding over the valid tokens; global variance; uniform weights.

    k-means++ (Arthur & Vassilvitskii 2007): the first mean is a token drawn uniformly, each next one
    a token drawn with probability proportional to its squared distance to the nearest mean so far,
    so well-separated clusters each get a prototype and EM does not start stuck between two of
    them. Draws use ``generator`` (no global RNG state). When every token is already a mean (fewer
    distinct tokens than K), the remaining means are drawn around the data mean. A jitter of 1e-3
    standard deviations breaks ties between duplicate means, which EM could never split.
    Shapes: x (N, d), w (N,) -> means, vars (K, d), uniform log_weights (K,).
    """
    dev, dt = x.device, x.dtype
    d = x.shape[-1]
    pts = x[w > 0].detach().cpu().double()  # (N_valid, d): seeding is sequential and small, do it on the CPU
    n = pts.shape[0]
    if n == 0:
        mean, var = torch.zeros(d, dtype=torch.float64), torch.ones(d, dtype=torch.float64)
    else:
        mean = pts.mean(0)
        var = pts.var(0, unbiased=False).clamp_min(var_floor) if n > 1 else torch.ones(d, dtype=torch.float64)
    z = torch.randn(2, K, d, generator=generator, dtype=torch.float64)  # (2, K, d)
    means = mean + var.sqrt() * z[0]  # (K, d): fallback draws around the mean
    if n > 0:
        picked = [int(torch.randint(n, (1,), generator=generator))]
        d2 = (pts - pts[picked[0]]).square().sum(1)  # (N_valid,) squared distance to the nearest mean
        while len(picked) < K and bool(d2.sum() > 0):
            nxt = int(torch.multinomial(d2 / d2.sum(), 1, generator=generator))
            picked.append(nxt)
            d2 = torch.minimum(d2, (pts - pts[nxt]).square().sum(1))
        means[: len(picked)] = pts[picked]
    means = means + 1e-3 * var.sqrt() * z[1]
    vars_ = var.expand(K, d).clone()
    return Gmm(means.to(dev, dt), vars_.to(dev, dt), torch.full((K,), -math.log(K), device=dev, dtype=dt))
