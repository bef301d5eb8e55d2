"""The core's table of first-party components (``KNOWN_PROVIDERS``, which says what to install for an
unknown name) agrees with what the installed first-party plugins really register, both ways."""

import os
from importlib import metadata

import pytest

from mmcore.registry import KNOWN_PROVIDERS, get_registry, reset_registry

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRST_PARTY = sorted(d for d in os.listdir(os.path.join(REPO, "plugins")) if d.startswith("mmcore-plugin-"))


@pytest.fixture(scope="module")
def registry():
    reset_registry()
    yield get_registry()
    reset_registry()


def _loaded(registry, dist):
    """The dist's PluginInfo, or skip saying why its registrations cannot be checked here."""
    try:
        metadata.version(dist)
    except metadata.PackageNotFoundError:
        pytest.skip(f"{dist} is not installed")
    info = next((p for p in registry.plugins if p.dist == dist), None)
    if info is None:
        pytest.skip(f"{dist} is installed but not loaded (MMCORE_LOAD_PLUGINS={os.environ.get('MMCORE_LOAD_PLUGINS')!r})")
    if info.status.failed:
        pytest.skip(f"{dist} is installed but failed to load: {info.status}")
    return info


@pytest.mark.parametrize("kind,name", sorted(KNOWN_PROVIDERS), ids=lambda v: str(v))
def test_known_provider_registers_the_name(registry, kind, name):
    dist = KNOWN_PROVIDERS[(kind, name)]
    _loaded(registry, dist)
    entry = registry.find(kind, name)
    assert entry is not None, f"KNOWN_PROVIDERS says {dist} provides {kind} {name!r}, but it does not register it"
    assert entry.provider == dist, f"{kind} {name!r} comes from {entry.provider}, not {dist} as KNOWN_PROVIDERS says"


@pytest.mark.parametrize("dist", FIRST_PARTY)
def test_every_first_party_name_is_in_the_table(registry, dist):
    _loaded(registry, dist)
    missing = [(e.kind, e.name) for e in registry.entries() if e.provider == dist
               and KNOWN_PROVIDERS.get((e.kind, e.name)) != dist]
    assert not missing, (f"{dist} registers {missing} but mmcore.registry.KNOWN_PROVIDERS lacks them: add "
                         + ", ".join(f"({k!r}, {n!r}): {dist!r}" for k, n in missing))
