"""Params of the built-in datasets (torch-free, so ``mmcore validate|schema`` never imports torch).

Paths are taken relative to the current working directory. A missing, unreadable or corrupt
file raises :class:`mmcore.errors.DataError` naming the path and what to do (at load time, in
the dataset class, not here: validating a spec must not touch the file system).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from ..params import ComponentParams

_MODALITIES = ("text", "audio", "vision")


class SyntheticParams(ComponentParams):
    """Synthetic sentiment-like sequences whose label needs cross-modal, time-aligned reasoning.

    See :class:`mmcore.data.synthetic.SyntheticDataset` for the generative story.
    """

    n_train: int = Field(512, ge=2, description="Training samples.")
    n_valid: int = Field(128, ge=1, description="Validation samples.")
    n_test: int = Field(128, ge=1, description="Test samples.")
    dims: dict[str, int] = Field(default_factory=lambda: {"text": 32, "audio": 16, "vision": 16},
                                 description="Feature size per modality; its keys are the available modalities.")
    lengths: dict[str, int] = Field(default_factory=lambda: {"text": 16, "audio": 40, "vision": 32},
                                    description="Max sequence length per modality (text length = words per clip).")
    min_length_frac: float = Field(0.5, gt=0, le=1, description="Each clip's word count is uniform in "
                                   "[ceil(min_length_frac·T_text), T_text]; audio/vision lengths scale with it.")
    polar_prob: float = Field(0.35, gt=0, le=1, description="Probability that a word carries sentiment (±1).")
    stress_prob: float = Field(0.5, ge=0, le=1, description="Probability that a word is stressed in audio "
                                                             "(a stressed word counts double).")
    cue_prob: float = Field(0.15, ge=0, le=1, description="Probability of a visual sarcasm cue on a word "
                                                           "(flips that word's polarity).")
    noise: float = Field(0.5, ge=0, description="Std of the Gaussian feature noise (signals have unit scale).")
    content_share: float = Field(0.5, ge=0, description="Scale of the word-identity code that audio and vision "
                                 "frames carry (shared content an aligner can match across modalities).")
    label_noise: float = Field(0.0, ge=0, description="Std of Gaussian noise added to the regression score.")
    max_shift: float = Field(0.25, ge=0, lt=1, description="Max leading offset of audio/vision relative to text, "
                             "as a fraction of the clip's frames (per sample, uniform).")
    warp: float = Field(0.4, ge=0, le=2, description="Strength of the per-sample monotone time warp "
                        "u -> u**exp(warp·z), z ~ N(0, 1) (0 = linear alignment).")
    misalignment: float | None = Field(None, ge=0, le=1, description="One knob for misalignment strength a: sets "
                                       "max_shift = 0.5·a and warp = 0.8·a (0 = proportional alignment, no offset "
                                       "or warp; 0.5 = the default max_shift/warp; 1 = strong). null = use "
                                       "max_shift and warp as given (with misalignment, explicit max_shift/warp must equal what it sets).")
    recoverable: float = Field(0.0, ge=0, le=1, description="Recoverability r of recover_modality from recover_from: "
                               "each event (vision: cue, audio: stress) of the victim is echoed, with probability "
                               "r, as a pattern of the same norm in the source's frames of that word (0 = "
                               "unrecoverable, the draw is unchanged; 1 = the victim is a linear function of the "
                               "source's time-aligned content up to noise).")
    recover_modality: Literal["audio", "vision"] = Field("vision", description="The victim modality whose events "
                                                         "the source echoes (recoverable > 0).")
    recover_from: Literal["text", "audio", "vision"] = Field("audio", description="The source modality that carries "
                                                             "the echo (recoverable > 0); not recover_modality.")
    data_seed: int = Field(0, description="Seed of the data draw. Independent of the pipeline seed, so a sweep over "
                                           "model seeds trains on the same dataset; change it for another draw.")
    task: Literal["regression", "classification"] = Field("regression", description="regression: score in "
                                                          "[-3, 3] (MOSI-like); classification: score binned.")
    num_classes: int = Field(2, ge=2, le=10, description="classification: number of classes; class = how many "
                                                         "of the train score's k/num_classes quantiles the score exceeds.")

    @model_validator(mode="after")
    def _check(self):
        if set(self.dims) != set(self.lengths):
            raise ValueError(f"dims and lengths must name the same modalities; dims has {sorted(self.dims)}, "
                             f"lengths has {sorted(self.lengths)}")
        if "text" not in self.dims:
            raise ValueError(f"the synthetic story is driven by text: dims must include 'text'; got {sorted(self.dims)}")
        unknown = sorted(set(self.dims) - set(_MODALITIES))
        if unknown:
            raise ValueError(f"unknown synthetic modalities {unknown}; available: {list(_MODALITIES)}")
        bad = {m: v for m, v in {**self.dims, **self.lengths}.items() if v < 1}
        if bad:
            raise ValueError(f"dims and lengths must be >= 1; got {bad}")
        if self.misalignment is not None:
            # misalignment sets both; an explicit value must agree (a saved spec lists the values it set)
            want = {"max_shift": 0.5 * self.misalignment, "warp": 0.8 * self.misalignment}
            clash = [f for f in want if f in self.model_fields_set and getattr(self, f) != want[f]]
            if clash:
                raise ValueError(f"misalignment={self.misalignment} sets max_shift = {want['max_shift']:g} and "
                                 f"warp = {want['warp']:g}; remove {clash} or remove misalignment")
            for f, v in want.items():
                object.__setattr__(self, f, v)
        if self.recoverable > 0:
            src, vic = self.recover_from, self.recover_modality
            if src == vic:
                raise ValueError(f"recover_from and recover_modality are both {src!r}: a modality cannot echo "
                                 "itself; choose another recover_from")
            absent = [m for m in (vic, src) if m not in self.dims]
            if absent:
                raise ValueError(f"recoverable > 0 needs recover_modality {vic!r} and recover_from {src!r} in dims; "
                                 f"{absent} missing (add to dims/lengths or choose others)")
        return self

    def declared_task(self) -> str | None:
        return self.task

    def shift_and_warp(self) -> tuple[float, float]:
        """(max_shift, warp) in effect (``misalignment`` a has set them to (0.5·a, 0.8·a) when given)."""
        return self.max_shift, self.warp


def label_task(y) -> str:
    """``classification`` for integer/bool labels (N,) or one-hot rows (N, C > 1), else ``regression``."""
    import numpy as np

    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        return "classification"
    return "classification" if y.dtype.kind in "iub" else "regression"


def _check_splits(v: dict[str, str]) -> dict[str, str]:
    need = {"train", "valid", "test"}
    if set(v) != need:
        raise ValueError(f"splits must map exactly train, valid, test to names in the file; got keys {sorted(v)}")
    return v


class NpzParams(ComponentParams):
    """An ``.npz`` file with ``{split}_{modality}`` (N, T, d) arrays and ``{split}_labels`` (N,)."""

    path: str | None = Field(None, min_length=1, description="Path to the .npz file, relative to the current "
                             "working directory (give path or dataset, not both).")
    dataset: str | None = Field(None, min_length=1, description="A dataset of the catalogue (`mmcore data list`), "
                                "read from the data cache ($MMCORE_DATA_DIR or the user cache) after `mmcore data "
                                "fetch NAME`, e.g. mmmo (give path or dataset, not both).")
    standardize: bool = Field(True, description="Standardise each feature with the mean/std of the train "
                              "split's valid tokens (a modality absent from train is left as is).")
    nan_policy: Literal["error", "zero"] = Field("error", description="Non-finite values: error = raise "
                                                 "DataError; zero = replace by 0 and log how many.")
    splits: dict[str, str] = Field(default_factory=lambda: {"train": "train", "valid": "valid", "test": "test"},
                                   description="mmcore split -> key prefix in the file.")
    label_offset: float = Field(0.0, description="Regression labels become (y + label_offset)·label_scale "
                                "(defaults: no mapping, e.g. ICT-MMMO's 1..5 scores stay 1..5).")
    label_scale: float = Field(1.0, gt=0, description="See label_offset.")
    task: Literal["auto", "regression", "classification"] = Field(
        "auto", description="auto: classification when the labels are integers (N,) or one-hot (N, C), regression "
                            "when they are floats (logged); or force one. Classification labels are class ids "
                            "0..C-1 (one-hot rows are turned into ids).")
    natural_missing: bool = Field(True, description="Mark a row's modality missing when all its features are zero "
                                                    "(counted per split in the log, left out of standardisation, "
                                                    "seen by imputers like protocol-made missingness).")
    label_column: int | None = Field(None, ge=0, description="Labels stored as (N, K) columns (e.g. POM's 17 "
                                     "traits): use column label_column (0-based) as the (N,) labels. null = the "
                                     "labels as stored.")

    _v_splits = field_validator("splits")(_check_splits)

    @model_validator(mode="after")
    def _one_source(self):
        if (self.path is None) == (self.dataset is None):
            from .catalogue import fetchable_names

            both = "both path and dataset are set" if self.path is not None else "neither path nor dataset is set"
            raise ValueError(f"{both}; give exactly one: dataset: NAME (one of {', '.join(fetchable_names())}, "
                             "after `mmcore data fetch NAME`) or path: FILE.npz")
        if self.dataset is not None:
            from .catalogue import DATASETS, unknown_dataset_message

            entry = DATASETS.get(self.dataset)
            if entry is None:
                raise ValueError(unknown_dataset_message(self.dataset))
            if entry.loader != "npz":
                raise ValueError(f"{self.dataset!r} is an MMSA pickle downloaded by hand, not an npz dataset: use "
                                 f"data: {{name: mmsa, params: {{path: FILE.pkl}}}} (or --data FILE.pkl)")
        return self

    def source_path(self) -> str | None:
        """The file to read: ``path``, or the cached npz of ``dataset`` (None if it is not fetched)."""
        if self.path is not None:
            return self.path
        from .cache import cached_npz

        p = cached_npz(self.dataset)
        return str(p) if p is not None else None

    def declared_task(self) -> str | None:
        """The task, if known without loading the features (peeks at the train labels for ``auto``)."""
        if self.task != "auto":
            return self.task
        path = self.source_path()
        if path is None:
            return None
        try:
            import numpy as np

            with np.load(path, allow_pickle=False) as z:
                y = z[f"{self.splits['train']}_labels"]
            if self.label_column is not None and y.ndim == 2 and self.label_column < y.shape[1]:
                y = y[:, self.label_column]
            return label_task(y)
        except Exception:  # unreadable here: the run reports it with the full reason
            return None


class MmsaParams(ComponentParams):
    """A pickle in the MMSA toolkit's layout (CMU-MOSI, MOSI-aligned, MOSEI, CH-SIMS)."""

    path: str = Field(min_length=1, description="Path to the .pkl file, relative to the current working directory.")
    standardize: bool = Field(False, description="Standardise each feature with the train split's valid tokens "
                              "(MMSA's features are used unstandardised).")
    nan_policy: Literal["error", "zero"] = Field("error", description="Non-finite values (MMSA audio holds -inf): "
                                                 "error = raise DataError; zero = replace by 0 and log how many "
                                                 "(MMSA's own loader zeroes audio -inf silently).")
    label_key: Literal["regression", "classification"] = Field(
        "regression", description="Use regression_labels (float) or classification_labels (int classes).")
    metric_set: Literal["auto", "mosi", "sims"] = Field(
        "auto", description="Regression metrics: mosi ([-3, 3], Acc-2/5/7) or sims ([-1, 1], Acc-2/3/5); "
                            "auto = sims if every label lies in [-1, 1], else mosi.")
    splits: dict[str, str] = Field(default_factory=lambda: {"train": "train", "valid": "valid", "test": "test"},
                                   description="mmcore split -> top-level key in the pickle.")
    natural_missing: bool = Field(True, description="Mark a row's modality missing when its stored length is 0 or "
                                                    "all its features are zero (counted per split in the log, left "
                                                    "out of standardisation, seen by imputers).")

    _v_splits = field_validator("splits")(_check_splits)

    def declared_task(self) -> str | None:
        return self.label_key
