"""The MMSA pickle loader on small files with MMSA's exact keys."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pytest
import torch

from mmcore.data.mmsa import MMSA_KEYS, MmsaDataset, make_mmsa_data, write_mmsa_pickle
from mmcore.data.params import MmsaParams
from mmcore.errors import DataError

ALL = ["text", "audio", "vision"]


def load(path, modalities=None, **kw) -> MmsaDataset:
    return MmsaDataset(MmsaParams(path=str(path), **kw), modalities or ALL, seed=0)


def test_generated_pickle_has_exactly_the_mmsa_keys(tmp_path):
    data = write_mmsa_pickle(tmp_path / "m.pkl")
    with open(tmp_path / "m.pkl", "rb") as f:
        raw = pickle.load(f)
    assert set(raw) == {"train", "valid", "test"}
    assert all(set(raw[s]) == set(MMSA_KEYS) for s in raw)
    assert data["train"]["audio"].shape == raw["train"]["audio"].shape


def test_round_trip_keeps_features_lengths_labels_ids(tmp_path):
    data = write_mmsa_pickle(tmp_path / "m.pkl", seed=3)
    ds = load(tmp_path / "m.pkl")
    for s in ("train", "valid", "test"):
        sp, d = ds.splits[s], data[s]
        for m in ("audio", "vision"):
            L = torch.from_numpy(d[f"{m}_lengths"])
            assert torch.equal(sp.valid[m].sum(1), L)
            assert torch.equal(sp.features[m], torch.from_numpy(d[m]))
        text_len = torch.from_numpy((np.abs(d["text"]).sum(-1) > 0).sum(1))
        assert torch.equal(sp.valid["text"].sum(1), text_len)
        assert torch.equal(sp.labels, torch.from_numpy(d["regression_labels"])) and sp.labels.dtype == torch.float32
        assert sp.ids == [str(i) for i in d["id"]]
    assert ds.info.metric_set == "mosi" and ds.info.dims == {"text": 16, "audio": 5, "vision": 6}


def test_labels_in_unit_range_select_sims_metrics(tmp_path):
    write_mmsa_pickle(tmp_path / "s.pkl", label_range=1.0)
    assert load(tmp_path / "s.pkl").info.metric_set == "sims"
    assert load(tmp_path / "s.pkl", metric_set="mosi").info.metric_set == "mosi"


def test_classification_labels_are_int64_classes(tmp_path):
    write_mmsa_pickle(tmp_path / "m.pkl")
    ds = load(tmp_path / "m.pkl", label_key="classification")
    assert ds.splits["train"].labels.dtype == torch.int64
    assert ds.info.task == "classification" and ds.info.num_classes == 3


def test_lengths_beyond_the_sequence_are_clamped(tmp_path, caplog):
    data = make_mmsa_data()
    data["train"]["audio_lengths"][0] = 999
    data["train"]["audio_lengths"][1] = 0
    write_mmsa_pickle(tmp_path / "m.pkl", data)
    with caplog.at_level(logging.INFO, logger="mmcore.data.mmsa"):
        ds = load(tmp_path / "m.pkl")
    assert ds.splits["train"].valid["audio"].sum(1)[:2].tolist() == [12, 1]
    assert "1 audio_lengths values outside [1, 12] clamped" in caplog.text
    # a stored length of 0 means the modality holds nothing for that row: naturally missing
    assert ds.splits["train"].missing["audio"][:2].tolist() == [False, True]
    assert "audio 1/16" in caplog.text


def test_missing_key_raises_data_error_naming_it(tmp_path):
    data = make_mmsa_data()
    del data["valid"]["regression_labels"]
    write_mmsa_pickle(tmp_path / "m.pkl", data)
    with pytest.raises(DataError, match="split 'valid' lacks key 'regression_labels'"):
        load(tmp_path / "m.pkl")


def test_missing_split_raises_data_error(tmp_path):
    data = make_mmsa_data()
    del data["test"]
    write_mmsa_pickle(tmp_path / "m.pkl", data)
    with pytest.raises(DataError, match="split 'test' is missing"):
        load(tmp_path / "m.pkl")


def test_wrong_rank_raises_data_error(tmp_path):
    data = make_mmsa_data()
    data["train"]["vision"] = data["train"]["vision"].mean(1)
    write_mmsa_pickle(tmp_path / "m.pkl", data)
    with pytest.raises(DataError, match=r"'vision' must be \(N, T, d\) \(rank 3\); got shape \(16, 6\)"):
        load(tmp_path / "m.pkl")


def test_neg_inf_audio_raises_by_default_naming_file_split_count_option(tmp_path):
    data = make_mmsa_data()
    data["test"]["audio"][0, 0, :3] = -np.inf
    write_mmsa_pickle(tmp_path / "m.pkl", data)
    with pytest.raises(DataError, match=r"m.pkl: split 'test', modality 'audio': 3 non-finite values \(-inf 3\)"
                                        r".*nan_policy: zero"):
        load(tmp_path / "m.pkl")


def test_neg_inf_audio_zeroed_and_logged_with_nan_policy_zero(tmp_path, caplog):
    data = make_mmsa_data()
    data["test"]["audio"][0, 0, :3] = -np.inf
    write_mmsa_pickle(tmp_path / "m.pkl", data)
    with caplog.at_level(logging.WARNING):
        ds = load(tmp_path / "m.pkl", nan_policy="zero")
    assert (ds.splits["test"].features["audio"][0, 0, :3] == 0).all()
    assert "replaced 3 non-finite values (-inf 3)" in caplog.text


def test_unknown_modality_names_available_ones(tmp_path):
    write_mmsa_pickle(tmp_path / "m.pkl")
    with pytest.raises(DataError, match=r"available modalities: \['text', 'audio', 'vision'\]"):
        load(tmp_path / "m.pkl", ["text", "depth"])


def test_truncated_file_raises_data_error(tmp_path):
    write_mmsa_pickle(tmp_path / "m.pkl")
    raw = (tmp_path / "m.pkl").read_bytes()
    (tmp_path / "m.pkl").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="cannot read as an MMSA pickle"):
        load(tmp_path / "m.pkl")


class _RunsCode:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickle_that_would_run_code_is_refused(tmp_path, capsys):
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump({"train": _RunsCode()}, f)
    with pytest.raises(DataError, match="refusing to load builtins.print"):
        load(tmp_path / "evil.pkl")
    assert "must never run" not in capsys.readouterr().out


def test_standardize_option_centres_train_tokens(tmp_path):
    write_mmsa_pickle(tmp_path / "m.pkl", sizes=(64, 8, 8))
    tr = load(tmp_path / "m.pkl", standardize=True).splits["train"]
    assert tr.features["audio"][tr.valid["audio"]].mean(0).abs().max() < 1e-5
    assert (tr.features["audio"][~tr.valid["audio"]] == 0).all()


def test_pickle_from_numpy_1_module_names_loads(tmp_path):
    data = make_mmsa_data()
    raw = pickle.dumps(data, protocol=2)  # protocol 2 spells globals as text: "numpy._core.multiarray"
    if b"numpy._core" in raw:
        raw = raw.replace(b"numpy._core", b"numpy.core")  # as numpy 1.x wrote MMSA's files
    (tmp_path / "old.pkl").write_bytes(raw)
    ds = load(tmp_path / "old.pkl")
    assert torch.equal(ds.splits["train"].labels, torch.from_numpy(data["train"]["regression_labels"]))
