"""Safe YAML loading that remembers where every key and value is (1-based line:column).

Only PyYAML's safe constructors run: ``!!python/*`` tags and other code-executing constructs are
refused with a positioned error. Duplicate keys, which PyYAML silently resolves last-wins, are
errors here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..errors import Position, SpecError, SpecIssue

Path_ = tuple  # a path into the document: keys (str) and list indices (int)


@dataclass
class Source:
    """A parsed spec document: its display name, the plain data, and positions by path."""

    name: str
    data: Any
    key_pos: dict[Path_, Position] = field(default_factory=dict)  # where the key of a mapping entry is
    value_pos: dict[Path_, Position] = field(default_factory=dict)  # where a value starts
    overridden: dict[Path_, str] = field(default_factory=dict)  # path -> "--set a.b=v" text

    def where(self, path: Path_, *, key: bool = False) -> Position:
        """Position of a path: its value (or its key if ``key``), else its nearest ancestor's key;
        an overridden path is at ``command line (--set ...)``."""
        p = tuple(path)
        for i in range(len(p), -1, -1):
            if p[:i] in self.overridden:
                return Position(f"command line ({self.overridden[p[:i]]})")
        for i in range(len(p), 0, -1):
            q = p[:i]
            pos = self.key_pos.get(q) if (key or i < len(p)) else (self.value_pos.get(q) or self.key_pos.get(q))
            if pos is not None:
                return Position(self.name, pos.line, pos.col)
        return Position(self.name, 1, 1)


def _pos(name: str, mark) -> Position:
    """The position of a PyYAML mark (0-based) in file ``name``; just the file when there is no mark."""
    return Position(name, mark.line + 1, mark.column + 1) if mark is not None else Position(name)


def _error(name: str, mark, message: str, hints: tuple[str, ...] = ()) -> SpecError:
    return SpecError([SpecIssue(_pos(name, mark), "", message, hints)])


def _record(node: yaml.Node, path: Path_, src: Source, name: str) -> None:
    src.value_pos[path] = _pos(name, node.start_mark)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, Position] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is None:
                raise _error(name, key_node.start_mark, "mapping keys must be plain scalars")
            if key_node.tag != "tag:yaml.org,2002:str" and not key_node.style:
                kind = key_node.tag.rsplit(":", 1)[-1]
                raise _error(name, key_node.start_mark, f"the key {key!r} is read as a YAML {kind}, not a string",
                             (f"quote it: '{key}': ... (YAML 1.1 reads on/off/yes/no as booleans and bare numbers "
                              "as numbers)",))
            if key in seen:
                raise _error(name, key_node.start_mark, f"duplicate key {key!r} (first defined at line {seen[key].line})",
                             ("each key may appear once; YAML would silently keep only the last one",))
            seen[key] = _pos(name, key_node.start_mark)
            src.key_pos[path + (key,)] = seen[key]
            _record(value_node, path + (key,), src, name)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _record(item, path + (i,), src, name)


#: Most YAML values a spec may expand to, aliases counted at every use (a spec has a few hundred):
#: bounds the time and memory that "billion laughs" alias bombs could take.
MAX_NODES = 100_000


def _expanded_size(node, memo: dict[int, int]) -> int:
    """Values the node expands to when aliases are followed (memoised: linear in the document)."""
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = 0  # a recursive alias counts nothing more on re-entry
    if isinstance(node, yaml.MappingNode):
        n = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        n = 1 + sum(_expanded_size(v, memo) for v in node.value)
    else:
        n = 1
    memo[id(node)] = n
    return n


def _reader_error(name: str, text: str, e: yaml.reader.ReaderError) -> SpecError:
    """A character YAML does not accept (a NUL or other control byte), with its line:column."""
    pos = max(0, min(e.position, len(text)))
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    code = e.character if isinstance(e.character, int) else ord(e.character)
    return SpecError([SpecIssue(Position(name, line, col), "", f"invalid YAML: character U+{code:04X} is not allowed in "
                                "a YAML document", ("remove the control character; a spec is plain text",))])


def parse_yaml(text: str, name: str = "<spec>") -> Source:
    """Parse YAML text into a :class:`Source`; raises :class:`SpecError` with a position."""
    try:
        loader = yaml.SafeLoader(text)  # checks every character first
    except yaml.reader.ReaderError as e:
        raise _reader_error(name, text, e) from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise SpecError([SpecIssue(Position(name, 1, 1), "", "the spec is empty",
                                       ("a spec needs at least modalities, encoders, fuser and head; see docs/spec.md",))])
        if _expanded_size(node, {}) > MAX_NODES:
            raise _error(name, node.start_mark, f"the spec expands to more than {MAX_NODES} YAML values",
                         ("aliases (*name) that repeat anchors (&name) multiply; a spec needs a few hundred values",))
        src = Source(name=name, data=None)
        _record(node, (), src, name)
        src.data = loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = (e.problem or str(e)).strip()
        hints = ()
        if "python/" in problem or "constructor" in problem:
            hints = ("specs are loaded safely: Python tags (!!python/...) are not allowed; name registered components instead",)
        raise _error(name, mark, f"invalid YAML: {problem}", hints) from None
    except yaml.YAMLError as e:
        raise _error(name, None, f"invalid YAML: {e}") from None
    except RecursionError:
        raise SpecError([SpecIssue(Position(name, 1, 1), "", "the spec is nested too deeply to read",
                                   ("a spec is a few levels of mappings and lists",))]) from None
    finally:
        loader.dispose()
    if not isinstance(src.data, dict):
        kind = type(src.data).__name__
        raise SpecError([SpecIssue(Position(name, 1, 1), "", f"the spec must be a mapping of sections, got a {kind}")])
    return src


def load_yaml(path: str | os.PathLike) -> Source:
    """Read and parse a spec file; unreadable paths raise :class:`SpecError` saying why."""
    name = os.fspath(path)
    if os.path.isdir(name):
        raise SpecError([SpecIssue(name, "", "is a directory, not a spec file",
                                   ("pass a YAML file, e.g. examples/baseline.yaml",))])
    try:
        with open(name, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise SpecError([SpecIssue(name, "", "no such file")]) from None
    except OSError as e:
        raise SpecError([SpecIssue(name, "", f"cannot read: {e.strerror or e}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise SpecError([SpecIssue(Position(name, line, col), "", f"not UTF-8 text (byte {e.start}: "
                                   f"{raw[e.start:e.start + 1]!r}); is this a YAML spec?")]) from None
    if not text.strip():
        raise SpecError([SpecIssue(Position(name, 1, 1), "", "the spec is empty",
                                   ("a spec needs at least modalities, encoders, fuser and head; see docs/spec.md",))])
    return parse_yaml(text, name)


def apply_overrides(src: Source, overrides: list[str] | None, label: str = "--set {item}") -> Source:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML) in place; remember them for errors.

    ``label`` is how errors name the origin of an override (``{item}`` is the ``KEY=VALUE`` text).
    """
    for item in overrides or ():
        if "=" not in item:
            raise SpecError([SpecIssue("command line", "", f"--set {item!r}: expected KEY=VALUE, e.g. aligner.name=identity")])
        key, value = item.split("=", 1)
        parts = [p for p in key.strip().split(".")]
        if not all(parts):
            raise SpecError([SpecIssue("command line", "", f"--set {item!r}: empty key segment")])
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError as e:
            raise SpecError([SpecIssue("command line", key, f"--set value {value!r} is not valid YAML: {e}")]) from None
        cur = src.data
        for i, p in enumerate(parts[:-1]):
            nxt = cur.get(p) if isinstance(cur, dict) else None
            if nxt is None:
                nxt = {}
                cur[p] = nxt
            elif not isinstance(nxt, dict):
                raise SpecError([SpecIssue("command line", ".".join(parts[: i + 1]),
                                           f"--set {item!r}: {'.'.join(parts[:i + 1])} is not a mapping")])
            cur = nxt
        cur[parts[-1]] = parsed
        src.overridden[tuple(parts)] = label.format(item=item)
    return src


