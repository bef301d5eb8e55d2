"""MGMR-Net (Yang et al., Electronics 14(15):3088, 2025) §3.3: the equations this plugin implements, one test
each, on small cases computed by hand or by a float64 loop written here.

Numbering (the text conversion lost the paper's numbers; docs/fidelity.md uses this one): the display
equations of §3 in order of appearance — §3.2 Eq. 1-3 (encoders: core, tests/test_paper_losses.py),
§3.3.1 Eq. 4-7 (SSM and Mamba layer), Stage 1 Eq. 8-12, Stage 2 Eq. 13-17 (Eq. 17, the FC head, is
core), §3.4 Eq. 18-22 and §3.5 Eq. 23-25 (mmcore-plugin-recon and the core).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mmcore.functional import masked_max
from mmcore.protocols import BuildContext, ModalityInfo
from mmcore_plugin_mamba.bimamba_text_centric import BimambaTextCentricAligner
from mmcore_plugin_mamba.block import MambaBlock, flip_valid
from mmcore_plugin_mamba.interleaved_mamba import InterleavedMambaFuser
from mmcore_plugin_mamba.params import BimambaTextCentricParams, InterleavedMambaParams
from mmcore_plugin_mamba.scan import selective_scan
from mmcore_plugin_mamba.stack import MambaStack

F64 = torch.float64
D = 4
EXACT = 1e-12  # float64 round-off of a few dozen operations
LN2 = math.log(2.0)
BACKENDS = ["torch", "auto"]  # auto = the C++ kernel on CPU when it compiles, else torch


def ctx(*names: str) -> BuildContext:
    return BuildContext(modalities={m: ModalityInfo(m, D, 0) for m in names}, d_model=D)


def aligner(*names: str, **params) -> BimambaTextCentricAligner:
    torch.manual_seed(0)
    p = BimambaTextCentricParams(**{"d_state": 3, "expand": 2, **params})
    return BimambaTextCentricAligner(p, ctx(*names)).double().eval()


def mgmr_fuser(*names: str, depth: int = 1) -> InterleavedMambaFuser:
    """Stage 2 with MGMR-Net's Table 2 (MOSI) settings: state 12, expansion 4, max pooling."""
    torch.manual_seed(0)
    p = InterleavedMambaParams(depth=depth, d_state=12, expand=4, pool="max")
    return InterleavedMambaFuser(p, ctx(*names)).double().eval()


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def prefix(lengths: list[int], T: int) -> torch.Tensor:
    return torch.arange(T) < torch.tensor(lengths)[:, None]  # (B, T)


def tagged(tag: float, T: int) -> torch.Tensor:
    """(1, T, D) float64 whose token t (1-based) holds tag + t in every feature."""
    return (tag + torch.arange(1, T + 1, dtype=F64)).view(1, T, 1).expand(1, T, D).clone()


# --- §3.3.1 the state-space model and the Mamba layer -------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_eq4_scan_is_a_discretised_linear_ssm_that_keeps_the_D_skip(backend):
    """Eq. 4: h(t+1) = A h(t) + B x(t), y(t) = C h(t) + D_out x(t). One channel, state N = 2, constant step
    Δ = ln 2, A = (-1, -2) so the discrete decays e^{ΔA} are (1/2, 1/4), B̄ = ΔB = ln 2 (1, 1), C = (2, 4),
    D = 1/2, input x = (1, 0, 0). By hand: h_1 = ln2 (1, 1), y_1 = 6 ln2 + 1/2; h_2 = ln2 (1/2, 1/4),
    y_2 = 2 ln2; h_3 = ln2 (1/4, 1/16), y_3 = (3/4) ln2. The paper says Mamba omits D_out x(t); Mamba (and
    this block, as mamba-ssm) keeps it, initialised to 1.
    """
    u = torch.tensor([[[1.0, 0.0, 0.0]]], dtype=F64)  # (batch, dim, L)
    delta = torch.full_like(u, LN2)
    A = torch.tensor([[-1.0, -2.0]], dtype=F64)  # (dim, N)
    B = torch.ones(1, 2, 3, dtype=F64)  # (batch, N, L)
    C = torch.tensor([2.0, 4.0], dtype=F64).view(1, 2, 1).expand(1, 2, 3).contiguous()
    D_skip = torch.tensor([0.5], dtype=F64)
    y = selective_scan(u, delta, A, B, C, D_skip, backend=backend)
    expected = torch.tensor([6 * LN2 + 0.5, 2 * LN2, 0.75 * LN2], dtype=F64)
    torch.testing.assert_close(y[0, 0], expected, rtol=0, atol=EXACT)
    assert torch.equal(MambaBlock(D).D.detach(), torch.ones(2 * D)), "the block keeps the D skip, at 1"


