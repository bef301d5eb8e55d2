"""`mmcore data list | fetch | verify`, the catalogue, the cache and `dataset: NAME`, without the network.

Downloads come from a local HTTP server on 127.0.0.1 (Range support, a connection it can cut, forced
statuses) serving generated h5 files; a test catalogue entry replaces ``mmmo`` with their checksums.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, run_cli
from mmcore.data import catalogue
from mmcore.data.catalogue import DATASETS, MFN_COMMIT, DatasetEntry, ReleaseFile, parse_release_name
from mmcore.data.fetch import ChecksumError, DownloadError, download, fetch_dataset
from mmcore.errors import DataError, MmcoreUserError

SHARED_TSV = Path(REPO).parent / "shared" / "data" / "mfn_release.tsv"


# ---------------------------------------------------------------------------------------------- the catalogue
def test_catalogue_carries_the_pinned_commit_and_every_file_of_the_shared_release_table():
    if not SHARED_TSV.is_file():
        pytest.skip(f"{SHARED_TSV} is absent (shared/ must sit beside the repository)")
    text = SHARED_TSV.read_text()
    assert f"commit {MFN_COMMIT}" in text
    rows = {}
    for line in text.splitlines():
        if line.startswith("#") or line.startswith("path\t") or not line.strip():
            continue
        path, size, sha = line.split("\t")
        rows[path] = (None if size == "NA" else int(size), None if sha == "NA" else sha)
    ours = {f.path: (f.size, f.sha256) for e in DATASETS.values() for f in e.files}
    assert ours == rows


def test_every_release_file_has_a_pinned_url_and_a_role():
    for e in DATASETS.values():
        for f in e.files:
            assert e.url(f) == f"https://raw.githubusercontent.com/pliang279/MFN/{MFN_COMMIT}/{f.path}"
            assert parse_release_name(f.name) is not None, f.path
            assert (f.size is None) == (f.sha256 is None)
    assert parse_release_name("video_valid.h5") == ("vision", "valid")
    assert parse_release_name("text_test_emb.h5") == ("text", "test")
    assert parse_release_name("README.txt") is None


# ------------------------------------------------------------------------------------------- a local server
class _State:
    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.cut: dict[str, int] = {}  # path -> bytes sent before the connection drops (once)
        self.status: dict[str, int] = {}  # path -> forced HTTP status
        self.ignore_range = False


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        st: _State = self.server.state
        rng = self.headers.get("Range")
        st.requests.append((self.path, rng))
        if self.path in st.status:
            self.send_error(st.status[self.path])
            return
        body = st.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = int(rng.split("=")[1].split("-")[0]) if rng and not st.ignore_range else 0
        if start >= len(body) and start:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(body)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        cut = st.cut.pop(self.path, None)
        if cut is not None:  # promise the whole body, send part of it, hang up
            self.wfile.write(body[start:start + cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body[start:])

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.state = _State()
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}"
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def closed_port() -> str:
    """A base URL on 127.0.0.1 where nothing listens: connections are refused, as offline."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/"


def _rf(name: str, body: bytes, pinned: bool = True) -> ReleaseFile:
    return ReleaseFile(name, len(body) if pinned else None, hashlib.sha256(body).hexdigest() if pinned else None)


def test_download_verifies_and_renames_into_place(server, tmp_path):
    body = os.urandom(5000)
    server.state.files["/f.bin"] = body
    digest = download(server.base + "/f.bin", tmp_path / "f.bin", _rf("f.bin", body))
    assert (tmp_path / "f.bin").read_bytes() == body and digest == hashlib.sha256(body).hexdigest()
    assert not (tmp_path / "f.bin.part").exists()


