"""docs/fidelity.md: every numbered equation of the four papers has a row, and every row names existing tests.

A row's "test" cell holds one or more backticked ``path::test_name`` (path relative to the repository);
the file must exist and define ``def test_name``. The equation tables must cover Eq. 1..N of each paper.
"""

import os
import re

import pytest

from conftest import REPO

DOC = os.path.join(REPO, "docs", "fidelity.md")
#: numbered equations per paper (MGMR-Net's display equations are numbered in order of appearance, see the doc)
EQUATIONS = {"AlignMamba": 12, "DecAlign": 13, "MGMR-Net": None, "MM-Align": 17}
TEST_REF = re.compile(r"`([\w./-]+\.py)::(test_\w+)`")


def _sections() -> dict[str, str]:
    text = open(DOC, encoding="utf-8").read()
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def _tables(section: str):
    """(header cells, rows of cells) for every markdown table in the section."""
    lines = [ln for ln in section.splitlines()]
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and re.match(r"^\|[-| :]+\|$", lines[i + 1].strip()):
            header = [c.strip().lower() for c in lines[i].strip().strip("|").split("|")]
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            yield header, rows
        else:
            i += 1


def _declared_count(section: str) -> int:
    m = re.search(r"numbered equations: (\d+)", section)
    assert m, "the MGMR-Net section must state 'numbered equations: N' (its text lost the numbers)"
    return int(m.group(1))


@pytest.mark.parametrize("paper", sorted(EQUATIONS))
def test_every_numbered_equation_has_a_row(paper):
    sections = _sections()
    assert paper in sections, f"docs/fidelity.md has no '## {paper}' section"
    n = EQUATIONS[paper] or _declared_count(sections[paper])
    seen = set()
    for header, rows in _tables(sections[paper]):
        if header and header[0] == "eq.":
            for row in rows:
                seen.update(int(k) for k in re.findall(r"Eq\. (\d+)", row[0]))
    missing = sorted(set(range(1, n + 1)) - seen)
    assert not missing, f"{paper}: no row for Eq. {missing}"


def test_every_row_names_existing_tests():
    problems, rows_checked = [], 0
    for paper, section in _sections().items():
        for header, rows in _tables(section):
            if "test" not in header:
                continue
            col = header.index("test")
            for row in rows:
                rows_checked += 1
                refs = TEST_REF.findall(row[col] if col < len(row) else "")
                if not refs:
                    problems.append(f"{paper}: row {row[0]!r} names no test")
                for path, name in refs:
                    full = os.path.join(REPO, path)
                    if not os.path.exists(full):
                        problems.append(f"{paper}: row {row[0]!r}: {path} does not exist")
                    elif not re.search(rf"^\s*def {name}\(", open(full, encoding="utf-8").read(), flags=re.M):
                        problems.append(f"{paper}: row {row[0]!r}: {path} has no {name}")
    assert rows_checked > 50
    assert not problems, "\n".join(problems)
