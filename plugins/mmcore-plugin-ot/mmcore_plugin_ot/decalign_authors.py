r"""DecAlign as the authors' code computes it: one function per function of taco-group/DecAlign (6fa8df9).

``gmm_prototype_ot`` with ``reference: authors`` runs these; the default (stabilised) aligner does
not. Each function states the authors' function it mirrors (``models/model.py`` unless stated) and
the paper equation it implements; ``../shared/reference/decalign.npz`` holds the authors' outputs and
gradients for each, and the tests check them to 1e-6 in float64 (docs/fidelity.md).

Layout: mmcore's, sequences (B, T, d) (the authors' code is channels-first (B, d, T); only the order
of the axes differs). Everything is differentiated end to end — EM iterations, the initial means
picked from the batch, the Sinkhorn iterations — exactly as the authors' autograd graph.

Reference: DecAlign (Qian et al., arXiv 2503.11892 / CVPR 2025), §3.1 Eq. 1, §3.2 Eq. 2-9,
§3.3 Eq. 10-12, §3.4 Eq. 13; how the authors' code departs from the paper: docs/fidelity.md.
"""

from __future__ import annotations

import math
from itertools import combinations, permutations
from typing import NamedTuple, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = [
    "AuthorsGmm", "masked_pool", "decoupling_loss", "init_gmm", "gmm_log_prob", "fit_gmm_em", "gaussian_cost",
    "sample_to_proto_cost", "multimarginal_sinkhorn", "hetero_loss", "distribution_stats", "stats_distance",
    "mmd", "DistributionEncoder", "homo_loss",
]

#: Constants of the authors' code (not configurable there).
WEIGHT_FLOOR = 1e-8  # log(max(pi, 1e-8)) in the GMM log-density
COUNT_FLOOR = 1e-6  # N_k = max(sum_n gamma_nk, 1e-6) in the M-step
SQRT_EPS = 1e-8  # sqrt(var1 * var2 + 1e-8) in the Bures cost
SINKHORN_EPS = 1e-8  # added to every Sinkhorn normalising sum, and the floor inside log(plan)
KERNEL_FLOOR = 1e-30  # the Gibbs kernel is clamped below at this
REG_FLOOR = 1e-6  # the kernel uses max(ot_reg, 1e-6)
STATS_VAR_FLOOR = 1e-6  # variance floor of the skewness


class AuthorsGmm(NamedTuple):
    """A diagonal GMM as the authors' EM returns it: pi (K,), mu (K, d), var (K, d), posterior (N, K)."""

    pi: Tensor
    mu: Tensor
    var: Tensor
    posterior: Tensor | None = None


def masked_pool(x: Tensor, mask: Tensor | None = None) -> Tensor:
    r"""Masked temporal mean (``_align_mask`` + ``_pool``).

    $$\bar x_{b} = \frac{\sum_t x_{bt}\, m_{bt}}{\max(\sum_t m_{bt}, 1)}$$

    The mask is first aligned to the sequence: truncated to T if longer, right-padded with zeros if
    shorter. With ``mask=None``: the plain mean over all T steps (padding included), as the authors'
    forward does when ``use_sequence_mask`` is false (their shipped configs).
    Shapes: x (B, T, d), mask (B, T') float or bool (1 = valid) or None -> (B, d).
    """
    if mask is None:
        return x.mean(1)
    T = x.shape[1]
    m = mask.to(x.dtype)
    m = m[:, :T] if m.shape[1] >= T else F.pad(m, (0, T - m.shape[1]))  # (B, T)
    return (x * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True).clamp_min(1.0)


def decoupling_loss(unique: Tensor, common: Tensor) -> Tensor:
    r"""Squared cosine between each sample's flattened unique and common features (``compute_decoupling_loss``).

    $$\mathcal L^{(m)}_{dec} = \frac1B \sum_b \cos^2\big(\mathrm{vec}\, F^{(m)}_{uni,b},\ \mathrm{vec}\, F^{(m)}_{com,b}\big)$$

    over all time steps (no mask; mmcore zeroes padding, which adds nothing to either norm or the dot
    product). PyTorch's ``cosine_similarity`` with eps 1e-8. The model's ``dec_loss`` is the mean of
    this over the modalities. Paper: Eq. 1 has the signed cosine summed over modalities.
    Shapes: unique, common (B, T, d) -> ().
    """
    cos = F.cosine_similarity(unique.flatten(1), common.flatten(1), dim=1, eps=1e-8)  # (B,)
    return cos.square().mean()


