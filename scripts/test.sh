#!/usr/bin/env bash
# Sets everything up and runs the whole test suite, the way CI does (.ci/run calls this).
#   1. a virtual environment (.venv-test) with the CPU build of torch pinned by constraints.txt;
#   2. the core alone, with no plugin installed: its tests must pass without any plugin;
#   3. each plugin alone: in a second venv (.venv-test-isolated) holding only mmcore[test], for each
#      plugin under plugins/ and the example third-party package in turn, that plugin, the plugins it
#      declares as dependencies and its own `test` extra (and MMSA for the baselines), then its tests;
#   4. every plugin installed together in .venv-test, then the core's tests again (the contract test
#      now covers the plugins' components) and each plugin's tests.
# Extra arguments go to every pytest call, e.g.  bash scripts/test.sh -x -q
# Venv locations: MMCORE_TEST_VENV (stages 2 and 4), MMCORE_TEST_ISOLATED_VENV (stage 3).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${MMCORE_TEST_VENV:-.venv-test}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"
pip_install() { "$PY" -m pip install -q --disable-pip-version-check -c constraints.txt "$@"; }
stage() { echo "== [${SECONDS} s] $*"; }   # a stage's heading, with the time since the start

# pytest exit code 5 means "no tests collected": not a failure for a folder that has none yet.
# run_pytest PYTHON PYTEST_ARGS...
run_pytest() {
  local rc=0 py=$1
  shift
  "$py" -m pytest "$@" || rc=$?
  if [ "$rc" -eq 5 ]; then echo "(no tests collected in $*)"; rc=0; fi
  return "$rc"
}

