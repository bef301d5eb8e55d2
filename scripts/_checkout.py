"""A copy of this checkout in a scratch folder, for the CI scripts that build and run from a fresh one
(``readme_check.py``, ``index_install_check.py``)."""

from __future__ import annotations

import os
import shutil
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared")


def copy_checkout(dest: str, *, untracked: bool) -> str:
    """The tracked files of the working tree, with uncommitted edits (and with ``untracked`` the untracked files
    git does not ignore), into dest/main, with shared/ linked beside it as CI has it; returns dest/main."""
    cmd = ["git", "ls-files", "-z", "--cached"] + (["--others", "--exclude-standard"] if untracked else [])
    files = subprocess.run(cmd, cwd=REPO, capture_output=True, check=True).stdout
    root = os.path.join(dest, "main")
    for rel in filter(None, files.decode().split("\0")):
        src = os.path.join(REPO, rel)
        if os.path.isfile(src):
            os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
            shutil.copy2(src, os.path.join(root, rel))
    if os.path.isdir(SHARED):
        os.symlink(SHARED, os.path.join(dest, "shared"))
    return root


def remove_unless_kept(path: str, keep: bool) -> None:
    """Delete the scratch folder ``path``, or with ``keep`` (the scripts' --keep) leave it and print where it is."""
    if keep:
        print(f"kept {path}")
    else:
        shutil.rmtree(path, ignore_errors=True)
