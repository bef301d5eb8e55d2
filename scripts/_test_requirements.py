"""Requirement helpers for scripts/test.sh; each prints one item a line.

  _test_requirements.py DIR...                     the `test` extra of each project directory
  _test_requirements.py --local-closure DIR CANDIDATE_DIR...
                                                   DIR and the candidate directories it depends on, transitively
  _test_requirements.py --extraneous ROOT...       distributions installed in this interpreter that are not
                                                   needed by the ROOT requirements (e.g. "mmcore-lib[test]")
"""

import re
import sys
import tomllib
from importlib import metadata

try:
    from packaging.requirements import Requirement
except ImportError:  # a bare venv: pip carries its own copy
    from pip._vendor.packaging.requirements import Requirement

# what every venv holds before anything is installed into it
BOOTSTRAP = {"pip", "setuptools", "wheel"}


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def project(d):
    with open(f"{d}/pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def test_extras(dirs):
    return [req for d in dirs for req in project(d).get("optional-dependencies", {}).get("test", [])]


def local_closure(target, candidates):
    """`target` and the candidate directories whose distribution it depends on, directly or not."""
    by_name = {canonical(project(d)["name"]): d for d in candidates}
    found, todo = [], [target]
    while todo:
        d = todo.pop()
        if d in found:
            continue
        found.append(d)
        for req in project(d).get("dependencies", []):
            dep = by_name.get(canonical(Requirement(req).name))
            if dep is not None:
                todo.append(dep)
    return found


def extraneous(roots):
    """Installed distributions outside the requirement closure of `roots` (markers and extras honoured)."""
    installed = {canonical(dist.metadata["Name"]): dist for dist in metadata.distributions()}
    needed, seen, todo = set(BOOTSTRAP), set(), [Requirement(r) for r in roots]
    while todo:
        req = todo.pop()
        name = canonical(req.name)
        if name not in installed:
            continue
        needed.add(name)
        for extra in [""] + sorted(canonical(e) for e in req.extras):
            if (name, extra) in seen:
                continue
            seen.add((name, extra))
            for spec in installed[name].requires or []:
                sub = Requirement(spec)
                if sub.marker is None or sub.marker.evaluate({"extra": extra}):
                    todo.append(sub)
    return sorted(installed[n].metadata["Name"] for n in set(installed) - needed)


def main(args):
    if args[:1] == ["--local-closure"]:
        out = local_closure(args[1], args[2:])
    elif args[:1] == ["--extraneous"]:
        out = extraneous(args[1:])
    else:
        out = test_extras(args)
    for line in out:
        print(line)


if __name__ == "__main__":
    main(sys.argv[1:])
