"""Build every distribution, serve them from a local package index, and install a plugin BY NAME in a fresh venv.

usage: python3 scripts/index_install_check.py [--keep] [--plugin DIST]

What a user of the package index gets, checked without publishing anything (CI runs this after the suite):

1. The working tree (tracked and untracked, not ignored) is copied to a temporary folder, so no stale
   ``*.egg-info`` or ``build/`` of a developer's checkout leaks into a distribution.
2. ``python -m build`` makes the sdist of every distribution (the core, ``plugins/*``,
   ``examples/third_party_aligner``) and then the wheel FROM that sdist (so a file missing from the sdist
   breaks the wheel); ``twine check --strict`` checks the metadata, and :func:`check_wheel` checks what
   twine does not: name and version equal to the pyproject and the package's ``__version__``, the
   ``mmcore`` entry point of a plugin, every module of the package, and no dependency on ``mmcore``.
3. A stand-in for the unrelated project that owns the name ``mmcore`` on PyPI (version 0.59.0) joins
   the index, as the real one is on PyPI. Guard: resolving every distribution by name selects
   ``mmcore-lib`` and never ``mmcore`` — and, as the control that shows the guard can fail, a throwaway
   plugin that depends on ``mmcore`` does select the stand-in.
4. The wheels are served as a PEP 503 simple index by ``http.server`` on 127.0.0.1. In a fresh venv:
   ``pip install -c constraints.txt --index-url http://127.0.0.1:PORT/simple mmcore-plugin-adl``; it
   must pull ``mmcore-plugin-ot`` and ``mmcore-lib`` by name from that index, non-editable. torch and the
   other third-party dependencies come from the sources pip is configured with (``pip config list``):
   the CPU wheel of the pinned torch must be among them, or the check stops with the reason (an
   unpinned source would download the multi-GB CUDA build).
5. From a folder outside the checkout: ``mmcore plugins``, ``mmcore list aligner``, ``mmcore validate``
   on the paper recipe and a one-epoch ``mmcore run`` of a recipe that needs the plugin.
6. Install hints: a spec that needs a plugin that is not installed gets an error with two commands;
   the by-name one (index) and then the source-checkout one are each run as printed, and the spec
   then validates.

Exit 0 when every step passed, 1 at the first failure (with its output).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # scripts/, for _checkout
from _checkout import REPO, copy_checkout, remove_unless_kept  # noqa: E402

CORE = "mmcore-lib"
FOREIGN = "mmcore"  # the unrelated project on PyPI that owns the name
FOREIGN_VERSION = "0.59.0"
DIST_DIRS = [".", *sorted(f"plugins/{d}" for d in os.listdir(os.path.join(REPO, "plugins"))
                          if os.path.isfile(os.path.join(REPO, "plugins", d, "pyproject.toml"))),
             "examples/third_party_aligner"]
TINY = ["--set", "train.epochs=1", "--set", "data.params.n_train=64", "--set", "data.params.n_valid=16",
        "--set", "data.params.n_test=16"]


class CheckFailed(Exception):
    pass


def normalize(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def run(cmd: list[str], *, cwd: str | None = None, env: dict | None = None, ok: tuple[int, ...] = (0,),
        quiet: bool = True) -> subprocess.CompletedProcess:
    t0 = time.time()
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    shown = " ".join(cmd if len(" ".join(cmd)) < 300 else cmd[:8] + ["..."])
    print(f"  $ {shown}   [exit {r.returncode}, {time.time() - t0:.1f} s]", flush=True)
    if r.returncode not in ok:
        raise CheckFailed(f"command failed (exit {r.returncode}): {' '.join(cmd)}\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    if not quiet:
        print("    " + r.stdout.strip().replace("\n", "\n    "), flush=True)
    return r


def pyproject(path: str) -> dict:
    import tomllib

    with open(os.path.join(path, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def package_version(src: str, package: str) -> str:
    """``__version__`` of ``package`` read from its ``__init__.py`` without importing it."""
    with open(os.path.join(src, package, "__init__.py"), encoding="utf-8") as f:
        m = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', f.read(), re.M)
    if not m:
        raise CheckFailed(f"{src}/{package}/__init__.py has no __version__ = '...'")
    return m.group(1)


def requirement_name(req: str) -> str:
    return normalize(re.split(r"[\s;\[<>=!~(]", req.strip(), maxsplit=1)[0])


def check_wheel(wheel: str, src: str) -> list[str]:
    """Problems of one built wheel against its source folder ``src``; [] when it is right."""
    meta = pyproject(src)["project"]
    name = meta["name"]
    packages = sorted({p.split("*")[0] for p in
                       pyproject(src).get("tool", {}).get("setuptools", {}).get("packages", {}).get("find", {})
                       .get("include", [])})
    problems = []
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        metadata_file = next((n for n in names if n.endswith(".dist-info/METADATA")), None)
        if metadata_file is None:
            return [f"{wheel}: no METADATA"]
        text = z.read(metadata_file).decode()
        headers = {}
        for line in text.split("\n\n", 1)[0].splitlines():
            key, _, value = line.partition(": ")
            headers.setdefault(key, []).append(value)
        if headers.get("Name") != [name]:
            problems.append(f"Name {headers.get('Name')} != pyproject's {name!r}")
        for pkg in packages:
            want = package_version(src, pkg)
            if headers.get("Version") != [want]:
                problems.append(f"Version {headers.get('Version')} != {pkg}.__version__ {want!r}")
            in_src = {os.path.relpath(os.path.join(d, f), src) for d, _, fs in os.walk(os.path.join(src, pkg))
                      for f in fs if f.endswith(".py")}
            missing = sorted(p for p in in_src if p.replace(os.sep, "/") not in names)
            if missing:
                problems.append(f"modules missing from the wheel: {', '.join(missing)}")
        deps = [requirement_name(r.split(";")[0]) for r in headers.get("Requires-Dist", []) if "extra ==" not in r]
        if FOREIGN in deps:
            problems.append(f"depends on {FOREIGN!r}, the unrelated project on PyPI; depend on {CORE!r}")
        if name != CORE and CORE not in deps:
            problems.append(f"does not depend on {CORE!r} (Requires-Dist: {deps})")
        eps_file = next((n for n in names if n.endswith(".dist-info/entry_points.txt")), None)
        eps = z.read(eps_file).decode() if eps_file else ""
        if name != CORE and "[mmcore]" not in eps:
            problems.append("no entry point in the 'mmcore' group")
        if name == CORE and not re.search(r"^mmcore = mmcore\.cli:main$", eps, re.M):
            problems.append("no 'mmcore' console script")
        if not headers.get("Description-Content-Type", [""])[0].startswith("text/markdown"):
            problems.append("long description is not the README (text/markdown)")
    return [f"{os.path.basename(wheel)}: {p}" for p in problems]


def write_index(files: list[str], root: str) -> str:
    """A PEP 503 simple index of ``files`` under ``root`` (files/ and simple/); returns simple/'s path."""
    by_project: dict[str, list[str]] = {}
    os.makedirs(os.path.join(root, "files"), exist_ok=True)
    for path in files:
        base = os.path.basename(path)
        shutil.copy2(path, os.path.join(root, "files", base))
        project = base[: -len(".tar.gz")].rsplit("-", 1)[0] if base.endswith(".tar.gz") else base.split("-")[0]
        by_project.setdefault(normalize(project), []).append(base)
    simple = os.path.join(root, "simple")
    os.makedirs(simple, exist_ok=True)
    with open(os.path.join(simple, "index.html"), "w") as f:
        f.write("<!DOCTYPE html><html><body>\n"
                + "".join(f'<a href="{p}/">{p}</a>\n' for p in sorted(by_project)) + "</body></html>\n")
    for project, bases in by_project.items():
        os.makedirs(os.path.join(simple, project), exist_ok=True)
        links = []
        for base in sorted(bases):
            with open(os.path.join(root, "files", base), "rb") as fh:
                digest = hashlib.sha256(fh.read()).hexdigest()
            links.append(f'<a href="../../files/{base}#sha256={digest}">{base}</a>\n')
        with open(os.path.join(simple, project, "index.html"), "w") as f:
            f.write("<!DOCTYPE html><html><body>\n" + "".join(links) + "</body></html>\n")
    return simple


