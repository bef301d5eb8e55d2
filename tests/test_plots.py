"""Plots: alignment plans drawn from the aligner's own protocol, curves, metric vs missing rate."""

import json
import os
import sys

import pytest
import torch
from torch import nn

import mmcore
from conftest import run_cli, tiny_spec_dict
from mmcore.errors import MmcoreUserError
from mmcore.params import NoParams
from mmcore.plots import plot_missing, sample_plans
from mmcore.protocols import AlignerOutput
from mmcore.registry import reset_registry
from mmcore.spec import spec_from_dict
from mmcore.train.run import train_run

TINY = tiny_spec_dict(seed=1, splits=(32, 8, 8), missing={"train": [], "eval": [{"type": "temporal", "rate": 0.3}]},
                      train={"epochs": 1, "batch_size": 16, "lr": 3e-3, "select_metric": "mae"})


def known_plan(valid_t, valid_m):
    """(B, T_t, T_m): (i+1)(j+1) on valid pairs, normalised per row of the batch — easy to recognise."""
    B, T_t = valid_t.shape
    T_m = valid_m.shape[1]
    w = torch.arange(1, T_t + 1.0)[:, None] * torch.arange(1, T_m + 1.0)[None, :]  # (T_t, T_m)
    p = w * valid_t[:, :, None] * valid_m[:, None, :]  # (B, T_t, T_m)
    return p / p.sum((1, 2), keepdim=True)


class ToyPlanParams(NoParams):
    """Identity aligner that exposes a known plan (test fixture)."""


class ToyPlanAligner(nn.Module):
    def __init__(self, params, ctx):
        super().__init__()
        self._plans = {}

    def forward(self, seqs, valid):
        self._plans = {m: known_plan(valid["text"].float(), valid[m].float()) for m in seqs if m != "text"}
        return AlignerOutput(dict(seqs), dict(valid), {})

    def alignment_plans(self):
        return self._plans


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two finished 1-epoch runs: one with the toy plan aligner (registered in-process), one identity."""
    reset_registry()
    mmcore.register("aligner", "toy_plan_aligner", params=ToyPlanParams)(ToyPlanAligner)
    d = tmp_path_factory.mktemp("runs")
    toy = train_run(spec_from_dict({**TINY, "aligner": {"name": "toy_plan_aligner"}}), str(d / "toy"), progress=False,
                    missing_rates=[0.0, 0.5])
    ident = train_run(spec_from_dict(TINY), str(d / "identity"), progress=False)
    yield toy["run_dir"], ident["run_dir"]
    reset_registry()


def _png(path):
    with open(path, "rb") as f:
        data = f.read()
    return data.startswith(b"\x89PNG") and len(data) > 1000


def _short_sample(run_dir):
    """A test sample whose text and audio are both shorter than the padded length (cropping shows)."""
    from mmcore.train.run import load_run

    split = load_run(run_dir).data.split("test")
    vt, va = split.valid["text"].sum(1), split.valid["audio"].sum(1)
    i = int(torch.nonzero((vt < split.valid["text"].shape[1]) & (va < split.valid["audio"].shape[1]))[0])
    return i, split.valid["text"][i:i + 1].float(), split.valid["audio"][i:i + 1].float()


def test_ot_plan_is_the_aligners_plan_on_valid_positions(runs):
    toy, _ = runs
    i, vt, va = _short_sample(toy)
    name, views = sample_plans(toy, i)
    assert name == "toy_plan_aligner" and [v.modality for v in views] == ["audio", "vision"]
    audio = views[0]
    n_t, n_a = int(vt.sum()), int(va.sum())
    assert audio.anchor == "text" and audio.plan.shape == (n_t, n_a)
    expected = known_plan(vt, va)[0, :n_t, :n_a].numpy()
    assert audio.plan == pytest.approx(expected, abs=1e-7)


def test_ot_plan_cli_writes_a_png_for_the_chosen_pair(runs, tmp_path, capsys):
    toy, _ = runs
    out = tmp_path / "plan.png"
    code, stdout, err = run_cli(["plot", "ot-plan", toy, "--sample", "2", "--pair", "audio", "-o", str(out)], capsys)
    assert code == 0 and str(out) in stdout and _png(out), err
    code, _, err = run_cli(["plot", "ot-plan", toy, "--pair", "txt"], capsys)
    assert code == 2 and "has plans for audio, vision only" in err


def test_ot_plan_of_an_aligner_without_plans_names_it_and_those_with_plans(runs, capsys):
    _, ident = runs
    code, _, err = run_cli(["plot", "ot-plan", ident, "--sample", "0"], capsys)
    assert code == 2 and "Traceback" not in err
    assert "aligner 'identity': error: it has no alignment plans" in err
    listed = next(line for line in err.splitlines() if "expose plans:" in line)
    assert "toy_plan_aligner" in listed and "identity" not in listed  # installed plugins may add others
    assert "alignment_plans(self)" in err


def test_ot_plan_sample_outside_the_test_split_is_a_user_error(runs):
    toy, _ = runs
    with pytest.raises(MmcoreUserError, match=r"--sample 8: error: the test split .* has 8 samples \(0..7\)"):
        sample_plans(toy, 8)


def test_curves_and_run_missing_plot_are_written(runs, capsys):
    toy, _ = runs
    code, stdout, _ = run_cli(["plot", "curves", toy], capsys)
    assert code == 0 and _png(os.path.join(toy, "curves.png"))
    code, _, _ = run_cli(["plot", "missing", toy, "--metric", "corr"], capsys)
    assert code == 0 and _png(os.path.join(toy, "missing_rates_corr.png"))


def _summary(rates):
    stat = lambda m, s: {"mean": m, "std": s, "values": [m]}  # noqa: E731
    test = [{"variant": v, "rate": None, "n": 2, "seeds": [0, 1], "metrics": {"mae": stat(0.8 + k / 10, 0.05)}}
            for k, v in enumerate(["full", "no_local"])]
    rows = [{"variant": v, "rate": r, "n": 2, "seeds": [0, 1], "metrics": {"mae": stat(0.8 + r, 0.05)}}
            for v in ("full", "no_local") for r in rates]
    return {"metric": "mae", "test": test, "rates": rows}


@pytest.mark.parametrize("rates", [[0.0, 0.3, 0.7], []], ids=["lines", "bars"])
def test_sweep_summary_plots_lines_over_rates_or_bars(tmp_path, rates):
    (tmp_path / "summary.json").write_text(json.dumps(_summary(rates)))
    assert _png(plot_missing(str(tmp_path)))


def test_unknown_metric_suggests_the_close_one(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps(_summary([0.0, 0.5])))
    with pytest.raises(MmcoreUserError, match="(?s)no metric 'maee'.*did you mean 'mae'"):
        plot_missing(str(tmp_path), metric="maee")


def test_directory_without_tables_says_how_to_make_one(tmp_path):
    with pytest.raises(MmcoreUserError, match="mmcore eval .* --missing-rates"):
        plot_missing(str(tmp_path))


def test_plot_without_matplotlib_is_a_user_error_with_the_install_hint(tmp_path, monkeypatch, capsys):
    (tmp_path / "summary.json").write_text(json.dumps(_summary([0.0])))
    for mod in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, mod, None)
    code, _, err = run_cli(["plot", "missing", str(tmp_path)], capsys)
    assert code == 2 and "mmcore-lib[plots]" in err
