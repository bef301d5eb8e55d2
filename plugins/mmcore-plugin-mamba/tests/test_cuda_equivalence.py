"""Pure-torch scan and block vs mamba-ssm's CUDA kernels on the same inputs and weights (CUDA only).

Skipped without a CUDA GPU or without mamba-ssm (``pip install mmcore-plugin-mamba[cuda]``).
"""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.cuda

if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU (torch.cuda.is_available() is False)", allow_module_level=True)
mamba_simple = pytest.importorskip(
    "mamba_ssm.modules.mamba_simple", reason="needs mamba-ssm: pip install mmcore-plugin-mamba[cuda]")

from mmcore_plugin_mamba import _cpu_kernel  # noqa: E402
from mmcore_plugin_mamba.block import MambaBlock  # noqa: E402
from mmcore_plugin_mamba.scan import resolve_backend, selective_scan  # noqa: E402

# fp32 tolerances of mamba-ssm's own tests (tests/ops/test_selective_scan.py)
RTOL, ATOL = 6e-4, 2e-3


def make_inputs(batch, dim, N, L, device, seed=0):
    g = torch.Generator(device=device).manual_seed(seed)

    def r(*s):
        return torch.randn(*s, device=device, generator=g)

    t = {"u": r(batch, dim, L), "delta": 0.5 * r(batch, dim, L),
         "A": -0.5 - torch.rand(dim, N, device=device, generator=g), "B": r(batch, N, L), "C": r(batch, N, L),
         "D": r(dim), "z": r(batch, dim, L), "delta_bias": 0.1 * r(dim)}
    return {k: v.requires_grad_() for k, v in t.items()}


def out_and_grads(fn, inputs, dout, **kw):
    out = fn(**inputs, **kw)
    grads = torch.autograd.grad(out, list(inputs.values()), dout)
    return out.detach(), dict(zip(inputs, grads))


def test_auto_picks_mamba_ssm_for_cuda_tensors():
    assert resolve_backend("auto", "cuda") == "cuda"


@pytest.mark.parametrize("L", [1, 129, 1024])
def test_torch_scan_matches_mamba_ssm_kernel(L):
    inputs = make_inputs(2, 64, 16, L, "cuda")
    dout = torch.randn(2, 64, L, device="cuda")
    ref, ref_g = out_and_grads(selective_scan, inputs, dout, delta_softplus=True, backend="cuda")
    cpu_backends = ("torch", "cpu_kernel") if _cpu_kernel.load_kernel().lib is not None else ("torch",)
    for backend, device in [("torch", "cuda")] + [(b, "cpu") for b in cpu_backends]:
        mine = {k: v.detach().to(device).requires_grad_() for k, v in inputs.items()}
        out, g = out_and_grads(selective_scan, mine, dout.to(device), delta_softplus=True, backend=backend)
        torch.testing.assert_close(out.cuda(), ref, rtol=RTOL, atol=ATOL)
        for k in g:
            torch.testing.assert_close(g[k].cuda(), ref_g[k], rtol=RTOL, atol=ATOL,
                                       msg=lambda m: f"{backend} d{k}: {m}")


def test_block_backends_and_mamba_ssm_module_agree():
    torch.manual_seed(0)
    ours = MambaBlock(64, backend="torch").cuda()
    fused = MambaBlock(64, backend="cuda").cuda()
    fused.load_state_dict(ours.state_dict())
    theirs = mamba_simple.Mamba(64).cuda()
    theirs.load_state_dict(ours.state_dict())  # the same names and shapes: strict loading succeeds
    x = torch.randn(2, 300, 64, device="cuda", requires_grad=True)
    dout = torch.randn(2, 300, 64, device="cuda")
    results = []
    for m in (ours, fused, theirs):
        out = m(x)
        results.append((out.detach(), torch.autograd.grad(out, [x, *m.parameters()], dout)))
    (ref, ref_g), *others = results
    for out, g in others:
        torch.testing.assert_close(out, ref, rtol=RTOL, atol=ATOL)
        for a, b in zip(g, ref_g):
            torch.testing.assert_close(a, b, rtol=RTOL, atol=ATOL)
