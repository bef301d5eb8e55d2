"""Tiny tensors only: one torch thread, since extra threads add only synchronisation on shared CI cores."""

import torch

torch.set_num_threads(1)
