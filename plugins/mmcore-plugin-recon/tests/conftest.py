"""Tiny tensors only: one torch thread, since extra threads add only synchronisation on shared CI cores
(measured: one epoch of the interleaved-Mamba spec took 12 s with 2 threads on a loaded 2-core machine, 0.2 s with 1)."""

import torch

torch.set_num_threads(1)
