"""The registry contract over this plugin's components, the hook's registrations, and their docs."""

import os

import pytest

from mmcore.registry import get_registry
from mmcore.testing import (check_component, check_hook_imports_no_torch, check_params_documented, contract_cases,
                            readme_section)

PROVIDER = "mmcore-plugin-mamba"
EXPECTED = {("fuser", "interleaved_mamba"), ("aligner", "bimamba_text_centric"), ("encoder", "mamba")}
README = os.path.join(os.path.dirname(__file__), "..", "README.md")


def test_plugin_registers_exactly_its_three_components():
    assert set(contract_cases(provider=PROVIDER)) == EXPECTED


def test_importing_the_hook_does_not_import_torch():
    check_hook_imports_no_torch("mmcore_plugin_mamba.plugin")


@pytest.mark.parametrize("kind,name", contract_cases(provider=PROVIDER))
def test_contract(kind, name):
    check_component(kind, name)


@pytest.mark.parametrize("kind,name", sorted(EXPECTED))
def test_readme_section_documents_every_param(kind, name):
    check_params_documented(kind, name, README)


@pytest.mark.parametrize("kind,name", sorted(EXPECTED))
def test_readme_params_table_shows_the_registered_defaults(kind, name):
    section = readme_section(README, name)
    params = get_registry().get(kind, name).params()
    for field, value in params.model_dump(mode="json").items():
        shown = "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        assert f"| `{field}` | `{shown}` |" in section, f"README '## {name}': `{field}` default should read `{shown}`"
