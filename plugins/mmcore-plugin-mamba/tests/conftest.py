"""Tiny tensors in the equation tests: one torch thread (the CPU is shared); the selective-scan backends."""

import pytest
import torch

from mmcore_plugin_mamba import _cpu_kernel

torch.set_num_threads(1)


@pytest.fixture(params=["torch", "cpu_kernel"])
def backend(request) -> str:
    """Each CPU selective-scan backend; cpu_kernel skips, saying why, where the C++ kernel did not build."""
    if request.param == "cpu_kernel":
        build = _cpu_kernel.load_kernel()
        if build.lib is None:
            pytest.skip(f"the C++ kernel did not build here: {build.error}")
    return request.param
