"""The MFN h5 release -> npz converter (mmcore.data.convert) on generated h5 files of known content.

The last test converts the real, pinned ICT-MMMO files and compares the result with
../shared/data/mmmo.npz (our machines' copy) array by array; it runs only where both are present.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_DATA
from mmcore.data.catalogue import DATASETS
from mmcore.errors import DataError

h5py = pytest.importorskip("h5py", reason="h5py not installed (pip install -e '.[data]')")

from mmcore.data.convert import convert_release  # noqa: E402  (needs h5py only when called)

SIZES = {"train": 6, "valid": 4, "test": 5}
T = 8
DIMS = {"audio": 4, "vision": 3, "text": 5}
FILE_OF = {"audio": "audio_{s}.h5", "vision": "video_{s}.h5", "text": "text_{s}_emb.h5"}


def write_h5(path: Path, array: np.ndarray, key: str = "d1") -> Path:
    with h5py.File(path, "w") as f:
        f.create_dataset(key, data=array)
    return path


def release_arrays(seed: int = 0, text_in_train: bool = True, labels_shape: tuple[int, ...] = ()) -> dict:
    """Word-aligned float64 features (front padding of i % 3 steps) and float labels, as the release stores them."""
    rng = np.random.default_rng(seed)
    out = {}
    for s, n in SIZES.items():
        for m, d in DIMS.items():
            if m == "text" and s == "train" and not text_in_train:
                continue
            x = rng.standard_normal((n, T, d)) + 1.0
            for i in range(n):
                x[i, : i % 3] = 0
            out[f"{s}_{m}"] = x
        out[f"{s}_labels"] = rng.uniform(1, 5, (n, *labels_shape))
    return out


def write_release(folder: Path, arrays: dict, tnd: bool = False) -> dict[str, Path]:
    """The arrays as release files (audio_train.h5, video_*.h5, text_*_emb.h5, y_*.h5); name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for key, a in arrays.items():
        s, m = key.split("_", 1)
        name = f"y_{s}.h5" if m == "labels" else FILE_OF[m].format(s=s)
        files[name] = write_h5(folder / name, a.transpose(1, 0, 2) if tnd and m != "labels" else a)
    return files


def npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def test_conversion_keeps_every_value_as_float32_with_the_npz_names(tmp_path):
    arrays = release_arrays()
    rep = convert_release(write_release(tmp_path / "raw", arrays), tmp_path / "out.npz")
    got = npz(tmp_path / "out.npz")
    assert sorted(got) == sorted(arrays)
    for k, a in arrays.items():
        assert got[k].dtype == np.float32 and got[k].shape == a.shape
        np.testing.assert_array_equal(got[k], a.astype(np.float32))
    assert rep.missing == [] and rep.transposed == [] and rep.shapes["train_text"] == (6, T, 5)
    assert not list(tmp_path.glob(".*tmp*")), "the temporary file is renamed into place"


def test_a_split_without_a_modality_file_lacks_it_and_the_loader_marks_it_missing(tmp_path):
    arrays = release_arrays(text_in_train=False)
    rep = convert_release(write_release(tmp_path / "raw", arrays), tmp_path / "out.npz")
    assert "train_text" not in npz(tmp_path / "out.npz") and rep.missing == ["train text: no file"]
    from mmcore.data.npz import NpzDataset
    from mmcore.data.params import NpzParams

    ds = NpzDataset(NpzParams(path=str(tmp_path / "out.npz")), ["text", "audio"], 0)
    assert ds.splits["train"].missing["text"].all() and not ds.splits["valid"].missing["text"].any()


@pytest.mark.parametrize("content, reason", [(b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\n",
                                              "a Git LFS pointer"),
                                             (b"<!DOCTYPE html><html>rate limited</html>", "not an HDF5 file")])
def test_an_unreadable_feature_file_is_missing_with_its_reason(tmp_path, content, reason, caplog):
    files = write_release(tmp_path / "raw", release_arrays())
    files["text_train_emb.h5"].write_bytes(content)
    rep = convert_release(files, tmp_path / "out.npz")
    assert "train_text" not in npz(tmp_path / "out.npz")
    assert len(rep.missing) == 1 and rep.missing[0].startswith("train text: text_train_emb.h5 unreadable")
    assert reason in rep.missing[0] and reason in caplog.text


def test_a_file_without_d1_but_one_dataset_is_read(tmp_path):
    arrays = release_arrays()
    files = write_release(tmp_path / "raw", arrays)
    write_h5(files["audio_valid.h5"], arrays["valid_audio"], key="data")
    convert_release(files, tmp_path / "out.npz")
    np.testing.assert_array_equal(npz(tmp_path / "out.npz")["valid_audio"], arrays["valid_audio"].astype(np.float32))


def test_missing_or_unreadable_labels_are_an_error(tmp_path):
    files = write_release(tmp_path / "raw", release_arrays())
    files["y_valid.h5"].write_bytes(b"not h5")
    with pytest.raises(DataError, match=r"y_valid.h5: cannot read the labels of split 'valid': not an HDF5 file"):
        convert_release(files, tmp_path / "out.npz")
    del files["y_valid.h5"]
    with pytest.raises(DataError, match=r"y_valid.h5: the labels of split 'valid' are missing"):
        convert_release(files, tmp_path / "out.npz")
    assert not (tmp_path / "out.npz").exists()


