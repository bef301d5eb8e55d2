"""The registry contract over this plugin's components, and that the hook registers exactly them."""

import os

import pytest

from mmcore.registry import get_registry
from mmcore.testing import check_component, check_hook_imports_no_torch, check_params_documented, contract_cases

PROVIDER = "mmcore-plugin-ot"
README = os.path.join(os.path.dirname(__file__), "..", "README.md")
EXPECTED = {("aligner", "relaxed_ot"), ("aligner", "sinkhorn"), ("aligner", "order_ot"), ("aligner", "gmm_prototype_ot"),
            ("loss", "mmd")}


def test_plugin_registers_its_five_components():
    assert set(contract_cases(provider=PROVIDER)) == EXPECTED


def test_decalign_aux_losses_are_declared_with_the_paper_weights():
    entry = get_registry().get("aligner", "gmm_prototype_ot")
    assert entry.aux_losses == {"decoupling": 1.0, "prototype_ot": 0.05, "prototype_calibration": 0.05,
                                "homogeneity": 0.05}


def test_importing_the_hook_does_not_import_torch():
    check_hook_imports_no_torch("mmcore_plugin_ot.plugin")


@pytest.mark.parametrize("kind,name", contract_cases(provider=PROVIDER))
def test_contract(kind, name):
    check_component(kind, name)


@pytest.mark.parametrize("kind,name", sorted(EXPECTED))
def test_readme_section_documents_every_param(kind, name):
    check_params_documented(kind, name, README)
