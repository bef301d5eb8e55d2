"""``misa`` and its losses equal MMSA 2.2.1's MISA.

1. The three loss functions against MMSA's own loss classes (``trains/singleTask/MISA.py``: ``DiffLoss``,
   ``CMD``, ``MSE``): values and gradients.
2. The whole model after its text encoder: MMSA's ``MISA`` asserts ``use_bert`` and reads text only through
   ``BertTextEncoder`` (pretrained bert-base-uncased, not available offline). The test replaces that encoder by
   a stub returning given features (``mmsa_reference.bert_output``) and gives ``project_t`` an input width of d
   instead of 768 (its only change to MMSA's module); the mmcore fuser receives the same features as its text
   sequence. Predictions, the three losses assembled by MMSA's trainer methods (``get_diff_loss``,
   ``get_cmd_loss``, ``get_recon_loss``), and the gradients of MMSA's objective agree in float32.
   BERT itself is not compared: in mmcore it would be the text encoder of the pipeline.
"""

from __future__ import annotations

import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mmsa_reference
from mmsa_reference import Args
from mmcore.protocols import BuildContext, ModalityInfo
from mmcore_plugin_baselines import MISAFuser
from mmcore_plugin_baselines.misa_losses import cmd, difference_loss, reconstruction_loss
from mmcore_plugin_baselines.params import MISAParams, MmsaOutputParams

pytestmark = pytest.mark.skipif(mmsa_reference.mmsa_root() is None,
                                reason=f"MMSA 2.2.1 is not installed: {mmsa_reference.INSTALL}")

# float32 round-off of the same operations (sums of the loss terms in another order): ~1e-7 relative.
ATOL = RTOL = 1e-5
B, T, D, H = 6, 5, 8, 16
TAV = ["text", "audio", "vision"]
WEIGHTS = {"misa_diff": 0.1, "misa_cmd": 0.3, "misa_recon": 1.0}  # MMSA mosi diff/sim/recon_weight


@pytest.fixture(scope="module")
def mmsa_losses():
    return mmsa_reference.load_trainer("MISA")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loss_functions_equal_mmsa_classes(mmsa_losses, seed):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(7, 12, generator=g) * (seed + 0.5) + seed).requires_grad_()
    y = torch.sigmoid(torch.randn(7, 12, generator=g) * 2).requires_grad_()
    pairs = [(difference_loss(x, y), mmsa_losses.DiffLoss()(x, y)),
             (cmd(x, y, 5), mmsa_losses.CMD()(x, y, 5)),
             (cmd(y, x, 3), mmsa_losses.CMD()(y, x, 3)),
             (reconstruction_loss(x, y), mmsa_losses.MSE()(x, y))]
    for ours, theirs in pairs:
        torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=RTOL)
        g_ours = torch.autograd.grad(ours, (x, y))
        g_theirs = torch.autograd.grad(theirs, (x, y))
        for a, b in zip(g_ours, g_theirs):
            torch.testing.assert_close(a, b, atol=ATOL, rtol=RTOL)


def test_difference_loss_is_zero_for_orthogonal_codes_and_symmetric():
    x = torch.tensor([[1.0], [-1.0], [1.0], [-1.0]])  # centred features whose batch vectors are orthogonal
    y = torch.tensor([[1.0], [1.0], [-1.0], [-1.0]])
    assert difference_loss(x, y) == 0
    assert difference_loss(x, x) > 0.9  # and a code against itself: (4 / (1 + 1e-6)^2)^2 / 16
    z, w = torch.randn(5, 3), torch.randn(5, 4)
    torch.testing.assert_close(difference_loss(z, w), difference_loss(w, z), atol=1e-7, rtol=1e-6)


def test_cmd_of_a_batch_with_itself_is_zero():
    z = torch.randn(9, 4)
    assert cmd(z, z, 5) == 0


def _pair(names, train, seed=0):
    args = Args(feature_dims=(D, D, D), train_mode="regression", num_classes=1, use_bert=True, use_finetune=False,
                transformers="bert", pretrained="bert-base-uncased", rnncell="lstm", use_cmd_sim=True,
                hidden_size=H, dropout=0.0 if train else 0.2)
    torch.manual_seed(seed)
    ref = mmsa_reference.load("MISA")(args)
    ref.project_t.project_t = nn.Linear(D, H)  # the stub BERT gives d features, not 768
    if train:  # MMSA's transformer layer has torch's fixed dropout 0.1; 0 so that train-mode passes match
        for mod in ref.modules():
            if isinstance(mod, nn.Dropout):
                mod.p = 0.0
            if isinstance(mod, nn.MultiheadAttention):  # its attention dropout is a float, not a module
                mod.dropout = 0.0
    mmsa_reference.randomise(ref, seed)
    params = MISAParams(hidden_size=H, dropout=0.0 if train else 0.2, transformer_dropout=0.0 if train else 0.1)
    ctx = BuildContext(modalities={m: ModalityInfo(m, D, T) for m in names}, d_model=D)
    fuser = MISAFuser(params, ctx)
    head = mmsa_reference.with_mmsa_weights("misa", ref, fuser, ctx, MmsaOutputParams(loss="mse"), train)
    return ref, fuser, head