def data_overrides(path: str) -> list[str]:
    """Overrides for ``--data PATH|NAME``: a file picks the loader by its type; a catalogue name reads the cache."""
    import json

    from ..data.catalogue import DATASETS, fetchable_names, unknown_dataset_message
    from ..errors import MmcoreUserError

    low = path.lower()
    if low.endswith(".npz"):
        name = "npz"
    elif low.endswith((".pkl", ".pickle")):
        name = "mmsa"
    elif path in DATASETS and DATASETS[path].loader == "npz":
        return [f"data={json.dumps({'name': 'npz', 'params': {'dataset': path}})}"]
    elif path in DATASETS:
        raise MmcoreUserError(f"--data {path}: {DATASETS[path].title} is not fetched by mmcore; "
                              f"{DATASETS[path].notes[0]}")
    elif "/" not in path and "\\" not in path and "." not in path:
        raise MmcoreUserError(f"--data {path}: {unknown_dataset_message(path)}; or give a .npz or MMSA .pkl file")
    else:
        raise MmcoreUserError(f"--data {path}: cannot tell the format from the extension; use a .npz or an MMSA .pkl, "
                              f"a dataset name ({', '.join(fetchable_names())}), or set data.name / "
                              "data.params.path in the spec")
    return [f"data={json.dumps({'name': name, 'params': {'path': path}})}"]
