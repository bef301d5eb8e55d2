"""pytest plugin (entry point ``pytest11``): registers mmcore's hypothesis profiles.

``fast`` (default, ~50 examples) and ``thorough`` (>= 10,000 examples): choose with
``pytest --hypothesis-profile thorough``. Importing this module must stay cheap (no torch);
without hypothesis installed it does nothing.
"""

from __future__ import annotations

import importlib.util

if importlib.util.find_spec("hypothesis") is not None and importlib.util.find_spec("mmcore.testing.strategies"):
    from .strategies import register_profiles

    register_profiles()
