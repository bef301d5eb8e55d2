"""Authors-exact MM-Align against the authors' numeric fixtures (``../shared/reference/mm_align.npz``).

Every (function, case) group of the archive is checked — outputs, and gradients of the fixtures' readout
(README §1) — to 1e-6 relative in float64; float32 arrays at float32 resolution. The fixtures are
time-first ``(L, B, D)``; mmcore is batch-first, so inputs and ``grad_*`` arrays are transposed here.
Skipped, with the path, when the archive is absent (``mmcore.testing.load_reference``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmcore.batch import Batch
from mmcore.protocols import BuildContext, ModalityInfo
from mmcore.testing import assert_close, load_reference, readout
from mmcore_plugin_adl import authors
from mmcore_plugin_adl.adl import ADLImputer
from mmcore_plugin_adl.fitter import AlignmentFitter
from mmcore_plugin_adl.losses import contrastive_loss
from mmcore_plugin_adl.params import ADLParams

F64 = 1e-6  # README §1: float64 arrays agree to ~1e-15; 1e-6 relative is the suggested tolerance
F32_RTOL = 1e-6  # float32 arrays: 1e-6 relative, or within a couple of float32 ulps of the value (README §3.1)
F32_ULPS = 2


def ref():
    return load_reference("mm_align")


def cases(fn):
    """The cases of ``fn`` at collection time (one placeholder when the archive is absent: each test then skips)."""
    from mmcore.testing import reference_dir

    if not (reference_dir() / "mm_align.npz").exists():
        return ["absent"]
    return load_reference("mm_align").cases(fn)


def tf(x: torch.Tensor) -> torch.Tensor:
    """(L, B, ...) <-> (B, L, ...)."""
    return x.transpose(0, 1)


def lengths(g) -> torch.Tensor:
    return torch.from_numpy(g["lengths"].copy())


def assert_close_f32(actual: torch.Tensor, expected: np.ndarray, what: str) -> None:
    """float32 resolution: |a - e| <= max(rtol |e|, F32_ULPS ulp(e)) (out-of-window costs ~100 have ulp ~8e-6)."""
    a = actual.detach().float().numpy()
    e = np.asarray(expected, dtype=np.float32)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != reference {e.shape}"
    tol = np.maximum(F32_RTOL * np.abs(e), F32_ULPS * np.spacing(np.abs(e)))
    bad = np.abs(a.astype(np.float64) - e.astype(np.float64)) > tol
    assert not bad.any(), f"{what}: {int(bad.sum())} entries differ beyond float32 resolution; max |diff| " \
                          f"{np.abs(a.astype(np.float64) - e).max():.3g}"


def check_readout_gradients(g, name: str, out: torch.Tensor, inputs: dict[str, torch.Tensor], **out_tol) -> None:
    """``out`` equals the fixture's ``name`` (float64; ``out_tol`` widens the tolerance), so does the fixture's
    readout of it, and after its backward each input's gradient equals the fixture's array of that key
    (``inputs``: {"grad_x": x, ...})."""
    assert_close(out, g[name], rtol=F64, what=name, **out_tol)
    r = readout({name: out}, g)
    assert_close(r, g["readout"], rtol=F64, what="readout")
    r.backward()
    for key, t in inputs.items():
        assert_close(t.grad, g[key], rtol=F64, atol=1e-13, what=key)


COVERED = {"pairwise_distances", "compute_optimal_transport", "otsolver_forward_f32", "sinkhorn_fitter_forward",
           "sinkhorn_fitter_inference", "criterion_fit", "contra_loss"}


def test_every_fixture_function_is_covered():
    assert set(ref().functions()) == COVERED, "a new fixture group needs its test here (and in COVERED)"


@pytest.mark.parametrize("case", cases("pairwise_distances"))
def test_pairwise_distances(case):
    g = ref().group("pairwise_distances", case)
    m1, m2 = tf(g.tensor("m1")), tf(g.tensor("m2"))  # (B, L, D) float64
    cost = authors.pairwise_distances(m1, m2, lengths(g), g.scalar("win_size"))
    assert cost.dtype == torch.float32 and g["cost"].dtype == np.float32
    assert_close_f32(cost, g["cost"], "cost")


@pytest.mark.parametrize("case", cases("compute_optimal_transport"))
def test_compute_optimal_transport(case):
    g = ref().group("compute_optimal_transport", case)
    res = authors.compute_optimal_transport(g.tensor("cost"), lengths(g), lam=g.scalar("lam"),
                                            max_iter=g.scalar("max_iter"), eps=g.scalar("eps"))
    assert_close(res.targets, g["targets"], rtol=F64, what="targets")
    assert_close(res.dist, g["dist"], rtol=F64, what="dist")
    np.testing.assert_array_equal(res.num_iters.numpy(), g["num_iters"])
    # neither unit rows nor unit columns (the README's point), on the valid block of the longest sample
    l0 = int(g["lengths"][0])
    t = res.targets[0, :l0, :l0]
    assert (t.sum(1) - 1).abs().max() > 1e-3 and (t.sum(0) - 1).abs().max() > 1e-3


@pytest.mark.parametrize("case", cases("otsolver_forward_f32"))
def test_otsolver_forward_f32(case):
    g = ref().group("otsolver_forward_f32", case)
    m1, m2 = tf(g.tensor("m1")), tf(g.tensor("m2"))  # (B, L, D) float32
    assert m1.dtype == torch.float32
    res = authors.otsolver_forward(m1, m2, lengths(g), g.scalar("win_size"), lam=g.scalar("lam"),
                                   max_iter=g.scalar("max_iter"), eps=g.scalar("eps"))
    assert res.targets.dtype == torch.float32 and res.dist.dtype == torch.float32
    assert_close_f32(res.targets, g["targets"], "targets")
    assert_close_f32(res.dist, g["dist"], "dist")


def fixture_fitter(g) -> AlignmentFitter:
    """An AlignmentFitter (softmax='all', float64) holding the fixture's SinkhornFitter weights.

    State-dict mapping: the fixture key ``rnn_<p>`` is the authors' ``rnn.<p>`` -> our ``gru.<p>``;
    ``out_weight``/``out_bias`` are ``out.weight``/``out.bias`` -> ``proj.weight``/``proj.bias``
    (:func:`mmcore_plugin_adl.authors.fitter_state_from_authors`).
    """
    W, hid, D = g.scalar("win_size"), g.scalar("hid_dim"), g["x"].shape[-1]
    fitter = AlignmentFitter(D, hid, W, bidirectional=True, softmax="all").double()
    theirs = {f"rnn.{k[4:]}": g.tensor(k) for k in g if k.startswith("rnn_")}
    theirs.update({"out.weight": g.tensor("out_weight"), "out.bias": g.tensor("out_bias")})
    fitter.load_state_dict(authors.fitter_state_from_authors(theirs), strict=True)
    return fitter


@pytest.mark.parametrize("case", cases("sinkhorn_fitter_forward"))
def test_sinkhorn_fitter_forward(case):
    g = ref().group("sinkhorn_fitter_forward", case)
    fitter = fixture_fitter(g)
    x = g.tensor("x", requires_grad=True)  # (L, B, D)
    L = x.shape[0]
    pred = fitter(tf(x), authors.prefix_mask(lengths(g), L))  # (B, L, 2W+1)
    check_readout_gradients(g, "align_pred", pred, {"grad_x": x})


@pytest.mark.parametrize("case", cases("sinkhorn_fitter_inference"))
def test_sinkhorn_fitter_inference(case):
    g = ref().group("sinkhorn_fitter_inference", case)
    A = g.tensor("A_preds", requires_grad=True)
    x = g.tensor("x", requires_grad=True)  # batch-first already (B, L, D)
    h2 = authors.sinkhorn_fitter_inference(A, x, lengths(g))
    check_readout_gradients(g, "h2_pred", h2, {"grad_A_preds": A, "grad_x": x}, atol=1e-13)


@pytest.mark.parametrize("case", cases("criterion_fit"))
def test_criterion_fit(case):
    g = ref().group("criterion_fit", case)
    preds = g.tensor("preds", requires_grad=True)
    loss = authors.criterion_fit(preds, g.tensor("truths"), lengths(g))
    check_readout_gradients(g, "loss", loss, {"grad_preds": preds})


@pytest.mark.parametrize("case", cases("contra_loss"))
def test_contra_loss(case):
    g = ref().group("contra_loss", case)
    x1, x2 = g.tensor("x1", requires_grad=True), g.tensor("x2", requires_grad=True)
    loss = authors.contra_loss(x1, x2)
    check_readout_gradients(g, "loss", loss, {"grad_x1": x1, "grad_x2": x2})
    # the imputer's adl_con in authors mode (dot, tau = 1, sum) is -contra_loss, with the negated gradients
    y1, y2 = g.tensor("x1", requires_grad=True), g.tensor("x2", requires_grad=True)
    con = contrastive_loss(y1, y2, 1.0, score="dot", reduction="sum")
    assert_close(con, -g["loss"], rtol=F64, what="adl_con")
    con.backward()
    assert_close(y1.grad, -g["grad_x1"], rtol=F64, atol=1e-13, what="adl_con grad_x1")


# ---------------------------------------------------------------- the imputer end to end, reference: authors
def authors_imputer(g, **extra) -> ADLImputer:
    """ADLImputer(reference: authors) in float64 holding the fixture's fitter weights (audio -> vision, d = D)."""
    W, hid, D = g.scalar("win_size"), g.scalar("hid_dim"), g["x"].shape[-1]
    ctx = BuildContext(modalities={"audio": ModalityInfo("audio", 5, 12), "vision": ModalityInfo("vision", 4, 12)},
                       d_model=D)
    imp = ADLImputer(ADLParams(reference="authors", present="audio", victim="vision", window=W, hidden=hid, **extra),
                     ctx).double()
    imp.fitter.load_state_dict(fixture_fitter(g).state_dict())
    return imp


