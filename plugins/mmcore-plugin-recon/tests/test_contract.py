"""The registry contract over this plugin's component, its registration, and its docs page."""

import os

import pytest

from mmcore.registry import get_registry
from mmcore.testing import check_component, check_hook_imports_no_torch, check_params_documented, contract_cases

PROVIDER = "mmcore-plugin-recon"
EXPECTED = {("imputer", "mamba_reconstruction")}


def test_plugin_registers_exactly_its_imputer_with_the_recon_loss():
    assert set(contract_cases(provider=PROVIDER)) == EXPECTED
    assert get_registry().get("imputer", "mamba_reconstruction").aux_losses == {"recon": 1.0}


def test_importing_the_hook_does_not_import_torch():
    check_hook_imports_no_torch("mmcore_plugin_recon.plugin")


@pytest.mark.parametrize("kind,name", sorted(EXPECTED))
def test_contract(kind, name):
    check_component(kind, name)


@pytest.mark.parametrize("kind,name", sorted(EXPECTED))
def test_readme_section_documents_every_param(kind, name):
    check_params_documented(kind, name, os.path.join(os.path.dirname(__file__), "..", "README.md"))
