"""The registry contract over this plugin's components, and that the hook registers exactly them."""

import os

from mmcore.registry import get_registry
from mmcore.testing.plugin_contract import PluginContract


class TestPluginContract(PluginContract):
    provider = "mmcore-plugin-ot"
    hook = "mmcore_plugin_ot.plugin"
    readme = os.path.join(os.path.dirname(__file__), "..", "README.md")
    expected = {("aligner", "relaxed_ot"), ("aligner", "sinkhorn"), ("aligner", "order_ot"),
                ("aligner", "gmm_prototype_ot"), ("loss", "mmd")}


def test_decalign_aux_losses_are_declared_with_the_paper_weights():
    entry = get_registry().get("aligner", "gmm_prototype_ot")
    assert entry.aux_losses == {"decoupling": 1.0, "prototype_ot": 0.05, "prototype_calibration": 0.05,
                                "homogeneity": 0.05}
