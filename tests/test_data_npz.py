"""The npz loader: left-justification with alignment kept, absent modalities, checks and errors."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import npz_split_features
from mmcore.data.npz import NpzDataset
from mmcore.data.params import NpzParams
from mmcore.errors import DataError

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mmmo.npz"
T, D = 6, {"audio": 3, "vision": 2, "text": 4}
ALL = ["text", "audio", "vision"]


def make_arrays(n: int = 5, seed: int = 0, text_in_train: bool = False) -> dict[str, np.ndarray]:
    """Word-aligned rows: row i's span starts at step i % 3 (front padding) and ends before T."""
    rng = np.random.default_rng(seed)
    out = {}
    for s, features in npz_split_features(rng, n, T, D, 2.0, text_in_train=text_in_train):
        for m, x in features.items():
            for i in range(n):
                start, stop = i % 3, T - (i % 2)
                x[i, :start] = 0
                x[i, stop:] = 0
            out[f"{s}_{m}"] = x
        out[f"{s}_vision"][1, 1] = 0  # row 1 starts at 1; vision starts later than audio: still aligned
        out[f"{s}_audio"][0, 2] = 0  # an interior zero frame of one modality
        out[f"{s}_labels"] = rng.uniform(1, 5, n).astype(np.float32)
    out["train_audio"][3, 3] = 0
    out["train_vision"][3, 3] = 0  # a step where every train modality is zero, inside the span
    return out


def write(tmp_path: Path, arrays: dict[str, np.ndarray], name: str = "d.npz") -> str:
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def load(path: str, modalities=None, **kw) -> NpzDataset:
    return NpzDataset(NpzParams(path=path, **kw), modalities or ALL, seed=0)


def test_rows_are_left_justified_by_one_shift_for_all_modalities(tmp_path):
    arrays = make_arrays()
    ds = load(write(tmp_path, arrays), standardize=False)
    sp = ds.splits["train"]
    for i in range(5):
        start, stop = i % 3, T - (i % 2)
        L = stop - start
        for m in ("audio", "vision"):
            assert torch.equal(sp.valid[m][i], torch.arange(T) < L)
            assert torch.equal(sp.features[m][i, :L], torch.from_numpy(arrays[f"train_{m}"][i, start:stop]))
            assert (sp.features[m][i, L:] == 0).all()
    # row 1: vision is zero at step 1 where audio starts -> vision's first token is a real zero token
    assert (sp.features["vision"][1, 0] == 0).all() and sp.valid["vision"][1, 0]
    # row 3: the all-zero step inside the span stays a valid token
    assert sp.valid["audio"][3].sum() == T - 1 and (sp.features["audio"][3, 3] == 0).all()


def test_modality_absent_from_a_split_is_missing_zeros_with_union_validity(tmp_path):
    ds = load(write(tmp_path, make_arrays()), standardize=False)
    tr = ds.splits["train"]
    assert tr.features["text"].shape == (5, T, D["text"])
    assert (tr.features["text"] == 0).all() and tr.missing["text"].all()
    assert torch.equal(tr.valid["text"], tr.valid["audio"])
    assert not ds.splits["valid"].missing["text"].any()
    assert ds.info.dims == {"text": 4, "audio": 3, "vision": 2} and ds.info.metric_set == "regression"


def test_standardize_uses_train_valid_tokens_and_keeps_padding_zero(tmp_path):
    ds = load(write(tmp_path, make_arrays(n=40, text_in_train=True)), standardize=True)
    tr = ds.splits["train"]
    for m in ALL:
        tok = tr.features[m][tr.valid[m]].double()
        assert torch.allclose(tok.mean(0), torch.zeros(D[m], dtype=torch.double), atol=1e-5)
        assert torch.allclose(tok.std(0, unbiased=False), torch.ones(D[m], dtype=torch.double), atol=1e-4)
        for sp in ds.splits.values():
            assert (sp.features[m][~sp.valid[m]] == 0).all()


