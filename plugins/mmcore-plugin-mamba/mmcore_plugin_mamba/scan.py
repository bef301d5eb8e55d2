r"""Selective scan (the SSM of Mamba) with interchangeable backends: mamba-ssm on CUDA, a C++ kernel
or chunked pure torch elsewhere.

Backends (``backend=`` argument, also ``MambaBlock(backend=...)``):

- ``cuda``: ``mamba_ssm.ops.selective_scan_interface.selective_scan_fn`` (fused CUDA kernel). Needs
  CUDA tensors and ``pip install mmcore-plugin-mamba[cuda]``.
- ``cpu_kernel``: a C++ sequential scan over time, vectorised over the state size and threaded over
  channels, with its reverse-scan backward; compiled with the system C++ compiler on first use and
  cached (see ``_cpu_kernel``). CPU tensors only. O(B·L·D·N) time, O(B·D·L) memory.
- ``torch``: a chunked scan in plain torch, in cache-sized slabs, with a custom reverse-scan backward
  (``_chunked_scan``); any device. O(B·L·D·N) time, O(B·D·L) memory.
- ``auto`` (default): ``cuda`` for CUDA tensors when mamba-ssm imports, ``cpu_kernel`` for CPU
  tensors when it compiles, else ``torch``. The choice, and any fallback with its reason, is logged
  once per (request, device) on the ``mmcore_plugin_mamba.scan`` logger.
"""

from __future__ import annotations

import functools
import importlib
import logging
from typing import Callable

import torch
import torch.nn.functional as F

from . import _cpu_kernel
from ._chunked_scan import ChunkedScanFn

logger = logging.getLogger("mmcore_plugin_mamba.scan")

BACKENDS = ("auto", "torch", "cpu_kernel", "cuda")
CUDA_INSTALL_HINT = "pip install mmcore-plugin-mamba[cuda]"

__all__ = ["BACKENDS", "resolve_backend", "selective_scan", "selective_scan_time_major"]


@functools.lru_cache(maxsize=None)
def _mamba_ssm_scan() -> tuple[Callable | None, str | None]:
    """mamba-ssm's ``selective_scan_fn``, or None and the import error (imported once, lazily)."""
    try:
        module = importlib.import_module("mamba_ssm.ops.selective_scan_interface")
    except ImportError as e:  # a missing package, or a build whose CUDA extension fails to load
        return None, f"{type(e).__name__}: {e}"
    return module.selective_scan_fn, None


_logged: set[tuple[str, str, str]] = set()


def _log_choice(requested: str, device: torch.device, chosen: str, reason: str, fallback: bool = False) -> None:
    key = (requested, device.type, chosen)
    if key not in _logged:
        _logged.add(key)
        logger.log(logging.WARNING if fallback else logging.INFO,
                   "selective scan backend: %s (requested %r on %s; %s)", chosen, requested, device.type, reason)


