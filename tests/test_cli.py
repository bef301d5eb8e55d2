"""CLI commands that must stay light, and the JSON Schema."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, run_cli

EXAMPLES = [os.path.join(REPO, "examples", f) for f in sorted(os.listdir(os.path.join(REPO, "examples")))
            if f.endswith(".yaml")]


@pytest.mark.parametrize("argv", [["plugins"], ["validate", os.path.join(REPO, "examples", "baseline.yaml")],
                                  ["list"], ["schema"]])
def test_light_commands_do_not_import_torch(argv):
    code = ("import sys; from mmcore.cli import main; rc = main(%r); "
            "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)" % (argv,))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_list_filters_by_kind_and_pattern(capsys):
    code, out, _ = run_cli(["list", "fuser", "m*"], capsys)
    assert code == 0
    names = [line.split()[1] for line in out.splitlines()]
    assert names == sorted(n for n in names if n.startswith("m")) and "mult" in names
    assert "mmcore.builtins.fusers:MulTFuser" in out


def test_list_unknown_kind_is_a_user_error(capsys):
    code, _, err = run_cli(["list", "alignr"], capsys)
    assert code == 2 and "unknown kind 'alignr'" in err


def test_schema_is_valid_json_schema_and_accepts_the_examples(capsys):
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema not installed (pip install jsonschema)")
    import yaml

    code, out, _ = run_cli(["schema"], capsys)
    schema = json.loads(out)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in EXAMPLES:
        with open(path) as f:
            spec = yaml.safe_load(f)
        from mmcore.spec import load_spec
        from mmcore.errors import SpecError

        try:
            load_spec(path)
        except SpecError:
            continue  # an example needing an uninstalled plugin is not expected to validate here
        errors = list(validator.iter_errors(spec))
        assert not errors, f"{path}: {errors[0].message}"


def test_schema_rejects_a_bad_param(capsys):
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema not installed (pip install jsonschema)")
    _, out, _ = run_cli(["schema"], capsys)
    bad = {"modalities": {"text": {}}, "encoders": {"default": {"name": "linear"}},
           "fuser": {"name": "mult", "params": {"layers": 0}}, "head": {"name": "regression_mlp"}}
    assert list(jsonschema.Draft202012Validator(json.loads(out)).iter_errors(bad))


def test_every_example_validates_or_names_its_missing_plugin(capsys):
    for path in EXAMPLES:
        code, out, err = run_cli(["validate", path], capsys)
        assert code == 0 or "pip install mmcore-plugin-" in err or "pip install -e examples/" in err, err


def test_a_closed_stdout_pipe_ends_quietly():
    """`mmcore list | head -1`: the reader is gone before mmcore writes; no BrokenPipeError traceback."""
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-m", "mmcore.cli", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # like `head` exiting before the first line
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 0
    assert "BrokenPipeError" not in err and "Traceback" not in err, err
