"""MM-Align's equations checked on small hand-computed cases (numpy, written out term by term).

Eq. 1–3 (the MulT block) and Eq. 4–5 (head, task loss) are core parts the recipe uses (``mult`` fuser,
``regression_mlp`` head); the rest are this plugin's. Where mmcore deviates from the printed equation the
test pins mmcore's form and says what differs (docs/fidelity.md).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mmcore.builtins.fusers import CrossModalBlock
from mmcore.builtins.heads import RegressionMlpHead
from mmcore.builtins.params import RegressionHeadParams
from mmcore.protocols import BuildContext, ModalityInfo
from mmcore_plugin_adl.losses import contrastive_loss, fit_loss
from mmcore_plugin_adl.solver import ot_targets, windowed_cost
from mmcore_plugin_adl.window import to_dense, window_geometry

RTOL = 1e-10  # float64 throughout


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


def _layer_norm(x: np.ndarray, ln: torch.nn.LayerNorm) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + ln.eps) * _np(ln.weight) + _np(ln.bias)


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def test_eq1_to_3_cross_modal_block_by_hand():
    """Q = x1 W_Q, K = x2 W_K, V = x2 W_V (Eq. 1); Ẑ = MATT(Q, K, V) + x1 (Eq. 2); Z = Ẑ + FFN(LN(Ẑ)).

    mmcore's block is pre-norm: Q/K/V are taken from LN(x1), LN(x2), and Eq. 3's FFN(Ẑ) + LN(Ẑ) becomes
    Ẑ + FFN(LN(Ẑ)). One head, d = 4, a source with one padded step (masked out of the attention).
    """
    torch.manual_seed(0)
    d = 4
    block = CrossModalBlock(d, heads=1, dropout=0.0).double().eval()
    for ln in (block.norm_q, block.norm_kv, block.norm_ff):  # non-trivial affine LayerNorms
        torch.nn.init.normal_(ln.weight)
        torch.nn.init.normal_(ln.bias)
    x1 = torch.randn(1, 3, d, dtype=torch.float64)  # target (m1), T = 3
    x2 = torch.randn(1, 3, d, dtype=torch.float64)  # source (m2), T = 3, last step padding
    valid = torch.tensor([[True, True, False]])
    out = block(x1, x2, valid)

    a, s = _np(x1[0]), _np(x2[0, :2])  # the padded source step takes no part
    Wi, bi = _np(block.attn.in_proj_weight), _np(block.attn.in_proj_bias)
    WQ, WK, WV = Wi[:d], Wi[d:2 * d], Wi[2 * d:]
    bQ, bK, bV = bi[:d], bi[d:2 * d], bi[2 * d:]
    q = _layer_norm(a, block.norm_q) @ WQ.T + bQ  # Eq. 1 (pre-norm)
    k = _layer_norm(s, block.norm_kv) @ WK.T + bK
    v = _layer_norm(s, block.norm_kv) @ WV.T + bV
    logits = q @ k.T / math.sqrt(d)
    att = np.exp(logits - logits.max(1, keepdims=True))
    att /= att.sum(1, keepdims=True)
    z_hat = a + (att @ v) @ _np(block.attn.out_proj.weight).T + _np(block.attn.out_proj.bias)  # Eq. 2
    ff0, ff3 = block.ff[0], block.ff[3]
    h = _gelu(_layer_norm(z_hat, block.norm_ff) @ _np(ff0.weight).T + _np(ff0.bias))
    z = z_hat + h @ _np(ff3.weight).T + _np(ff3.bias)  # Eq. 3 (pre-norm residual form)
    np.testing.assert_allclose(_np(out[0]), z, rtol=RTOL, atol=1e-12)


def _head(loss: str) -> RegressionMlpHead:
    ctx = BuildContext(modalities={"audio": ModalityInfo("audio", 5, 4)}, d_model=4, dropout=0.0, in_dim=4)
    torch.manual_seed(1)
    return RegressionMlpHead(RegressionHeadParams(hidden=3, loss=loss), ctx).double().eval()


def test_eq4_regression_head_by_hand():
    """ŷ = W2 σ(W1 r + b1) + b2 with σ = GELU (the paper: tanh, on the [CLS] embeddings; mmcore: the fuser's rep)."""
    head = _head("mse")
    r = torch.randn(5, 4, dtype=torch.float64)
    l1, l2 = head.mlp[0], head.mlp[3]
    expected = _gelu(_np(r) @ _np(l1.weight).T + _np(l1.bias)) @ _np(l2.weight).T + _np(l2.bias)
    np.testing.assert_allclose(_np(head(r)), expected[:, 0], rtol=RTOL)


def test_eq5_mse_task_loss_by_hand():
    """L_main = MSE(ŷ, y) = mean (ŷ - y)^2 with loss: mse (the recipes use l1: the reported metric is MAE)."""
    head = _head("mse")
    pred = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    y = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    assert float(head.loss(pred, y)) == (0.25 + 4.0 + 1.0) / 3
    assert float(_head("l1").loss(pred, y)) == (0.5 + 2.0 + 1.0) / 3


def test_eq7_windowed_cost_by_hand():
    """M_ij = 1 - cos(z1_i, z2_j) for |i - j| <= K, +inf otherwise (equal lengths, K = 1)."""
    g = torch.Generator().manual_seed(2)
    z1 = torch.randn(1, 4, 3, generator=g, dtype=torch.float64)
    z2 = torch.randn(1, 4, 3, generator=g, dtype=torch.float64)
    v = torch.ones(1, 4, dtype=torch.bool)
    cost = _np(windowed_cost(z1, z2, window_geometry(v, v, 1).band)[0])
    a, b = _np(z1[0]), _np(z2[0])
    for i in range(4):
        for j in range(4):
            if abs(i - j) <= 1:
                cos = a[i] @ b[j] / (np.linalg.norm(a[i]) * np.linalg.norm(b[j]))
                assert abs(cost[i, j] - (1 - cos)) < 1e-12
            else:
                assert cost[i, j] == math.inf


def test_eq8_balanced_targets_impose_both_marginals():
    """Eq. 8's plan has row sums 1/T1 and column sums 1/T2: the targets (rows × T1) give columns summing to T1/T2."""
    g = torch.Generator().manual_seed(3)
    z1 = torch.randn(2, 6, 5, generator=g)
    z2 = torch.randn(2, 6, 5, generator=g)
    v = torch.ones(2, 6, dtype=torch.bool)
    geo = window_geometry(v, v, 2)
    plan = to_dense(ot_targets(z1, z2, v, geo, reg=0.5, max_iter=5000, tol=1e-7), geo, 6) / 6  # A* (B, 6, 6)
    np.testing.assert_allclose(_np(plan.sum(2)), 1 / 6, atol=1e-6)  # a
    np.testing.assert_allclose(_np(plan.sum(1)), 1 / 6, atol=1e-5)  # b


def test_eq13_paper_fit_loss_by_hand():
    """L_fit = sqrt(Σ_i Σ_window (A*_ij - T̂_ij)^2) / ((2W+1) l) for one pair (l = 3, W = 1), ok cells only."""
    pred = torch.tensor([[[0.0, 0.6, 0.4], [0.2, 0.5, 0.3], [0.5, 0.5, 0.0]]], dtype=torch.float64)
    target = torch.tensor([[[0.0, 0.9, 0.1], [0.3, 0.3, 0.4], [0.2, 0.8, 0.0]]], dtype=torch.float64)
    ok = torch.tensor([[[False, True, True], [True, True, True], [True, True, False]]])
    sq = 0.3 ** 2 + 0.3 ** 2 + 0.1 ** 2 + 0.2 ** 2 + 0.1 ** 2 + 0.3 ** 2 + 0.3 ** 2
    assert abs(float(fit_loss(pred, target, ok, "paper")) - math.sqrt(sq + 1e-12) / (3 * 3)) < 1e-12
    assert abs(float(fit_loss(pred, target, ok, "mse")) - sq / 7) < 1e-12


def test_eq16_17_contrastive_loss_by_hand():
    """L_con = -1/N Σ_i log φ(s_i, t_i) / Σ_j φ(s_i, t_j), φ(s, t) = exp(s·t / τ) (dot) or exp(cos(s, t) / τ)."""
    s = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 2.0]])
    t = np.array([[0.8, 0.1], [0.3, 0.9], [-0.2, 1.0]])
    tau = 0.5

    def by_hand(score):
        total = 0.0
        for i in range(3):
            phi = [math.exp(score(s[i], t[j]) / tau) for j in range(3)]
            total += math.log(phi[i] / sum(phi))
        return -total / 3

    dot = lambda x, y: float(x @ y)  # noqa: E731
    cos = lambda x, y: float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))  # noqa: E731
    S, T = torch.tensor(s), torch.tensor(t)
    assert abs(float(contrastive_loss(S, T, tau, "dot", "mean")) - by_hand(dot)) < 1e-12
    assert abs(float(contrastive_loss(S, T, tau, "cosine", "mean")) - by_hand(cos)) < 1e-12
    assert abs(float(contrastive_loss(S, T, tau, "dot", "sum")) - 3 * by_hand(dot)) < 1e-12
