"""Hypothesis profiles: ``fast`` by default, ``--hypothesis-profile thorough`` (or HYPOTHESIS_PROFILE)."""

from __future__ import annotations

import os

from hypothesis import settings

from mmcore.testing.strategies import register_profiles

register_profiles()
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))

# These tests use tiny tensors: one thread avoids OpenMP spin-waiting on a shared, oversubscribed
# machine (measured here: 2 threads made a B=4, T=8 forward 80x slower than 1 thread under load).
import torch  # noqa: E402

torch.set_num_threads(1)
