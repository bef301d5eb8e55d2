"""Typed registries of components, one per kind, filled by plugins (torch-free).

An :class:`Entry` records a component's name, its class (or a zero-argument loader that
imports it on first use, so listing and validation never import torch), its pydantic
params model, a one-line description, the auxiliary losses it may return with their
default weights, and the distribution that provided it.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import threading
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Sequence

from pydantic import BaseModel

from ._lazy import LazyClass as LazyClass
from ._lazy import lazy as lazy
from ._lazy import lazy_exports as lazy_exports
from .errors import PluginError, UnknownComponentError

log = logging.getLogger("mmcore.registry")

KINDS: tuple[str, ...] = ("encoder", "aligner", "fuser", "imputer", "head", "loss", "dataset")

#: Components provided by first-party plugins, so an unknown name can say what to install
#: (tests/test_known_providers.py keeps it equal to what the installed plugins register).
KNOWN_PROVIDERS: dict[tuple[str, str], str] = {
    ("aligner", "relaxed_ot"): "mmcore-plugin-ot",
    ("aligner", "sinkhorn"): "mmcore-plugin-ot",
    ("aligner", "gmm_prototype_ot"): "mmcore-plugin-ot",
    ("aligner", "order_ot"): "mmcore-plugin-ot",
    ("loss", "mmd"): "mmcore-plugin-ot",
    ("fuser", "interleaved_mamba"): "mmcore-plugin-mamba",
    ("aligner", "bimamba_text_centric"): "mmcore-plugin-mamba",
    ("encoder", "mamba"): "mmcore-plugin-mamba",
    ("imputer", "adl"): "mmcore-plugin-adl",
    ("imputer", "mamba_reconstruction"): "mmcore-plugin-recon",
    **{("fuser", n): "mmcore-plugin-baselines"
       for n in ("ef_lstm", "lf_dnn", "lmf", "mfm", "mfn", "misa", "mmsa_mult", "self_mm", "tfn")},
    ("head", "mmsa_output"): "mmcore-plugin-baselines",
}

#: First-party plugins that depend on other first-party plugins (as their pyproject.toml says; a test
#: checks it), so a local install command can list them: they are not on the index.
PLUGIN_REQUIRES: dict[str, tuple[str, ...]] = {
    "mmcore-plugin-adl": ("mmcore-plugin-ot",),
    "mmcore-plugin-recon": ("mmcore-plugin-mamba",),
}

#: The core's distribution name on the package index (`pip install mmcore-lib`); the import package and the
#: command are `mmcore`. `mmcore` on PyPI is an unrelated geometry library, so the core cannot be called that.
DISTRIBUTION = "mmcore-lib"
#: The provider recorded for built-in components: the core's distribution, as plugins record theirs.
BUILTIN_PROVIDER = DISTRIBUTION


def _package_checkout() -> str:
    """The folder above the running ``mmcore`` package: a source checkout when installed editable."""
    import os

    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def source_checkout_path(dist: str) -> str | None:
    """Where a source checkout holds the plugin ``dist`` (``plugins/<dist>/pyproject.toml``), or None.

    Looks in the current directory and its parents first (the path is then relative, ready to paste
    where the user is), then in the checkout the running ``mmcore`` was installed from (absolute path).
    """
    import os

    cwd = os.getcwd()
    d = cwd
    while True:
        if os.path.isfile(os.path.join(d, "plugins", dist, "pyproject.toml")):
            return os.path.relpath(os.path.join(d, "plugins", dist), cwd)
        parent = os.path.dirname(d)
        if parent == d:
            break
        d = parent
    root = _package_checkout()
    if os.path.isfile(os.path.join(root, "plugins", dist, "pyproject.toml")):
        return os.path.join(root, "plugins", dist)
    return None


def install_hint(dist: str) -> str:
    """The command that installs ``dist`` by name and, from a source checkout that has it, the local one.

    Why both: the by-name command needs the package index to have the plugin; in a checkout the plugin's
    folder always works. The local command lists the first-party plugins ``dist`` depends on first
    (:data:`PLUGIN_REQUIRES`): pip would otherwise look them up by name on the index. ``-c constraints.txt``
    keeps torch on the pinned build (see the README).
    """
    import os

    hint = f"pip install {dist}"
    local = source_checkout_path(dist)
    if local is not None:
        root = os.path.dirname(os.path.dirname(local))
        constraints = os.path.join(root, "constraints.txt")
        pin = f"-c {constraints} " if os.path.isfile(constraints) else ""
        folders = [os.path.join(root, "plugins", d) for d in PLUGIN_REQUIRES.get(dist, ())
                   if os.path.isfile(os.path.join(root, "plugins", d, "pyproject.toml"))] + [local]
        hint += f"\n  or, from this source checkout: pip install {pin}" + " ".join(f"-e {f}" for f in folders)
    return hint


def provider_hint(kind: str, names: str | Sequence[str], dist: str, *, failed: str | None = None,
                  guessed: bool = False) -> str:
    """The one sentence saying which distribution provides components that are not here, and what to run.

    ``names``: one name or several (of one ``kind``); ``failed``: the plugin is installed but failed
    to load, with this status; ``guessed``: the name is a did-you-mean guess for a typo.
    """
    many = not isinstance(names, str)
    shown = ", ".join(repr(n) for n in names) if many else repr(names)
    subject = f"did you mean {shown}? it" if guessed else f"hint: {kind}{'s' if many else ''} {shown}"
    state = f"installed but failed to load: {failed}" if failed else f"not installed; run: {install_hint(dist)}"
    return f"{subject} {'come' if many and not guessed else 'comes'} from {dist}, which is {state}"


class PluginState(str, Enum):
    """Whether a plugin distribution loaded."""

    OK = "ok"
    ERROR = "error"


class PluginStatus(str):
    """A plugin's load status, typed: :attr:`state` and, on error, a one-line :attr:`reason`.

    Why a ``str``: its value is exactly the text users see (``ok``, or ``error: <reason>``) in
    ``mmcore plugins`` and its JSON, so code reads ``status.failed`` while printing stays unchanged.
    """

    state: PluginState
    reason: str

    def __new__(cls, state: PluginState, reason: str = "") -> PluginStatus:
        self = super().__new__(cls, "ok" if state is PluginState.OK else f"error: {reason}")
        self.state, self.reason = state, reason
        return self

    def __reduce__(self):
        return (PluginStatus, (self.state, self.reason))

    @classmethod
    def ok(cls) -> PluginStatus:
        return cls(PluginState.OK)

    @classmethod
    def error(cls, reason: str) -> PluginStatus:
        return cls(PluginState.ERROR, reason)

    @classmethod
    def of(cls, status: str) -> PluginStatus:
        """``status`` typed: a :class:`PluginStatus` as it is, or the text ``ok`` / ``error: <reason>`` read."""
        if isinstance(status, PluginStatus):
            return status
        if status == "ok":
            return cls.ok()
        if status.startswith("error: "):
            return cls.error(status.removeprefix("error: "))
        raise ValueError(f"not a plugin status: {status!r} (expected 'ok' or 'error: <reason>')")

    @property
    def failed(self) -> bool:
        return self.state is PluginState.ERROR


def _failed(plugin: Any) -> bool:
    """Whether a :class:`~mmcore.plugins.PluginInfo` failed to load (its status typed or as text)."""
    return PluginStatus.of(plugin.status).failed


@dataclass(frozen=True)
class Entry:
    """One registered component."""

    kind: str
    name: str
    factory: Any  # a class, or a zero-argument callable returning the class
    params: type[BaseModel]
    description: str
    provider: str  # distribution name (DISTRIBUTION for built-ins, the module for in-process)
    version: str = ""
    aux_losses: dict[str, float] = field(default_factory=dict)

    @property
    def target(self) -> str:
        """``module:Class`` of the implementation, without importing it where possible."""
        f = self.factory
        if isinstance(f, LazyClass):
            return f.target
        if inspect.isclass(f):
            return f"{f.__module__}:{f.__qualname__}"
        return f"{getattr(f, '__module__', '?')}:{getattr(f, '__qualname__', repr(f))}"

    def load(self) -> type:
        """The component class (imports it if registered through a loader)."""
        f = self.factory
        return f if inspect.isclass(f) else f()

    @property
    def provided_by(self) -> str:
        return f"{self.provider} {self.version}".strip()


def _first_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


class Registry:
    """Components by kind and name. Duplicates are refused, naming both providers."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Entry]] = {k: {} for k in KINDS}
        #: (kind, name) -> providers that all claimed it; looking the name up is then an error
        self.conflicts: dict[tuple[str, str], list[str]] = {}
        self.plugins: list[Any] = []  # PluginInfo records, filled by mmcore.plugins

    def make_entry(self, kind, name, factory, params, *, description=None, aux_losses=None,
                   provider: str, version: str = "") -> Entry:
        """Check one registration's arguments and build its :class:`Entry`."""
        if kind not in KINDS:
            raise PluginError(f"{provider}: cannot register {name!r}: unknown kind {kind!r}; kinds are {', '.join(KINDS)}")
        if not isinstance(name, str) or not name.isidentifier() or name != name.lower():
            raise PluginError(f"{provider}: cannot register {kind} {name!r}: names are snake_case identifiers")
        if not (inspect.isclass(params) and issubclass(params, BaseModel)):
            raise PluginError(f"{provider}: {kind} {name!r}: params must be a pydantic model class, got {params!r}")
        if not callable(factory):
            raise PluginError(f"{provider}: {kind} {name!r}: factory must be a class or a zero-argument loader")
        if description is None:
            description = _first_line(params) if not inspect.isclass(factory) else _first_line(factory) or _first_line(params)
        return Entry(kind, name, factory, params, description or "", provider, version, dict(aux_losses or {}))

    def add(self, entry: Entry) -> None:
        """Add an entry; a second entry with the same (kind, name) raises :class:`PluginError`."""
        key = (entry.kind, entry.name)
        have = self._entries[entry.kind].get(entry.name)
        if have is not None:
            self.conflicts.setdefault(key, [have.provided_by]).append(entry.provided_by)
            raise PluginError(
                f"duplicate {entry.kind} {entry.name!r}: provided by {have.provided_by} and by {entry.provided_by}; "
                f"uninstall one of them (a name must mean one thing regardless of install order)"
            )
        self._entries[entry.kind][entry.name] = entry

    def names(self, kind: str) -> list[str]:
        return sorted(self._entries[kind])

    def entries(self, kind: str | None = None) -> list[Entry]:
        kinds = KINDS if kind is None else (kind,)
        return [self._entries[k][n] for k in kinds for n in sorted(self._entries[k])]

    def find(self, kind: str, name: str) -> Entry | None:
        return self._entries.get(kind, {}).get(name)

    def get(self, kind: str, name: str) -> Entry:
        """The entry for (kind, name).

        Raises:
            UnknownComponentError: no such kind or name (with did-you-mean and what to install).
            PluginError: several providers registered the name; none of them is chosen silently.
        """
        if kind not in KINDS:
            raise UnknownComponentError(f"unknown kind {kind!r}; kinds are {', '.join(KINDS)}")
        conflict = self.conflicts.get((kind, name))
        if conflict:
            raise PluginError(
                f"{kind} {name!r} is provided by several plugins: {' and '.join(conflict)}; a name must mean one "
                "thing regardless of install order, so none is used\n  hint: uninstall all but one, or load only the "
                "one you mean: list it in the spec's `plugins:` (or set MMCORE_LOAD_PLUGINS=<distribution>; an empty "
                "value loads the built-ins only)")
        entry = self.find(kind, name)
        if entry is None:
            raise UnknownComponentError("\n  ".join([f"unknown {kind} {name!r}", *self.suggest(kind, name)]))
        return entry

    def suggest(self, kind: str, name: str) -> list[str]:
        """Hints for an unknown name: did-you-mean, the plugin that provides it, what is installed."""
        conflict = self.conflicts.get((kind, name))
        if conflict:
            return [f"{kind} {name!r} is provided by several plugins ({', '.join(conflict)}); uninstall all but one"]
        hints = []
        close = difflib.get_close_matches(name, self.names(kind), n=3, cutoff=0.6)
        if close:
            shown = ", ".join(f"{c!r} ({self._entries[kind][c].provided_by})" for c in close)
            hints.append(f"did you mean {shown}?")
        dist = KNOWN_PROVIDERS.get((kind, name))
        if dist is None:  # a typo of a first-party name that is not installed
            near = difflib.get_close_matches(name, [n for k, n in KNOWN_PROVIDERS if k == kind], n=1, cutoff=0.75)
            if near and near[0] not in self._entries[kind]:
                dist = KNOWN_PROVIDERS[(kind, near[0])]
                hints.append(provider_hint(kind, near[0], dist, guessed=True))
        elif name not in self._entries[kind]:
            failed = [p for p in self.plugins if getattr(p, "dist", None) == dist and _failed(p)]
            hints.append(provider_hint(kind, name, dist, failed=failed[0].status if failed else None))
        available = self.names(kind)
        hints.append(f"available {kind}s: {', '.join(available) if available else '(none)'}")
        installed = [p for p in self.plugins if not getattr(p, "builtin", False)]
        working = [p.dist for p in installed if not _failed(p)]
        failed = [p for p in installed if _failed(p)]
        hints.append(f"installed plugins: {', '.join(working) if working else '(none; only built-ins)'}")
        if failed:  # never listed among the working ones: say which failed, and why, in one line each
            hints.append("installed but failed to load: "
                         + "; ".join(f"{p.dist} ({PluginStatus.of(p.status).reason})" for p in failed)
                         + " (details: mmcore plugins)")
        return hints


