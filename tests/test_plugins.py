"""Plugin discovery and isolation: each failure is reported and the other plugins still load."""

import importlib
import json

import pytest

from conftest import run_cli
from mmcore import hookspecs, plugins
from mmcore.errors import PluginError
from mmcore.hookspecs import PLUGIN_API, api_mismatch
from mmcore.registry import DISTRIBUTION, Registry, get_registry, reset_registry


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


def _validate_aligner(tmp_path, capsys, aligner: str):
    """``mmcore validate`` of a one-modality spec whose aligner is ``aligner``: (exit code, stderr)."""
    p = tmp_path / "s.yaml"
    p.write_text("modalities: {text: {dim: 4}}\nencoders: {default: {name: linear}}\n"
                 f"aligner: {{name: {aligner}}}\nfuser: {{name: mean}}\nhead: {{name: regression_mlp}}\n")
    code, _, err = run_cli(["validate", str(p)], capsys)
    return code, err


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
    assert "duplicate aligner 'identity'" in status and f"{DISTRIBUTION} 0.1.0" in status and "dupe-dist 1.0" in status
    assert reg.find("aligner", "unique_one") is not None  # only the clashing name is refused
    hint = " ".join(reg.suggest("aligner", "identity"))
    assert "several plugins" in hint and "dupe-dist" in hint


def test_duplicate_name_makes_a_spec_using_it_fail(monkeypatch, tmp_path, capsys):
    _fake(monkeypatch, FakeEntryPoint("dupe-dist", "dupe", "plugins.duplicate_name"))
    code, err = _validate_aligner(tmp_path, capsys, "identity")
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
    assert reg.find("aligner", "echo") is None and [p.dist for p in reg.plugins] == [DISTRIBUTION]
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
    assert data[DISTRIBUTION]["builtin"] and "identity" in data[DISTRIBUTION]["components"]["aligner"]
    assert data[DISTRIBUTION]["plugin_api"] == PLUGIN_API
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
    code, err = _validate_aligner(tmp_path, capsys, "ehco")
    assert code == 2 and "unknown aligner 'ehco'" in err
    installed = next(line for line in err.splitlines() if "installed plugins:" in line)
    assert "mmcore-plugin-good" in installed and "broken" not in installed
    failed = next(line for line in err.splitlines() if "failed to load" in line)
    assert "broken (ModuleNotFoundError: No module named 'this_module_does_not_exist_anywhere')" in failed


# --- plugin API compatibility -------------------------------------------------------------------------

MAJOR, MINOR = (int(x) for x in PLUGIN_API.split("."))


class ModuleEntryPoint(FakeEntryPoint):
    """An entry point whose module is built in the test: a hook registering one aligner, declaring ``api``."""

    def __init__(self, dist, name, api, aligner):
        super().__init__(dist, name, module=f"fake_{name}")
        self.api, self.aligner = api, aligner

    def load(self):
        import types

        from mmcore import hookimpl

        good = importlib.import_module("plugins.good_plugin")
        mod = types.ModuleType(self.module)
        if self.api is not None:
            mod.MMCORE_PLUGIN_API = self.api

        @hookimpl
        def register_components(register):
            register("aligner", self.aligner, good.EchoAligner, good.EchoParams)

        mod.register_components = register_components
        return mod


def test_api_mismatch_rule():
    assert api_mismatch(PLUGIN_API) is None and api_mismatch(f"{MAJOR}.0") is None
    assert "targets mmcore plugin API" in api_mismatch(f"{MAJOR + 1}.0")
    assert api_mismatch(f"{MAJOR}.{MINOR + 1}") is not None  # a newer minor needs what this core lacks
    assert "not a \"MAJOR.MINOR\"" in api_mismatch(1.0) and api_mismatch("1") is not None


@pytest.mark.parametrize("api,fix", [(f"{MAJOR + 1}.0", f"pip install -U {DISTRIBUTION}"),
                                     (f"{MAJOR}.{MINOR + 1}", f"pip install -U {DISTRIBUTION}"),
                                     (f"{MAJOR - 1}.0", "pip install -U mmcore-plugin-future")])
