"""mmcore.native: header-free C++ libraries built on first use, cached by hash, failures reported not raised."""

from __future__ import annotations

import ctypes
import shutil

import pytest

from mmcore import native

SOURCE = 'extern "C" int mmcore_test_add(int a, int b) { return a + b; }\n'
ARGTYPES = {"mmcore_test_add": [ctypes.c_int, ctypes.c_int]}

needs_compiler = pytest.mark.skipif(not (shutil.which("c++") or shutil.which("g++")),
                                    reason="no C++ compiler on PATH")


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """An empty cache folder and an empty per-process memo."""
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setattr(native, "_builds", {})
    return tmp_path


@needs_compiler
def test_builds_loads_and_caches_by_hash(fresh):
    first = native.compile_and_load("pkg", "adder", SOURCE, ARGTYPES)
    assert first.error is None and first.lib.mmcore_test_add(2, 40) == 42
    assert first.compile_seconds > 0 and first.path.startswith(str(fresh / "pkg" / "adder_"))
    again = native.compile_and_load("pkg", "adder", SOURCE, ARGTYPES)
    assert again.path == first.path and again.compile_seconds == 0.0  # loaded from the cache
    edited = native.compile_and_load("pkg", "adder", SOURCE + "// edited\n", ARGTYPES)
    assert edited.path != first.path and edited.compile_seconds > 0  # a new source, a new hash


@needs_compiler
def test_build_library_is_memoised_per_package_and_name(fresh):
    first = native.build_library("pkg", "adder", SOURCE, ARGTYPES)
    assert native.build_library("pkg", "adder", SOURCE, ARGTYPES) is first
    assert native.build_library("other", "adder", SOURCE, ARGTYPES) is not first


@needs_compiler
def test_compile_error_is_reported_not_raised(fresh):
    build = native.compile_and_load("pkg", "broken", "this is not C++", ARGTYPES)
    assert build.lib is None and build.path is None
    assert "exited with" in build.error and build.error.count("\n") == 0


@needs_compiler
def test_missing_symbol_is_reported_not_raised(fresh):
    build = native.compile_and_load("pkg", "adder", SOURCE, {"mmcore_test_missing": []})
    assert build.lib is None and "mmcore_test_missing" in build.error


def test_missing_compiler_is_reported_not_raised(fresh, monkeypatch):
    monkeypatch.setenv("CXX", str(fresh / "no-such-c++"))
    build = native.build_library("pkg", "adder", SOURCE, ARGTYPES)
    assert build.lib is None and "no-such-c++" in build.error
