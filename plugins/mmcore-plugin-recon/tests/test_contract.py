"""The registry contract over this plugin's component, its registration, and its docs page."""

import os
import subprocess
import sys

import pytest

from mmcore.registry import get_registry
from mmcore.testing import check_component, contract_cases

PROVIDER = "mmcore-plugin-recon"
EXPECTED = {("imputer", "mamba_reconstruction")}


def test_plugin_registers_exactly_its_imputer_with_the_recon_loss():
    assert set(contract_cases(provider=PROVIDER)) == EXPECTED
    assert get_registry().get("imputer", "mamba_reconstruction").aux_losses == {"recon": 1.0}


def test_importing_the_hook_does_not_import_torch():
    code = "import sys, mmcore_plugin_recon.plugin; assert 'torch' not in sys.modules, 'torch imported'"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("kind,name", sorted(EXPECTED))
def test_contract(kind, name):
    check_component(kind, name)


def _readme_section(name: str) -> str:
    text = open(os.path.join(os.path.dirname(__file__), "..", "README.md"), encoding="utf-8").read()
    start = text.index(f"\n## {name}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


@pytest.mark.parametrize("kind,name", sorted(EXPECTED))
def test_readme_section_documents_every_param(kind, name):
    section = _readme_section(name)
    params = get_registry().get(kind, name).params
    undocumented = [f for f in params.model_fields if f"| `{f}` |" not in section]
    assert not undocumented, f"README '## {name}' has no params-table row for {undocumented}"