def fixture_batch(g, missing_victim=False) -> Batch:
    lens = lengths(g)
    B, L = len(lens), g["x"].shape[0]
    v = authors.prefix_mask(lens, L)
    miss = torch.full((B,), bool(missing_victim))
    return Batch(features={"audio": torch.zeros(B, L, 5), "vision": torch.zeros(B, L, 4)},
                 valid={"audio": v, "vision": v.clone()}, labels=torch.zeros(B),
                 missing={"audio": torch.zeros(B, dtype=torch.bool), "vision": miss}, index=torch.arange(B))


@pytest.mark.parametrize("case", cases("criterion_fit"))
def test_imputer_in_authors_mode_reproduces_the_fixture_chain(case):
    """x -> fitter -> (solver targets, criterion_fit) and -> inference, through ADLImputer with reference: authors."""
    R = ref()
    fwd, pd, fit, inf = (R.group(f, case) for f in ("sinkhorn_fitter_forward", "pairwise_distances", "criterion_fit",
                                                     "sinkhorn_fitter_inference"))
    imp = authors_imputer(fwd)
    z1, z2 = tf(pd.tensor("m1")), tf(pd.tensor("m2"))  # the fixtures chain: fitter x = solver m1
    # learning mode (fitter step): adl_fit = criterion_fit(fitter(m1), OTSolver(m1, m2)) = the fixture's loss
    imp.train().set_step("denoise", "fitter")
    out = imp({"audio": z1, "vision": z2}, fixture_batch(fwd))
    assert_close(out.aux["adl_fit"], fit["loss"], rtol=F64, what="adl_fit")
    out.aux["adl_fit"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in imp.fitter.parameters())
    # decoding mode (evaluation, victim missing on every row): the imputation = inference's h2_pred
    imp.eval()
    with torch.no_grad():
        out = imp({"audio": z1, "vision": torch.zeros_like(z2)}, fixture_batch(fwd, missing_victim=True))
    assert_close(out.seqs["vision"], inf["h2_pred"], rtol=F64, atol=1e-13, what="imputed victim")