def test_a_checksum_mismatch_names_the_file_and_both_hashes_and_keeps_nothing(server, tmp_path):
    body, served = os.urandom(3000), os.urandom(3000)
    server.state.files["/f.bin"] = served
    want = _rf("new_data/x/f.bin", body)
    with pytest.raises(ChecksumError) as e:
        download(server.base + "/f.bin", tmp_path / "f.bin", want)
    msg = str(e.value)
    assert msg.startswith("new_data/x/f.bin: sha256 mismatch")
    assert want.sha256 in msg and hashlib.sha256(served).hexdigest() in msg and server.base in msg
    assert not (tmp_path / "f.bin").exists() and not (tmp_path / "f.bin.part").exists()


def test_a_size_mismatch_is_reported_before_hashing(server, tmp_path):
    server.state.files["/f.bin"] = b"x" * 10
    with pytest.raises(ChecksumError, match=r"f.bin: size mismatch: expected 12 bytes, got 10"):
        download(server.base + "/f.bin", tmp_path / "f.bin", _rf("f.bin", b"y" * 12))


def test_an_interrupted_download_resumes_with_a_range_request(server, tmp_path):
    body = os.urandom(20000)
    server.state.files["/f.bin"] = body
    server.state.cut["/f.bin"] = 7000
    waits = []
    download(server.base + "/f.bin", tmp_path / "f.bin", _rf("f.bin", body), backoff=0.5, sleep=waits.append)
    assert (tmp_path / "f.bin").read_bytes() == body
    assert server.state.requests == [("/f.bin", None), ("/f.bin", "bytes=7000-")] and waits == [0.5]


def test_a_part_file_left_by_an_earlier_run_is_resumed(server, tmp_path):
    body = os.urandom(9000)
    server.state.files["/f.bin"] = body
    (tmp_path / "f.bin.part").write_bytes(body[:4000])
    download(server.base + "/f.bin", tmp_path / "f.bin", _rf("f.bin", body))
    assert (tmp_path / "f.bin").read_bytes() == body and server.state.requests == [("/f.bin", "bytes=4000-")]


def test_a_server_that_ignores_ranges_is_downloaded_from_the_start(server, tmp_path):
    body = os.urandom(9000)
    server.state.files["/f.bin"] = body
    server.state.ignore_range = True
    (tmp_path / "f.bin.part").write_bytes(b"\0" * 4000)  # not even a prefix of the file
    download(server.base + "/f.bin", tmp_path / "f.bin", _rf("f.bin", body))
    assert (tmp_path / "f.bin").read_bytes() == body


def test_server_errors_are_retried_and_not_found_is_not(server, tmp_path):
    body = b"abc" * 100
    server.state.files["/f.bin"] = body
    server.state.status["/f.bin"] = 503
    waits = []
    with pytest.raises(DownloadError, match=r"/f.bin: download failed after 3 attempt\(s\) \(HTTP 503"):
        download(server.base + "/f.bin", tmp_path / "f.bin", _rf("f.bin", body), retries=2, sleep=waits.append)
    assert len(server.state.requests) == 3 and waits == [1.0, 2.0]  # exponential backoff
    server.state.requests.clear()
    with pytest.raises(DownloadError, match=r"/missing.bin: download failed: HTTP 404"):
        download(server.base + "/missing.bin", tmp_path / "m.bin", _rf("m.bin", body), retries=2, sleep=waits.append)
    assert len(server.state.requests) == 1


def test_offline_is_one_error_with_the_url_and_the_way_round(closed_port, tmp_path):
    waits = []
    with pytest.raises(DownloadError) as e:
        download(closed_port + "new_data/mmmo/y_test.h5", tmp_path / "y.h5", _rf("y_test.h5", b"12"), retries=1,
                 sleep=waits.append, dataset="mmmo")
    msg = str(e.value)
    assert msg.startswith(closed_port + "new_data/mmmo/y_test.h5: download failed after 2 attempt(s) (URLError:")
    assert "mmcore data fetch mmmo --from DIR" in msg and "mmcore data list mmmo" in msg and len(waits) == 1