@pytest.mark.parametrize("backend", BACKENDS)
def test_eq5_constant_step_scan_is_the_gated_recurrence_and_the_block_makes_it_selective(backend):
    """Eq. 5: h(t+1) = λ ⊙ h(t) + γ ⊙ x(t) with per-channel vectors λ, γ. With a constant step Δ = 1 the scan
    is exactly that, λ = e^{A} and γ = ΔB: two channels, λ = (1/2, 1/4), γ = 3 (B = 3, C = 1),
    x = ((1, 2, 3), (4, 0, 0)). By hand: channel 0: 3, 1.5 + 6 = 7.5, 3.75 + 9 = 12.75; channel 1: 12, 3, 0.75.
    In Mamba the step is input-dependent (selective): Δ_t = (ln2, 2 ln2) on x = (1, 1) with A = -1, B = C = 1
    gives λ_t = (1/2, 1/4), γ_t = Δ_t: h = (ln2, (1/4) ln2 + 2 ln2) = (ln2, 2.25 ln2).
    """
    u = torch.tensor([[[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]]], dtype=F64)  # (1, 2, 3)
    A = torch.log(torch.tensor([[0.5], [0.25]], dtype=F64))  # (dim 2, N 1)
    B = torch.full((1, 1, 3), 3.0, dtype=F64)
    C = torch.ones(1, 1, 3, dtype=F64)
    y = selective_scan(u, torch.ones_like(u), A, B, C, backend=backend)
    expected = torch.tensor([[3.0, 7.5, 12.75], [12.0, 3.0, 0.75]], dtype=F64)
    torch.testing.assert_close(y[0], expected, rtol=0, atol=EXACT)
    u = torch.ones(1, 1, 2, dtype=F64)
    delta = torch.tensor([[[LN2, 2 * LN2]]], dtype=F64)
    y = selective_scan(u, delta, -torch.ones(1, 1, dtype=F64), torch.ones(1, 1, 2, dtype=F64),
                       torch.ones(1, 1, 2, dtype=F64), backend=backend)
    torch.testing.assert_close(y[0, 0], torch.tensor([LN2, 2.25 * LN2], dtype=F64), rtol=0, atol=EXACT)


def test_eq6_layers_compose_as_pre_norm_residual_mamba_layers():
    """Eq. 6: X^(n) = MambaLayer^(n)(X^(n-1)). mmcore's layer n is the pre-norm residual
    H^(n) = H^(n-1) + Mamba^(n)(LN^(n)(H^(n-1))) with a final LayerNorm (mamba-ssm's layout), so a depth-2
    stack is LN_f(H^(2)) with H^(1) = X + M_1(LN_1(X)), H^(2) = H^(1) + M_2(LN_2(H^(1))), composed here by hand.
    """
    torch.manual_seed(0)
    stack = MambaStack(D, 2, d_state=3, expand=2).double().eval()
    x, valid = randn(2, 5, D), prefix([5, 3], 5)
    with torch.no_grad():
        x0 = x.masked_fill(~valid[..., None], 0.0)
        h1 = x0 + stack.mixers[0](stack.norms[0](x0), valid)
        h2 = h1 + stack.mixers[1](stack.norms[1](h1), valid)
        expected = stack.norm_f(h2).masked_fill(~valid[..., None], 0.0)
        torch.testing.assert_close(stack(x, valid), expected, rtol=0, atol=EXACT)