def serve(root: str) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve ``root`` on 127.0.0.1 (a free port) in a daemon thread; returns the server and the index URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # pip's requests are not this check's output
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=root))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/simple"


def pip_sources(python: str) -> tuple[list[str], list[str]]:
    """(find-links, extra index URLs) that pip is configured with (files and environment)."""
    r = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True, text=True)
    links, extra = [], []
    for line in r.stdout.splitlines():
        key, _, value = line.partition("=")
        value = value.strip().strip("'\"")
        if key.endswith(".find-links"):
            links += value.split()
        elif key.endswith(".extra-index-url"):
            extra += value.split()
    links += os.environ.get("PIP_FIND_LINKS", "").split()
    extra += os.environ.get("PIP_EXTRA_INDEX_URL", "").split()
    return list(dict.fromkeys(links)), list(dict.fromkeys(extra))


def local_torch_wheel(links: list[str], pin: str) -> str | None:
    for link in links:
        path = link.removeprefix("file://")
        if os.path.isdir(path):
            for f in sorted(os.listdir(path)):
                if f.startswith(f"torch-{pin}") and f.endswith(".whl"):
                    return os.path.join(path, f)
    return None


def foreign_standin(work: str, python: str, out: str) -> str:
    """Build a stand-in of the unrelated ``mmcore`` 0.59.0: package ``mmcore`` without any of our API."""
    src = os.path.join(work, "foreign-mmcore")
    os.makedirs(os.path.join(src, "mmcore"))
    with open(os.path.join(src, "pyproject.toml"), "w") as f:
        f.write('[build-system]\nrequires = ["setuptools>=77"]\nbuild-backend = "setuptools.build_meta"\n\n'
                f'[project]\nname = "{FOREIGN}"\nversion = "{FOREIGN_VERSION}"\n'
                'description = "Stand-in for the unrelated geometry library that owns this name on PyPI."\n')
    with open(os.path.join(src, "mmcore", "__init__.py"), "w") as f:
        f.write('"""Not mmcore-lib: a stand-in for the unrelated PyPI project named mmcore."""\nGEOMETRY = True\n')
    run([python, "-m", "build", "--wheel", "-o", out, src])
    return next(os.path.join(out, f) for f in os.listdir(out) if f.startswith(f"{FOREIGN}-{FOREIGN_VERSION}"))


