"""MGMR-Net (Yang et al., Electronics 14(15):3088, 2025) §3.4-3.5: the reconstruction module's equations and
the losses, one test each, on small cases computed by hand (or by a loop written here).

Numbering as in docs/fidelity.md (display equations of §3 in order; see the Mamba plugin's
``tests/test_mgmr_equations.py``): §3.4 Eq. 18-22, §3.5 Eq. 23 (L_task: core, tests/test_paper_losses.py),
Eq. 24 (L_rec) and Eq. 25 (the total loss).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mmcore.batch import Batch
from mmcore.builder import build
from mmcore.missing import MissingOp, MissingProtocol
from mmcore.protocols import BuildContext, ModalityInfo
from mmcore_plugin_recon.losses import masked_smooth_l1
from mmcore_plugin_recon.mamba_reconstruction import MambaReconstructionImputer, ModalityReconstruction
from mmcore_plugin_recon.params import MambaReconstructionParams

F64 = torch.float64
D = 4
EXACT = 1e-12  # float64 round-off
LN_EPS = 1e-5  # torch.nn.LayerNorm's default eps


def branch(**params) -> ModalityReconstruction:
    """One modality's reconstruction branch (d 4, raw d_m 2), float64, eval mode."""
    torch.manual_seed(0)
    p = MambaReconstructionParams(**{"d_state": 3, "expand": 2, **params})
    return ModalityReconstruction(D, 2, p).double().eval()


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def prefix(lengths: list[int], T: int) -> torch.Tensor:
    return torch.arange(T) < torch.tensor(lengths)[:, None]


def layer_norm(x: torch.Tensor) -> torch.Tensor:
    """LayerNorm over the last axis written out (unit scale, zero shift: a fresh nn.LayerNorm)."""
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)  # biased, as LayerNorm
    return (x - mean) / torch.sqrt(var + LN_EPS)


def capture_fused(br: ModalityReconstruction) -> list:
    """Record the input of the output LayerNorm, i.e. the fused X'_m."""
    seen = []
    br.out_norm.register_forward_hook(lambda mod, args, out: seen.append(args[0]))
    return seen


# --- §3.4 reconstruction, gate, fusion, projection ------------------------------------------------------


def test_eq18_reconstruction_stacks_N_unidirectional_mamba_layers():
    """Eq. 18: X̂^(0) = X, X̂^(n) = MambaLayer^(n)(X̂^(n-1)), n = 1..N. With N = 2 the branch's X̂ equals the
    two layers composed by hand in mmcore's layer form (pre-norm residual, final LayerNorm — as the Mamba
    plugin's Eq. 6 row): LN_f(H2), H1 = X + M1(LN1(X)), H2 = H1 + M2(LN2(H1)).
    """
    br = branch(depth=2)
    st = br.reconstruct
    x, v = randn(2, 5, D), prefix([5, 3], 5)
    with torch.no_grad():
        x_hat = br(x, v)[2]
        x0 = x.masked_fill(~v[..., None], 0.0)
        h1 = x0 + st.mixers[0](st.norms[0](x0), v)
        h2 = h1 + st.mixers[1](st.norms[1](h1), v)
        expected = st.norm_f(h2).masked_fill(~v[..., None], 0.0)
    assert len(st.mixers) == 2 and not hasattr(st, "backward_stack"), "N layers, one direction by default"
    torch.testing.assert_close(x_hat, expected, rtol=0, atol=EXACT)


def test_eq19_reconstruction_at_step_t_is_the_last_layers_output_from_steps_up_to_t():
    """Eq. 19: X̂_m = [x^{1(N)}, ..., x^{T(N)}]: one d-vector per step, the N-th layer's output. The stack is
    unidirectional, so x̂_t reads steps ≤ t only: changing x_4 leaves x̂_1..x̂_3 unchanged and changes x̂_4, x̂_5.
    """
    br = branch(depth=1)
    x, v = randn(1, 5, D), prefix([5], 5)
    x2 = x.clone()
    x2[0, 3] = randn(D, seed=7)
    with torch.no_grad():
        a, b = br(x, v)[2], br(x2, v)[2]
    assert a.shape == (1, 5, D)
    torch.testing.assert_close(b[0, :3], a[0, :3], rtol=0, atol=0)
    assert ((b[0, 3:] - a[0, 3:]).abs().amax(-1) > 1e-6).all()


