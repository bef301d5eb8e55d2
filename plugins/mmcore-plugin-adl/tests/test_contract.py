"""The registry contract over this plugin's component, its docs, and that the hook stays torch-free."""

import os

import pytest

from mmcore.registry import get_registry
from mmcore.testing.plugin_contract import PluginContract


class TestPluginContract(PluginContract):
    provider = "mmcore-plugin-adl"
    hook = "mmcore_plugin_adl.plugin"
    readme = os.path.join(os.path.dirname(__file__), "..", "README.md")
    expected = {("imputer", "adl")}


def test_aux_losses_are_declared_with_the_paper_weights():
    # L_fit has its own step (weight 1); lambda = 0.1 for L_con (Table 7 grid {0.05, 0.1})
    assert get_registry().get("imputer", "adl").aux_losses == {"adl_fit": 1.0, "adl_con": 0.1}


def test_present_equal_to_victim_is_rejected():
    from pydantic import ValidationError

    from mmcore_plugin_adl.params import ADLParams

    with pytest.raises(ValidationError, match="present and victim must be different"):
        ADLParams(present="audio", victim="audio")
