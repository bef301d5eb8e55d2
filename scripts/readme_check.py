"""Run every ```bash block of README.md, in order, in a fresh copy of the repository and a fresh venv.

usage: python scripts/readme_check.py [--keep] [--only N[,N...]] [--list]

The tracked files (``git ls-files``) are copied into a temporary folder with ``shared/`` linked beside
it (as CI has it), and each block runs there in its own ``bash -euo pipefail`` from the copy's root,
after the blocks before it: the README's first command makes the venv the later ones use.
A few commands are rewritten, each for a stated reason (``REWRITES``): long trainings get tiny
sizes, the network download is replaced by the cached copy of the same file, ``runs/<run>`` becomes
the latest run folder, and the test-suite block is skipped because CI runs it just before. Everything
else runs exactly as written. Exit 1 at the first failing block, with its output.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # scripts/, for _checkout
from _checkout import REPO, SHARED, copy_checkout, remove_unless_kept  # noqa: E402

TINY_RUN = "--set train.epochs=1"
#: (pattern, replacement, reason): applied to each command line in order; None skips the line
REWRITES: list[tuple[re.Pattern, str | None, str]] = [
    (re.compile(r"^bash scripts/test\.sh.*$"), None, "the test suite itself: CI runs it just before this check"),
    (re.compile(r"^python3 scripts/index_install_check\.py.*$"), None, "the index install check: CI runs it just before"),
    (re.compile(r"\S*mmcore data fetch mmmo[^&;|]*"),
     r'mkdir -p "$MMCORE_DATA_DIR/mmmo" && ln -sf "$MMCORE_SHARED/data/mmmo.npz" "$MMCORE_DATA_DIR/mmmo/mmmo.npz" '
     r"&& .venv/bin/mmcore data list ", "no network in CI: the cache gets the shared copy of the same converted file"),
    (re.compile(r"(mmcore run \S+\.yaml)"), rf"\1 {TINY_RUN}", "size: one epoch"),
    (re.compile(r"(mmcore sweep \S+\.yaml.*?)--seeds \d+"), rf"\1--seeds 1 {TINY_RUN}", "size: one seed, one epoch"),
    (re.compile(r"runs/<run>"), "$(ls -dt runs/*/ | head -1)", "the latest run folder"),
]


def bash_blocks(readme: str) -> list[str]:
    """The ```bash fenced blocks of a markdown text, in order."""
    return [m.group(1) for m in re.finditer(r"^```bash\n(.*?)^```", readme, re.S | re.M)]


def rewrite(block: str) -> tuple[str, list[str]]:
    """The block as it will run (line by line, comments kept) and the reasons of every rewrite."""
    lines, why = [], []
    for line in block.splitlines():
        for pattern, repl, reason in REWRITES:
            if pattern.search(line):
                if repl is None:
                    line, reason = f"# skipped: {line}", reason
                else:
                    line = pattern.sub(repl, line)
                why.append(reason)
                if repl is None:
                    break
        lines.append(line)
    return "\n".join(lines), why


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true", help="keep the temporary copy (its path is printed)")
    ap.add_argument("--only", help="comma-separated block numbers to run (1-based; earlier blocks are not run)")
    ap.add_argument("--list", action="store_true", help="print the blocks as they would run, run nothing")
    args = ap.parse_args(argv)
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        blocks = bash_blocks(f.read())
    chosen = {int(n) for n in args.only.split(",")} if args.only else set(range(1, len(blocks) + 1))
    if args.list:
        for i, block in enumerate(blocks, 1):
            text, why = rewrite(block)
            print(f"--- block {i}{' (rewritten: ' + '; '.join(why) + ')' if why else ''}\n{text}")
        return 0
    tmp = tempfile.mkdtemp(prefix="mmcore-readme-")
    root = copy_checkout(tmp, untracked=False)
    env = {**os.environ, "MMCORE_DATA_DIR": os.path.join(tmp, "data"), "MMCORE_SHARED": SHARED,
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("VIRTUAL_ENV", None)
    print(f"README check in {root} (load average {os.getloadavg()[0]:.2f})", flush=True)
    try:
        for i, block in enumerate(blocks, 1):
            if i not in chosen:
                continue
            text, why = rewrite(block)
            print(f"--- block {i}{' (rewritten: ' + '; '.join(why) + ')' if why else ''}\n{text}", flush=True)
            t0 = time.time()
            r = subprocess.run(["bash", "-euo", "pipefail", "-c", text], cwd=root, env=env,
                               capture_output=True, text=True)
            print(f"    exit {r.returncode} in {time.time() - t0:.0f} s", flush=True)
            if r.returncode != 0:
                print(f"README block {i} failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}", file=sys.stderr)
                return 1
        print(f"all {len(chosen)} README blocks ran")
        return 0
    finally:
        remove_unless_kept(tmp, args.keep)


if __name__ == "__main__":
    sys.exit(main())
