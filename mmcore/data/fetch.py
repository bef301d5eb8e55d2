"""Download, verify and convert a catalogue dataset into the data cache (``mmcore data fetch``).

Downloads use the standard library (``urllib``) over HTTPS: a partial file (``NAME.part``) is
resumed with an HTTP ``Range`` request, a dropped connection or a server error is retried with
exponential backoff, and a file is renamed into place only once its size and sha256 match the
catalogue (files without a pinned checksum are reported as unverified). A checksum mismatch is an
error naming the file and both hashes; the bad bytes are deleted so the next try starts afresh.
Progress is a tqdm bar on a terminal, one log line per file elsewhere. Proxies come from the
usual environment variables (``HTTPS_PROXY``), as urllib reads them.

Offline, or when the server keeps failing, the error gives the URL and the way round: download
the files by hand into a folder and run ``mmcore data fetch NAME --from DIR``.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import json
import logging
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import __version__
from ..errors import DataError
from .cache import data_dir, dataset_dir, manifest_path, npz_path, read_manifest
from .catalogue import DatasetEntry, ReleaseFile, get_dataset

__all__ = ["DownloadError", "ChecksumError", "download", "fetch_dataset", "FetchResult", "sha256_file"]

logger = logging.getLogger(__name__)

_CHUNK = 1 << 16
_PERMANENT = {400, 401, 403, 404, 410, 451}  # retrying cannot help
_LOCAL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}  # the disk, not the network


class DownloadError(DataError):
    """A file could not be downloaded (offline, refused, not found) after the retries."""


class ChecksumError(DataError):
    """A downloaded or supplied file does not have the pinned size or sha256."""


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _check(path: Path, f: ReleaseFile, origin: str) -> str:
    """sha256 of ``path``; ChecksumError (the file removed) when size or sha256 differ from ``f``'s."""
    size = path.stat().st_size
    if f.size is not None and size != f.size:
        path.unlink()
        raise ChecksumError(f"{f.path}: size mismatch: expected {f.size} bytes, got {size} (from {origin}); the "
                            "file was removed: run the command again, and if it persists the source serves other "
                            "bytes than the pinned release")
    digest = sha256_file(path)
    if f.sha256 is not None and digest != f.sha256:
        path.unlink()
        raise ChecksumError(f"{f.path}: sha256 mismatch: expected {f.sha256}, got {digest} (from {origin}); the "
                            "file was removed: run the command again, and if it persists the source serves other "
                            "bytes than the pinned release")
    return digest


def _progress(name: str, total: int | None, initial: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=name, unit="B", unit_scale=True, unit_divisor=1024, leave=False,
                dynamic_ncols=True, file=sys.stderr)


def _offline_hint(name: str | None, refused: bool = False) -> str:
    what = name or "NAME"
    by_hand = (f"download the files by hand into one folder (URLs: mmcore data list {what}) and run: "
               f"mmcore data fetch {what} --from DIR")
    if refused:
        return f"the server refused this file (a moved repository, a proxy or a block?); {by_hand}"
    return (f"check the connection (urllib reads proxies from HTTPS_PROXY), then run the command again: finished "
            f"files are kept and a partial one resumes; or {by_hand}")


