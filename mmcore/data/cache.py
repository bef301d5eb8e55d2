"""Where fetched datasets live: ``$MMCORE_DATA_DIR``, else the platform's user cache directory.

Layout (torch-free)::

    <data dir>/<name>/raw/<release file>.h5   the downloaded, verified release files
    <data dir>/<name>/<name>.npz              the converted dataset (``data: {name: npz, params: {dataset: <name>}}``)
    <data dir>/<name>/manifest.json           commit, per-file sha256 and status, converter settings

The data dir is ``--dir DIR`` on ``mmcore data``, else ``$MMCORE_DATA_DIR``, else
``$XDG_CACHE_HOME/mmcore/data`` (``~/.cache/mmcore/data``) on Linux,
``~/Library/Caches/mmcore/data`` on macOS and ``%LOCALAPPDATA%\\mmcore\\Cache\\data`` on Windows.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import DataError

__all__ = ["ENV_DATA_DIR", "data_dir", "dataset_dir", "npz_path", "manifest_path", "read_manifest",
           "cached_npz", "resolve_dataset"]

ENV_DATA_DIR = "MMCORE_DATA_DIR"


def _platform_cache() -> Path:
    home = Path.home()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA")
        return (Path(base) if base else home / "AppData" / "Local") / "mmcore" / "Cache"
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "mmcore"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else home / ".cache") / "mmcore"


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """The data dir: ``override`` (``--dir``), else ``$MMCORE_DATA_DIR``, else the user cache (module docstring)."""
    if override:
        return Path(override).expanduser().absolute()
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return Path(env).expanduser().absolute()
    return _platform_cache() / "data"


def dataset_dir(name: str, root: str | os.PathLike | None = None) -> Path:
    return data_dir(root) / name


def npz_path(name: str, root: str | os.PathLike | None = None) -> Path:
    """Where the converted ``name`` lies (whether or not it has been fetched)."""
    return dataset_dir(name, root) / f"{name}.npz"


def manifest_path(name: str, root: str | os.PathLike | None = None) -> Path:
    return dataset_dir(name, root) / "manifest.json"


def read_manifest(name: str, root: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The manifest of a fetched dataset, or None (absent or unreadable: the dataset counts as not fetched)."""
    try:
        with open(manifest_path(name, root)) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def cached_npz(name: str, root: str | os.PathLike | None = None) -> Path | None:
    """The converted file of ``name`` if it is in the cache, else None."""
    p = npz_path(name, root)
    return p if p.is_file() else None


def resolve_dataset(name: str, root: str | os.PathLike | None = None) -> Path:
    """The cached npz of catalogue dataset ``name``; DataError saying how to fetch it when absent."""
    from .catalogue import DATASETS, unknown_dataset_message

    entry = DATASETS.get(name)
    if entry is None:
        raise DataError(f"data.params.dataset: {unknown_dataset_message(name)}")
    if not entry.fetchable:
        raise DataError(f"data.params.dataset: {name!r} cannot be fetched by mmcore ({entry.source}); "
                        f"{entry.notes[0] if entry.notes else 'download it by hand'}")
    p = cached_npz(name, root)
    if p is None:
        env = os.environ.get(ENV_DATA_DIR)
        where = f"${ENV_DATA_DIR}={env}" if env and not root else "the user cache"
        raise DataError(f"data.params.dataset: {name!r} is not in the data cache (looked for {npz_path(name, root)}, "
                        f"{where})\n  run: mmcore data fetch {name}\n  or point the spec at a file: "
                        f"data.params.path (or --data PATH.npz); `mmcore data list` shows what is cached")
    return p
