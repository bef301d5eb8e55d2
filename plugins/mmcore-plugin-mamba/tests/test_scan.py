"""Selective-scan backends against the sequential reference, and backend selection."""

from __future__ import annotations

import logging
import shutil

import pytest
import torch
from _reference import selective_scan_reference

from mmcore import native
from mmcore_plugin_mamba import _cpu_kernel, scan
from mmcore_plugin_mamba.scan import resolve_backend, selective_scan

# fp32 sums over <= 200 steps: observed max errors ~1e-6 relative; 1e-4 is the bar.
RTOL_F32 = ATOL_F32 = 1e-4
# float64 (the kernel's double path and the torch backend in double): only rounding differs.
RTOL_F64 = ATOL_F64 = 1e-9
GRAD_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def make_inputs(batch, dim, groups, L, N, *, full=True, dtype=torch.float32, seed=0):
    """Leaf tensors in mamba-ssm's layouts; B, C (batch, N, L) if groups is None else (batch, G, N, L)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype)

    bc = (batch, N, L) if groups is None else (batch, groups, N, L)
    t = {"u": r(batch, dim, L), "delta": 0.5 * r(batch, dim, L),
         "A": -0.5 - 3 * torch.rand(dim, N, generator=g, dtype=dtype), "B": r(*bc), "C": r(*bc)}
    if full:
        t.update(D=r(dim), z=r(batch, dim, L), delta_bias=0.1 * r(dim))
    else:
        t["delta"] = torch.rand(batch, dim, L, generator=g, dtype=dtype)  # positive: used without softplus
    return {k: v.requires_grad_() for k, v in t.items()}


def run_with_grads(fn, inputs, dout_seed=1, **kwargs):
    """Output and the gradients of every input for the cotangent randn_like(out)."""
    out = fn(**inputs, **kwargs)
    dout = torch.randn(out.shape, generator=torch.Generator().manual_seed(dout_seed), dtype=out.dtype)
    grads = torch.autograd.grad(out, list(inputs.values()), dout)
    return out.detach(), dict(zip(inputs, grads))


SHAPES = [  # (batch, dim, groups, L, N)
    (2, 8, None, 37, 16),  # batch > 1, L not a multiple of any chunk
    (1, 4, None, 1, 16),  # a single step
    (3, 6, 2, 70, 12),  # grouped B/C (batch, G, N, L); L spans two chunks of 64 plus padding
    (2, 4, None, 200, 4),  # four chunks: the cross-chunk scan runs two levels
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "b{}-d{}-g{}-L{}-N{}".format(*s))
@pytest.mark.parametrize("full", [True, False], ids=["D-z-bias-softplus", "bare"])
def test_backend_matches_sequential_reference(backend, shape, full):
    inputs = make_inputs(*shape, full=full)
    ref_inputs = {k: v.detach().clone().requires_grad_() for k, v in inputs.items()}
    out, grads = run_with_grads(selective_scan, inputs, delta_softplus=full, backend=backend)
    ref, ref_grads = run_with_grads(selective_scan_reference, ref_inputs, delta_softplus=full)
    torch.testing.assert_close(out, ref, rtol=RTOL_F32, atol=ATOL_F32)
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=RTOL_F32, atol=ATOL_F32,
                                   msg=lambda m: f"d{name}: {m}")
    assert set(grads) == (set(GRAD_NAMES) if full else {"u", "delta", "A", "B", "C"})


def test_backend_matches_reference_in_float64(backend):
    inputs = make_inputs(2, 6, 3, 100, 8, dtype=torch.float64)
    ref_inputs = {k: v.detach().clone().requires_grad_() for k, v in inputs.items()}
    out, grads = run_with_grads(selective_scan, inputs, delta_softplus=True, backend=backend)
    ref, ref_grads = run_with_grads(selective_scan_reference, ref_inputs, delta_softplus=True)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, ref, rtol=RTOL_F64, atol=ATOL_F64)
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=RTOL_F64, atol=ATOL_F64)


@pytest.mark.parametrize("chunk, slab", [(4, 1), (16, 3000), (8, 10**9)], ids=["chunk4-slab1", "chunk16-slabs", "chunk8-one-slab"])
def test_torch_backend_slabs_and_chunks_match_reference_in_float64(monkeypatch, chunk, slab):
    # The torch backend cuts time into chunks and chunks into slabs of bounded memory, carrying the
    # state (forward) and the adjoint (backward) across both; small sizes force many of each.
    from mmcore_plugin_mamba import _chunked_scan

    monkeypatch.setattr(_chunked_scan, "CHUNK", chunk)
    monkeypatch.setattr(_chunked_scan, "SLAB_ELEMENTS", slab)
    inputs = make_inputs(2, 6, 3, 75, 8, dtype=torch.float64)
    ref_inputs = {k: v.detach().clone().requires_grad_() for k, v in inputs.items()}
    out, grads = run_with_grads(selective_scan, inputs, delta_softplus=True, backend="torch")
    ref, ref_grads = run_with_grads(selective_scan_reference, ref_inputs, delta_softplus=True)
    torch.testing.assert_close(out, ref, rtol=RTOL_F64, atol=ATOL_F64)
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=RTOL_F64, atol=ATOL_F64,
                                   msg=lambda m: f"d{name}: {m}")


def test_torch_backend_reused_work_buffers_leak_nothing(monkeypatch):
    # On CPU the torch backend keeps its work buffers between calls; one left full of NaN by an
    # earlier call must be reused without leaking into the results.
    from mmcore_plugin_mamba import _chunked_scan

    stale = [torch.full((1 << 16,), float("nan"), dtype=torch.float64) for _ in range(2)]
    monkeypatch.setattr(_chunked_scan, "_POOL", list(stale))
    inputs = make_inputs(2, 6, 3, 75, 8, dtype=torch.float64)
    ref_inputs = {k: v.detach().clone().requires_grad_() for k, v in inputs.items()}
    out, grads = run_with_grads(selective_scan, inputs, delta_softplus=True, backend="torch")
    ref, ref_grads = run_with_grads(selective_scan_reference, ref_inputs, delta_softplus=True)
    assert any(t is s for t in _chunked_scan._POOL for s in stale)  # the stale buffers were used, then kept
    torch.testing.assert_close(out, ref, rtol=RTOL_F64, atol=ATOL_F64)
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=RTOL_F64, atol=ATOL_F64,
                                   msg=lambda m: f"d{name}: {m}")


def test_strong_decay_stays_finite_and_exact(backend):
    # Δ·A down to -1600: the true decays underflow to 0; the backends floor them (e^-40, e^-60),
    # which must change nothing visible and produce no inf/NaN.
    inputs = make_inputs(1, 4, None, 80, 16)
    with torch.no_grad():
        inputs["delta"].mul_(0).add_(4.0)
        inputs["A"].mul_(0).add_(-torch.arange(1, 17.0) * 25)
    ref_inputs = {k: v.detach().clone().requires_grad_() for k, v in inputs.items()}
    out, grads = run_with_grads(selective_scan, inputs, delta_softplus=True, backend=backend)
    ref, ref_grads = run_with_grads(selective_scan_reference, ref_inputs, delta_softplus=True)
    torch.testing.assert_close(out, ref, rtol=RTOL_F32, atol=ATOL_F32)
    for name in grads:
        assert torch.isfinite(grads[name]).all()
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=RTOL_F32, atol=ATOL_F32)


def test_low_precision_input_returns_its_dtype(backend):
    inputs = {k: v.detach() for k, v in make_inputs(1, 4, None, 9, 4).items()}
    out = selective_scan(**{k: v.to(torch.bfloat16) for k, v in inputs.items()}, delta_softplus=True, backend=backend)
    assert out.dtype == torch.bfloat16 and out.shape == (1, 4, 9)


@pytest.mark.parametrize("bad, match", [
    ({"A": torch.randn(5, 16)}, r"A must be \(dim, N\)=\(8, N\)"),
    ({"B": torch.randn(8, 16)}, r"time-invariant"),
    ({"C": torch.randn(2, 3, 16, 37)}, r"G dividing dim=8"),
    ({"z": torch.randn(2, 8, 36)}, r"z must have u's shape"),
    ({"D": torch.randn(7)}, r"D must be \(dim,\)=\(8,\)"),
])
def test_bad_shapes_raise_value_error(bad, match):
    inputs = {k: v.detach() for k, v in make_inputs(2, 8, None, 37, 16).items()}
    inputs.update(bad)
    with pytest.raises(ValueError, match=match):
        selective_scan(**inputs, backend="torch")


def test_auto_never_picks_cuda_for_cpu_tensors():
    assert resolve_backend("auto", "cpu") in ("cpu_kernel", "torch")


def test_cpu_kernel_builds_where_a_compiler_exists():
    if not (shutil.which("c++") or shutil.which("g++")):
        pytest.skip("no C++ compiler on PATH")
    build = _cpu_kernel.load_kernel()
    assert build.lib is not None, build.error
    assert resolve_backend("auto", "cpu") == "cpu_kernel"


def test_cuda_without_mamba_ssm_raises_with_install_hint(monkeypatch):
    monkeypatch.setattr(scan, "_mamba_ssm_scan", lambda: (None, "ModuleNotFoundError: No module named 'mamba_ssm'"))
    with pytest.raises(ValueError, match=r"backend 'cuda'.*pip install mmcore-plugin-mamba\[cuda\]"):
        resolve_backend("cuda", "cpu")


def test_cuda_with_cpu_tensors_raises_naming_the_device(monkeypatch):
    monkeypatch.setattr(scan, "_mamba_ssm_scan", lambda: (lambda *a: None, None))  # as if mamba-ssm imported
    with pytest.raises(ValueError, match=r"tensors are on cpu, not CUDA"):
        resolve_backend("cuda", "cpu")


def test_unknown_backend_raises_listing_the_choices():
    with pytest.raises(ValueError, match=r"unknown backend 'triton'; choose one of auto, torch, cpu_kernel, cuda"):
        resolve_backend("triton", "cpu")


def test_backend_choice_is_logged_once(monkeypatch, caplog):
    monkeypatch.setattr(scan, "_logged", set())
    inputs = {k: v.detach() for k, v in make_inputs(1, 2, None, 3, 2).items()}
    with caplog.at_level(logging.INFO, logger="mmcore_plugin_mamba.scan"):
        for _ in range(3):
            selective_scan(**inputs, backend="torch")
    assert [r.getMessage() for r in caplog.records].count(
        "selective scan backend: torch (requested 'torch' on cpu; as requested)") == 1


@pytest.mark.parametrize("cxx", ["/nonexistent/c++", "false"], ids=["missing-compiler", "failing-compiler"])
def test_failed_kernel_build_falls_back_to_torch(monkeypatch, caplog, tmp_path, cxx):
    monkeypatch.setenv("CXX", cxx)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setattr(native, "_builds", {})
    monkeypatch.setattr(scan, "_logged", set())
    with caplog.at_level(logging.WARNING, logger="mmcore_plugin_mamba.scan"):
        assert resolve_backend("auto", "cpu") == "torch"
    assert any("C++ kernel unavailable" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError, match=r"backend 'cpu_kernel' is unavailable"):
        resolve_backend("cpu_kernel", "cpu")


def test_compiled_kernel_is_cached_on_disk(monkeypatch, tmp_path):
    if not (shutil.which("c++") or shutil.which("g++")):
        pytest.skip("no C++ compiler on PATH")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setattr(native, "_builds", {})  # forget this process's build: the next call compiles or loads
    first = _cpu_kernel.load_kernel()
    monkeypatch.setattr(native, "_builds", {})
    second = _cpu_kernel.load_kernel()
    assert first.lib is not None and first.compile_seconds > 0
    assert second.path == first.path and second.compile_seconds == 0.0


@pytest.mark.parametrize("dtype, rtol, atol", [(torch.float64, RTOL_F64, ATOL_F64), (torch.float32, RTOL_F32, ATOL_F32)],
                         ids=["float64", "float32"])
@pytest.mark.parametrize("full", [True, False], ids=["D-z-bias-softplus", "bare"])
@pytest.mark.parametrize("L", [1, 37, 150], ids=lambda L: f"L{L}")
def test_time_major_matches_sequential_reference(backend, dtype, rtol, atol, full, L):
    # The block's path: time-major, B and C as strided views of one projection and z as the second
    # half of another, as MambaBlock passes them; L = 150 spans several of the fused kernel's chunks.
    from mmcore_plugin_mamba.scan import selective_scan_time_major

    batch, dim, N = 2, 40, 8
    inputs = make_inputs(batch, dim, None, L, N, full=full, dtype=dtype)
    ref_inputs = {k: v.detach().clone().requires_grad_() for k, v in inputs.items()}
    ref, ref_grads = run_with_grads(selective_scan_reference, ref_inputs, delta_softplus=full)
    leaves = {k: v.detach().clone().requires_grad_() for k, v in inputs.items()}
    bc = torch.cat([leaves["B"].transpose(1, 2), leaves["C"].transpose(1, 2)], -1)  # (batch, L, 2N)
    tm = {"u": leaves["u"].transpose(1, 2), "delta": leaves["delta"].transpose(1, 2), "A": leaves["A"],
          "B": bc[..., :N], "C": bc[..., N:]}
    if full:
        xz = torch.cat([leaves["z"].transpose(1, 2), torch.zeros(batch, L, 3, dtype=dtype)], -1)
        tm.update(D=leaves["D"], z=xz[..., :dim], delta_bias=leaves["delta_bias"])
    out = selective_scan_time_major(**tm, delta_softplus=full, backend=backend)
    dout = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    grads = dict(zip(leaves, torch.autograd.grad(out, list(leaves.values()), dout.transpose(1, 2))))
    torch.testing.assert_close(out.transpose(1, 2), ref, rtol=rtol, atol=atol)
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=rtol, atol=atol, msg=lambda m: f"d{name}: {m}")