def misnamed_plugin(work: str, python: str, out: str) -> str:
    """The guard's control: a plugin that depends on ``mmcore`` (the mistake the rename fixed)."""
    src = os.path.join(work, "misnamed-plugin")
    os.makedirs(os.path.join(src, "mmcore_plugin_misnamed"))
    with open(os.path.join(src, "pyproject.toml"), "w") as f:
        f.write('[build-system]\nrequires = ["setuptools>=77"]\nbuild-backend = "setuptools.build_meta"\n\n'
                '[project]\nname = "mmcore-plugin-misnamed"\nversion = "0.1.0"\ndependencies = ["mmcore"]\n')
    open(os.path.join(src, "mmcore_plugin_misnamed", "__init__.py"), "w").close()
    run([python, "-m", "build", "--wheel", "-o", out, src])
    return next(os.path.join(out, f) for f in os.listdir(out) if f.startswith("mmcore_plugin_misnamed-"))


def resolved(pip: list[str], reqs: list[str], args: list[str], work: str, tag: str) -> dict[str, str]:
    """{name: version} that pip would install for ``reqs`` (``--dry-run --report``)."""
    report = os.path.join(work, f"report-{tag}.json")
    run([*pip, "install", "--dry-run", "--ignore-installed", "--report", report, *args, *reqs])
    with open(report) as f:
        items = json.load(f)["install"]
    return {normalize(i["metadata"]["name"]): i["metadata"]["version"] for i in items}