# ------------------------------------------------------------------------------ fetch: catalogue + cache
def _test_entry(base: str, files: dict[str, bytes], unpinned=("text_train_emb.h5",)) -> DatasetEntry:
    """The real mmmo entry, its files replaced by ``files`` (pinned, except ``unpinned``) under ``base``."""
    real = DATASETS["mmmo"]
    rel = tuple(_rf(f"new_data/mmmo/{n}", b, pinned=n not in unpinned) for n, b in sorted(files.items()))
    return DatasetEntry(**{**real.__dict__, "base_url": base, "files": rel})


@pytest.fixture
def release(tmp_path):
    """Generated ICT-MMMO-like release files: name -> bytes, and the arrays they hold."""
    conv = pytest.importorskip("test_data_fetch_convert", reason="h5py not installed (pip install -e '.[data]')")
    arrays = conv.release_arrays()
    paths = conv.write_release(tmp_path / "generated", arrays)
    return {n: p.read_bytes() for n, p in paths.items()}, arrays


@pytest.fixture
def served(server, release, monkeypatch, tmp_path):
    """``mmmo`` in the catalogue now points at the local server; the data dir is a fresh temp folder."""
    files, arrays = release
    for n, b in files.items():
        server.state.files[f"/repo/new_data/mmmo/{n}"] = b
    entry = _test_entry(server.base + "/repo/", files)
    monkeypatch.setitem(catalogue.DATASETS, "mmmo", entry)
    monkeypatch.setenv("MMCORE_DATA_DIR", str(tmp_path / "cache"))
    return entry, arrays


