"""The issue's invariants of the ADL imputer: window-supported fitter rows, victim-shaped imputations,
oracle decoding, unequal lengths with padding, no NaN at small regularisation, complete-row learning."""

from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mmcore.batch import Batch
from mmcore.protocols import BuildContext, ModalityInfo
from mmcore_plugin_adl.adl import ADLImputer
from mmcore_plugin_adl.decode import decode
from mmcore_plugin_adl.losses import fit_loss
from mmcore_plugin_adl.params import ADLParams
from mmcore_plugin_adl.solver import ot_targets
from mmcore_plugin_adl.window import to_dense, to_window, window_geometry

D = 8
ROW_SUM_ATOL = 1e-5  # float32 softmax / Sinkhorn row normalisation: a few ulps of 1
EXACT = 0.0  # hard masks: cells outside the window are exactly zero, not small


def imputer(window=2, reg=0.1, **kw) -> ADLImputer:
    ctx = BuildContext(modalities={"audio": ModalityInfo("audio", 5, 9), "vision": ModalityInfo("vision", 4, 7)},
                       d_model=D)
    torch.manual_seed(0)
    return ADLImputer(ADLParams(present="audio", victim="vision", window=window, reg=reg, **kw), ctx)


def prefix(lengths, T):
    return torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]  # (B, T)


def make_batch(n1, n2, T1=None, T2=None, missing_victim=(), seed=0):
    """Encoded sequences and a Batch: audio present (lengths n1), vision victim (lengths n2)."""
    g = torch.Generator().manual_seed(seed)
    T1, T2 = T1 or max(n1), T2 or max(n2)
    v1, v2 = prefix(n1, T1), prefix(n2, T2)
    B = len(n1)
    z1 = torch.randn(B, T1, D, generator=g) * v1[..., None]
    z2 = torch.randn(B, T2, D, generator=g) * v2[..., None]
    miss = torch.zeros(B, dtype=torch.bool)
    miss[list(missing_victim)] = True
    z2 = z2 * ~miss[:, None, None]
    batch = Batch(features={"audio": torch.zeros(B, T1, 5), "vision": torch.zeros(B, T2, 4)},
                  valid={"audio": v1, "vision": v2}, labels=torch.zeros(B),
                  missing={"audio": torch.zeros(B, dtype=torch.bool), "vision": miss}, index=torch.arange(B))
    return {"audio": z1, "vision": z2}, batch


def centre(i, n1, n2):
    """c_i = round half up of i (n2 - 1) / (n1 - 1), exactly; floor((n2 - 1) / 2) when n1 = 1."""
    if n1 == 1:
        return (n2 - 1) // 2
    return int(Fraction(i * (n2 - 1), n1 - 1) + Fraction(1, 2))


pairs = st.lists(st.tuples(st.integers(1, 9), st.integers(1, 9)), min_size=1, max_size=3)


@given(pairs=pairs, window=st.integers(0, 4), seed=st.integers(0, 2**16))
def test_fitter_rows_are_distributions_supported_only_inside_the_window(pairs, window, seed):
    n1, n2 = [p[0] for p in pairs], [p[1] for p in pairs]
    seqs, batch = make_batch(n1, n2, T1=max(n1) + 1, T2=max(n2) + 2, seed=seed)  # extra padding on both
    imp = imputer(window=window)
    v1, v2 = batch.valid["audio"], batch.valid["vision"]
    geo = window_geometry(v1, v2, window)
    rows = imp.fitter(seqs["audio"], v1, geo)  # (B, T_1, 2W+1)
    dense = to_dense(rows, geo, v2.shape[1]).detach().numpy()  # (B, T_1, T_2)
    for b, (l1, l2) in enumerate(pairs):
        for i in range(dense.shape[1]):
            if i >= l1:
                assert (dense[b, i] == EXACT).all(), "padded present rows carry no mass"
                continue
            c = centre(i, l1, l2)
            inside = np.array([abs(j - c) <= window and j < l2 for j in range(dense.shape[2])])
            assert (dense[b, i][~inside] == EXACT).all(), f"mass outside the window of row {i} (c_i={c})"
            assert (dense[b, i] >= 0).all()
            np.testing.assert_allclose(dense[b, i].sum(), 1.0, atol=ROW_SUM_ATOL)


