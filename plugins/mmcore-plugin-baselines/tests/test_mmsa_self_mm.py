"""``self_mm`` equals MMSA 2.2.1's Self-MM: its model after the text encoder, and its trainer's label generation.

MMSA's ``SELF_MM`` model reads text only through ``BertTextEncoder`` (pretrained bert-base-uncased, not available
offline); the test replaces it by a stub returning given features (``mmsa_reference.bert_output``) and sets
``text_out`` to their width instead of 768 (the test's only change to MMSA's configuration); the mmcore fuser gets
the same features as its text sequence. The unimodal label generation (ULGM) is MMSA's *trainer* state
(``trains/multiTask/SELF_MM.py``): the test builds MMSA's trainer object and runs the body of its ``do_train`` loop
(forward, ``weighted_loss`` over M/T/A/V, backward, ``update_labels`` from the second epoch, ``update_features``,
``update_centers``) batch by batch next to the mmcore pipeline parts, with the same SGD step on both sides, and
compares after every batch: the four predictions and features, the loss, every gradient, and MMSA's label, feature
and centre memories against the fuser's buffers.
"""

from __future__ import annotations

import types

import pytest
import torch

import mmsa_reference
from mmsa_reference import Args
from mmcore.batch import Batch
from mmcore.protocols import BuildContext, ModalityInfo
from mmcore_plugin_baselines import SelfMMFuser
from mmcore_plugin_baselines.mmsa_mapping import MMSA_NAME, from_mmsa
from mmcore_plugin_baselines.params import MmsaOutputParams, SelfMMParams

pytestmark = pytest.mark.skipif(mmsa_reference.mmsa_root() is None,
                                reason=f"MMSA 2.2.1 is not installed: {mmsa_reference.INSTALL}")

# float32 round-off of the same operations, a few SGD steps and label updates deep: ~1e-6 measured.
ATOL = RTOL = 1e-5
D, N, BATCH = 8, 10, 4  # feature width, train-set size, batch size (batches of 4, 4, 2)
LENGTHS = {"text": 5, "audio": 7, "vision": 6}
TAV = ["text", "audio", "vision"]
MODES = {"M": "fusion", "T": "text", "A": "audio", "V": "vision"}  # MMSA's task letters -> memory names
FEATURE = {"fusion": "Feature_f", "text": "Feature_t", "audio": "Feature_a", "vision": "Feature_v"}
# distinct widths everywhere, so a swapped block or head cannot pass
SIZES = dict(a_lstm_hidden_size=5, v_lstm_hidden_size=6, audio_out=4, video_out=3, post_fusion_dim=16,
             post_text_dim=8, post_audio_dim=6, post_video_dim=7)
DROPOUTS = dict(a_lstm_dropout=0.0, v_lstm_dropout=0.0, post_fusion_dropout=0.0, post_text_dropout=0.1,
                post_audio_dropout=0.1, post_video_dropout=0.0)  # MMSA's MOSI values
LR = 0.05


def _pair(names, train, seed=0):
    drop = {k: 0.0 for k in DROPOUTS} if train else dict(DROPOUTS)  # dropout draws cannot be compared
    args = Args(need_data_aligned=False, use_finetune=True, transformers="bert", pretrained="bert-base-uncased",
                feature_dims=(D, D, D), text_out=D, a_lstm_layers=1, v_lstm_layers=1, **SIZES, **drop)
    torch.manual_seed(seed)
    ref = mmsa_reference.load("SELF_MM", "multiTask")(args)
    mmsa_reference.randomise(ref, seed)
    params = SelfMMParams(lstm_hidden={"audio": 5, "vision": 6}, subnet_out={"audio": 4, "vision": 3},
                          post_fusion_dim=16, post_dims={"text": 8, "audio": 6, "vision": 7},
                          lstm_dropouts={"audio": drop["a_lstm_dropout"], "vision": drop["v_lstm_dropout"]},
                          post_fusion_dropout=drop["post_fusion_dropout"],
                          post_dropouts={m: drop[f"post_{MMSA_NAME[m]}_dropout"] for m in TAV})
    ctx = BuildContext(modalities={m: ModalityInfo(m, D, LENGTHS[m]) for m in names}, d_model=D)
    fuser = SelfMMFuser(params, ctx)
    head = mmsa_reference.with_mmsa_weights("self_mm", ref, fuser, ctx, MmsaOutputParams(), train)
    return ref, fuser, head


