"""Test helpers for mmcore components, shipped for plugins and third parties.

* :func:`check_component` — the registry contract test for one (kind, name);
  :func:`check_junk_padding` — its NaN/inf-in-padding backward check on one drawn case.
* :mod:`mmcore.testing.strategies` — hypothesis strategies (marginals, costs, SPD covariances,
  padded batches) and the ``fast`` / ``thorough`` profiles.
* :func:`synthetic_batch` — a tiny padded batch with a missing modality.
* :func:`check_hook_imports_no_torch`, :func:`check_params_documented` — checks every plugin's
  tests run on its packaging and its README.
* :class:`mmcore.testing.plugin_contract.PluginContract` — those checks as a base class a plugin's
  ``tests/test_contract.py`` subclasses; ``plugins_hidden()`` — a registry of the built-ins only.
* :func:`load_reference`, :func:`assert_close`, :func:`readout` — the authors' numeric fixtures
  (``../shared/reference``) for authors-exact tests; skip with the reason when absent.
* :mod:`mmcore.testing.distributed` — ``run_distributed(spec, world_size, run_dir)``: run a spec
  under a 2-process gloo group on CPU, for plugins whose components keep state.
"""

from __future__ import annotations

from ..registry import lazy_exports

_CONTRACT = ("check_component", "check_junk_padding", "contract_cases", "synthetic_batch", "tiny_context")
_PLUGIN_CHECKS = ("check_hook_imports_no_torch", "check_params_documented", "readme_section")
_REFERENCE = ("load_reference", "assert_close", "readout", "reference_dir")
__all__ = [*_CONTRACT, *_PLUGIN_CHECKS, *_REFERENCE]


# lazy: importing mmcore.testing must not import torch
__getattr__ = lazy_exports(__name__, {**dict.fromkeys(_CONTRACT, "contract"),
                                           **dict.fromkeys(_PLUGIN_CHECKS, "plugin_checks"),
                                           **dict.fromkeys(_REFERENCE, "reference")})
