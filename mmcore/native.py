"""Header-free C++ libraries built with the system compiler on first use, cached, called via ``ctypes``.

:func:`build_library` compiles a C++ source string (a C ABI, no torch header) once per machine into
the torch extensions directory (``$TORCH_EXTENSIONS_DIR`` or ``~/.cache/torch_extensions``,
sub-folder ``package``). The file name carries a hash of the source, the compiler and its flags, so a
cached library is reused until one of them changes. The ISA flags come from
``torch.backends.cpu.get_cpu_capability()`` and are part of that name, so a cache shared between
machines never hands AVX-512 code to a CPU without it. The library is written under a per-process
temporary name and renamed into place (atomic), so concurrent builders never see a half-written file.
Any build or load failure is returned in :attr:`NativeBuild.error`, never raised: the caller falls
back to its torch path and logs why.

Why not ``torch.utils.cpp_extension.load_inline``: it prepends ``<torch/extension.h>``, whose parsing
alone takes ~30 s on a 2-core machine; this header-free build takes ~1-2 s.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass

import torch

__all__ = ["NativeBuild", "build_library", "compile_and_load"]

BASE_FLAGS = ["-O3", "-std=c++17", "-shared", "-fPIC", "-fopenmp", "-fno-trapping-math", "-fno-math-errno"]
ISA_FLAGS = {
    "AVX512": ["-mavx2", "-mfma", "-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx512bw"],
    "AVX2": ["-mavx2", "-mfma"],
}


@dataclass(frozen=True)
class NativeBuild:
    """Outcome of building/loading a library: ``lib`` is None and ``error`` says why on failure."""

    lib: ctypes.CDLL | None
    error: str | None
    path: str | None
    compile_seconds: float  # 0.0 when a cached library was loaded


_lock = threading.Lock()
_builds: dict[tuple[str, str], NativeBuild] = {}


def build_library(package: str, name: str, source: str, argtypes: dict[str, list]) -> NativeBuild:
    """:func:`compile_and_load`, memoised per process by ``(package, name)``."""
    with _lock:
        key = (package, name)
        if key not in _builds:
            _builds[key] = compile_and_load(package, name, source, argtypes)
        return _builds[key]


def isa_flags() -> tuple[str, list[str]]:
    """(tag, compiler flags) for the vector ISA torch detected on this CPU; ("generic", []) off x86."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return "generic", []
    cap = torch.backends.cpu.get_cpu_capability()
    return (cap.lower(), ISA_FLAGS[cap]) if cap in ISA_FLAGS else ("generic", [])


def compile_and_load(package: str, name: str, source: str, argtypes: dict[str, list]) -> NativeBuild:
    """Compile ``source`` (unless cached) to ``<package>/<name>_<isa>_<hash>.so``, load it, set ``argtypes``.

    ``argtypes`` maps each exported function to its ``ctypes`` argument types. Never raises: a missing
    compiler, a compile error (the last lines of its output), a load error or a missing symbol comes
    back as ``error``."""
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if not cxx:
        return NativeBuild(None, "no C++ compiler found (set CXX or install g++)", None, 0.0)
    tag, isa = isa_flags()
    flags = BASE_FLAGS + isa
    digest = hashlib.sha256("\0".join([source, cxx, *flags]).encode()).hexdigest()[:16]
    from torch.utils.cpp_extension import get_default_build_root  # imports setuptools: keep it lazy

    folder = os.path.join(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root(), package)
    path = os.path.join(folder, f"{name}_{tag}_{digest}.so")
    seconds = 0.0
    try:
        if not os.path.exists(path):
            os.makedirs(folder, exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"  # per-process names: concurrent builders never collide
            src = f"{tmp}.cpp"
            with open(src, "w") as f:
                f.write(source)
            t0 = time.perf_counter()
            try:
                proc = subprocess.run([cxx, *flags, src, "-o", tmp], capture_output=True, text=True, timeout=600)
            finally:
                os.remove(src)
            seconds = time.perf_counter() - t0
            if proc.returncode != 0:
                tail = " ".join(proc.stderr.strip().splitlines()[-3:])
                error = f"{os.path.basename(cxx)} exited with {proc.returncode}: {tail}"
                return NativeBuild(None, error, None, seconds)
            os.replace(tmp, path)  # atomic: a reader never sees a half-written library
        lib = ctypes.CDLL(path)
        for fn, types in argtypes.items():
            getattr(lib, fn).argtypes = types
    except (OSError, subprocess.SubprocessError, AttributeError) as e:
        return NativeBuild(None, f"{type(e).__name__}: {e}", None, seconds)
    return NativeBuild(lib, None, path, seconds)
