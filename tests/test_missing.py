"""Missing-modality protocols: rates, determinism, order independence, and mask placement."""

from __future__ import annotations

import pytest
import torch

from mmcore.batch import Batch
from mmcore.missing import MissingOp, MissingProtocol, format_rate_table, sweep_rates, uniform_hash

RATE_TOL = 0.02  # ~4 standard errors of a Bernoulli mean over ~10^4 draws
B, DIMS, LENS = 600, {"text": 4, "audio": 3, "vision": 2}, {"text": 12, "audio": 20, "vision": 16}


def make_batch(n: int = B, seed: int = 0, min_len: int = 1) -> Batch:
    g = torch.Generator().manual_seed(seed)
    feats, valid = {}, {}
    for m, d in DIMS.items():
        T = LENS[m]
        L = torch.randint(min_len, T + 1, (n,), generator=g)
        valid[m] = torch.arange(T)[None, :] < L[:, None]
        feats[m] = (torch.randn(n, T, d, generator=g) + 3.0) * valid[m][..., None]  # never exactly 0 when valid
    return Batch(features=feats, valid=valid, labels=torch.zeros(n), index=torch.arange(n))


def sub(batch: Batch, idx: torch.Tensor) -> Batch:
    pick = lambda d: {m: v[idx] for m, v in d.items()}  # noqa: E731
    return Batch(features=pick(batch.features), valid=pick(batch.valid), labels=batch.labels[idx],
                 missing=pick(batch.missing), masked=pick(batch.masked), index=batch.index[idx])


def apply(ops, batch=None, *, seed=0, epoch=0, split="train"):
    return MissingProtocol(ops).apply(batch or make_batch(), seed=seed, epoch=epoch, split=split)


def test_temporal_rate_is_honoured_on_valid_tokens():
    out = apply([MissingOp("temporal", 0.3)], make_batch(min_len=8))
    for m in DIMS:
        frac = out.masked[m][out.valid[m]].float().mean().item()
        assert abs(frac - 0.3) < RATE_TOL, (m, frac)


def test_instance_rate_is_honoured_without_keep_one():
    out = apply([MissingOp("instance", 0.4, keep_one=False)], make_batch(3000))
    for m in DIMS:
        assert abs(out.missing[m].float().mean().item() - 0.4) < RATE_TOL


def test_victim_rate_is_honoured_and_spares_other_modalities():
    out = apply([MissingOp("victim", 0.5, modality="audio")], make_batch(3000))
    assert abs(out.missing["audio"].float().mean().item() - 0.5) < RATE_TOL
    assert not out.missing["text"].any() and not out.missing["vision"].any()


def test_setting_a_drops_the_victim_everywhere():
    out = apply([MissingOp("victim", 1.0, modality="text")], epoch=None, split="test")
    assert out.missing["text"].all()
    assert (out.features["text"] == 0).all()


def test_masks_are_deterministic_for_same_seed_epoch_split():
    ops = [MissingOp("temporal", 0.3), MissingOp("instance", 0.3)]
    a, b = apply(ops), apply(ops)
    for m in DIMS:
        assert torch.equal(a.masked[m], b.masked[m]) and torch.equal(a.missing[m], b.missing[m])


def test_masks_change_with_epoch_seed_and_split():
    ops = [MissingOp("temporal", 0.3)]
    ref = apply(ops).masked["audio"]
    for kw in ({"epoch": 1}, {"seed": 1}, {"split": "valid"}):
        assert not torch.equal(apply(ops, **kw).masked["audio"], ref), kw


def test_eval_masks_are_fixed_across_calls():
    ops = [MissingOp("temporal", 0.3), MissingOp("instance", 0.3)]
    a = apply(ops, epoch=None, split="valid")
    b = apply(ops, epoch=None, split="valid")
    assert all(torch.equal(a.masked[m], b.masked[m]) and torch.equal(a.missing[m], b.missing[m]) for m in DIMS)


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_masks_do_not_depend_on_batch_size_or_order(chunk):
    ops = [MissingOp("temporal", 0.4), MissingOp("instance", 0.5)]
    full_batch = make_batch(200)
    full = apply(ops, full_batch)
    perm = torch.randperm(200, generator=torch.Generator().manual_seed(3))
    for start in range(0, 200, chunk):
        idx = perm[start:start + chunk]
        part = apply(ops, sub(full_batch, idx))
        for m in DIMS:
            assert torch.equal(part.masked[m], full.masked[m][idx])
            assert torch.equal(part.missing[m], full.missing[m][idx])
            assert torch.equal(part.features[m], full.features[m][idx])