def init_gmm(x: Tensor, K: int, var_floor: float) -> AuthorsGmm:
    r"""Deterministic GMM start from the batch (``_init_gmm``).

    Means: rows $\mathrm{round}(\mathrm{linspace}(0, N-1, K))$ of x (linspace in float32, round half
    to even) when $N \ge K$, else the first K rows of x tiled $\lceil K/N\rceil$ times; variances: the
    population variance of x per dimension, clamped at ``var_floor``, for every component; weights 1/K.
    Means and variances are differentiable in x.
    Shapes: x (N, d) -> pi (K,), mu (K, d), var (K, d).
    """
    N, d = x.shape
    if N >= K:
        idx = torch.linspace(0, N - 1, K, dtype=torch.float32, device=x.device).round().long()  # half to even
        mu = x[idx]
    else:
        mu = x.repeat(math.ceil(K / N), 1)[:K]
    var = x.var(0, unbiased=False).clamp_min(var_floor).unsqueeze(0).expand(K, d)
    pi = torch.full((K,), 1.0 / K, dtype=x.dtype, device=x.device)
    return AuthorsGmm(pi, mu, var)


def gmm_log_prob(x: Tensor, pi: Tensor, mu: Tensor, var: Tensor) -> Tensor:
    r"""Diagonal-Gaussian log joint (``_gmm_log_prob``), DecAlign Eq. 2-3.

    $$\ell_{nk} = \log\max(\pi_k, 10^{-8}) - \tfrac12\Big[\sum_j \frac{(x_{nj} - \mu_{kj})^2}{s_{kj}} + \sum_j \log s_{kj} + d\log 2\pi\Big]$$

    Shapes: x (N, d), pi (K,), mu (K, d), var (K, d) -> (N, K).
    """
    d = x.shape[-1]
    quad = ((x.unsqueeze(1) - mu.unsqueeze(0)).square() / var.unsqueeze(0)).sum(-1)  # (N, K)
    return torch.log(pi.clamp_min(WEIGHT_FLOOR)) - 0.5 * (quad + var.log().sum(-1) + d * math.log(2 * math.pi))


def fit_gmm_em(x: Tensor, K: int, iters: int, var_floor: float) -> AuthorsGmm:
    r"""``iters`` EM steps from :func:`init_gmm`, differentiated end to end (``_fit_gmm_em``), DecAlign Eq. 2-4.

    $$\gamma = \mathrm{softmax}_k(\ell),\quad N_k = \max(\textstyle\sum_n \gamma_{nk}, 10^{-6}),\quad
      \pi_k = N_k / N,\quad \mu_k = \sum_n \gamma_{nk} x_n / N_k,\quad
      s_k = \max\big(\sum_n \gamma_{nk} x_n^2 / N_k - \mu_k^2,\ s_{\min}\big)$$

    then the posterior of the final mixture. No convergence test, no prior: an empty component keeps
    $N_k = 10^{-6}$ (its mean collapses towards 0).
    Shapes: x (N, d) -> :class:`AuthorsGmm` with posterior (N, K).
    """
    pi, mu, var, _ = init_gmm(x, K, var_floor)
    N = x.shape[0]
    for _ in range(iters):
        gamma = torch.softmax(gmm_log_prob(x, pi, mu, var), dim=1)  # (N, K)
        Nk = gamma.sum(0).clamp_min(COUNT_FLOOR)  # (K,)
        pi = Nk / N
        mu = gamma.transpose(0, 1) @ x / Nk.unsqueeze(1)  # (K, d)
        var = (gamma.transpose(0, 1) @ x.square() / Nk.unsqueeze(1) - mu.square()).clamp_min(var_floor)
    posterior = torch.softmax(gmm_log_prob(x, pi, mu, var), dim=1)
    return AuthorsGmm(pi, mu, var, posterior)


