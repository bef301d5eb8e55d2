"""The ``cpu_kernel`` backend: a small C++ selective scan compiled with the system compiler on first use.

The source (``_cpu_kernel_src.SOURCE``) is compiled once per machine into the torch extensions
directory (``$TORCH_EXTENSIONS_DIR`` or ``~/.cache/torch_extensions``, sub-folder
``mmcore_plugin_mamba``); the file name carries a hash of the source, the compiler and its flags, so a
cached library is reused until one of them changes. The ISA flags come from
``torch.backends.cpu.get_cpu_capability()`` and are part of that name, so a cache shared between
machines never hands AVX-512 code to a CPU without it. Any build or load failure is recorded (never
raised here): ``scan.resolve_backend`` then falls back to the pure-torch backend and logs why.

Why not ``torch.utils.cpp_extension.load_inline``: it prepends ``<torch/extension.h>``, whose parsing
alone takes ~30 s on a 2-core machine; this header-free build takes ~1-2 s.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass

import torch
from torch.autograd.function import once_differentiable

from ._cpu_kernel_src import SOURCE

logger = logging.getLogger("mmcore_plugin_mamba.scan")

_BASE_FLAGS = ["-O3", "-std=c++17", "-shared", "-fPIC", "-fopenmp", "-fno-trapping-math", "-fno-math-errno"]
_ISA_FLAGS = {
    "AVX512": ["-mavx2", "-mfma", "-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx512bw"],
    "AVX2": ["-mavx2", "-mfma"],
}
_P, _I64, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
_FWD_ARGS = [_P] * 7 + [_I64] * 6 + [_INT]
_BWD_ARGS = [_P] * 12 + [_I64] * 6 + [_INT]
_FUSED_FWD_ARGS = [_P] * 10 + [_I64] * 11 + [_INT]
_FUSED_BWD_ARGS = [_P] * 17 + [_I64] * 11 + [_INT]
FUSED_CHUNK = 64  # K: the fused backward keeps one state per K steps and recomputes the K in between
FUSED_BLOCK = 32  # channels per work item: a chunk's recomputed states (2K blk N values) stay in L2
_CACHE_LINE = 64  # bytes; torch's CPU allocator aligns tensors to it


@dataclass(frozen=True)
class KernelBuild:
    """Outcome of building/loading the kernel: ``lib`` is None and ``error`` says why on failure."""

    lib: ctypes.CDLL | None
    error: str | None
    path: str | None
    compile_seconds: float  # 0.0 when a cached library was loaded


_lock = threading.Lock()
_build: KernelBuild | None = None


def load_kernel() -> KernelBuild:
    """Build (first call on this machine) or load the cached kernel library; memoised per process."""
    global _build
    with _lock:
        if _build is None:
            _build = _build_and_load()
            if _build.error is not None:
                logger.warning("selective scan: the C++ CPU kernel is unavailable (%s)", _build.error)
            elif _build.compile_seconds:
                logger.info("selective scan: compiled the C++ CPU kernel in %.1f s -> %s",
                            _build.compile_seconds, _build.path)
        return _build


def _isa_flags() -> tuple[str, list[str]]:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return "generic", []
    cap = torch.backends.cpu.get_cpu_capability()
    return (cap.lower(), _ISA_FLAGS[cap]) if cap in _ISA_FLAGS else ("generic", [])


def _build_and_load() -> KernelBuild:
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if not cxx:
        return KernelBuild(None, "no C++ compiler found (set CXX or install g++)", None, 0.0)
    tag, isa = _isa_flags()
    flags = _BASE_FLAGS + isa
    digest = hashlib.sha256("\0".join([SOURCE, cxx, *flags]).encode()).hexdigest()[:16]
    from torch.utils.cpp_extension import get_default_build_root  # imports setuptools: keep it lazy

    folder = os.path.join(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root(), "mmcore_plugin_mamba")
    path = os.path.join(folder, f"selective_scan_{tag}_{digest}.so")
    seconds = 0.0
    try:
        if not os.path.exists(path):
            os.makedirs(folder, exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"  # per-process names: concurrent builders never collide
            src = f"{tmp}.cpp"
            with open(src, "w") as f:
                f.write(SOURCE)
            t0 = time.perf_counter()
            try:
                proc = subprocess.run([cxx, *flags, src, "-o", tmp], capture_output=True, text=True, timeout=600)
            finally:
                os.remove(src)
            seconds = time.perf_counter() - t0
            if proc.returncode != 0:
                tail = " ".join(proc.stderr.strip().splitlines()[-3:])
                error = f"{os.path.basename(cxx)} exited with {proc.returncode}: {tail}"
                return KernelBuild(None, error, None, seconds)
            os.replace(tmp, path)  # atomic: a reader never sees a half-written library
        lib = ctypes.CDLL(path)
    except (OSError, subprocess.SubprocessError) as e:
        return KernelBuild(None, f"{type(e).__name__}: {e}", None, seconds)
    for suffix in ("f32", "f64"):
        getattr(lib, f"mmcore_scan_fwd_{suffix}").argtypes = _FWD_ARGS
        getattr(lib, f"mmcore_scan_bwd_{suffix}").argtypes = _BWD_ARGS
        getattr(lib, f"mmcore_fused_fwd_{suffix}").argtypes = _FUSED_FWD_ARGS
        getattr(lib, f"mmcore_fused_bwd_{suffix}").argtypes = _FUSED_BWD_ARGS
    return KernelBuild(lib, None, path, seconds)


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


def _ptr(t: torch.Tensor | None):
    return None if t is None else t.data_ptr()


class FusedScanFn(torch.autograd.Function):
    """The block's scan in time-major layout, with the Δ bias, softplus, D skip and z gate folded in.

    out = (selective_scan(u, softplus(delta + bias), A, B, C) + D u) * silu(z), every tensor time-major.
    The scan, D skip and gate product run in the C++ kernel; softplus and silu run vectorised in torch
    inside this function (forward, and recomputed in the backward: never kept).
    Shapes: u, delta, z (batch, L, E) (row-strided views allowed); A (E, N); B, C (batch, L, N)
    (row-strided views allowed); D, bias (E,) -> out (batch, L, E) contiguous.
    Saves the inputs and one state per ``FUSED_CHUNK`` steps (batch, L/K, E, N).
    """

    @staticmethod
    def _activations(delta, bias, z, softplus):
        dt = delta if bias is None else delta + bias
        dt = torch.nn.functional.softplus(dt) if softplus else dt
        return _rows(dt), (_rows(torch.nn.functional.silu(z)) if z is not None else (None, 0))

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, bias, softplus):  # noqa: D102 - documented on the class
        lib = load_kernel().lib
        u, su = _rows(u)
        B, sbc = _rows(B)
        C, sbc_c = _rows(C)
        if sbc_c != sbc:  # one stride serves both: give them standard strides
            B, C = (torch.empty(t.shape, dtype=t.dtype, device=t.device).copy_(t) for t in (B, C))
            sbc = B.shape[2]
        A, D = A.contiguous(), None if D is None else D.contiguous()
        (dt, sdel), (gate, sz) = FusedScanFn._activations(delta, bias, z, softplus)
        batch, L, E = u.shape
        N = A.shape[1]
        K, blk = FUSED_CHUNK, min(FUSED_BLOCK, E)
        threads = _threads(batch * -(-E // blk))
        out = u.new_empty(batch, L, E)
        chk = u.new_empty(batch, -(-L // K), E, N)
        work = _work(threads, blk * N, u.dtype)
        getattr(lib, f"mmcore_fused_fwd_{_suffix(u)}")(
            u.data_ptr(), dt.data_ptr(), A.data_ptr(), B.data_ptr(), C.data_ptr(), _ptr(D), _ptr(gate),
            out.data_ptr(), chk.data_ptr(), work.data_ptr(), work.shape[1], batch, L, E, N, su, sdel, sbc, sz, K, blk,
            threads)
        ctx.save_for_backward(u, delta, A, B, C, D, z, bias, chk)
        ctx.su, ctx.sbc, ctx.softplus = su, sbc, softplus
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):  # noqa: D102
        lib = load_kernel().lib
        u, delta, A, B, C, D, z, bias, chk = ctx.saved_tensors
        su, sbc, softplus = ctx.su, ctx.sbc, ctx.softplus
        (dt, sdel), (gate, sz) = FusedScanFn._activations(delta, bias, z, softplus)
        dout = dout.contiguous()
        batch, L, E = u.shape
        N = A.shape[1]
        K, blk = FUSED_CHUNK, min(FUSED_BLOCK, E)
        threads = _threads(batch * -(-E // blk))
        du, ddelta = u.new_empty(batch, L, E), u.new_empty(batch, L, E)
        dz = None if z is None else u.new_empty(batch, L, E)
        dA_parts = u.new_empty(batch, E, N)
        dD_parts = None if D is None else u.new_empty(batch, E)
        dB_parts = u.new_zeros(threads, batch, L, N)
        dC_parts = u.new_zeros(threads, batch, L, N)
        work = _work(threads, (2 * K + 2) * blk * N, u.dtype)
        getattr(lib, f"mmcore_fused_bwd_{_suffix(u)}")(
            u.data_ptr(), dt.data_ptr(), A.data_ptr(), B.data_ptr(), C.data_ptr(), _ptr(D), _ptr(gate),
            dout.data_ptr(), chk.data_ptr(), du.data_ptr(), ddelta.data_ptr(), _ptr(dz), dA_parts.data_ptr(),
            _ptr(dD_parts), dB_parts.data_ptr(), dC_parts.data_ptr(), work.data_ptr(), work.shape[1],
            batch, L, E, N, su, sdel, sbc, sz, K, blk, threads)
        del dt, gate
        if softplus:  # d softplus(s) / ds = sigmoid(s)
            ddelta.mul_(torch.sigmoid(delta if bias is None else delta + bias))
        if z is not None:  # d silu(z) / dz = sg (1 + z (1 - sg))
            sg = torch.sigmoid(z)
            dz.mul_(torch.sub(1.0, sg).mul_(z).add_(1.0).mul_(sg))
        dB = dB_parts[0] if threads == 1 else dB_parts.sum(0)
        dC = dC_parts[0] if threads == 1 else dC_parts.sum(0)
        dD = None if D is None else dD_parts.sum(0)
        dbias = None if bias is None else ddelta.sum((0, 1))
        return du, ddelta, dA_parts.sum(0), dB, dC, dD, dz, dbias, None
