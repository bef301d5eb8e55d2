"""Test helpers for mmcore components, shipped for plugins and third parties.

* :func:`check_component` — the registry contract test for one (kind, name).
* :mod:`mmcore.testing.strategies` — hypothesis strategies (marginals, costs, SPD covariances,
  padded batches) and the ``fast`` / ``thorough`` profiles.
* :func:`synthetic_batch` — a tiny padded batch with a missing modality.
* :mod:`mmcore.testing.distributed` — ``run_distributed(spec, world_size, run_dir)``: run a spec
  under a 2-process gloo group on CPU, for plugins whose components keep state.
"""

from __future__ import annotations

__all__ = ["check_component", "contract_cases", "synthetic_batch", "tiny_context"]


def __getattr__(name):  # lazy: importing mmcore.testing must not import torch
    if name in __all__:
        from . import contract

        return getattr(contract, name)
    raise AttributeError(name)
