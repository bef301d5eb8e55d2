"""The compiled one-pass Sinkhorn iterations on CPU (source and layout: ``_cpu_sinkhorn_src``).

Built on first use by :func:`mmcore.native.build_library` and cached on disk. Where it does not build
(no compiler, a compile error) :func:`available` is False, the reason is logged once, and
``sinkhorn._iterate`` keeps its torch loop, which computes the same iterates.
"""

from __future__ import annotations

import ctypes
import logging

import torch
from torch import Tensor

from mmcore.native import NativeBuild, build_library

from ._cpu_sinkhorn_src import SOURCE

logger = logging.getLogger("mmcore_plugin_ot.sinkhorn")

_P, _I64, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
_ARGS = [_P] * 8 + [_INT, _P, _I64, _I64] + [_P] * 5 + [ctypes.c_double] * 2 + [_I64] * 3 + [_INT]
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_ARGTYPES = {f"mmcore_sinkhorn_{s}": _ARGS for s in _SUFFIX.values()}
_logged = False
#: False: ``sinkhorn_plan`` iterates with torch's mat-vecs even where the library is built (A/B timing).
ENABLED = True


def load() -> NativeBuild:
    """The library (built on first call on this machine, then cached); a failure is logged once."""
    global _logged
    build = build_library("mmcore_plugin_ot", "sinkhorn", SOURCE, _ARGTYPES)
    if build.lib is not None:
        for fn in _ARGTYPES:
            getattr(build.lib, fn).restype = _I64
    if not _logged:
        _logged = True
        if build.error is not None:
            logger.warning("sinkhorn: the C++ CPU iterations are unavailable, using torch's (%s)", build.error)
        elif build.compile_seconds:
            logger.info("sinkhorn: compiled the C++ CPU iterations in %.1f s -> %s", build.compile_seconds,
                        build.path)
    return build


def available(c: Tensor) -> bool:
    """Whether :class:`Sweep` can iterate on kernels of the cost ``c`` (B, n, m): a contiguous float32/float64
    CPU tensor (the kernels then are too), and the library built."""
    return (ENABLED and c.device.type == "cpu" and c.dtype in _SUFFIX and c.is_contiguous()
            and load().lib is not None)


def _ptr(t: Tensor | None):
    return None if t is None else t.data_ptr()


class Sweep:
    """The blocks of iterations on one kernel from one state, computed pair by pair ahead of the checks.

    ``block(k)`` returns block k's (u, v, col = u @ kernel, stats): stats (B, 2) holds per pair the column
    error ||v * col - b_err||_2 and the largest |log| of a kept scaling (inf if NaN). Each pair runs on
    through later blocks while its own check says the solver will need them (see ``pair_sweep`` in
    ``_cpu_sinkhorn_src``), so its kernel stays in cache across blocks; a block that the solver's check
    does not reach is computed for nothing, never used. No autograd.
    Shapes: kernel (B, n, m); a, u0 (B, n); b, b_err (B, m); row_ok (B, n), col_ok (B, m) bool or None;
    col (B, m) = u0 @ kernel when already known, else None; sizes: iterations per block.
    """

    def __init__(self, kernel: Tensor, a: Tensor, b: Tensor, b_err: Tensor, row_ok: Tensor | None,
                 col_ok: Tensor | None, u0: Tensor, col: Tensor | None, sizes: list[int], half_limit: float,
                 tol: float):
        B, n, m = kernel.shape
        nb = len(sizes)
        self._inputs = tuple(None if t is None else t.contiguous()
                             for t in (kernel, a, b, b_err, row_ok, col_ok, u0, col))
        self.sizes = sizes
        self._sizes = torch.tensor(sizes, dtype=torch.int64)
        self._U, self._V, self._COL = kernel.new_empty(nb, B, n), kernel.new_empty(nb, B, m), kernel.new_empty(nb, B, m)
        self._STATS = kernel.new_empty(nb, B, 2)
        self._done = torch.zeros(B, dtype=torch.int64)
        self._fewest = 0  # blocks done by every pair
        self._half_limit, self._tol = half_limit, tol

    def block(self, k: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Block k's (u, v, col, stats), views into this sweep's buffers."""
        if self._fewest <= k:
            kernel, a, b, b_err, row_ok, col_ok, u0, col = self._inputs
            B, n, m = kernel.shape
            self._fewest = getattr(load().lib, f"mmcore_sinkhorn_{_SUFFIX[kernel.dtype]}")(
                kernel.data_ptr(), a.data_ptr(), b.data_ptr(), b_err.data_ptr(), _ptr(row_ok), _ptr(col_ok),
                u0.data_ptr(), _ptr(col), int(col is not None), self._sizes.data_ptr(), len(self.sizes), k,
                self._U.data_ptr(), self._V.data_ptr(), self._COL.data_ptr(), self._STATS.data_ptr(),
                self._done.data_ptr(), self._half_limit, self._tol, B, n, m, max(1, min(torch.get_num_threads(), B)))
        return self._U[k], self._V[k], self._COL[k], self._STATS[k]
