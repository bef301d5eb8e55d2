"""The command line as a new user meets it: help everywhere, global options anywhere, output that
says what it wrote and prints each result once (issue 21)."""

import argparse
import importlib
import json
import os
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, run_cli, tiny_spec_dict
from mmcore import plugins
from mmcore.cli import build_parser
from mmcore.registry import reset_registry

TINY = tiny_spec_dict(seed=0, splits=(32, 16, 16), train={"epochs": 1, "batch_size": 16, "select_metric": "mae"})


def _parsers(parser, path=("mmcore",)):
    """Every (command path, parser) of the tree, the top level included."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, path + (name,))


def test_every_command_has_a_description_and_every_argument_has_help():
    missing = []
    for path, parser in _parsers(build_parser()):
        if not parser.description:
            missing.append(f"{' '.join(path)}: no description")
        for action in parser._actions:
            if action.help is None or action.help == argparse.SUPPRESS or not action.help.strip():
                missing.append(f"{' '.join(path)}: {action.option_strings or action.dest} has no help")
            if isinstance(action, argparse._SubParsersAction):
                listed = {a.dest: a.help for a in action._choices_actions}
                missing += [f"{' '.join(path)} {name}: no line in the command list"
                            for name in action.choices if not listed.get(name)]
    assert not missing, "\n".join(missing)
    assert len(list(_parsers(build_parser()))) >= 13  # mmcore, 9 commands, data's 3 actions


@pytest.mark.parametrize("argv", [["validate", "SPEC", "--debug"], ["validate", "SPEC", "-q"],
                                  ["--debug", "validate", "SPEC"], ["data", "list", "--quiet", "--json"]])
def test_global_options_are_accepted_before_or_after_the_command(argv, capsys):
    spec = os.path.join(REPO, "examples", "baseline.yaml")
    args = build_parser().parse_args([spec if a == "SPEC" else a for a in argv])
    assert args.debug == ("--debug" in argv) and args.quiet == ("-q" in argv or "--quiet" in argv)


def test_debug_after_the_command_shows_the_traceback_of_a_user_error(tmp_path, capsys):
    code, _, err = run_cli(["list", "alignr", "--debug"], capsys)
    assert code == 2 and "Traceback" in err and "unknown kind 'alignr'" in err
    code, _, err = run_cli(["list", "alignr"], capsys)
    assert code == 2 and "Traceback" not in err


@pytest.mark.parametrize("argv,usage", [([], "usage: mmcore "), (["data"], "usage: mmcore data ")])
def test_a_command_without_its_sub_command_prints_help_and_succeeds(argv, usage, capsys):
    code, out, err = run_cli(argv, capsys)
    assert code == 0 and out.startswith(usage) and ("commands:" in out or "actions:" in out)
    assert err == ""


def test_list_columns_stay_aligned_with_a_long_provider_name(monkeypatch, capsys):
    class Dist:
        name, version = "mmcore-plugin-with-a-really-quite-long-distribution-name", "1.0"

    class EntryPoint:
        dist, name = Dist(), "long"

        def load(self):
            return importlib.import_module("plugins.good_plugin")

    monkeypatch.setattr(plugins, "iter_entry_points", lambda: [EntryPoint()])
    reset_registry()
    try:
        code, out, _ = run_cli(["list", "aligner"], capsys)
    finally:
        reset_registry()
    lines = out.splitlines()
    assert code == 0 and any(Dist.name in line for line in lines)
    targets = {line.index(line.split()[-1]) for line in lines}  # where the module:Class column starts
    assert len(targets) == 1, out


def test_schema_goes_to_stdout_or_to_the_named_file_and_says_where(tmp_path, capsys):
    code, out, _ = run_cli(["schema"], capsys)
    assert code == 0 and json.loads(out)["title"]
    target = tmp_path / "editor" / "mmcore-schema.json"
    code, out, err = run_cli(["schema", "-o", str(target)], capsys)
    assert code == 0 and out == "" and err.strip() == f"wrote {target}"
    assert json.loads(target.read_text())["title"]


def test_plot_without_matplotlib_fails_before_loading_the_run(monkeypatch, tmp_path, capsys):
    import mmcore.train.run as run_mod

    def refuse(*a, **k):
        raise AssertionError("the run was loaded before matplotlib was checked")

    monkeypatch.setattr(run_mod, "load_run", refuse)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, _, err = run_cli(["plot", "ot-plan", str(tmp_path)], capsys)
    assert code == 2 and "matplotlib is not installed" in err and "-e '.[plots]'" in err


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A one-epoch run through the real command (a subprocess, so stdout and stderr are the user's)."""
    d = tmp_path_factory.mktemp("cli")
    spec = d / "tiny.yaml"
    spec.write_text(yaml.safe_dump(TINY))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "mmcore.cli", "run", str(spec), "--out", str(d / "run"), "--no-progress"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    return d / "run", r


def test_run_prints_the_test_metrics_once(tiny_run):
    run_dir, r = tiny_run
    both = r.stdout + r.stderr
    assert sum("corr=" in line and "test" in line for line in both.splitlines()) == 1, both
    assert "test: mae=" in r.stdout
    assert "(phase train) train task=" in r.stderr and "[train]" not in both
    assert "test (best epoch 1)" in (run_dir / "train.log").read_text()  # the log keeps them


def test_eval_across_rates_says_which_files_it_wrote(tiny_run, capsys):
    run_dir, _ = tiny_run
    code, out, _ = run_cli(["eval", str(run_dir), "--missing-rates", "0,0.5"], capsys)
    written = [os.path.join(str(run_dir), f) for f in ("missing_rates.csv", "missing_rates.json")]
    assert code == 0 and out.strip().splitlines()[-1] == f"wrote {', '.join(written)}"
    assert all(os.path.exists(p) for p in written)
    code, out, _ = run_cli(["eval", str(run_dir), "--missing-rates", "0", "--split", "valid"], capsys)
    assert code == 0 and out.strip().endswith("missing_rates_valid.json")
    assert json.load(open(written[1]))["split"] == "test"  # the valid table did not replace test's
