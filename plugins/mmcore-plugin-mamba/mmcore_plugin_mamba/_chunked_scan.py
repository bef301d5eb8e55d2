r"""The ``torch`` backend: a chunked, log-depth selective scan in plain torch with a reverse-scan backward.

The recurrence $h_t = a_t \odot h_{t-1} + x_t$ (with $a_t = e^{\Delta_t A}$, $x_t = \Delta_t u_t B_t$)
is associative in the pairs $(a, x)$: $(a_1, x_1) \bullet (a_2, x_2) = (a_2 a_1,\ a_2 x_1 + x_2)$.
The time axis is split into chunks of $Q$ (a power of two) steps; then, for all chunks at once,

1. a Blelloch scan (up-sweep, down-sweep: $2\log_2 Q$ in-place steps) inside every chunk;
2. a Hillis-Steele scan ($\lceil\log_2(L/Q)\rceil$ steps) over the chunk totals, on $1/Q$ of the data;
3. one pass adding each chunk's carried-in state, decayed by the cumulative decay inside the chunk.

Depth $O(\log L)$ tensor operations, work $O(B L D N)$, every operation in place on two
$(B, L, D, N)$ buffers. The backward pass is the same scan run in reverse time on the adjoint
$g_t = C_t\,dy_t + a_{t+1} g_{t+1}$, followed by contractions for every gradient; autograd keeps only
the states $h$ (one $(B, L, D, N)$ tensor), not one tensor per step.

Decays are computed as $e^{\max(\Delta A,\,-40)}$ and products of decays are floored at $10^{-18}$, so
that every decay and every product of two decays is a normal float32 (>= 1e-36): such decays are
numerically zero for the state (an absolute error below 1e-17 |h|), while a denormal operand or
result would slow each multiply ~100x on x86.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

CHUNK = 64  # Q: longest chunk; measured 32/64/128 within noise at L = 4k, 64 keeps pad waste small
_MIN_LOG_DECAY = -40.0  # e^-40 ~ 4.2e-18
_MIN_DECAY = 1e-18  # the product of two decays stays >= 1e-36, above float32's smallest normal 1.2e-38


def _chunk_size(L: int) -> int:
    return min(CHUNK, 1 << max(0, (L - 1).bit_length()))


def _decays_(delta_t: torch.Tensor, A: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out <- exp(max(delta_t A, -40)); delta_t (B, L, D), A (D, N), out (B, L, D, N)."""
    torch.mul(delta_t[..., None], A, out=out)
    return out.clamp_(min=_MIN_LOG_DECAY).exp_()


def _combine_(a: torch.Tensor, x: torch.Tensor, dst, src) -> None:
    """Fold the segment at ``src`` into the segment at ``dst`` (positions along dim 2), in place."""
    x[:, :, dst].addcmul_(a[:, :, dst], x[:, :, src])
    a[:, :, dst].mul_(a[:, :, src]).clamp_(min=_MIN_DECAY)


def scan_(a: torch.Tensor, x: torch.Tensor, chunk: int, reverse: bool = False) -> torch.Tensor:
    r"""In-place inclusive scan $x_t \leftarrow a_t x_{t-1} + x_t$ along dim 1 ($x_{t+1}$ if ``reverse``).

    Shapes: a, x (B, L, M) contiguous, L a multiple of ``chunk`` (a power of two) -> x (B, L, M).
    On return ``a`` holds garbage (cumulative decays); ``x`` holds the states.
    """
    Bsz, L, M = x.shape
    Q, nc = chunk, L // chunk
    a4, x4 = a.view(Bsz, nc, Q, M), x.view(Bsz, nc, Q, M)  # (B, nc, Q, M)
    s = 1
    while s < Q:  # up-sweep: in each block of 2s steps, fold the earlier half into the later one
        if reverse:  # "earlier" in reverse time is the right half
            _combine_(a4, x4, slice(0, Q, 2 * s), slice(s, Q, 2 * s))
        else:
            _combine_(a4, x4, slice(2 * s - 1, Q, 2 * s), slice(s - 1, Q, 2 * s))
        s *= 2
    s = Q // 4
    while s >= 1:  # down-sweep: each midpoint still missing its prefix receives it from s steps earlier
        if reverse:
            _combine_(a4, x4, slice(s, Q - 2 * s, 2 * s), slice(2 * s, Q - s, 2 * s))
        else:
            _combine_(a4, x4, slice(3 * s - 1, Q, 2 * s), slice(2 * s - 1, Q - s, 2 * s))
        s //= 2
    if nc == 1:
        return x
    end = 0 if reverse else Q - 1  # where each chunk's total now sits
    at, xt = a4[:, :, end].clone(), x4[:, :, end].clone()  # (B, nc, M)
    k = 1
    while k < nc:  # Hillis-Steele over chunk totals: inclusive state at each chunk's end
        dst, src = (slice(0, nc - k), slice(k, nc)) if reverse else (slice(k, nc), slice(0, nc - k))
        xn, an = xt.clone(), at.clone()
        xn[:, dst].addcmul_(at[:, dst], xt[:, src])
        an[:, dst].mul_(at[:, src]).clamp_(min=_MIN_DECAY)
        xt, at = xn, an
        k *= 2
    if reverse:  # chunk c receives the state entering from chunk c + 1
        x4[:, :-1].addcmul_(a4[:, :-1], xt[:, 1:, None])
    else:
        x4[:, 1:].addcmul_(a4[:, 1:], xt[:, :-1, None])
    return x