def block_reference(blk: MambaBlock, x: torch.Tensor) -> torch.Tensor:
    """The Mamba block as a float64 loop over time, written from Gu & Dao 2023 Alg. 2 / Fig. 3: x (T, d) -> (T, d)."""
    T, E, N, R, K = x.shape[0], blk.d_inner, blk.d_state, blk.dt_rank, blk.d_conv
    xz = x @ blk.in_proj.weight.T  # (T, 2E)
    xi, z = xz[:, :E], xz[:, E:]
    w, b = blk.conv1d.weight[:, 0, :], blk.conv1d.bias  # (E, K), (E,)
    conv = torch.stack([b + sum(w[:, j] * xi[t - (K - 1) + j] for j in range(K) if t - (K - 1) + j >= 0)
                        for t in range(T)])  # causal depthwise convolution, (T, E)
    xc = conv * torch.sigmoid(conv)  # silu
    dbl = xc @ blk.x_proj.weight.T  # (T, R + 2N)
    dt, Bt, Ct = dbl[:, :R], dbl[:, R:R + N], dbl[:, R + N:]
    delta = F.softplus(dt @ blk.dt_proj.weight.T + blk.dt_proj.bias)  # (T, E): input-dependent step
    A = -torch.exp(blk.A_log)  # (E, N)
    h, ys = torch.zeros(E, N, dtype=x.dtype), []
    for t in range(T):
        h = torch.exp(delta[t, :, None] * A) * h + (delta[t] * xc[t])[:, None] * Bt[t][None, :]  # λ_t ⊙ h + γ_t x_t
        y = h @ Ct[t] + blk.D * xc[t]  # (E,)
        ys.append(y * z[t] * torch.sigmoid(z[t]))  # gated by silu(z)
    return torch.stack(ys) @ blk.out_proj.weight.T  # (T, d)


@pytest.mark.parametrize("backend", BACKENDS)
def test_eq7_mamba_layer_equals_a_float64_per_step_loop(backend):
    """Eq. 7: h_t = λ ⊙ h_{t-1} + γ ⊙ x_t, x_t^(n) = φ(W h_t + b). The block is Mamba's: the recurrence runs
    on a causally convolved, silu'd projection of the input with input-dependent λ_t = e^{Δ_t A},
    γ_t = Δ_t B_t, and the read-out is W_out((C_t·h_t + D x_t) ⊙ silu(z_t)) rather than φ(W h_t + b).
    Checked against that computation written as a plain loop over T = 5 steps (d 4, E 8, N 3, conv 3).
    """
    torch.manual_seed(0)
    blk = MambaBlock(D, d_state=3, d_conv=3, expand=2, backend=backend).double().eval()
    x = randn(1, 5, D)
    with torch.no_grad():
        torch.testing.assert_close(blk(x)[0], block_reference(blk, x[0]), rtol=0, atol=EXACT)


# --- Stage 1: text-centric Bi-Mamba alignment -------------------------------------------------------------


def test_eq8_each_modality_stays_a_sequence_of_T_m_vectors_of_size_d():
    """Eq. 8: X_m = [x_m^1, ..., x_m^T], x_m^t ∈ R^d. The aligner takes and returns every modality as such a
    sequence: text (T 3), audio (T 5), vision (T 4), each (B, T_m, d), the valid masks unchanged and the
    padded steps 0.
    """
    al = aligner("text", "audio", "vision")
    lengths = {"text": ([3, 2], 3), "audio": ([5, 1], 5), "vision": ([4, 4], 4)}
    seqs = {m: randn(2, T, D, seed=i) for i, (m, (_, T)) in enumerate(lengths.items())}
    valid = {m: prefix(ls, T) for m, (ls, T) in lengths.items()}
    with torch.no_grad():
        out = al(seqs, valid)
    for m, x in seqs.items():
        assert out.seqs[m].shape == x.shape and torch.equal(out.valid[m], valid[m])
        assert (out.seqs[m][~valid[m]] == 0).all()


def test_eq9_forward_recursion_starts_from_X_and_runs_left_to_right_through_N_layers():
    """Eq. 9: H_f^{t,(0)} = X^t, H_f^{t,(n)} = MambaLayer^(n)(H_f^{t-1,(n)}): the forward pass reads X itself
    (``pair: shared``, the per-modality reading) and is causal: changing x_3 leaves outputs 1-2 unchanged
    and changes 3-5. Its stack has ``depth`` = 2 layers.
    """
    al = aligner("text", "audio", pair="shared", depth=2)
    fwd = al.branches["audio"].forward_stack
    seen = []
    fwd.register_forward_hook(lambda mod, args, out: seen.append(args[0]))
    xa, xt, v = randn(1, 5, D, seed=1), randn(1, 5, D, seed=2), prefix([5], 5)
    with torch.no_grad():
        al({"text": xt, "audio": xa}, {"text": v, "audio": v})
        assert torch.equal(seen[0], xa), "H^(0) = X_m"
        h = fwd(xa, v)
        xa2 = xa.clone()
        xa2[0, 2] = randn(D, seed=3)
        h2 = fwd(xa2, v)
    assert len(fwd.mixers) == 2
    torch.testing.assert_close(h2[0, :2], h[0, :2], rtol=0, atol=0)
    assert ((h2[0, 2:] - h[0, 2:]).abs().amax(-1) > 1e-6).all()


