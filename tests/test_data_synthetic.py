"""The synthetic dataset: shapes, prefix masks, determinism, and the structure of its label."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmcore.data.params import SyntheticParams
from mmcore.data.synthetic import VOCAB_POLARITY, SyntheticDataset
from mmcore.errors import DataError

MODS = ["text", "audio", "vision"]


@pytest.fixture(scope="module")
def ds() -> SyntheticDataset:
    return SyntheticDataset(SyntheticParams(n_train=1024), MODS, seed=0)


def corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(np.corrcoef(a.double().numpy(), b.double().numpy())[0, 1])


def test_shapes_dtypes_and_info(ds):
    p = ds.params
    for name, n in (("train", 1024), ("valid", p.n_valid), ("test", p.n_test)):
        sp = ds.splits[name]
        assert len(sp) == n and sp.labels.dtype == torch.float32
        for m in MODS:
            assert sp.features[m].shape == (n, p.lengths[m], p.dims[m]) and sp.features[m].dtype == torch.float32
            assert sp.valid[m].shape == (n, p.lengths[m]) and sp.missing[m].shape == (n,)
    assert ds.info.metric_set == "mosi" and ds.info.dims == p.dims and ds.info.lengths == p.lengths
    y = ds.splits["train"].labels
    assert y.min() >= -3 and y.max() <= 3 and (y == 0).any(), "MOSI-like range with exact zeros"


def test_valid_masks_are_prefixes_with_a_token_and_zero_padding(ds):
    for sp in ds.splits.values():
        for m in MODS:
            v = sp.valid[m]
            assert (v.sum(1) >= 1).all()
            assert torch.equal(v, torch.arange(v.shape[1])[None, :] < v.sum(1, keepdim=True))
            assert (sp.features[m][~v] == 0).all()
            assert (sp.features[m][v].abs().sum(-1) > 0).all()


def test_data_seed_alone_decides_the_draw():
    p = SyntheticParams(n_train=32, n_valid=8, n_test=8)
    a, b = (SyntheticDataset(p, MODS, seed=s) for s in (5, 6))  # pipeline seeds differ: same data
    assert torch.equal(a.splits["train"].features["audio"], b.splits["train"].features["audio"])
    assert torch.equal(a.splits["test"].labels, b.splits["test"].labels)
    c = SyntheticDataset(p.model_copy(update={"data_seed": 1}), MODS, seed=5)
    assert not torch.equal(a.splits["train"].labels, c.splits["train"].labels)


def test_a_modality_does_not_depend_on_which_others_are_requested(ds):
    only = SyntheticDataset(SyntheticParams(n_train=1024), ["vision"], seed=0)
    assert torch.equal(only.splits["valid"].features["vision"], ds.splits["valid"].features["vision"])
    assert torch.equal(only.splits["valid"].labels, ds.splits["valid"].labels)


def test_label_is_the_documented_function_of_the_latents(ds):
    meta, p = ds.meta["train"], ds.params
    w, pol, e, c = meta["weight"], meta["polarity"], meta["stress"], meta["cue"]
    Z = torch.sqrt((w**2).sum(1) * p.polar_prob * (1 + 3 * p.stress_prob))
    y = (1.5 * (w * pol * (1 + e) * (1 - 2 * c)).sum(1) / Z).clamp(-3, 3)
    assert torch.allclose(y, ds.splits["train"].labels, atol=1e-5)


def decode(ds: SyntheticDataset, split: str, aligned: bool = True):
    """Latents read back from the features with the dataset's codes (an oracle 'model')."""
    sp, meta = ds.splits[split], ds.meta[split]
    E = ds.language["text"]  # (V, d_t)
    x = sp.features["text"]  # (N, T_t, d_t)
    tok = ((x[:, :, None, :] - E[None, None]) ** 2).sum(-1).argmin(-1)  # (N, T_t) nearest word type
    pol = VOCAB_POLARITY[tok] * sp.valid["text"]
    events = {}
    for m in ("audio", "vision"):
        if aligned:
            idx = meta[f"align_{m}"].clamp(min=0)
        else:  # naive proportional alignment that ignores shift and warp
            n, n_m = meta["n_words"], sp.valid[m].sum(1)
            idx = ((torch.arange(x.shape[1])[None, :] + 0.5) * n_m[:, None] / n[:, None]).long()
            idx = torch.minimum(idx, n_m[:, None] - 1)
        frames = torch.gather(sp.features[m], 1, idx[..., None].expand(-1, -1, sp.features[m].shape[2]))
        pattern = ds.language["stress" if m == "audio" else "cue"]
        events[m] = ((frames @ pattern) / (pattern @ pattern) > 0.5).float()
    w = meta["weight"]
    text_only = (w * pol).sum(1)
    full = (w * pol * (1 + events["audio"]) * (1 - 2 * events["vision"])).sum(1)
    return text_only, full


def test_label_needs_audio_and_vision_at_the_aligned_frames(ds):
    y = ds.splits["test"].labels
    text_only, full = decode(ds, "test")
    r_text, r_full = corr(text_only, y), corr(full, y)
    # would fail if the label ignored audio stress / visual cues (then r_text ~ r_full)
    assert r_full > 0.9 and r_text < 0.8 and r_full - r_text > 0.2, (r_text, r_full)


def test_misalignment_matters_for_reading_the_events(ds):
    y = ds.splits["test"].labels
    _, aligned = decode(ds, "test", aligned=True)
    _, naive = decode(ds, "test", aligned=False)
    # would fail without the per-clip shift/warp (naive proportional frames would be as good)
    assert corr(aligned, y) - corr(naive, y) > 0.1


def test_label_depends_on_temporal_order(ds):
    meta, y = ds.meta["train"], ds.splits["train"].labels
    w, n = meta["weight"], meta["n_words"]
    T = w.shape[1]
    pos = torch.arange(T)[None, :]
    rev = torch.where(pos < n[:, None], 0.25 + 0.75 * (n[:, None] - pos).float() / n[:, None],
                      torch.zeros_like(w))  # the recency ramp reversed in time
    z = meta["polarity"] * (1 + meta["stress"]) * (1 - 2 * meta["cue"])
    assert corr((rev * z).sum(1), y) < 0.9 < corr((w * z).sum(1), y)


def test_mean_pooled_text_beats_mean_predictor(ds):
    def pooled(s):
        sp = ds.splits[s]
        x = sp.features["text"].sum(1) / sp.valid["text"].sum(1, keepdim=True)
        return torch.cat([x, torch.ones(len(sp), 1)], 1).double()

    y_tr, y_te = ds.splits["train"].labels.double(), ds.splits["test"].labels.double()
    coef = torch.linalg.lstsq(pooled("train"), y_tr[:, None]).solution
    mae = (pooled("test") @ coef)[:, 0].sub(y_te).abs().mean()
    baseline = (y_te - y_tr.mean()).abs().mean()
    assert mae < 0.95 * baseline, (float(mae), float(baseline))


def test_classification_task_gives_int64_classes():
    ds = SyntheticDataset(SyntheticParams(n_train=64, n_valid=16, n_test=16, task="classification", num_classes=3),
                          MODS, seed=0)
    y = ds.splits["train"].labels
    assert y.dtype == torch.int64 and set(y.tolist()) == {0, 1, 2}
    assert ds.info.task == "classification" and ds.info.num_classes == 3


def test_unknown_modality_names_available_ones():
    with pytest.raises(DataError, match=r"available modalities: \['audio', 'text', 'vision'\]"):
        SyntheticDataset(SyntheticParams(n_train=4, n_valid=2, n_test=2), ["text", "depth"], seed=0)
