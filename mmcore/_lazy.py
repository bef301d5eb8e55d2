"""Lazy imports for registrations and re-exports: a class named by ``module:attr``, loaded on first use (torch-free).

Public through :mod:`mmcore` (``mmcore.lazy``, ``mmcore.lazy_exports``, ``mmcore.lazy_package``) and
:mod:`mmcore.registry`.
"""

from __future__ import annotations

import importlib
from typing import Callable


class LazyClass:
    """A zero-argument loader for ``module:attr`` that imports on first call.

    Why: registering through a loader keeps ``mmcore plugins|validate|schema`` free of torch;
    the target is kept so ``mmcore list`` can print ``module:Class`` without importing it.
    """

    def __init__(self, module: str, attr: str):
        self.module, self.attr = module, attr

    @property
    def target(self) -> str:
        return f"{self.module}:{self.attr}"

    def __call__(self) -> type:
        return getattr(importlib.import_module(self.module), self.attr)

    def __repr__(self) -> str:
        return f"LazyClass({self.target!r})"


def lazy_exports(package: str, exports: dict[str, str]):
    """A module ``__getattr__`` (PEP 562) that imports ``package.<module>`` on first access of a name.

    ``exports`` maps a public name to the submodule defining it. Packages whose import must stay
    torch-free (a plugin's package is imported to reach its hook) re-export this way::

        __getattr__ = lazy_exports(__name__, {"MambaBlock": "block"})
    """

    def __getattr__(name: str):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f".{module}", package), name)

    return __getattr__


def lazy_package(package: str, exports: dict[str, str], *eager: str):
    """``(__all__, __getattr__, __dir__)`` of a package that re-exports ``exports`` lazily (see :func:`lazy_exports`).

    ``eager`` names the package's own attributes that ``__all__`` also lists (``"__version__"``)::

        __all__, __getattr__, __dir__ = lazy_package(__name__, {"MambaBlock": "block"}, "__version__")
    """
    names = [*eager, *exports]
    return names, lazy_exports(package, exports), lambda: sorted(names)


def lazy(module: str, attr: str) -> LazyClass:
    """Loader for ``register``: ``register("fuser", "x", lazy("pkg.x", "XFuser"), XParams)``."""
    return LazyClass(module, attr)


def require(module: str, error: Callable[[ImportError], Exception]):
    """``module`` imported, or ``error(e)`` raised (``e`` chained) when an optional dependency is not installed.

    ``error`` builds the user error that says what to install, e.g. ``lambda e: DataError(f"... ({e})")``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise error(e) from e