def test_eq10_backward_pass_flips_the_valid_prefix_and_runs_right_to_left():
    """Eq. 10: H_b^{(0)} = Flip(X), the same recursion, flipped back. By hand, Flip of a row with 3 valid steps
    (1, 2, 3, pad 9) is (3, 2, 1, pad 9) — padding stays at the end. Flip(Stack_b(Flip X)) is anti-causal:
    changing x_2 leaves outputs 3-4 (the valid steps after it) unchanged and changes 1-2.
    """
    x = torch.tensor([[[1.0], [2.0], [3.0], [9.0]]])
    assert flip_valid(x, prefix([3], 4))[0, :, 0].tolist() == [3.0, 2.0, 1.0, 9.0]
    al = aligner("text", "audio", pair="shared")
    bwd = al.branches["audio"].backward_stack
    xa, v = randn(1, 5, D, seed=1), prefix([4], 5)
    with torch.no_grad():
        h = flip_valid(bwd(flip_valid(xa, v), v), v)
        xa2 = xa.clone()
        xa2[0, 1] = randn(D, seed=3)
        h2 = flip_valid(bwd(flip_valid(xa2, v), v), v)
    torch.testing.assert_close(h2[0, 2:], h[0, 2:], rtol=0, atol=0)
    assert ((h2[0, :2] - h[0, :2]).abs().amax(-1) > 1e-6).all()


def test_eq11_aligned_feature_is_the_average_of_forward_and_backward_outputs():
    """Eq. 11: C_m^t = ½ (H_{m,f}^{t,(N)} + H_{m,b}^{t,(N)}). With ``pair: shared`` (the per-modality
    recursion) the audio output is ½(Stack_f(X_a) + Flip Stack_b(Flip X_a)). With the default
    ``pair: interleave`` the branch runs on P = [a_1, t_1, a_2, t_2, ...] (built here by hand, equal lengths)
    and C_a is the average at the audio positions 0, 2, 4, ... of P.
    """
    xa, xt, v = randn(1, 4, D, seed=1), randn(1, 4, D, seed=2), prefix([4], 4)
    for pair in ("shared", "interleave"):
        al = aligner("text", "audio", pair=pair)
        br = al.branches["audio"]
        if pair == "shared":
            p, pv = xa, v
        else:
            p, pv = torch.stack([xa, xt], 2).reshape(1, 8, D), prefix([8], 8)  # a1 t1 a2 t2 ...
        with torch.no_grad():
            y = 0.5 * (br.forward_stack(p, pv) + flip_valid(br.backward_stack(flip_valid(p, pv), pv), pv))
            expected = y if pair == "shared" else y[:, 0::2]
            torch.testing.assert_close(al({"text": xt, "audio": xa}, {"text": v, "audio": v}).seqs["audio"],
                                       expected, rtol=0, atol=EXACT)


def test_eq12_text_feature_is_the_average_of_its_audio_and_vision_branches():
    """Eq. 12: C_t^t = ½ (C_t^{(a),t} + C_t^{(v),t}). Each branch's text output is read off its own pair
    sequence P_m = [m_1, t_1, m_2, t_2, ...] (built by hand; positions 1, 3, 5, ...), and the aligner's
    text stream is their plain average.
    """
    al = aligner("text", "audio", "vision")
    xt, xa, xv, v = randn(1, 3, D, seed=1), randn(1, 3, D, seed=2), randn(1, 3, D, seed=3), prefix([3], 3)
    pv = prefix([6], 6)
    views = []
    with torch.no_grad():
        for m, xm in (("audio", xa), ("vision", xv)):
            br = al.branches[m]
            p = torch.stack([xm, xt], 2).reshape(1, 6, D)
            y = 0.5 * (br.forward_stack(p, pv) + flip_valid(br.backward_stack(flip_valid(p, pv), pv), pv))
            views.append(y[:, 1::2])
        out = al({"text": xt, "audio": xa, "vision": xv}, {"text": v, "audio": v, "vision": v})
    torch.testing.assert_close(out.seqs["text"], 0.5 * (views[0] + views[1]), rtol=0, atol=EXACT)
    assert not torch.allclose(views[0], views[1]), "the two branches do give different text views"