def _time_major(t: torch.Tensor, Lp: int) -> torch.Tensor:
    """(B, D, L) -> zero-padded, contiguous (B, Lp, D)."""
    return F.pad(t, (0, Lp - t.shape[-1])).transpose(1, 2).contiguous()


class ChunkedScanFn(torch.autograd.Function):
    """y = selective scan of (u, delta, A, B, C) by the chunked scan; backward by the reverse scan.

    Shapes: u, delta (batch, dim, L); A (dim, N); B, C (batch, G, L, N) time-major -> y (batch, dim, L).
    Padding steps appended to reach a multiple of the chunk have delta = 0 (a = 1, x = 0), so they
    leave the state unchanged and receive no gradient.
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C):  # noqa: D102 - documented on the class
        Bsz, D, L = u.shape
        G, N = B.shape[1], A.shape[1]
        H, Q = D // G, _chunk_size(L)
        Lp = -(-L // Q) * Q
        dt, ut = _time_major(delta, Lp), _time_major(u, Lp)  # (B, Lp, D)
        Bt = F.pad(B, (0, 0, 0, Lp - L)).transpose(1, 2)  # (B, Lp, G, N)
        Ct = F.pad(C, (0, 0, 0, Lp - L)).transpose(1, 2)
        a = _decays_(dt, A, torch.empty(Bsz, Lp, D, N, dtype=u.dtype, device=u.device))
        h = torch.mul((dt * ut).view(Bsz, Lp, G, H, 1), Bt[:, :, :, None, :])  # (B, Lp, G, H, N)
        scan_(a.view(Bsz, Lp, D * N), h.view(Bsz, Lp, D * N), Q)
        y = torch.einsum("blghn,blgn->bghl", h, Ct).reshape(Bsz, D, Lp)[..., :L]
        ctx.save_for_backward(u, delta, A, B, C, h)
        return y.contiguous()

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):  # noqa: D102
        u, delta, A, B, C, h = ctx.saved_tensors  # h (B, Lp, G, H, N)
        Bsz, D, L = u.shape
        G, N = B.shape[1], A.shape[1]
        H, Lp = D // G, h.shape[1]
        Q = _chunk_size(L)
        dt, ut, dyt = _time_major(delta, Lp), _time_major(u, Lp), _time_major(dy, Lp)  # (B, Lp, D)
        Bt = F.pad(B, (0, 0, 0, Lp - L)).transpose(1, 2)  # (B, Lp, G, N)
        Ct = F.pad(C, (0, 0, 0, Lp - L)).transpose(1, 2)
        dt_next = F.pad(dt[:, 1:], (0, 0, 0, 1))  # delta_{t+1}: the decay that carries g_{t+1} to t
        a = _decays_(dt_next, A, torch.empty_like(h).view(Bsz, Lp, D, N))
        g = torch.mul(dyt.view(Bsz, Lp, G, H, 1), Ct[:, :, :, None, :])  # C_t dy_t, (B, Lp, G, H, N)
        scan_(a.view(Bsz, Lp, D * N), g.view(Bsz, Lp, D * N), Q, reverse=True)  # g_t = dL/dh_t
        dtu = (dt * ut).view(Bsz, Lp, G, H)
        dC = torch.einsum("blgh,blghn->bgln", dyt.view(Bsz, Lp, G, H), h)
        dB = torch.einsum("blgh,blghn->bgln", dtu, g)
        gB = torch.einsum("blghn,blgn->blgh", g, Bt).reshape(Bsz, Lp, D)  # sum_n g_t B_t
        q = a.view(Bsz, Lp, G, H, N)  # reuse the buffer: q = g (h_t - x_t) = g a_t h_{t-1}
        torch.mul(dtu[..., None], Bt[:, :, :, None, :], out=q)
        torch.sub(h, q, out=q).mul_(g)
        q = q.view(Bsz, Lp, D, N)
        dA = torch.einsum("bld,bldn->dn", dt, q)
        ddelta = torch.einsum("bldn,dn->bld", q, A) + ut * gB
        du = dt * gB
        return (du.transpose(1, 2)[..., :L].contiguous(), ddelta.transpose(1, 2)[..., :L].contiguous(),
                dA, dB[:, :, :L].contiguous(), dC[:, :, :L].contiguous())
