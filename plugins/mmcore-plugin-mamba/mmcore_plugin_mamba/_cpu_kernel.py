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
