"""MambaBlock: mamba-ssm's parameter layout, equivalence with the reference scan, masks; flip_valid."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from _reference import selective_scan_reference
from hypothesis import given, settings
from hypothesis import strategies as st

from mmcore_plugin_mamba import block
from mmcore_plugin_mamba.block import MambaBlock, flip_valid

RTOL = ATOL = 1e-4  # fp32, the bar for pure-torch block vs the sequential reference
SAME_RTOL = SAME_ATOL = 1e-5  # two backends on the same weights: only summation order differs


def make_block(backend="torch", seed=0, **kwargs) -> MambaBlock:
    torch.manual_seed(seed)
    return MambaBlock(16, backend=backend, **kwargs)


def randn(*shape, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_parameter_names_and_shapes_match_mamba_ssm():
    m = MambaBlock(d_model=16, d_state=16, d_conv=4, expand=2)  # E = 32, dt_rank = ceil(16 / 16) = 1
    expected = {  # mamba_ssm.modules.mamba_simple.Mamba(16) with the same arguments
        "A_log": (32, 16), "D": (32,), "in_proj.weight": (64, 16), "conv1d.weight": (32, 1, 4),
        "conv1d.bias": (32,), "x_proj.weight": (33, 32), "dt_proj.weight": (32, 1), "dt_proj.bias": (32,),
        "out_proj.weight": (16, 32),
    }
    assert {k: tuple(v.shape) for k, v in m.state_dict().items()} == expected
    assert m.A_log.dtype == torch.float32 and m.D.dtype == torch.float32


def test_initialisation_follows_mamba_ssm():
    m = MambaBlock(d_model=32, d_state=12, expand=4, dt_min=0.001, dt_max=0.1, dt_init_floor=1e-4)
    E, R = 128, 2
    torch.testing.assert_close(m.A_log, torch.log(torch.arange(1, 13.0)).repeat(E, 1))  # S4D-real
    assert torch.equal(m.D, torch.ones(E))
    dt = F.softplus(m.dt_proj.bias)  # inverse-softplus init: Δ at init lies in [dt_min, dt_max]
    assert dt.min() >= 0.001 * (1 - 1e-4) and dt.max() <= 0.1 * (1 + 1e-4)
    assert m.dt_proj.weight.abs().max() <= R**-0.5
    assert m.dt_rank == math.ceil(32 / 16) and m.d_inner == E


def reference_forward(m: MambaBlock, x: torch.Tensor) -> torch.Tensor:
    """The slow path of mamba_ssm's Mamba: channel-major conv1d and the sequential reference scan."""
    xz = m.in_proj(x).transpose(1, 2)  # (B, 2E, T)
    xi, z = xz.chunk(2, dim=1)
    xi = F.silu(m.conv1d(xi)[..., : xi.shape[-1]])
    x_dbl = m.x_proj(xi.transpose(1, 2))
    dt, Bm, Cm = torch.split(x_dbl, [m.dt_rank, m.d_state, m.d_state], dim=-1)
    delta = F.linear(dt, m.dt_proj.weight).transpose(1, 2)
    y = selective_scan_reference(xi, delta, -torch.exp(m.A_log.float()), Bm.transpose(1, 2), Cm.transpose(1, 2),
                                 m.D.float(), z=z, delta_bias=m.dt_proj.bias.float(), delta_softplus=True)
    return m.out_proj(y.transpose(1, 2))


@pytest.mark.parametrize("dtype, rtol, atol", [(torch.float32, RTOL, ATOL), (torch.float64, 1e-9, 1e-9)],
                         ids=["float32", "float64"])
