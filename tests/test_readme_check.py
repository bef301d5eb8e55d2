"""The README contract and the README runner (scripts/readme_check.py, run by .ci/run after the suite).

The README opens with two commands (set up + a real pipeline end to end; the test suite); CI runs
the second and, after it, every bash block of the README in a fresh copy and venv, with the few
rewrites the runner states. These tests keep that wiring true without running the blocks.
"""

from __future__ import annotations

import importlib.util
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location("readme_check", os.path.join(REPO, "scripts", "readme_check.py"))
readme_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(readme_check)


def blocks():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        return readme_check.bash_blocks(f.read())


def test_readme_opens_with_setup_and_run_then_the_test_command():
    first, second = blocks()[:2]
    assert "python3 -m venv .venv" in first and "mmcore run examples/" in first
    assert second.strip() == "bash scripts/test.sh"


def test_ci_runs_the_readme_test_command_and_the_readme_check():
    with open(os.path.join(REPO, ".ci", "run"), encoding="utf-8") as f:
        ci = f.read()
    assert "bash scripts/test.sh" in ci and "scripts/readme_check.py" in ci


def test_every_rewrite_says_why_and_keeps_the_command():
    for block in blocks():
        text, why = readme_check.rewrite(block)
        assert len(text.splitlines()) == len(block.splitlines())
        assert all(why), "every rewrite has a reason"
    text, why = readme_check.rewrite(".venv/bin/mmcore run examples/alignmamba.yaml --out runs/a")
    assert text == ".venv/bin/mmcore run examples/alignmamba.yaml --set train.epochs=1 --out runs/a" and why
    text, _ = readme_check.rewrite(".venv/bin/pip install -e '.[data]' && .venv/bin/mmcore data fetch mmmo && x")
    assert "mmcore data fetch" not in text and "mmmo.npz" in text and text.endswith("&& x")
    text, _ = readme_check.rewrite(".venv/bin/mmcore sweep examples/a.yaml --variant full: --seeds 5  # 10 cells")
    assert "--seeds 1 --set train.epochs=1" in text
    text, why = readme_check.rewrite(".venv/bin/mmcore plugins")
    assert text == ".venv/bin/mmcore plugins" and not why  # everything else runs as written
