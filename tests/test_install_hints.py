"""Install hints name the distribution and, from a source checkout, the local command that works there.

That the local command really installs the plugin is checked end to end by scripts/index_install_check.py
(CI): it runs the hint's command in a fresh virtual environment.
"""

import os
import sys

import pytest

from conftest import REPO, run_cli
from mmcore import registry
from mmcore.registry import KNOWN_PROVIDERS, PLUGIN_REQUIRES, install_hint

RECIPE = ("modalities: {text: {dim: 4}, audio: {dim: 3}}\nencoders: {default: {name: linear}}\n"
          "imputer: {name: adl}\nfuser: {name: mean}\nhead: {name: regression_mlp}\n")


def test_hint_from_the_checkout_root_gives_the_local_command_with_the_plugins_it_needs(monkeypatch):
    monkeypatch.chdir(REPO)
    assert install_hint("mmcore-plugin-adl") == (
        "pip install mmcore-plugin-adl\n  or, from this source checkout: "
        "pip install -c constraints.txt -e plugins/mmcore-plugin-ot -e plugins/mmcore-plugin-adl")


def test_hint_from_a_subfolder_is_relative_to_it(monkeypatch):
    monkeypatch.chdir(os.path.join(REPO, "tests", "specs"))
    assert install_hint("mmcore-plugin-ot").endswith(
        "pip install -c ../../constraints.txt -e ../../plugins/mmcore-plugin-ot")


def test_hint_outside_any_checkout_names_only_the_distribution(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(registry, "_package_checkout", lambda: str(tmp_path))  # as a non-editable install
    assert install_hint("mmcore-plugin-recon") == "pip install mmcore-plugin-recon"


def test_hint_elsewhere_points_at_the_checkout_mmcore_runs_from(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(registry, "_package_checkout", lambda: REPO)  # an editable install from REPO
    hint = install_hint("mmcore-plugin-recon")
    mamba, recon = (os.path.join(REPO, "plugins", d) for d in ("mmcore-plugin-mamba", "mmcore-plugin-recon"))
    assert hint.endswith(f"pip install -c {os.path.join(REPO, 'constraints.txt')} -e {mamba} -e {recon}"), hint


def test_spec_error_carries_both_commands(monkeypatch, tmp_path, capsys, builtins_only):
    spec = tmp_path / "s.yaml"
    spec.write_text(RECIPE)
    monkeypatch.chdir(REPO)
    code, _, err = run_cli(["validate", str(spec)], capsys)
    assert code == 2
    assert "which is not installed; run: pip install mmcore-plugin-adl\n" in err
    assert "  or, from this source checkout: pip install -c constraints.txt -e plugins/mmcore-plugin-ot " \
           "-e plugins/mmcore-plugin-adl\n" in err


def test_known_providers_and_plugin_requires_match_the_pyprojects():
    """The static tables in the core agree with the plugins' own metadata."""
    if sys.version_info < (3, 11):
        pytest.skip("tomllib needs Python 3.11")
    import tomllib

    for dist in sorted(set(KNOWN_PROVIDERS.values())):
        path = os.path.join(REPO, "plugins", dist, "pyproject.toml")
        with open(path, "rb") as f:
            project = tomllib.load(f)["project"]
        assert project["name"] == dist
        first_party = tuple(d for d in project["dependencies"] if d.startswith("mmcore-plugin-"))
        assert PLUGIN_REQUIRES.get(dist, ()) == first_party, f"{path}: dependencies {project['dependencies']}"