def test_equal_lengths_give_the_papers_band():
    v = prefix([6], 6)
    geo = window_geometry(v, v, 2)
    i, j = np.meshgrid(np.arange(6), np.arange(6), indexing="ij")
    np.testing.assert_array_equal(geo.band[0].numpy(), np.abs(i - j) <= 2)


def test_imputed_victim_has_the_victims_shape_and_fills_only_absent_positions():
    seqs, batch = make_batch([5, 3, 4], [7, 6, 2], T1=6, T2=7, missing_victim=[1, 2])
    imp = imputer(window=2).eval()
    out = imp(seqs, batch).seqs
    v2 = batch.valid["vision"]
    assert out["vision"].shape == seqs["vision"].shape
    torch.testing.assert_close(out["vision"][0], seqs["vision"][0], rtol=0, atol=0)  # present row untouched
    filled = out["vision"][1:][v2[1:]]  # (n_tokens, d) imputed tokens of the missing rows
    assert filled.abs().sum(-1).gt(0).all(), "every valid position of a missing row is imputed"
    assert (out["vision"][~v2] == 0).all(), "padding stays zero"
    torch.testing.assert_close(out["audio"], seqs["audio"], rtol=0, atol=0)


@pytest.mark.parametrize("T", [1, 5, 9])
def test_oracle_permutation_plan_decodes_the_permuted_sequence(T):
    g = torch.Generator().manual_seed(T)
    z1 = torch.randn(2, T, D, generator=g, dtype=torch.float64)
    sigma = torch.stack([torch.randperm(T, generator=g) for _ in range(2)])  # (B, T): i -> sigma(i)
    plan = torch.zeros(2, T, T, dtype=torch.float64)
    plan.scatter_(2, sigma.unsqueeze(-1), 1.0 / T)  # A_ij = 1/T at j = sigma(i): a uniform-marginal plan
    z2_hat = decode(plan, z1)
    expected = torch.empty_like(z1)
    expected.scatter_(1, sigma.unsqueeze(-1).expand(-1, -1, D), z1)  # z2[sigma(i)] = z1[i]
    torch.testing.assert_close(z2_hat, expected, rtol=1e-12, atol=1e-12)


def test_oracle_plan_in_window_form_decodes_a_local_permutation():
    """A permutation that moves tokens by at most W round-trips through window form and decoding."""
    T, W = 8, 1
    sigma = torch.tensor([1, 0, 2, 4, 3, 5, 7, 6])  # swaps of neighbours: |sigma(i) - i| <= 1
    v = prefix([T], T)
    geo = window_geometry(v, v, W)
    dense = torch.zeros(1, T, T, dtype=torch.float64)
    dense[0, torch.arange(T), sigma] = 1.0
    win = to_window(dense, geo)
    torch.testing.assert_close(to_dense(win, geo, T), dense, rtol=0, atol=0)
    z1 = torch.randn(1, T, D, dtype=torch.float64)
    torch.testing.assert_close(decode(to_dense(win, geo, T), z1)[0, sigma], z1[0], rtol=1e-12, atol=1e-12)


def test_unequal_lengths_and_padding_change_no_valid_output():
    seqs, batch = make_batch([9, 4, 1], [3, 7, 5], T1=10, T2=8, missing_victim=[0, 1, 2])
    imp = imputer(window=2).eval()
    ref = imp(seqs, batch).seqs["vision"]
    v1, v2 = batch.valid["audio"], batch.valid["vision"]
    noisy = {m: torch.where(batch.valid[m][..., None], x, torch.randn_like(x) * 100) for m, x in seqs.items()}
    new = imp(noisy, batch).seqs["vision"]
    torch.testing.assert_close(new[v2], ref[v2], rtol=0, atol=1e-6)
    assert torch.isfinite(new).all() and (new[~v2] == 0).all()
    # every valid victim position is reached here (T_2 - 1 <= (2W + 1)(T_1 - 1), or T_2 <= 2W + 1 for T_1 = 1)
    assert window_geometry(v1, v2, 2).covered.eq(v2).all()
    assert ref[v2].abs().sum(-1).gt(0).all()


