"""``sweep.json``: what a sweep directory was made for, so a rerun can continue it safely.

The manifest records the spec path, every variant with its overrides and its fully resolved
spec (all defaults filled in, ``seed`` and ``output_dir`` left out), the seeds and missing
rates of the latest invocation, every command line that ran in the directory, and each cell's
latest outcome. A rerun continues the sweep when its variants resolve to the same specs;
changing ``--seeds`` or ``--missing-rates`` is allowed (new seeds train new cells, new rates
are evaluated on finished cells without retraining). Anything else is a different grid and
is refused, naming what differs.

``cli``: the command-line spelling of ``commands``. Manifests without it were written before
sweeps had ``--grid``, when ``--set KEY=V1,V2`` was a grid axis; commands shown from them are
respelled with ``--grid`` (the recorded ones stay as they ran). Their variants resolve as
before, so such a sweep continues under the new spelling.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from typing import Any

from ..spec import ResolvedSpec
from .grid import SweepError, Variant, looks_like_axis

MANIFEST = "sweep.json"
FORMAT = 1
CLI = 2  # 2: grid axes are --grid, --set is a fixed override (1, or no "cli" key: --set KEY=V1,V2 was an axis)
_IGNORED_KEYS = ("seed", "output_dir")  # vary per cell / do not affect a cell's result


def variant_record(variant: Variant, rs: ResolvedSpec) -> dict[str, Any]:
    """The manifest entry of a variant: its name, directory, overrides and resolved spec."""
    spec = {k: v for k, v in rs.to_data().items() if k not in _IGNORED_KEYS}
    return {"name": variant.name, "slug": variant.slug, "overrides": list(variant.overrides),
            "spec": json.loads(json.dumps(spec))}  # JSON round trip: compare like with like


def _diff(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += _diff(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
        return out
    return [] if a == b else [f"{path or '(spec)'}: {json.dumps(a)} -> {json.dumps(b)}"]


def read_manifest(out: str) -> dict[str, Any] | None:
    """The directory's manifest, or None if there is none (SweepError if unreadable)."""
    path = os.path.join(out, MANIFEST)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise SweepError.at(path, f"cannot read the sweep manifest ({e})",
                            ("hint: choose another --out, or delete the directory to start over",)) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("variants"), list):
        raise SweepError.at(path, f"not an mmcore sweep manifest (format {FORMAT})", ("hint: choose another --out",))
    return data


def grid_differences(old: dict[str, Any], records: list[dict[str, Any]]) -> list[str]:
    """Human-readable differences between a manifest's variants and this invocation's."""
    before = {v["name"]: v for v in old["variants"]}
    now = {v["name"]: v for v in records}
    lines = []
    gone, new = [n for n in before if n not in now], [n for n in now if n not in before]
    if gone:
        lines.append(f"variants only in the existing sweep: {', '.join(gone)}")
    if new:
        lines.append(f"variants only in this command: {', '.join(new)}")
    for name in (n for n in now if n in before):
        diff = _diff(before[name]["spec"], now[name]["spec"])
        if diff:
            shown = "; ".join(diff[:4]) + (f"; ... ({len(diff) - 4} more)" if len(diff) > 4 else "")
            lines.append(f"variant {name!r}: {shown}")
    return lines


def current_spelling(command: str, cli: int) -> str:
    """A recorded sweep command as it is written now: ``--set KEY=V1,V2`` of a ``cli`` 1 manifest -> ``--grid``."""
    if cli >= CLI:
        return command
    argv = shlex.split(command)
    for i in range(1, len(argv)):
        if argv[i - 1] == "--set" and looks_like_axis(argv[i]):
            argv[i - 1] = "--grid"
    return shlex.join(argv)


def open_manifest(out: str, spec_path: str, records: list[dict[str, Any]], seeds: list[int],
                  rates: list[float], command: str) -> dict[str, Any]:
    """Check ``out`` against this invocation and return the manifest to write.

    Raises: SweepError if ``out`` holds a sweep of another grid, or is a non-empty directory
    without a manifest (never mix a sweep into unrelated files).
    """
    path = os.path.join(out, MANIFEST)
    old = read_manifest(out)
    if old is None:
        if os.path.isdir(out) and os.listdir(out):
            raise SweepError.at(out, f"the directory is not empty and holds no {MANIFEST}",
                                ("hint: a sweep needs its own directory; choose another --out",))
        return {"format": FORMAT, "cli": CLI, "spec": spec_path, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "commands": [command], "seeds": seeds, "missing_rates": rates, "variants": records, "cells": {}}
    diff = grid_differences(old, records)
    if diff:
        first = current_spelling((old.get("commands") or ["(unknown)"])[0], old.get("cli", 1))
        raise SweepError.at(path, "this directory holds a sweep of a different grid",
                            [*diff, f"hint: continue it with its own command: {first}",
                             "hint: or choose another --out for the new grid"])
    old["commands"] = [*old.get("commands", []), command]
    old.update(seeds=seeds, missing_rates=rates, variants=records)
    return old


def write_manifest(out: str, manifest: dict[str, Any]) -> None:
    from ..train.checkpoint import write_json

    write_json(os.path.join(out, MANIFEST), manifest)