def _trainer():
    """MMSA's SELF_MM trainer object (its __init__ allocates the memories), metrics stubbed (never used here)."""
    mod = mmsa_reference.load_trainer("SELF_MM", "multiTask")
    mod.MetricsTop = lambda train_mode: types.SimpleNamespace(getMetics=lambda dataset: None)
    args = Args(train_mode="regression", dataset_name="mosi", train_samples=N, device="cpu", excludeZero=True,
                H=3.0, **{k: v for k, v in SIZES.items() if k.startswith("post_")})
    return mod.SELF_MM(args)


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = {"text": torch.full((N,), LENGTHS["text"]),
               "audio": torch.randint(1, LENGTHS["audio"] + 1, (N,), generator=g),
               "vision": torch.randint(1, LENGTHS["vision"] + 1, (N,), generator=g)}
    lengths["audio"][0], lengths["vision"][1] = LENGTHS["audio"], LENGTHS["vision"]  # one full row each
    valid = {m: torch.arange(LENGTHS[m]).unsqueeze(0) < n.unsqueeze(1) for m, n in lengths.items()}  # (N, T_m)
    x = {m: torch.randn(N, LENGTHS[m], D, generator=g) * valid[m].unsqueeze(-1) for m in TAV}
    y = (torch.rand(N, generator=g) * 5 - 2.5)
    y[3] = 0.0  # a zero label: in neither centre (excludeZero)
    return x, valid, lengths, y


def _mmsa_forward(ref, x, lengths, idx):
    tokens = torch.stack([torch.zeros(len(idx), LENGTHS["text"]), torch.ones(len(idx), LENGTHS["text"]),
                          torch.zeros(len(idx), LENGTHS["text"])], dim=1)  # (B, 3, T) ids / mask / segments
    mmsa_reference.bert_output(x["text"])
    try:
        return ref(tokens, (x["audio"], lengths["audio"][idx]), (x["vision"], lengths["vision"][idx]))
    finally:
        mmsa_reference.bert_output(None)


def _close(a, b, what):
    torch.testing.assert_close(a, b, atol=ATOL, rtol=RTOL, msg=lambda m: f"{what}: {m}")


def _sgd(params, lr):
    with torch.no_grad():
        for p in params:
            if p.grad is not None:
                p -= lr * p.grad
            p.grad = None


@pytest.mark.parametrize("names", [TAV, ["vision", "audio", "text"]], ids=["tav", "vat"])
def test_training_with_label_generation_equals_mmsa_trainer(names):
    """Three epochs of shuffled batches: outputs, loss, gradients and all ULGM memories after every batch."""
    ref, fuser, head = _pair(names, train=True)
    trainer = _trainer()
    X, valid, lengths, y = _data()
    trainer.init_labels(torch.arange(N), y)  # MMSA's pass over the train set before training
    g = torch.Generator().manual_seed(7)
    uni_terms = []
    for epoch in (1, 2, 3):
        order = torch.randperm(N, generator=g)
        for start in range(0, N, BATCH):
            idx = order[start:start + BATCH]
            # MMSA: do_train's loop body
            x = {m: X[m][idx].clone().requires_grad_() for m in TAV}
            outputs = _mmsa_forward(ref, x, lengths, idx)
            loss_ref = 0.0
            for t, mode in MODES.items():
                loss_ref += trainer.weighted_loss(outputs[t], trainer.label_map[mode][idx], indexes=idx, mode=mode)
            loss_ref.backward()
            f = {mode: outputs[FEATURE[mode]].detach() for t, mode in MODES.items()}
            if epoch > 1:
                trainer.update_labels(f["fusion"], f["text"], f["audio"], f["vision"], epoch, idx, outputs)
            trainer.update_features(f["fusion"], f["text"], f["audio"], f["vision"], idx)
            trainer.update_centers()
            # mmcore: the fuser sees the batch (accepts_batch) and runs the ULGM inside its forward
            x2 = {m: x[m].detach().clone().requires_grad_() for m in names}
            v2 = {m: valid[m][idx] for m in names}
            with torch.no_grad():
                net = fuser.outputs(x2, v2)  # dropout 0: the same values the forward below computes
            out = fuser(x2, v2, batch=Batch(features=x2, valid=v2, labels=y[idx], index=idx))
            pred = head(out.rep)
            loss = head.loss(pred, y[idx]) + out.aux["self_mm_unimodal"]  # weights 1 + 1 (registered default)
            loss.backward()
            uni_terms.append(float(out.aux["self_mm_unimodal"].detach()))
            where = f"epoch {epoch}, batch {idx.tolist()}"
            _close(pred, outputs["M"].reshape(-1).detach(), f"M ({where})")
            for t, mode in MODES.items():
                if mode != "fusion":
                    _close(net.preds[mode], outputs[t].reshape(-1).detach(), f"{t} ({where})")
                _close(net.features[mode], f[mode], f"{FEATURE[mode]} ({where})")
            _close(loss, loss_ref.detach(), f"loss ({where})")
            grads = {k: p.grad if p.grad is not None else torch.zeros_like(p) for k, p in ref.named_parameters()}
            f_grad, h_grad = from_mmsa("self_mm", grads, names)
            for mod, expected in ((fuser, f_grad), (head, h_grad)):
                for k, p in mod.named_parameters():
                    _close(p.grad, expected[k], f"grad {k} ({where})")
            for m in names:
                _close(x2[m].grad, x[m].grad, f"input grad {m} ({where})")
            seen = fuser.ulgm.seen > 0  # MMSA's memories hold every sample from the start; ours those seen
            assert int(seen.sum()) == min(N, (epoch - 1) * N + start + len(idx))
            for mode, mem in fuser.ulgm.memories.items():
                _close(mem.label[seen], trainer.label_map[mode][:len(seen)][seen], f"label_map[{mode}] ({where})")
                _close(mem.feature[seen], trainer.feature_map[mode][:len(seen)][seen], f"feature_map[{mode}] ({where})")
                if bool(seen.all()) and len(seen) == N:  # centres differ by design while samples are unseen
                    _close(mem.center_pos, trainer.center_map[mode]["pos"], f"pos centre {mode} ({where})")
                    _close(mem.center_neg, trainer.center_map[mode]["neg"], f"neg centre {mode} ({where})")
            _sgd(ref.parameters(), LR)
            _sgd(list(fuser.parameters()) + list(head.parameters()), LR)
    # the test exercised the generation: unimodal labels moved away from the fusion labels, and their loss is on
    labels = fuser.ulgm.memories
    assert max(float((labels[m].label - labels["fusion"].label).abs().max()) for m in TAV) > 0.1
    # epochs 1-2: a sample's labels are regenerated only after its loss in epoch 2, so every y^m = y^f and tanh(0) = 0
    # (MMSA's order); epoch 3 trains the unimodal heads on the generated labels
    assert max(uni_terms[:6]) == 0.0 and min(uni_terms[6:]) > 1e-3