def test_ot_targets_are_row_distributions_inside_the_window_for_unequal_lengths():
    seqs, batch = make_batch([9, 4, 2], [3, 7, 5], T1=10, T2=8)
    v1, v2 = batch.valid["audio"], batch.valid["vision"]
    geo = window_geometry(v1, v2, 1)
    target = ot_targets(seqs["audio"], seqs["vision"], v1, geo, reg=0.1)  # (B, T_1, 2W+1)
    assert (target[~geo.ok] == 0).all()
    np.testing.assert_allclose(target.sum(-1)[v1].numpy(), 1.0, atol=ROW_SUM_ATOL)
    assert (target.sum(-1)[~v1] == 0).all()


@pytest.mark.parametrize("reg", [1e-2, 1e-3, 1e-4])
def test_no_nan_for_small_entropic_regularisation(reg):
    seqs, batch = make_batch([9, 4, 6], [7, 7, 3], T1=9, T2=8, missing_victim=[2])
    seqs = {m: x.requires_grad_() for m, x in seqs.items()}
    imp = imputer(window=2, reg=reg).train()
    out = imp(seqs, batch)  # a ConvergenceWarning at max_iter is allowed; NaN is not
    assert set(out.aux) == {"adl_fit", "adl_con"}
    assert all(torch.isfinite(v) for v in out.aux.values())
    (sum(out.aux.values()) + out.seqs["vision"].sum()).backward()
    for name, p in imp.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert all(torch.isfinite(x.grad).all() for x in seqs.values())


def test_fit_loss_uses_only_complete_rows():
    seqs, batch = make_batch([6, 6, 6], [6, 6, 6], missing_victim=[1])
    imp = imputer(window=2).train()
    imp.set_step("denoise", "fitter")
    ref = imp(seqs, batch).aux["adl_fit"]
    changed = dict(seqs, vision=seqs["vision"].clone())
    changed["vision"][1] = torch.randn(6, D)  # the victim encoding of the missing row (an encoding of zeros)
    torch.testing.assert_close(imp(changed, batch).aux["adl_fit"], ref, rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["paper", "mse", "kl"])
def test_fit_loss_is_zero_for_a_perfect_prediction(kind):
    seqs, batch = make_batch([6, 3], [4, 5])
    v1, v2 = batch.valid["audio"], batch.valid["vision"]
    geo = window_geometry(v1, v2, 2)
    target = ot_targets(seqs["audio"], seqs["vision"], v1, geo, reg=0.1)
    assert float(fit_loss(target, target, geo.ok, kind)) < 1e-5  # paper: the sqrt floor, 1e-6 / ((2W+1) l)
    assert float(fit_loss(torch.full_like(target, 0.2) * geo.ok, target, geo.ok, kind)) > 1e-5


def test_fitter_learns_the_ot_rows():
    seqs, batch = make_batch([8, 8, 8, 8], [8, 8, 8, 8], seed=3)
    v1, v2 = batch.valid["audio"], batch.valid["vision"]
    geo = window_geometry(v1, v2, 2)
    target = ot_targets(seqs["audio"], seqs["vision"], v1, geo, reg=0.1)
    imp = imputer(window=2)
    opt = torch.optim.Adam(imp.fitter.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = fit_loss(imp.fitter(seqs["audio"], v1, geo), target, geo.ok, "kl")
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < 0.5 * losses[0]


def test_phases_follow_algorithm_1():
    imp = imputer(warmup_epochs=2)
    warm, denoise = imp.training_phases(epochs=10)
    assert (warm.name, warm.epochs, warm.select, [s.name for s in warm.steps]) == ("warmup", 2, False, ["backbone"])
    assert denoise.epochs is None and [s.name for s in denoise.steps] == ["fitter", "backbone"]
    fitter, backbone = denoise.steps
    assert fitter.losses == ("adl_fit",) and set(backbone.losses) == {"task", "adl_con"}
    assert all(s.missing for s in (*warm.steps, *denoise.steps)), "every step sees the training protocol"
    names = ["encoders.audio.proj.weight", "imputer.fitter.gru.weight_ih_l0", "imputer.fitter.proj.bias", "head.mlp.0.bias"]
    assert [n for n in names if fitter.selects_param(n)] == names[1:3]
    assert [n for n in names if backbone.selects_param(n)] == [names[0], names[3]]
    assert [p.name for p in imp.training_phases(epochs=2)] == ["warmup", "denoise"]
    assert imp.training_phases(epochs=2)[0].epochs == 1, "warm-up capped so one selectable epoch remains"
    assert [p.name for p in imputer(warmup_epochs=0).training_phases(epochs=5)] == ["denoise"]