def _mmsa_terms(ref):
    """MMSA's trainer methods, run on MMSA's model (they read the codes it stores on itself)."""
    trainer_mod = mmsa_reference.load_trainer("MISA")
    trainer = trainer_mod.MISA.__new__(trainer_mod.MISA)
    trainer.args = Args(use_cmd_sim=True)
    trainer.model = types.SimpleNamespace(Model=ref)
    trainer.loss_diff, trainer.loss_cmd, trainer.loss_recon = trainer_mod.DiffLoss(), trainer_mod.CMD(), trainer_mod.MSE()
    return {"misa_diff": trainer.get_diff_loss(), "misa_cmd": trainer.get_cmd_loss(),
            "misa_recon": trainer.get_recon_loss()}


def _run_both(names, train, seed=0, lengths=None):
    ref, fuser, head = _pair(names, train, seed)
    g = torch.Generator().manual_seed(seed)
    n = torch.tensor(lengths or [T] * B)
    valid = torch.arange(T).unsqueeze(0) < n.unsqueeze(1)  # (B, T), the same for every modality (aligned)
    x = {m: (torch.randn(B, T, D, generator=g) * valid.unsqueeze(-1)).requires_grad_() for m in TAV}
    y = torch.randn(B, generator=g)
    tokens = torch.stack([torch.zeros(B, T), valid.float(), torch.zeros(B, T)], dim=1)  # (B, 3, T) ids/mask/types
    mmsa_reference.bert_output(x["text"])
    try:
        y_ref = ref(tokens, x["audio"], x["vision"])["M"].reshape(-1)
    finally:
        mmsa_reference.bert_output(None)
    theirs = {"task": F.mse_loss(y_ref, y), **_mmsa_terms(ref)}  # MMSA's criterion: MSELoss
    x2 = {m: x[m].detach().clone().requires_grad_() for m in names}
    out = fuser(x2, {m: valid for m in names})
    y_ours = head(out.rep)
    ours = {"task": head.loss(y_ours, y), **out.aux}
    return ref, fuser, head, x, x2, (y_ref, theirs), (y_ours, ours)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_model_after_the_text_encoder_equals_mmsa(train):
    ref, fuser, head, x, x2, (y_ref, theirs), (y_ours, ours) = _run_both(TAV, train)
    assert y_ref.std() > 0.005  # varies across the batch (0.03 train, 0.0095 eval here): 1000x the tolerance
    torch.testing.assert_close(y_ours, y_ref, atol=ATOL, rtol=RTOL)
    for k in theirs:
        torch.testing.assert_close(ours[k], theirs[k], atol=ATOL, rtol=RTOL, msg=lambda m: f"{k}: {m}")
    (theirs["task"] + sum(WEIGHTS[k] * theirs[k] for k in WEIGHTS)).backward()
    (ours["task"] + sum(WEIGHTS[k] * ours[k] for k in WEIGHTS)).backward()
    mmsa_reference.assert_grads_equal_mmsa("misa", ref, fuser, head, TAV, atol=ATOL, rtol=RTOL, inputs=(x2, x))


def test_another_modality_order_gives_the_same_model():
    *_, (y_ref, theirs), (y_ours, ours) = _run_both(["vision", "audio", "text"], train=False)
    torch.testing.assert_close(y_ours, y_ref, atol=ATOL, rtol=RTOL)
    for k in theirs:
        torch.testing.assert_close(ours[k], theirs[k], atol=ATOL, rtol=RTOL)


def test_padded_rows_equal_mmsa():
    """MMSA's MISA packs its LSTMs by length (the text mask's), so padded rows must agree as they are."""
    *_, (y_ref, theirs), (y_ours, ours) = _run_both(TAV, train=False, lengths=[T, T - 1, 3, 1, 2, T])
    torch.testing.assert_close(y_ours, y_ref, atol=ATOL, rtol=RTOL)
    for k in theirs:
        torch.testing.assert_close(ours[k], theirs[k], atol=ATOL, rtol=RTOL)
