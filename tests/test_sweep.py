"""Sweeps: grid parsing, up-front validation, resumability, aggregation, parallel cells, the plot."""

import json
import math
import os
import shutil
import statistics
import sys

import pytest
import yaml

from conftest import run_cli, tiny_spec_dict
from mmcore.sweep import SweepError, build_variants, run_sweep
from mmcore.sweep.summary import Stat

TINY = tiny_spec_dict(seed=0, splits=(48, 16, 16), missing={"train": [{"type": "temporal", "rate": 0.2}], "eval": []},
                      train={"epochs": 2, "batch_size": 16, "lr": 3e-3, "select_metric": "mae"})
AXIS = "model.dropout=0,0.2"
RATES = [0.0, 0.5]
VARIANTS = ["model.dropout=0", "model.dropout=0.2"]


def write_spec(directory) -> str:
    path = os.path.join(str(directory), "tiny.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(TINY, f)
    return path


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """One 2-variant x 2-seed sweep with two missing rates, shared by the read-only tests."""
    d = tmp_path_factory.mktemp("sweep")
    spec = write_spec(d)
    result = run_sweep(spec, axes=[AXIS], seeds=2, missing_rates=RATES, out=str(d / "out"))
    assert not result.failed, [o.error for o in result.failed]
    return spec, str(d / "out"), result


@pytest.fixture
def no_training(monkeypatch):
    """Make any training attempt fail the test."""
    import mmcore.train.run as run_mod

    def refuse(*a, **k):
        raise AssertionError("a cell was retrained")

    monkeypatch.setattr(run_mod, "train_run", refuse)


def _cell(out, variant, seed):
    return os.path.join(out, "cells", variant, f"seed{seed}")


def _load(path):
    with open(path) as f:
        return json.load(f)


def test_every_cell_is_a_run_directory_and_the_plot_is_a_png(swept):
    _, out, result = swept
    assert [c.key for c in result.cells] == [f"{v}/seed{s}" for s in (0, 1) for v in VARIANTS]
    for v in VARIANTS:
        for s in (0, 1):
            d = _cell(out, v, s)
            assert {"spec.yaml", "results.json", "missing_rates.json", "last.pt"} <= set(os.listdir(d))
            assert yaml.safe_load(open(os.path.join(d, "spec.yaml")))["seed"] == s
    with open(os.path.join(out, "missing_rates.png"), "rb") as f:
        png = f.read()
    assert png.startswith(b"\x89PNG") and len(png) > 1000
    manifest = _load(os.path.join(out, "sweep.json"))
    assert [v["name"] for v in manifest["variants"]] == VARIANTS and manifest["seeds"] == [0, 1]
    assert all(c["status"] == "trained" for c in manifest["cells"].values())


def test_summary_is_mean_and_sample_std_of_the_cells(swept):
    _, out, _ = swept
    summary = _load(os.path.join(out, "summary.json"))
    assert summary["metric"] == "mae" and "ddof=1" in summary["std"]
    for row in summary["test"]:
        vals = [_load(os.path.join(_cell(out, row["variant"], s), "results.json"))["test"]["mae"] for s in (0, 1)]
        assert row["metrics"]["mae"]["mean"] == pytest.approx(statistics.mean(vals), rel=1e-12)
        assert row["metrics"]["mae"]["std"] == pytest.approx(statistics.stdev(vals), rel=1e-12)
    assert [(r["variant"], r["rate"]) for r in summary["rates"]] == [(v, r) for v in VARIANTS for r in RATES]
    for row in summary["rates"]:
        vals = [next(x for x in _load(os.path.join(_cell(out, row["variant"], s), "missing_rates.json"))["rows"]
                     if x["rate"] == row["rate"])["corr"] for s in (0, 1)]
        assert row["metrics"]["corr"]["mean"] == pytest.approx(statistics.mean(vals), rel=1e-12)
        assert row["metrics"]["corr"]["std"] == pytest.approx(statistics.stdev(vals), rel=1e-12)
    md = open(os.path.join(out, "summary.md")).read()
    first = summary["test"][0]["metrics"]["mae"]
    assert "ddof=1" in md and f"{first['mean']:.4f} ± {first['std']:.4f}" in md
    header = open(os.path.join(out, "summary.csv")).readline().strip().split(",")
    assert header[:6] == ["variant", "rate", "n", "seeds", "mae_mean", "mae_std"]


def test_rerun_skips_finished_cells(swept, capsys, no_training):
    spec, out, _ = swept
    before = {p: os.stat(p).st_mtime_ns for v in VARIANTS for s in (0, 1)
              for p in [os.path.join(_cell(out, v, s), "last.pt")]}
    code, stdout, _ = run_cli(["sweep", spec, "--grid", AXIS, "--seeds", "2", "--missing-rates", "0,0.5",
                               "--out", out], capsys)
    assert code == 0 and "| model.dropout=0 |" in stdout
    assert {p: os.stat(p).st_mtime_ns for p in before} == before
    manifest = _load(os.path.join(out, "sweep.json"))
    assert all(c["status"] == "skipped" for c in manifest["cells"].values())
    assert len(manifest["commands"]) == 2


def test_new_rates_are_evaluated_on_finished_cells_without_retraining(swept, tmp_path, no_training):
    spec, out, _ = swept
    copy = shutil.copytree(out, tmp_path / "out")
    res = run_sweep(spec, axes=[AXIS], seeds=2, missing_rates=[0.0, 0.3, 0.5], out=str(copy))
    assert {o.status for o in res.outcomes} == {"evaluated"}
    assert sorted({r.rate for r in res.summary.rates}) == [0.0, 0.3, 0.5]


def test_cell_with_a_checkpoint_but_no_results_resumes(swept, tmp_path):
    spec, out, _ = swept
    copy = str(shutil.copytree(out, tmp_path / "out"))
    d = _cell(copy, VARIANTS[1], 1)
    want = _load(os.path.join(d, "results.json"))["test"]
    for f in ("results.json", "missing_rates.json"):
        os.unlink(os.path.join(d, f))
    res = run_sweep(spec, axes=[AXIS], seeds=2, missing_rates=RATES, out=copy)
    status = {o.key: o.status for o in res.outcomes}
    assert status.pop(f"{VARIANTS[1]}/seed1") == "resumed" and set(status.values()) == {"skipped"}
    assert _load(os.path.join(d, "results.json"))["test"] == want


def test_a_changed_grid_in_the_same_directory_is_refused(swept):
    spec, out, _ = swept
    manifest = open(os.path.join(out, "sweep.json")).read()
    with pytest.raises(SweepError, match="(?s)different grid.*model.dropout=0.3.*continue it with its own command"):
        run_sweep(spec, axes=["model.dropout=0,0.3"], seeds=2, out=out)
    with pytest.raises(SweepError, match=r"(?s)variant 'model.dropout=0': train.epochs: 2 -> 1"):
        run_sweep(spec, axes=[AXIS], seeds=2, out=out, epochs=1)
    assert open(os.path.join(out, "sweep.json")).read() == manifest


def test_invalid_override_is_reported_before_training_naming_the_cell(tmp_path, no_training):
    spec = write_spec(tmp_path)
    with pytest.raises(SweepError) as e:
        run_sweep(spec, variants=["full:", "bad:model.dropout=2", "typo:aligner.name=identiy"], seeds=2,
                  out=str(tmp_path / "out"))
    msg = str(e.value)
    assert "4 of 6 cells have an invalid spec; nothing was trained" in msg
    assert "variant 'bad' (all 2 seeds)" in msg and "variant 'bad': model.dropout=2" in msg
    assert "variant 'typo'" in msg and "did you mean 'identity'" in msg and "'full'" not in msg
    assert not os.path.exists(tmp_path / "out")


def test_a_failing_cell_is_reported_and_the_others_finish(tmp_path, capsys, caplog):
    spec = write_spec(tmp_path)
    # a dim that disagrees with the data is only known once the cell loads it (select_metric/task mismatches
    # are caught by validation before anything trains)
    code, stdout, _ = run_cli(["sweep", spec, "--variant", "ok:", "--variant", "broken:modalities.text.dim=999",
                                 "--seeds", "1", "--epochs", "1", "--out", str(tmp_path / "out")], capsys)
    assert code == 1
    assert "1 of 2 cells failed: broken/seed0" in stdout and "| ok | 1 |" in stdout
    assert "broken seed 0: FAILED after" in caplog.text and "the spec says 999" in caplog.text
    assert "the spec says 999" in open(tmp_path / "out" / "cells" / "broken" / "seed0" / "sweep_error.txt").read()


def test_parallel_cells_give_the_same_numbers_as_serial(swept, tmp_path):
    spec, out, _ = swept
    res = run_sweep(spec, variants=["model.dropout=0"], seeds=2, out=str(tmp_path / "par"), jobs=2)
    assert not res.failed, [o.error for o in res.failed]
    for s in (0, 1):
        serial = _load(os.path.join(_cell(out, VARIANTS[0], s), "results.json"))["test"]
        parallel = _load(os.path.join(_cell(str(tmp_path / "par"), VARIANTS[0], s), "results.json"))["test"]
        assert parallel == pytest.approx(serial, rel=1e-6)


def test_missing_matplotlib_skips_the_plot_with_an_install_hint(swept, tmp_path, monkeypatch, caplog, no_training):
    spec, out, _ = swept
    copy = str(shutil.copytree(out, tmp_path / "out"))
    os.unlink(os.path.join(copy, "missing_rates.png"))
    for mod in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, mod, None)
    with caplog.at_level("WARNING", logger="mmcore.sweep"):
        res = run_sweep(spec, axes=[AXIS], seeds=2, missing_rates=RATES, out=copy)
    assert "png" not in res.paths and not os.path.exists(os.path.join(copy, "missing_rates.png"))
    assert "mmcore-lib[plots]" in caplog.text


