"""Plugin discovery and isolation: each failure is reported and the other plugins still load."""

import importlib
import json

import pytest

from conftest import run_cli
from mmcore import hookspecs, plugins
from mmcore.errors import PluginError
from mmcore.registry import Registry, get_registry, reset_registry


class FakeDist:
    def __init__(self, name, version="1.0"):
        self.name, self.version = name, version


class FakeEntryPoint:
    def __init__(self, dist, name, module):
        self.dist, self.name, self.module = FakeDist(dist), name, module

    def load(self):
        return importlib.import_module(self.module)


def _fake(monkeypatch, *eps):
    monkeypatch.setattr(plugins, "iter_entry_points", lambda: list(eps))
    reset_registry()


@pytest.fixture(autouse=True)
def _reset():
    reset_registry()
    yield
    reset_registry()


def _info(reg, dist):
    return next(p for p in reg.plugins if p.dist == dist)


def test_good_plugin_registers_its_component(monkeypatch):
    _fake(monkeypatch, FakeEntryPoint("mmcore-plugin-good", "good", "plugins.good_plugin"))
    reg = get_registry()
    assert reg.get("aligner", "echo").provider == "mmcore-plugin-good"
    assert _info(reg, "mmcore-plugin-good").status == "ok"


def test_import_error_is_reported_and_others_load(monkeypatch):
    _fake(monkeypatch, FakeEntryPoint("broken", "broken", "plugins.broken_import"),
          FakeEntryPoint("mmcore-plugin-good", "good", "plugins.good_plugin"))
    reg = get_registry()
    info = _info(reg, "broken")
    assert info.status.startswith("error: ModuleNotFoundError") and info.version == "1.0"
    assert reg.find("aligner", "echo") is not None


def test_raising_hook_commits_nothing_and_others_load(monkeypatch):
    _fake(monkeypatch, FakeEntryPoint("raiser", "r", "plugins.raising_hook"),
          FakeEntryPoint("mmcore-plugin-good", "good", "plugins.good_plugin"))
    reg = get_registry()
    assert "boom in the hook" in _info(reg, "raiser").status
    assert reg.find("aligner", "half_registered") is None
    assert reg.find("aligner", "echo") is not None


def test_duplicate_name_names_both_providers(monkeypatch):
    _fake(monkeypatch, FakeEntryPoint("dupe-dist", "dupe", "plugins.duplicate_name"))
    reg = get_registry()
    status = _info(reg, "dupe-dist").status
    assert "duplicate aligner 'identity'" in status and "mmcore 0.1.0" in status and "dupe-dist 1.0" in status
    assert reg.find("aligner", "unique_one") is not None  # only the clashing name is refused
    hint = " ".join(reg.suggest("aligner", "identity"))
    assert "several plugins" in hint and "dupe-dist" in hint


def test_duplicate_name_makes_a_spec_using_it_fail(monkeypatch, tmp_path, capsys):
    _fake(monkeypatch, FakeEntryPoint("dupe-dist", "dupe", "plugins.duplicate_name"))
    p = tmp_path / "s.yaml"
    p.write_text("modalities: {text: {dim: 4}}\nencoders: {default: {name: linear}}\naligner: {name: identity}\n"
                 "fuser: {name: mean}\nhead: {name: regression_mlp}\n")
    code, _, err = run_cli(["validate", str(p)], capsys)
    assert code == 2 and "provided by several plugins" in err


def test_hook_with_unknown_argument_is_reported(monkeypatch):
    _fake(monkeypatch, FakeEntryPoint("badsig", "b", "plugins.bad_signature"),
          FakeEntryPoint("mmcore-plugin-good", "good", "plugins.good_plugin"))
    reg = get_registry()
    assert "not_in_the_spec" in _info(reg, "badsig").status
    assert reg.find("aligner", "echo") is not None


def test_module_without_hook_is_reported(monkeypatch):
    _fake(monkeypatch, FakeEntryPoint("nohook", "n", "plugins.no_hook"))
    assert "implements no mmcore hook" in _info(get_registry(), "nohook").status