def installed(python: str) -> dict[str, dict]:
    code = ("import importlib.metadata as m, json\n"
            "print(json.dumps({d.metadata['Name']: {'version': d.version, "
            "'direct_url': d.read_text('direct_url.json')} for d in m.distributions()}))")
    r = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True, cwd=tempfile.gettempdir())
    return {normalize(k): v for k, v in json.loads(r.stdout).items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is printed)")
    ap.add_argument("--plugin", default="mmcore-plugin-adl", help="the plugin to install by name (default: %(default)s)")
    args = ap.parse_args(argv)
    if sys.version_info < (3, 11):
        print("index install check: SKIPPED: needs Python 3.11 (tomllib)")
        return 0
    t_start = time.time()
    work = tempfile.mkdtemp(prefix="mmcore-index-")
    server = None
    steps: list[str] = []
    try:
        root = copy_checkout(work, untracked=True)
        with open(os.path.join(root, "constraints.txt")) as f:
            torch_pin = re.search(r"^torch==(\S+)", f.read(), re.M).group(1)
        tools = os.path.join(work, "tools")
        run([sys.executable, "-m", "venv", tools])
        tpy = os.path.join(tools, "bin", "python")
        links, extra = pip_sources(tpy)
        torch_wheel = local_torch_wheel(links, torch_pin)
        if torch_wheel is None:
            print(f"index install check: SKIPPED: no local wheel of torch=={torch_pin} among pip's find-links "
                  f"({links or 'none configured'}); installing by name would download the multi-GB CUDA build")
            return 0
        run([tpy, "-m", "pip", "install", "-q", "build", "twine"])

        print("== 1. build sdists and wheels (wheel from the sdist), check metadata", flush=True)
        dist = os.path.join(work, "dist")
        names = {}
        for d in DIST_DIRS:
            src = os.path.join(root, d)
            names[pyproject(src)["project"]["name"]] = src
            run([tpy, "-m", "build", "-o", dist, src])
        built = sorted(os.path.join(dist, f) for f in os.listdir(dist))
        run([tpy, "-m", "twine", "check", "--strict", *built])
        problems = []
        for name, src in names.items():
            wheels = [w for w in built if w.endswith(".whl") and normalize(os.path.basename(w).split("-")[0]) == normalize(name)]
            sdists = [s for s in built if s.endswith(".tar.gz") and normalize(os.path.basename(s).rsplit("-", 1)[0]) == normalize(name)]
            if len(wheels) != 1 or len(sdists) != 1:
                problems.append(f"{name}: expected one wheel and one sdist, got {wheels + sdists}")
                continue
            problems += check_wheel(wheels[0], src)
        if problems:
            raise CheckFailed("built distributions have problems:\n  " + "\n  ".join(problems))
        steps.append(f"built and checked {len(names)} distributions ({len(built)} files): {', '.join(sorted(names))}")
        print(f"  {steps[-1]}", flush=True)

        print("== 2. local PEP 503 index with a stand-in for the foreign 'mmcore'", flush=True)
        extra_dir = os.path.join(work, "extra")
        standin = foreign_standin(work, tpy, extra_dir)
        control = misnamed_plugin(work, tpy, extra_dir)
        simple = write_index([*built, standin, control], os.path.join(work, "index"))
        server, url = serve(os.path.dirname(simple))
        print(f"  serving {simple} at {url}", flush=True)

        venv = os.path.join(work, "venv")
        run([sys.executable, "-m", "venv", venv])
        py = os.path.join(venv, "bin", "python")
        mm = os.path.join(venv, "bin", "mmcore")
        pip = [py, "-m", "pip", "--disable-pip-version-check"]
        constraints = os.path.join(root, "constraints.txt")
        # the local index replaces PyPI; torch and the third-party dependencies come from pip's configured
        # sources (find-links with the CPU torch wheel; extra indexes), or from PyPI when none is configured
        index_args = ["-c", constraints, "--index-url", url]
        if not extra:
            index_args += ["--extra-index-url", "https://pypi.org/simple"]

        print("== 3. guard: resolving by name never selects the foreign 'mmcore'", flush=True)
        every = sorted(names)
        got = resolved(pip, every, index_args, work, "all")
        if FOREIGN in got or got.get(CORE) is None:
            raise CheckFailed(f"resolving {every} selected {sorted(got.items())}: want {CORE}, never {FOREIGN}")
        bad = resolved(pip, ["mmcore-plugin-misnamed"], index_args, work, "control")
        if bad.get(FOREIGN) != FOREIGN_VERSION:
            raise CheckFailed(f"control: a plugin depending on 'mmcore' should resolve to the stand-in "
                              f"{FOREIGN} {FOREIGN_VERSION}, got {bad}: the guard could not see the collision")
        steps.append(f"guard: {len(every)} distributions resolve to {CORE} {got[CORE]} and never '{FOREIGN}' "
                     f"(control: a plugin depending on 'mmcore' resolves to {FOREIGN} {bad[FOREIGN]})")
        print(f"  {steps[-1]}", flush=True)

        print(f"== 4. fresh venv: pip install {args.plugin} by name", flush=True)
        run([*pip, "install", "-q", *index_args, args.plugin])
        have = installed(py)
        need = {normalize(n) for n in (args.plugin, CORE)}
        need |= {requirement_name(r) for r in pyproject(names[args.plugin])["project"]["dependencies"]}
        for n in sorted(need):
            if n not in have:
                raise CheckFailed(f"{n} was not installed by `pip install {args.plugin}`")
            if have[n]["direct_url"]:  # set for local paths and URLs (editable or not); absent for index installs
                raise CheckFailed(f"{n} was not installed from the index: direct_url.json = {have[n]['direct_url']}")
        if FOREIGN in have:
            raise CheckFailed(f"the foreign '{FOREIGN}' {have[FOREIGN]['version']} got installed")
        steps.append(f"`pip install {args.plugin}` installed " + ", ".join(f"{n} {have[n]['version']}" for n in sorted(need))
                     + f" from the index; torch {have['torch']['version']}")
        print(f"  {steps[-1]}", flush=True)

        print("== 5. the installed command, from a folder outside the checkout", flush=True)
        outside = os.path.join(work, "outside")
        os.makedirs(outside)
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        env.pop("MMCORE_LOAD_PLUGINS", None)
        r = run([py, "-c", "import mmcore, mmcore_plugin_ot as o; print(mmcore.__file__); print(o.__file__)"],
                cwd=outside, env=env)
        if any(not p.startswith(venv) for p in r.stdout.split()):
            raise CheckFailed(f"imported from outside the venv: {r.stdout}")
        r = run([mm, "plugins", "--json"], cwd=outside, env=env)
        listed = {p["name"]: p for p in json.loads(r.stdout)}
        for n in need - {CORE}:
            if listed.get(n, {}).get("status") != "ok":
                raise CheckFailed(f"mmcore plugins: {n} is not ok: {listed.get(n)}")
        run([mm, "plugins"], cwd=outside, env=env, quiet=False)
        r = run([mm, "list", "aligner"], cwd=outside, env=env, quiet=False)
        if "relaxed_ot" not in r.stdout:
            raise CheckFailed("mmcore list aligner does not show relaxed_ot (mmcore-plugin-ot)")
        run([mm, "validate", os.path.join(root, "examples", "mm_align.yaml")], cwd=outside, env=env, quiet=False)
        run([mm, "run", os.path.join(root, "examples", "lab", "mm_align.yaml"), *TINY, "--out", "run", "--quiet"],
            cwd=outside, env=env)
        if not os.path.isfile(os.path.join(outside, "run", "metrics.jsonl")):
            raise CheckFailed("mmcore run wrote no run/metrics.jsonl")
        steps.append("mmcore plugins, list aligner, validate examples/mm_align.yaml, a one-epoch run of "
                     "examples/lab/mm_align.yaml (adl imputer): ok")
        print(f"  {steps[-1]}", flush=True)

        print("== 6. install hints, each command run as printed", flush=True)
        spec = os.path.join(work, "needs_recon.yaml")
        with open(spec, "w") as f:
            f.write("modalities: {text: {dim: 4}, audio: {dim: 3}}\nencoders: {default: {name: linear}}\n"
                    "imputer: {name: mamba_reconstruction}\nfuser: {name: mean}\nhead: {name: regression_mlp}\n")
        venv_env = {**env, "PATH": os.path.join(venv, "bin") + os.pathsep + env.get("PATH", "")}
        r = run([mm, "validate", spec], cwd=root, env=venv_env, ok=(2,))
        by_name = re.search(r"run: (pip install mmcore-plugin-recon)\n", r.stderr)
        local = re.search(r"or, from this source checkout: (pip install .*)\n", r.stderr)
        if not by_name or not local:
            raise CheckFailed(f"the error does not carry both install commands:\n{r.stderr}")
        print(f"    hint: {by_name.group(1)}\n    hint: {local.group(1)}", flush=True)
        # by name, with the user's index set to the local one (as a published plugin would be found)
        run(["bash", "-c", by_name.group(1)], cwd=root, env={**venv_env, "PIP_INDEX_URL": url,
                                                              "PIP_CONSTRAINT": constraints})
        run([mm, "validate", spec], cwd=root, env=venv_env)
        run([*pip, "uninstall", "-y", "-q", "mmcore-plugin-recon", "mmcore-plugin-mamba"])
        run([mm, "validate", spec], cwd=root, env=venv_env, ok=(2,))
        # from the source checkout, exactly as printed (relative to where the user is)
        run(["bash", "-c", local.group(1)], cwd=root, env=venv_env)
        run([mm, "validate", spec], cwd=root, env=venv_env)
        steps.append(f"hints: `{by_name.group(1)}` (index) and `{local.group(1)}` (checkout) each installed the "
                     "plugin and the spec validated")
        print(f"  {steps[-1]}", flush=True)
        print(f"index install check: all 6 steps passed in {time.time() - t_start:.0f} s")
        return 0
    except CheckFailed as e:
        print(f"index install check FAILED after {time.time() - t_start:.0f} s: {e}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            server.shutdown()
        remove_unless_kept(work, args.keep)


if __name__ == "__main__":
    sys.exit(main())