def download(url: str, dest: str | os.PathLike, f: ReleaseFile, *, retries: int = 3, backoff: float = 1.0,
             timeout: float = 60.0, progress: bool = False, dataset: str | None = None,
             sleep: Callable[[float], None] = time.sleep) -> str:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), verify it against ``f``; returns its sha256.

    Retries ``retries`` times after the first attempt, waiting ``backoff * 2**k`` seconds; HTTP 400,
    401, 403, 404, 410 and 451 fail at once. Raises DownloadError or ChecksumError.
    """
    if retries < 0:
        raise DataError(f"retries must be >= 0; got {retries}")
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    last: str = ""
    for attempt in range(retries + 1):
        if attempt:
            wait = backoff * 2 ** (attempt - 1)
            logger.info("%s: retrying in %.0f s (attempt %d of %d): %s", f.name, wait, attempt + 1, retries + 1, last)
            sleep(wait)
        offset = part.stat().st_size if part.exists() else 0
        if f.size is not None and offset > f.size:  # not a prefix of the file we want
            part.unlink()
            offset = 0
        if f.size is not None and offset == f.size:
            break
        req = urllib.request.Request(url, headers={"User-Agent": f"mmcore/{__version__}"})
        if offset:
            req.add_header("Range", f"bytes={offset}-")
        bar = None
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status = resp.status
                if offset and status != 206:  # the server ignored the range: start again
                    logger.info("%s: the server does not resume; downloading from the start", f.name)
                    offset = 0
                length = resp.headers.get("Content-Length")
                total = offset + int(length) if length and length.isdigit() else f.size
                bar = _progress(f.name, total, offset, progress)
                with open(part, "ab" if offset else "wb") as out:
                    while True:
                        block = resp.read(_CHUNK)
                        if not block:
                            break
                        out.write(block)
                        if bar is not None:
                            bar.update(len(block))
                got = part.stat().st_size
                if total is not None and got < total:
                    raise http.client.IncompleteRead(b"", total - got)
            break
        except urllib.error.HTTPError as e:
            if e.code == 416 and offset:  # nothing left after our offset: the part may be complete
                break
            last = f"HTTP {e.code} {e.reason}"
            if e.code in _PERMANENT:
                raise DownloadError(f"{url}: download failed: {last}\n  hint: {_offline_hint(dataset, True)}") from e
        except OSError as e:  # URLError, ConnectionError, timeouts, SSL errors: worth another try; a full disk is not
            if not isinstance(e, urllib.error.URLError) and e.errno in _LOCAL_ERRNOS:
                raise DataError(f"{part}: cannot write the download ({e.strerror}); free some space or choose "
                                "another data dir (--dir, $MMCORE_DATA_DIR)") from e
            reason = getattr(e, "reason", None) or e
            last = f"{type(e).__name__}: {reason}"
        except http.client.HTTPException as e:  # e.g. IncompleteRead: the connection dropped mid-file
            last = f"{type(e).__name__}: {e!r}"
        finally:
            if bar is not None:
                bar.close()
    else:
        raise DownloadError(f"{url}: download failed after {retries + 1} attempt(s) ({last})\n"
                            f"  hint: {_offline_hint(dataset)}")
    digest = _check(part, f, url)
    os.replace(part, dest)
    return digest


def _find_local(from_dir: Path, entry: DatasetEntry, f: ReleaseFile) -> Path | None:
    """``f`` in a hand-download folder: DIR/<file>, DIR/<dataset>/<file> or DIR/<path in the repository>."""
    for cand in (from_dir / f.name, from_dir / entry.name / f.name, from_dir / f.path):
        if cand.is_file():
            return cand
    return None


def _copy_verified(src: Path, dest: Path, f: ReleaseFile) -> str:
    tmp = dest.with_name(dest.name + ".part")
    shutil.copyfile(src, tmp)
    digest = _check(tmp, f, str(src))
    os.replace(tmp, dest)
    return digest


@dataclass
class FetchResult:
    """What :func:`fetch_dataset` did: the npz, each file's status, what the npz lacks."""

    name: str
    npz: Path
    cached: bool = False  # nothing to do: the npz and manifest were up to date
    files: dict[str, dict] = field(default_factory=dict)  # file name -> {status, sha256, source}
    missing: list[str] = field(default_factory=list)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)


def _wanted(entry: DatasetEntry, verified_only: bool) -> list[ReleaseFile]:
    # verified files first: when offline, the first failure is a file that is needed
    files = sorted(entry.files, key=lambda f: (not f.verified, f.path))
    return [f for f in files if f.verified or not verified_only]


