"""Tiny tensors in the equation tests: one torch thread (the CPU is shared), restored after each test."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one torch thread (the CPU is shared), restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