PLUGIN_DIRS=$(ls -d plugins/*/ 2>/dev/null | sed 's:/$::' || true)
EXTRA_DIRS=""
[ -f examples/third_party_aligner/pyproject.toml ] && EXTRA_DIRS="examples/third_party_aligner"
dist_name() { "$PY" -c 'import sys,tomllib;print(tomllib.load(open(sys.argv[1]+"/pyproject.toml","rb"))["project"]["name"])' "$1"; }
# MMSA, the reference of the baselines' equivalence tests: its model files need only torch, and its
# declared dependencies (transformers, a torch pin of its own, ...) must not come along
MMSA=mmsa==2.2.1

stage "installing mmcore (distribution mmcore-lib) with test extras into $VENV"
# the core's distribution was called `mmcore` before 0.1.0 was renamed mmcore-lib (the PyPI name `mmcore` is an
# unrelated project); a venv made before the rename would keep both, and their files overlap
"$PY" -m pip uninstall -y -q mmcore >/dev/null 2>&1 || true
pip_install -e ".[test,docs]"
# the optional `ray` extra for the Ray sweep test (tests/test_sweep_ray.py skips, saying why, without it);
# measured: a 79 MB wheel, 285 MB installed with its dependencies, 8 s from pip's cache
pip_install -e ".[ray]" || echo "ray could not be installed: the Ray sweep tests will skip"

stage "core alone (no plugin installed)"
for d in $PLUGIN_DIRS $EXTRA_DIRS; do "$PY" -m pip uninstall -y -q "$(dist_name "$d")" >/dev/null 2>&1 || true; done
run_pytest "$PY" tests "$@"

ISO_VENV=${MMCORE_TEST_ISOLATED_VENV:-.venv-test-isolated}
if [ -n "$PLUGIN_DIRS$EXTRA_DIRS" ]; then
  # One venv for all plugins, emptied back to mmcore[test] between them (every distribution that
  # mmcore[test] does not need is uninstalled), then checked to hold nothing beyond mmcore[test], the
  # plugin[test] and the plugins it depends on: a suite cannot see another plugin or a package only
  # another plugin brings (POT, MMSA, ...). Cheaper than a fresh venv per plugin (~20 s each for torch).
  # Measured (2-core dev machine, load ~3-6, `bash scripts/test.sh -q -x`, installs from pip's cache): the
  # stage adds ~170 s to a run: 49 s to make its venv (torch, mmcore[test]; ~2 s once it exists), ~8 s per
  # plugin to uninstall/install/check, and 77 s for the six suites (the same tests stage 4 runs again).
  stage "installing mmcore (mmcore-lib) with test extras into $ISO_VENV"
  [ -x "$ISO_VENV/bin/python" ] || "$PYTHON" -m venv "$ISO_VENV"
  IPY="$ISO_VENV/bin/python"
  iso_pip() { "$IPY" -m pip "$1" -q --disable-pip-version-check "${@:2}"; }
  # the build backend in the venv itself, so that each plugin's editable install skips making a build env (~6 s each)
  iso_pip install -c constraints.txt "setuptools>=77" wheel
  iso_pip install -c constraints.txt --no-build-isolation -e ".[test]"
  for d in $PLUGIN_DIRS $EXTRA_DIRS; do
    stage "$d alone"
    mapfile -t gone < <("$IPY" scripts/_test_requirements.py --extraneous "mmcore-lib[test]")
    [ "${#gone[@]}" -eq 0 ] || iso_pip uninstall -y "${gone[@]}"
    mapfile -t own < <("$IPY" scripts/_test_requirements.py --local-closure "$d" $PLUGIN_DIRS $EXTRA_DIRS)
    args=()
    for o in "${own[@]}"; do args+=(-e "$o"); done
    iso_pip install -c constraints.txt --no-build-isolation "${args[@]}"
    mapfile -t test_deps < <("$IPY" scripts/_test_requirements.py "$d")
    [ "${#test_deps[@]}" -eq 0 ] || iso_pip install -c constraints.txt "${test_deps[@]}"
    roots=("mmcore-lib[test]" "$(dist_name "$d")[test]")
    if [ "$d" = plugins/mmcore-plugin-baselines ]; then
      iso_pip install -c constraints.txt --no-deps "$MMSA" && roots+=("$MMSA") \
        || echo "mmsa could not be installed: the MMSA-equivalence tests will skip"
    fi
    mapfile -t stray < <("$IPY" scripts/_test_requirements.py --extraneous "${roots[@]}")
    if [ "${#stray[@]}" -ne 0 ]; then echo "not isolated: $d's venv also holds ${stray[*]}" >&2; exit 1; fi
    "$ISO_VENV/bin/mmcore" plugins | grep -v '^ '
    run_pytest "$IPY" "$d/tests" --rootdir "$d" "$@"
  done

  stage "installing plugins: $PLUGIN_DIRS $EXTRA_DIRS"
  args=()
  for d in $PLUGIN_DIRS $EXTRA_DIRS; do args+=(-e "$d"); done
  pip_install "${args[@]}"   # one call, so plugins that depend on each other resolve locally
  # their test extras separately: pip 23 cannot resolve local inter-plugin dependencies given with [extras]
  mapfile -t test_deps < <("$PY" scripts/_test_requirements.py $PLUGIN_DIRS $EXTRA_DIRS)
  [ "${#test_deps[@]}" -eq 0 ] || pip_install "${test_deps[@]}"
  if [ -d plugins/mmcore-plugin-baselines ]; then
    pip_install --no-deps "$MMSA" || echo "mmsa could not be installed: the MMSA-equivalence tests will skip"
  fi
  stage "core tests with every plugin installed"
  run_pytest "$PY" tests "$@"
  for d in $PLUGIN_DIRS $EXTRA_DIRS; do
    stage "$d"
    run_pytest "$PY" "$d/tests" --rootdir "$d" "$@"
  done
fi
# the docs site (mkdocs --strict: a broken link or missing page fails; math, lists, API reference,
# a browser screenshot) is built and checked by tests/test_docs_site.py in the core-alone and all-plugins passes
stage "all tests passed"