def test_load_plugins_env_restricts_distributions(monkeypatch):
    _fake(monkeypatch, FakeEntryPoint("mmcore-plugin-good", "good", "plugins.good_plugin"))
    monkeypatch.setenv("MMCORE_LOAD_PLUGINS", "")
    reset_registry()
    reg = get_registry()
    assert reg.find("aligner", "echo") is None and [p.dist for p in reg.plugins] == ["mmcore"]
    monkeypatch.setenv("MMCORE_LOAD_PLUGINS", "mmcore_plugin_good")  # underscores and dashes are the same
    reset_registry()
    assert get_registry().find("aligner", "echo") is not None


def test_spec_plugins_option_restricts_distributions(monkeypatch):
    _fake(monkeypatch, FakeEntryPoint("mmcore-plugin-good", "good", "plugins.good_plugin"))
    assert get_registry(only=[]).find("aligner", "echo") is None
    assert get_registry(only=["mmcore-plugin-good"]).find("aligner", "echo") is not None


def test_plugins_command_lists_builtins_and_failures(monkeypatch, capsys):
    _fake(monkeypatch, FakeEntryPoint("broken", "broken", "plugins.broken_import"))
    code, out, _ = run_cli(["plugins", "--json"], capsys)
    data = {p["name"]: p for p in json.loads(out)}
    assert code == 0
    assert data["mmcore"]["builtin"] and "identity" in data["mmcore"]["components"]["aligner"]
    assert data["broken"]["status"].startswith("error:")
    code, _, _ = run_cli(["plugins", "--strict"], capsys)
    assert code == 1


def test_hook_register_components():
    """The one hook: called with a ``register`` callback; staged registrations are committed."""
    reg = Registry()
    pm = plugins.new_plugin_manager()
    mod = importlib.import_module("plugins.good_plugin")
    info = plugins.register_plugin(reg, pm, mod, dist="x", version="0", entry_point="x")
    assert info.status == "ok" and info.components == {"aligner": ["echo"]}


def test_every_hook_is_documented_with_its_signature():
    import inspect
    import os

    from conftest import REPO

    with open(os.path.join(REPO, "docs", "plugins.md")) as f:
        docs = f.read()
    for name, fn in inspect.getmembers(hookspecs, inspect.isfunction):
        if hasattr(fn, "mmcore_spec"):
            sig = f"{name}({', '.join(inspect.signature(fn).parameters)})"
            assert sig in docs, f"docs/plugins.md must document the hook as `{sig}`"
            assert f"test_hook_{name}" in globals(), f"hook {name} needs a test_hook_{name}"


def test_register_validates_its_arguments():
    reg = Registry()
    mod = importlib.import_module("plugins.good_plugin")
    with pytest.raises(PluginError, match="unknown kind"):
        reg.make_entry("alinger", "x", object, mod.EchoParams, provider="p")
    with pytest.raises(PluginError, match="snake_case"):
        reg.make_entry("aligner", "Bad-Name", object, mod.EchoParams, provider="p")
    with pytest.raises(PluginError, match="pydantic model"):
        reg.make_entry("aligner", "x", object, dict, provider="p")


def test_plugin_checks_catch_an_undocumented_param(tmp_path):
    from mmcore.testing import check_params_documented

    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n## mult\n\n| `layers` | `2` | ... |\n\n## other\n")
    with pytest.raises(AssertionError, match="self_layers"):
        check_params_documented("fuser", "mult", str(readme))


def test_plugin_checks_catch_a_hook_that_imports_torch():
    from mmcore.testing import check_hook_imports_no_torch

    check_hook_imports_no_torch("mmcore.builtins.plugin")
    with pytest.raises(AssertionError, match="imported torch"):
        check_hook_imports_no_torch("mmcore.builtins.fusers")


