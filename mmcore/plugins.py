"""Plugin discovery and isolation (torch-free).

Plugins are modules named by entry points in the ``mmcore`` group, each implementing the
``register_components(register)`` hook (see :mod:`mmcore.hookspecs`). Each is loaded and
called on its own: an import error, a hook with a bad signature, or a hook that raises is
recorded as a failed :class:`PluginInfo` (distribution, version, entry point, error) and
skipped; the others load. The built-in components go through the same hook.

Plugin API: the entry-point module declares the API it targets (``MMCORE_PLUGIN_API = "1.0"``, see
:mod:`mmcore.hookspecs`); one that targets an API this core does not provide is skipped before its hook
runs, its status naming both versions. A module that declares none is loaded (shown as not declared).

Environment:
    ``MMCORE_LOAD_PLUGINS``: ``""`` loads built-ins only; ``"a,b"`` loads only those distributions.
    ``MMCORE_TRACE_PLUGINS=1``: log every registration.
    ``MMCORE_PLUGIN_TIMEOUT``: seconds a plugin's import may take (default 60); a slower one is
    reported and skipped instead of holding up every command (its import goes on in the background).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError
from . import registry as _registry_mod
from .hookspecs import PLUGIN_API, PLUGIN_API_ATTRIBUTE, api_mismatch, parse_api
from .registry import BUILTIN_PROVIDER, DISTRIBUTION, PluginStatus, Registry

log = logging.getLogger("mmcore.plugins")

ENTRY_POINT_GROUP = "mmcore"


@dataclass
class PluginInfo:
    """What one plugin distribution contributed, or why it failed."""

    dist: str
    version: str
    entry_point: str
    status: PluginStatus = field(default_factory=PluginStatus.ok)  # its text is what `mmcore plugins` prints
    components: dict[str, list[str]] = field(default_factory=dict)
    builtin: bool = False
    error: BaseException | None = None
    #: the plugin API its module declares (``MMCORE_PLUGIN_API``); None when it declares none or was not imported
    api: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"name": self.dist, "version": self.version, "entry_point": self.entry_point,
                "builtin": self.builtin, "plugin_api": self.api, "status": self.status,
                "components": self.components}


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}".rstrip(": ")


def _selected(dist: str, only: list[str] | tuple[str, ...] | None) -> bool:
    env = os.environ.get("MMCORE_LOAD_PLUGINS")
    norm = dist.lower().replace("_", "-")
    if env is not None:
        allowed = {p.strip().lower().replace("_", "-") for p in env.split(",") if p.strip()}
        if norm not in allowed:
            return False
    if only is not None:
        return norm in {p.lower().replace("_", "-") for p in only}
    return True


def iter_entry_points() -> list[metadata.EntryPoint]:
    """Entry points of the ``mmcore`` group, sorted by distribution then name (deterministic)."""
    eps = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    return sorted(eps, key=lambda ep: ((ep.dist.name if ep.dist else ""), ep.name))


def new_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("mmcore")
    pm.add_hookspecs(hookspecs)
    return pm


def register_plugin(registry: Registry, pm: pluggy.PluginManager, module: Any, *, dist: str,
                    version: str, entry_point: str, builtin: bool = False) -> PluginInfo:
    """Register one plugin object and call its hook in isolation; never raises for plugin faults.

    Registrations are staged while the hook runs and committed only if it returns. A duplicate
    (kind, name) is refused individually and recorded on the plugin's status and in
    ``registry.conflicts``, so a spec that uses the name gets an error naming both providers.
    """
    info = PluginInfo(dist=dist, version=version, entry_point=entry_point, builtin=builtin)
    declared = getattr(module, PLUGIN_API_ATTRIBUTE, None)
    info.api = str(declared) if declared is not None else None
    problem = incompatible_api(dist, version, declared) if declared is not None else None
    if problem is not None:  # skipped before its hook runs: an API it does not expect could misbehave
        info.status, info.error = PluginStatus.error(problem), PluginError(problem)
        log.warning("plugin %s %s (entry point %r) skipped: %s", dist, version, entry_point, problem)
        registry.plugins.append(info)
        return info
    staged = []

    def register(kind, name, factory, params, *, description=None, aux_losses=None):
        staged.append(registry.make_entry(kind, name, factory, params, description=description,
                                          aux_losses=aux_losses, provider=dist, version=version))

    try:
        pm.register(module, name=f"{dist}:{entry_point}")
        impls = [i for i in pm.hook.register_components.get_hookimpls() if i.plugin is module]
        if not impls:
            raise PluginError(f"module {getattr(module, '__name__', module)!r} implements no mmcore hook "
                              "(expected @hookimpl def register_components(register))")
        for impl in impls:
            impl.function(**{a: register for a in impl.argnames})
    except Exception as exc:  # the plugin boundary: the only broad catch; the exception is kept
        info.status, info.error = PluginStatus.error(_one_line(exc)), exc
        log.warning("plugin %s %s (entry point %r) failed to load: %s", dist, version, entry_point, _one_line(exc))
        log.debug("".join(traceback.format_exception(exc)))
        if pm.is_registered(module):
            pm.unregister(module)
        registry.plugins.append(info)
        return info
    for entry in staged:
        try:
            registry.add(entry)
        except PluginError as exc:
            info.status = PluginStatus.error(str(exc))
            log.warning("plugin %s: %s", dist, exc)
            continue
        info.components.setdefault(entry.kind, []).append(entry.name)
        if os.environ.get("MMCORE_TRACE_PLUGINS"):
            log.warning("mmcore trace: %s registered %s %r (%s)", dist, entry.kind, entry.name, entry.target)
    registry.plugins.append(info)
    return info


def incompatible_api(dist: str, version: str, declared: object) -> str | None:
    """The one-line reason why a plugin declaring plugin API ``declared`` is skipped, with the fix; None if it loads."""
    from . import __version__

    why = api_mismatch(declared)
    if why is None:
        return None
    want, have = parse_api(declared), parse_api(PLUGIN_API)
    head = f"incompatible plugin API: {dist} {version} targets mmcore plugin API {declared}, " \
           f"but {DISTRIBUTION} {__version__} provides plugin API {PLUGIN_API}"
    if want is None:
        return f"{dist} {version}: {why}; its author must fix the declaration"
    if want > have:
        return f"{head}; upgrade the core (pip install -U {DISTRIBUTION}) or install a release of {dist} made for {PLUGIN_API}"
    return f"{head}; upgrade the plugin (pip install -U {dist}) or use a release of {DISTRIBUTION} with plugin API {want[0]}.x"


DEFAULT_IMPORT_TIMEOUT = 60.0


def _import_timeout() -> float:
    try:
        return float(os.environ.get("MMCORE_PLUGIN_TIMEOUT", DEFAULT_IMPORT_TIMEOUT))
    except ValueError:
        log.warning("MMCORE_PLUGIN_TIMEOUT=%r is not a number of seconds; using %g",
                    os.environ["MMCORE_PLUGIN_TIMEOUT"], DEFAULT_IMPORT_TIMEOUT)
        return DEFAULT_IMPORT_TIMEOUT


def load_entry_point(ep: metadata.EntryPoint, timeout: float) -> Any:
    """``ep.load()`` on a worker thread; :class:`PluginError` if it takes longer than ``timeout`` seconds.

    Why a thread: an import cannot be interrupted safely, but the caller need not wait for it. A
    plugin whose import hangs is reported and skipped; its import goes on in a daemon thread that
    does not keep the process alive.
    """
    box: dict[str, Any] = {}

    def work() -> None:
        me = threading.get_ident()
        _registry_mod._loader_threads.add(me)  # @mmcore.register during this import must not wait on the registry
        try:
            box["module"] = ep.load()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc
        finally:
            _registry_mod._loader_threads.discard(me)

    t0 = time.perf_counter()
    worker = threading.Thread(target=work, name=f"mmcore-plugin-import:{ep.name}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise PluginError(f"importing it took more than {timeout:g} s (MMCORE_PLUGIN_TIMEOUT); skipped — a plugin's "
                          "hook module should import quickly (keep torch out of it: register classes with mmcore.lazy)")
    if "error" in box:
        raise box["error"]
    elapsed = time.perf_counter() - t0
    if elapsed > 5.0:
        log.warning("plugin entry point %r took %.1f s to import; keep heavy imports out of its hook module",
                    ep.name, elapsed)
    return box["module"]


def load_plugins(registry: Registry, only: list[str] | tuple[str, ...] | None = None) -> list[PluginInfo]:
    """Fill ``registry`` with the built-ins, then every selected installed plugin, each isolated."""
    from . import __version__
    from .builtins import plugin as builtin_plugin

    pm = new_plugin_manager()
    register_plugin(registry, pm, builtin_plugin, dist=BUILTIN_PROVIDER, version=__version__,
                    entry_point="builtins", builtin=True)
    for ep in iter_entry_points():
        dist = ep.dist.name if ep.dist else ep.name
        version = ep.dist.version if ep.dist else ""
        if not _selected(dist, only):
            continue
        try:
            module = load_entry_point(ep, _import_timeout())
        except Exception as exc:  # the plugin boundary: report and go on
            info = PluginInfo(dist, version, ep.name, status=PluginStatus.error(_one_line(exc)), error=exc)
            log.warning("plugin %s %s (entry point %r) failed to load: %s", dist, version, ep.name, _one_line(exc))
            log.debug("".join(traceback.format_exception(exc)))
            registry.plugins.append(info)
            continue
        register_plugin(registry, pm, module, dist=dist, version=version, entry_point=ep.name)
    return registry.plugins
