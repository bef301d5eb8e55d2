"""Checks every plugin's own tests run: its hook stays torch-free and its README documents params.

    from mmcore.testing import check_hook_imports_no_torch, check_params_documented

    def test_importing_the_hook_does_not_import_torch():
        check_hook_imports_no_torch("mmcore_plugin_mine.plugin")

    @pytest.mark.parametrize("kind,name", contract_cases(provider="mmcore-plugin-mine"))
    def test_readme_documents_every_param(kind, name):
        check_params_documented(kind, name, README)
"""

from __future__ import annotations

import subprocess
import sys

from ..registry import Registry, get_registry


def readme_section(readme_path: str, name: str) -> str:
    """The text of the ``## <name>`` section of a markdown file (up to the next ``## ``)."""
    with open(readme_path, encoding="utf-8") as f:
        text = f.read()
    start = text.find(f"\n## {name}\n")
    if start < 0:
        raise AssertionError(f"{readme_path} has no '## {name}' section")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def check_params_documented(kind: str, name: str, readme_path: str, registry: Registry | None = None) -> None:
    """The component's README section has a params-table row ``| `field` |`` for every params field."""
    section = readme_section(readme_path, name)
    params = (registry or get_registry()).get(kind, name).params
    undocumented = [f for f in params.model_fields if f"| `{f}` |" not in section]
    if undocumented:
        raise AssertionError(f"{readme_path}: '## {name}' has no params-table row for {undocumented}")


def check_hook_imports_no_torch(module: str) -> None:
    """Importing the plugin's hook module (what ``mmcore plugins`` does) must not import torch."""
    code = f"import sys, {module}; assert 'torch' not in sys.modules, 'importing {module} imported torch'"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "subprocess failed")