def test_masks_only_on_valid_positions_of_present_rows():
    out = apply([MissingOp("instance", 0.3), MissingOp("temporal", 0.5)])
    for m in DIMS:
        assert not (out.masked[m] & ~out.valid[m]).any()
        assert not out.masked[m][out.missing[m]].any()


def test_temporal_keeps_at_least_one_valid_token_per_row():
    out = apply([MissingOp("temporal", 0.95)], make_batch(min_len=1))
    for m in DIMS:
        assert ((out.valid[m] & ~out.masked[m]).sum(1) >= 1).all()


def test_features_zeroed_where_masked_and_clean_keeps_originals():
    batch = make_batch()
    out = apply([MissingOp("temporal", 0.3), MissingOp("instance", 0.2)], batch)
    for m in DIMS:
        gone = out.masked[m] | out.missing[m][:, None]
        assert (out.features[m][gone] == 0).all()
        assert torch.equal(out.features[m][~gone], batch.features[m][~gone])
        assert torch.equal(out.clean[m], batch.features[m])
    assert not batch.masked["audio"].any(), "apply must not modify its input"


def test_keep_one_never_drops_every_modality_of_a_row():
    batch = make_batch(2000)
    batch.missing["text"][:] = True  # as ICT-MMMO's train split: text absent beforehand
    out = apply([MissingOp("instance", 0.9, keep_one=True)], batch)
    present = torch.stack([~out.missing[m] for m in DIMS]).any(0)
    assert present.all()
    assert out.missing["text"].all(), "prior missing flags are kept (OR)"


def test_prior_masks_are_ored_in():
    batch = make_batch(50)
    batch.masked["audio"][:, 0] = True
    out = apply([MissingOp("temporal", 0.1, modalities=["vision"])], batch)
    assert out.masked["audio"][:, 0].all()


def test_with_rate_replaces_every_rate_and_describe_names_ops():
    proto = MissingProtocol([MissingOp("instance", 0.1, modalities=["audio"]), MissingOp("victim", 0.2, modality="text")])
    swept = proto.with_rate(0.7)
    assert [op.rate for op in swept.ops] == [0.7, 0.7]
    assert "victim(text, rate=0.7)" in swept.describe() and "instance(rate=0.7, modalities=audio" in swept.describe()


def test_sweep_rates_gives_one_row_per_rate():
    proto = MissingProtocol([MissingOp("victim", 0.0, modality="audio")])
    batch = make_batch(500)
    rows = sweep_rates(proto, [0.0, 0.5, 1.0], lambda p: {
        "missing": p.apply(batch, seed=0, epoch=None, split="test").missing["audio"].float().mean().item()})
    assert [r["rate"] for r in rows] == [0.0, 0.5, 1.0]
    assert rows[0]["missing"] == 0.0 and rows[2]["missing"] == 1.0
    assert "rate" in format_rate_table(rows).splitlines()[0]


def test_uniform_hash_is_uniform():
    u = uniform_hash(12345, torch.arange(200), torch.arange(100))
    assert u.min() >= 0 and u.max() < 1
    assert abs(u.mean().item() - 0.5) < 0.01
    hist = torch.histc(u.float(), bins=10, min=0, max=1) / u.numel()
    assert (hist - 0.1).abs().max() < 0.01


def test_invalid_ops_and_batches_raise_value_errors():
    with pytest.raises(ValueError, match="temporal masking rate must be < 1"):
        MissingProtocol([MissingOp("temporal", 1.0)])
    with pytest.raises(ValueError, match="batch modalities"):
        apply([MissingOp("victim", 0.5, modality="depth")])
    batch = make_batch(4)
    batch.index = None
    with pytest.raises(ValueError, match="batch.index"):
        apply([MissingOp("temporal", 0.5)], batch)


def test_temporal_keeps_an_observed_token_despite_prior_masks():
    batch = make_batch(300)
    batch.masked["audio"] = batch.valid["audio"].clone()
    batch.masked["audio"][:, 0] = False  # only the first token of each row is still observed
    out = apply([MissingOp("temporal", 0.9, modalities=["audio"])], batch)
    assert ((out.valid["audio"] & ~out.masked["audio"]).sum(1) == 1).all()