_lock = threading.Lock()
_default: dict[tuple[str, ...] | None, Registry] = {}
#: threads importing plugins inside get_registry (plugins are imported on a worker thread, with a time limit)
_loader_threads: set[int] = set()


def get_registry(only: list[str] | tuple[str, ...] | None = None) -> Registry:
    """The process-wide registry, built on first use by loading plugins.

    ``only`` restricts which plugin distributions load (the spec's ``plugins:`` option);
    ``MMCORE_LOAD_PLUGINS`` applies on top of it (see :mod:`mmcore.plugins`).
    """
    from .plugins import load_plugins

    key = tuple(sorted(only)) if only is not None else None
    with _lock:
        reg = _default.get(key)
        if reg is None:
            reg = Registry()
            me = threading.get_ident()
            _loader_threads.add(me)
            try:
                load_plugins(reg, only=only)
            finally:
                _loader_threads.discard(me)
            for entry in _in_process:
                try:
                    reg.add(entry)
                except PluginError as exc:  # an in-process name that a plugin also provides: report, go on
                    log.warning("%s", exc)
            _default[key] = reg
        return reg


def reset_registry() -> None:
    """Forget the built registries and in-process registrations (for tests)."""
    with _lock:
        _default.clear()
        _in_process.clear()


_in_process: list[Entry] = []


def register(kind: str, name: str, *, params: type[BaseModel], description: str | None = None,
             aux_losses: dict[str, float] | None = None) -> Callable[[type], type]:
    """Decorator registering a class in-process, for quick experiments::

        @mmcore.register("aligner", "my_aligner", params=MyParams)
        class MyAligner(nn.Module): ...

    Same registry and duplicate rule as plugins: a name that exists raises :class:`PluginError`.
    """

    def deco(cls: type) -> type:
        if threading.get_ident() in _loader_threads:
            # a plugin module using the decorator while get_registry imports it: the registry being built
            # adds _in_process entries once loading ends (asking for it here would wait on our own lock)
            entry = Registry().make_entry(kind, name, cls, params, description=description, aux_losses=aux_losses,
                                          provider=cls.__module__)
            log.warning("%s registered %s %r with @mmcore.register while plugins were loading; plugins should "
                        "register through the register_components hook", cls.__module__, kind, name)
            _in_process.append(entry)
            return cls
        reg = get_registry()
        entry = reg.make_entry(kind, name, cls, params, description=description, aux_losses=aux_losses,
                               provider=cls.__module__)
        with _lock:
            for r in _default.values():
                r.add(entry)
            _in_process.append(entry)
        return cls

    return deco
