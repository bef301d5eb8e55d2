"""AlignMamba (Li et al., arXiv 2412.00833) Eq. 1-10 and 12, one test each, on cases small enough to do by hand.

Local alignment (§3.2, Eq. 1-6) is ``relaxed_ot`` (the balanced plan of Eq. 1-2: ``sinkhorn`` with cosine
cost); global alignment (§3.3, Eq. 7-10) is the ``mmd`` loss (``mmd2`` underneath); Eq. 12 is checked end to
end on a built pipeline (the trainer's ``total_loss``).
Every expected number is written out from the paper's formula (or from an independent float64
reference written here), never read back from the implementation. The rows of docs/fidelity.md
for AlignMamba point at these tests.

Hand case used by Eq. 1, 2, 4: language tokens at 0° and 90°, video frames at 0°, 30° (norm 2: the
cosine ignores it) and 60°, so with c = cos 30° = √3/2 the cosine cost (Eq. 3) is

    C_v2l = [[0, 1], [1 - c, 1/2], [1/2, 1 - c]]      (T_v = 3 frames x T_l = 2 tokens)
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from _ot_helpers import ctx

from mmcore.batch import Batch
from mmcore.builder import build
from mmcore.protocols import PipelineState
from mmcore_plugin_ot._costs import cosine_cost
from mmcore_plugin_ot.mmd import mmd2
from mmcore_plugin_ot.mmd_loss import MMDLoss
from mmcore_plugin_ot.params import MMDParams, RelaxedOTParams, SinkhornParams
from mmcore_plugin_ot.relaxed_ot import RelaxedOTAligner
from mmcore_plugin_ot.sinkhorn_aligner import SinkhornAligner

F64 = torch.float64
EXACT = 1e-12  # float64 rounding of a handful of products and sums
C30 = math.sqrt(3) / 2  # cos 30°


def unit(deg: float, r: float = 1.0) -> list[float]:
    return [r * math.cos(math.radians(deg)), r * math.sin(math.radians(deg))]


def ones(T: int) -> torch.Tensor:
    return torch.ones(1, T, dtype=torch.bool)


def hand_case():
    """X_l (1, 2, 2), X_v (1, 3, 2) of the module docstring and its cost C_v2l (3, 2)."""
    xl = torch.tensor([[unit(0), unit(90)]], dtype=F64)
    xv = torch.tensor([[unit(0), unit(30, 2.0), unit(60)]], dtype=F64)
    C = torch.tensor([[0.0, 1.0], [1 - C30, 0.5], [0.5, 1 - C30]], dtype=F64)
    return xl, xv, C


def plan_of(xl, xv, valid_v=None, balanced=False, **params) -> torch.Tensor:
    """The aligner's plan in the paper's orientation M_v2l (T_v, T_l) (``alignment_plans`` holds M^T).

    ``balanced``: Eq. 1-2's entropic plan, the ``sinkhorn`` aligner with cosine cost (``relaxed_ot``'s
    deprecated ``plan: entropic`` is the same computation); else ``relaxed_ot``.
    """
    c = ctx(d=xl.shape[-1], modalities=("text", "vision"))
    al = SinkhornAligner(SinkhornParams(anchor="text", cost="cosine", **params), c) if balanced else \
        RelaxedOTAligner(RelaxedOTParams(anchor="text", **params), c)
    al = al.double()
    vv = ones(xv.shape[1]) if valid_v is None else valid_v
    al({"text": xl, "vision": xv}, {"text": ones(xl.shape[1]), "vision": vv})
    return al.alignment_plans()["vision"][0].T


# --- §3.2 OT-based local alignment ------------------------------------------------------------------


def test_eq1_transport_objective_of_the_relaxed_and_balanced_plans():
    """Eq. 1: min_M Σ_ij M(i,j) C(i,j). By hand on C_v2l:

    relaxed plan (Eq. 4-5, the default): every frame pays its row minimum,
        (1/3)(0 + (1 - c) + (1 - c)) = (2/3)(1 - c) ≈ 0.0893;
    balanced plan (Eq. 2): column 0 must take 1/2; it fills the frames in order of C(i,0) - C(i,1) =
        (-1, 1/2 - c, c - 1/2): frame 0 (1/3) then 1/6 of frame 1, so the optimum is
        (1/6)(1 - c) + (1/6)(1/2) + (1/3)(1 - c) = (1/2)(1 - c) + 1/12 ≈ 0.1503.
    The entropic plan (``sinkhorn``, cosine cost) at reg = 0.01 reaches the balanced optimum to e^(-63)
    (smallest reduced cost 0.63).
    """
    xl, xv, C = hand_case()
    relaxed = plan_of(xl, xv)
    balanced = plan_of(xl, xv, balanced=True, reg=0.01, tol=1e-13, max_iter=100_000)
    assert abs(float((relaxed * C).sum()) - 2 / 3 * (1 - C30)) < EXACT
    assert abs(float((balanced * C).sum()) - (0.5 * (1 - C30) + 1 / 12)) < EXACT


def test_eq2_entropic_plan_meets_the_balanced_constraints_and_tends_to_the_lp_plan():
    """Eq. 2: rows sum to 1/T_v, columns to 1/T_l, M ≥ 0. The LP optimum on C_v2l (see Eq. 1) is
    M* = [[1/3, 0], [1/6, 1/6], [0, 1/3]]. mmcore solves Eq. 1-2 only with entropy (``sinkhorn``, cosine cost):
    at reg = 0.01 the plan is M* to 1e-12; at the default reg = 0.1 it still meets Eq. 2 but is blurred
    (the zero cells of M* get ~6e-4 and 2e-4: the deviation the fidelity row records).
    """
    xl, xv, C = hand_case()
    lp = torch.tensor([[1 / 3, 0.0], [1 / 6, 1 / 6], [0.0, 1 / 3]], dtype=F64)
    sharp = plan_of(xl, xv, balanced=True, reg=0.01, tol=1e-13, max_iter=100_000)
    torch.testing.assert_close(sharp, lp, rtol=0, atol=EXACT)
    blurred = plan_of(xl, xv, balanced=True, tol=1e-12, max_iter=100_000)  # default reg 0.1
    torch.testing.assert_close(blurred.sum(1), torch.full((3,), 1 / 3, dtype=F64), rtol=0, atol=1e-10)
    torch.testing.assert_close(blurred.sum(0), torch.full((2,), 1 / 2, dtype=F64), rtol=0, atol=1e-10)
    assert (blurred >= 0).all()
    assert float(blurred[0, 1]) > 1e-4 and float(blurred[2, 0]) > 1e-4, "reg 0.1 is not the exact LP plan"


def test_eq3_cost_is_one_minus_cosine_similarity():
    """Eq. 3: C(i,j) = 1 - x_v^i·x_l^j / (‖x_v^i‖‖x_l^j‖). By hand: the docstring's C_v2l (the norm 2 of
    frame 1 does not matter), and a frame (-3, 3) gives 1 + 1/√2 to (1, 0) and 1 - 1/√2 to (0, 1).
    A zero frame (masked input) has no cosine: mmcore floors the norm, so its cost is 1 to every token.
    """
    xl, xv, C = hand_case()
    torch.testing.assert_close(cosine_cost(xl, xv)[0], C.T, rtol=0, atol=EXACT)  # (T_l, T_v): anchor first
    s = 1 / math.sqrt(2)
    extra = torch.tensor([[[-3.0, 3.0], [0.0, 0.0]]], dtype=F64)
    expected = torch.tensor([[1 + s, 1.0], [1 - s, 1.0]], dtype=F64)
    torch.testing.assert_close(cosine_cost(xl, extra)[0], expected, rtol=0, atol=EXACT)


def test_eq4_relaxed_plan_keeps_only_the_outgoing_constraint_and_is_optimal_under_it():
    """Eq. 4: Σ_j M(i,j) = 1/T_v and M ≥ 0, the incoming constraint dropped. By hand on C_v2l: frames 0, 1
    go to token 0 and frame 2 to token 1, so the rows sum to 1/3 but the columns to (2/3, 1/3), not
    (1/2, 1/2). Among 500 random plans that meet Eq. 4, and its 8 vertices (one token per frame), none has
    a lower Eq. 1 objective.
    """
    xl, xv, C = hand_case()
    M = plan_of(xl, xv)
    torch.testing.assert_close(M.sum(1), torch.full((3,), 1 / 3, dtype=F64), rtol=0, atol=0)
    torch.testing.assert_close(M.sum(0), torch.tensor([2 / 3, 1 / 3], dtype=F64), rtol=0, atol=EXACT)
    assert (M >= 0).all()
    g = torch.Generator().manual_seed(0)
    w = torch.rand(500, 3, 2, generator=g, dtype=F64)
    feasible = w / w.sum(-1, keepdim=True) / 3  # (500, T_v, T_l): every row sums to 1/T_v
    vertices = torch.stack([torch.eye(2, dtype=F64)[list(js)] / 3 for js in itertools.product(range(2), repeat=3)])
    others = torch.cat([feasible, vertices])  # + the 8 vertices of the Eq. 4 polytope (one token per frame)
    assert float((M * C).sum()) <= float((others * C).sum((1, 2)).min()) + EXACT


def test_eq5_relaxed_plan_puts_one_over_T_v_on_each_rows_argmin():
    """Eq. 5: M(i,j) = 1/T_v if j = argmin_j C(i,j), else 0. By hand:

    - on C_v2l, argmins (0, 0, 1): M = [[1/3, 0], [1/3, 0], [0, 1/3]];
    - a tie (frame (1, 1) is 1 - 1/√2 from both tokens) goes to the first token, as documented;
    - T_v counts valid frames only: a padded fourth frame leaves 1/3 (not 1/4) and gets no mass.
    """
    xl, xv, _ = hand_case()
    torch.testing.assert_close(plan_of(xl, xv), torch.tensor([[1 / 3, 0], [1 / 3, 0], [0, 1 / 3]], dtype=F64),
                               rtol=0, atol=0)
    tie = torch.tensor([[[1.0, 1.0], [0.1, 3.0]]], dtype=F64)
    torch.testing.assert_close(plan_of(xl, tie), torch.tensor([[0.5, 0], [0, 0.5]], dtype=F64), rtol=0, atol=0)
    padded = torch.cat([xv, torch.tensor([[[5.0, -1.0]]], dtype=F64)], 1)  # (1, 4, 2), last frame padding
    valid = torch.tensor([[True, True, True, False]])
    M = plan_of(xl, padded, valid_v=valid)
    torch.testing.assert_close(M, torch.tensor([[1 / 3, 0], [1 / 3, 0], [0, 1 / 3], [0, 0]], dtype=F64),
                               rtol=0, atol=0)


def test_eq6_aligned_features_are_M_transpose_times_X_v():
    """Eq. 6: X̃_v = M_v2l^T X_v ∈ R^{T_l x d}. By hand on the docstring case (M from Eq. 5):
    X̃_v[0] = (x_0 + x_1)/3 = ((1, 0) + (√3, 1))/3, X̃_v[1] = x_2/3 = (1/2, √3/2)/3; the language
    stream passes through unchanged. ``normalize: barycentric`` (not the paper) divides by the received
    mass instead: X̃_v[0] = (x_0 + x_1)/2, X̃_v[1] = x_2.
    """
    xl, xv, _ = hand_case()
    x0, x1, x2 = xv[0]
    params = dict(anchor="text")
    al = RelaxedOTAligner(RelaxedOTParams(**params), ctx(d=2, modalities=("text", "vision"))).double()
    out = al({"text": xl, "vision": xv}, {"text": ones(2), "vision": ones(3)})
    torch.testing.assert_close(out.seqs["vision"][0], torch.stack([(x0 + x1) / 3, x2 / 3]), rtol=0, atol=EXACT)
    assert torch.equal(out.seqs["text"], xl) and out.seqs["vision"].shape == (1, 2, 2)  # (1, T_l, d)
    bary = RelaxedOTAligner(RelaxedOTParams(normalize="barycentric", **params),
                            ctx(d=2, modalities=("text", "vision"))).double()
    out = bary({"text": xl, "vision": xv}, {"text": ones(2), "vision": ones(3)})
    torch.testing.assert_close(out.seqs["vision"][0], torch.stack([(x0 + x1) / 2, x2]), rtol=0, atol=EXACT)


# --- §3.3 MMD-based global alignment ------------------------------------------------------------------


def gaussian_features(x: torch.Tensor, n_terms: int = 30) -> torch.Tensor:
    """An explicit feature map of k(x, y) = exp(-‖x - y‖²/2) (σ = 1), truncated: (T, 2) -> (T, n_terms²).

    In 1-D, exp(-(x-y)²/2) = Σ_n φ_n(x) φ_n(y) with φ_n(x) = e^{-x²/2} x^n / √(n!) (Taylor series of
    e^{xy}); in 2-D the kernel is the product over coordinates, so φ is the outer product. For |x| ≤ 2
    the dropped terms are below 2^60/30! ≈ 4e-15.
    """
    n = torch.arange(n_terms, dtype=F64)
    log_fact = torch.lgamma(n + 1)
    per_dim = torch.exp(-x.unsqueeze(-1) ** 2 / 2) * x.unsqueeze(-1) ** n / torch.exp(log_fact / 2)  # (T, 2, n)
    return (per_dim[:, 0, :, None] * per_dim[:, 1, None, :]).reshape(x.shape[0], -1)  # (T, n²)


def test_eq7_mmd_is_the_rkhs_distance_between_mean_embeddings():
    """Eq. 7: MMD²(X, Y) = ‖(1/T) Σ φ(x_i) - (1/T) Σ φ(y_j)‖²_H, computed here with an explicit (truncated
    Taylor) feature map of the σ = 1 Gaussian kernel on two sets of T = 4 points in [-2, 2]², and compared
    with ``mmd2`` (which uses the kernel trick, Eq. 8).
    """
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 2, generator=g, dtype=F64) * 4 - 2
    y = torch.rand(4, 2, generator=g, dtype=F64) * 3 - 1
    mean_gap = gaussian_features(x).mean(0) - gaussian_features(y).mean(0)
    expected = float(mean_gap @ mean_gap)
    assert expected > 1e-3  # not a trivially equal pair
    assert abs(float(mmd2(x, y, sigma=1.0)) - expected) < 1e-12


def mmd_state(aligned: dict[str, torch.Tensor], encoded: dict[str, torch.Tensor] | None = None) -> PipelineState:
    """A PipelineState holding the given aligned streams (all tokens valid, no modality missing)."""
    valid = {m: torch.ones(x.shape[:2], dtype=torch.bool) for m, x in aligned.items()}
    B = next(iter(aligned.values())).shape[0]
    batch = Batch(features={m: torch.zeros(B, x.shape[1], 1) for m, x in aligned.items()}, valid=valid,
                  labels=torch.zeros(B))
    rep = torch.zeros(B, 1)
    enc = encoded or aligned
    return PipelineState(batch, enc, enc, aligned, valid, rep, rep[:, 0])


def points(*rows) -> torch.Tensor:
    """1-D token sets as a (B, T, 1) float64 tensor: points([0, 1], [2, 3]) is two instances of two tokens."""
    return torch.tensor(rows, dtype=F64).unsqueeze(-1)


def test_eq8_kernel_trick_estimate_by_hand():
    """Eq. 8: MMD² = (1/T²)Σk(x,x') + (1/T²)Σk(y,y') - (2/T²)Σk(x,y). By hand with σ = 1 (Eq. 9),
    X = {0, 1}, Y = {0, 2}: (2 + 2e^{-1/2})/4 + (2 + 2e^{-2})/4 - (2/4)(1 + e^{-2} + 2e^{-1/2})
    = (1 - e^{-1/2})/2. The paper has one T for both sets; for T_x = 1, T_y = 2 mmcore divides the
    cross term by T_x T_y: X = {0}, Y = {0, 2} gives 1 + (2 + 2e^{-2})/4 - (1 + e^{-2}) = (1 - e^{-2})/2.
    The registered ``mmd`` loss with the paper's single bandwidth (sigma: [1], median_scales: []) agrees.
    """
    expected = (1 - math.exp(-0.5)) / 2
    assert abs(float(mmd2(points([0, 1])[0], points([0, 2])[0], sigma=1.0)) - expected) < EXACT
    assert abs(float(mmd2(points([0])[0], points([0, 2])[0], sigma=1.0)) - (1 - math.exp(-2)) / 2) < EXACT
    loss = MMDLoss(MMDParams(anchor="text", sigma=(1.0,), median_scales=()), ctx(d=1, modalities=("text", "audio")))
    value = loss(mmd_state({"text": points([0, 2]), "audio": points([0, 1])}))
    assert abs(float(value) - expected) < 1e-7  # the loss returns float32


def test_eq9_gaussian_kernel_bandwidth_convention():
    """Eq. 9: k(x, y) = exp(-‖x - y‖²/(2σ²)). For single tokens MMD² = 2 - 2k(x, y); x = (0, 0), y = (3, 4),
    σ = 5: ‖x - y‖² = 25, 2σ² = 50, so MMD² = 2 - 2e^{-1/2} (exp(-d²/σ²) would give 2 - 2e^{-1}).
    The paper gives no σ: the loss's default is the median heuristic, σ = the median pairwise distance
    = 5 here, so the default gives the same value; two bandwidths (sigma: [5, 10]) sum two kernels,
    (2 - 2e^{-1/2}) + (2 - 2e^{-1/8}).
    """
    x = torch.tensor([[[0.0, 0.0]]], dtype=F64)
    y = torch.tensor([[[3.0, 4.0]]], dtype=F64)
    one = 2 - 2 * math.exp(-0.5)
    assert abs(float(mmd2(x, y, sigma=5.0)[0]) - one) < EXACT
    modalities = ("text", "audio")
    paper = MMDLoss(MMDParams(anchor="text", sigma=(5.0,), median_scales=()), ctx(d=2, modalities=modalities))
    default = MMDLoss(MMDParams(anchor="text"), ctx(d=2, modalities=modalities))
    two = MMDLoss(MMDParams(anchor="text", sigma=(5.0, 10.0), median_scales=()), ctx(d=2, modalities=modalities))
    state = mmd_state({"text": x, "audio": y})
    assert abs(float(paper(state)) - one) < 1e-6
    assert abs(float(default(state)) - one) < 1e-6
    assert abs(float(two(state)) - (one + 2 - 2 * math.exp(-1 / 8))) < 1e-6


def test_eq10_align_loss_sums_the_mmd_of_each_aligned_stream_to_language():
    """Eq. 10: L_align = MMD²(X̃_v, X_l) + MMD²(X̃_a, X_l). By hand (σ = 1, 1-D tokens, T = 2):
    X_l = {0, 1}, X̃_a = {0, 2}: (1 - e^{-1/2})/2 (Eq. 8 test);
    X̃_v = {2, 3}: (2 + 2e^{-1/2})/4 · 2 - (2/4)(e^{-2} + e^{-1/2} + e^{-9/2} + e^{-2})
        = 1 + e^{-1/2}/2 - e^{-2} - e^{-9/2}/2;
    sum = 3/2 - e^{-2} - e^{-9/2}/2. The pair audio-vision is not in Eq. 10 (``pairs: all`` would add it).
    It reads the aligned streams (``features: aligned``): the encoded ones here are garbage. For a batch
    the per-instance values are averaged: a second instance with X̃_a = X̃_v = X_l adds 0, halving it.
    """
    expected = 1.5 - math.exp(-2) - math.exp(-4.5) / 2
    loss = MMDLoss(MMDParams(anchor="text", sigma=(1.0,), median_scales=()), ctx(d=1))
    aligned = {"text": points([0, 1]), "audio": points([0, 2]), "vision": points([2, 3])}
    garbage = {m: torch.full_like(x, 7.0) for m, x in aligned.items()}
    assert abs(float(loss(mmd_state(aligned, encoded=garbage))) - expected) < 1e-6
    batch2 = {"text": points([0, 1], [5, 6]), "audio": points([0, 2], [5, 6]), "vision": points([2, 3], [5, 6])}
    assert abs(float(loss(mmd_state(batch2))) - expected / 2) < 1e-6


# --- §3.4 Eq. 12 on a built pipeline ----------------------------------------------------------------------


def reference_mmd2(x: torch.Tensor, y: torch.Tensor, sigma: float) -> float:
    """Eq. 8 with Eq. 9 as three explicit double loops in float64 (an independent reference)."""
    x, y = x.double().tolist(), y.double().tolist()

    def k(p, q):
        return math.exp(-sum((a - b) ** 2 for a, b in zip(p, q)) / (2 * sigma**2))

    kxx = sum(k(p, q) for p in x for q in x) / len(x) ** 2
    kyy = sum(k(p, q) for p in y for q in y) / len(y) ** 2
    kxy = sum(k(p, q) for p in x for q in y) / (len(x) * len(y))
    return kxx + kyy - 2 * kxy


def test_eq12_total_loss_is_task_plus_lambda_times_the_aligned_mmd():
    """Eq. 12: L = L_task + λ L_align on a built AlignMamba-like pipeline (relaxed_ot onto text, the mmd
    loss with λ = 0.25 from the spec, a mean-pool fuser and an L1 head): the trainer's total equals
    mean|ŷ - y| + 0.25 · (reference MMD²(X̃_a, X_l) + reference MMD²(X̃_v, X_l)), each averaged over the
    batch, with the reference computed here from the aligned streams by explicit loops.
    """
    lam, sigma = 0.25, 2.0
    spec = {"seed": 0, "modalities": {"text": {"dim": 3, "length": 4}, "audio": {"dim": 2, "length": 5},
                                      "vision": {"dim": 2, "length": 3}},
            "model": {"d_model": 4, "dropout": 0.0}, "encoders": {"default": {"name": "linear"}},
            "aligner": {"name": "relaxed_ot", "params": {"anchor": "text"}},
            "fuser": {"name": "concat_pool", "params": {}},
            "head": {"name": "regression_mlp", "params": {"loss": "l1"}},
            "losses": {"mmd": {"weight": lam, "params": {"anchor": "text", "sigma": [sigma], "median_scales": []}}},
            "data": {"name": "synthetic", "params": {}},
            "train": {"epochs": 1, "batch_size": 2, "select_metric": "mae", "device": "cpu"}}
    torch.manual_seed(0)
    model = build(spec).double().eval()
    g = torch.Generator().manual_seed(1)
    feats = {m: torch.randn(2, T, d, generator=g, dtype=F64) for m, (T, d) in {"text": (4, 3), "audio": (5, 2),
                                                                               "vision": (3, 2)}.items()}
    valid = {m: torch.ones(2, x.shape[1], dtype=torch.bool) for m, x in feats.items()}
    labels = torch.tensor([0.5, -1.0], dtype=F64)
    with torch.no_grad():
        out = model(Batch(features=feats, valid=valid, labels=labels))
        total, terms = model.total_loss(out, labels)
    al = out.state.aligned
    align = sum(reference_mmd2(al[m][b], al["text"][b], sigma) for m in ("audio", "vision") for b in range(2)) / 2
    task = float((out.pred - labels).abs().mean())
    assert model.loss_weights["mmd"] == lam
    assert abs(float(terms["mmd"]) - align) < 1e-6
    assert abs(float(total) - (task + lam * align)) < 1e-6
    assert abs(float(F.l1_loss(out.pred, labels)) - task) < EXACT
