"""Sweep grids: ``--grid KEY=V1,V2`` axes and named ``--variant``\\s, crossed with seeds (torch-free).

A *variant* is a named list of ``KEY=VALUE`` overrides; a *cell* is a variant at one seed. Axes
given with ``--grid`` are crossed with each other and with the ``--variant``\\s. ``--set KEY=VALUE``
is a fixed override of every cell, as in ``mmcore run`` (the value is never split at commas);
neither an axis with one value nor a ``--set`` appears in the variant names. Every cell's spec
is validated before anything trains; all invalid cells are reported at once.

Why ``--grid`` (earlier versions spelled axes ``--set KEY=V1,V2``): one option name keeps one
meaning across commands. The variant names and resolved specs are unchanged, so a sweep
directory made with the old spelling continues under the new one.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import re
from dataclasses import dataclass

import yaml

from ..errors import MmcoreUserError, SpecError
from ..spec import ResolvedSpec
from ..spec.validate import validate_data
from ..spec.yaml_source import Source, apply_overrides, load_yaml

BASE_NAME = "base"  # the variant name when neither --grid axes nor --variant give one
_SLUG_UNSAFE = re.compile(r"[^A-Za-z0-9._=+,-]+")
_MAX_SLUG = 80


class SweepError(MmcoreUserError):
    """A sweep cannot start: a malformed axis or variant, invalid cells, or a directory of another grid."""


@dataclass(frozen=True)
class Variant:
    """A named set of overrides (``key=value`` texts, values parsed as YAML when applied)."""

    name: str
    overrides: tuple[str, ...] = ()

    @property
    def slug(self) -> str:
        """The variant's directory name: the name with unsafe characters replaced by ``_``."""
        slug = _SLUG_UNSAFE.sub("_", self.name).strip("._") or "variant"
        if len(slug) > _MAX_SLUG:  # keep paths short; the hash keeps long names distinct
            slug = slug[: _MAX_SLUG - 9] + "-" + hashlib.sha1(self.name.encode()).hexdigest()[:8]
        return slug


@dataclass(frozen=True)
class Cell:
    """One training run of the sweep: a variant at a seed."""

    variant: Variant
    seed: int

    @property
    def key(self) -> str:
        return f"{self.variant.slug}/seed{self.seed}"

    def run_dir(self, out: str) -> str:
        import os

        return os.path.join(out, "cells", self.variant.slug, f"seed{self.seed}")


def split_top_level(text: str, sep: str) -> list[str]:
    """Split ``text`` at ``sep`` outside brackets, braces and quotes (so YAML flow values survive).

    ``"a,[1,2],'x,y'"`` -> ``["a", "[1,2]", "'x,y'"]``.
    """
    parts, depth, quote, cur = [], 0, None, []
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth = max(0, depth - 1)
        elif ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    return parts


def _check_override(item: str, flag: str) -> tuple[str, str]:
    """``key=value`` -> (key, value); a SweepError naming the flag when malformed."""
    where = f"command line ({flag} {item})"
    if "=" not in item:
        raise SweepError.at(where, "expected KEY=VALUE, e.g. aligner.name=identity")
    key, value = item.split("=", 1)
    key = key.strip()
    if not key or not all(key.split(".")):
        raise SweepError.at(where, f"empty key segment in {key!r}")
    if key == "seed":
        raise SweepError.at(where, "the sweep sets 'seed' itself", ("hint: use --seeds N for seeds 0..N-1",))
    try:
        yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise SweepError.at(where, f"value {value!r} is not valid YAML ({str(e).splitlines()[0]})") from None
    return key, value


def parse_axis(text: str) -> tuple[str, list[str]]:
    """``--grid KEY=V1,V2`` -> (KEY, ["V1", "V2"]); commas inside brackets or quotes do not split."""
    key, value = _check_override(text, "--grid")
    values = [v.strip() for v in split_top_level(value, ",")]
    if any(v == "" for v in values) and len(values) > 1:
        raise SweepError.at(f"command line (--grid {text})", f"empty value in the list {value!r}")
    for v in values:
        _check_override(f"{key}={v}", "--grid")
    return key, values


def looks_like_axis(item: str) -> bool:
    """True if a ``--set KEY=VALUE`` value is a top-level comma list (an axis in earlier versions of sweep)."""
    _, _, value = item.partition("=")
    return len(split_top_level(value, ",")) > 1


