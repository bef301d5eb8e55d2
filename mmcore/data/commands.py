"""What ``mmcore data list | fetch | verify`` print, as functions of plain arguments (``mmcore.cli`` parses them).

``list`` and ``fetch`` never import torch; ``verify`` loads the file with its dataset loader (torch)
to check the layout exactly as a run would read it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import DataError
from .cache import ENV_DATA_DIR, cached_npz, read_manifest
from .cache import data_dir as _data_dir
from .catalogue import DATASETS, DatasetEntry, get_dataset, known_file_by_sha256

__all__ = ["data_list", "data_fetch", "data_verify", "human_size"]


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def _size_text(e: DatasetEntry) -> str:
    if not e.files:
        return "-"
    text = human_size(e.known_size)
    return text + (f" + {e.unknown_size} file(s) of unknown size" if e.unknown_size else "")


def _cached_text(e: DatasetEntry, root) -> str:
    if not e.fetchable:
        return "n/a (download by hand; check with: mmcore data verify FILE.pkl)"
    p = cached_npz(e.name, root)
    if p is None:
        return f"no (run: mmcore data fetch {e.name})"
    man = read_manifest(e.name, root) or {}
    extra = "; verified files only" if man.get("verified_only") else ""
    if man.get("missing"):
        extra += f"; lacks {len(man['missing'])}: " + ", ".join(s.split(':')[0] for s in man["missing"])
    return f"yes: {p}{extra}"


def _entry_json(e: DatasetEntry, root) -> dict:
    p = cached_npz(e.name, root) if e.fetchable else None
    return {"name": e.name, "title": e.title, "source": e.source, "homepage": e.homepage, "licence": e.licence,
            "fetchable": e.fetchable, "loader": e.loader, "description": e.description, "notes": list(e.notes),
            "files": [{"path": f.path, "url": e.url(f), "bytes": f.size, "sha256": f.sha256} for f in e.files],
            "known_bytes": e.known_size, "files_unknown_size": e.unknown_size,
            "cached": str(p) if p else None}


def data_list(name: str | None = None, *, data_dir: str | None = None, as_json: bool = False) -> int:
    """`mmcore data list [NAME]`: the catalogue, where the cache is, what is cached."""
    root = _data_dir(data_dir)
    entries = [get_dataset(name)] if name else list(DATASETS.values())
    if as_json:
        print(json.dumps({"data_dir": str(root), "datasets": [_entry_json(e, root) for e in entries]}, indent=2))
        return 0
    origin = ("--dir" if data_dir else f"${ENV_DATA_DIR}" if os.environ.get(ENV_DATA_DIR)
              else f"the user cache; set ${ENV_DATA_DIR} or pass --dir to change it")
    print(f"data dir: {root}  ({origin})")
    for e in entries:
        print(f"\n{e.name} — {e.title}")
        print(f"  source:  {e.source}  {e.homepage}")
        if e.files:
            n_ver = sum(f.verified for f in e.files)
            print(f"  files:   {len(e.files)} h5 ({n_ver} with a pinned sha256), {_size_text(e)}")
        print(f"  licence: {e.licence}")
        print(f"  cached:  {_cached_text(e, root)}")
        if name:
            print(f"  about:   {e.description}")
            for note in e.notes:
                print(f"  note:    {note}")
            for f in e.files:
                size = "size unknown" if f.size is None else f"{f.size} B"
                print(f"    {e.url(f)}\n      {size}, sha256 {f.sha256 or 'not pinned (fetched unverified)'}")
    return 0


def data_fetch(name: str, *, data_dir: str | None = None, from_dir: str | None = None, verified_only: bool = False,
               force: bool = False, retries: int = 3, progress: bool = False, axes: str = "auto") -> int:
    """`mmcore data fetch NAME`: download (or take from ``from_dir``), verify, convert; print where it went."""
    from .fetch import fetch_dataset

    entry = get_dataset(name)
    root = _data_dir(data_dir)
    res = fetch_dataset(entry, root, from_dir=from_dir, verified_only=verified_only, force=force,
                        retries=retries, progress=progress, axes=axes)
    if res.cached:
        print(f"{entry.name}: already fetched: {res.npz} (--force fetches and converts again)")
    else:
        unverified = [n for n, s in res.files.items() if s["status"] == "unverified"]
        print(f"{entry.name}: {len(res.files) - len(unverified)} file(s) matched their pinned sha256, "
              f"{len(unverified)} unverified; converted to {res.npz}")
        for n in unverified:
            print(f"  unverified (no pinned checksum): {n} sha256 {res.files[n]['sha256']}")
        for m in res.missing:
            print(f"  missing: {m}")
    default = _data_dir(None)
    if root != default:
        print(f"  specs find it with `dataset: {entry.name}` when {ENV_DATA_DIR}={root} is set; or pass "
              f"--data {res.npz}")
    else:
        print(f"  use it: data: {{name: npz, params: {{dataset: {entry.name}}}}} in a spec, or --data {entry.name}")
    return 0


def _layout(path: Path) -> str:
    """One line describing the file's layout as mmcore's loader reads it; DataError if it cannot."""
    low = path.name.lower()
    if low.endswith(".h5"):
        from .convert import Unreadable, read_h5

        try:
            x = read_h5(path)
        except Unreadable as e:
            raise DataError(f"{path}: cannot read as a release h5 file: {e}") from e
        return f"h5 dataset of shape {x.shape}, dtype {x.dtype}"
    if low.endswith(".npz"):
        from .npz import NpzDataset
        from .params import NpzParams

        kind, loader, mods = "npz", NpzDataset, _npz_modalities(path)
        params = NpzParams(path=str(path), standardize=False, nan_policy="zero")
    elif low.endswith((".pkl", ".pickle")):
        from .mmsa import MmsaDataset
        from .params import MmsaParams

        kind, loader, mods = "mmsa", MmsaDataset, ["text", "audio", "vision"]
        params = MmsaParams(path=str(path), nan_policy="zero")
    else:
        raise DataError(f"{path}: cannot tell the format from the extension; verify checks .h5 (release files), "
                        ".npz and MMSA .pkl files")
    ds = loader(params, mods, 0)
    rows = ", ".join(f"{s} {len(sp)}" for s, sp in ds.splits.items())
    shapes = ", ".join(f"{m} (T={ds.info.lengths[m]}, d={ds.info.dims[m]})" for m in ds.info.dims)
    task = ds.info.task + (f" ({ds.info.num_classes} classes)" if ds.info.task == "classification" else "")
    return (f"{kind} layout ok (as `data: {{name: {kind}}}` reads it; non-finite values are logged above): "
            f"rows {rows}; {shapes}; task {task}")


def _npz_modalities(path: Path) -> list[str]:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.files)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read as .npz ({type(e).__name__}: {e})") from e
    mods = sorted({k.split("_", 1)[1] for k in keys if "_" in k and not k.endswith("_labels")})
    return mods or ["text", "audio", "vision"]


def data_verify(path_text: str, *, sha256: str | None = None) -> int:
    """`mmcore data verify PATH`: the file's sha256 against ``sha256`` and the catalogue, and its layout."""
    from .fetch import ChecksumError, sha256_file

    path = Path(path_text).expanduser()
    if not path.is_file():
        raise DataError(f"{path_text}: no such file")
    digest = sha256_file(path)
    print(f"{path}: {os.path.getsize(path)} bytes, sha256 {digest}")
    if sha256:
        if digest != sha256.lower():
            raise ChecksumError(f"{path}: sha256 mismatch: expected {sha256.lower()}, got {digest}; the file is "
                                "not the one you expected (re-download it)")
        print("  checksum: matches --sha256")
    known = known_file_by_sha256(digest)
    if known:
        entry, f = known
        print(f"  checksum: matches {entry.source.split()[0]} {f.path} (pinned in the catalogue)")
    elif not sha256:
        print("  checksum: no pinned sha256 for this file in the catalogue (mmcore pins only the MFN release "
              "files); compare the sha256 above with the one its distributor publishes, or pass --sha256 HEX")
    print(f"  {_layout(path)}")
    return 0
