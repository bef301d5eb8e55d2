"""Golden error messages for a corpus of malformed specs (tests/specs/bad/*.yaml).

Each ``X.yaml`` has ``X.expected``: the exact stderr of ``mmcore validate X.yaml`` with the
built-ins only. Regenerate after an intended message change with
``MMCORE_REGEN_GOLDEN=1 pytest tests/test_spec_errors.py`` and review the diff.
"""

import glob
import os
import subprocess
import sys

import pytest

from conftest import REPO, run_cli

BAD = os.path.join(REPO, "tests", "specs", "bad")
CASES = sorted(os.path.basename(p) for p in glob.glob(os.path.join(BAD, "*.yaml")))


def test_corpus_is_large_enough():
    assert len(CASES) >= 20


@pytest.mark.parametrize("name", CASES)
def test_bad_spec_gives_golden_error(name, capsys, builtins_only):
    code, out, err = run_cli(["validate", name], capsys, cwd=BAD)
    assert code == 2, f"expected exit 2, got {code}; stdout={out!r}"
    assert "Traceback" not in err
    assert err.startswith(name), "every error names the file first"
    expected_path = os.path.join(BAD, name[:-5] + ".expected")
    if os.environ.get("MMCORE_REGEN_GOLDEN"):
        with open(expected_path, "w") as f:
            f.write(err)
    with open(expected_path) as f:
        assert err == f.read()


def test_directory_is_a_clear_error(capsys, builtins_only, tmp_path):
    code, _, err = run_cli(["validate", str(tmp_path)], capsys)
    assert code == 2 and "is a directory, not a spec file" in err


def test_nonexistent_file_is_a_clear_error(capsys, builtins_only, tmp_path):
    code, _, err = run_cli(["validate", str(tmp_path / "nope.yaml")], capsys)
    assert code == 2 and "no such file" in err


def test_binary_file_is_a_clear_error(capsys, builtins_only, tmp_path):
    p = tmp_path / "x.yaml"
    p.write_bytes(b"\xff\xfe\x00garbage")
    code, _, err = run_cli(["validate", str(p)], capsys)
    assert code == 2 and "not UTF-8" in err


def test_every_problem_is_reported_at_once(capsys, builtins_only, tmp_path):
    p = tmp_path / "many.yaml"
    p.write_text("modalities: {text: {dim: 8}}\nencoders: {default: {name: linar}}\n"
                 "fuser: {name: mult, params: {layres: 1}}\nhead: {name: regression_mlp, params: {loss: l3}}\n")
    code, _, err = run_cli(["validate", str(p)], capsys)
    assert code == 2
    lines = [ln for ln in err.splitlines() if ": error: " in ln]
    assert [ln.split(": error: ")[1].split(":")[0] for ln in lines] == [
        "encoders.default.name", "fuser.params.layres", "head.params.loss"]


def test_cli_exit_code_and_no_traceback_in_a_real_process(tmp_path):
    p = tmp_path / "typo.yaml"
    p.write_text("modalities: {text: {dim: 8}}\nencoders: {default: {name: linear}}\n"
                 "aligner: {name: relaxd_ot}\nfuser: {name: concat_pool}\nhead: {name: regression_mlp}\n")
    env = dict(os.environ, MMCORE_LOAD_PLUGINS="")
    r = subprocess.run([sys.executable, "-m", "mmcore.cli", "validate", str(p)], capture_output=True, text=True, env=env)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert f"{p}:3:17: error: aligner.name: unknown aligner 'relaxd_ot'" in r.stderr
    assert "did you mean 'relaxed_ot'?" in r.stderr and "pip install mmcore-plugin-ot" in r.stderr


def test_debug_flag_shows_the_traceback(tmp_path):
    p = tmp_path / "e.yaml"
    p.write_text("")
    r = subprocess.run([sys.executable, "-m", "mmcore.cli", "--debug", "run", str(p)], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" in r.stderr and "the spec is empty" in r.stderr


def test_invalid_params_do_not_make_the_components_aux_losses_unknown(tmp_path, fresh_registry):
    """A component whose params are invalid still declares its aux losses: one error, not a spurious second."""
    from pydantic import Field

    import mmcore
    from mmcore.errors import SpecError
    from mmcore.params import ComponentParams
    from mmcore.spec import load_spec

    class AuxParams(ComponentParams):
        """An imputer with a bounded knob and an aux loss."""

        knob: int = Field(1, ge=0, description="A knob.")

    @mmcore.register("imputer", "aux_test_imputer", params=AuxParams, aux_losses={"aux_test": 1.0})
    class AuxImputer:  # never built: validation only
        pass

    p = tmp_path / "s.yaml"
    p.write_text("modalities: {text: {dim: 4}, audio: {dim: 3}}\nencoders: {default: {name: linear}}\n"
                 "imputer: {name: aux_test_imputer, params: {knob: -1}}\nfuser: {name: concat_pool}\n"
                 "head: {name: regression_mlp}\nlosses: {aux_test: {weight: 0.5}}\n")
    with pytest.raises(SpecError) as e:
        load_spec(str(p))
    assert [i.path for i in e.value.issues] == ["imputer.params.knob"], str(e.value)
