"""The library does not depend on the command line: only mmcore/cli.py parses arguments.

Library functions take plain arguments, so they can be called from Python, from a notebook or
by another front end; `mmcore.cli` is the one module that imports argparse, and no module imports
it back (no import circle cli -> library -> cli).
"""

from __future__ import annotations

import ast
import os

import pytest

PKG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mmcore")
MODULES = sorted(os.path.join(d, f) for d, _, fs in os.walk(PKG) for f in fs if f.endswith(".py"))
LIBRARY = [p for p in MODULES if os.path.relpath(p, PKG) not in ("cli.py", "__main__.py")]


def imports(source: str, rel: str) -> set[str]:
    """Absolute names of the modules a file at mmcore/``rel`` imports (relative imports resolved)."""
    package = ["mmcore", *rel[:-3].split("/")[:-1]]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            mod = ".".join([*base, node.module] if node.module else base)
            found.add(mod)
            found |= {f"{mod}.{a.name}" for a in node.names}
    return found


def cli_imports(names: set[str]) -> set[str]:
    return {n for n in names if n == "mmcore.cli" or n.startswith("mmcore.cli.")}


@pytest.mark.parametrize("path", LIBRARY, ids=[os.path.relpath(p, PKG) for p in LIBRARY])
def test_library_module_neither_parses_arguments_nor_imports_the_cli(path):
    rel = os.path.relpath(path, PKG).replace(os.sep, "/")
    names = imports(open(path, encoding="utf-8").read(), rel)
    assert "argparse" not in names, "only mmcore/cli.py parses arguments"
    assert not cli_imports(names), "a library module imports the CLI"


@pytest.mark.parametrize("source,rel", [("from ..cli import _overrides", "train/run.py"),
                                        ("from . import cli", "builder.py"), ("import mmcore.cli", "x.py"),
                                        ("from .cli import main", "__init__.py")])
def test_the_checker_catches_every_spelling_of_a_cli_import(source, rel):
    assert cli_imports(imports(source, rel))
    assert "mmcore.train.checkpoint" in imports("from .checkpoint import x", "train/run.py")