def test_eq20_gate_is_sigmoid_of_W_g_dot_layernorm_of_X():
    """Eq. 20: Γ_m = σ(W_g · LayerNorm(X_m)), W_g ∈ R^d (one gate per token). By hand with
    W_g = (0.5, 1, 0, -1): x = (1, 3, 5, 7) has mean 4, variance 5, so W_g·LN(x) = (-1.5 - 1 - 3)/√(5 + ε);
    x = (0, 0, 0, 4) has mean 1, variance 3: (-0.5 - 1 - 3)/√(3 + ε).
    """
    br = branch()
    with torch.no_grad():
        br.gate.weight.copy_(torch.tensor([[0.5, 1.0, 0.0, -1.0]], dtype=F64))
        x = torch.tensor([[[1.0, 3.0, 5.0, 7.0], [0.0, 0.0, 0.0, 4.0]]], dtype=F64)
        gamma = br(x, prefix([2], 2))[1]
    sig = lambda s: 1 / (1 + math.exp(-s))  # noqa: E731
    expected = [sig(-5.5 / math.sqrt(5 + LN_EPS)), sig(-4.5 / math.sqrt(3 + LN_EPS))]
    assert gamma.shape == (1, 2, 1)
    torch.testing.assert_close(gamma[0, :, 0], torch.tensor(expected, dtype=F64), rtol=0, atol=EXACT)


def test_eq21_fused_feature_mixes_original_and_reconstruction_by_the_gate():
    """Eq. 21: X'_m = Γ ⊙ X + (1 - Γ) ⊙ X̂. With W_g = 0, Γ = σ(0) = 1/2 exactly, so X' = (X + X̂)/2; with the
    Eq. 20 weights, X' = Γ X + (1 - Γ) X̂ with Γ from the hand formula there (token-wise).
    """
    br = branch()
    seen = capture_fused(br)
    x, v = torch.tensor([[[1.0, 3.0, 5.0, 7.0], [0.0, 0.0, 0.0, 4.0]]], dtype=F64), prefix([2], 2)
    sig = lambda s: 1 / (1 + math.exp(-s))  # noqa: E731
    with torch.no_grad():
        br.gate.weight.zero_()
        x_hat = br(x, v)[2]
        torch.testing.assert_close(seen[-1], (x + x_hat) / 2, rtol=0, atol=EXACT)
        br.gate.weight.copy_(torch.tensor([[0.5, 1.0, 0.0, -1.0]], dtype=F64))
        br(x, v)
    g = torch.tensor([sig(-5.5 / math.sqrt(5 + LN_EPS)), sig(-4.5 / math.sqrt(3 + LN_EPS))], dtype=F64).view(1, 2, 1)
    torch.testing.assert_close(seen[-1], g * x + (1 - g) * x_hat, rtol=0, atol=EXACT)


def test_eq22_output_is_W_proj_relu_layernorm_of_the_fused_feature():
    """Eq. 22: X''_m = W_proj · ReLU(LayerNorm(X'_m)), W_proj a bias-free matrix. Given the fused X' (read from
    the module), LayerNorm is written out, ReLU applied and a hand-set W_proj (a permutation scaled by
    1, 2, 3, 4) applied; padded steps come out 0.
    """
    br = branch()
    seen = capture_fused(br)
    W = torch.zeros(D, D, dtype=F64)
    W[0, 1], W[1, 0], W[2, 3], W[3, 2] = 1.0, 2.0, 3.0, 4.0
    x, v = randn(1, 4, D), prefix([3], 4)
    with torch.no_grad():
        br.proj.weight.copy_(W)
        y = br(x, v)[0]
    expected = F.relu(layer_norm(seen[-1])) @ W.T
    assert br.proj.bias is None
    torch.testing.assert_close(y[0, :3], expected[0, :3], rtol=0, atol=EXACT)
    assert (y[0, 3] == 0).all()


# --- §3.5 losses --------------------------------------------------------------------------------------------


def test_eq24_reconstruction_loss_is_smooth_l1_summed_over_the_masked_positions():
    """Eq. 24: L_rec(m) = Σ_i {0.5 (x_i - y_i)² if |x_i - y_i| < 1, else |x_i - y_i| - 0.5} over the masked
    positions. By hand, differences 0.5, -2, 3 on masked positions give 0.125 + 1.5 + 2.5 = 4.125; an
    unmasked difference of 10 adds nothing. ``norm=1`` is the paper's plain sum; the imputer divides by
    L_m d_m and averages the rows: with the read-out pinned to the constant c = (1, 1), audio clean
    targets (L = 3, d_m = 2) and masks row 0 (steps 2, 3), row 1 (step 1; step 3 is padding), row 2 (audio
    missing), the loss is α · (2.5/6 + 0.125/6 + 0)/3 (α = 2).
    """
    pred = torch.tensor([[[0.5, 0.0], [-2.0, 3.0], [10.0, 0.0]]], dtype=F64)
    region = torch.tensor([[True, True, False]])
    assert abs(float(masked_smooth_l1(pred, torch.zeros_like(pred), region, norm=1.0)[0]) - 4.125) < EXACT
    assert abs(float(masked_smooth_l1(pred, torch.zeros_like(pred), region)[0]) - 4.125 / 6) < EXACT  # Z = T d

    mods = {"audio": ModalityInfo("audio", 2, 3)}
    torch.manual_seed(0)
    imp = MambaReconstructionImputer(MambaReconstructionParams(d_state=3, expand=2, alpha={"audio": 2.0}),
                                     BuildContext(modalities=mods, d_model=D)).double().eval()
    with torch.no_grad():
        imp.branches["audio"].readout.weight.zero_()
        imp.branches["audio"].readout.bias.fill_(1.0)
    clean = torch.tensor([[[0.0, 0.0], [1.0, 3.0], [2.0, 2.0]],
                          [[1.5, 1.0], [9.0, 9.0], [0.0, 0.0]],
                          [[5.0, 5.0], [5.0, 5.0], [5.0, 5.0]]], dtype=F64)
    valid = torch.tensor([[True, True, True], [True, True, False], [True, True, True]])
    masked = torch.tensor([[False, True, True], [True, False, True], [True, True, True]])
    batch = Batch(features={"audio": clean.masked_fill(masked[..., None], 0.0)}, valid={"audio": valid},
                  labels=torch.zeros(3), missing={"audio": torch.tensor([False, False, True])},
                  masked={"audio": masked}, clean={"audio": clean})
    with torch.no_grad():
        loss = imp({"audio": randn(3, 3, D)}, batch).aux["recon"]
    # row 0: (1,1)-(1,3) -> 0 + 1.5; (1,1)-(2,2) -> 0.5 + 0.5; row 1: (1,1)-(1.5,1) -> 0.125 + 0
    assert abs(float(loss) - 2.0 * (2.5 / 6 + 0.125 / 6 + 0.0) / 3) < EXACT


