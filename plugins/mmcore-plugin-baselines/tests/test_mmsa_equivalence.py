"""Each baseline equals MMSA 2.2.1's implementation: same weights (copied through ``mmsa_mapping``), same batch
-> same outputs, task loss and gradients, in float32.

MMSA is a test-only reference; install it with ``pip install -c constraints.txt --no-deps mmsa==2.2.1`` (its
declared dependencies pull transformers and more, which its model files do not need). Without it these tests
skip and say so.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import mmsa_reference
from mmsa_reference import Args
from mmcore.protocols import BuildContext, ModalityInfo
from mmcore_plugin_baselines import EFLSTMFuser, LFDNNFuser, LMFFuser, MFNFuser, TFNFuser
from mmcore_plugin_baselines.mmsa_mapping import MMSA_NAME
from mmcore_plugin_baselines.params import (EFLSTMParams, LFDNNParams, LMFParams, MFNParams, MmsaOutputParams,
                                            TFNParams)

pytestmark = pytest.mark.skipif(mmsa_reference.mmsa_root() is None,
                                reason=f"MMSA 2.2.1 is not installed: {mmsa_reference.INSTALL}")

# float32 round-off: the two graphs do the same operations, at most in another order (LMF's product over
# modalities, permuted columns in a matmul), so they agree to ~1e-7 relative; 1e-5 is the bar.
ATOL = RTOL = 1e-5
B, T, D = 4, 6, 8
TAV = ["text", "audio", "vision"]


def _ctx(names, T_len=T):
    return BuildContext(modalities={m: ModalityInfo(m, D, T_len) for m in names}, d_model=D)


def _batch(seed, lengths=None):
    g = torch.Generator().manual_seed(seed)
    x = {m: torch.randn(B, T, D, generator=g) for m in TAV}
    n = torch.tensor(lengths or [T] * B)
    valid = {m: torch.arange(T).unsqueeze(0) < n.unsqueeze(1) for m in TAV}
    x = {m: x[m] * valid[m].unsqueeze(-1) for m in TAV}  # MMSA's padding is zeros
    return x, valid, torch.randn(B, generator=g) * 2


def _mmsa_inputs(model, x, pooled):
    """MMSA's data loader averages audio/vision over time for TFN, LMF, LF-DNN (``need_normalized``)."""
    a, v = x["audio"], x["vision"]
    if pooled:
        a, v = a.mean(1, keepdim=True), v.mean(1, keepdim=True)
    return x["text"], a, v


CASES = {
    # name: (MMSA class, MMSA args, our fuser class, params, head params, MMSA input is time-averaged)
    "tfn": ("TFN", dict(hidden_dims=(128, 32, 128), text_out=32, post_fusion_dim=64, dropouts=(0.3, 0.3, 0.3, 0.5)),
            TFNFuser, TFNParams(), MmsaOutputParams(output_range=(-3.0, 3.0)), True),
    "lmf": ("LMF", dict(hidden_dims=(128, 16, 128), dropouts=(0.3, 0.3, 0.3, 0.3), rank=3),
            LMFFuser, LMFParams(), MmsaOutputParams(linear=False), True),
    "lf_dnn": ("LF_DNN", dict(hidden_dims=(128, 16, 128), text_out=256, post_fusion_dim=128,
                              dropouts=(0.2, 0.2, 0.2, 0.2)),
               LFDNNFuser, LFDNNParams(), MmsaOutputParams(), True),
    "ef_lstm": ("EF_LSTM", dict(hidden_dims=128, num_layers=4, dropout=0.5, seq_lens=T),
                EFLSTMFuser, EFLSTMParams(), MmsaOutputParams(dropout=0.5), False),
    "mfn": ("MFN", dict(hidden_dims=(256, 32, 256), memsize=400, windowsize=2, NN1Config={"drop": 0.2, "shapes": 32},
                        NN2Config={"drop": 0.0, "shapes": 64}, gamma1Config={"drop": 0.7, "shapes": 256},
                        gamma2Config={"drop": 0.5, "shapes": 32}, outConfig={"drop": 0.0, "shapes": 128}),
            MFNFuser, MFNParams(), MmsaOutputParams(), False),
}


def _no_dropout(params, kind):
    """The same config with every dropout 0, so train-mode forward passes (BatchNorm on batch statistics) match."""
    zero = {k: 0.0 for k, f in type(params).model_fields.items() if "dropout" in k and isinstance(getattr(params, k), float)}
    if "dropouts" in type(params).model_fields:
        zero["dropouts"] = {m: 0.0 for m in params.dropouts}
    return params.model_copy(update=zero)


