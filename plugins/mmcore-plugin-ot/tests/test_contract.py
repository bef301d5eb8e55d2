"""The registry contract over this plugin's components, and that the hook registers exactly them."""

import pytest

from mmcore.registry import get_registry
from mmcore.testing import check_component, contract_cases

PROVIDER = "mmcore-plugin-ot"
EXPECTED = {("aligner", "relaxed_ot"), ("aligner", "sinkhorn"), ("aligner", "gmm_prototype_ot"), ("loss", "mmd")}


def test_plugin_registers_its_four_components():
    assert set(contract_cases(provider=PROVIDER)) == EXPECTED


def test_decalign_aux_losses_are_declared_with_the_paper_weights():
    entry = get_registry().get("aligner", "gmm_prototype_ot")
    assert entry.aux_losses == {"decoupling": 1.0, "prototype_ot": 0.05, "prototype_calibration": 0.05,
                                "homogeneity": 0.05}


def test_importing_the_hook_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, mmcore_plugin_ot.plugin; assert 'torch' not in sys.modules, 'torch imported'"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("kind,name", contract_cases(provider=PROVIDER))
def test_contract(kind, name):
    check_component(kind, name)


def _readme_section(name: str) -> str:
    import os

    text = open(os.path.join(os.path.dirname(__file__), "..", "README.md"), encoding="utf-8").read()
    start = text.index(f"\n## {name}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


@pytest.mark.parametrize("kind,name", sorted(EXPECTED))
def test_readme_section_documents_every_param(kind, name):
    section = _readme_section(name)
    params = get_registry().get(kind, name).params
    undocumented = [f for f in params.model_fields if f"| `{f}` |" not in section]
    assert not undocumented, f"README '## {name}' has no params-table row for {undocumented}"