@pytest.mark.parametrize("axes", ["auto", "tnd"])
def test_time_major_files_are_transposed_to_rows_first(tmp_path, axes):
    arrays = release_arrays()
    rep = convert_release(write_release(tmp_path / "raw", arrays, tnd=True), tmp_path / "out.npz", axes=axes)
    got = npz(tmp_path / "out.npz")
    np.testing.assert_array_equal(got["test_vision"], arrays["test_vision"].astype(np.float32))
    assert "video_test.h5" in rep.transposed and len(rep.transposed) == 9


def test_features_whose_rows_match_no_label_count_are_an_error(tmp_path):
    arrays = release_arrays()
    arrays["test_audio"] = arrays["test_audio"][:3]
    with pytest.raises(DataError, match=r"audio_test.h5: shape \(3, 8, 4\) has no axis of the split's 5 labels"):
        convert_release(write_release(tmp_path / "raw", arrays), tmp_path / "out.npz")
    with pytest.raises(DataError, match=r"read as \(N, T, d\) has 3 rows but the split has 5 labels"):
        convert_release(write_release(tmp_path / "raw", arrays), tmp_path / "out.npz", axes="ntd")


def test_time_axes_of_different_lengths_are_an_error(tmp_path):
    arrays = release_arrays()
    arrays["valid_vision"] = arrays["valid_vision"][:, :5]
    with pytest.raises(DataError, match=r"video_valid.h5: T=5 steps but .* has T=8"):
        convert_release(write_release(tmp_path / "raw", arrays), tmp_path / "out.npz")


def test_label_columns_keep_their_shape_and_label_column_picks_one(tmp_path):
    from mmcore.data.npz import NpzDataset
    from mmcore.data.params import NpzParams

    arrays = release_arrays(labels_shape=(17,))  # POM: 17 trait columns
    convert_release(write_release(tmp_path / "raw", arrays), tmp_path / "out.npz")
    path = str(tmp_path / "out.npz")
    assert npz(tmp_path / "out.npz")["train_labels"].shape == (6, 17)
    ds = NpzDataset(NpzParams(path=path, label_column=3, task="regression"), ["audio"], 0)
    np.testing.assert_allclose(ds.splits["test"].labels.numpy(), arrays["test_labels"][:, 3].astype(np.float32))
    with pytest.raises(DataError, match=r"'train_labels' must be \(N,\).*got shape \(6, 17\).*label_column"):
        NpzDataset(NpzParams(path=path, task="regression"), ["audio"], 0)
    with pytest.raises(DataError, match=r"label_column: 17 needs \(N, K\) labels with K > 17"):
        NpzDataset(NpzParams(path=path, label_column=17), ["audio"], 0)


def test_a_label_column_of_one_becomes_a_vector_and_integer_labels_stay_integers(tmp_path):
    arrays = release_arrays(labels_shape=(1,))
    convert_release(write_release(tmp_path / "a", arrays), tmp_path / "a.npz")
    assert npz(tmp_path / "a.npz")["valid_labels"].shape == (4,)
    for s, n in SIZES.items():
        arrays[f"{s}_labels"] = np.arange(n) % 3
    convert_release(write_release(tmp_path / "b", arrays), tmp_path / "b.npz")
    y = npz(tmp_path / "b.npz")["train_labels"]
    assert y.dtype == np.int64 and y.tolist() == [0, 1, 2, 0, 1, 2]


def _pinned_mmmo_files() -> tuple[dict[str, Path] | None, str]:
    """The 11 pinned ICT-MMMO h5 files from $MMCORE_MFN_H5_DIR or the data cache, and where they were looked for."""
    from mmcore.data.cache import dataset_dir

    dirs = [Path(os.environ["MMCORE_MFN_H5_DIR"]).expanduser()] if os.environ.get("MMCORE_MFN_H5_DIR") else []
    dirs.append(dataset_dir("mmmo") / "raw")
    pinned = [f for f in DATASETS["mmmo"].files if f.verified]
    for d in dirs:
        for sub in (d, d / "mmmo", d / "new_data" / "mmmo"):
            found = {f.name: sub / f.name for f in pinned if (sub / f.name).is_file()}
            if len(found) == len(pinned):
                return found, ""
    return None, " or ".join(str(d) for d in dirs)


def test_conversion_reproduces_the_shared_mmmo_copy_from_the_pinned_files(tmp_path):
    """The pinned ICT-MMMO files (no train text) convert to exactly ../shared/data/mmmo.npz."""
    if not os.path.exists(SHARED_DATA):
        pytest.skip(f"our machines' copy {SHARED_DATA} is absent")
    files, looked = _pinned_mmmo_files()
    if files is None:
        pytest.skip(f"the 11 pinned ICT-MMMO h5 files are not on this machine (looked in {looked}; set "
                    "MMCORE_MFN_H5_DIR to a folder holding them, or run `mmcore data fetch mmmo --verified-only`)")
    from mmcore.data.fetch import sha256_file

    pinned = {f.name: f.sha256 for f in DATASETS["mmmo"].files}
    assert {n: sha256_file(p) for n, p in files.items()} == {n: pinned[n] for n in files}
    convert_release(files, tmp_path / "mmmo.npz")
    got, want = npz(tmp_path / "mmmo.npz"), npz(Path(SHARED_DATA))
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape, k
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