def resolve_backend(backend: str, device: torch.device | str) -> str:
    """Name of the backend that ``selective_scan`` runs for ``backend`` and tensors on ``device``.

    Args:
        backend: one of ``BACKENDS``.
        device: where the tensors live.
    Returns:
        ``"cuda"``, ``"cpu_kernel"`` or ``"torch"``.
    Raises:
        ValueError: unknown name, or an explicit backend that cannot run here (says what to install or use).
    """
    device = torch.device(device)
    if backend not in BACKENDS:
        raise ValueError(f"selective_scan: unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "torch":
        _log_choice(backend, device, "torch", "as requested")
        return "torch"
    if backend == "cuda" or (backend == "auto" and device.type == "cuda"):
        problems = [] if device.type == "cuda" else [f"the tensors are on {device.type}, not CUDA"]
        fn, error = _mamba_ssm_scan()
        if fn is None:
            problems.append(f"mamba-ssm is not importable ({error}); run: {CUDA_INSTALL_HINT}")
        if not problems:
            _log_choice(backend, device, "cuda", "mamba-ssm selective_scan_fn")
            return "cuda"
        if backend == "cuda":
            raise ValueError("selective_scan: backend 'cuda' needs CUDA tensors and mamba-ssm, but "
                             + "; ".join(problems) + ". Use backend 'auto' or 'torch' to run without it.")
        _log_choice(backend, device, "torch", "mamba-ssm unavailable: " + "; ".join(problems), fallback=True)
        return "torch"
    if device.type != "cpu":
        if backend == "cpu_kernel":
            raise ValueError(f"selective_scan: backend 'cpu_kernel' runs on CPU tensors, got {device.type}; "
                             "use backend 'auto' or 'torch'")
        _log_choice(backend, device, "torch", f"no compiled kernel for {device.type}")
        return "torch"
    build = _cpu_kernel.load_kernel()
    if build.lib is None:
        if backend == "cpu_kernel":
            raise ValueError(f"selective_scan: backend 'cpu_kernel' is unavailable: {build.error}; "
                             "use backend 'auto' or 'torch'")
        _log_choice(backend, device, "torch", f"C++ kernel unavailable: {build.error}", fallback=True)
        return "torch"
    _log_choice(backend, device, "cpu_kernel", f"compiled C++ kernel {build.path}")
    return "cpu_kernel"


def _check_shapes(u, delta, A, B, C, D, z, delta_bias) -> None:
    if u.dim() != 3 or u.shape[-1] < 1:
        raise ValueError(f"selective_scan: u must be (batch, dim, L) with L >= 1, got {tuple(u.shape)}")
    batch, dim, L = u.shape
    if A.is_complex():
        raise ValueError("selective_scan: complex A is not supported; pass a real A of shape (dim, N)")
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"selective_scan: A must be (dim, N)=({dim}, N), got {tuple(A.shape)}")
    N = A.shape[1]
    for name, t in (("delta", delta), ("z", z)):
        if t is not None and t.shape != u.shape:
            raise ValueError(f"selective_scan: {name} must have u's shape {tuple(u.shape)}, got {tuple(t.shape)}")
    for name, t in (("B", B), ("C", C)):
        ok = t.dim() in (3, 4) and t.shape[0] == batch and t.shape[-2:] == (N, L)
        if not ok or (t.dim() == 4 and dim % t.shape[1] != 0):
            raise ValueError(f"selective_scan: {name} must be (batch, N, L)=({batch}, {N}, {L}) or "
                             f"(batch, G, N, L) with G dividing dim={dim}, got {tuple(t.shape)} "
                             "(time-invariant (dim, N) is not supported)")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and tuple(t.shape) != (dim,):
            raise ValueError(f"selective_scan: {name} must be (dim,)=({dim},), got {tuple(t.shape)}")


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, *, backend="auto"):
    r"""Selective scan of Mamba: an input-dependent diagonal linear recurrence read out by C, gated by z.

    $$\Delta = \operatorname{softplus}(\delta + b_\Delta), \qquad
      h_t = \exp(\Delta_t A) \odot h_{t-1} + \Delta_t\, u_t\, B_t, \qquad h_{-1} = 0,$$
    $$y_t = \langle C_t, h_t \rangle + D \odot u_t, \qquad \mathrm{out}_t = y_t \odot \operatorname{silu}(z_t)$$

    per batch row and channel $d$: $u_t, \Delta_t, y_t, z_t$ are scalars, $h_t, B_t, C_t, A_d \in \mathbb{R}^N$
    ($B_t, C_t$ shared by the channels of a group). The softplus is applied only if ``delta_softplus``;
    the $D$ and $z$ terms only if given.

    Reference: Gu & Dao 2023, Mamba: Linear-Time Sequence Modeling with Selective State Spaces
    (arXiv:2312.00752), §3.2 and Alg. 2; zero-order-hold A with the simplified B discretisation
    $\bar B = \Delta B$ of the official code.
    Notation: $\delta$ is ``delta`` (before softplus), $b_\Delta$ is ``delta_bias``; the argument order and
    layouts are those of ``mamba_ssm.ops.selective_scan_interface.selective_scan_fn``.
    Deviations: no time-invariant (dim, N) B/C, no complex A, no ``return_last_state`` (one return type);
    computation in float32 (float64 inputs: float64) and the result cast back to u's dtype, as mamba-ssm.
    Shapes: u, delta, z (batch, dim, L); A (dim, N); B, C (batch, N, L) or (batch, G, N, L);
    D, delta_bias (dim,) -> out (batch, dim, L).

    Args:
        u: input sequence.
        delta: step sizes before ``delta_bias`` and softplus.
        A: state matrix diagonal per channel (negative for a stable scan; the block uses ``-exp(A_log)``).
        B: input projection, time-varying.
        C: output projection, time-varying.
        D: skip connection per channel.
        z: gate (the output is multiplied by silu(z)).
        delta_bias: added to delta before the softplus.
        delta_softplus: apply softplus to delta + delta_bias.
        backend: ``"auto"``, ``"torch"``, ``"cpu_kernel"`` or ``"cuda"`` (see module docs).
    Returns:
        The scanned output, with u's dtype.
    Raises:
        ValueError: bad shapes, an unknown backend, or a backend that cannot run here.
    """
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    name = resolve_backend(backend, u.device)
    if name == "cuda":
        fn, _ = _mamba_ssm_scan()
        return fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    dtype = torch.float64 if u.dtype == torch.float64 else torch.float32
    uc, dc = u.to(dtype), delta.to(dtype)
    if delta_bias is not None:
        dc = dc + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        dc = F.softplus(dc)
    Bt, Ct = (t.to(dtype).unsqueeze(1) if t.dim() == 3 else t.to(dtype) for t in (B, C))  # (batch, G, N, L)
    Bt, Ct = Bt.transpose(-1, -2).contiguous(), Ct.transpose(-1, -2).contiguous()  # (batch, G, L, N)
    fn = _cpu_kernel.KernelScanFn if name == "cpu_kernel" else ChunkedScanFn
    y = fn.apply(uc.contiguous(), dc.contiguous(), A.to(dtype).contiguous(), Bt, Ct)  # (batch, dim, L)
    if D is not None:
        y = y + uc * D.to(dtype)[:, None]
    if z is not None:
        y = y * F.silu(z.to(dtype))
    return y.to(u.dtype)


