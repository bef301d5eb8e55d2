"""Hypothesis profiles for the OT kernel tests: ``fast`` by default, ``--hypothesis-profile thorough``.

The profiles are registered (and ``fast`` loaded) at import, before hypothesis's pytest plugin reads
``--hypothesis-profile`` in ``pytest_configure`` — so the command-line choice wins. The
``HYPOTHESIS_PROFILE`` environment variable also selects one.
"""

from __future__ import annotations

import os

from hypothesis import settings

from mmcore.testing.strategies import register_profiles

register_profiles()
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))
