r"""The ``torch`` backend: a chunked selective scan in plain torch, in slabs of bounded memory.

The recurrence $h_t = a_t \odot h_{t-1} + x_t$ (with $a_t = e^{\Delta_t A}$, $x_t = \Delta_t u_t B_t$)
is cut into chunks of $Q$ steps, and the chunks into slabs of at most ``SLAB_ELEMENTS`` state
values $(B, L_s, D, N)$. Slabs run one after the other, carrying the state; inside a slab all chunks
run at once, laid out $(B, n_c, Q, G, N, H)$ (channel $d = (g, h)$ innermost); step $q$ of every chunk
is one view:

1. pass 1: $Q$ in-place ``addcmul_`` steps over $x$ give every chunk's end state from a zero start;
2. carry: $n_c$ small steps give every chunk's start state from its predecessor's, using the chunk's
   total decay $e^{A \sum_q \Delta_q}$ (one exp on $1/Q$ of the data);
3. pass 2: the same $Q$ steps over $x$ again, from the true start states, give every $h_t$;
   $y_t = C_t^\top h_t$ by a batched matmul.

Autograd keeps the inputs and the chunk start states, $(B, L/Q, D, N)$ — $N/Q$ values per input
value, so O(B·D·L) memory with $Q \ge N$ — plus one slab of work buffers. The backward pass walks the
slabs in reverse: it recomputes the slab's $h$ from the saved start states (pass 2 only), runs the
adjoint $g_t = C_t\,dy_t + a_{t+1} g_{t+1}$ with the same two passes and carry in reverse time, and
contracts for every gradient (the sums over $N$ or $H$ as batched matmuls). The forward uses two
slab-sized buffers, the backward three, each pass in place over a slab of 2 MiB that stays in the
shared cache; the (B, D, L) inputs and outputs are transposed slab by slab. The work buffer is kept
between calls on CPU (see ``_take_store``). Python issues $O(L/L_s \cdot (Q + n_c))$ torch calls.

Decays are computed as $e^{\max(\Delta A,\,-40)}$ when some $\Delta A$ may fall below $-40$ (a bound
from the extremes of $\Delta$ and $A$, once a call), and chunk totals as $e^{\max(A \sum \Delta,\,-80)}$:
such decays are numerically zero for the state (an absolute error below 1e-17 |h|), while a denormal
operand or result would slow each multiply ~100x on x86.
"""

from __future__ import annotations

import math
import threading

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

CHUNK = 16  # Q, steps per chunk; with Q >= N the saved chunk states are at most one value per input value
SLAB_ELEMENTS = 1 << 19  # state values per work buffer (2 MiB in float32); 2^20 and 2^18 measured slower
_MIN_LOG_DECAY = -40.0  # e^-40 ~ 4.2e-18
_MIN_LOG_TOTAL = -80.0  # e^-80 ~ 1.8e-35, above float32's smallest normal 1.2e-38
LOG2E = 1.4426950408889634  # log2(e): exp(x) = 2^(x log2 e)