def test_a_sweep_made_with_the_old_set_axis_spelling_continues_with_grid(swept, tmp_path, capsys, no_training):
    """Before --grid, `--set model.dropout=0,0.2 --set train.lr=0.003` was two axes (one varying); the
    directory it made continues with `--grid model.dropout=0,0.2 --set train.lr=0.003`, nothing retrained."""
    spec, out, _ = swept
    copy = str(shutil.copytree(out, tmp_path / "old"))
    manifest = _load(os.path.join(copy, "sweep.json"))
    del manifest["cli"]  # as written before --grid existed
    manifest["commands"] = [f"mmcore sweep {spec} --set {AXIS} --set train.lr=0.003 --seeds 2 --out {copy}"]
    with open(os.path.join(copy, "sweep.json"), "w") as f:
        json.dump(manifest, f)
    code, stdout, _ = run_cli(["sweep", spec, "--grid", AXIS, "--set", "train.lr=0.003", "--seeds", "2",
                               "--missing-rates", "0,0.5", "--out", copy], capsys)
    assert code == 0 and "| model.dropout=0 |" in stdout
    assert {c["status"] for c in _load(os.path.join(copy, "sweep.json"))["cells"].values()} == {"skipped"}
    # a different grid in that directory is refused with the old command respelled for today's CLI
    code, _, err = run_cli(["sweep", spec, "--grid", "model.dropout=0,0.3", "--out", copy], capsys)
    assert code == 2 and f"continue it with its own command: mmcore sweep {spec} --grid {AXIS} --set" in err