def test_eval_mode_equals_mmsa_and_updates_nothing():
    """MMSA's dropouts, eval mode: the four predictions and features; the memories stay empty."""
    ref, fuser, head = _pair(TAV, train=False)
    X, valid, lengths, y = _data(seed=1)
    idx = torch.arange(6)
    x = {m: X[m][idx] for m in TAV}
    outputs = _mmsa_forward(ref, x, lengths, idx)
    v = {m: valid[m][idx] for m in TAV}
    net = fuser.outputs(x, v)
    out = fuser(x, v, batch=Batch(features=x, valid=v, labels=y[idx], index=idx))
    _close(head(out.rep), outputs["M"].reshape(-1), "M")
    for t, mode in MODES.items():
        if mode != "fusion":
            _close(net.preds[mode], outputs[t].reshape(-1), t)
        _close(net.features[mode], outputs[FEATURE[mode]], FEATURE[mode])
    assert outputs["M"].std() > 0.01  # varies across the batch: far above the tolerance
    assert float(out.aux["self_mm_unimodal"]) == 0.0 and fuser.ulgm.seen.numel() == 0


def test_memories_resume_from_a_checkpoint():
    """The ULGM state is in the state dict: a fresh fuser loaded from it continues exactly (same loss, labels)."""
    _, fuser, _ = _pair(TAV, train=True)
    X, valid, _, y = _data(seed=2)
    g = torch.Generator().manual_seed(3)

    def batch(idx):
        x = {m: X[m][idx] for m in TAV}
        v = {m: valid[m][idx] for m in TAV}
        return x, v, Batch(features=x, valid=v, labels=y[idx], index=idx)

    for _ in range(2):  # two epochs: the labels have been regenerated once
        for idx in torch.randperm(N, generator=g).split(BATCH):
            fuser(*batch(idx))
    state = {k: v.clone() for k, v in fuser.state_dict().items()}
    assert state["ulgm.seen"].tolist() == [2] * N
    _, fresh, _ = _pair(TAV, train=True)
    fresh.load_state_dict(state, strict=True)  # the fresh fuser's memories are empty: they take the saved size
    idx = torch.randperm(N, generator=g)[:BATCH]
    a, b = fuser(*batch(idx)).aux["self_mm_unimodal"], fresh(*batch(idx)).aux["self_mm_unimodal"]
    assert float(a.detach()) > 0 and torch.equal(a, b)
    for k, v in fuser.state_dict().items():
        assert torch.equal(v, fresh.state_dict()[k]), k