def selective_scan_time_major(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, *,
                              backend="auto"):
    r"""``selective_scan`` in the time-major layout of the Mamba block's projections: no transposes.

    Computes exactly ``selective_scan`` (same equations, arguments and dtype rules) with time as the
    second axis. On ``cpu_kernel`` the Δ bias, softplus, D skip and z gate run inside the C++ kernel
    (forward and backward, recomputed there instead of kept), and u, delta, z, B, C may be row-strided
    views such as ``x_dbl[..., R:R + N]`` or the z half of ``in_proj``'s output: nothing is copied.
    Shapes: u, delta, z (batch, L, dim); A (dim, N); B, C (batch, L, N); D, delta_bias (dim,)
    -> out (batch, L, dim).

    Raises:
        ValueError: bad shapes, an unknown backend, or a backend that cannot run here.
    """
    if u.dim() != 3 or B.dim() != 3 or C.dim() != 3:
        raise ValueError(f"selective_scan_time_major: u must be (batch, L, dim) and B, C (batch, L, N), got "
                         f"{tuple(u.shape)}, {tuple(B.shape)}, {tuple(C.shape)}")
    _check_shapes(u.transpose(1, 2), delta.transpose(1, 2), A, B.transpose(1, 2), C.transpose(1, 2), D,
                  None if z is None else z.transpose(1, 2), delta_bias)
    name = resolve_backend(backend, u.device)
    if name == "cuda":
        fn, _ = _mamba_ssm_scan()
        tr = (lambda t: None if t is None else t.transpose(1, 2).contiguous())
        return tr(fn(tr(u), tr(delta), A, tr(B), tr(C), D, tr(z), delta_bias, delta_softplus))
    dtype = torch.float64 if u.dtype == torch.float64 else torch.float32
    cast = (lambda t: None if t is None else t.to(dtype))
    if name == "cpu_kernel":
        y = _cpu_kernel.FusedScanFn.apply(cast(u), cast(delta), cast(A), cast(B), cast(C), cast(D), cast(z),
                                          cast(delta_bias), bool(delta_softplus))
        return y.to(u.dtype)
    uc, dc = u.to(dtype), delta.to(dtype)
    if delta_bias is not None:
        dc = dc + delta_bias.to(dtype)
    if delta_softplus:
        dc = F.softplus(dc)
    y = ChunkedScanFn.apply(uc, dc, A.to(dtype), B.to(dtype), C.to(dtype), True)  # (batch, L, dim)
    if D is not None:
        y = torch.addcmul(y, uc, D.to(dtype))
    if z is not None:
        y = y * F.silu(z.to(dtype))
    return y.to(u.dtype)
