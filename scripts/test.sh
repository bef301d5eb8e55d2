#!/usr/bin/env bash
# Sets everything up and runs the whole test suite, the way CI does (.ci/run calls this).
#   1. a virtual environment (.venv-test) with the CPU build of torch pinned by constraints.txt;
#   2. the core alone, with no plugin installed: its tests must pass without any plugin;
#   3. every plugin under plugins/ and the example third-party package installed, then the core's
#      tests again (the contract test now covers the plugins' components) and each plugin's tests.
# Extra arguments go to every pytest call, e.g.  bash scripts/test.sh -x -q
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${MMCORE_TEST_VENV:-.venv-test}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"
pip_install() { "$PY" -m pip install -q --disable-pip-version-check -c constraints.txt "$@"; }

# pytest exit code 5 means "no tests collected": not a failure for a folder that has none yet.
run_pytest() {
  local rc=0
  "$PY" -m pytest "$@" || rc=$?
  if [ "$rc" -eq 5 ]; then echo "(no tests collected in $*)"; rc=0; fi
  return "$rc"
}

PLUGIN_DIRS=$(ls -d plugins/*/ 2>/dev/null | sed 's:/$::' || true)
EXTRA_DIRS=""
[ -f examples/third_party_aligner/pyproject.toml ] && EXTRA_DIRS="examples/third_party_aligner"
dist_name() { "$PY" -c 'import sys,tomllib;print(tomllib.load(open(sys.argv[1]+"/pyproject.toml","rb"))["project"]["name"])' "$1"; }

echo "== installing mmcore (distribution mmcore-lib) with test extras into $VENV"
# the core's distribution was called `mmcore` before 0.1.0 was renamed mmcore-lib (the PyPI name `mmcore` is an
# unrelated project); a venv made before the rename would keep both, and their files overlap
"$PY" -m pip uninstall -y -q mmcore >/dev/null 2>&1 || true
pip_install -e ".[test,docs]"
# the optional `ray` extra for the Ray sweep test (tests/test_sweep_ray.py skips, saying why, without it);
# measured: a 79 MB wheel, 285 MB installed with its dependencies, 8 s from pip's cache
pip_install -e ".[ray]" || echo "ray could not be installed: the Ray sweep tests will skip"

echo "== core alone (no plugin installed)"
for d in $PLUGIN_DIRS $EXTRA_DIRS; do "$PY" -m pip uninstall -y -q "$(dist_name "$d")" >/dev/null 2>&1 || true; done
run_pytest tests "$@"

if [ -n "$PLUGIN_DIRS$EXTRA_DIRS" ]; then
  echo "== installing plugins: $PLUGIN_DIRS $EXTRA_DIRS"
  args=()
  for d in $PLUGIN_DIRS $EXTRA_DIRS; do args+=(-e "$d"); done
  pip_install "${args[@]}"   # one call, so plugins that depend on each other resolve locally
  # their test extras separately: pip 23 cannot resolve local inter-plugin dependencies given with [extras]
  mapfile -t test_deps < <("$PY" scripts/_test_requirements.py $PLUGIN_DIRS $EXTRA_DIRS)
  [ "${#test_deps[@]}" -eq 0 ] || pip_install "${test_deps[@]}"
  # MMSA, the reference of the baselines' equivalence tests: its model files need only torch, and its
  # declared dependencies (transformers, a torch pin of its own, ...) must not come along
  if [ -d plugins/mmcore-plugin-baselines ]; then
    pip_install --no-deps mmsa==2.2.1 || echo "mmsa could not be installed: the MMSA-equivalence tests will skip"
  fi
  echo "== core tests with every plugin installed"
  run_pytest tests "$@"
  for d in $PLUGIN_DIRS $EXTRA_DIRS; do
    echo "== $d"
    run_pytest "$d/tests" --rootdir "$d" "$@"
  done
fi
# the docs site (mkdocs --strict: a broken link or missing page fails; math, lists, API reference,
# a browser screenshot) is built and checked by tests/test_docs_site.py in both passes above
echo "== all tests passed"