def _npz(path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def test_fetch_downloads_verifies_converts_and_caches(served, server, tmp_path):
    entry, arrays = served
    res = fetch_dataset("mmmo", retries=0)
    assert res.npz == tmp_path / "cache" / "mmmo" / "mmmo.npz" and not res.cached and res.missing == []
    got = _npz(res.npz)
    for k, a in arrays.items():
        np.testing.assert_array_equal(got[k], a.astype(np.float32))
    assert res.files["text_train_emb.h5"]["status"] == "unverified"
    assert res.files["audio_train.h5"]["status"] == "verified"
    n = len(server.state.requests)
    again = fetch_dataset("mmmo", retries=0)
    assert again.cached and len(server.state.requests) == n  # nothing downloaded twice


def test_an_unfinished_fetch_keeps_good_files_and_fetches_bad_ones_again(served, server, tmp_path):
    fetch_dataset("mmmo", retries=0)
    (tmp_path / "cache" / "mmmo" / "manifest.json").unlink()  # as if the first fetch had stopped half-way
    bad = tmp_path / "cache" / "mmmo" / "raw" / "audio_test.h5"
    bad.write_bytes(b"\0" * bad.stat().st_size)
    server.state.requests.clear()
    fetch_dataset("mmmo", retries=0)
    assert server.state.requests == [("/repo/new_data/mmmo/audio_test.h5", None)]
    fetch_dataset("mmmo", retries=0, force=True)
    assert len(server.state.requests) == 1 + 12, "--force downloads every file again"


def test_an_unpinned_file_that_cannot_be_fetched_is_missing_not_fatal(served, server):
    server.state.status["/repo/new_data/mmmo/text_train_emb.h5"] = 404
    res = fetch_dataset("mmmo", retries=0)
    assert "train_text" not in _npz(res.npz) and "valid_text" in _npz(res.npz)
    assert res.missing[0].startswith("text_train_emb.h5: not fetched") and "train text: no file" in res.missing
    del server.state.status["/repo/new_data/mmmo/text_train_emb.h5"]
    assert not fetch_dataset("mmmo", retries=0).cached, "a fetch that missed a file tries it again"


def test_verified_only_leaves_unpinned_files_out(served, server):
    res = fetch_dataset("mmmo", verified_only=True, retries=0)
    assert "train_text" not in _npz(res.npz)
    assert all("text_train" not in p for p, _ in server.state.requests)


def test_a_pinned_file_that_fails_stops_the_fetch_and_no_npz_is_written(served, server, tmp_path):
    server.state.files["/repo/new_data/mmmo/video_valid.h5"] = b"tampered"
    with pytest.raises(ChecksumError, match="new_data/mmmo/video_valid.h5: size mismatch"):
        fetch_dataset("mmmo", retries=0)
    assert not (tmp_path / "cache" / "mmmo" / "mmmo.npz").exists()


def test_fetch_from_a_folder_of_hand_downloads_needs_no_network(release, monkeypatch, tmp_path, closed_port):
    files, arrays = release
    monkeypatch.setitem(catalogue.DATASETS, "mmmo", _test_entry(closed_port, files))
    folder = tmp_path / "by_hand" / "new_data" / "mmmo"  # a clone of the repository works too
    folder.mkdir(parents=True)
    for n, b in files.items():
        if n != "text_train_emb.h5":
            (folder / n).write_bytes(b)
    res = fetch_dataset("mmmo", tmp_path / "dir", from_dir=tmp_path / "by_hand")
    assert res.npz == tmp_path / "dir" / "mmmo" / "mmmo.npz" and "train_text" not in _npz(res.npz)
    assert any(m.startswith("text_train_emb.h5: not in --from folder") for m in res.missing)
    (folder / "y_test.h5").write_bytes(b"other bytes")
    with pytest.raises(ChecksumError, match=rf"y_test.h5: size mismatch: .* \(from {folder / 'y_test.h5'}\)"):
        fetch_dataset("mmmo", tmp_path / "dir2", from_dir=tmp_path / "by_hand")
    (folder / "y_test.h5").unlink()
    with pytest.raises(DataError, match=rf"1 file\(s\) of mmmo not found there: y_test.h5\n.*\n    {closed_port}"):
        fetch_dataset("mmmo", tmp_path / "dir3", from_dir=tmp_path / "by_hand")


def test_fetch_without_h5py_says_what_to_install_before_downloading(server, monkeypatch, tmp_path):
    server.state.files["/repo/new_data/mmmo/y_test.h5"] = b"12"
    monkeypatch.setitem(catalogue.DATASETS, "mmmo", _test_entry(server.base + "/repo/", {"y_test.h5": b"12"}))
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py now raises ImportError, as when not installed
    with pytest.raises(DataError, match=r"needs h5py, which is not installed.*\n  run: pip install .*\.\[data\]"):
        fetch_dataset("mmmo", tmp_path, retries=0)
    assert server.state.requests == []


def test_mmsa_datasets_are_listed_but_not_fetched():
    with pytest.raises(DataError, match=r"mosi: not fetched by mmcore .*mmcore data verify FILE.pkl"):
        fetch_dataset("mosi")
    with pytest.raises(DataError, match=r"unknown dataset 'mmo'; did you mean 'mmmo'\?"):
        fetch_dataset("mmo")


# ------------------------------------------------------------------------------- specs: dataset: NAME
def test_npz_params_take_exactly_one_of_path_and_dataset():
    from pydantic import ValidationError

    from mmcore.data.params import NpzParams

    assert NpzParams(dataset="mmmo").path is None and NpzParams(path="x.npz").dataset is None
    with pytest.raises(ValidationError, match="neither path nor dataset is set; give exactly one"):
        NpzParams()
    with pytest.raises(ValidationError, match="both path and dataset are set"):
        NpzParams(path="x.npz", dataset="mmmo")
    with pytest.raises(ValidationError, match=r"unknown dataset 'mmo'; did you mean 'mmmo'\?"):
        NpzParams(dataset="mmo")
    with pytest.raises(ValidationError, match=r"'mosi' is an MMSA pickle .* \{name: mmsa"):
        NpzParams(dataset="mosi")


def test_a_spec_with_an_unknown_dataset_is_a_positioned_error(tmp_path):
    from mmcore.errors import SpecError
    from mmcore.spec import load_spec

    spec = tmp_path / "s.yaml"
    spec.write_text("modalities: {audio: {}}\nencoders: {default: {name: linear}}\nfuser: {name: concat_pool}\n"
                    "head: {name: regression_mlp}\ndata: {name: npz, params: {dataset: mmo}}\n")
    with pytest.raises(SpecError, match=r"s.yaml:5:\d+: error: data.params.*unknown dataset 'mmo'; did you mean"):
        load_spec(str(spec))


def test_a_dataset_that_is_not_fetched_says_how_to_fetch_it(monkeypatch, tmp_path):
    from mmcore.data.npz import NpzDataset
    from mmcore.data.params import NpzParams

    monkeypatch.setenv("MMCORE_DATA_DIR", str(tmp_path))
    assert NpzParams(dataset="mmmo").declared_task() is None  # validate stays quiet until it is fetched
    with pytest.raises(DataError, match=r"'mmmo' is not in the data cache .*\n  run: mmcore data fetch mmmo"):
        NpzDataset(NpzParams(dataset="mmmo"), ["audio"], 0)


def test_a_fetched_dataset_is_read_by_name(served, tmp_path):
    from mmcore.data.npz import NpzDataset
    from mmcore.data.params import NpzParams

    fetch_dataset("mmmo", retries=0)
    assert NpzParams(dataset="mmmo").declared_task() == "regression"
    ds = NpzDataset(NpzParams(dataset="mmmo"), ["text", "audio", "vision"], 0)
    assert ds.source_files() == [str(tmp_path / "cache" / "mmmo" / "mmmo.npz")] and ds.info.name == "mmmo"
    assert len(ds.splits["valid"]) == 4 and not ds.splits["train"].missing["text"].all()


def test_data_option_takes_a_dataset_name():
    from mmcore.spec.yaml_source import data_overrides

    assert data_overrides("mmmo") == ['data={"name": "npz", "params": {"dataset": "mmmo"}}']
    assert data_overrides("x/y.npz") == ['data={"name": "npz", "params": {"path": "x/y.npz"}}']
    with pytest.raises(MmcoreUserError, match=r"--data mmo: unknown dataset 'mmo'; did you mean 'mmmo'\?"):
        data_overrides("mmo")
    with pytest.raises(MmcoreUserError, match=r"--data mosi: .*not fetched by mmcore; download the pickle by hand"):
        data_overrides("mosi")
    with pytest.raises(MmcoreUserError, match=r"--data a/b.csv: cannot tell the format.*dataset name \(mmmo, pom"):
        data_overrides("a/b.csv")


def test_recipes_and_docs_name_datasets_not_workplace_paths():
    """Only tests and benchmarks may point at our machines' ../shared/data copy."""
    roots = [Path(REPO) / "README.md", *(Path(REPO) / "docs").glob("*.md"), *(Path(REPO) / "examples").glob("*.yaml"),
             *(Path(REPO) / "mmcore").rglob("*.py")]
    offenders = [str(p.relative_to(REPO)) for p in roots if "shared/data" in p.read_text()]
    assert offenders == []


# ----------------------------------------------------------------------------------------- the CLI
@pytest.mark.parametrize("argv", [["data", "list"], ["data", "list", "mmmo", "--json"],
                                  ["validate", os.path.join(REPO, "examples", "mmmo_baseline.yaml")]])
def test_data_list_and_validating_a_dataset_spec_do_not_import_torch(argv, tmp_path):
    code = ("import sys; from mmcore.cli import main; rc = main(%r); "
            "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)" % (argv,))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "MMCORE_DATA_DIR": str(tmp_path)})
    assert r.returncode == 0, r.stderr


