"""The ADL recipe end to end: the trainer runs the declared phases, each step updates only its
parameters, and the recipe trains under 2-process DDP (gloo)."""

import json
import math

import torch

from mmcore.spec import spec_from_dict

VICTIM_B = [{"type": "victim", "modality": "vision", "rate": 0.5}]
# unequal lengths (audio 9, vision 7) with per-row padding (clips of 50..100 % of the length)
SPEC = {
    "seed": 1, "modalities": {"audio": {}, "vision": {}}, "model": {"d_model": 8, "dropout": 0.0},
    "encoders": {"default": {"name": "linear"}},
    "imputer": {"name": "adl", "params": {"present": "audio", "victim": "vision", "window": 2, "hidden": 8,
                                          "warmup_epochs": 1}},
    "fuser": {"name": "concat_pool"}, "head": {"name": "regression_mlp", "params": {"hidden": 8}},
    "data": {"name": "synthetic", "params": {"n_train": 32, "n_valid": 16, "n_test": 16,
                                             "dims": {"text": 4, "audio": 6, "vision": 5},
                                             "lengths": {"text": 4, "audio": 9, "vision": 7}}},
    "missing": {"train": VICTIM_B, "eval": VICTIM_B},
    "train": {"epochs": 3, "batch_size": 16, "lr": 3e-3, "select_metric": "mae", "device": "cpu"},
}


def test_each_step_updates_only_its_parameters(tmp_path):
    from mmcore.data.load import load_dataset
    from mmcore.train.trainer import Trainer

    rs = spec_from_dict(SPEC)
    tr = Trainer.for_training(rs, load_dataset(rs), str(tmp_path), progress=False)
    assert [(p.name, p.epochs, p.select) for p in tr.phases] == [("warmup", 1, False), ("denoise", None, True)]
    model = tr.model
    fitter = {n for n, _ in model.named_parameters() if n.startswith("imputer.fitter.")}
    assert fitter, "the fitter lives under imputer.fitter.*"
    seen = []
    current = {}
    set_step = model.set_step

    def record_step(phase, step):
        current.update(phase=phase, step=step)
        set_step(phase, step)

    step = tr.optimizer.step

    def record_update(*a, **k):
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        out = step(*a, **k)
        changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
        seen.append((current["phase"], current["step"], changed))
        return out

    model.set_step, tr.optimizer.step = record_step, record_update
    res = tr.fit()
    assert math.isfinite(res["test"]["mae"])
    steps = {(ph, st) for ph, st, _ in seen}
    assert steps == {("warmup", "backbone"), ("denoise", "fitter"), ("denoise", "backbone")}
    for ph, st, changed in seen:
        if st == "fitter":
            assert changed and changed <= fitter, f"{ph}/{st} changed {sorted(changed - fitter)[:3]}"
        else:
            assert changed and not changed & fitter, f"{ph}/{st} changed the fitter"
    records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["phase"] for r in records] == ["warmup", "denoise", "denoise"]
    assert not records[0]["best"], "warm-up epochs are never selected"
    assert math.isfinite(records[-1]["train_fitter/adl_fit"]) and math.isfinite(records[-1]["train_backbone/adl_con"])


def test_recipe_trains_one_epoch_under_two_process_ddp(tmp_path):
    from mmcore.testing.distributed import run_distributed

    spec = {**SPEC, "train": {**SPEC["train"], "epochs": 1}}
    per_rank = run_distributed(spec, world_size=2, run_dir=str(tmp_path / "ddp"))
    assert len(per_rank) == 2 and per_rank[0]["test"] == per_rank[1]["test"]
    assert math.isfinite(per_rank[0]["test"]["mae"])
