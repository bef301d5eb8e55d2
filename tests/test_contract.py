"""The registry contract over every registered component: built-ins and whatever is installed."""

import os

import pytest

from conftest import REPO
from mmcore.registry import get_registry
from mmcore.testing import check_component, contract_cases
from mmcore.testing.contract import ContractError


@pytest.mark.parametrize("kind,name", contract_cases())
def test_component_contract(kind, name):
    check_component(kind, name)


@pytest.mark.parametrize("kind,name", [(e.kind, e.name) for e in get_registry().entries() if e.provider == "mmcore"])
def test_builtin_has_a_docs_section(kind, name):
    with open(os.path.join(REPO, "docs", "components.md")) as f:
        assert f"## {name}" in f.read().replace("`", ""), f"docs/components.md needs a '## {name}' section"


def test_contract_catches_a_component_that_reads_padding(fresh_registry):
    from torch import nn

    import mmcore
    from mmcore.params import NoParams
    from mmcore.protocols import FuserOutput

    class LeakyParams(NoParams):
        """A fuser that sums padded positions too (must fail the contract)."""

    @mmcore.register("fuser", "leaky_test_fuser", params=LeakyParams)
    class LeakyFuser(nn.Module):
        def __init__(self, params, ctx):
            super().__init__()
            self.lin, self.out_dim = nn.Linear(ctx.d_model, 3), 3

        def forward(self, seqs, valid):
            return FuserOutput(self.lin(sum(x.sum(1) for x in seqs.values())), {})

    with pytest.raises(ContractError, match="padding invariance"):
        check_component("fuser", "leaky_test_fuser")


def test_contract_catches_a_parameter_without_gradient(fresh_registry):
    from torch import nn

    import mmcore
    from mmcore.params import NoParams
    from mmcore.protocols import AlignerOutput

    class DeadParams(NoParams):
        """An aligner with an unused parameter (must fail the contract)."""

    @mmcore.register("aligner", "dead_test_aligner", params=DeadParams)
    class DeadAligner(nn.Module):
        def __init__(self, params, ctx):
            super().__init__()
            self.unused = nn.Linear(2, 2)

        def forward(self, seqs, valid):
            return AlignerOutput(dict(seqs), dict(valid), {})

    with pytest.raises(ContractError, match="unused.weight"):
        check_component("aligner", "dead_test_aligner")


def test_contract_catches_an_undeclared_aux_loss(fresh_registry):
    from torch import nn

    import mmcore
    from mmcore.params import NoParams
    from mmcore.protocols import AlignerOutput

    class AuxParams(NoParams):
        """An aligner returning an aux loss it did not declare."""

    @mmcore.register("aligner", "aux_test_aligner", params=AuxParams)
    class AuxAligner(nn.Module):
        def __init__(self, params, ctx):
            super().__init__()

        def forward(self, seqs, valid):
            return AlignerOutput(dict(seqs), dict(valid), {"sneaky": sum(x.sum() for x in seqs.values()) * 0})

    with pytest.raises(ContractError, match="sneaky"):
        check_component("aligner", "aux_test_aligner")


def test_in_process_register_refuses_a_duplicate(fresh_registry):
    import mmcore
    from mmcore.errors import PluginError
    from mmcore.params import NoParams

    with pytest.raises(PluginError, match="duplicate aligner 'identity'"):
        mmcore.register("aligner", "identity", params=NoParams)(type("X", (), {}))