def test_modality_absent_from_train_is_left_unstandardised(tmp_path, caplog):
    arrays = make_arrays()
    with caplog.at_level(logging.INFO, logger="mmcore.data.npz"):
        ds = load(write(tmp_path, arrays), standardize=True)
    assert "'text' absent from the train split" in caplog.text
    assert torch.equal(ds.splits["valid"].features["text"][2, :4], torch.from_numpy(arrays["valid_text"][2, 2:6]))


def test_nan_raises_data_error_naming_split_modality_count_and_option(tmp_path):
    arrays = make_arrays()
    arrays["valid_audio"][0, 1, :2] = np.nan
    with pytest.raises(DataError, match=r"split 'valid', modality 'audio': 2 non-finite.*nan_policy: zero"):
        load(write(tmp_path, arrays))


def test_nan_policy_zero_replaces_and_logs(tmp_path, caplog):
    arrays = make_arrays()
    arrays["valid_audio"][0, 1, :2] = np.inf
    with caplog.at_level(logging.WARNING, logger="mmcore.data.npz"):
        ds = load(write(tmp_path, arrays), nan_policy="zero", standardize=False)
    assert "replaced 2 non-finite values" in caplog.text
    assert torch.isfinite(ds.splits["valid"].features["audio"]).all()


def test_corrupt_file_raises_data_error(tmp_path):
    path = tmp_path / "bad.npz"
    path.write_bytes(b"PK\x03\x04 definitely not a zip archive")
    with pytest.raises(DataError, match="bad.npz: cannot read as .npz"):
        load(str(path))


def test_missing_file_raises_data_error_with_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="nope.npz: npz file not found.*data.params.path"):
        load("nope.npz")


def test_relative_path_resolves_from_working_directory(tmp_path, monkeypatch):
    write(tmp_path, make_arrays(), "rel.npz")
    monkeypatch.chdir(tmp_path)
    assert len(load("rel.npz").splits["test"]) == 5


def test_wrong_rank_raises_data_error(tmp_path):
    arrays = make_arrays()
    arrays["test_vision"] = arrays["test_vision"][:, :, 0]
    with pytest.raises(DataError, match=r"'test_vision' must be \(N, T, d\) \(rank 3\); got shape \(5, 6\)"):
        load(write(tmp_path, arrays))


def test_missing_labels_key_raises_data_error(tmp_path):
    arrays = make_arrays()
    del arrays["valid_labels"]
    with pytest.raises(DataError, match="'valid_labels' is missing"):
        load(write(tmp_path, arrays))


def test_unknown_modality_names_available_ones(tmp_path):
    with pytest.raises(DataError, match=r"available modalities: \['audio', 'text', 'vision'\]"):
        load(write(tmp_path, make_arrays()), ["audio", "depth"])


@pytest.mark.skipif(not REAL.is_file(), reason=f"real ICT-MMMO file not found at {REAL}")
def test_real_mmmo_file_loads_with_text_missing_in_train():
    ds = load(str(REAL))
    tr, va = ds.splits["train"], ds.splits["valid"]
    assert (len(tr), len(va), len(ds.splits["test"])) == (220, 40, 80)
    assert tr.missing["text"].all() and not va.missing["text"].any()
    assert ds.info.dims == {"text": 300, "audio": 74, "vision": 36} and ds.info.lengths["audio"] == 20
    for sp in ds.splits.values():
        for m in ALL:
            v = sp.valid[m]
            assert (v.sum(1) >= 1).all()
            assert torch.equal(v, torch.arange(v.shape[1])[None, :] < v.sum(1, keepdim=True))
            assert torch.isfinite(sp.features[m]).all()
    tok = tr.features["audio"][tr.valid["audio"]]
    assert tok.mean(0).abs().max() < 1e-4 and tr.labels.min() >= 1 and tr.labels.max() <= 5
