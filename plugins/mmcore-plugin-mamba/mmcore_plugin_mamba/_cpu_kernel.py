"""The ``cpu_kernel`` backend: a small C++ selective scan compiled with the system compiler on first use.

The source (``_cpu_kernel_src.SOURCE``) is built by :func:`mmcore.native.build_library` into the
torch extensions directory (sub-folder ``mmcore_plugin_mamba``), cached under a name that hashes the
source, the compiler, its flags and the CPU's vector ISA. Any build or load failure is recorded
(never raised here): ``scan.resolve_backend`` then falls back to the pure-torch backend and logs why.
"""

from __future__ import annotations

import ctypes
import logging

import torch
from torch.autograd.function import once_differentiable

from mmcore.native import NativeBuild, build_library

from ._cpu_kernel_src import SOURCE

logger = logging.getLogger("mmcore_plugin_mamba.scan")

_P, _I64, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
_FWD_ARGS = [_P] * 7 + [_I64] * 6 + [_INT]
_BWD_ARGS = [_P] * 12 + [_I64] * 6 + [_INT]
_FUSED_FWD_ARGS = [_P] * 11 + [_I64] * 10 + [_INT] * 2
_FUSED_BWD_ARGS = [_P] * 19 + [_I64] * 12 + [_INT] * 2
_CONV_FWD_ARGS = [_P] * 4 + [_I64] * 5 + [_INT]
_CONV_BWD_ARGS = [_P] * 7 + [_I64] * 6 + [_INT]
_ARGTYPES = {f"mmcore_{fn}_{suffix}": types for suffix in ("f32", "f64") for fn, types in (
    ("scan_fwd", _FWD_ARGS), ("scan_bwd", _BWD_ARGS), ("fused_fwd", _FUSED_FWD_ARGS),
    ("fused_bwd", _FUSED_BWD_ARGS), ("conv_fwd", _CONV_FWD_ARGS), ("conv_bwd", _CONV_BWD_ARGS))}
FUSED_CHUNK = 64  # K: the fused backward keeps one state per K steps and recomputes the K in between
_CACHE_LINE = 64  # bytes; torch's CPU allocator aligns tensors to it

_logged = False


def load_kernel() -> NativeBuild:
    """Build (first call on this machine) or load the cached kernel library (memoised per process by
    :func:`mmcore.native.build_library`); a failure or a fresh build is logged once."""
    global _logged
    build = build_library("mmcore_plugin_mamba", "selective_scan", SOURCE, _ARGTYPES)
    if not _logged:
        _logged = True
        if build.error is not None:
            logger.warning("selective scan: the C++ CPU kernel is unavailable (%s)", build.error)
        elif build.compile_seconds:
            logger.info("selective scan: compiled the C++ CPU kernel in %.1f s -> %s", build.compile_seconds, build.path)
    return build


def _suffix(t: torch.Tensor) -> str:
    if t.dtype == torch.float32:
        return "f32"
    if t.dtype == torch.float64:
        return "f64"
    raise ValueError(f"cpu_kernel scan computes in float32 or float64, got {t.dtype}")


def _threads(items: int) -> int:
    return max(1, min(torch.get_num_threads(), items))


