"""``reference: authors`` as a configuration: the preset, explicit params winning, square plans for unequal
lengths, the authors' warm-up count, and a training run through the real trainer."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from mmcore.batch import Batch
from mmcore.protocols import BuildContext, ModalityInfo
from mmcore.spec import spec_from_dict
from mmcore_plugin_adl.adl import ADLImputer
from mmcore_plugin_adl.params import AUTHORS_PRESET, ADLParams

D = 8


def test_reference_authors_sets_every_preset_field():
    p = ADLParams(reference="authors", present="audio", victim="vision")
    assert {f: getattr(p, f) for f in AUTHORS_PRESET} == AUTHORS_PRESET
    assert p.authors_deviations() == {}
    assert p.window == 8 and p.warmup_epochs == 2, "main.py arguments are recipe values, not the preset"


def test_reference_mmcore_keeps_the_stabilised_defaults():
    p = ADLParams(present="audio", victim="vision")
    assert (p.reference, p.solver, p.reg, p.max_iter, p.tol, p.fitter_softmax, p.decode, p.fit_loss, p.contrast_score,
            p.contrast_pool, p.contrast_reduction, p.temperature, p.warmup_rule) == (
        "mmcore", "balanced", 0.1, 200, 1e-4, "window", "barycentric", "paper", "cosine", "mean", "mean", 0.1, "count")
    assert p.authors_deviations() == {}


def test_explicit_params_win_over_the_preset_and_are_reported(caplog):
    p = ADLParams(reference="authors", present="audio", victim="vision", fit_loss="paper", reg=0.1)
    assert p.fit_loss == "paper" and p.reg == 0.1 and p.solver == "authors"
    assert p.authors_deviations() == {"reg": (0.1, 5.0), "fit_loss": ("paper", "authors")}
    ctx = BuildContext(modalities={"audio": ModalityInfo("audio", 5, 6), "vision": ModalityInfo("vision", 4, 6)},
                       d_model=D)
    with caplog.at_level(logging.WARNING, logger="mmcore_plugin_adl.adl"):
        ADLImputer(p, ctx)
    assert "reg=0.1" in caplog.text and "fit_loss='paper'" in caplog.text and "not the authors' computation" in caplog.text


def test_preset_round_trips_through_a_dump():
    p = ADLParams(reference="authors", present="audio", victim="vision", window=2)
    assert ADLParams.model_validate(p.model_dump(mode="json")) == p


def test_bad_switch_value_is_a_named_validation_error():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="decode"):
        ADLParams(present="audio", victim="vision", decode="columns")


def imputer(**kw) -> ADLImputer:
    ctx = BuildContext(modalities={"audio": ModalityInfo("audio", 5, 9), "vision": ModalityInfo("vision", 4, 9)},
                       d_model=D)
    torch.manual_seed(0)
    return ADLImputer(ADLParams(present="audio", victim="vision", window=2, **kw), ctx)


def make_batch(n1, n2, T1, T2, missing_victim=(), seed=0):
    g = torch.Generator().manual_seed(seed)
    v1 = torch.arange(T1)[None] < torch.tensor(n1)[:, None]
    v2 = torch.arange(T2)[None] < torch.tensor(n2)[:, None]
    B = len(n1)
    miss = torch.zeros(B, dtype=torch.bool)
    miss[list(missing_victim)] = True
    z1 = torch.randn(B, T1, D, generator=g) * v1[..., None]
    z2 = torch.randn(B, T2, D, generator=g) * v2[..., None] * ~miss[:, None, None]
    batch = Batch(features={"audio": torch.zeros(B, T1, 5), "vision": torch.zeros(B, T2, 4)},
                  valid={"audio": v1, "vision": v2}, labels=torch.zeros(B),
                  missing={"audio": torch.zeros(B, dtype=torch.bool), "vision": miss}, index=torch.arange(B))
    return {"audio": z1, "vision": z2}, batch


def test_authors_mode_forward_backward_with_padding_and_missing_rows():
    seqs, batch = make_batch([7, 5, 3, 6], [7, 5, 3, 6], T1=8, T2=8, missing_victim=[1, 3])
    seqs = {m: x.requires_grad_() for m, x in seqs.items()}
    imp = imputer(reference="authors").train()
    out = imp(seqs, batch)
    assert set(out.aux) == {"adl_fit", "adl_con"}
    assert all(torch.isfinite(v) for v in out.aux.values())
    v2 = batch.valid["vision"]
    assert out.seqs["vision"][[1, 3]][v2[[1, 3]]].abs().sum(-1).gt(0).all(), "missing rows are imputed"
    assert (out.seqs["vision"][~v2] == 0).all()
    (sum(out.aux.values()) + out.seqs["vision"].sum()).backward()
    for name, p in imp.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # padding invariance of the imputation (evaluation)
    imp.eval()
    with torch.no_grad():
        ref = imp(seqs, batch).seqs["vision"]
        noisy = {m: torch.where(batch.valid[m][..., None], x, torch.randn_like(x) * 100) for m, x in seqs.items()}
        new = imp(noisy, batch).seqs["vision"]
    torch.testing.assert_close(new[v2], ref[v2], rtol=0, atol=1e-6)


def test_authors_mode_crops_unequal_lengths_to_the_common_prefix_and_warns():
    seqs, batch = make_batch([6, 4], [4, 6], T1=6, T2=7, missing_victim=[0, 1])
    imp = imputer(reference="authors").eval()
    with pytest.warns(UserWarning, match="2 of 2 pairs have different audio/vision lengths"):
        out = imp(seqs, batch).seqs["vision"]
    # l = min(T1, T2) = 4 on both rows: victim positions 4, 5 of row 1 get no imputation
    assert out[1, :4].abs().sum(-1).gt(0).all() and (out[1, 4:] == 0).all()
    assert out[0, :4].abs().sum(-1).gt(0).all()
    # present tokens past l are unused: changing them changes nothing
    changed = dict(seqs, audio=seqs["audio"].clone())
    changed["audio"][0, 4:] = 50.0
    with torch.no_grad():
        torch.testing.assert_close(imp(changed, batch).seqs["vision"], out, rtol=0, atol=0)


def test_default_mode_does_not_crop_unequal_lengths():
    seqs, batch = make_batch([6, 4], [4, 6], T1=6, T2=7, missing_victim=[0, 1])
    out = imputer().eval()(seqs, batch).seqs["vision"]
    assert out[1, :6].abs().sum(-1).gt(0).all(), "the default window geometry imputes every victim position"


def test_authors_warmup_rule_counts_epoch_greater_than_warmup_epoch():
    assert imputer(reference="authors", warmup_epochs=2).training_phases(epochs=10)[0].epochs == 3
    assert imputer(warmup_epochs=2).training_phases(epochs=10)[0].epochs == 2
    assert imputer(reference="authors", warmup_epochs=0).training_phases(epochs=10)[0].epochs == 1
    assert imputer(reference="authors", warmup_epochs=2).training_phases(epochs=3)[0].epochs == 2, "capped at epochs - 1"


SPEC = {
    "seed": 1, "modalities": {"audio": {}, "vision": {}}, "model": {"d_model": 8, "dropout": 0.0},
    "encoders": {"default": {"name": "linear"}},
    "imputer": {"name": "adl", "params": {"reference": "authors", "present": "audio", "victim": "vision",
                                          "window": 2, "hidden": 8, "warmup_epochs": 0}},
    "losses": {"adl_con": {"weight": 0.0}},
    "fuser": {"name": "concat_pool"}, "head": {"name": "regression_mlp", "params": {"hidden": 8}},
    "data": {"name": "synthetic", "params": {"n_train": 32, "n_valid": 16, "n_test": 16,
                                             "dims": {"text": 4, "audio": 6, "vision": 5},
                                             "lengths": {"text": 4, "audio": 7, "vision": 7}}},
    "missing": {"train": [{"type": "victim", "modality": "vision", "rate": 0.5}],
                "eval": [{"type": "victim", "modality": "vision", "rate": 0.5}]},
    "train": {"epochs": 3, "batch_size": 16, "lr": 3e-3, "select_metric": "mae", "device": "cpu"},
}


def test_authors_mode_trains_through_the_trainer(tmp_path, recwarn):
    from mmcore.data.load import load_dataset
    from mmcore.train.trainer import Trainer

    rs = spec_from_dict(SPEC)
    tr = Trainer.for_training(rs, load_dataset(rs), str(tmp_path), progress=False)
    assert [(p.name, p.epochs) for p in tr.phases] == [("warmup", 1), ("denoise", None)]  # warmup_epoch 0 -> 1
    res = tr.fit()
    assert math.isfinite(res["test"]["mae"])