def fetch_dataset(name: str | DatasetEntry, root: str | os.PathLike | None = None, *,
                  from_dir: str | os.PathLike | None = None, verified_only: bool = False, force: bool = False,
                  retries: int = 3, backoff: float = 1.0, timeout: float = 60.0, progress: bool = False,
                  axes: str = "auto") -> FetchResult:
    """Fetch (or copy from ``from_dir``), verify and convert a catalogue dataset into the cache.

    Files with a pinned checksum are required; one without (e.g. ICT-MMMO's train text) that fails
    to download or is absent from ``from_dir`` is reported and its modality is missing from that
    split. Returns a :class:`FetchResult`; raises DownloadError, ChecksumError or DataError.
    """
    from .convert import convert_release, require_h5py

    entry = name if isinstance(name, DatasetEntry) else get_dataset(name)
    if not entry.fetchable:
        raise DataError(f"{entry.name}: not fetched by mmcore ({entry.source}; {entry.homepage}); "
                        f"{entry.notes[0] if entry.notes else 'download it by hand'}")
    require_h5py()  # before any download: the conversion needs it
    root = data_dir(root)
    out = npz_path(entry.name, root)
    wanted = _wanted(entry, verified_only)
    manifest = read_manifest(entry.name, root)
    if (not force and manifest is not None and out.is_file() and manifest.get("commit_url") == entry.base_url
            and sorted(manifest.get("fetched", [])) == sorted(f.name for f in wanted)):
        return FetchResult(entry.name, out, cached=True, files=manifest.get("files", {}),
                           missing=manifest.get("missing", []), shapes={k: tuple(v) for k, v in
                                                                         manifest.get("shapes", {}).items()})
    raw = dataset_dir(entry.name, root) / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    result = FetchResult(entry.name, out)
    local: dict[str, Path] = {}
    absent: list[str] = []
    src_dir = Path(from_dir).expanduser() if from_dir else None
    if src_dir is not None and not src_dir.is_dir():
        raise DataError(f"--from {from_dir}: not a folder; put the downloaded release files of {entry.name} in one "
                        "folder and pass it")
    for f in wanted:
        dest = raw / f.name
        if dest.is_file() and not force:
            try:
                digest = _check(dest, f, str(dest))  # a cached file that went bad is removed and fetched again
                local[f.name] = dest
                result.files[f.name] = {"status": "verified" if f.verified else "unverified", "sha256": digest,
                                        "source": "cache"}
                continue
            except ChecksumError as e:
                logger.warning("%s; fetching it again", e)
        try:
            if src_dir is not None:
                found = _find_local(src_dir, entry, f)
                if found is None:
                    absent.append(f.name)
                    continue
                digest, origin = _copy_verified(found, dest, f), str(found)
            else:
                t0 = time.monotonic()
                digest, origin = download(entry.url(f), dest, f, retries=retries, backoff=backoff, timeout=timeout,
                                          progress=progress, dataset=entry.name), entry.url(f)
                logger.info("%s: %d bytes in %.1f s, %s", f.name, dest.stat().st_size, time.monotonic() - t0,
                            "sha256 ok" if f.verified else f"no pinned checksum (sha256 {digest})")
        except DownloadError as e:
            if f.verified:
                raise
            logger.warning("%s: not fetched (no pinned checksum, optional): %s", f.name, str(e).splitlines()[0])
            result.missing.append(f"{f.name}: not fetched ({str(e).splitlines()[0]})")
            continue
        local[f.name] = dest
        result.files[f.name] = {"status": "verified" if f.verified else "unverified", "sha256": digest,
                                "source": origin}
    if absent:
        need = [n for n in absent if next(f for f in wanted if f.name == n).verified]
        if need:
            urls = "\n".join(f"    {entry.url(f)}" for f in wanted if f.name in need)
            raise DataError(f"--from {from_dir}: {len(need)} file(s) of {entry.name} not found there: "
                            f"{', '.join(need)}\n  download them into that folder:\n{urls}")
        for n in absent:
            result.missing.append(f"{n}: not in --from folder (optional, no pinned checksum)")
    report = convert_release(local, out, axes=axes)
    result.missing += report.missing
    result.shapes = report.shapes
    manifest = {"name": entry.name, "source": entry.source, "commit_url": entry.base_url, "mmcore": __version__,
                "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "verified_only": verified_only,
                "fetched": sorted(local), "files": result.files, "missing": result.missing,
                "axes": axes, "transposed": report.transposed,
                "shapes": {k: list(v) for k, v in report.shapes.items()}, "npz_sha256": sha256_file(out)}
    tmp = manifest_path(entry.name, root).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, manifest_path(entry.name, root))
    return result