def test_plugin_targeting_another_api_is_skipped_naming_both_versions(monkeypatch, capsys, api, fix):
    _fake(monkeypatch, ModuleEntryPoint("mmcore-plugin-future", "future", api, "from_the_future"),
          FakeEntryPoint("mmcore-plugin-good", "good", "plugins.good_plugin"))
    reg = get_registry()
    info = _info(reg, "mmcore-plugin-future")
    assert info.status.startswith("error: incompatible plugin API: mmcore-plugin-future 1.0 targets mmcore plugin "
                                  f"API {api}, but {DISTRIBUTION} 0.1.0 provides plugin API {PLUGIN_API}"), info.status
    assert fix in info.status
    assert reg.find("aligner", "from_the_future") is None and reg.find("aligner", "echo") is not None
    reset_registry()
    code, out, _ = run_cli(["plugins"], capsys)
    line = next(ln for ln in out.splitlines() if ln.startswith("mmcore-plugin-future"))
    assert f"plugin API {api})" in line and f"provides plugin API {PLUGIN_API}" in line
    reset_registry()
    code, out, _ = run_cli(["plugins", "--json"], capsys)
    data = {p["name"]: p for p in json.loads(out)}
    assert data["mmcore-plugin-future"]["plugin_api"] == api and data["mmcore-plugin-good"]["status"] == "ok"


def test_unknown_component_error_names_an_incompatible_plugin_with_both_versions(monkeypatch, tmp_path, capsys):
    """A spec using a first-party name whose plugin is installed but targets another API: both versions shown."""
    _fake(monkeypatch, ModuleEntryPoint("mmcore-plugin-ot", "ot", f"{MAJOR + 1}.0", "relaxed_ot"))
    code, err = _validate_aligner(tmp_path, capsys, "relaxed_ot")
    assert code == 2 and "unknown aligner 'relaxed_ot'" in err
    hint = next(line for line in err.splitlines() if "comes from mmcore-plugin-ot" in line)
    assert "installed but failed to load" in hint and f"targets mmcore plugin API {MAJOR + 1}.0" in hint
    assert f"provides plugin API {PLUGIN_API}" in hint


def test_plugin_declaring_no_api_loads_and_is_shown_as_undeclared(monkeypatch, capsys):
    _fake(monkeypatch, FakeEntryPoint("mmcore-plugin-good", "good", "plugins.good_plugin"),
          ModuleEntryPoint("undeclared", "u", None, "undeclared_one"))
    reg = get_registry()
    assert _info(reg, "undeclared").status == "ok" and reg.find("aligner", "undeclared_one") is not None
    assert _info(reg, "mmcore-plugin-good").api == PLUGIN_API
    reset_registry()
    _, out, _ = run_cli(["plugins"], capsys)
    assert "undeclared 1.0  (entry point 'u', plugin API not declared)  ok" in out


@pytest.mark.parametrize("module", ["mmcore.builtins.plugin", "mmcore_plugin_ot.plugin", "mmcore_plugin_adl.plugin",
                                    "mmcore_plugin_recon.plugin", "mmcore_attention_aligner.plugin"])
def test_first_party_plugins_declare_the_current_api(module):
    """Without the declaration a plugin built for another API would load unchecked."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        pytest.skip(f"{module} is not installed in this pass ({e})")
    assert getattr(mod, "MMCORE_PLUGIN_API", None) == PLUGIN_API


def test_get_refuses_a_name_two_providers_registered(monkeypatch):
    """Not the first provider silently: an error naming both, and how to choose."""
    _fake(monkeypatch, FakeEntryPoint("dupe-dist", "dupe", "plugins.duplicate_name"))
    reg = get_registry()
    with pytest.raises(PluginError) as e:
        reg.get("aligner", "identity")
    msg = str(e.value)
    assert f"aligner 'identity' is provided by several plugins: {DISTRIBUTION} 0.1.0 and dupe-dist 1.0" in msg
    assert "uninstall all but one" in msg and "plugins:" in msg and "MMCORE_LOAD_PLUGINS" in msg
    assert reg.get("aligner", "unique_one").provider == "dupe-dist"  # its other names still resolve


def test_plugin_status_is_typed_and_reads_as_before():
    from mmcore.registry import PluginState, PluginStatus

    ok, bad = PluginStatus.ok(), PluginStatus.error("ImportError: no module named x")
    assert (ok, bad) == ("ok", "error: ImportError: no module named x")  # the text users see is unchanged
    assert ok.state is PluginState.OK and not ok.failed
    assert bad.state is PluginState.ERROR and bad.failed and bad.reason == "ImportError: no module named x"
    assert PluginStatus.of("error: boom").reason == "boom" and PluginStatus.of(bad) is bad
    assert json.dumps({"status": bad}) == '{"status": "error: ImportError: no module named x"}'
    with pytest.raises(ValueError, match="not a plugin status"):
        PluginStatus.of("fine")


def test_a_failed_plugin_is_named_in_unknown_name_hints(monkeypatch):
    _fake(monkeypatch, FakeEntryPoint("broken", "broken", "plugins.broken_import"))
    hints = get_registry().suggest("aligner", "nope")
    assert any(h.startswith("installed but failed to load: broken (ModuleNotFoundError") for h in hints), hints