def parse_variant(text: str) -> Variant:
    """``--variant NAME:KEY=V;KEY=V`` (or without ``NAME:``, named after its overrides)."""
    head, sep, rest = text.partition(":")
    if sep and "=" not in head:
        name, body = head.strip(), rest
        if not name:
            raise SweepError.at(f"command line (--variant {text})", "empty variant name before ':'")
    else:
        name, body = "", text
    overrides = tuple(s.strip() for s in split_top_level(body, ";") if s.strip())
    for item in overrides:
        _check_override(item, "--variant")
    return Variant(name or ",".join(overrides) or BASE_NAME, overrides)


def build_variants(axes: list[str] | None, variants: list[str] | None,
                   fixed: list[str] | None = None) -> list[Variant]:
    """The sweep's variants: each ``--variant`` (or one unnamed base) crossed with the ``--grid`` axes.

    ``fixed`` are ``--set KEY=VALUE`` overrides of every cell (one value each, never split).
    Overrides apply in this order (later wins): the variant's, the fixed ones, then the axes'.
    Raises: SweepError for malformed items, a key given twice, or two variants with one name.
    """
    parsed_fixed = [(key, [value.strip()]) for key, value in (_check_override(f, "--set") for f in fixed or ())]
    parsed_axes = parsed_fixed + [parse_axis(a) for a in axes or ()]
    keys = [k for k, _ in parsed_axes]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise SweepError.at("command line (--set/--grid)", f"{', '.join(dup)} given more than once",
                            (f"hint: list every value in one axis: --grid {dup[0]}=V1,V2",))
    bases = [parse_variant(v) for v in variants or ()] or [None]
    combos = list(itertools.product(*[[(f"{k}={v}", len(vals) > 1) for v in vals] for k, vals in parsed_axes]))
    out: list[Variant] = []
    for base in bases:
        for combo in combos:
            named = [o for o, varies in combo if varies]
            parts = ([base.name] if base is not None else []) + named
            overrides = (base.overrides if base is not None else ()) + tuple(o for o, _ in combo)
            out.append(Variant(",".join(parts) or BASE_NAME, overrides))
    for attr, label in (("name", "name"), ("slug", "directory name")):
        seen: dict[str, Variant] = {}
        for v in out:
            other = seen.setdefault(getattr(v, attr), v)
            if other is not v:
                raise SweepError.at("command line (--variant)", f"two variants have the {label} "
                                    f"{getattr(v, attr)!r} ({'; '.join(other.overrides) or 'no overrides'} and "
                                    f"{'; '.join(v.overrides) or 'no overrides'})",
                                    ("hint: name them: --variant NAME:KEY=V",))
    return out


def resolve_cells(spec_path: str, base_overrides: list[str], variants: list[Variant],
                  seeds: list[int]) -> dict[Cell, ResolvedSpec]:
    """Validate every cell's spec (base overrides, then the variant's, then ``seed=k``).

    Raises: SpecError for the spec file itself; SweepError listing every invalid cell, grouped
    by variant, before anything has trained.
    """
    source = load_yaml(spec_path)
    resolved: dict[Cell, ResolvedSpec] = {}
    bad: dict[Variant, dict[str, list[int]]] = {}
    for variant in variants:
        for seed in seeds:
            src = Source(name=source.name, data=copy.deepcopy(source.data), key_pos=dict(source.key_pos),
                         value_pos=dict(source.value_pos))
            try:
                apply_overrides(src, list(base_overrides))
                # errors in a variant's overrides name the variant, not a plain --set
                apply_overrides(src, list(variant.overrides), label=f"variant {variant.name!r}: {{item}}")
                apply_overrides(src, [f"seed={seed}"])
                resolved[Cell(variant, seed)] = validate_data(src)
            except SpecError as e:
                bad.setdefault(variant, {}).setdefault(str(e), []).append(seed)
    if bad:
        n_cells = sum(len(s) for errs in bad.values() for s in errs.values())
        lines = []
        for variant, errors in bad.items():
            for message, failed in errors.items():
                which = (f"variant {variant.name!r} (all {len(seeds)} seeds)" if len(failed) == len(seeds) > 1 else
                         "cell " + ", ".join(Cell(variant, k).key for k in failed))
                lines.append(f"{which}, overrides: {'; '.join(variant.overrides) or 'none'}:")
                lines += ["  " + line for line in message.splitlines()]
        raise SweepError.at(spec_path, f"{n_cells} of {len(variants) * len(seeds)} cells have an invalid spec; "
                            "nothing was trained", lines)
    return resolved
