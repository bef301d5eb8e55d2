"""The trainer: artefacts, exact resume, no overwrite, early stopping, phases, clear failures."""

import json

import pytest
import torch

from conftest import PhasedScaleAligner, interrupt_after_saves
from mmcore.errors import CheckpointError, SpecError, TrainingDivergedError
from mmcore.spec import spec_from_dict
from mmcore.train import trainer as trainer_mod
from mmcore.train.run import train_run

TINY_DATA = {"name": "synthetic", "params": {"n_train": 64, "n_valid": 32, "n_test": 32,
                                            "dims": {"text": 8, "audio": 6, "vision": 5},
                                            "lengths": {"text": 6, "audio": 9, "vision": 7}}}


def tiny_spec(**changes):
    spec = {"seed": 3, "modalities": {"text": {}, "audio": {}, "vision": {}}, "model": {"d_model": 16, "dropout": 0.2},
            "encoders": {"default": {"name": "linear"}}, "fuser": {"name": "concat_pool"},
            "head": {"name": "regression_mlp", "params": {"hidden": 8}}, "data": TINY_DATA,
            "missing": {"train": [{"type": "temporal", "rate": 0.2}], "eval": []},
            "train": {"epochs": 4, "batch_size": 16, "lr": 3e-3, "select_metric": "mae"}}
    for k, v in changes.items():
        spec[k] = {**spec[k], **v} if isinstance(spec.get(k), dict) and isinstance(v, dict) else v
    return spec_from_dict(spec)


def _run(tmp_path, name="run", **changes):
    return train_run(tiny_spec(**changes), str(tmp_path / name), progress=False)


def test_run_writes_its_artefacts(tmp_path):
    res = _run(tmp_path)
    d = tmp_path / "run"
    for f in ("spec.yaml", "metrics.jsonl", "metrics.csv", "last.pt", "best.pt", "results.json", "train.log"):
        assert (d / f).exists(), f
    lines = (d / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3, 4]
    assert {"valid_mae", "valid_loss", "train_task"} <= set(json.loads(lines[0]))
    saved = json.loads((d / "results.json").read_text())
    assert saved["test"] == res["test"] and 1 <= saved["best_epoch"] <= 4
    assert "mae" in saved["baselines"]["train_mean"]


def test_same_seed_same_results(tmp_path):
    assert _run(tmp_path, "a")["test"] == _run(tmp_path, "b")["test"]


def test_resume_after_interruption_matches_uninterrupted(tmp_path, monkeypatch):
    full = _run(tmp_path, "full")
    restore = interrupt_after_saves(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, "cut")
    restore()
    resumed = train_run(tiny_spec(), str(tmp_path / "cut"), resume=True, progress=False)
    assert resumed["test"] == full["test"]
    assert resumed["best_epoch"] == full["best_epoch"]

    def history(name):
        rows = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    assert history("cut") == history("full")  # the per-epoch log is whole and identical too


def test_existing_run_is_never_overwritten(tmp_path):
    _run(tmp_path)
    before = (tmp_path / "run" / "last.pt").read_bytes()
    with pytest.raises(CheckpointError, match="already exists"):
        _run(tmp_path)
    assert (tmp_path / "run" / "last.pt").read_bytes() == before


def test_corrupt_checkpoint_gives_a_clear_error(tmp_path):
    _run(tmp_path)
    (tmp_path / "run" / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        train_run(tiny_spec(), str(tmp_path / "run"), resume=True, progress=False)


def test_resume_with_a_different_spec_is_refused(tmp_path):
    _run(tmp_path)
    with pytest.raises(CheckpointError, match="model.d_model"):
        train_run(tiny_spec(model={"d_model": 8}), str(tmp_path / "run"), resume=True, progress=False)


def test_early_stopping_uses_validation_only(tmp_path, monkeypatch):
    seen = []
    real = trainer_mod.Trainer.evaluate

    def evaluate(self, split, protocol=None):
        seen.append(split)
        out = real(self, split, protocol)
        if split == "valid":
            out["mae"] = 1.0  # never improves after the first epoch
        return out

    monkeypatch.setattr(trainer_mod.Trainer, "evaluate", evaluate)
    res = _run(tmp_path, train={"epochs": 10, "patience": 2})
    assert res["epochs_run"] == 3 and res["stopped_early"] and res["best_epoch"] == 1
    assert seen.count("test") == 1 and seen[-1] == "test"  # test evaluated once, after selection


def test_unknown_select_metric_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="(?s)unknown metric 'maee'.*did you mean 'mae'"):
        _run(tmp_path, train={"select_metric": "maee"})


def test_dims_inconsistent_with_data_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="modalities.text.dim: the spec says 10 but the data"):
        _run(tmp_path, modalities={"text": {"dim": 10}, "audio": {}, "vision": {}})


