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
_D = ctypes.c_double
_ARGS = [_P] * 3 + [_D] * 2 + [_P] * 7 + [_INT, _P, _I64, _I64] + [_P] * 7 + [_D] * 2 + [_I64] * 3 + [_INT]
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_ARGTYPES = {f"mmcore_sinkhorn_{s}": _ARGS for s in _SUFFIX.values()}
_ARGTYPES.update({f"mmcore_check_{s}": [_P] * 3 + [_I64] * 3 + [_P] for s in _SUFFIX.values()})
_ARGTYPES.update({f"mmcore_scale_{s}": [_P] * 3 + [_I64] * 3 for s in _SUFFIX.values()})
_RESTYPE = {f"mmcore_sinkhorn_{s}": _I64 for s in _SUFFIX.values()}
_logged = False
#: False: ``sinkhorn_plan`` iterates with torch's mat-vecs even where the library is built (A/B timing).
ENABLED = True


def load() -> NativeBuild:
    """The library (built on first call on this machine, then cached); a failure is logged once."""
    global _logged
    build = build_library("mmcore_plugin_ot", "sinkhorn", SOURCE, _ARGTYPES)
    if build.lib is not None:
        for fn in _ARGTYPES:
            getattr(build.lib, fn).restype = _RESTYPE.get(fn)
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


def check_stats(a: Tensor, b: Tensor, c: Tensor) -> list[float] | None:
    """``sinkhorn._check``'s statistics of a (B, n), b (B, m), c (B, n, m) in one pass (see ``check_stats`` in
    ``_cpu_sinkhorn_src``): [min a, min b, min c, max c, largest finite |c|, largest relative mass gap, its
    pair, that pair's sum a, sum b]; None unless all three are contiguous of one dtype that :func:`available`
    accepts."""
    if not (a.dtype == b.dtype == c.dtype and a.device == b.device == c.device and a.is_contiguous()
            and b.is_contiguous() and available(c)):
        return None
    out = (ctypes.c_double * 9)()
    B, n, m = c.shape
    getattr(load().lib, f"mmcore_check_{_SUFFIX[c.dtype]}")(a.data_ptr(), b.data_ptr(), c.data_ptr(), B, n, m, out)
    return list(out)


def scale_(kernel: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """``kernel.mul_(u[..., None]).mul_(v[:, None])`` (same roundings) in one pass; kernel (B, n, m), u (B, n), v (B, m)
    contiguous, of :func:`available`'s dtypes."""
    B, n, m = kernel.shape
    getattr(load().lib, f"mmcore_scale_{_SUFFIX[kernel.dtype]}")(kernel.data_ptr(), u.data_ptr(), v.data_ptr(), B, n, m)
    return kernel


def _ptr(t: Tensor | None):
    return None if t is None else t.data_ptr()


class Sweep:
    """The blocks of iterations on one kernel from one state, computed pair by pair ahead of the checks.

    ``block(k)`` returns block k's (u, v, col = u @ kernel, err, maxima): per pair the column error
    err = ||v * col - b_err||_2 and the largest |log| of a kept scaling (inf if NaN), maxima = their largest
    over the batch. Each pair runs on through later blocks while its own check says the solver will need
    them (see ``pair_sweep`` in ``_cpu_sinkhorn_src``), so its kernel stays in cache across blocks; a block
    that the solver's check does not reach is computed for nothing, never used. No autograd.
    Shapes: kernel (B, n, m); a, u0 (B, n); b, b_err (B, m); row_ok (B, n), col_ok (B, m) bool or None;
    col (B, m) = u0 @ kernel when already known, else None; sizes: iterations per block.
    With ``cost`` (B, n, m), ``kernel`` is an unfilled buffer: block 0 first writes each pair's kernel
    ``2 ** max(cost * scale2, floor2)`` (``floor2`` off ``support``, (B, n, m) bool or None) while it goes into
    cache, as ``sinkhorn._LogKernel.exp(floor=...)`` computes it; the kernel is complete once ``block(0)`` returns.
    With ``plan`` (B, n, m), a pair whose block may end the solve (err < tol, no absorption) writes its plan
    ``(kernel * u) * v`` there while its kernel is in cache; :meth:`plan` says whether every pair did for a block.
    """

    def __init__(self, kernel: Tensor, a: Tensor, b: Tensor, b_err: Tensor, row_ok: Tensor | None,
                 col_ok: Tensor | None, u0: Tensor, col: Tensor | None, sizes: list[int], half_limit: float,
                 tol: float, cost: Tensor | None = None, support: Tensor | None = None, scale2: float = 0.0,
                 floor2: float = 0.0, plan: Tensor | None = None):
        B, n, m = kernel.shape
        nb = len(sizes)
        self._inputs = tuple(None if t is None else t.contiguous()
                             for t in (kernel, a, b, b_err, row_ok, col_ok, u0, col))
        self.sizes = sizes
        self._sizes = (ctypes.c_int64 * nb)(*sizes)
        self._U, self._V, self._COL = kernel.new_empty(nb, B, n), kernel.new_empty(nb, B, m), kernel.new_empty(nb, B, m)
        self._STATS = kernel.new_empty(nb, B, 2)
        self._stats = self._STATS.numpy()  # a view: the per-block maxima in numpy cost less than torch's dispatch
        self._done = (ctypes.c_int64 * B)()
        self._plan, self._plan_at = plan, (ctypes.c_int64 * B)(*[-1] * B)
        self._fewest = 0  # blocks done by every pair
        self._half_limit, self._tol = half_limit, tol
        self._build = (None if cost is None else cost.contiguous(), None if support is None else support.contiguous(),
                       scale2, floor2)

    def block(self, k: int) -> tuple[Tensor, Tensor, Tensor, Tensor, list[float]]:
        """Block k's (u, v, col, err = stats[:, 0], stats.amax(0) as floats (NaN if any is NaN)), views into this
        sweep's buffers."""
        if self._fewest <= k:
            kernel, a, b, b_err, row_ok, col_ok, u0, col = self._inputs
            cost, support, scale2, floor2 = self._build
            B, n, m = kernel.shape
            self._fewest = getattr(load().lib, f"mmcore_sinkhorn_{_SUFFIX[kernel.dtype]}")(
                kernel.data_ptr(), _ptr(cost), _ptr(support), scale2, floor2, a.data_ptr(), b.data_ptr(),
                b_err.data_ptr(), _ptr(row_ok), _ptr(col_ok), u0.data_ptr(), _ptr(col), int(col is not None),
                self._sizes, len(self.sizes), k, self._U.data_ptr(), self._V.data_ptr(), self._COL.data_ptr(),
                self._STATS.data_ptr(), self._done, _ptr(self._plan), self._plan_at, self._half_limit, self._tol,
                B, n, m, max(1, min(torch.get_num_threads(), B)))
        return self._U[k], self._V[k], self._COL[k], self._STATS[k, :, 0], self._stats[k].max(0).tolist()

    def plan(self, k: int) -> Tensor | None:
        """The plans ``(kernel * u) * v`` of block k's state if every pair wrote them (see ``plan``), else None."""
        return self._plan if all(at == k for at in self._plan_at) else None