def test_eq25_total_loss_is_task_plus_alpha_weighted_reconstruction_losses():
    """Eq. 25: L = L_task + Σ_m α_m L_rec(m), on a built pipeline (linear encoders, this imputer with
    α = (audio 2, vision 1/2), identity aligner, mean-pool fuser, L1 head) and a batch masked by mmcore's
    temporal protocol at rate 0.5 (§4.4: masked frames zeroed, the clean features kept as targets). With
    each read-out pinned to a constant c_m, L_rec(m) is computed here by a loop over the protocol's masks
    (1/(L_m d_m) per row, mean over rows, as the Eq. 24 row says), and the trainer's total equals
    mean|ŷ - y| + 1 · (2 L_rec(audio) + 0.5 L_rec(vision)): the plugin declares the weight 1.
    """
    dims, lengths = {"audio": 2, "vision": 3}, {"audio": 4, "vision": 3}
    spec = {"seed": 0, "modalities": {m: {"dim": dims[m], "length": lengths[m]} for m in dims},
            "model": {"d_model": D, "dropout": 0.0}, "encoders": {"default": {"name": "linear"}},
            "imputer": {"name": "mamba_reconstruction",
                        "params": {"d_state": 3, "expand": 2, "alpha": {"audio": 2.0, "vision": 0.5}}},
            "aligner": {"name": "identity"}, "fuser": {"name": "concat_pool"},
            "head": {"name": "regression_mlp", "params": {"loss": "l1"}}, "data": {"name": "synthetic"},
            "train": {"epochs": 1, "batch_size": 3, "select_metric": "mae", "device": "cpu"}}
    torch.manual_seed(0)
    model = build(spec).double().eval()
    const = {"audio": 0.5, "vision": -1.0}
    with torch.no_grad():
        for m, c in const.items():
            model.imputer.branches[m].readout.weight.zero_()
            model.imputer.branches[m].readout.bias.fill_(c)
    clean = {m: randn(3, lengths[m], dims[m], seed=i) for i, m in enumerate(dims)}
    valid = {m: torch.ones(3, lengths[m], dtype=torch.bool) for m in dims}
    labels = torch.tensor([1.0, -0.5, 2.0], dtype=F64)
    raw = Batch(features=dict(clean), valid=valid, labels=labels, index=torch.arange(3))
    batch = MissingProtocol([MissingOp(type="temporal", rate=0.5)]).apply(raw, seed=0, epoch=0, split="train")
    assert all(bool(batch.masked[m].any()) for m in dims), "the protocol masked something in each modality"
    for m in dims:  # §4.4: masked frames are zero vectors; the clean features stay as targets
        assert (batch.features[m][batch.masked[m]] == 0).all() and torch.equal(batch.clean[m], clean[m])

    def l_rec(m: str) -> float:
        L, dm = lengths[m], dims[m]
        rows = []
        for b in range(3):
            s = 0.0
            for t in range(L):
                if batch.masked[m][b, t]:
                    for k in range(dm):
                        u = abs(const[m] - float(clean[m][b, t, k]))
                        s += 0.5 * u * u if u < 1 else u - 0.5
            rows.append(s / (L * dm))
        return sum(rows) / 3

    with torch.no_grad():
        out = model(batch)
        total, terms = model.total_loss(out, labels)
    task = float((out.pred - labels).abs().mean())
    recon = 2.0 * l_rec("audio") + 0.5 * l_rec("vision")
    assert model.loss_weights["recon"] == 1.0
    assert abs(float(terms["recon"]) - recon) < EXACT
    assert abs(float(total) - (task + recon)) < EXACT
