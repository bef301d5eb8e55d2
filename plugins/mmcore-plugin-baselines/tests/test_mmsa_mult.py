"""``mmsa_mult`` equals MMSA 2.2.1's ``MULT`` (non-BERT path): same weights (through ``mmsa_mapping``), same
unaligned batch -> same predictions, L1 loss, parameter and input gradients, in float32.

MMSA's MulT reads unaligned sequences, so the modalities here have different lengths (text 9, audio 12,
vision 7); MMSA takes no masks, so the equality batches are full-length and padding is checked row by row.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import mmsa_reference
from mmsa_reference import Args
from mmcore.protocols import BuildContext, ModalityInfo
from mmcore_plugin_baselines import MmsaMultFuser
from mmcore_plugin_baselines.params import MmsaMultParams, MmsaOutputParams

pytestmark = pytest.mark.skipif(mmsa_reference.mmsa_root() is None,
                                reason=f"MMSA 2.2.1 is not installed: {mmsa_reference.INSTALL}")

# float32 round-off: the same operations, batch-first instead of time-first and Q/K/V projected separately
# instead of from one packed matmul, so they agree to ~1e-7 relative; 1e-5 is the bar.
ATOL = RTOL = 1e-5
B, D = 4, 8
LENS = {"text": 9, "audio": 12, "vision": 7}
TAV = ["text", "audio", "vision"]

# MMSA's config_regression.json, mult / mosi (non-BERT): the defaults of MmsaMultParams
MMSA_MOSI = dict(dst_feature_dim_nheads=(50, 10), nlevels=4, conv1d_kernel_size_l=5, conv1d_kernel_size_a=5,
                 conv1d_kernel_size_v=5, attn_dropout=0.3, attn_dropout_a=0.2, attn_dropout_v=0.0, relu_dropout=0.0,
                 embed_dropout=0.2, res_dropout=0.0, output_dropout=0.5, text_dropout=0.5, attn_mask=True)
DROPOUTS = ("attn_dropout", "attn_dropout_a", "attn_dropout_v", "relu_dropout", "embed_dropout", "res_dropout",
            "output_dropout", "text_dropout")
# d_model == dst_dim: MMSA skips the temporal convolutions; 2 heads keep the head width 4
NO_CONV = dict(MMSA_MOSI, dst_feature_dim_nheads=(D, 2))


def _params(args, train):
    dst, heads = args["dst_feature_dim_nheads"]
    p = MmsaMultParams(dst_dim=dst, heads=heads, layers=args["nlevels"])
    if train:
        p = p.model_copy(update=dict(input_dropouts={}, attn_dropouts={}, mem_attn_dropout=0.0, embed_dropout=0.0,
                                     relu_dropout=0.0, res_dropout=0.0, output_dropout=0.0))
    return p


def _pair(args, names, train, seed=0):
    if train:  # dropout 0 on both sides, so the train-mode passes are deterministic
        args = {**args, **{k: 0.0 for k in DROPOUTS}}
    torch.manual_seed(seed)
    ref = mmsa_reference.load("MULT")(Args(feature_dims=(D, D, D), train_mode="regression", num_classes=1,
                                           use_bert=False, **args))
    mmsa_reference.randomise(ref, seed)
    ctx = BuildContext(modalities={m: ModalityInfo(m, D, LENS[m]) for m in names}, d_model=D)
    fuser = MmsaMultFuser(_params(args, train), ctx)
    head = mmsa_reference.with_mmsa_weights("mmsa_mult", ref, fuser, ctx, MmsaOutputParams(), train)
    return ref, fuser, head


def _batch(seed, cut=None):
    """Full-length unaligned sequences; ``cut[b]`` steps of padding at the end of row b (every modality)."""
    g = torch.Generator().manual_seed(seed)
    cut = cut or [0] * B
    x, valid = {}, {}
    for m in TAV:
        n = torch.tensor([LENS[m] - c for c in cut])
        valid[m] = torch.arange(LENS[m]).unsqueeze(0) < n.unsqueeze(1)  # (B, T_m)
        x[m] = torch.randn(B, LENS[m], D, generator=g) * valid[m].unsqueeze(-1)
    return x, valid, torch.randn(B, generator=g) * 2


def _run_both(args, names, train, seed=0):
    ref, fuser, head = _pair(args, names, train, seed)
    x, valid, y = _batch(seed)
    x = {m: x[m].requires_grad_() for m in TAV}
    y_ref = ref(x["text"], x["audio"], x["vision"])["M"].reshape(-1)  # (B,)
    loss_ref = F.l1_loss(y_ref, y)  # MMSA's criterion for regression: nn.L1Loss
    x2 = {m: x[m].detach().clone().requires_grad_() for m in names}
    y_ours = head(fuser(x2, {m: valid[m] for m in names}).rep)
    return ref, fuser, head, (x, y_ref, loss_ref), (x2, y_ours, head.loss(y_ours, y))


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("config", ["mosi", "no_conv"])
def test_outputs_loss_and_gradients_equal_mmsa(config, train):
    args = MMSA_MOSI if config == "mosi" else NO_CONV
    ref, fuser, head, (x, y_ref, loss_ref), (x2, y_ours, loss_ours) = _run_both(args, TAV, train)
    assert y_ref.std() > 0.1  # a prediction that varies across the batch, so a wrong mapping cannot hide
    torch.testing.assert_close(y_ours, y_ref, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(loss_ours, loss_ref, atol=ATOL, rtol=RTOL)
    loss_ref.backward()
    loss_ours.backward()
    mmsa_reference.assert_grads_equal_mmsa("mmsa_mult", ref, fuser, head, TAV, atol=ATOL, rtol=RTOL, inputs=(x2, x))


def test_another_modality_order_gives_the_same_model():
    """The mapping permutes the memory transformers' channel blocks and the output block."""
    names = ["vision", "text", "audio"]
    *_, (_, y_ref, _), (_, y_ours, _) = _run_both(MMSA_MOSI, names, train=False)
    torch.testing.assert_close(y_ours, y_ref, atol=ATOL, rtol=RTOL)


