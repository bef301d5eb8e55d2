"""The pieces of scripts/index_install_check.py (run by .ci/run) that decide pass or fail, on small inputs.

The script itself builds every distribution and installs a plugin by name in a fresh venv (minutes);
these tests check that its wheel checks and its index catch what they are meant to catch.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location("index_install_check",
                                              os.path.join(REPO, "scripts", "index_install_check.py"))
check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check)

pytestmark = pytest.mark.skipif(sys.version_info < (3, 11), reason="the script reads pyproject.toml with tomllib (3.11)")


def _plugin_src(tmp_path, deps='["mmcore-lib"]'):
    src = tmp_path / "src"
    (src / "mmcore_plugin_x").mkdir(parents=True)
    (src / "pyproject.toml").write_text(
        f'[project]\nname = "mmcore-plugin-x"\ndynamic = ["version"]\ndependencies = {deps}\n'
        '[tool.setuptools.packages.find]\ninclude = ["mmcore_plugin_x*"]\n')
    (src / "mmcore_plugin_x" / "__init__.py").write_text('__version__ = "0.2.0"\n')
    (src / "mmcore_plugin_x" / "plugin.py").write_text("")
    return src


def _wheel(tmp_path, *, name="mmcore-plugin-x", version="0.2.0", requires=("mmcore-lib",), modules=None,
           entry_points="[mmcore]\nx = mmcore_plugin_x.plugin\n"):
    path = tmp_path / f"mmcore_plugin_x-{version}-py3-none-any.whl"
    meta = (f"Metadata-Version: 2.4\nName: {name}\nVersion: {version}\n"
            + "".join(f"Requires-Dist: {r}\n" for r in requires)
            + "Description-Content-Type: text/markdown\n\n# x\n")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"mmcore_plugin_x-{version}.dist-info/METADATA", meta)
        z.writestr(f"mmcore_plugin_x-{version}.dist-info/entry_points.txt", entry_points)
        for m in modules if modules is not None else ("__init__.py", "plugin.py"):
            z.writestr(f"mmcore_plugin_x/{m}", "")
    return str(path)


def test_a_correct_wheel_has_no_problems(tmp_path):
    assert check.check_wheel(_wheel(tmp_path), str(_plugin_src(tmp_path))) == []


@pytest.mark.parametrize("kwargs,problem", [
    ({"requires": ("mmcore",)}, "depends on 'mmcore', the unrelated project"),
    ({"requires": ("mmcore>=0.1", "mmcore-lib")}, "depends on 'mmcore', the unrelated project"),
    ({"version": "0.1.0"}, "!= mmcore_plugin_x.__version__ '0.2.0'"),
    ({"name": "mmcore-plugin-y"}, "Name ['mmcore-plugin-y'] != pyproject's 'mmcore-plugin-x'"),
    ({"modules": ("__init__.py",)}, "modules missing from the wheel: mmcore_plugin_x/plugin.py"),
    ({"entry_points": ""}, "no entry point in the 'mmcore' group"),
])
def test_wheel_problems_are_caught(tmp_path, kwargs, problem):
    problems = check.check_wheel(_wheel(tmp_path, **kwargs), str(_plugin_src(tmp_path)))
    assert any(problem in p for p in problems), problems


def test_an_optional_extra_naming_mmcore_is_not_a_runtime_dependency(tmp_path):
    wheel = _wheel(tmp_path, requires=("mmcore-lib", 'pytest; extra == "test"'))
    assert check.check_wheel(wheel, str(_plugin_src(tmp_path))) == []


def test_index_pages_follow_pep_503(tmp_path):
    files = []
    for base in ("mmcore_lib-0.1.0-py3-none-any.whl", "mmcore_lib-0.1.0.tar.gz", "mmcore_plugin_ot-0.1.0.tar.gz"):
        (tmp_path / base).write_bytes(b"x")
        files.append(str(tmp_path / base))
    simple = check.write_index(files, str(tmp_path / "index"))
    assert sorted(os.listdir(simple)) == ["index.html", "mmcore-lib", "mmcore-plugin-ot"]
    page = open(os.path.join(simple, "mmcore-lib", "index.html")).read()
    sha = "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"  # sha256(b"x")
    assert f'href="../../files/mmcore_lib-0.1.0.tar.gz#sha256={sha}"' in page and page.count("<a ") == 2
