"""What produced a run: ``provenance.json`` in every run folder.

Versions (mmcore, each plugin, Python, torch, numpy, pydantic), the platform, torch threads and
device, the git commit and dirty flag of the mmcore checkout (and of the working directory when it
is another repository), the command line, each data file's path, size and sha256, and the resolved
modality dims. ``mmcore eval`` / ``plot`` warn when a data file no longer has the recorded hash.
"""

from __future__ import annotations

import logging
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..data.fetch import sha256_file

log = logging.getLogger("mmcore.train")

FILE = "provenance.json"


def data_files(data) -> list[dict[str, Any]]:
    """Path (as given and absolute), size and sha256 of each file the dataset was read from."""
    out = []
    for p in data.source_files():
        full = Path(p).expanduser().resolve()
        out.append({"path": str(p), "abspath": str(full), "size": full.stat().st_size, "sha256": sha256_file(full)})
    return out


def _git(cwd: Path) -> dict[str, Any] | None:
    """Commit and dirty flag of the git checkout holding ``cwd``; None outside one (or without git)."""
    try:
        top = subprocess.run(["git", "-C", str(cwd), "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                             timeout=10)
        if top.returncode != 0:
            return None
        commit = subprocess.run(["git", "-C", str(cwd), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(cwd), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"root": top.stdout.strip(), "commit": commit.stdout.strip() or None, "dirty": bool(dirty.stdout.strip())}


def collect(rs, data, device, registry=None) -> dict[str, Any]:
    """The provenance record of a run about to train ``rs`` on ``data`` (see the module docstring)."""
    import numpy
    import pydantic
    import torch

    from .. import __version__
    from ..registry import DISTRIBUTION, get_registry

    reg = registry or rs.registry or get_registry()
    here = _git(Path(__file__).resolve().parent)
    cwd_git = _git(Path.cwd())
    rec: dict[str, Any] = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": shlex.join(sys.argv),
        "cwd": os.getcwd(),
        "versions": {DISTRIBUTION: __version__, "python": platform.python_version(), "torch": torch.__version__,
                     "numpy": numpy.__version__, "pydantic": pydantic.VERSION},
        "plugins": [{"name": p.dist, "version": p.version, "plugin_api": p.api, "status": p.status}
                    for p in reg.plugins if not p.builtin],
        "platform": {"system": platform.platform(), "machine": platform.machine(), "processor": platform.processor(),
                     "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": str(device),
                     "cuda": torch.version.cuda if torch.cuda.is_available() else None},
        "git": {"mmcore": here, "cwd": cwd_git if cwd_git and (not here or cwd_git["root"] != here["root"]) else None},
        "data": {"name": data.info.name, "task": data.info.task, "files": data_files(data)},
        "modalities": {m: {"dim": data.info.dims.get(m), "length": data.info.lengths.get(m)} for m in data.info.dims},
    }
    if torch.cuda.is_available() and str(device).startswith("cuda"):
        rec["platform"]["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return rec


def check_data_unchanged(recorded: dict[str, Any], data) -> list[str]:
    """Warnings for data files whose sha256 differs from the recorded one (or that were not recorded)."""
    files = {f["abspath"]: f for f in recorded.get("data", {}).get("files", [])}
    out = []
    for now in data_files(data):
        was = files.get(now["abspath"])
        if was is None:
            out.append(f"{now['path']}: not the data file this run was trained on "
                       f"({', '.join(f['path'] for f in files.values()) or 'none recorded'})")
        elif was["sha256"] != now["sha256"]:
            out.append(f"{now['path']}: changed since the run was trained (sha256 {was['sha256'][:12]}… then, "
                       f"{now['sha256'][:12]}… now; size {was['size']} then, {now['size']} now): metrics may not be "
                       "comparable with the run's own results")
    return out