@pytest.mark.parametrize("case", cases("contra_loss"))
def test_imputer_in_authors_mode_contrastive_term_is_minus_contra_loss(case):
    """Backbone step: adl_con = -contra_loss(h1[0], h2[0]) on the first time step, with gradients."""
    g = ref().group("contra_loss", case)
    N, D = g["x1"].shape
    T = 4
    ctx = BuildContext(modalities={"audio": ModalityInfo("audio", 5, T), "vision": ModalityInfo("vision", 4, T)},
                       d_model=D)
    imp = ADLImputer(ADLParams(reference="authors", present="audio", victim="vision", window=1), ctx).double()
    gen = torch.Generator().manual_seed(0)
    z1 = torch.cat([g.tensor("x1").unsqueeze(1), torch.randn(N, T - 1, D, generator=gen, dtype=torch.float64)], 1)
    z2 = torch.cat([g.tensor("x2").unsqueeze(1), torch.randn(N, T - 1, D, generator=gen, dtype=torch.float64)], 1)
    z1.requires_grad_()
    v = torch.ones(N, T, dtype=torch.bool)
    batch = Batch(features={"audio": torch.zeros(N, T, 5), "vision": torch.zeros(N, T, 4)},
                  valid={"audio": v, "vision": v.clone()}, labels=torch.zeros(N),
                  missing={"audio": torch.zeros(N, dtype=torch.bool), "vision": torch.zeros(N, dtype=torch.bool)},
                  index=torch.arange(N))
    imp.train().set_step("denoise", "backbone")
    out = imp({"audio": z1, "vision": z2}, batch)
    assert set(out.aux) == {"adl_con"}
    assert_close(out.aux["adl_con"], -g["loss"], rtol=F64, what="adl_con")
    out.aux["adl_con"].backward()
    assert_close(z1.grad[:, 0], -g["grad_x1"], rtol=F64, atol=1e-13, what="grad h1[0]")
    assert (z1.grad[:, 1:] == 0).all(), "only the first time step enters the authors' contrastive term"
