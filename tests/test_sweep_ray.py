"""``mmcore sweep --executor ray``: a 2 x 2 grid on a local Ray instance with 2 CPUs gives the local executor's table.

Needs the optional extra (``pip install -c constraints.txt -e '.[ray]'``; scripts/test.sh installs it);
without Ray these tests skip, saying so. The Ray-free checks (argument errors) always run.
"""

import json
import os

import pytest

from conftest import run_cli
from mmcore.sweep import SweepError, run_sweep
from test_sweep import AXIS, write_spec

try:
    import ray  # noqa: F401

    HAVE_RAY = True
except ImportError:
    HAVE_RAY = False

needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="ray is not installed (the optional extra: "
                               "pip install -c constraints.txt -e '.[ray]'; scripts/test.sh installs it)")


@needs_ray
def test_ray_grid_gives_the_same_table_as_the_local_executor(tmp_path, capsys):
    spec = write_spec(tmp_path)
    local = run_sweep(spec, axes=[AXIS], seeds=2, out=str(tmp_path / "local"))
    assert not local.failed, [o.error for o in local.failed]
    argv = ["sweep", spec, "--grid", AXIS, "--seeds", "2", "--out", str(tmp_path / "ray"), "--executor", "ray",
            "--jobs", "2"]
    code, out, _ = run_cli(argv, capsys)
    assert code == 0, out
    with open(tmp_path / "local" / "summary.md") as f:
        local_md = f.read()
    with open(tmp_path / "ray" / "summary.md") as f:
        assert f.read() == local_md
    with open(tmp_path / "ray" / "sweep.json") as f:
        manifest = json.load(f)
    assert sorted(manifest["cells"]) == sorted(o.key for o in local.outcomes)
    assert {c["status"] for c in manifest["cells"].values()} == {"trained"}
    assert "--executor ray" in manifest["commands"][-1]
    assert os.path.exists(tmp_path / "ray" / "test_by_variant.png") == os.path.exists(
        tmp_path / "local" / "test_by_variant.png")
    # the same manifest resumes: a second invocation trains nothing
    code, out, _ = run_cli(argv, capsys)
    with open(tmp_path / "ray" / "sweep.json") as f:
        assert {c["status"] for c in json.load(f)["cells"].values()} == {"skipped"}


@needs_ray
def test_a_cell_needing_more_cpus_than_the_cluster_has_is_refused(tmp_path):
    spec = write_spec(tmp_path)
    with pytest.raises(SweepError, match="the Ray cluster has 1 CPUs, fewer than one cell needs"):
        _too_big(spec, tmp_path)


def _too_big(spec, tmp_path):
    """A local instance of 1 CPU, then cells of 2 CPUs: started by hand, so run_tasks_ray joins it."""
    import ray

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, object_store_memory=100 * 1024**2)
    try:
        run_sweep(spec, axes=[AXIS], seeds=1, out=str(tmp_path / "o"), executor="ray", cpus_per_cell=2)
    finally:
        ray.shutdown()


def test_address_without_the_ray_executor_is_an_error(tmp_path, capsys):
    spec = write_spec(tmp_path)
    code, _, err = run_cli(["sweep", spec, "--grid", AXIS, "--address", "auto", "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "--address joins a Ray cluster; add --executor ray" in err


def test_missing_ray_names_the_extra(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError, as when not installed
    spec = write_spec(tmp_path)
    code, _, err = run_cli(["sweep", spec, "--grid", AXIS, "--seeds", "1", "--executor", "ray",
                            "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "Ray is not installed" in err and "pip install 'mmcore-lib[ray]'" in err
