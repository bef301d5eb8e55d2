"""The registry contract over this plugin's component, its registration, and its docs page."""

import os

from mmcore.registry import get_registry
from mmcore.testing.plugin_contract import PluginContract


class TestPluginContract(PluginContract):
    provider = "mmcore-plugin-recon"
    hook = "mmcore_plugin_recon.plugin"
    readme = os.path.join(os.path.dirname(__file__), "..", "README.md")
    expected = {("imputer", "mamba_reconstruction")}


def test_the_imputer_declares_the_recon_loss():
    assert get_registry().get("imputer", "mamba_reconstruction").aux_losses == {"recon": 1.0}