def test_sweep_set_is_a_fixed_override_and_a_list_hints_at_grid(tmp_path, capsys, no_training):
    spec = write_spec(tmp_path)
    code, _, err = run_cli(["sweep", spec, "--set", AXIS, "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "nothing was trained" in err
    assert f"did you mean --grid {AXIS} (one variant per value)?" in err
    vs = build_variants(["model.dropout=0,0.2"], None, ["train.lr=0.01"])
    assert [v.name for v in vs] == VARIANTS and all("train.lr=0.01" in v.overrides for v in vs)
    with pytest.raises(SweepError, match="given more than once"):
        build_variants(["train.lr=0.1,0.2"], None, ["train.lr=0.01"])


def test_sweep_interrupt_gives_one_instruction_the_same_command(tmp_path, monkeypatch):
    import mmcore.sweep.run as sweep_run

    def interrupted(*a, **k):
        raise KeyboardInterrupt("interrupted; continue with mmcore run x --resume")  # what a cell's run says

    monkeypatch.setattr(sweep_run, "run_tasks", interrupted)
    spec = write_spec(tmp_path)
    out = str(tmp_path / "out")
    with pytest.raises(KeyboardInterrupt) as info:
        run_sweep(spec, axes=[AXIS], seeds=1, out=out, command=["mmcore", "sweep", spec, "--grid", AXIS])
    message = str(info.value)
    assert "--resume" not in message and message.count("run the same command") == 1
    assert message.endswith(f"mmcore sweep {spec} --grid {AXIS} --out {out}")


def test_a_sweep_without_rates_names_its_plot_for_what_it_shows(swept, tmp_path):
    from mmcore.plots.missing import summary_plot_name

    assert summary_plot_name({"rates": [{"rate": 0.0}], "test": []}) == "missing_rates.png"
    assert summary_plot_name({"rates": [], "test": [{"variant": "a"}]}) == "test_by_variant.png"
    assert summary_plot_name({"rates": []}, "corr") == "test_by_variant_corr.png"


def test_variant_names_come_from_the_overrides_that_vary():
    vs = build_variants(["aligner.name=identity,identity2", "train.lr=0.01", "modalities.text={dim: 8, length: 6}"],
                        ["full:", "no_mmd:losses.mmd.weight=0;model.dropout=0"])
    assert [v.name for v in vs] == ["full,aligner.name=identity", "full,aligner.name=identity2",
                                    "no_mmd,aligner.name=identity", "no_mmd,aligner.name=identity2"]
    assert vs[2].overrides == ("losses.mmd.weight=0", "model.dropout=0", "aligner.name=identity", "train.lr=0.01",
                               "modalities.text={dim: 8, length: 6}")
    assert [v.name for v in build_variants([], ["aligner.name=identity"])] == ["aligner.name=identity"]
    assert [v.name for v in build_variants([], [])] == ["base"]
    assert build_variants(['x="a,b"'], [])[0].overrides == ('x="a,b"',)


@pytest.mark.parametrize("axes,variants,match", [
    (["seed=0,1"], [], "use --seeds"),
    (["train.lr=1,2", "train.lr=3"], [], "given more than once"),
    ([], ["a:train.lr=1", "a:train.lr=2"], "two variants have the name 'a'"),
    (["train.lr"], [], "expected KEY=VALUE"),
    (["train.lr=[1,"], [], "not valid YAML"),
])
def test_malformed_grids_are_refused(axes, variants, match):
    with pytest.raises(SweepError, match=match):
        build_variants(axes, variants)


def test_std_is_the_sample_std_and_undefined_for_one_seed():
    assert Stat([1.0, 2.0, 4.0]).std == pytest.approx(statistics.stdev([1.0, 2.0, 4.0]))
    one = Stat([0.5])
    assert one.std is None and one.format() == "0.5000" and one.as_json()["std"] is None
    assert math.isnan(Stat([]).mean)


def test_a_metric_the_cells_lack_falls_back_to_the_default_with_a_warning(swept, tmp_path, caplog, no_training):
    spec, out, _ = swept
    copy = str(shutil.copytree(out, tmp_path / "out"))
    with caplog.at_level("WARNING", logger="mmcore.sweep"):
        res = run_sweep(spec, axes=[AXIS], seeds=2, missing_rates=RATES, out=copy, metric="acc")
    assert res.summary.metric == "mae" and "no metric 'acc'" in caplog.text


def test_alignment_accuracy_becomes_table_columns(tmp_path):
    """A cell whose results.json has an alignment block adds align_* columns (mean over modalities)."""
    from types import SimpleNamespace

    from mmcore.sweep.summary import collect, format_markdown

    al = {"split": "test", "anchor": "text", "audio": {"top1": 0.5, "tokens": 4},
          "mean": {"top1": 0.5, "mass": 0.25, "uniform_top1": 0.1, "uniform_mass": 0.1, "proportional_top1": 0.3,
                   "proportional_mass": 0.2}}
    cells = []
    for seed, top1 in ((0, 0.5), (1, 0.7)):
        d = tmp_path / "cells" / "v" / f"seed{seed}"
        d.mkdir(parents=True)
        res = {"test": {"mae": 1.0 + seed}, "alignment": {**al, "mean": {**al["mean"], "top1": top1}}}
        (d / "results.json").write_text(json.dumps(res))
        cells.append(SimpleNamespace(seed=seed, variant=SimpleNamespace(name="v"), run_dir=lambda out, d=d: str(d)))
    s = collect(str(tmp_path), cells, [], None, [])
    row = s.test[0]
    assert row.metrics["align_top1"].mean == pytest.approx(0.6) and row.metrics["align_mass"].mean == 0.25
    assert "align_proportional_top1" in format_markdown(s)
