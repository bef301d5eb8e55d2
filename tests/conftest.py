import os

import pytest

from mmcore.registry import reset_registry

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data", "mmmo.npz")


@pytest.fixture
def builtins_only(monkeypatch):
    """A registry with the built-ins only, whatever plugins are installed; restored afterwards."""
    monkeypatch.setenv("MMCORE_LOAD_PLUGINS", "")
    reset_registry()
    yield
    monkeypatch.delenv("MMCORE_LOAD_PLUGINS")
    reset_registry()


@pytest.fixture
def fresh_registry():
    reset_registry()
    yield
    reset_registry()


@pytest.fixture
def mmmo_path():
    if not os.path.exists(SHARED_DATA):
        pytest.skip(f"real ICT-MMMO features not found at {SHARED_DATA} (shared/ must sit beside the repo)")
    return SHARED_DATA


def run_cli(argv, capsys, cwd=None):
    """Run the mmcore CLI in-process; return (exit code, stdout, stderr)."""
    from mmcore.cli import main

    old = os.getcwd()
    try:
        if cwd:
            os.chdir(cwd)
        code = main(list(argv))
    finally:
        os.chdir(old)
    out = capsys.readouterr()
    return code, out.out, out.err


def interrupt_after_saves(monkeypatch, n: int = 2):
    """Make training raise KeyboardInterrupt right after its n-th last.pt is written (a Ctrl-C between
    epochs); returns a function that restores the real checkpoint writer."""
    from mmcore.train import trainer as trainer_mod

    real_save, saves = trainer_mod.save_checkpoint, {"n": 0}

    def save_then_interrupt(path, payload):
        real_save(path, payload)
        if path.endswith("last.pt"):
            saves["n"] += 1
            if saves["n"] == n:
                raise KeyboardInterrupt

    monkeypatch.setattr(trainer_mod, "save_checkpoint", save_then_interrupt)
    return lambda: monkeypatch.setattr(trainer_mod, "save_checkpoint", real_save)
