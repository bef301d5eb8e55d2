r"""MM-Align as the authors' code computes it: one function per function of declare-lab/MM-Align (e244859).

The ``adl`` imputer with ``reference: authors`` (or the single switches ``solver: authors``,
``fitter_softmax: all``, ``decode: rows``, ``fit_loss: authors``, ``contrast_score: dot``, ...) runs
this computation; ``../shared/reference/mm_align.npz`` holds the authors' outputs and gradients for
each function here, and ``tests/test_authors_fixtures.py`` checks them to 1e-6 relative in float64.

Layout: mmcore's, batch-first ``(B, L, D)`` (the authors' encoders are time-first ``(L, B, D)``; only
the order of the axes differs). A batch holds one length ``l_b`` per sample, the same for both
modalities: the authors' plans are square ``l x l`` (aligned data). Padded positions are 0 in every
output, except the fitter's padded rows (``softmax(out_bias)``, as the authors'). The fitter itself
is :class:`mmcore_plugin_adl.fitter.AlignmentFitter` with ``softmax="all"``;
:func:`fitter_state_from_authors` maps the authors' ``SinkhornFitter`` state dict onto it.

How the authors' code departs from the paper (their Sinkhorn never imposes the column marginal, the
transposed Eq. 14, a raw-dot-product contrastive term, ...): the plugin README, "Authors-exact mode".
Reference: MM-Align (Han et al., EMNLP 2022), §3.4 Eq. 6–15, §3.5 Eq. 16–17, Alg. 1.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.nn import functional as F

from .window import to_dense, window_geometry

__all__ = [
    "COS_EPS", "BARRIER", "LAM", "MAX_ITER", "EPS", "OTResult", "prefix_mask", "pairwise_distances",
    "compute_optimal_transport", "otsolver_forward", "window_to_square", "sinkhorn_fitter_inference",
    "criterion_fit", "contra_loss", "fitter_state_from_authors",
]

#: Constants of the authors' ``OTSolver`` (``src/modules/OT_solver.py``; constructor defaults, not main.py arguments).
COS_EPS = 1e-5  # nn.CosineSimilarity(dim=2, eps=1e-5)
BARRIER = 100.0  # added to the cost outside the window (finite, not +inf)
LAM = 0.2  # kernel exp(-lam * M), i.e. mu = 1 / lam = 5 in Eq. 8-9
MAX_ITER = 10
EPS = 1e-7  # stop when max_i |u_i - sum_j P_ij| <= eps


class OTResult(NamedTuple):
    """``targets`` (B, L, L), ``dist`` (B,), ``num_iters`` (B,) long — ``compute_optimal_transport``'s outputs."""

    targets: Tensor
    dist: Tensor
    num_iters: Tensor