def test_data_list_shows_source_size_licence_and_cache(served, capsys, tmp_path):
    code, out, _ = run_cli(["data", "list"], capsys)
    assert code == 0 and f"data dir: {tmp_path / 'cache'}  ($MMCORE_DATA_DIR)" in out
    assert "cached:  no (run: mmcore data fetch mmmo)" in out and "licence: MFN repository code: MIT" in out
    assert "mosi — CMU-MOSI" in out and "n/a (download by hand" in out
    fetch_dataset("mmmo", retries=0)
    code, out, _ = run_cli(["data", "list", "mmmo"], capsys)
    assert f"cached:  yes: {tmp_path / 'cache' / 'mmmo' / 'mmmo.npz'}" in out
    assert "text_train_emb.h5\n      size unknown, sha256 not pinned (fetched unverified)" in out


def test_cli_fetch_offline_is_one_clean_error(monkeypatch, capsys, closed_port, tmp_path):
    monkeypatch.setitem(catalogue.DATASETS, "mmmo", _test_entry(closed_port, {"y_test.h5": b"12"}))
    pytest.importorskip("h5py", reason="fetch checks for h5py first")
    code, out, err = run_cli(["data", "fetch", "mmmo", "--retries", "0", "--dir", str(tmp_path)], capsys)
    assert code == 2 and "Traceback" not in err
    assert f"{closed_port}new_data/mmmo/y_test.h5: download failed after 1 attempt(s) (URLError:" in err
    assert "mmcore data fetch mmmo --from DIR" in err