def _plan(Bsz: int, D: int, N: int, L: int) -> tuple[int, int, int]:
    """(Q, padded length Lp, chunks per slab)."""
    Q = min(CHUNK, L)
    Lp = -(-L // Q) * Q
    per_slab = max(1, min(Lp // Q, SLAB_ELEMENTS // max(1, Bsz * Q * D * N)))
    return Q, Lp, per_slab


def _pad_steps(t: torch.Tensor, Lp: int) -> torch.Tensor:
    """(B, G, L, N) -> (B, G, Lp, N), zero steps appended (no copy when L = Lp)."""
    return t if t.shape[2] == Lp else F.pad(t, (0, 0, 0, Lp - t.shape[2]))


def _chunks(t: torch.Tensor, l0: int, nc: int, Q: int, *tail: int) -> torch.Tensor:
    """Steps l0 .. l0 + nc·Q of t (B, Lp, ...) as a view (B, nc, Q, *tail): step q of chunk c at [:, c, q]."""
    return t[:, l0:l0 + nc * Q].reshape(t.shape[0], nc, Q, *tail)


_POOL: list[torch.Tensor] = []  # spare flat CPU work buffers, kept between calls
_POOL_SIZE = 2
_POOL_MAX_BYTES = 32 << 20  # larger buffers (per_slab = 1 at large batch x dim x N) are not kept
_POOL_LOCK = threading.Lock()


def _take_store(like: torch.Tensor, size: int) -> torch.Tensor:
    """A flat work buffer of at least ``size`` values of like's dtype; on CPU the smallest pooled one that fits.

    Why: a fresh multi-MiB CPU tensor may be fresh pages from the OS (it depends on the allocator's
    state), one page fault per 4 KiB on first touch: up to ~14,000 in a fwd+bwd at L=4096, D=128,
    N=16, ~20% of its time. The pool holds at most ``_POOL_SIZE`` buffers of at most ``_POOL_MAX_BYTES``
    (7.4 and 4.8 MiB there, float32).
    """
    if like.device.type == "cpu":
        with _POOL_LOCK:
            fits = [i for i, t in enumerate(_POOL) if t.dtype == like.dtype and t.numel() >= size]
            if fits:
                return _POOL.pop(min(fits, key=lambda i: _POOL[i].numel()))
    return like.new_empty(size)


def _give_back(store: torch.Tensor) -> None:
    """Return a CPU work buffer to the pool, which keeps the ``_POOL_SIZE`` largest."""
    if store.device.type == "cpu" and store.numel() * store.element_size() <= _POOL_MAX_BYTES:
        with _POOL_LOCK:
            _POOL.append(store)
            _POOL.sort(key=lambda t: -t.numel())
            del _POOL[_POOL_SIZE:]


def _carve(store: torch.Tensor, *shapes: tuple[int, ...]) -> list[torch.Tensor]:
    """Contiguous views of consecutive parts of a flat work buffer, one per shape."""
    views, i = [], 0
    for shape in shapes:
        n = math.prod(shape)
        views.append(store[i:i + n].view(shape))
        i += n
    return views


def _rows_in(t: torch.Tensor, l0: int, n: int, time_major: bool, buf: torch.Tensor, tmp: torch.Tensor) -> torch.Tensor:
    """Steps l0 .. l0 + n of t, (B, L, D) if time_major else (B, D, L), as a contiguous (B, n, D).

    A view of a time-major t; else copied (transposed) into buf (B, n, D), zero past step L; tmp is a
    flat scratch of as many values.
    """
    L = t.shape[1] if time_major else t.shape[2]
    m = min(n, L - l0)
    if time_major and m == n:
        return t[:, l0:l0 + n]
    if time_major:
        buf[:, :m].copy_(t[:, l0:l0 + m])
    else:
        _transpose_into(buf[:, :m], t[:, :, l0:l0 + m], tmp)
    if m < n:
        buf[:, m:].zero_()
    return buf


def _transpose_into(out: torch.Tensor, src: torch.Tensor, tmp: torch.Tensor) -> None:
    """out (B, Y, X) <- src (B, X, Y) transposed, through tmp (a flat scratch of as many values).

    Why: torch copies the transpose of a whole contiguous matrix with a blocked kernel; the slab of a
    longer (B, D, L) tensor does not qualify and copies ~3.5x slower (B=1, 128 x 512 slabs of L=4096),
    so the slab is first copied into tmp (B, X, Y) row by row, then transposed matrix by matrix.
    """
    Bsz, X, Y = src.shape
    t = tmp[:src.numel()].view(Bsz, X, Y)
    t.copy_(src)
    for b in range(Bsz):
        out[b].copy_(t[b].t())


def _rows_out(t: torch.Tensor, l0: int, rows: torch.Tensor, time_major: bool, tmp: torch.Tensor) -> None:
    """Steps l0 .. l0 + n of t, (B, L, D) if time_major else (B, D, L), <- rows (B, n, D); steps past L dropped.

    tmp: a flat scratch of as many values as rows (the transpose goes through it, see ``_transpose_into``).
    """
    if time_major:
        if rows.data_ptr() != t[:, l0:].data_ptr():  # not already written in place
            t[:, l0:l0 + rows.shape[1]].copy_(rows[:, :t.shape[1] - l0])
        return
    Bsz, n, D = rows.shape
    m = min(n, t.shape[2] - l0)
    if Bsz > 1:  # the direct strided copy is faster here
        t[:, :, l0:l0 + m].copy_(rows[:, :m].transpose(1, 2))
        return
    tt = tmp[:D * m].view(D, m)
    tt.copy_(rows[0, :m].t())
    t[0, :, l0:l0 + m].copy_(tt)


def _rows_target(t: torch.Tensor, l0: int, n: int, time_major: bool, buf: torch.Tensor) -> torch.Tensor:
    """Where steps l0 .. l0 + n of t go as a contiguous (B, n, D): t itself if time-major and in range, else buf."""
    return t[:, l0:l0 + n] if time_major and l0 + n <= t.shape[1] else buf


def _decays_(dt: torch.Tensor, A2: torch.Tensor, out: torch.Tensor, clamp: bool) -> torch.Tensor:
    """out <- exp(max(dt A, -40)) = 2^max(dt A2, -40 log2 e); dt (B, nc, Q, G, 1, H), A2 = A log2 e (G, N, H).

    ``clamp=False`` skips the max where it cannot bite (see ``_needs_clamp``).
    Why exp2: torch's float32 exp2 is ~4.5x faster than its exp on x86 (0.14 vs 0.65 ns a value).
    """
    torch.mul(dt, A2, out=out)
    if clamp:
        out.clamp_(min=_MIN_LOG_DECAY * LOG2E)
    return torch.exp2(out, out=out)


def _needs_clamp(delta: torch.Tensor, A2: torch.Tensor) -> bool:
    """Whether some delta A2 may fall below -40 log2 e: a bound from the factors' extremes (always on GPUs)."""
    if delta.device.type != "cpu":
        return True
    d_lo, d_hi = torch.aminmax(delta)
    a_lo, a_hi = torch.aminmax(A2)
    return min(float(d) * float(a) for d in (d_lo, d_hi) for a in (a_lo, a_hi)) < _MIN_LOG_DECAY * LOG2E


def _chunk_decays(dt: torch.Tensor, A2: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out <- every chunk's total decay exp(max(A sum_q dt_q, -80)); dt (B, nc, Q, G, 1, H), out (B, nc, G, N, H)."""
    torch.mul(dt.sum(2), A2, out=out).clamp_(min=_MIN_LOG_TOTAL * LOG2E)
    return torch.exp2(out, out=out)


def _forward_steps_(a: list, h: list, start: torch.Tensor | None) -> None:
    """In place, h[q] += a[q] h[q-1] for q = 0 .. Q-1 with h[-1] = start (or 0): h holds x on entry.

    Lists of the Q per-step views, each step q of every chunk of the slab, (B, nc, ...); start (B, nc, ...).
    In place: writing each step to a separate output measured ~40% slower.
    """
    if start is not None:
        h[0].addcmul_(a[0], start)
    for q in range(1, len(a)):
        h[q].addcmul_(a[q], h[q - 1])


def _reverse_steps_(a: list, g: list) -> None:
    """In place, g[q] += a[q+1] g[q+1] for q = Q-2 .. 0; lists of the Q per-step views."""
    for q in range(len(a) - 2, -1, -1):
        g[q].addcmul_(a[q + 1], g[q + 1])


def _carry(ends: list, totals: list, out: list, first: torch.Tensor) -> torch.Tensor:
    """out[0] = first, out[c] = ends[c-1] + totals[c-1] out[c-1]; returns the value after the last chunk.

    Lists of per-chunk views; the same recurrence runs backwards for the adjoint with reversed lists.
    """
    out[0].copy_(first)
    for c in range(1, len(out)):
        torch.addcmul(ends[c - 1], totals[c - 1], out[c - 1], out=out[c])
    return torch.addcmul(ends[-1], totals[-1], out[-1])


class _Slab:
    """Views of one call's work buffer for slabs of ``nc`` chunks, and their per-step views (unbound once).

    Why: unbinding the step and chunk views costs Python time on every slab; slabs of one call share
    the buffer, so all but a shorter last slab reuse the views of the first.
    """

    def __init__(self, store, Bsz, nc, Q, G, N, H, names):
        D = G * H
        shapes = {"full": (Bsz, nc, Q, G, N, H), "rows": (Bsz, nc * Q, D), "row": (Bsz, nc, Q, G, 1, H),
                  "chunk": (Bsz, nc, G, N, H)}
        kinds = [kind for kind, _ in names]
        for (kind, name), view in zip(names, _carve(store, *(shapes[k] for k in kinds))):
            setattr(self, name, view)
            if kind == "full":
                setattr(self, name + "_q", view.unbind(2))
            elif kind == "chunk":
                setattr(self, name + "_c", view.unbind(1))


def _setup(u, A, B, C, time_major):
    """Sizes and plan shared by the forward and backward passes, and A, B, C in the scan's layouts.

    Returns Bsz, L, D, G, N, H, Q, Lp, per_slab, At (G, N, H), A2 = At log2(e), and B, C as
    (B, Lp, G, N) views; B, C come in as (batch, G, L, N).
    """
    if time_major:
        Bsz, L, D = u.shape
    else:
        Bsz, D, L = u.shape
    G, N = B.shape[1], A.shape[1]
    H = D // G
    Q, Lp, per_slab = _plan(Bsz, D, N, L)
    At = A.view(G, H, N).transpose(1, 2).contiguous()  # (G, N, H)
    Bt, Ct = (_pad_steps(t, Lp).transpose(1, 2) for t in (B, C))  # (B, Lp, G, N) views
    return Bsz, L, D, G, N, H, Q, Lp, per_slab, At, At * LOG2E, Bt, Ct


class ChunkedScanFn(torch.autograd.Function):
    r"""y = selective scan of (u, delta, A, B, C) by chunks in slabs; backward by the reverse scan.

    Shapes: u, delta (batch, dim, L); A (dim, N); B, C (batch, G, L, N) time-major -> y (batch, dim, L);
    with ``time_major=True``: u, delta (batch, L, dim); B, C (batch, L, N) -> y (batch, L, dim).
    Inside, channel d = (group, h) and a state value is laid out (..., G, N, H): the channel axis is
    innermost, so the readout $C_t^\top h_t$ and $\sum_n g_t B_t$ are (1, N) @ (N, H) matmuls and the
    other contractions sum over contiguous rows. The (batch, dim, L) layout is transposed slab by slab
    into (and out of) the work buffer. Padding steps appended to reach a multiple of the chunk have
    delta = 0 (a = 1, x = 0), so they leave the state unchanged and receive no gradient.
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, time_major=False):  # noqa: D102 - documented on the class
        if time_major:  # u, delta (batch, L, dim); B, C (batch, L, N)
            B, C = B[:, None], C[:, None]  # (batch, 1, L, N) views
        u, delta = u.contiguous(), delta.contiguous()
        Bsz, L, D, G, N, H, Q, Lp, per_slab, At, A2, Bt, Ct = _setup(u, A, B, C, time_major)
        nch = Lp // Q
        starts = u.new_empty(Bsz, nch, G, N, H)  # every chunk's start state: all the backward keeps
        y = u.new_empty(Bsz, L, D) if time_major else u.new_empty(Bsz, D, L)
        S, R = Bsz * per_slab * Q * D * N, Bsz * per_slab * Q * D
        store = _take_store(u, 2 * S + 5 * R + S // Q)
        clamp = _needs_clamp(delta, A2)
        names = [("full", "a"), ("full", "h"), ("rows", "ub"), ("rows", "db"), ("rows", "yb"),
                 ("rows", "tmp"), ("row", "dtu"), ("chunk", "total")]
        slabs = {}
        state = u.new_zeros(Bsz, G, N, H)
        for c0 in range(0, nch, per_slab):
            nc, l0 = min(per_slab, nch - c0), c0 * Q
            n, row = nc * Q, (Bsz, nc, Q, G, 1, H)
            if nc not in slabs:
                slabs[nc] = _Slab(store, Bsz, nc, Q, G, N, H, names)
                slabs[nc].ends = slabs[nc].h_q[Q - 1].unbind(1)  # every chunk's last state
            v = slabs[nc]
            dt = _rows_in(delta, l0, n, time_major, v.db, v.tmp.view(-1)).view(row)
            torch.mul(dt, _rows_in(u, l0, n, time_major, v.ub, v.tmp.view(-1)).view(row), out=v.dtu)
            Bs, Cs = _chunks(Bt, l0, nc, Q, G, N), _chunks(Ct, l0, nc, Q, G, N)  # (B, nc, Q, G, N)
            _decays_(dt, A2, v.a, clamp)
            torch.mul(v.dtu, Bs[..., None], out=v.h)  # x_t = delta_t u_t B_t
            _forward_steps_(v.a_q, v.h_q, None)  # pass 1: chunk end states from zero
            _chunk_decays(dt, A2, v.total)
            start = starts[:, c0:c0 + nc]
            state = _carry(v.ends, v.total_c, start.unbind(1), state)
            torch.mul(v.dtu, Bs[..., None], out=v.h)  # x_t again: cheaper than keeping a copy
            _forward_steps_(v.a_q, v.h_q, start)  # pass 2: the true states
            yv = _rows_target(y, l0, n, time_major, v.yb)
            torch.matmul(Cs[..., None, :], v.h, out=yv.view(row))  # y_t = C_t h_t
            _rows_out(y, l0, yv, time_major, v.tmp.view(-1))
        _give_back(store)
        ctx.save_for_backward(u, delta, A, B, C, starts)
        ctx.time_major = time_major
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):  # noqa: D102
        u, delta, A, B, C, starts = ctx.saved_tensors
        time_major = ctx.time_major
        dy = dy.contiguous()
        Bsz, L, D, G, N, H, Q, Lp, per_slab, At, A2, Bt, Ct = _setup(u, A, B, C, time_major)
        nch = Lp // Q
        du, ddelta = (u.new_empty(Bsz, L, D) if time_major else u.new_empty(Bsz, D, L) for _ in range(2))
        dBt, dCt = u.new_empty(Bsz, Lp, G, N), u.new_empty(Bsz, Lp, G, N)
        dAt = torch.zeros_like(At)
        S, R = Bsz * per_slab * Q * D * N, Bsz * per_slab * Q * D
        store = _take_store(u, 3 * S + 8 * R + 3 * (S // Q))
        carry = u.new_zeros(Bsz, G, N, H)  # a_{t+1} g_{t+1} entering the slab's last step from later steps
        clamp = _needs_clamp(delta, A2)
        names = [("full", "a"), ("full", "h"), ("full", "g"), ("rows", "ub"), ("rows", "db"), ("rows", "yb"),
                 ("rows", "dub"), ("rows", "ddb"), ("rows", "tmp"), ("row", "dtu"), ("row", "gB"), ("chunk", "total"),
                 ("chunk", "w"), ("chunk", "enter")]
        slabs = {}
        for c0 in reversed(range(0, nch, per_slab)):
            nc, l0 = min(per_slab, nch - c0), c0 * Q
            n, row = nc * Q, (Bsz, nc, Q, G, 1, H)
            v = slabs.get(nc) or slabs.setdefault(nc, _Slab(store, Bsz, nc, Q, G, N, H, names))
            dt, uq, dyq = (_rows_in(t, l0, n, time_major, b, v.tmp.view(-1)).view(row)
                           for t, b in ((delta, v.db), (u, v.ub), (dy, v.yb)))
            torch.mul(dt, uq, out=v.dtu)
            Bs, Cs = _chunks(Bt, l0, nc, Q, G, N), _chunks(Ct, l0, nc, Q, G, N)  # (B, nc, Q, G, N)
            a, h, g = v.a, v.h, v.g
            start = starts[:, c0:c0 + nc]
            _decays_(dt, A2, a, clamp)
            torch.mul(v.dtu, Bs[..., None], out=h)
            _forward_steps_(v.a_q, v.h_q, start)  # h_t, from the saved chunk starts
            torch.mul(dyq, Cs[..., None], out=g)  # C_t dy_t
            _reverse_steps_(v.a_q, v.g_q)  # pass 1: adjoints inside each chunk, nothing entering from later
            _chunk_decays(dt, A2, v.total)
            torch.mul(v.a_q[0], v.g_q[0], out=v.w)  # what each chunk passes to its predecessor, from its own steps
            # enter: a_{t+1} g_{t+1} entering each chunk's last step, the carry run backwards over chunks
            carry = _carry(v.w_c[::-1], v.total_c[::-1], v.enter_c[::-1], carry)
            torch.mul(dyq, Cs[..., None], out=g)  # pass 2: the true adjoints g_t = dL/dh_t
            v.g_q[Q - 1].add_(v.enter)
            _reverse_steps_(v.a_q, v.g_q)
            torch.matmul(Bs[..., None, :], g, out=v.gB)  # sum_n g_t B_t
            torch.matmul(g, v.dtu.transpose(-1, -2), out=_chunks(dBt, l0, nc, Q, G, N, 1))  # sum_h g_t delta_t u_t
            torch.matmul(h, dyq.transpose(-1, -2), out=_chunks(dCt, l0, nc, Q, G, N, 1))  # sum_h h_t dy_t
            q = a  # the decays are spent: q_t = g_t a_t h_{t-1} = dL/d(log a_t) replaces them
            q[:, :, 1:].mul_(h[:, :, :-1])
            v.a_q[0].mul_(start)
            q.mul_(g)
            tmp = g  # spent too
            dd, duq = _rows_target(ddelta, l0, n, time_major, v.ddb), _rows_target(du, l0, n, time_major, v.dub)
            torch.sum(torch.mul(q, At, out=tmp), -2, keepdim=True, out=dd.view(row)).addcmul_(uq, v.gB)
            torch.mul(dt, v.gB, out=duq.view(row))
            dAt += q.mul_(dt).sum((0, 1, 2))
            _rows_out(ddelta, l0, dd, time_major, v.tmp.view(-1))
            _rows_out(du, l0, duq, time_major, v.tmp.view(-1))
        _give_back(store)
        dA = dAt.transpose(1, 2).reshape(D, N)
        if time_major:
            return du, ddelta, dA, dBt[:, :L, 0], dCt[:, :L, 0], None
        dB, dC = (t[:, :L].transpose(1, 2) for t in (dBt, dCt))  # (B, G, L, N)
        return du, ddelta, dA, dB, dC, None
