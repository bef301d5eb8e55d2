"""sinkhorn aligner: entropic plans (agreeing with POT), barycentric projection, the scaled window."""

import numpy as np
import ot
import pytest
import torch
from _ot_helpers import ctx, prefix_valid
from hypothesis import given
from hypothesis import strategies as st

from mmcore_plugin_ot._costs import window_band
from mmcore_plugin_ot.params import SinkhornParams
from mmcore_plugin_ot.sinkhorn_aligner import SinkhornAligner

POT_ATOL = 1e-6  # float64 on both sides, both stopped at 1e-10: plans agree far below this
MARGINAL_ATOL = 1e-6


def uniform(valid):
    """1/T on the valid tokens of each row, float64."""
    return (valid / valid.sum(1, keepdim=True)).double()


def aligner(**params) -> SinkhornAligner:
    params.setdefault("tol", 1e-10)
    params.setdefault("max_iter", 5000)
    return SinkhornAligner(SinkhornParams(**params), ctx(d=4, modalities=("text", "audio"))).double()


def problem(seed=0, B=3, T_a=6, T_m=8, d=4):
    g = torch.Generator().manual_seed(seed)
    xa = torch.randn(B, T_a, d, generator=g, dtype=torch.float64)
    xm = torch.randn(B, T_m, d, generator=g, dtype=torch.float64)
    return xa, xm, prefix_valid([T_a, 4, 1][:B], T_a), prefix_valid([T_m, 2, 5][:B], T_m)


@pytest.mark.parametrize("cost", ["cosine", "sqeuclidean"])
def test_plans_equal_pot_per_pair(cost):
    xa, xm, va, vm = problem()
    al = aligner(cost=cost, reg=0.1)
    al({"text": xa, "audio": xm}, {"text": va, "audio": vm})
    P = al.alignment_plans()["audio"]
    for b in range(xa.shape[0]):
        A, Mx = xa[b, va[b]].numpy(), xm[b, vm[b]].numpy()
        if cost == "cosine":
            C = ot.dist(A, Mx, metric="cosine")
        else:
            C = ot.dist(A, Mx) / A.shape[1]
        ref = ot.sinkhorn(ot.unif(len(A)), ot.unif(len(Mx)), C, 0.1, method="sinkhorn_log", stopThr=1e-10,
                          numItermax=5000)
        np.testing.assert_allclose(P[b, : len(A), : len(Mx)].numpy(), ref, atol=POT_ATOL)


def test_plan_marginals_match_and_padding_is_empty():
    xa, xm, va, vm = problem(seed=1)
    al = aligner(reg=0.05)
    al({"text": xa, "audio": xm}, {"text": va, "audio": vm})
    P = al.alignment_plans()["audio"]
    torch.testing.assert_close(P.sum(2), uniform(va), rtol=0, atol=MARGINAL_ATOL)
    torch.testing.assert_close(P.sum(1), uniform(vm), rtol=0, atol=MARGINAL_ATOL)
    assert (P[~va] == 0).all() and (P.transpose(1, 2)[~vm] == 0).all()


def test_barycentric_projection_of_a_constant_sequence_is_that_constant():
    xa, xm, va, vm = problem(seed=2)
    const = torch.tensor([0.5, -1.0, 2.0, 3.0], dtype=torch.float64).expand_as(xm).clone()
    out = aligner()({"text": xa, "audio": const}, {"text": va, "audio": vm})
    y = out.seqs["audio"]
    torch.testing.assert_close(y[va], const[0, :1].expand(int(va.sum()), 4), rtol=0, atol=1e-6)
    assert (y[~va] == 0).all() and out.seqs["audio"].shape == xa.shape


def test_projection_is_the_plan_weighted_mean_of_frames():
    xa, xm, va, vm = problem(seed=3)
    al = aligner()
    out = al({"text": xa, "audio": xm}, {"text": va, "audio": vm})
    P = al.alignment_plans()["audio"]
    n_a = va.sum(1).view(-1, 1, 1).double()
    expected = n_a * P @ torch.where(vm.unsqueeze(-1), xm, 0.0)  # diag(a)^-1 P X with a = 1 / T_a
    torch.testing.assert_close(out.seqs["audio"], expected * va.unsqueeze(-1), atol=1e-6, rtol=0)


def test_window_zero_on_equal_lengths_keeps_the_diagonal_only():
    xa, xm, _, _ = problem(seed=4, T_a=7, T_m=7)
    v = torch.ones(3, 7, dtype=torch.bool)
    al = aligner(window=0)
    out = al({"text": xa, "audio": xm}, {"text": v, "audio": v})
    P = al.alignment_plans()["audio"]
    torch.testing.assert_close(P, torch.eye(7, dtype=P.dtype).expand(3, 7, 7) / 7, rtol=0, atol=1e-12)
    torch.testing.assert_close(out.seqs["audio"], xm)


def test_plan_is_zero_outside_the_window():
    xa, xm, va, vm = problem(seed=5, T_a=6, T_m=12)
    al = aligner(window=1, reg=0.5)
    al({"text": xa, "audio": xm}, {"text": va, "audio": vm})
    P = al.alignment_plans()["audio"]
    assert (P[~window_band(va, vm, 1)] == 0).all()
    torch.testing.assert_close(P.sum(1), uniform(vm), rtol=0, atol=MARGINAL_ATOL)


def test_window_on_equal_lengths_is_mm_aligns_band():
    v = torch.ones(1, 9, dtype=torch.bool)
    i, j = torch.meshgrid(torch.arange(9), torch.arange(9), indexing="ij")
    for K in range(4):
        assert torch.equal(window_band(v, v, K)[0], (i - j).abs() <= K)


@given(n=st.integers(1, 40), m=st.integers(1, 40), K=st.integers(0, 3))
def test_window_band_leaves_every_row_and_column_a_cell(n, m, K):
    band = window_band(prefix_valid([n], 40), prefix_valid([m], 40), K)[0, :n, :m]
    assert band.any(1).all() and band.any(0).all()
    # the monotone (north-west corner) coupling of uniform weights lies in the band: the OT problem is feasible
    i, j = torch.arange(n).view(-1, 1), torch.arange(m).view(1, -1)
    overlap = (i * m < (j + 1) * n) & (j * n < (i + 1) * m)  # [i, i+1)/n and [j, j+1)/m share a positive length
    assert band[overlap].all()


def test_plans_keep_their_marginals_under_bf16_autocast():
    xa, xm, va, vm = (t.float() if t.is_floating_point() else t for t in problem(seed=6))
    al = SinkhornAligner(SinkhornParams(tol=1e-5), ctx(d=4, modalities=("text", "audio")))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = al({"text": xa, "audio": xm}, {"text": va, "audio": vm})
    P = al.alignment_plans()["audio"]
    assert P.dtype == torch.float32 and out.seqs["audio"].dtype == torch.bfloat16
    torch.testing.assert_close(P.sum(1), uniform(vm).float(), rtol=0, atol=1e-5)