def _mmsa_no_dropout(args):
    a = dict(args)
    if "dropouts" in a:
        a["dropouts"] = (0.0,) * 4
    if "dropout" in a:
        a["dropout"] = 0.0
    for k in ("NN1Config", "NN2Config", "gamma1Config", "gamma2Config", "outConfig"):
        if k in a:
            a[k] = {**a[k], "drop": 0.0}
    return a


def _widths(name, params, names):
    if name == "tfn":
        return {m: params.lstm_out if m in params.sequence_modalities else params.hidden_dims[m] for m in names}
    if name == "lf_dnn":
        return {m: params.lstm_out if m in params.sequence_modalities else params.hidden_dims[m] for m in names}
    if name == "mfn":
        return {m: params.hidden_dims[m] for m in names}
    return None


def _pair(name, names, train, seed=0):
    cls_name, args, fuser_cls, params, head_params, pooled = CASES[name]
    if train:
        args, params, head_params = _mmsa_no_dropout(args), _no_dropout(params, "fuser"), _no_dropout(head_params, "head")
    torch.manual_seed(seed)
    ref = mmsa_reference.load(cls_name)(Args(feature_dims=(D, D, D), train_mode="regression", num_classes=1, **args))
    mmsa_reference.randomise(ref, seed)
    ctx = _ctx(names)
    fuser = fuser_cls(params, ctx)
    head = mmsa_reference.with_mmsa_weights(name, ref, fuser, ctx, head_params, train, _widths(name, params, names), d=D)
    return ref, fuser, head, pooled


def _run_both(name, names, train, seed=0):
    ref, fuser, head, pooled = _pair(name, names, train, seed)
    x, valid, y = _batch(seed)
    x = {m: x[m].requires_grad_() for m in TAV}
    y_ref = ref(*_mmsa_inputs(name, x, pooled))["M"].reshape(-1)  # (B,)
    loss_ref = F.l1_loss(y_ref, y)  # MMSA's criterion: nn.L1Loss on (B, 1) outputs and labels
    x2 = {m: x[m].detach().clone().requires_grad_() for m in names}
    y_ours = head(fuser.forward({m: x2[m] for m in names}, {m: valid[m] for m in names}).rep)
    loss_ours = head.loss(y_ours, y)
    return ref, fuser, head, (x, y_ref, loss_ref), (x2, y_ours, loss_ours), names


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_outputs_loss_and_gradients_equal_mmsa(name, train):
    names = TAV
    ref, fuser, head, (x, y_ref, loss_ref), (x2, y_ours, loss_ours), _ = _run_both(name, names, train)
    torch.testing.assert_close(y_ours, y_ref, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(loss_ours, loss_ref, atol=ATOL, rtol=RTOL)
    loss_ref.backward()
    loss_ours.backward()
    mmsa_reference.assert_grads_equal_mmsa(name, ref, fuser, head, names, _widths(name, CASES[name][3], names), d=D,
                                           atol=ATOL, rtol=RTOL, inputs=(x2, x))  # input gradients too


@pytest.mark.parametrize("name", ["tfn", "lf_dnn", "ef_lstm", "mfn"])
def test_another_modality_order_gives_the_same_model(name):
    """The mapping permutes the fused weights, so the spec's modality order does not matter."""
    names = ["vision", "text", "audio"]
    _, _, _, (_, y_ref, _), (_, y_ours, _), _ = _run_both(name, names, train=False)
    torch.testing.assert_close(y_ours, y_ref, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("name", ["tfn", "lmf", "lf_dnn", "mfn"])
def test_padded_rows_equal_mmsa_on_the_unpadded_row(name):
    """Deviation check: a padded row gives what MMSA gives for that row without its padding (eval mode).

    EF-LSTM is left out: its BatchNorm has one channel per time step, so MMSA cannot run a shorter row.
    """
    ref, fuser, head, pooled = _pair(name, TAV, train=False)
    lengths = [T, T - 1, 3, 1]
    x, valid, _ = _batch(1, lengths)
    with torch.no_grad():
        ours = head(fuser(x, valid).rep)
        for b, n in enumerate(lengths):
            row = {m: x[m][b:b + 1, :n] for m in TAV}
            expected = ref(*_mmsa_inputs(name, row, pooled))["M"].reshape(-1)
            torch.testing.assert_close(ours[b:b + 1], expected, atol=ATOL, rtol=RTOL)


def test_mapping_names_the_mmsa_modalities():
    assert MMSA_NAME == {"text": "text", "audio": "audio", "vision": "video"}
