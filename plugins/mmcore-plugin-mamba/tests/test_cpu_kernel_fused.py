"""The fused time-major C++ kernels (scan with activations folded in, causal conv + silu, the block's mixer).

Each is checked against plain torch in float64 (1e-9) and by ``torch.autograd.gradcheck`` on tiny
shapes, including channel counts that are not a multiple of the kernel's vector width (a partial lane
block) and two threads (channel groups and per-thread dB/dC partials).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from _reference import selective_scan_reference

from mmcore_plugin_mamba import _cpu_kernel
from mmcore_plugin_mamba.block import MambaBlock

F64 = {"dtype": torch.float64}


@pytest.fixture(autouse=True)
def kernel():
    build = _cpu_kernel.load_kernel()
    if build.lib is None:
        pytest.skip(f"the C++ kernel did not build here: {build.error}")


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def threads(request):
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


def _leaf(*shape, scale=1.0, shift=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, **F64) * scale + shift).requires_grad_()


def _scan_inputs(batch, L, E, N, seed=0):
    """Time-major leaves; B and C are views of one (batch, L, 2N + 1) projection, z of a (batch, L, E + 3) one."""
    g = torch.Generator().manual_seed(seed)
    bc = torch.randn(batch, L, 2 * N + 1, generator=g, **F64).requires_grad_()
    zz = torch.randn(batch, L, E + 3, generator=g, **F64).requires_grad_()
    u, delta = _leaf(batch, L, E, seed=seed + 1), _leaf(batch, L, E, scale=0.5, seed=seed + 2)
    A = (-0.5 - 3 * torch.rand(E, N, generator=g, **F64)).requires_grad_()
    D, bias = _leaf(E, seed=seed + 3), _leaf(E, scale=0.1, seed=seed + 4)
    return u, delta, A, bc, zz, D, bias


def _fused(u, delta, A, bc, zz, D, bias, N, softplus=True):
    E = u.shape[-1]
    return _cpu_kernel.FusedScanFn.apply(u, delta, A, bc[..., :N], bc[..., N:2 * N], D, zz[..., :E], bias, softplus)


@pytest.mark.parametrize("batch, L, E, N", [(2, 70, 19, 3), (1, 130, 16, 4), (3, 5, 8, 2)],
                         ids=["partial-lanes-2-chunks", "full-lanes-3-chunks", "short"])
def test_fused_scan_equals_the_reference_in_float64(threads, batch, L, E, N):
    u, delta, A, bc, zz, D, bias = _scan_inputs(batch, L, E, N)
    out = _fused(u, delta, A, bc, zz, D, bias, N)
    ref = selective_scan_reference(u.transpose(1, 2), delta.transpose(1, 2), A, bc[..., :N].transpose(1, 2),
                                   bc[..., N:2 * N].transpose(1, 2), D, z=zz[..., :E].transpose(1, 2),
                                   delta_bias=bias, delta_softplus=True).transpose(1, 2)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)
    leaves = (u, delta, A, bc, zz, D, bias)
    dout = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), **F64)
    for name, g, rg in zip("u delta A bc zz D bias".split(), torch.autograd.grad(out, leaves, dout),
                           torch.autograd.grad(ref, leaves, dout)):
        torch.testing.assert_close(g, rg, rtol=1e-9, atol=1e-9, msg=lambda m: f"d{name}: {m}")


@pytest.mark.parametrize("softplus", [True, False], ids=["softplus", "no-softplus"])
def test_fused_scan_passes_gradcheck(threads, softplus):
    N = 3
    u, delta, A, bc, zz, D, bias = _scan_inputs(2, 9, 10, N, seed=3)
    assert torch.autograd.gradcheck(lambda *t: _fused(*t, N, softplus), (u, delta, A, bc, zz, D, bias))


def _conv_silu(x, w, b):
    K = w.shape[1]
    return F.silu(F.conv1d(x.transpose(1, 2), w[:, None], b, padding=K - 1, groups=w.shape[0])[..., :x.shape[1]]
                  ).transpose(1, 2)


def test_mixer_equals_its_torch_composition_and_passes_gradcheck(threads):
    # MixerFn = silu(conv(x)) -> x_proj -> dt_proj -> fused scan, with x and z halves of one input.
    batch, L, E, N, R, K = 2, 11, 10, 3, 2, 4
    xz = _leaf(batch, L, 2 * E, seed=7)
    conv_w, conv_b = _leaf(E, K, seed=8), _leaf(E, seed=9)
    x_w, dt_w = _leaf(R + 2 * N, E, scale=0.3, seed=10), _leaf(E, R, scale=0.5, seed=11)
    bias, D = _leaf(E, scale=0.1, seed=12), _leaf(E, seed=13)
    A = (-0.5 - 3 * torch.rand(E, N, generator=torch.Generator().manual_seed(14), **F64)).requires_grad_()
    args = (xz, conv_w, conv_b, x_w, dt_w, bias, A, D)
    out = _cpu_kernel.MixerFn.apply(*args)
    u = _conv_silu(xz[..., :E], conv_w, conv_b)
    x_dbl = u @ x_w.t()
    ref = selective_scan_reference(u.transpose(1, 2), (x_dbl[..., :R] @ dt_w.t()).transpose(1, 2), A,
                                   x_dbl[..., R:R + N].transpose(1, 2), x_dbl[..., R + N:].transpose(1, 2), D,
                                   z=xz[..., E:].transpose(1, 2), delta_bias=bias, delta_softplus=True).transpose(1, 2)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)
    dout = torch.randn(out.shape, generator=torch.Generator().manual_seed(15), **F64)
    for i, (g, rg) in enumerate(zip(torch.autograd.grad(out, args, dout), torch.autograd.grad(ref, args, dout))):
        torch.testing.assert_close(g, rg, rtol=1e-9, atol=1e-9, msg=lambda m: f"argument {i}: {m}")
    assert torch.autograd.gradcheck(_cpu_kernel.MixerFn.apply, args)
    no_bias = (xz, conv_w, None, x_w, dt_w, bias, A, D)  # conv_bias=False
    assert torch.autograd.gradcheck(lambda *t: _cpu_kernel.MixerFn.apply(*t[:2], None, *t[2:]),
                                    no_bias[:2] + no_bias[3:])


def test_block_on_cpu_kernel_uses_the_mixer_and_matches_the_torch_backend(monkeypatch):
    torch.manual_seed(0)
    fused = MambaBlock(16, d_conv=3, backend="cpu_kernel").double()
    plain = MambaBlock(16, d_conv=3, backend="torch").double()
    plain.load_state_dict(fused.state_dict())
    x = _leaf(2, 40, 16, seed=2)
    calls, apply = [], _cpu_kernel.MixerFn.apply

    def spy(*a):
        calls.append(1)
        return apply(*a)

    monkeypatch.setattr(_cpu_kernel.MixerFn, "apply", spy)
    out = fused(x)
    monkeypatch.undo()
    assert calls, "the cpu_kernel block did not run MixerFn"
    ref = plain(x)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)
    params = [x, *fused.parameters()]
    grads = torch.autograd.grad(out.square().sum(), params)
    ref_grads = torch.autograd.grad(ref.square().sum(), [x, *plain.parameters()])
    for g, rg in zip(grads, ref_grads):
        torch.testing.assert_close(g, rg, rtol=1e-8, atol=1e-9)
