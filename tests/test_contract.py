"""The registry contract over every registered component: built-ins and whatever is installed."""

import os

import pytest
from torch import nn

import mmcore
from conftest import REPO
from mmcore.params import NoParams
from mmcore.protocols import AlignerOutput, FuserOutput
from mmcore.registry import BUILTIN_PROVIDER, get_registry
from mmcore.testing import check_component, contract_cases
from mmcore.testing.contract import ContractError


@pytest.mark.parametrize("kind,name", contract_cases())
def test_component_contract(kind, name):
    check_component(kind, name)


BUILTINS = [(e.kind, e.name) for e in get_registry().entries() if e.provider == BUILTIN_PROVIDER]


def test_the_builtins_are_found():
    assert len(BUILTINS) >= 16  # the docs-section test below must never run over an empty list


@pytest.mark.parametrize("kind,name", BUILTINS)
def test_builtin_has_a_docs_section(kind, name):
    with open(os.path.join(REPO, "docs", "components.md")) as f:
        assert f"## {name}" in f.read().replace("`", ""), f"docs/components.md needs a '## {name}' section"


class LeakyFuser(nn.Module):
    """A fuser that sums padded positions too (must fail the contract)."""

    def __init__(self, params, ctx):
        super().__init__()
        self.lin, self.out_dim = nn.Linear(ctx.d_model, 3), 3

    def forward(self, seqs, valid):
        return FuserOutput(self.lin(sum(x.sum(1) for x in seqs.values())), {})


class DeadAligner(nn.Module):
    """An aligner with an unused parameter (must fail the contract)."""

    def __init__(self, params, ctx):
        super().__init__()
        self.unused = nn.Linear(2, 2)

    def forward(self, seqs, valid):
        return AlignerOutput(dict(seqs), dict(valid), {})


class AuxAligner(nn.Module):
    """An aligner returning an aux loss it did not declare (must fail the contract)."""

    def __init__(self, params, ctx):
        super().__init__()

    def forward(self, seqs, valid):
        return AlignerOutput(dict(seqs), dict(valid), {"sneaky": sum(x.sum() for x in seqs.values()) * 0})


@pytest.mark.parametrize("kind,name,cls,match", [
    ("fuser", "leaky_test_fuser", LeakyFuser, "padding invariance"),
    ("aligner", "dead_test_aligner", DeadAligner, "unused.weight"),
    ("aligner", "aux_test_aligner", AuxAligner, "sneaky"),
], ids=["reads_padding", "parameter_without_gradient", "undeclared_aux_loss"])
def test_contract_catches_a_broken_component(fresh_registry, kind, name, cls, match):
    mmcore.register(kind, name, params=NoParams)(cls)
    with pytest.raises(ContractError, match=match):
        check_component(kind, name)


def test_in_process_register_refuses_a_duplicate(fresh_registry):
    import mmcore
    from mmcore.errors import PluginError
    from mmcore.params import NoParams

    with pytest.raises(PluginError, match="duplicate aligner 'identity'"):
        mmcore.register("aligner", "identity", params=NoParams)(type("X", (), {}))
