"""Fuzzing `mmcore validate` over every example spec: every mutant exits 0 or 2 with a positioned error.

At least 300 mutants per spec (seeded, deterministic): deleted and duplicated lines and keys,
re-indented lines, wrong types, huge/negative/NaN/inf numbers, empty and very long strings,
unicode and control bytes, invalid UTF-8, deep nesting and YAML alias bombs. Each must exit 0 or
2, name ``file:line:col`` (or the command line) in every error, print no traceback, and finish
within a time limit (no hang).
"""

import glob
import os
import random
import re
import signal
import time

import pytest

from conftest import REPO
from mmcore.cli import main

SPECS = sorted(glob.glob(os.path.join(REPO, "examples", "*.yaml")) + glob.glob(os.path.join(REPO, "examples", "lab", "*.yaml")))
MUTANTS = 300
SECONDS = 10  # per validation: far above the ~20 ms it takes

VALUES = ["99999999999999999999", "-1", "-99999999999999999999", ".nan", ".inf", "-.inf", "1e400", "0", "''",
          "null", "true", "[]", "{}", "[1, [2, [3]]]", "{a: {b: {c: 1}}}", "x" * 20000, "'é漢字🙂\u202e'",
          "\"\\u0000\"", "!!python/object/apply:os.system ['true']", "&a [1]", "*nope", "'''", "{", "[", "- - -",
          "0x7fffffffffffffff", "1.5e-400", "~", "'\t'", "@", "%TAG", "? complex key"]
BOMB = "\n".join(["b0: &b0 [x, x, x, x, x, x, x, x, x, x]"] +
                 [f"b{i}: &b{i} [" + ", ".join([f"*b{i - 1}"] * 10) + "]" for i in range(1, 9)]) + "\n"


def mutate(text: str, rng: random.Random) -> bytes:
    lines = text.splitlines()
    op = rng.randrange(12)
    i = rng.randrange(len(lines))
    if op == 0:
        del lines[i]
    elif op == 1:
        lines.insert(i, lines[i])
    elif op == 2:
        lines[i] = " " * rng.choice([1, 2, 3, 7]) + lines[i]
    elif op == 3:
        lines[i] = lines[i].lstrip()
    elif op in (4, 5, 6):  # replace the value after the first ':' of a line, or a flow value inside it
        line = lines[i]
        spots = [m.end() for m in re.finditer(r":\s*", line)]
        if spots:
            at = rng.choice(spots)
            end = min([k for k in (line.find(",", at), line.find("}", at)) if k >= 0] or [len(line)])
            lines[i] = line[:at] + rng.choice(VALUES) + line[end:]
        else:
            lines[i] = line + ": " + rng.choice(VALUES)
    elif op == 7:
        lines.insert(i, "deep: " + "[" * rng.choice([50, 2000, 20000]) + "]" * rng.choice([0, 50, 20000]))
    elif op == 8:
        lines.insert(i, BOMB)
    elif op == 9:  # a control or unusual byte somewhere
        line = lines[i]
        k = rng.randrange(len(line) + 1)
        lines[i] = line[:k] + rng.choice(["\x00", "\x07", "\x1b", "\ufeff", "\u2028", "\x85", "\udcff"]) + line[k:]
    elif op == 10:  # a top-level key repeated or renamed
        lines.append(rng.choice(["seed: 1", "train: {epochs: -5}", "modalities: {}", "losses: {x: {weight: .nan}}",
                                 "aligner: {name: 3}", "head: []", "missing: {train: [{type: temporal, rate: 2}]}"]))
    else:  # raw garbage bytes
        return "\n".join(lines).encode("utf-8", "surrogatepass") + bytes(rng.randrange(256) for _ in range(8))
    return "\n".join(lines).encode("utf-8", "surrogatepass") + b"\n"


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout


@pytest.mark.parametrize("spec", SPECS, ids=[os.path.relpath(p, REPO) for p in SPECS])
def test_every_mutant_exits_0_or_2_with_a_positioned_error(spec, tmp_path, capsys):
    text = open(spec, encoding="utf-8").read()
    rng = random.Random(os.path.basename(spec))
    path = str(tmp_path / "mutant.yaml")
    old = signal.signal(signal.SIGALRM, _alarm)
    failures, worst = [], 0.0
    try:
        for k in range(MUTANTS):
            data = mutate(text, rng)
            with open(path, "wb") as f:
                f.write(data)
            signal.alarm(SECONDS)
            t0 = time.perf_counter()
            try:
                code = main(["validate", path])
            except _Timeout:
                failures.append(f"mutant {k}: no answer within {SECONDS} s")
                continue
            except BaseException as e:  # noqa: BLE001 - anything escaping main is the bug under test
                failures.append(f"mutant {k}: {type(e).__name__} escaped: {e!s:.200}")
                continue
            finally:
                signal.alarm(0)
            worst = max(worst, time.perf_counter() - t0)
            out = capsys.readouterr()
            if code not in (0, 2) or "Traceback" in out.err:
                failures.append(f"mutant {k}: exit {code}: {out.err[-300:]}")
            elif code == 2:
                first = out.err.splitlines()[0] if out.err.strip() else ""
                if not re.match(rf"^{re.escape(path)}:\d+:\d+: error|^command line", first):
                    failures.append(f"mutant {k}: error does not name file:line:col: {first[:200]!r}")
    finally:
        signal.signal(signal.SIGALRM, old)
    assert not failures, f"{len(failures)} of {MUTANTS} mutants of {os.path.basename(spec)}:\n" + "\n".join(failures[:15])