def test_decorator_at_plugin_import_does_not_hang_and_registers(monkeypatch):
    """@mmcore.register inside a plugin module used to wait forever on the registry's own lock."""
    import sys
    import threading

    sys.modules.pop("plugins.decorator_at_import", None)
    _fake(monkeypatch, FakeEntryPoint("deco", "deco", "plugins.decorator_at_import"),
          FakeEntryPoint("mmcore-plugin-good", "good", "plugins.good_plugin"))
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("reg", get_registry()), daemon=True)
    t.start()
    t.join(timeout=20)
    assert not t.is_alive(), "get_registry() hung"
    reg = result["reg"]
    assert reg.get("aligner", "decorated_at_import").provider == "plugins.decorator_at_import"
    assert _info(reg, "deco").status == "ok" and reg.find("aligner", "echo") is not None


def test_slow_import_is_reported_and_skipped_not_waited_for(monkeypatch):
    import time

    monkeypatch.setenv("MMCORE_PLUGIN_TIMEOUT", "0.5")
    _fake(monkeypatch, FakeEntryPoint("sloth", "sloth", "plugins.slow_import"),
          FakeEntryPoint("mmcore-plugin-good", "good", "plugins.good_plugin"))
    t0 = time.perf_counter()
    reg = get_registry()
    assert time.perf_counter() - t0 < 10
    assert "more than 0.5 s" in _info(reg, "sloth").status and reg.find("aligner", "echo") is not None


def test_plugins_check_reports_a_component_that_breaks_the_contract(monkeypatch, capsys):
    _fake(monkeypatch, FakeEntryPoint("breaker", "breaker", "plugins.contract_breaker"))
    code, out, err = run_cli(["plugins", "--check"], capsys)
    assert code == 1
    assert "contract: aligner 'breaker' FAILS" in out and "check_component" in err and "Traceback" not in err + out
    assert "contract: 13 of 13 components pass" in out  # the built-ins (datasets are not contract-checked)


def test_a_component_that_refuses_to_build_gives_one_positioned_error(tmp_path):
    """A registered class raising in __init__ (a misconfiguration, or a broken plugin): SpecError, no traceback."""
    import mmcore
    from mmcore.errors import SpecError
    from mmcore.params import ComponentParams
    from mmcore.spec import load_spec
    from mmcore.train.run import train_run

    class RefuseParams(ComponentParams):
        """An aligner that cannot be built (test fixture)."""

    @mmcore.register("aligner", "refuses_to_build", params=RefuseParams)
    class Refuses:
        def __init__(self, params, ctx):
            raise ValueError("anchor 'text' is not a modality of this pipeline")

    p = tmp_path / "s.yaml"
    p.write_text("modalities: {audio: {}, vision: {}}\nencoders: {default: {name: linear}}\n"
                 "aligner: {name: refuses_to_build}\nfuser: {name: concat_pool}\nhead: {name: regression_mlp}\n"
                 "data: {name: synthetic, params: {n_train: 8, n_valid: 4, n_test: 4}}\ntrain: {epochs: 1}\n")
    with pytest.raises(SpecError) as e:
        train_run(load_spec(str(p)), str(tmp_path / "run"), progress=False)
    msg = str(e.value)
    assert msg.startswith(f"{p}:3:") and "could not be built: ValueError: anchor 'text'" in msg, msg
    assert not (tmp_path / "run").exists()


def test_unknown_component_error_marks_a_plugin_that_failed_to_load(monkeypatch, tmp_path, capsys):
    _fake(monkeypatch, FakeEntryPoint("broken", "broken", "plugins.broken_import"),
          FakeEntryPoint("mmcore-plugin-good", "good", "plugins.good_plugin"))
    p = tmp_path / "s.yaml"
    p.write_text("modalities: {text: {dim: 4}}\nencoders: {default: {name: linear}}\naligner: {name: ehco}\n"
                 "fuser: {name: mean}\nhead: {name: regression_mlp}\n")
    code, _, err = run_cli(["validate", str(p)], capsys)
    assert code == 2 and "unknown aligner 'ehco'" in err
    installed = next(line for line in err.splitlines() if "installed plugins:" in line)
    assert "mmcore-plugin-good" in installed and "broken" not in installed
    failed = next(line for line in err.splitlines() if "failed to load" in line)
    assert "broken (ModuleNotFoundError: No module named 'this_module_does_not_exist_anywhere')" in failed