# --- Stage 2: interleaved Mamba fusion, max pooling --------------------------------------------------------


def capture_stack(f: InterleavedMambaFuser) -> list:
    """Record (input, output) of the fuser's Mamba stack on every forward."""
    seen = []
    f.mamba.register_forward_hook(lambda mod, args, out: seen.append((args[0], out)))
    return seen


def tagged_streams(T: int = 2):
    seqs = {"text": tagged(300, T), "audio": tagged(100, T), "vision": tagged(200, T)}
    return seqs, {m: torch.ones(1, T, dtype=torch.bool) for m in seqs}


def test_eq13_fusion_input_interleaves_audio_vision_text_per_step():
    """Eq. 13: X_mm = [C_a^1; C_v^1; C_t^1; C_a^2; C_v^2; C_t^2; ...] ∈ R^{3T x d}. Tokens hold 100 + t
    (audio), 200 + t (vision), 300 + t (text), T = 2: by hand the stack reads 101, 201, 301, 102, 202, 302.
    """
    f = mgmr_fuser("text", "audio", "vision")
    seen = capture_stack(f)
    seqs, valid = tagged_streams()
    with torch.no_grad():
        f(seqs, valid)
    x_mm = seen[0][0]
    assert torch.equal(x_mm[0], torch.tensor([101.0, 201, 301, 102, 202, 302], dtype=F64)[:, None].expand(6, D))


def test_eq14_stage2_stacks_N_mamba_layers_over_X_mm():
    """Eq. 14: F^(0) = X_mm, F^(n) = MambaLayer^(n)(F^(n-1)), n = 1..N. With depth N = 2 the fuser's stack
    has two layers and its output is their composition (pre-norm residual, final LN; see Eq. 6) applied
    to X_mm built here by hand.
    """
    f = mgmr_fuser("text", "audio", "vision", depth=2)
    seen = capture_stack(f)
    a, v, t = randn(1, 3, D, seed=1), randn(1, 3, D, seed=2), randn(1, 3, D, seed=3)
    valid = {m: prefix([3], 3) for m in ("audio", "vision", "text")}
    with torch.no_grad():
        f({"audio": a, "vision": v, "text": t}, valid)
        x_mm = torch.stack([a, v, t], 2).reshape(1, 9, D)
        full = prefix([9], 9)
        st = f.mamba
        h1 = x_mm + st.mixers[0](st.norms[0](x_mm), full)
        h2 = h1 + st.mixers[1](st.norms[1](h1), full)
        expected = st.norm_f(h2)
    assert len(st.mixers) == 2 and torch.equal(seen[0][0], x_mm)
    torch.testing.assert_close(seen[0][1], expected, rtol=0, atol=EXACT)


def test_eq15_fused_sequence_has_3T_tokens_of_size_d():
    """Eq. 15: F = F^(N) ∈ R^{3T x d}: three streams of T = 4 steps give a (B, 12, d) fused sequence."""
    f = mgmr_fuser("text", "audio", "vision")
    seen = capture_stack(f)
    seqs = {m: randn(2, 4, D, seed=i) for i, m in enumerate(("text", "audio", "vision"))}
    with torch.no_grad():
        f(seqs, {m: prefix([4, 4], 4) for m in seqs})
    assert seen[0][1].shape == (2, 12, D)


def test_eq16_final_representation_is_the_elementwise_max_over_the_3T_tokens():
    """Eq. 16: F_final = max_{t=1..3T} F[t], element-wise. By hand, max over the valid tokens of
    ((1, -2), (3, -1), pad (100, 100)) is (3, -1) (padding never wins). The fuser's output is the
    element-wise max of its stack output over all 3T tokens.
    """
    x = torch.tensor([[[1.0, -2.0], [3.0, -1.0], [100.0, 100.0]]])
    assert masked_max(x, prefix([2], 3))[0].tolist() == [3.0, -1.0]
    f = mgmr_fuser("text", "audio", "vision")
    seen = capture_stack(f)
    seqs = {m: randn(2, 3, D, seed=i) for i, m in enumerate(("text", "audio", "vision"))}
    with torch.no_grad():
        rep = f(seqs, {m: prefix([3, 3], 3) for m in seqs}).rep
    F_seq = seen[0][1]  # (2, 9, d)
    assert torch.equal(rep, F_seq.amax(1))
