"""Invariants of the gated Mamba reconstruction imputer and its masked SmoothL1 loss (issue 8's tests)."""

from __future__ import annotations

import pytest
import torch

from mmcore.testing.contract import D_MODEL, DIMS, LENGTHS, synthetic_batch, tiny_context
from mmcore_plugin_recon.losses import masked_smooth_l1
from mmcore_plugin_recon.mamba_reconstruction import MambaReconstructionImputer
from mmcore_plugin_recon.params import MambaReconstructionParams

EXACT = 0.0  # a selected-away position contributes nothing, not "almost nothing": compared with ==


def make(seed: int = 0, **params) -> MambaReconstructionImputer:
    torch.manual_seed(seed)
    return MambaReconstructionImputer(MambaReconstructionParams(**params), tiny_context())


def masked_batch(rate: float, seed: int = 0):
    """The contract's padded batch (audio missing in the last row), re-masked at ``rate`` with features zeroed."""
    b = synthetic_batch(seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    masked = {m: (torch.rand(v.shape, generator=g) < rate) & v & ~b.missing[m][:, None] for m, v in b.valid.items()}
    feats = {m: b.clean[m].masked_fill(masked[m][..., None] | b.missing[m][:, None, None], 0.0) for m in b.valid}
    return b.replace(features=feats, masked=masked)


def encoded(batch, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {m: (torch.randn(*v.shape, D_MODEL, generator=g) * v[..., None]).requires_grad_() for m, v in batch.valid.items()}


def test_masked_smooth_l1_ignores_positions_outside_the_region():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(3, 5, 4, generator=g), torch.randn(3, 5, 4, generator=g)
    region = torch.rand(3, 5, generator=g) < 0.5
    ref = masked_smooth_l1(pred, target, region)
    noisy = torch.where(region[..., None], target, torch.full_like(target, float("nan")))  # NaN off the region
    assert torch.equal(masked_smooth_l1(pred, noisy, region), ref)
    expected = torch.nn.functional.smooth_l1_loss(pred, target, reduction="none")[region].sum() / (3 * 5 * 4) * 3
    torch.testing.assert_close(ref.sum(), expected)


def test_masked_smooth_l1_gives_a_finite_gradient_for_nan_or_inf_predictions_outside_the_region():
    pred = torch.tensor([[[1.0], [float("nan")], [float("inf")]]], requires_grad=True)
    target = torch.tensor([[[0.0], [float("nan")], [float("-inf")]]])
    region = torch.tensor([[True, False, False]])
    loss = masked_smooth_l1(pred, target, region, norm=1.0)
    loss.sum().backward()
    assert loss.item() == 0.5  # 0.5 * (1 - 0)^2 at the one region position
    assert pred.grad.tolist() == [[[1.0], [0.0], [0.0]]]


def test_recon_loss_ignores_unmasked_positions():
    imp, batch = make().eval(), masked_batch(0.4)
    seqs = encoded(batch)
    ref = imp(seqs, batch).aux["recon"]
    # rewrite every clean target that is not a masked, valid token of a present row
    off = {m: ~(batch.masked[m] & batch.valid[m] & ~batch.missing[m][:, None]) for m in batch.valid}
    clean = {m: torch.where(off[m][..., None], torch.randn_like(x) * 100, x) for m, x in batch.clean.items()}
    assert imp(seqs, batch.replace(clean=clean)).aux["recon"].item() == ref.item()
    # ... while changing one masked target does change it
    m, (b, t) = "vision", batch.masked["vision"].nonzero()[0].tolist()
    clean = dict(batch.clean)
    clean[m] = batch.clean[m].clone()
    clean[m][b, t] += 10.0
    assert imp(seqs, batch.replace(clean=clean)).aux["recon"].item() != ref.item()


def test_masking_rate_zero_gives_zero_loss_and_the_module_still_runs():
    imp, batch = make(), masked_batch(0.0)
    assert not any(v.any() for v in batch.masked.values())
    seqs = encoded(batch)
    out = imp(seqs, batch)
    assert out.aux["recon"].item() == EXACT
    assert all(out.seqs[m].shape == (*batch.valid[m].shape, D_MODEL) and torch.isfinite(out.seqs[m]).all()
               for m in batch.valid)
    sum(o.sum() for o in out.seqs.values()).add(out.aux["recon"]).backward()
    assert all(torch.isfinite(p.grad).all() for p in imp.parameters() if p.grad is not None)


def _x_hat_grads(imp, batch, seqs, which: str) -> dict[str, torch.Tensor]:
    """d(which)/d(X̂_m) per modality, with which = 'recon' (aux loss) or 'task' (sum of the outputs)."""
    grabbed = {}

    def keep(m):
        def hook(_mod, _inp, out):
            out.retain_grad()
            grabbed[m] = out
        return hook

    handles = [imp.branches[m].reconstruct.register_forward_hook(keep(m)) for m in batch.valid]
    out = imp(seqs, batch)
    (out.aux["recon"] if which == "recon" else sum(o.sum() for o in out.seqs.values())).backward()
    for h in handles:
        h.remove()
    return {m: x.grad for m, x in grabbed.items()}


def test_recon_loss_reaches_the_reconstruction_only_at_masked_positions():
    imp, batch = make(), masked_batch(0.4)
    grads = _x_hat_grads(imp, batch, encoded(batch), "recon")
    for m, gr in grads.items():
        region = batch.masked[m] & batch.valid[m] & ~batch.missing[m][:, None]
        assert (gr[~region] == EXACT).all(), f"{m}: the loss reached an unmasked position of X̂"
        assert gr[region].abs().sum(-1).gt(0).all(), f"{m}: a masked position got no gradient"


def test_task_gradient_reaches_the_reconstruction_only_through_the_gate():
    imp, batch = make(), masked_batch(0.4)
    for branch in imp.branches.values():  # saturate Γ = σ(W_g · LN(X)) at 1: the output is X, X̂ is shut out
        with torch.no_grad():
            branch.gate_norm.weight.zero_()
            branch.gate_norm.bias.fill_(1.0)
            branch.gate.weight.fill_(1e3)
    grads = _x_hat_grads(imp, batch, encoded(batch), "task")
    assert all((g == EXACT).all() for g in grads.values())
    for m, branch in imp.branches.items():
        assert all(p.grad is None or (p.grad == EXACT).all() for p in branch.reconstruct.parameters()), m
    # with the gate open, the same task gradient does reach X̂ (and it is (1 - Γ) times the one at X̄)
    imp2, batch2 = make(), masked_batch(0.4)
    grads2 = _x_hat_grads(imp2, batch2, encoded(batch2), "task")
    assert all(g[batch2.valid[m]].abs().sum() > 0 for m, g in grads2.items())


def test_output_shapes_and_padding_are_respected():
    imp, batch = make(bidirectional=True, gate="matrix", depth=2).eval(), masked_batch(0.4)
    seqs = encoded(batch)
    out = imp(seqs, batch)
    for m, v in batch.valid.items():
        assert out.seqs[m].shape == (2, LENGTHS[m], D_MODEL)
        assert (out.seqs[m][~v] == 0).all(), f"{m}: padded positions must stay zero"
        assert imp.gates()[m].shape == (2, LENGTHS[m], D_MODEL)
    # garbage in padded inputs and padded targets changes neither valid outputs nor the loss
    noisy = {m: torch.where(v[..., None], seqs[m], torch.randn_like(seqs[m]) * 50) for m, v in batch.valid.items()}
    clean = {m: torch.where(v[..., None], batch.clean[m], torch.full_like(batch.clean[m], float("inf")))
             for m, v in batch.valid.items()}
    out2 = imp(noisy, batch.replace(clean=clean))
    for m, v in batch.valid.items():
        torch.testing.assert_close(out2.seqs[m][v], out.seqs[m][v], rtol=0, atol=1e-5)
    torch.testing.assert_close(out2.aux["recon"], out.aux["recon"], rtol=0, atol=1e-6)


def test_alpha_weights_each_modality_and_zero_alpha_removes_its_term():
    batch = masked_batch(0.5)
    seqs = encoded(batch)
    terms = {}
    for m in DIMS:
        others = {o: 0.0 for o in DIMS if o != m}
        terms[m] = make(alpha=others).eval()(seqs, batch).aux["recon"].item()
    total = make().eval()(seqs, batch).aux["recon"].item()
    assert total == pytest.approx(sum(terms.values()), rel=1e-6)
    doubled = make(alpha={"audio": 2.0}).eval()(seqs, batch).aux["recon"].item()
    assert doubled == pytest.approx(total + terms["audio"], rel=1e-6)


def test_wrong_widths_raise_with_expected_and_actual():
    imp, batch = make(), masked_batch(0.2)
    seqs = encoded(batch)
    seqs["audio"] = torch.zeros(2, LENGTHS["audio"], D_MODEL + 1)
    with pytest.raises(ValueError, match=r"must be \(B, T, d_model\)=\(2, 5, 16\); got \(2, 5, 17\)"):
        imp(seqs, batch)