def test_divergence_is_a_clear_error_and_keeps_checkpoints(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = trainer_mod.Pipeline.total_loss

    def total_loss(self, out, labels, step=None):
        total, terms = real(self, out, labels, step)
        calls["n"] += 1
        return (total * float("nan"), terms) if calls["n"] > 8 else (total, terms)  # epoch 3 diverges

    monkeypatch.setattr(trainer_mod.Pipeline, "total_loss", total_loss)
    with pytest.raises(TrainingDivergedError, match="non-finite loss at epoch 3"):
        _run(tmp_path)
    assert (tmp_path / "run" / "last.pt").exists() and (tmp_path / "run" / "best.pt").exists()


def test_declared_phases_control_which_parameters_train(tmp_path, fresh_registry):
    import mmcore
    from mmcore.params import NoParams

    class PhasedParams(NoParams):
        """Identity aligner with a learnable scale that declares two phases (test fixture)."""

    calls = []

    @mmcore.register("aligner", "phased_test_aligner", params=PhasedParams)
    class PhasedAligner(PhasedScaleAligner):
        def set_step(self, phase, step):
            calls.append((phase, step))

    rs = tiny_spec(aligner={"name": "phased_test_aligner"}, train={"epochs": 1})
    res = train_run(rs, str(tmp_path / "warm"), progress=False)
    assert res["best_epoch"] is None  # warm-up epochs are not selectable
    assert set(calls) == {("warmup", "head_only"), ("eval", "eval")}  # evaluation is announced too
    import mmcore.train.checkpoint as ck

    state = ck.load_checkpoint(str(tmp_path / "warm" / "last.pt"))["model"]
    assert float(state["aligner.scale"]) == 1.0  # not in the warm-up step's params
    from mmcore.data.load import load_dataset

    info = load_dataset(rs).info
    torch.manual_seed(rs.spec.seed)  # as the trainer does before building
    fresh = mmcore.build(rs, data_info=info)
    assert torch.equal(state["encoders.text.proj.weight"], fresh.state_dict()["encoders.text.proj.weight"])

    calls.clear()
    res = train_run(tiny_spec(aligner={"name": "phased_test_aligner"}, train={"epochs": 2}), str(tmp_path / "both"),
                    progress=False)
    assert res["best_epoch"] == 2
    assert ("main", "aligner") in calls and ("main", "rest") in calls
    hist = [json.loads(x) for x in (tmp_path / "both" / "metrics.jsonl").read_text().splitlines()]
    assert [h["phase"] for h in hist] == ["warmup", "main"] and "train_aligner/task" in hist[1]


def test_eval_across_missing_rates_writes_a_table(tmp_path, capsys):
    from conftest import run_cli

    _run(tmp_path)
    code, out, _ = run_cli(["eval", str(tmp_path / "run"), "--missing-rates", "0,0.5"], capsys)
    assert code == 0 and "rate" in out
    rows = json.loads((tmp_path / "run" / "missing_rates.json").read_text())["rows"]
    assert [r["rate"] for r in rows] == [0.0, 0.5] and rows[0]["mae"] != rows[1]["mae"]


def test_complete_rows_step_sees_only_rows_with_every_modality(tmp_path, fresh_registry):
    from torch import nn

    import mmcore
    from mmcore.params import NoParams
    from mmcore.phases import Phase, Step
    from mmcore.protocols import AlignerOutput

    class RowsParams(NoParams):
        """Records the missing masks each step sees (test fixture)."""

    seen = []

    @mmcore.register("aligner", "rows_test_aligner", params=RowsParams)
    class RowsAligner(nn.Module):
        accepts_missing = True

        def __init__(self, params, ctx):
            super().__init__()
            self.step = None

        def forward(self, seqs, valid, missing):
            if self.training:
                seen.append((self.step, bool(torch.stack(list(missing.values())).any())))
            return AlignerOutput(dict(seqs), dict(valid), {})

        def training_phases(self, epochs):
            return [Phase("p", (Step("complete", rows="complete", lr_scale=0.5), Step("all")))]

        def set_step(self, phase, step):
            self.step = step

    rs = tiny_spec(aligner={"name": "rows_test_aligner"}, train={"epochs": 1},
                   missing={"train": [{"type": "instance", "rate": 0.5}], "eval": []})
    train_run(rs, str(tmp_path / "r"), progress=False)
    assert {s for s, _ in seen} == {"complete", "all"}
    assert not any(m for s, m in seen if s == "complete")  # never a missing modality in that step
    assert any(m for s, m in seen if s == "all")


def test_a_step_backpropagates_only_through_its_selected_terms():
    from mmcore.phases import Step
    from mmcore.pipeline import Pipeline, PipelineOutput

    pred = torch.ones(3, requires_grad=True)
    aux = torch.tensor(2.0, requires_grad=True)

    class Head(torch.nn.Module):
        def loss(self, p, y):
            return (p - y).abs().mean()

    pipe = Pipeline({}, torch.nn.Identity(), torch.nn.Identity(), Head(), loss_weights={"fit": 0.5})
    total, terms = pipe.total_loss(PipelineOutput(pred, {"fit": aux}, None), torch.zeros(3), Step("s", losses=("fit",)))
    total.backward()
    assert float(total.detach()) == 1.0 and pred.grad is None and float(aux.grad) == 0.5
    assert set(terms) == {"task", "fit"}


def test_lr_scale_scales_only_that_steps_update(tmp_path):
    from mmcore.data.load import load_dataset
    from mmcore.train.step import optimizer_step
    from mmcore.train.trainer import Trainer

    rs = tiny_spec(train={"weight_decay": 0.0})
    tr = Trainer(rs, load_dataset(rs), str(tmp_path), progress=False)
    p = next(tr.model.parameters())
    moves = []
    for scale in (1.0, 0.25):
        before = p.detach().clone()
        tr.optimizer.state.clear()  # a fresh AdamW first step moves every weight by ~lr·sign(grad)
        p.grad = torch.ones_like(p)
        optimizer_step(tr.optimizer, scale)
        moves.append((p.detach() - before).abs().max().item())
    assert abs(moves[1] / moves[0] - 0.25) < 1e-3
    assert tr.optimizer.param_groups[0]["lr"] == rs.spec.train.lr  # restored after the step


def test_aux_losses_are_weighted_into_the_total():
    """L = L_task + sum_k w_k L_k (DecAlign Eq. 13, AlignMamba Eq. 12): task |1-0| = 1, 1 + 0.05*2 + 0.07*3 = 1.31."""
    from mmcore.pipeline import Pipeline, PipelineOutput

    class Head(torch.nn.Module):
        def loss(self, p, y):
            return (p - y).abs().mean()

    pipe = Pipeline({}, torch.nn.Identity(), torch.nn.Identity(), Head(), loss_weights={"hete": 0.05, "homo": 0.07})
    aux = {"hete": torch.tensor(2.0, dtype=torch.float64), "homo": torch.tensor(3.0, dtype=torch.float64)}
    total, terms = pipe.total_loss(PipelineOutput(torch.ones(4, dtype=torch.float64), aux, None),
                                   torch.zeros(4, dtype=torch.float64))
    assert float(total) == pytest.approx(1.31, abs=1e-12)
    assert {k: float(v) for k, v in terms.items()} == {"task": 1.0, "hete": 2.0, "homo": 3.0}


class _Payload:
    """Runs a shell command when unpickled (what a malicious best.pt would hold)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_holding_code_is_refused_and_nothing_runs(tmp_path, capsys):
    """mmcore eval on a run whose best.pt carries a code-running object: a clear error, no execution."""
    from conftest import run_cli

    run = tmp_path / "run"
    train_run(tiny_spec(train={"epochs": 1}), str(run), progress=False)
    marker = tmp_path / "pwned"
    payload = torch.load(run / "best.pt", weights_only=True)
    payload["evil"] = _Payload(str(marker))
    torch.save(payload, run / "best.pt")
    code, out, err = run_cli(["eval", str(run)], capsys)
    assert code == 2 and "refused" in err and "best.pt" in err and "posix.system" in err, err
    assert not marker.exists()


def test_checkpoints_hold_only_tensors_and_plain_data(tmp_path):
    """last.pt loads with weights_only=True and no allow-listed globals at all (RNG states included)."""
    run = tmp_path / "run"
    train_run(tiny_spec(train={"epochs": 1}), str(run), progress=False)
    for name in ("last.pt", "best.pt"):
        assert torch.serialization.get_unsafe_globals_in_checkpoint(str(run / name)) == []
        torch.load(run / name, weights_only=True)


def test_a_run_that_fails_before_training_leaves_no_folder(tmp_path):
    spec = tiny_spec(data={"name": "npz", "params": {"path": str(tmp_path / "absent.npz")}})
    with pytest.raises(Exception) as e:
        train_run(spec, str(tmp_path / "run"), progress=False)
    assert "absent.npz" in str(e.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("stop_at", [0, 1])
def test_ctrl_c_message_tells_the_truth(tmp_path, monkeypatch, stop_at):
    """Interrupted in epoch 1: nothing to resume, folder removed; in epoch 2: last.pt kept, resume command."""
    from mmcore.train.run import RunInterrupted

    real = trainer_mod.Trainer._train_epoch

    def stop(self, epoch, phase):
        if epoch == stop_at:
            raise KeyboardInterrupt
        return real(self, epoch, phase)

    monkeypatch.setattr(trainer_mod.Trainer, "_train_epoch", stop)
    with pytest.raises(RunInterrupted) as e:
        _run(tmp_path)
    if stop_at == 0:
        assert "nothing to resume" in str(e.value) and not (tmp_path / "run").exists()
    else:
        assert "--resume" in str(e.value) and (tmp_path / "run" / "last.pt").exists()


def test_progress_off_a_terminal_is_a_log_line_per_interval(caplog):
    """On a terminal tqdm shows batches, rate and ETA; in logs and CI a line at most every `every` seconds."""
    import logging

    from mmcore.train.reporting import LogTicker

    ticker = LogTicker(total=10, desc="epoch 1/2 [train]", every=0.0)
    with caplog.at_level(logging.INFO, logger="mmcore.train"):
        ticker.update(3)
        ticker.update(7)  # the last batch: the epoch line follows, no progress line
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("epoch 1/2 [train]: 3/10 batches") and "s left" in lines[0]