def _work(threads: int, per_thread: int, dtype: torch.dtype) -> torch.Tensor:
    """Scratch (threads, stride): each thread's row starts on its own cache line (no false sharing)."""
    line = _CACHE_LINE // torch.finfo(dtype).bits * 8
    return torch.empty(threads, -(-per_thread // line) * line, dtype=dtype)


class KernelScanFn(torch.autograd.Function):
    """y = selective scan of (u, delta, A, B, C) by the C++ kernel; backward by its reverse scan.

    Shapes: u, delta (batch, dim, L); A (dim, N); B, C (batch, G, L, N) time-major -> y (batch, dim, L).
    Saves only the inputs: the backward recomputes h_t per channel, never the (batch, dim, L, N) states.
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C):  # noqa: D102 - documented on the class
        lib = load_kernel().lib
        u, delta, A, B, C = (t.contiguous() for t in (u, delta, A, B, C))
        batch, dim, L = u.shape
        groups, N = B.shape[1], A.shape[1]
        threads = _threads(batch * dim)
        y = torch.empty_like(u)
        work = _work(threads, N, u.dtype)
        getattr(lib, f"mmcore_scan_fwd_{_suffix(u)}")(
            u.data_ptr(), delta.data_ptr(), A.data_ptr(), B.data_ptr(), C.data_ptr(), y.data_ptr(),
            work.data_ptr(), work.shape[1], batch, dim, groups, L, N, threads)
        ctx.save_for_backward(u, delta, A, B, C)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):  # noqa: D102
        lib = load_kernel().lib
        u, delta, A, B, C = ctx.saved_tensors
        dy = dy.contiguous()
        batch, dim, L = u.shape
        groups, N = B.shape[1], A.shape[1]
        threads = _threads(dim)
        du, ddelta, dA = torch.empty_like(u), torch.empty_like(u), torch.empty_like(A)
        dB_parts = torch.zeros((threads,) + tuple(B.shape), dtype=u.dtype)
        dC_parts = torch.zeros_like(dB_parts)
        work = _work(threads, (2 * L + 3) * N, u.dtype)
        getattr(lib, f"mmcore_scan_bwd_{_suffix(u)}")(
            u.data_ptr(), delta.data_ptr(), A.data_ptr(), B.data_ptr(), C.data_ptr(), dy.data_ptr(),
            du.data_ptr(), ddelta.data_ptr(), dA.data_ptr(), dB_parts.data_ptr(), dC_parts.data_ptr(),
            work.data_ptr(), work.shape[1], batch, dim, groups, L, N, threads)
        return du, ddelta, dA, dB_parts.sum(0), dC_parts.sum(0)


def _rows(t: torch.Tensor) -> tuple[torch.Tensor, int]:
    """t (B, L, X) with unit column stride and batch stride L * row stride, and its row stride (copies if not)."""
    Bsz, L, X = t.shape
    s0, s1, s2 = t.stride()
    if L == 1:  # the kernel addresses row b * L + t: with one step the row stride is the batch stride
        s1 = s0 if Bsz > 1 else X
    if (X > 1 and s2 != 1) or (Bsz > 1 and s0 != L * s1):
        t = torch.empty(t.shape, dtype=t.dtype, device=t.device).copy_(t)  # standard strides, even for size-1 dims
        s1 = X
    return t, s1


def _lanes(dtype: torch.dtype) -> int:
    """Channels per vector in the fused kernel: one 64-byte line (16 float, 8 double)."""
    return _CACHE_LINE * 8 // torch.finfo(dtype).bits


def _ptr(t: torch.Tensor | None):
    return None if t is None else t.data_ptr()


def _scan_fwd(u, su, delta, sdel, A, B, C, sbc, D, z, sz, bias, softplus):
    """The fused kernel's forward: (out (batch, L, E), chk (batch, L/K, N, E)); arguments as ``FusedScanFn``."""
    batch, L, E = u.shape
    N, K, lanes = A.shape[1], FUSED_CHUNK, _lanes(u.dtype)
    threads = _threads(batch * -(-E // lanes))
    out, chk = u.new_empty(batch, L, E), u.new_empty(batch, -(-L // K), N, E)
    work = _work(threads, 2 * N * lanes, u.dtype)
    getattr(load_kernel().lib, f"mmcore_fused_fwd_{_suffix(u)}")(
        u.data_ptr(), delta.data_ptr(), _ptr(bias), A.data_ptr(), B.data_ptr(), C.data_ptr(), _ptr(D), _ptr(z),
        out.data_ptr(), chk.data_ptr(), work.data_ptr(), work.shape[1], batch, L, E, N, su, sdel, sbc, sz, K,
        int(softplus), threads)
    return out, chk


def _scan_bwd(u, su, delta, sdel, A, B, C, sbc, D, z, sz, bias, softplus, chk, dout, dz=None):
    """The fused kernel's backward: du, ddelta, dA, dB, dC, dD, dz, dbias (dz written into ``dz`` if given)."""
    batch, L, E = u.shape
    N, K, lanes = A.shape[1], FUSED_CHUNK, _lanes(u.dtype)
    nblk = -(-E // lanes)
    groups = min(torch.get_num_threads(), nblk)  # channel groups per batch row, one work item each
    threads = _threads(batch * groups)
    du, ddelta = u.new_empty(batch, L, E), u.new_empty(batch, L, E)
    if dz is None and z is not None:
        dz = u.new_empty(batch, L, E)
    dA_parts, dD_parts, dbias_parts = u.new_empty(batch, E, N), u.new_empty(batch, E), u.new_empty(batch, E)
    dB_parts, dC_parts = u.new_zeros(threads, batch, L, N), u.new_zeros(threads, batch, L, N)
    row = N * lanes
    work = _work(threads, (4 * K + 2) * row + 2 * K * lanes + -(-nblk // groups) * (2 * row + 2 * lanes), u.dtype)
    getattr(load_kernel().lib, f"mmcore_fused_bwd_{_suffix(u)}")(
        u.data_ptr(), delta.data_ptr(), _ptr(bias), A.data_ptr(), B.data_ptr(), C.data_ptr(), _ptr(D), _ptr(z),
        dout.data_ptr(), chk.data_ptr(), du.data_ptr(), ddelta.data_ptr(), _ptr(dz), dA_parts.data_ptr(),
        dD_parts.data_ptr(), dbias_parts.data_ptr(), dB_parts.data_ptr(), dC_parts.data_ptr(), work.data_ptr(),
        work.shape[1], batch, L, E, N, su, sdel, sbc, sz, 0 if dz is None else dz.stride(1), K, groups,
        int(softplus), threads)
    dB = dB_parts[0] if threads == 1 else dB_parts.sum(0)
    dC = dC_parts[0] if threads == 1 else dC_parts.sum(0)
    dD = None if D is None else dD_parts.sum(0)
    dbias = None if bias is None else dbias_parts.sum(0)
    return du, ddelta, dA_parts.sum(0), dB, dC, dD, dz, dbias


def _bc_rows(B, C):
    """B, C (batch, L, N) as row-strided tensors sharing one row stride (copies only if they differ)."""
    (B, sbc), (C, sbc_c) = _rows(B), _rows(C)
    if sbc_c != sbc:
        B, C = (torch.empty(t.shape, dtype=t.dtype, device=t.device).copy_(t) for t in (B, C))
        sbc = B.shape[2]
    return B, C, sbc


class FusedScanFn(torch.autograd.Function):
    """The block's scan in time-major layout, with the Δ bias, softplus, D skip and z gate folded in.

    out = (selective_scan(u, softplus(delta + bias), A, B, C) + D u) * silu(z), every tensor time-major,
    all of it in the C++ kernel (forward, and backward with the activations recomputed, never kept).
    The kernel vectorises over neighbouring channels (contiguous in this layout), so no sum crosses
    vector lanes in the scan and nothing is transposed.
    Shapes: u, delta, z (batch, L, E) (row-strided views allowed); A (E, N); B, C (batch, L, N)
    (row-strided views allowed); D, bias (E,) -> out (batch, L, E) contiguous.
    Saves the inputs and one state per ``FUSED_CHUNK`` steps (batch, L/K, N, E).
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, bias, softplus):  # noqa: D102 - documented on the class
        (u, su), (delta, sdel) = _rows(u), _rows(delta)
        z, sz = (None, 0) if z is None else _rows(z)
        B, C, sbc = _bc_rows(B, C)
        A, D, bias = (None if t is None else t.contiguous() for t in (A, D, bias))
        out, chk = _scan_fwd(u, su, delta, sdel, A, B, C, sbc, D, z, sz, bias, softplus)
        ctx.save_for_backward(u, delta, A, B, C, D, z, bias, chk)
        ctx.strides, ctx.softplus = (su, sdel, sbc, sz), softplus
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):  # noqa: D102
        u, delta, A, B, C, D, z, bias, chk = ctx.saved_tensors
        su, sdel, sbc, sz = ctx.strides
        return (*_scan_bwd(u, su, delta, sdel, A, B, C, sbc, D, z, sz, bias, ctx.softplus, chk,
                           dout.contiguous()), None)


def _conv_fwd(x, sx, w, b):
    """silu(causal depthwise conv) of x (batch, L, E) with row stride sx, w (E, K), b (E,) -> u contiguous."""
    batch, L, E = x.shape
    u = x.new_empty(batch, L, E)
    getattr(load_kernel().lib, f"mmcore_conv_fwd_{_suffix(x)}")(
        x.data_ptr(), w.data_ptr(), _ptr(b), u.data_ptr(), batch, L, E, w.shape[1], sx,
        _threads(batch * -(-E // _lanes(x.dtype))))
    return u


class MixerFn(torch.autograd.Function):
    r"""The Mamba block between its two projections, in one autograd node: in_proj's output xz -> y.

    $$u = \operatorname{silu}(\operatorname{conv}(x)), \quad [\delta_r; B; C] = u W_x^\top, \quad
      \delta = \delta_r W_\Delta^\top, \quad y = \operatorname{scan}(u, \delta, A, B, C, D, z, b_\Delta, \text{softplus})$$

    with [x; z] = xz. Conv, silu, the scan and its activations run in the C++ kernels, the two small
    projections in torch; nothing is transposed. The backward writes the gradients of x and z straight
    into the two halves of one (batch, L, 2E) tensor (no concatenation) and adds the x_proj path's
    gradient of u in place. Saves xz, u, delta, x_dbl and one state per ``FUSED_CHUNK`` steps.
    Shapes: xz (batch, L, 2E); conv_w (E, K), conv_b (E,) or None; x_proj_w (R + 2N, E);
    dt_proj_w (E, R); dt_bias, D (E,); A (E, N) -> y (batch, L, E) contiguous.
    """

    @staticmethod
    def forward(ctx, xz, conv_w, conv_b, x_proj_w, dt_proj_w, dt_bias, A, D):  # noqa: D102
        xz = xz.contiguous()
        E, N, R = A.shape[0], A.shape[1], dt_proj_w.shape[1]
        x, z = xz[..., :E], xz[..., E:]
        u = _conv_fwd(x, 2 * E, conv_w, conv_b)
        x_dbl = torch.nn.functional.linear(u, x_proj_w)  # (batch, L, R + 2N)
        delta = torch.nn.functional.linear(x_dbl[..., :R], dt_proj_w)  # (batch, L, E); bias inside the kernel
        y, chk = _scan_fwd(u, E, delta, E, A, x_dbl[..., R:R + N], x_dbl[..., R + N:], R + 2 * N, D, z, 2 * E,
                           dt_bias, True)
        ctx.save_for_backward(xz, conv_w, conv_b, x_proj_w, dt_proj_w, dt_bias, A, D, u, delta, x_dbl, chk)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):  # noqa: D102
        xz, conv_w, conv_b, x_proj_w, dt_proj_w, dt_bias, A, D, u, delta, x_dbl, chk = ctx.saved_tensors
        batch, L, E2 = xz.shape
        E, N, R, K = E2 // 2, A.shape[1], dt_proj_w.shape[1], conv_w.shape[1]
        dxz = xz.new_empty(batch, L, E2)
        du, ddelta, dA, dB, dC, dD, _, dbias = _scan_bwd(
            u, E, delta, E, A, x_dbl[..., R:R + N], x_dbl[..., R + N:], R + 2 * N, D, xz[..., E:], 2 * E, dt_bias,
            True, chk, dy.contiguous(), dz=dxz[..., E:])
        dx_dbl = torch.cat((ddelta @ dt_proj_w, dB, dC), -1)  # (batch, L, R + 2N)
        d_dt_w = ddelta.reshape(-1, E).t() @ x_dbl[..., :R].reshape(-1, R)
        du.view(-1, E).addmm_(dx_dbl.view(-1, R + 2 * N), x_proj_w)
        d_x_w = dx_dbl.view(-1, R + 2 * N).t() @ u.view(-1, E)
        del ddelta, dx_dbl
        dw_parts, db_parts = xz.new_empty(batch, E, K), xz.new_empty(batch, E)
        getattr(load_kernel().lib, f"mmcore_conv_bwd_{_suffix(xz)}")(
            xz.data_ptr(), conv_w.data_ptr(), _ptr(conv_b), du.data_ptr(), dxz.data_ptr(), dw_parts.data_ptr(),
            db_parts.data_ptr(), batch, L, E, K, E2, E2, _threads(batch * -(-E // _lanes(xz.dtype))))
        return (dxz, dw_parts.sum(0), None if conv_b is None else db_parts.sum(0), d_x_w, d_dt_w, dbias, dA, dD)
