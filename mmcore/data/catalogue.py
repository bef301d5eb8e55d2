"""Known public datasets: where their files are, their sizes and sha256, and what each file holds.

Torch-free and file-system-free (``mmcore data list``, ``mmcore validate`` and spec validation read it).

The Memory Fusion Network release (repository ``pliang279/MFN``, folder ``new_data/``) holds
word-aligned ICT-MMMO, POM and YouTube features as h5 files, one dataset ``d1`` per file and one
file per split × modality, plus labels. Every file is listed at the pinned commit
:data:`MFN_COMMIT` with its size and sha256; ``None`` where the file exists in the repository but
its bytes were not available to compute them (``NA`` in the release table this was copied from).
Such files are fetched without verification and reported as unverified.

The MMSA-format pickles of CMU-MOSI, CMU-MOSEI and CH-SIMS are listed too (``fetchable=False``):
their authors distribute them through file-hosting links a script cannot fetch reliably, so a
user downloads them by hand and checks them with ``mmcore data verify FILE.pkl``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

__all__ = ["MFN_REPO", "MFN_COMMIT", "MFN_BASE_URL", "ReleaseFile", "DatasetEntry", "DATASETS", "get_dataset",
           "fetchable_names", "known_file_by_sha256", "parse_release_name", "unknown_dataset_message"]

MFN_REPO = "pliang279/MFN"
MFN_COMMIT = "b0453fb6e21b581c796246a0c32a6551f2028c1b"  # 2020-08-04
MFN_BASE_URL = f"https://raw.githubusercontent.com/{MFN_REPO}/{MFN_COMMIT}/"

#: release file name -> (role, split); roles: audio, vision, text, labels
_RELEASE_NAME = re.compile(r"^(?:(?P<m>audio|video)_(?P<s1>train|valid|test)|text_(?P<s2>train|valid|test)_emb|"
                           r"y_(?P<s3>train|valid|test))\.h5$")


def parse_release_name(name: str) -> tuple[str, str] | None:
    """``(role, split)`` of an MFN release file name, or None for other names.

    ``audio_train.h5`` -> (audio, train); ``video_*.h5`` -> vision; ``text_*_emb.h5`` -> text;
    ``y_*.h5`` -> labels.
    """
    m = _RELEASE_NAME.match(name)
    if m is None:
        return None
    if m["m"]:
        return ("audio" if m["m"] == "audio" else "vision"), m["s1"]
    if m["s2"]:
        return "text", m["s2"]
    return "labels", m["s3"]


@dataclass(frozen=True)
class ReleaseFile:
    """One file of a release: its path in the repository, size in bytes and sha256 (None = not known)."""

    path: str
    size: int | None
    sha256: str | None

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def verified(self) -> bool:
        """Whether a pinned checksum exists (the file is verified after download)."""
        return self.sha256 is not None


@dataclass(frozen=True)
class DatasetEntry:
    """A dataset mmcore knows: where it comes from and (when fetchable) every file with its checksum."""

    name: str
    title: str
    source: str  # human-readable origin, with the pinned commit
    homepage: str
    licence: str
    description: str
    base_url: str = ""  # a file's URL is base_url + ReleaseFile.path
    files: tuple[ReleaseFile, ...] = ()
    fetchable: bool = True
    loader: str = "npz"  # the dataset component that reads the converted (or hand-downloaded) file
    notes: tuple[str, ...] = ()

    def url(self, f: ReleaseFile) -> str:
        return self.base_url + f.path

    @property
    def known_size(self) -> int:
        return sum(f.size for f in self.files if f.size is not None)

    @property
    def unknown_size(self) -> int:
        """How many files have no known size."""
        return sum(f.size is None for f in self.files)


def _files(folder: str, rows: str) -> tuple[ReleaseFile, ...]:
    out = []
    for line in rows.strip().splitlines():
        name, size, sha = line.split()
        out.append(ReleaseFile(f"new_data/{folder}/{name}", None if size == "NA" else int(size),
                               None if sha == "NA" else sha))
    return tuple(out)


# Copied from the development machines' table of the release, mfn_release.tsv (tests/test_data_fetch.py
# cross-checks it wherever that table is present).
_MMMO = _files("mmmo", """
audio_test.h5  949248  1d701dc193b3e4404e35b97165fd33af19aff50d193a744488ec4c87ea0d6c44
audio_train.h5  2606848  4c37e59d75bf1fe17baf6d607e4e7eef228b9b16a145f64c9624d2fc8fcb1666
audio_valid.h5  475648  37b39911ee143d712e36d1fcba5b41400d2b40bef9de3da419de7344486eb8e9
text_test_emb.h5  3842048  8f3bcab7716c482c209c393098fabe6362fa66b58eb9de5ebd4529c2cb53476b
text_train_emb.h5  NA  NA
text_valid_emb.h5  1922048  ff332edc367c23495f0a0194fc5a2b83d217565a6a9ab402f98cbbb60bdc3b95
video_test.h5  462848  d0bfeb4a0ca249ac766b9c426146e4765b783463112e78665231a82c7b02f176
video_train.h5  1269248  2b7d7d442c1ef7aae0c06d19a845baeb5f8685ee844900f30d6cce643da42452
video_valid.h5  232448  43a44a63e369bca2fc86c54fa42d9b3b30c03657b8f7287bdae60341f4767d8c
y_test.h5  2688  17a83a344f15fc751bf10a052ade48d0944959052b30f33bc2c5216a31ea59ee
y_train.h5  3808  872872ba80f2076a2f5287ace2e3cb72dff7abaa01e1906073c1d50a15a84d6e
y_valid.h5  2368  e164e98d53b01e558af6eb232fdc0ca8660f8bd3e76469ca12bef124688a4c8f
""")

_POM = _files("pom", """
audio_test.h5  1398688  15aa2f0eaa8787e5aec2de28636fb5b0181aeacc1e8f6eec56fce4cdade367ab
audio_train.h5  4130048  a7edb566f5d5026c9ed82222fbdbfc22d506fdd243c4c112f1ecca2f5155eee7
audio_valid.h5  690048  430b49d06e7fc2a8ea11bf3636cd08df4366df18647acfda39d8014d342fb7cf
text_test_emb.h5  NA  NA
text_valid_emb.h5  NA  NA
video_test.h5  1333728  bd1bd57bf2bf4ad49b2ff03c79a3d13375627d23a531a6bde7b13a0f68f8c0dd
video_train.h5  3938048  936d32765899d8cab2d8c7c84fb5d6b91b249906d3e46ce51aa73c4f5b0d582d
video_valid.h5  658048  39f8a4aabfe7deb94da001b9ca25ad087ddd155f2786de04a3cacd90a379bb80
y_test.h5  29656  dec80f328c2e811fb28a04df2ad11495dc00be34a6c439d40b3d1848fe518a18
y_train.h5  83648  420831e96b21c5fc77194c70c8a76f831fd04d3cc6cadd513e1749c3b325fef5
y_valid.h5  15648  066fb33cef488591ff999b4c6859c990ff93645003cc795501c70b3ea87ac2ef
""")

_YOUTUBE = _files("youtube", """
audio_test.h5  712448  bd489a967e7004d0f803f93311d0ed6fd1c72b5fa33cc6fc33bd275534080931
audio_train.h5  2050368  7517bcd9c1469cdf9151028c640ef3534212d4282bbf1634986ecff28e5306d8
audio_valid.h5  428288  968a02845c1a12031b00cce6968579dee3f22dc153a0a5ab5b407147c1f65861
text_test_emb.h5  2882048  2092e3c144c3ebb8d5fa5151c69238f5baea2f7bee6469946c6d8d089090d12c
text_train_emb.h5  NA  NA
text_valid_emb.h5  1730048  c7b23458dd75ca81be747f78ea5eb6f011d3c9e1ba038e40e4b4b8ccc25272d0
video_test.h5  347648  c6c868b0a0926506922bf2d51caaa88a85b60f79c8b8efd83084c5a1b5513fa0
video_train.h5  998528  f59f74f7c23fd2a3cf157d4911e9e35cd8f0869a1e3afff4fff8751cceede639
video_valid.h5  209408  e2ca4216532e2a60f0ff8fe46ff7db080e5bee03cf9bbd5e171733c8a820599c
y_test.h5  2768  68707a166762430f3f00c7d4ac179e87e465ac1eaeff2622505587a33c09e5f5
y_train.h5  4124  693d6a56517b0568878f618e63c86cce121d982a33c610c5cee494301bb6d453
y_valid.h5  2480  5bc5f12900f3ebc0279f5920ea346a72cabee4fa59ee08f233f514725ab1cec7
""")

_MFN_LICENCE = ("MFN repository code: MIT; the CMU features are for research use only (cite the dataset's "
                "paper and the Memory Fusion Network paper)")
_MMSA_LICENCE = "research use only, under the dataset authors' terms (see the MMSA README)"
_MMSA_HOME = "https://github.com/thuiar/MMSA"


def _mfn(name: str, title: str, files: tuple[ReleaseFile, ...], description: str, notes=()) -> DatasetEntry:
    return DatasetEntry(name=name, title=title, source=f"{MFN_REPO}@{MFN_COMMIT[:7]} new_data/{name}",
                        homepage=f"https://github.com/{MFN_REPO}/tree/{MFN_COMMIT}/new_data/{name}",
                        licence=_MFN_LICENCE, description=description, base_url=MFN_BASE_URL, files=files,
                        notes=tuple(notes))


def _mmsa(name: str, title: str, description: str) -> DatasetEntry:
    return DatasetEntry(name=name, title=title, source="MMSA authors (thuiar), file-hosting links", homepage=_MMSA_HOME,
                        licence=_MMSA_LICENCE, description=description, fetchable=False, loader="mmsa",
                        notes=("download the pickle by hand from the links in the MMSA README, check it with "
                               "`mmcore data verify FILE.pkl`, then run with `--data FILE.pkl`",))


DATASETS: dict[str, DatasetEntry] = {e.name: e for e in (
    _mfn("mmmo", "ICT-MMMO movie-review opinions, word-aligned (20 steps)", _MMMO,
         "audio COVAREP (74), vision facial features (36), text GloVe (300); sentiment 1..5; 220/40/80 clips",
         ("text_train_emb.h5 has no pinned checksum: it is fetched unverified (--verified-only leaves it out, "
          "which gives the copy behind the numbers in docs/papers.md: train without text)",)),
    _mfn("pom", "POM persuasive opinion videos, word-aligned", _POM,
         "audio, vision, and text for valid/test only; 17 label columns (pick one with "
         "data.params.label_column)",
         ("the release has no train text; valid/test text have no pinned checksum and are fetched unverified",)),
    _mfn("youtube", "YouTube opinion videos, word-aligned", _YOUTUBE,
         "audio, vision and text (GloVe) per word; labels as stored in the release",
         ("text_train_emb.h5 has no pinned checksum: it is fetched unverified",)),
    _mmsa("mosi", "CMU-MOSI (MMSA pickle: unaligned or aligned)",
          "MOSI in the MMSA layout: text 50×768 (BERT), audio 375×5, vision 500×20 (unaligned)"),
    _mmsa("mosei", "CMU-MOSEI (MMSA pickle)", "MOSEI in the MMSA layout: text 50×768, audio 500×74, vision 500×35"),
    _mmsa("sims", "CH-SIMS (MMSA pickle)", "CH-SIMS in the MMSA layout: text 39×768, audio 400×33, vision 55×709"),
)}


def fetchable_names() -> list[str]:
    return sorted(n for n, e in DATASETS.items() if e.fetchable)


def unknown_dataset_message(name: str, where: str = "") -> str:
    """'unknown dataset X; did you mean Y? known: ...' (one line)."""
    close = difflib.get_close_matches(name, list(DATASETS), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return (f"{where}unknown dataset {name!r}{hint} (fetchable: {', '.join(fetchable_names())}; "
            "`mmcore data list` shows every known dataset)")


def get_dataset(name: str) -> DatasetEntry:
    """The catalogue entry of ``name``; DataError with a did-you-mean when unknown."""
    try:
        return DATASETS[name]
    except KeyError:
        from ..errors import DataError

        raise DataError(unknown_dataset_message(name)) from None


def known_file_by_sha256(sha256: str) -> tuple[DatasetEntry, ReleaseFile] | None:
    """The catalogue file with this sha256, if any (``mmcore data verify``)."""
    for entry in DATASETS.values():
        for f in entry.files:
            if f.sha256 == sha256:
                return entry, f
    return None