def prefix_mask(lengths: Tensor, L: int) -> Tensor:
    """(B, L) bool, True on the first ``lengths[b]`` steps."""
    return torch.arange(L, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def _check(name: str, x: Tensor, lengths: Tensor, dims: int = 3) -> None:
    if x.dim() != dims or lengths.dim() != 1 or lengths.shape[0] != x.shape[0]:
        raise ValueError(f"{name}: got a tensor of shape {tuple(x.shape)} and lengths {tuple(lengths.shape)}; need a "
                         f"batch-first {dims}-d tensor (B, L, ...) and lengths (B,)")
    if len(lengths) and (int(lengths.min()) < 1 or int(lengths.max()) > x.shape[1]):
        raise ValueError(f"{name}: lengths must lie in [1, L={x.shape[1]}]; got {lengths.tolist()}")


def pairwise_distances(x: Tensor, y: Tensor, lengths: Tensor, win_size: int, *, cos_eps: float = COS_EPS,
                       barrier: float = BARRIER) -> Tensor:
    r"""The authors' windowed cost (``OTSolver.pairwise_distances``; paper Eq. 7 with a finite barrier).

    $$M_{ij} = 1 - \cos_{\epsilon}(x_i, y_j) + 100\,[\,|i - j| > W\,],\qquad i, j < l$$

    computed in the inputs' dtype and then cast to **float32**, as the authors do; 0 outside ``l x l``.
    ``cos_eps`` is PyTorch's cosine-similarity eps (1e-5). No gradient in the authors' use (detached inputs).
    Shapes: x, y (B, L, D), lengths (B,) -> cost (B, L, L) float32.
    """
    _check("pairwise_distances", x, lengths)
    if y.shape != x.shape:
        raise ValueError(f"pairwise_distances: x is {tuple(x.shape)} and y is {tuple(y.shape)}; the authors' plans are "
                         "square, so both need the same (B, L, D)")
    L = x.shape[1]
    cos = F.cosine_similarity(x.unsqueeze(2), y.unsqueeze(1), dim=-1, eps=cos_eps)  # (B, L, L)
    idx = torch.arange(L, device=x.device)
    outside = (idx.view(-1, 1) - idx.view(1, -1)).abs() > win_size  # (L, L)
    cost = (1.0 - cos) + barrier * outside.to(cos.dtype)
    v = prefix_mask(lengths, L)
    cell = v.unsqueeze(2) & v.unsqueeze(1)  # (B, L, L)
    return torch.where(cell, cost, torch.zeros_like(cost)).float()


def compute_optimal_transport(M: Tensor, lengths: Tensor, *, lam: float = LAM, max_iter: int = MAX_ITER,
                              eps: float = EPS) -> OTResult:
    r"""The authors' solver (``OTSolver.compute_optimal_transport``; relates to paper Eq. 8–11), per sample on ``l x l``.

    $$P \leftarrow e^{-\lambda M} / \textstyle\sum e^{-\lambda M};\quad \text{while } \max_i |u_i - (P\mathbf 1)_i| > \epsilon:
      u = P\mathbf 1,\ P_{ij} \leftarrow P_{ij}\, r_i / u_i,\ P_{ij} \leftarrow P_{ij}\, c_i / (\mathbf 1^\top P)_i$$

    with $r_i = c_i = 1/l$ — the second step rescales **row** i by the sum of **column** i, so the column
    marginal is never imposed and the loop is at a fixed point after two passes. Returns
    ``targets_ij = P_ij / (P\mathbf 1)_j`` (column j divided by the sum of row j: ``P / P.sum(-1)``),
    ``dist = Σ P_ij M_ij`` (P before that division) and the passes run. Runs in ``M``'s dtype.
    Shapes: M (B, L, L), lengths (B,) -> targets (B, L, L) (0 outside ``l x l``), dist (B,), num_iters (B,).
    """
    _check("compute_optimal_transport", M, lengths)
    B, L, _ = M.shape
    v = prefix_mask(lengths, L)  # (B, L)
    cell = v.unsqueeze(2) & v.unsqueeze(1)
    inv = torch.where(v, 1.0 / lengths.to(M.dtype).unsqueeze(1), torch.zeros((), dtype=M.dtype))  # r = c = 1/l
    P = torch.where(cell, torch.exp(-lam * M), torch.zeros_like(M))
    P = P / P.sum((1, 2), keepdim=True)
    u = torch.zeros(B, L, dtype=M.dtype, device=M.device)
    iters = torch.zeros(B, dtype=torch.long, device=M.device)
    active = torch.ones(B, dtype=torch.bool, device=M.device)
    one = torch.ones((), dtype=M.dtype, device=M.device)
    for _ in range(max_iter):
        rows = P.sum(2)  # (B, L)
        active = active & ((u - rows).abs().amax(1) > eps)  # each sample stops on its own criterion
        if not bool(active.any()):
            break
        P1 = P * (inv / torch.where(v, rows, one)).unsqueeze(2)  # row i scaled by r_i / u_i
        cols = P1.sum(1)  # (B, L) column sums
        P2 = P1 * (inv / torch.where(v, cols, one)).unsqueeze(2)  # row i scaled by c_i / colsum_i
        P = torch.where(active.view(B, 1, 1), P2, P)
        u = torch.where(active.view(B, 1), rows, u)
        iters = iters + active.long()
    rows = P.sum(2)  # (B, L)
    targets = torch.where(cell, P / torch.where(v, rows, one).unsqueeze(1), torch.zeros_like(P))  # column j / row sum j
    dist = (P * M).sum((1, 2))
    return OTResult(targets, dist, iters)


def otsolver_forward(m1: Tensor, m2: Tensor, lengths: Tensor, win_size: int, *, lam: float = LAM,
                     max_iter: int = MAX_ITER, eps: float = EPS) -> OTResult:
    r"""``OTSolver.forward``: :func:`pairwise_distances` then :func:`compute_optimal_transport` per sample.

    The float32 cost is widened back to the inputs' dtype before solving: for float32 inputs this is
    the authors' end-to-end float32 path exactly; for float64 inputs it is the fixtures' convention
    (float32 costs widened to float64, README §3.2). No gradient (the authors detach both inputs).
    Shapes: m1, m2 (B, L, D), lengths (B,) -> :class:`OTResult`.
    """
    with torch.no_grad():
        cost = pairwise_distances(m1.detach(), m2.detach(), lengths, win_size).to(m1.dtype)
        return compute_optimal_transport(cost, lengths, lam=lam, max_iter=max_iter, eps=eps)


def window_to_square(preds: Tensor, lengths: Tensor) -> Tensor:
    r"""The authors' ``l x l`` matrix from window rows: $A_{ij} = \hat T_{i,\, j - i + W}$ for $|j - i| \le W$, $i, j < l$.

    Both branches of the authors' code (``W <= l`` and ``W > l``) build this; predicted mass on
    offsets outside ``[0, l)`` and on padded rows is dropped. Through mmcore's window geometry
    (:func:`mmcore_plugin_adl.window.window_geometry` with equal lengths, centre $c_i = i$).
    Shapes: preds (B, L, 2W+1), lengths (B,) -> A (B, L, L). Differentiable in ``preds``.
    """
    _check("window_to_square", preds, lengths)
    B, L, K = preds.shape
    if K % 2 != 1:
        raise ValueError(f"window_to_square: preds has {K} columns; need 2W+1 (odd)")
    v = prefix_mask(lengths, L)
    return to_dense(preds, window_geometry(v, v, (K - 1) // 2), L)


def sinkhorn_fitter_inference(A_preds: Tensor, x: Tensor, lengths: Tensor) -> Tensor:
    r"""The authors' decoding (``SinkhornFitter.inference``; relates to paper Eq. 14, transposed).

    $$h^2_i = \sum_j A_{ij}\, x_j\quad (i < l),\qquad 0\ (i \ge l)$$

    the predicted rows applied to the observed sequence, no normalisation (the paper sums the
    columns, $\hat z_j = \sum_i \hat A_{ij} z_i$). Shapes: A_preds (B, L, 2W+1), x (B, L, D), lengths (B,) -> (B, L, D).
    """
    from .decode import decode

    if x.shape[:2] != A_preds.shape[:2]:
        raise ValueError(f"sinkhorn_fitter_inference: A_preds is {tuple(A_preds.shape)} and x is {tuple(x.shape)}; "
                         "need the same (B, L)")
    return decode(window_to_square(A_preds, lengths), x, "rows")


def criterion_fit(preds: Tensor, truths: Tensor, lengths: Tensor) -> Tensor:
    r"""The authors' fit loss (``Solver._criterion_fit``; relates to paper Eq. 13).

    $$\mathcal L = \sum_b \frac{1}{l_b^2} \sum_{i, j < l_b} (A_{ij} - A^\star_{ij})^2$$

    ``nn.MSELoss`` over the whole ``l x l`` matrix (out-of-window targets compared with 0, no square
    root), summed over the batch; ``A`` from :func:`window_to_square`.
    Shapes: preds (B, L, 2W+1), truths (B, L, L) (top-left ``l x l`` used), lengths (B,) -> scalar.
    """
    from .losses import fit_loss_authors

    B, L, _ = preds.shape
    if truths.shape != (B, L, L):
        raise ValueError(f"criterion_fit: truths is {tuple(truths.shape)}; expected {(B, L, L)} for preds "
                         f"{tuple(preds.shape)}")
    v = prefix_mask(lengths, L)
    return fit_loss_authors(window_to_square(preds, lengths), truths, v.unsqueeze(2) & v.unsqueeze(1))


def contra_loss(x1: Tensor, x2: Tensor) -> Tensor:
    r"""The authors' contrastive term (``MMAlign._contra_loss``; relates to paper Eq. 16–17), a log-likelihood.

    $$\ell = \sum_i \Big(x^1_i \cdot x^2_i - \log \sum_j \exp(x^1_i \cdot x^2_j)\Big) \le 0$$

    raw dot products (τ = 1), summed over the batch; the authors minimise ``task - lbd * ℓ``, so the
    imputer's ``adl_con`` is $-\ell$. Shapes: x1, x2 (N, D) -> scalar.
    """
    if x1.dim() != 2 or x1.shape != x2.shape:
        raise ValueError(f"contra_loss: x1 is {tuple(x1.shape)} and x2 is {tuple(x2.shape)}; need two (N, D)")
    scores = x1 @ x2.T  # (N, N)
    return (scores.diagonal() - torch.logsumexp(scores, dim=1)).sum()


#: The authors' ``SinkhornFitter`` parameter names -> :class:`~mmcore_plugin_adl.fitter.AlignmentFitter`'s.
FITTER_STATE_MAP = {"rnn.": "gru.", "out.": "proj."}


def fitter_state_from_authors(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The authors' ``SinkhornFitter`` state dict (``rnn.*``, ``out.*``) as ``AlignmentFitter``'s (``gru.*``, ``proj.*``).

    Same GRU (gates r, z, n; ``weight_ih_l0`` ... ``bias_hh_l0_reverse``) and the same linear layer,
    only renamed. Raises ValueError on a key of neither module.
    """
    out = {}
    for k, t in state.items():
        new = next((to + k[len(src):] for src, to in FITTER_STATE_MAP.items() if k.startswith(src)), None)
        if new is None:
            raise ValueError(f"fitter_state_from_authors: {k!r} is not a SinkhornFitter parameter (expected rnn.* or out.*)")
        out[new] = t
    return out
