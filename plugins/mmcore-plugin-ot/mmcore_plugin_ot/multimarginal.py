r"""Multi-marginal entropic optimal transport (3+ marginals, small supports) in the log domain.

POT has no multi-marginal Sinkhorn; this is the plain generalisation of ``sinkhorn_log`` to a cost
tensor, for the small supports of prototype alignment (DecAlign: K = 7 prototypes per modality and
3 modalities give a 7 x 7 x 7 cost). Memory and time per iteration are O(B · Π_i K_i): the plan is
dense, so 3 marginals of 100 points already need 10^6 entries per problem.

Conventions are those of :mod:`mmcore_plugin_ot.sinkhorn`: zero weights are padding (no mass, no
NaN), ``+inf`` costs forbid a cell, work in float64 if any input is float64 else float32, ``plan`` in
``cost.dtype``, a :class:`~mmcore_plugin_ot.sinkhorn.ConvergenceWarning` naming ``max_iter`` and
``reg`` when the iteration cap is hit.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
from torch import Tensor

from ._masks import compute_dtype, masked_logsumexp, tiny
from .sinkhorn import warn_not_converged

__all__ = ["MultiMarginalResult", "multimarginal_sinkhorn_plan"]


class MultiMarginalResult(NamedTuple):
    """Output of :func:`multimarginal_sinkhorn_plan`.

    plan: (B, K_1, ..., K_M) joint plan, ``cost.dtype``; exactly 0 on padding and ``+inf`` costs.
    log_scalings: M tensors (B, K_i); ``plan = exp(Σ_i log_scalings[i] - cost / reg)`` (broadcast),
        ``-inf`` on entries that carry no mass. The dual potentials are ``reg * log_scalings``.
    n_iter: number of sweeps (one update of every marginal) performed.
    err: (B,) largest L2 violation over the marginals, per problem.
    """

    plan: Tensor
    log_scalings: tuple[Tensor, ...]
    n_iter: int
    err: Tensor


def multimarginal_sinkhorn_plan(
    marginals: Sequence[Tensor] | Tensor,
    cost: Tensor,
    reg: float,
    *,
    max_iter: int = 1000,
    tol: float = 1e-6,
    check_every: int = 10,
    detach: bool = False,
) -> MultiMarginalResult:
    r"""Entropic multi-marginal OT plans for a batch of problems, solved in the log domain.

    $$T^\star = \arg\min_{T \ge 0} \sum_{k} T(k)\, C(k) + \varepsilon \sum_k T(k) (\log T(k) - 1)
      \quad \text{s.t.} \sum_{k_j : j \ne i} T(k_1, \dots, k_M) = \nu_i(k_i)\ \ \forall i, k_i$$

    where $k = (k_1, \dots, k_M)$ runs over $\prod_i [K_i]$, $C$ is the cost tensor, $\nu_i \in
    \Delta^{K_i}$ the marginals and $\varepsilon > 0$ the regularisation. The solution is
    $T(k) = \exp(\sum_i \log s_i(k_i) - C(k)/\varepsilon)$; one sweep updates every marginal in turn,
    $\log s_i \leftarrow \log \nu_i - \mathrm{lse}_{k_j: j \ne i}(\sum_{j \ne i} \log s_j(k_j) - C(k)/\varepsilon)$,
    and iteration stops when every marginal is within ``tol`` (L2) for every problem, checked after
    sweep 1 and then every ``check_every`` sweeps. With M = 2 this is :func:`sinkhorn_plan`'s problem.

    Reference: Benamou, Carlier, Cuturi, Nenna, Peyré 2015, "Iterative Bregman projections for
    regularized transportation problems" (SIAM J. Sci. Comput.), §4; DecAlign (arXiv 2503.11892),
    §3.2.2, Eq. 7–8.
    Notation: DecAlign's λ is ``reg``, its ν_i are ``marginals[i]``, its C(k) is ``cost``; its entropy
    term Σ T log T differs from ours by ``reg * Σ T``, a constant under the constraints (same plan).
    Shapes: marginals M x (B, K_i) or (B, M, K), cost (B, K_1, ..., K_M) -> plan (B, K_1, ..., K_M);
    unbatched marginals (K_i,) with cost (K_1, ..., K_M) also work.

    Args:
        marginals: the M ≥ 2 weight vectors, ≥ 0 (zero is padding), equal sums per problem.
        cost: the joint cost tensor; ``+inf`` forbids a cell.
        reg: entropic regularisation ε > 0, in cost units.
        max_iter: sweep cap; reaching it with the error above ``tol`` warns.
        tol: stopping threshold on every marginal's L2 error.
        check_every: sweeps between error checks (each check synchronises with the device).
        detach: sweep without autograd and differentiate only the final ``exp`` (potentials fixed).
    Returns:
        A :class:`MultiMarginalResult`.
    Raises:
        ValueError: on shape mismatch, fewer than 2 marginals, negative weights, NaN/-inf costs.
    Warns:
        ConvergenceWarning: when ``max_iter`` is reached with the error above ``tol``.
    """
    who = "multimarginal_sinkhorn_plan"
    nus = list(marginals.unbind(-2)) if isinstance(marginals, Tensor) else list(marginals)
    M = len(nus)
    unbatched = M >= 1 and cost.dim() == M and all(nu.dim() == 1 for nu in nus)
    if unbatched:
        nus, cost = [nu.unsqueeze(0) for nu in nus], cost.unsqueeze(0)
    _check(nus, cost, reg, max_iter, check_every, who)
    work = compute_dtype(cost, *nus)
    nus = [nu.to(work) for nu in nus]
    c = cost.to(work)

    support = torch.isfinite(c)  # (B, K_1, ..., K_M)
    for i, nu in enumerate(nus):
        support = support & _along(nu > 0, i, M)
    log_k = torch.where(support, -c / reg, torch.full_like(c, -math.inf))
    oks = [support.any(dim=_others(i, M)) for i in range(M)]  # M x (B, K_i)
    with torch.set_grad_enabled(torch.is_grad_enabled() and not detach), \
            torch.autocast(device_type=c.device.type, enabled=False):  # >= float32 under autocast too
        logs, n_iter, err = _iterate(nus, log_k, oks, max_iter, tol, check_every, who)
    if detach:
        logs = [s.detach() for s in logs]
    plan = torch.exp(_log_plan(log_k, logs))  # exp(-inf) = 0 exactly
    logs = [torch.where(ok, s, torch.full_like(s, -math.inf)) for s, ok in zip(logs, oks)]
    plan = plan.to(cost.dtype)
    if unbatched:
        return MultiMarginalResult(plan[0], tuple(s[0] for s in logs), n_iter, err[0])
    return MultiMarginalResult(plan, tuple(logs), n_iter, err)


def _others(i: int, M: int) -> tuple[int, ...]:
    """Dims of a (B, K_1, ..., K_M) tensor other than the batch and marginal i."""
    return tuple(1 + j for j in range(M) if j != i)


def _along(x: Tensor, i: int, M: int) -> Tensor:
    """View a (B, K_i) tensor as (B, 1, ..., K_i, ..., 1) to broadcast along marginal i."""
    shape = [x.shape[0]] + [1] * M
    shape[1 + i] = x.shape[1]
    return x.reshape(shape)


def _log_plan(log_k: Tensor, logs: Sequence[Tensor]) -> Tensor:
    M = len(logs)
    out = log_k
    for i, s in enumerate(logs):
        out = out + _along(s, i, M)
    return out  # (B, K_1, ..., K_M)


def _check(nus, cost, reg, max_iter, check_every, who):
    M = len(nus)
    if M < 2:
        raise ValueError(f"{who}: need at least 2 marginals; got {M}")
    want = (cost.shape[0],) + tuple(cost.shape[1:])
    got = [tuple(nu.shape) for nu in nus]
    if cost.dim() != M + 1 or any(nu.dim() != 2 or nu.shape != (want[0], want[1 + i]) for i, nu in enumerate(nus)):
        raise ValueError(
            f"{who}: cost is {tuple(cost.shape)} and the marginals are {got}; need cost (B, K_1, ..., K_M) "
            "with marginal i of shape (B, K_i)"
        )
    if not reg > 0:
        raise ValueError(f"{who}: reg must be > 0; got {reg}")
    if max_iter < 1 or check_every < 1:
        raise ValueError(f"{who}: max_iter and check_every must be >= 1; got {max_iter}, {check_every}")
    flags = torch.stack(
        [torch.stack([(nu < 0).any() for nu in nus]).any(), torch.isnan(cost).any() | (cost == -math.inf).any()]
    ).tolist()
    if flags[0]:
        raise ValueError(f"{who}: marginals must be >= 0 (zero marks padding); got a negative weight")
    if flags[1]:
        raise ValueError(f"{who}: cost has NaN or -inf entries; use +inf to forbid a cell")


def _iterate(nus, log_k, oks, max_iter, tol, check_every, who):
    M = len(nus)
    dims = [_others(i, M) for i in range(M)]
    full = bool(torch.stack([ok.all() for ok in oks]).all())  # every slice has a finite entry
    lse = torch.logsumexp if full else masked_logsumexp  # the fused op when it is safe: ~3x fewer ops
    log_nus = [
        torch.log(torch.where(ok, nu, torch.zeros_like(nu)).clamp_min(tiny(nu.dtype))) for nu, ok in zip(nus, oks)
    ]
    logs = [torch.zeros_like(nu) for nu in nus]
    done = 0
    while True:
        steps = 1 if done == 0 else min(check_every, max_iter - done)
        log_p = _log_plan(log_k, logs)  # rebuilt at each check: no drift from the incremental updates
        for _ in range(steps):
            for i in range(M):
                delta = log_nus[i] - lse(log_p, dims[i])  # (B, K_i)
                if not full:
                    delta = torch.where(oks[i], delta, torch.zeros_like(delta))
                logs[i] = logs[i] + delta
                log_p = log_p + _along(delta, i, M)
        done += steps
        plan = torch.exp(log_p)
        err = torch.stack(
            [torch.linalg.vector_norm(plan.sum(dims[i]) - nus[i], dim=-1) for i in range(M)], -1
        ).amax(-1)  # (B,)
        worst = float(err.detach().max())
        if worst < tol:
            break
        if done >= max_iter:
            warn_not_converged(who, worst, tol, done)
            break
    return logs, done, err.detach()
