"""The registry contract over this plugin's components, the hook's registrations, and their docs."""

import os
import subprocess
import sys

import pytest

from mmcore.registry import get_registry
from mmcore.testing import check_component, contract_cases

PROVIDER = "mmcore-plugin-mamba"
EXPECTED = {("fuser", "interleaved_mamba"), ("aligner", "bimamba_text_centric"), ("encoder", "mamba")}
README = os.path.join(os.path.dirname(__file__), "..", "README.md")


def test_plugin_registers_exactly_its_three_components():
    assert set(contract_cases(provider=PROVIDER)) == EXPECTED


def test_importing_the_hook_does_not_import_torch():
    code = "import sys, mmcore_plugin_mamba.plugin; assert 'torch' not in sys.modules, 'torch imported'"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("kind,name", contract_cases(provider=PROVIDER))
def test_contract(kind, name):
    check_component(kind, name)


def _readme_section(name: str) -> str:
    text = open(README, encoding="utf-8").read()
    start = text.index(f"\n## {name}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


@pytest.mark.parametrize("kind,name", sorted(EXPECTED))
def test_readme_section_documents_every_param(kind, name):
    section = _readme_section(name)
    params = get_registry().get(kind, name).params
    undocumented = [f for f in params.model_fields if f"| `{f}` |" not in section]
    assert not undocumented, f"README '## {name}' has no params-table row for {undocumented}"


@pytest.mark.parametrize("kind,name", sorted(EXPECTED))
def test_readme_params_table_shows_the_registered_defaults(kind, name):
    section = _readme_section(name)
    params = get_registry().get(kind, name).params()
    for field, value in params.model_dump(mode="json").items():
        shown = "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        assert f"| `{field}` | `{shown}` |" in section, f"README '## {name}': `{field}` default should read `{shown}`"
