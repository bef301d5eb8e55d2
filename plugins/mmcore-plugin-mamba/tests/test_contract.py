"""The registry contract over this plugin's components, the hook's registrations, and their docs."""

import os

import pytest

from mmcore.registry import get_registry
from mmcore.testing import readme_section
from mmcore.testing.plugin_contract import PluginContract

EXPECTED = {("fuser", "interleaved_mamba"), ("aligner", "bimamba_text_centric"), ("encoder", "mamba")}
README = os.path.join(os.path.dirname(__file__), "..", "README.md")


class TestPluginContract(PluginContract):
    provider = "mmcore-plugin-mamba"
    hook = "mmcore_plugin_mamba.plugin"
    readme = README
    expected = EXPECTED


@pytest.mark.parametrize("kind,name", sorted(EXPECTED))
def test_readme_params_table_shows_the_registered_defaults(kind, name):
    section = readme_section(README, name)
    params = get_registry().get(kind, name).params()
    for field, value in params.model_dump(mode="json").items():
        shown = "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        assert f"| `{field}` | `{shown}` |" in section, f"README '## {name}': `{field}` default should read `{shown}`"