def test_padded_rows_equal_mmsa_on_the_unpadded_row():
    """Deviation check: a padded row gives what MMSA gives for that row without its padding (eval mode);
    the rows keep at least the kernel's 5 steps, which MMSA needs."""
    ref, fuser, head = _pair(MMSA_MOSI, TAV, train=False)
    cut = [0, 1, 2, 2]
    x, valid, _ = _batch(1, cut)
    with torch.no_grad():
        ours = head(fuser(x, valid).rep)
        for b, c in enumerate(cut):
            row = {m: x[m][b:b + 1, :LENS[m] - c] for m in TAV}
            expected = ref(row["text"], row["audio"], row["vision"])["M"].reshape(-1)
            torch.testing.assert_close(ours[b:b + 1], expected, atol=ATOL, rtol=RTOL)


def test_dropout_rates_equal_mmsa():
    """Dropout draws cannot be compared, so the rates are, module by module (MMSA's MOSI defaults)."""
    ref, fuser, _ = _pair(MMSA_MOSI, TAV, train=False)
    short = {"text": "l", "audio": "a", "vision": "v"}
    for key, ours in list(fuser.cross.items()) + [(f"{t}_mem", net) for t, net in fuser.mem.items()]:
        t, _, s = key.partition("_with_")
        theirs = getattr(ref, f"trans_{short[t]}_with_{short[s]}" if s else f"trans_{short[key[:-4]]}_mem")
        assert ours.embed_dropout == theirs.dropout, key
        for mine, their in zip(ours.layers, theirs.layers, strict=True):
            assert mine.self_attn.attn_dropout == their.self_attn.attn_dropout, key
            assert (mine.relu_dropout, mine.res_dropout) == (their.relu_dropout, their.res_dropout), key
    assert fuser.input_dropouts == {"text": ref.text_dropout, "audio": 0.0, "vision": 0.0}
    assert fuser.output_dropout == ref.output_dropout
