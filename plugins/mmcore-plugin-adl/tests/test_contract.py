"""The registry contract over this plugin's component, its docs, and that the hook stays torch-free."""

import os
import subprocess
import sys

import pytest

from mmcore.registry import get_registry
from mmcore.testing import check_component, contract_cases

PROVIDER = "mmcore-plugin-adl"


def test_plugin_registers_the_adl_imputer_only():
    assert contract_cases(provider=PROVIDER) == [("imputer", "adl")]


def test_aux_losses_are_declared_with_the_paper_weights():
    # L_fit has its own step (weight 1); lambda = 0.1 for L_con (Table 7 grid {0.05, 0.1})
    assert get_registry().get("imputer", "adl").aux_losses == {"adl_fit": 1.0, "adl_con": 0.1}


def test_importing_the_hook_does_not_import_torch():
    code = "import sys, mmcore_plugin_adl.plugin; assert 'torch' not in sys.modules, 'torch imported'"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("kind,name", contract_cases(provider=PROVIDER))
def test_contract(kind, name):
    check_component(kind, name)


def test_readme_documents_every_param():
    text = open(os.path.join(os.path.dirname(__file__), "..", "README.md"), encoding="utf-8").read()
    start = text.index("\n## adl\n")
    end = text.find("\n## ", start + 1)
    section = text[start:end if end > 0 else None]
    params = get_registry().get("imputer", "adl").params
    undocumented = [f for f in params.model_fields if f"| `{f}` |" not in section]
    assert not undocumented, f"README '## adl' has no params-table row for {undocumented}"


def test_present_equal_to_victim_is_rejected():
    from pydantic import ValidationError

    from mmcore_plugin_adl.params import ADLParams

    with pytest.raises(ValidationError, match="present and victim must be different"):
        ADLParams(present="audio", victim="audio")