def _reduce(t: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return t.mean(-1)
    if reduction == "sum":
        return t.sum(-1)
    raise ValueError(f"cost reduction must be 'mean' or 'sum'; got {reduction!r}")


def gaussian_cost(mu1: Tensor, var1: Tensor, mu2: Tensor, var2: Tensor, reduction: str = "mean") -> Tensor:
    r"""Squared 2-Wasserstein cost between diagonal Gaussians (``_gaussian_cost``), DecAlign Eq. 6.

    $$C_{ij} = R_{\,k}\big[(\mu_{1ik} - \mu_{2jk})^2\big] + R_{\,k}\big[s_{1ik} + s_{2jk} - 2\sqrt{s_{1ik}s_{2jk} + 10^{-8}}\big]$$

    with $R$ the mean over the d dimensions (``reduction='mean'``, the authors' default) or the sum.
    Shapes: mu1, var1 (K1, d), mu2, var2 (K2, d) -> (K1, K2).
    """
    mean_term = _reduce((mu1.unsqueeze(1) - mu2.unsqueeze(0)).square(), reduction)
    v1, v2 = var1.unsqueeze(1), var2.unsqueeze(0)
    cov_term = _reduce(v1 + v2 - 2.0 * torch.sqrt(v1 * v2 + SQRT_EPS), reduction)
    return mean_term + cov_term


def sample_to_proto_cost(x: Tensor, mu: Tensor, var: Tensor | None = None, *, reduction: str = "mean",
                         mahalanobis: bool = False, var_floor: float = 1e-4) -> Tensor:
    r"""Cost from each sample to each prototype (``_sample_to_proto_cost``), DecAlign Eq. 9's distance.

    $$c_{nk} = R_j\,(x_{nj} - \mu_{kj})^2 \quad\text{or, with Mahalanobis,}\quad R_j\,\frac{(x_{nj} - \mu_{kj})^2}{\max(s_{kj}, s_{\min})}$$

    Shapes: x (N, d), mu (K, d), var (K, d) -> (N, K).
    """
    diff2 = (x.unsqueeze(1) - mu.unsqueeze(0)).square()  # (N, K, d)
    if mahalanobis:
        diff2 = diff2 / var.clamp_min(var_floor).unsqueeze(0)
    return _reduce(diff2, reduction)


def _along(v: Tensor, i: int, M: int) -> Tensor:
    shape = [1] * M
    shape[i] = v.shape[0]
    return v.reshape(shape)


def multimarginal_sinkhorn(cost: Tensor, marginals: Sequence[Tensor], reg: float, iters: int) -> tuple[Tensor, Tensor]:
    r"""Plain-domain multi-marginal Sinkhorn, a fixed number of sweeps (``_multi_marginal_sinkhorn``), Eq. 7-8.

    $$G = \max(e^{-C/\max(\lambda, 10^{-6})}, 10^{-30}),\qquad
      u^{(i)}_a \leftarrow \frac{\nu_i(a)}{\sum_{k: k_i = a} G(k) \prod_{j \ne i} u^{(j)}_{k_j} + 10^{-8}}$$

    for i = 1..M in turn (each update uses the newest vectors), ``iters`` sweeps from all-ones
    scalings, then $T = G \odot \bigotimes_i u^{(i)}$ and the returned value
    $\sum T C + \lambda \sum T(\log\max(T, 10^{-8}) - 1)$. The $10^{-8}$ keeps the marginals from being
    met exactly when kernel sums are small; gradients run through every sweep. The authors' code has
    M = 3; any M ≥ 2 works here (M = 2 is the plain Sinkhorn).
    Shapes: cost (K_1, ..., K_M), marginals M x (K_i,) -> (value (), plan (K_1, ..., K_M)).
    """
    M = cost.dim()
    if len(marginals) != M:
        raise ValueError(f"multimarginal_sinkhorn: cost has {M} axes but {len(marginals)} marginals were given")
    G = torch.exp(-cost / max(reg, REG_FLOOR)).clamp_min(KERNEL_FLOOR)
    us = [torch.ones_like(nu) for nu in marginals]
    for _ in range(iters):
        for i in range(M):
            w = G
            for j in range(M):
                if j != i:
                    w = w * _along(us[j], j, M)
            others = tuple(j for j in range(M) if j != i)
            us[i] = marginals[i] / (w.sum(dim=others) + SINKHORN_EPS)
    plan = G
    for i in range(M):
        plan = plan * _along(us[i], i, M)
    value = (plan * cost).sum() + reg * (plan * (torch.log(plan.clamp_min(SINKHORN_EPS)) - 1.0)).sum()
    return value, plan


class HeteroResult(NamedTuple):
    """``compute_hetero_loss``'s loss and its parts (diagnostics: pooled inputs, GMMs, marginals, plan)."""

    loss: Tensor
    ot_loss: Tensor
    local_proto_loss: Tensor
    pooled: list[Tensor]
    gmms: list[AuthorsGmm]
    marginals: list[Tensor]
    joint_cost: Tensor
    plan: Tensor


def hetero_loss(streams: Sequence[Tensor], masks: Sequence[Tensor | None] | None = None, *, num_prototypes: int,
                em_iters: int, var_floor: float, ot_reg: float, ot_iters: int, cost_reduction: str = "mean",
                mahalanobis: bool = False, entropic: bool = True, unrolled: bool = True) -> HeteroResult:
    r"""Prototype-level heterogeneity loss (``compute_hetero_loss``), DecAlign Eq. 2-9.

    1. $x_m$ = :func:`masked_pool` of modality m's unique stream; 2. a GMM per modality
    (:func:`fit_gmm_em`); 3. marginals $\nu_m = \bar\gamma_m / \max(\sum\bar\gamma_m, 10^{-8})$, the batch
    mean of the posteriors; 4. joint cost $C(k) = \sum_{i<j} C_{ij}(k_i, k_j)$ (:func:`gaussian_cost`);
    5. $\mathcal L_{OT}$ = :func:`multimarginal_sinkhorn`'s value; 6. the local term averaged over the
    $M(M-1)$ ordered pairs,

    $$\mathcal L_{i \to j} = \frac1N \sum_n \sum_k \gamma_i(n, k)\, c(x_{i,n}, \mu_{j,k})$$

    (the source's responsibilities weight the target's k-th prototype, index by index); 7. their sum.
    ``entropic=False`` drops the entropy term from $\mathcal L_{OT}$ (the paper's $\sum T^\star C$);
    ``unrolled=False`` holds the plan constant (envelope gradient $\partial_C = T$, none to the marginals).
    Shapes: streams M x (B, T_m, d), masks M x (B, T_m) or None -> :class:`HeteroResult`.
    """
    M = len(streams)
    masks = list(masks) if masks is not None else [None] * M
    pooled = [masked_pool(s, m) for s, m in zip(streams, masks)]  # M x (B, d)
    gmms = [fit_gmm_em(x, num_prototypes, em_iters, var_floor) for x in pooled]
    nus = []
    for g in gmms:
        nu = g.posterior.mean(0)
        nus.append(nu / nu.sum().clamp_min(1e-8))
    C = pooled[0].new_zeros([num_prototypes] * M)
    for i, j in combinations(range(M), 2):
        cij = gaussian_cost(gmms[i].mu, gmms[i].var, gmms[j].mu, gmms[j].var, cost_reduction)  # (K, K)
        C = C + _pair(cij, i, j, M)
    with torch.set_grad_enabled(torch.is_grad_enabled() and unrolled):
        value, plan = multimarginal_sinkhorn(C, nus, ot_reg, ot_iters)
    if not unrolled:
        plan = plan.detach()
        value = (plan * C).sum() + ot_reg * (plan * (torch.log(plan.clamp_min(SINKHORN_EPS)) - 1.0)).sum()
    ot_loss = value if entropic else (plan * C).sum()
    local = []
    for i, j in permutations(range(M), 2):
        cost = sample_to_proto_cost(pooled[i], gmms[j].mu, gmms[j].var, reduction=cost_reduction,
                                    mahalanobis=mahalanobis, var_floor=var_floor)  # (N, K)
        local.append((gmms[i].posterior * cost).sum(1).mean())
    local_loss = torch.stack(local).mean()
    return HeteroResult(ot_loss + local_loss, ot_loss, local_loss, pooled, gmms, nus, C, plan)


def _pair(cij: Tensor, i: int, j: int, M: int) -> Tensor:
    """A (K_i, K_j) pairwise cost viewed to broadcast over the M-axis joint cost."""
    shape = [1] * M
    shape[i], shape[j] = cij.shape
    return cij.reshape(shape)


def distribution_stats(z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r"""Mean, unbiased covariance and per-dimension skewness (``_distribution_stats``), DecAlign Eq. 10's moments.

    $$\mu = \bar z,\quad \Sigma = \frac{(z - \mu)^\top (z - \mu)}{\max(N - 1, 1)},\quad
      \Gamma_j = \frac{\frac1N\sum_n (z_{nj} - \mu_j)^3}{\max(\frac1N \sum_n (z_{nj} - \mu_j)^2, 10^{-6})^{3/2}}$$

    Shapes: z (N, p) -> mu (p,), cov (p, p), skew (p,).
    """
    N = z.shape[0]
    mu = z.mean(0)
    zc = z - mu
    cov = zc.transpose(0, 1) @ zc / max(N - 1, 1)
    var = zc.square().mean(0).clamp_min(STATS_VAR_FLOOR)
    skew = zc.pow(3).mean(0) / var.pow(1.5)
    return mu, cov, skew


def stats_distance(x: tuple[Tensor, Tensor, Tensor], y: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    r"""Moment distance (``_stats_distance``), DecAlign Eq. 10 per pair with element means.

    $$D = \mathrm{mean}_j (\mu_x - \mu_y)^2 + \mathrm{mean}_{jk} (\Sigma_x - \Sigma_y)^2 + \mathrm{mean}_j (\Gamma_x - \Gamma_y)^2$$

    Shapes: three (p,), (p, p), (p,) tensors per side -> ().
    """
    return (x[0] - y[0]).square().mean() + (x[1] - y[1]).square().mean() + (x[2] - y[2]).square().mean()


def mmd(x: Tensor, y: Tensor, bandwidth: float = 1.0) -> Tensor:
    r"""Biased Gaussian-kernel MMD² (``compute_mmd``), DecAlign Eq. 11.

    $$k(a, b) = \exp\Big(-\frac{\max(\lVert a\rVert^2 + \lVert b\rVert^2 - 2a^\top b, 0)}{2\,\beta}\Big),\qquad
      \mathrm{MMD}^2 = \overline{k(x, x)} + \overline{k(y, y)} - 2\,\overline{k(x, y)}$$

    with $\beta$ = ``bandwidth`` (the authors' ``mmd_bandwidth``: it plays the role of σ², not σ), means
    over all pairs, diagonal terms included.
    Shapes: x (N, p), y (N', p) -> ().
    """
    def kernel(a: Tensor, b: Tensor) -> Tensor:
        aa = a.square().sum(1, keepdim=True)  # (n, 1)
        bb = b.square().sum(1, keepdim=True).transpose(0, 1)  # (1, m)
        dist = (aa + bb - 2.0 * a @ b.transpose(0, 1)).clamp_min(0.0)
        return torch.exp(-dist / (2.0 * bandwidth))

    return kernel(x, x).mean() + kernel(y, y).mean() - 2.0 * kernel(x, y).mean()


class DistributionEncoder(nn.Sequential):
    r"""The authors' latent "distribution encoder" of the homogeneity branch (``DistributionEncoder``).

    $$z = W_2\,\mathrm{Dropout}(\mathrm{ReLU}(W_1 \bar c + b_1)) + b_2,\qquad W_1 \in \mathbb R^{d\times d},\ W_2 \in \mathbb R^{p \times d}$$

    A ``Sequential`` with the authors' layout, so its state-dict keys are theirs
    (``0.weight``, ``0.bias``, ``3.weight``, ``3.bias``). Paper: "mapping representations into a latent space".
    Shapes: (N, d) -> (N, p).
    """

    def __init__(self, d: int, out_dim: int, dropout: float = 0.0):
        super().__init__(nn.Linear(d, d), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d, out_dim))


class HomoResult(NamedTuple):
    """``compute_homo_loss``'s loss, its two parts, and the latent codes z_m (N, p)."""

    loss: Tensor
    sem: Tensor
    mmd: Tensor
    latents: list[Tensor]


def homo_loss(streams: Sequence[Tensor], masks: Sequence[Tensor | None] | None, encoders: Sequence[nn.Module], *,
              bandwidth: float = 1.0) -> HomoResult:
    r"""Homogeneity loss (``compute_homo_loss``), DecAlign Eq. 10-12.

    $$z_m = \mathrm{pde}_m(\bar c_m),\qquad \mathcal L_{homo} = \frac{1}{P}\sum_{i<j} D(z_i, z_j) + \frac1P \sum_{i<j} \mathrm{MMD}^2(z_i, z_j)$$

    with $\bar c_m$ the pooled common features (:func:`masked_pool`), D :func:`stats_distance` of
    :func:`distribution_stats`, P = M(M-1)/2 pairs (3 in the authors' code).
    Shapes: streams M x (B, T_m, d), masks M x (B, T_m) or None, encoders M modules -> :class:`HomoResult`.
    """
    M = len(streams)
    masks = list(masks) if masks is not None else [None] * M
    zs = [enc(masked_pool(c, m)) for c, m, enc in zip(streams, masks, encoders)]
    stats = [distribution_stats(z) for z in zs]
    pairs = list(combinations(range(M), 2))
    sem = sum(stats_distance(stats[i], stats[j]) for i, j in pairs) / len(pairs)
    dis = sum(mmd(zs[i], zs[j], bandwidth) for i, j in pairs) / len(pairs)
    return HomoResult(sem + dis, sem, dis, zs)
