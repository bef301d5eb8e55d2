"""``mfm`` equals MMSA 2.2.1's ``MFM``: same weights (through ``mmsa_mapping``), same batch, same prior samples ->
same prediction, L1 loss, reconstruction loss (``gen_loss``), MMD loss, and the gradients of MMSA's training
objective L1 + gen_loss + lda_mmd · mmd, in float32.

MMSA draws the MMD's prior samples from torch's global generator (in the order text, audio, vision, z_y); so
does the fuser, so both passes start from the same ``torch.manual_seed``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import mmsa_reference
from mmsa_reference import Args
from mmcore.protocols import BuildContext, ModalityInfo
from mmcore_plugin_baselines import MFMFuser
from mmcore_plugin_baselines.mfm import prior_mmd
from mmcore_plugin_baselines.params import MFMParams, MmsaOutputParams

pytestmark = pytest.mark.skipif(mmsa_reference.mmsa_root() is None,
                                reason=f"MMSA 2.2.1 is not installed: {mmsa_reference.INSTALL}")

# float32 round-off of the same operations in the same order (a masked mean instead of F.mse_loss's mean):
# ~1e-7 relative; 1e-5 is the bar.
ATOL = RTOL = 1e-5
B, T, D = 4, 6, 8
TAV = ["text", "audio", "vision"]
LDA_MMD = 100.0  # MMSA mfm/mosi lda_mmd: the registered default weight of mfm_mmd

# MMSA's config_regression.json, mfm / mosi: the defaults of MFMParams
MMSA_MOSI = dict(hidden_dims=(128, 32, 128), zy_size=80, zl_size=64, za_size=80, zv_size=80, fy_size=64, fl_size=32,
                 fa_size=16, fv_size=64, zy_to_fy_dropout=0.5, zl_to_fl_dropout=0.5, za_to_fa_dropout=0.7,
                 zv_to_fv_dropout=0.5, fy_to_y_dropout=0.0, lda_mmd=LDA_MMD, lda_xl=0.5, lda_xa=0.01, lda_xv=0.5,
                 memsize=64, windowsize=2, NN1Config={"drop": 0.7, "shapes": 32}, NN2Config={"drop": 0.0, "shapes": 64},
                 gamma1Config={"drop": 0.0, "shapes": 32}, gamma2Config={"drop": 0.5, "shapes": 64},
                 outConfig={"drop": 0.2, "shapes": 128})


def _no_dropout(args):
    a = {k: (0.0 if k.endswith("_dropout") else v) for k, v in args.items()}
    for k in ("NN1Config", "NN2Config", "gamma1Config", "gamma2Config", "outConfig"):
        a[k] = {**a[k], "drop": 0.0}
    return a


def _params(train, detach):
    p = MFMParams(detach_targets=detach)
    if train:
        p = p.model_copy(update=dict(att1_dropout=0.0, gamma2_dropout=0.0, fy_dropout=0.0,
                                     f_dropouts={m: 0.0 for m in TAV}))
    return p


def _pair(names, train, detach=True, seed=0):
    args = _no_dropout(MMSA_MOSI) if train else MMSA_MOSI
    torch.manual_seed(seed)
    ref = mmsa_reference.load("MFM")(Args(feature_dims=(D, D, D), train_mode="regression", num_classes=1,
                                          device="cpu", **args))
    mmsa_reference.randomise(ref, seed)
    ctx = BuildContext(modalities={m: ModalityInfo(m, D, T) for m in names}, d_model=D)
    params = _params(train, detach)
    fuser = MFMFuser(params, ctx)
    head = mmsa_reference.with_mmsa_weights("mfm", ref, fuser, ctx, MmsaOutputParams(), train, dict(params.hidden_dims))
    return ref, fuser, head


def _batch(seed):
    g = torch.Generator().manual_seed(seed)
    x = {m: torch.randn(B, T, D, generator=g) for m in TAV}
    return x, {m: torch.ones(B, T, dtype=torch.bool) for m in TAV}, torch.randn(B, generator=g) * 2


def _run_both(names, train, detach=True, seed=0):
    ref, fuser, head = _pair(names, train, detach, seed)
    x, valid, y = _batch(seed)
    x = {m: x[m].requires_grad_() for m in TAV}
    torch.manual_seed(123)
    y_ref, gen_ref, mmd_ref, _ = ref(x["text"], x["audio"], x["vision"])
    y_ref = y_ref.squeeze(1)
    l1_ref = F.l1_loss(y_ref, y)  # MMSA's MFM trainer: L1Loss(pred.squeeze(1), labels)
    x2 = {m: x[m].detach().clone().requires_grad_() for m in names}
    torch.manual_seed(123)
    out = fuser(x2, {m: valid[m] for m in names})
    y_ours = head(out.rep)
    ref_terms = (y_ref, l1_ref, gen_ref, mmd_ref)
    our_terms = (y_ours, head.loss(y_ours, y), out.aux["mfm_reconstruction"], out.aux["mfm_mmd"])
    return ref, fuser, head, x, x2, ref_terms, our_terms


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("detach", [True, False], ids=["detached_targets", "attached_targets"])
def test_outputs_losses_and_gradients_equal_mmsa(train, detach):
    ref, fuser, head, x, x2, theirs, ours = _run_both(TAV, train, detach)
    assert theirs[0].std() > 0.05  # a prediction that varies across the batch (0.094 here), so a wrong mapping cannot hide
    for what, a, b in zip(("prediction", "l1", "reconstruction", "mmd"), ours, theirs):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=RTOL, msg=lambda m: f"{what}: {m}")
    (theirs[1] + theirs[2] + LDA_MMD * theirs[3]).backward()
    (ours[1] + ours[2] + LDA_MMD * ours[3]).backward()
    # MMSA's targets are its inputs: with attached targets the input gradients agree too
    mmsa_reference.assert_grads_equal_mmsa("mfm", ref, fuser, head, TAV, dict(MFMParams().hidden_dims), atol=ATOL,
                                           rtol=RTOL, inputs=None if detach else (x2, x))


def test_another_modality_order_gives_the_same_prediction():
    *_, theirs, ours = _run_both(["vision", "text", "audio"], train=False)
    torch.testing.assert_close(ours[0], theirs[0], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(ours[2], theirs[2], atol=ATOL, rtol=RTOL)  # reconstruction: order-free


def test_prior_mmd_equals_mmsa_loss_mmd():
    """The kernel alone, on codes far from and close to the prior (MMSA's loss_MMD draws its own samples)."""
    mfm = mmsa_reference.load("MFM").__module__
    loss_mmd = __import__(mfm, fromlist=["loss_MMD"]).loss_MMD
    g = torch.Generator().manual_seed(0)
    for scale in (0.1, 1.0, 3.0):
        z = torch.randn(16, 12, generator=g) * scale + scale
        torch.manual_seed(7)
        expected = loss_mmd(z, Args(device="cpu"))
        torch.manual_seed(7)
        torch.testing.assert_close(prior_mmd(z, torch.randn(z.shape)), expected, atol=ATOL, rtol=RTOL)
    assert prior_mmd(z, z).abs() < 1e-6  # MMD(z, z) = 0


def test_padded_rows_equal_mmsa_on_the_unpadded_row():
    """Deviation check: a padded row gives MMSA's prediction, reconstruction and MMD losses for that row without
    its padding (eval mode; one row per pass, so that the losses are the row's)."""
    ref, fuser, head = _pair(TAV, train=False)
    lengths = [T, T - 1, 3, 1]
    x, _, _ = _batch(1)
    valid = {m: torch.arange(T).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1) for m in TAV}
    x = {m: x[m] * valid[m].unsqueeze(-1) for m in TAV}
    with torch.no_grad():
        for b, n in enumerate(lengths):
            torch.manual_seed(5)
            out = fuser({m: x[m][b:b + 1] for m in TAV}, {m: valid[m][b:b + 1] for m in TAV})
            torch.manual_seed(5)
            y, gen, mmd, _ = ref(*(x[m][b:b + 1, :n] for m in TAV))
            torch.testing.assert_close(head(out.rep), y.reshape(-1), atol=ATOL, rtol=RTOL)
            torch.testing.assert_close(out.aux["mfm_reconstruction"], gen, atol=ATOL, rtol=RTOL)
            torch.testing.assert_close(out.aux["mfm_mmd"], mmd, atol=ATOL, rtol=RTOL)
