"""Every loader x every task: classification from npz (ids, one-hot) and pickle, natural missingness,
modalities present in some splits only, and validate's head/task check (issue: data/task coverage)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from conftest import npz_split_features, run_cli
from mmcore.data.mmsa import MmsaDataset, make_mmsa_data, write_mmsa_pickle
from mmcore.data.npz import NpzDataset
from mmcore.data.params import MmsaParams, NpzParams
from mmcore.errors import DataError
from mmcore.spec import spec_from_dict
from mmcore.train.run import train_run

T, D = 6, {"text": 4, "audio": 3, "vision": 2}


def npz_file(path, *, labels: str = "float", n: int = 24, zero_vision: float = 0.0, text_in_train: bool = True,
             seed: int = 0):
    rng = np.random.default_rng(seed)
    out = {}
    for s, features in npz_split_features(rng, n, T, D, 1.0, text_in_train=text_in_train):
        for m, x in features.items():
            if m == "vision" and zero_vision:
                x[: int(zero_vision * n)] = 0  # the first rows have no vision at all
            out[f"{s}_{m}"] = x
        ids = np.arange(n) % 3
        if labels == "int":
            out[f"{s}_labels"] = ids.astype(np.int64)
        elif labels == "onehot":
            out[f"{s}_labels"] = np.eye(3, dtype=np.float32)[ids]
        else:
            out[f"{s}_labels"] = rng.uniform(-3, 3, n).astype(np.float32)
    np.savez(path, **out)
    return out


def _spec(data: dict, head: str, **train) -> dict:
    return {"seed": 0, "modalities": {"text": {}, "audio": {}, "vision": {}}, "model": {"d_model": 8, "dropout": 0.0},
            "encoders": {"default": {"name": "linear"}}, "fuser": {"name": "concat_pool"}, "head": {"name": head},
            "data": data, "train": {"epochs": 1, "batch_size": 8, **train}}


@pytest.mark.parametrize("labels", ["int", "onehot"])
def test_npz_classification_is_inferred_and_trains(tmp_path, caplog, labels):
    npz_file(tmp_path / "d.npz", labels=labels)
    with caplog.at_level(logging.INFO, logger="mmcore.data.npz"):
        ds = NpzDataset(NpzParams(path=str(tmp_path / "d.npz")), ["text", "audio"], 0)
    assert ds.info.task == "classification" and ds.info.num_classes == 3
    assert ds.splits["train"].labels.dtype == torch.int64 and ds.splits["train"].labels[:4].tolist() == [0, 1, 2, 0]
    assert "task classification with 3 classes (integer or one-hot labels)" in caplog.text
    spec = _spec({"name": "npz", "params": {"path": str(tmp_path / "d.npz")}}, "classification_mlp",
                 select_metric="acc")
    res = train_run(spec_from_dict(spec), str(tmp_path / "run"), progress=False)
    assert 0.0 <= res["test"]["acc"] <= 1.0


def test_npz_float_labels_stay_regression_and_task_can_be_forced(tmp_path):
    npz_file(tmp_path / "d.npz", labels="int")
    ds = NpzDataset(NpzParams(path=str(tmp_path / "d.npz"), task="regression"), ["audio"], 0)
    assert ds.info.task == "regression" and ds.splits["train"].labels.dtype == torch.float32
    npz_file(tmp_path / "f.npz", labels="float")
    assert NpzDataset(NpzParams(path=str(tmp_path / "f.npz")), ["audio"], 0).info.task == "regression"
    with pytest.raises(DataError, match="class ids 0..C-1"):
        NpzDataset(NpzParams(path=str(tmp_path / "f.npz"), task="classification"), ["audio"], 0)


def test_validate_catches_a_head_that_does_not_fit_the_labels(tmp_path, capsys):
    npz_file(tmp_path / "d.npz", labels="int")
    p = tmp_path / "s.yaml"
    p.write_text("modalities: {audio: {}}\nencoders: {default: {name: linear}}\nfuser: {name: concat_pool}\n"
                 f"head: {{name: regression_mlp}}\ndata: {{name: npz, params: {{path: {tmp_path / 'd.npz'}}}}}\n")
    code, out, err = run_cli(["validate", str(p)], capsys)
    assert code == 2 and f"{p}:4:" in err and "predicts regression but the data (npz) has classification" in err


def test_all_zero_rows_are_missing_and_left_out_of_the_statistics(tmp_path, caplog):
    arrays = npz_file(tmp_path / "d.npz", zero_vision=0.5)
    with caplog.at_level(logging.INFO, logger="mmcore.data.npz"):
        ds = NpzDataset(NpzParams(path=str(tmp_path / "d.npz")), ["audio", "vision"], 0)
    tr = ds.splits["train"]
    assert tr.missing["vision"][:12].all() and not tr.missing["vision"][12:].any()
    assert not tr.missing["audio"].any()
    assert "vision 12/24" in caplog.text
    # standardisation used only the rows that have vision: their features are exactly standardised
    mean, std = ds.stats["vision"]
    raw = torch.from_numpy(arrays["train_vision"][12:]).reshape(-1, D["vision"]).double()
    assert torch.allclose(mean.double(), raw.mean(0), atol=1e-5)
    assert torch.equal(tr.features["vision"][:12], torch.zeros_like(tr.features["vision"][:12]))
    off = NpzDataset(NpzParams(path=str(tmp_path / "d.npz"), natural_missing=False), ["vision"], 0)
    assert not off.splits["train"].missing["vision"].any()


def test_mmsa_text_only_in_valid_test_and_mostly_empty_audio_vision_runs_end_to_end(tmp_path, caplog):
    data = make_mmsa_data(sizes=(24, 12, 12))
    del data["train"]["text"]
    for s in data:
        n = len(data[s]["regression_labels"])
        data[s]["audio"][: int(0.7 * n)] = 0  # 70 % of the rows have no audio
        data[s]["vision"][: int(0.6 * n)] = 0
    write_mmsa_pickle(tmp_path / "m.pkl", data)
    with caplog.at_level(logging.INFO, logger="mmcore.data"):
        ds = MmsaDataset(MmsaParams(path=str(tmp_path / "m.pkl")), ["text", "audio", "vision"], 0)
    assert ds.splits["train"].missing["text"].all() and not ds.splits["valid"].missing["text"].any()
    assert "modality 'text' absent from split 'train'" in caplog.text and "audio 16/24" in caplog.text
    spec = _spec({"name": "mmsa", "params": {"path": str(tmp_path / "m.pkl")}}, "regression_mlp")
    spec["imputer"] = {"name": "mean"}
    res = train_run(spec_from_dict(spec), str(tmp_path / "run"), progress=False)
    assert np.isfinite(res["test"]["mae"])


def test_mmsa_classification_labels(tmp_path):
    write_mmsa_pickle(tmp_path / "m.pkl", make_mmsa_data(sizes=(24, 12, 12)))
    spec = _spec({"name": "mmsa", "params": {"path": str(tmp_path / "m.pkl"), "label_key": "classification"}},
                 "classification_mlp", select_metric="acc")
    res = train_run(spec_from_dict(spec), str(tmp_path / "run"), progress=False)
    assert set(res["test"]) >= {"acc", "f1_weighted"}


def test_provenance_is_recorded_and_eval_warns_about_a_changed_data_file(tmp_path, capsys, caplog):
    import json

    npz_file(tmp_path / "d.npz")
    spec = _spec({"name": "npz", "params": {"path": str(tmp_path / "d.npz")}}, "regression_mlp")
    train_run(spec_from_dict(spec), str(tmp_path / "run"), progress=False)
    prov = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert {"mmcore-lib", "python", "torch", "numpy"} <= set(prov["versions"])
    assert prov["platform"]["torch_threads"] >= 1 and prov["platform"]["device"] == "cpu"
    assert prov["command"] and prov["modalities"]["audio"] == {"dim": 3, "length": T}
    (f,) = prov["data"]["files"]
    assert f["size"] == (tmp_path / "d.npz").stat().st_size and len(f["sha256"]) == 64
    assert prov["git"]["mmcore"] is None or len(prov["git"]["mmcore"]["commit"]) == 40
    code, _, err = run_cli(["eval", str(tmp_path / "run")], capsys)
    assert code == 0 and "changed since" not in err
    npz_file(tmp_path / "d.npz", seed=1)  # same shapes, other values
    with caplog.at_level(logging.WARNING, logger="mmcore.train"):
        code, _, err = run_cli(["eval", str(tmp_path / "run")], capsys)
    assert code == 0 and "d.npz: changed since the run was trained" in caplog.text + err