@pytest.mark.parametrize("T", [1, 23, 150], ids=lambda T: f"T{T}")
def test_block_matches_the_reference_forward(backend, dtype, rtol, atol, T):
    # The block's fused time-major path (conv, Δ bias, softplus, D skip, z gate folded in) against
    # mamba_ssm's slow path with the sequential scan: outputs and every gradient. T = 150 spans
    # several chunks of the fused kernel and of the torch backend.
    m = make_block(backend).to(dtype)
    x = randn(2, T, 16).to(dtype).requires_grad_()
    out = m(x)
    dout = randn(*out.shape, seed=2).to(dtype)
    grads = torch.autograd.grad(out, [x, *m.parameters()], dout)
    ref = reference_forward(m, x)
    ref_grads = torch.autograd.grad(ref, [x, *m.parameters()], dout)
    torch.testing.assert_close(out, ref, rtol=rtol, atol=atol)
    names = ["x"] + [n for n, _ in m.named_parameters()]
    for name, g, rg in zip(names, grads, ref_grads):
        # A = -exp(A_log.float()) runs in float32 even for a float64 block (as mamba-ssm keeps A_log):
        # its gradient passes float32 rounding on both sides.
        tol = max(rtol, 1e-6) if name == "A_log" else rtol
        torch.testing.assert_close(g, rg, rtol=tol, atol=max(atol, tol), msg=lambda msg: f"grad {name}: {msg}")


def test_padding_never_changes_valid_outputs(backend):
    m = make_block(backend)
    lengths = torch.tensor([11, 4, 1])
    valid = torch.arange(11) < lengths[:, None]  # (3, 11)
    x = randn(3, 11, 16)
    junk = torch.where(valid[..., None], x, 1e3 * randn(3, 11, 16, seed=5))
    junk[1, -1] = float("nan")  # even NaN padding must not leak
    out, out_junk = m(x, valid), m(junk, valid)
    torch.testing.assert_close(out, out_junk, rtol=0, atol=0)
    assert torch.equal(out[~valid], torch.zeros_like(out[~valid]))
    for b, n in enumerate(lengths.tolist()):  # each row alone, cut to its length
        torch.testing.assert_close(out[b, :n], m(x[b : b + 1, :n])[0], rtol=SAME_RTOL, atol=SAME_ATOL)


def test_state_dict_loads_into_another_backend(backend):
    src = make_block("torch", seed=3)
    dst = make_block(backend, seed=4)
    dst.load_state_dict(src.state_dict())
    x = randn(2, 9, 16)
    torch.testing.assert_close(dst(x), src(x), rtol=SAME_RTOL, atol=SAME_ATOL)


def test_bad_inputs_raise_value_error():
    m = make_block()
    with pytest.raises(ValueError, match=r"x must be \(B, T, d_model=16\), got \(2, 5, 8\)"):
        m(torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match=r"valid must be a bool tensor of shape \(B, T\)=\(2, 5\)"):
        m(torch.randn(2, 5, 16), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"unknown backend 'gpu'"):
        MambaBlock(16, backend="gpu")


@settings(deadline=None)
@given(lengths=st.lists(st.integers(0, 9), min_size=1, max_size=5), T_extra=st.integers(0, 3))
def test_flip_valid_is_an_involution_that_reverses_only_valid_prefixes(lengths, T_extra):
    T = max(lengths) + T_extra
    if T == 0:
        return
    valid = torch.arange(T) < torch.tensor(lengths)[:, None]  # (B, T)
    x = torch.arange(len(lengths) * T * 2, dtype=torch.float32).view(len(lengths), T, 2)
    y = flip_valid(x, valid)
    torch.testing.assert_close(flip_valid(y, valid), x, rtol=0, atol=0)
    for b, n in enumerate(lengths):
        torch.testing.assert_close(y[b, :n], x[b, :n].flip(0), rtol=0, atol=0)
        torch.testing.assert_close(y[b, n:], x[b, n:], rtol=0, atol=0)


def test_flip_valid_rejects_a_mask_with_holes():
    valid = torch.tensor([[True, False, True]])
    with pytest.raises(ValueError, match="True then False"):
        flip_valid(torch.zeros(1, 3, 4), valid)


def test_reverse_pass_with_flip_valid_ignores_padding(backend):
    # The Bi-Mamba pattern: a right-to-left pass over end-padded rows.
    m = make_block(backend)
    lengths = torch.tensor([8, 3])
    valid = torch.arange(8) < lengths[:, None]
    x = randn(2, 8, 16)
    out = flip_valid(m(flip_valid(x, valid), valid), valid)
    for b, n in enumerate(lengths.tolist()):
        alone = m(x[b : b + 1, :n].flip(1)).flip(1)[0]
        torch.testing.assert_close(out[b, :n], alone, rtol=SAME_RTOL, atol=SAME_ATOL)
