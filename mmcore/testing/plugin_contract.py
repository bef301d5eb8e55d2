"""The tests every plugin's ``tests/test_contract.py`` runs, as a base class; and a registry without plugins.

    import os
    from mmcore.testing.plugin_contract import PluginContract

    class TestPluginContract(PluginContract):
        provider = "mmcore-plugin-mine"
        hook = "mmcore_plugin_mine.plugin"
        readme = os.path.join(os.path.dirname(__file__), "..", "README.md")
        expected = {("aligner", "mine")}

pytest collects the inherited tests: the plugin registers exactly ``expected``; importing its hook
does not import torch; :func:`~mmcore.testing.check_component` passes for each registered component;
each expected component's README section has a params-table row for every field.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

from ..registry import reset_registry
from .plugin_checks import check_hook_imports_no_torch, check_params_documented


class PluginContract:
    """Base class of a plugin's contract tests; a subclass named ``Test*`` sets the four attributes below."""

    provider: str  #: the distribution, e.g. "mmcore-plugin-ot"
    hook: str  #: the module holding the hook, e.g. "mmcore_plugin_ot.plugin"
    readme: str  #: path of the plugin's README.md
    expected: set[tuple[str, str]]  #: the (kind, name) pairs the plugin registers

    def pytest_generate_tests(self, metafunc):
        """``(kind, name)``: every registered component for the contract, every expected one for the README."""
        if "kind" in metafunc.fixturenames:
            from .contract import contract_cases

            registered = metafunc.function.__name__ == "test_contract"
            metafunc.parametrize("kind,name", contract_cases(provider=self.provider) if registered
                                 else sorted(self.expected))

    def test_registers_exactly_the_expected_components(self):
        from .contract import contract_cases

        assert set(contract_cases(provider=self.provider)) == set(self.expected)

    def test_importing_the_hook_does_not_import_torch(self):
        check_hook_imports_no_torch(self.hook)

    def test_contract(self, kind, name):
        from .contract import check_component

        check_component(kind, name)

    def test_readme_section_documents_every_param(self, kind, name):
        check_params_documented(kind, name, self.readme)


@contextmanager
def plugins_hidden():
    """Inside the block, a registry of the built-ins only (``MMCORE_LOAD_PLUGINS=""``); rebuilt after it."""
    before = os.environ.get("MMCORE_LOAD_PLUGINS")
    os.environ["MMCORE_LOAD_PLUGINS"] = ""
    reset_registry()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MMCORE_LOAD_PLUGINS", None)
        else:
            os.environ["MMCORE_LOAD_PLUGINS"] = before
        reset_registry()