def test_cli_dir_option_wins_over_the_environment(served, capsys, tmp_path):
    code, out, _ = run_cli(["data", "fetch", "mmmo", "--dir", str(tmp_path / "elsewhere"), "--retries", "0"], capsys)
    assert code == 0 and (tmp_path / "elsewhere" / "mmmo" / "mmmo.npz").is_file()
    assert not (tmp_path / "cache" / "mmmo").exists()
    assert f"when MMCORE_DATA_DIR={tmp_path / 'elsewhere'} is set" in out


def test_fetch_then_run_the_recipe_from_a_fresh_checkout(served, capsys, tmp_path):
    """README: `mmcore data fetch mmmo && mmcore run examples/alignmamba.yaml` (the core-only recipe without
    the ot and mamba plugins), against the local server."""
    from mmcore.registry import get_registry

    code, out, err = run_cli(["data", "fetch", "mmmo", "--retries", "0"], capsys)
    assert code == 0, err
    assert "unverified (no pinned checksum): text_train_emb.h5" in out
    recipe = "alignmamba.yaml" if get_registry().find("aligner", "relaxed_ot") and \
        get_registry().find("fuser", "interleaved_mamba") else "mmmo_baseline.yaml"
    code, out, err = run_cli(["run", os.path.join(REPO, "examples", recipe), "--epochs", "1", "--no-progress",
                              "--out", str(tmp_path / "run"), "--set", "train.batch_size=4"], capsys)
    assert code == 0, err
    assert str(tmp_path / "cache" / "mmmo" / "mmmo.npz") in (tmp_path / "run" / "provenance.json").read_text()


def test_cli_verify_checks_hashes_and_layout(served, capsys, tmp_path):
    from mmcore.data.mmsa import write_mmsa_pickle

    fetch_dataset("mmmo", retries=0)
    raw = tmp_path / "cache" / "mmmo" / "raw"
    code, out, _ = run_cli(["data", "verify", str(raw / "y_test.h5")], capsys)
    assert code == 0 and "checksum: matches pliang279/MFN@b0453fb new_data/mmmo/y_test.h5" in out
    code, out, _ = run_cli(["data", "verify", str(tmp_path / "cache" / "mmmo" / "mmmo.npz")], capsys)
    assert code == 0 and "npz layout ok" in out and "rows train 6, valid 4, test 5" in out
    pkl = tmp_path / "mosi.pkl"
    write_mmsa_pickle(pkl)
    code, out, err = run_cli(["data", "verify", str(pkl)], capsys)
    assert code == 0 and "no pinned sha256 for this file" in out and "mmsa layout ok" in out, err
    code, out, err = run_cli(["data", "verify", str(pkl), "--sha256", "ab" * 32], capsys)
    assert code == 2 and f"sha256 mismatch: expected {'ab' * 32}, got " in err and "Traceback" not in err
    pkl.write_bytes(b"garbage")
    code, out, err = run_cli(["data", "verify", str(pkl)], capsys)
    assert code == 2 and "cannot read as an MMSA pickle" in err and "Traceback" not in err
