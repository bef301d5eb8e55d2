"""MMSA metrics against values computed by hand (the comments show the arithmetic)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from mmcore.data.base import DatasetInfo
from mmcore.metrics import (METRIC_MODES, classification_metrics, compute_metrics, pearson_corr, regression_metrics,
                            weighted_f1)

EXACT = 1e-9  # hand-computed fractions of small counts: only float rounding remains
F32 = 1e-6  # values that went through float32 (e.g. |0.72 - 0.7|)

# MOSI-style vectors with ties at zero: y has two 0 labels (dropped by non-0), p has two exact 0 predictions
Y = np.array([2.0, 0.0, -1.0, 0.5, -2.6, 0.0], dtype=np.float32)
P = np.array([1.5, -0.2, 0.0, -0.1, -2.4, 0.0], dtype=np.float32)


def test_mosi_has0_counts_zero_as_positive():
    m = regression_metrics(P, Y, "mosi")
    # y>=0: 1 1 0 1 0 1 ; p>=0: 1 0 1 0 0 1 -> matches at 0, 4, 5
    assert m["acc2_has0"] == pytest.approx(3 / 6, abs=EXACT)
    # class 1 (n=4): tp 2, fp 1, fn 2 -> 4/7 ; class 0 (n=2): tp 1, fp 2, fn 1 -> 2/5
    assert m["f1_has0"] == pytest.approx((4 * 4 / 7 + 2 * 2 / 5) / 6, abs=EXACT)


def test_mosi_non0_drops_zero_labels_and_counts_zero_prediction_negative():
    m = regression_metrics(P, Y, "mosi")
    # kept rows 0, 2, 3, 4: y>0: 1 0 1 0 ; p>0: 1 0 0 0 (p=0.0 is negative) -> 3 of 4
    assert m["acc2_non0"] == pytest.approx(3 / 4, abs=EXACT)
    # class 1 (n=2): tp 1, fp 0, fn 1 -> 2/3 ; class 0 (n=2): tp 2, fp 1, fn 0 -> 4/5
    assert m["f1_non0"] == pytest.approx((2 * 2 / 3 + 2 * 4 / 5) / 4, abs=EXACT)


def test_mosi_acc5_acc7_clip_then_round_half_to_even():
    m = regression_metrics(P, Y, "mosi")
    # round(y) = 2 0 -1 0(0.5->0) -3 0 ; round(p) = 2(1.5->2) 0 0 0 -2 0 -> acc7: rows 2, 4 wrong
    assert m["acc7"] == pytest.approx(4 / 6, abs=EXACT)
    # clip to [-2, 2]: y4 = -2 -> round -2 = round(p4) -> only row 2 wrong
    assert m["acc5"] == pytest.approx(5 / 6, abs=EXACT)


def test_mosi_mae_and_corr():
    m = regression_metrics(P, Y, "mosi")
    # |p - y| = .5 .2 1 .6 .2 0 -> 2.5 / 6
    assert m["mae"] == pytest.approx(2.5 / 6, abs=F32)
    assert m["corr"] == pytest.approx(float(np.corrcoef(P.astype(float), Y.astype(float))[0, 1]), abs=F32)
    assert set(m) == {"acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc5", "acc7", "mae", "corr"}


def test_round_half_to_even_at_every_tie():
    y = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5])
    # numpy rounds to even: 0 2 2 -0 -2 -2 ; so predicting those integers is exact
    p = np.array([0.0, 2.0, 2.0, 0.0, -2.0, -2.0])
    assert regression_metrics(p, y, "mosi")["acc7"] == 1.0


def test_non0_is_nan_when_every_label_is_zero():
    m = regression_metrics([0.3, -0.2], [0.0, 0.0], "mosi")
    assert np.isnan(m["acc2_non0"]) and np.isnan(m["f1_non0"])
    assert m["acc2_has0"] == 0.5


def test_sims_bins_are_left_open_on_clipped_values():
    y = np.array([-1.0, -0.1, 0.1, 0.0, 0.7, 0.9], dtype=np.float32)
    p = np.array([-1.4, 0.0, 0.1, 0.05, 0.72, 1.3], dtype=np.float32)  # clipped: -1 0 .1 .05 .72 1
    m = regression_metrics(p, y, "sims")
    # acc2 (-1,0] (0,1]: y 0 0 1 0 1 1 ; p 0 0 1 1 1 1 -> row 3 wrong
    assert m["acc2"] == pytest.approx(5 / 6, abs=EXACT)
    # acc3 edges -0.1, 0.1: y 0 0 1 1 2 2 ; p 0 1 1 1 2 2 -> row 1 wrong
    assert m["acc3"] == pytest.approx(5 / 6, abs=EXACT)
    # acc5 edges -0.7 -0.1 0.1 0.7: y 0 1 2 2 3 4 ; p 0 2 2 2 4 4 -> rows 1, 4 wrong
    assert m["acc5"] == pytest.approx(4 / 6, abs=EXACT)
    # f1 on acc2 classes: class 0 (n=3) tp 2 fp 0 fn 1 -> 4/5 ; class 1 (n=3) tp 3 fp 1 fn 0 -> 6/7
    assert m["f1"] == pytest.approx((3 * 4 / 5 + 3 * 6 / 7) / 6, abs=EXACT)
    # MAE on the clipped predictions: 0 .1 0 .05 .02 .1
    assert m["mae"] == pytest.approx(0.27 / 6, abs=F32)


def test_sims_thresholds_compare_in_input_dtype():
    # float32(0.1) <= float32(0.1): neutral, as numpy compares MMSA's float32 arrays
    m = regression_metrics(np.float32([0.1, 0.1]), np.float32([0.05, 0.0]), "sims")
    assert m["acc3"] == 1.0


def test_regression_set_gives_mae_mse_corr():
    m = regression_metrics([1.0, 2.0, 4.0], [1.0, 3.0, 3.0], "regression")
    assert m["mae"] == pytest.approx(2 / 3, abs=EXACT)
    assert m["mse"] == pytest.approx(2 / 3, abs=EXACT)
    assert set(m) == {"mae", "mse", "corr"}


def test_corr_of_constant_predictions_is_zero():
    assert pearson_corr([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) == 0.0
    assert pearson_corr([1.0], [2.0]) == 0.0
    assert regression_metrics(np.zeros(4), np.array([1.0, -1.0, 2.0, 0.0]), "mosi")["corr"] == 0.0


def test_classification_acc_weighted_acc_f1():
    y = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 1, 0, 1, 2, 2])
    m = classification_metrics(pred, y)
    assert m["acc"] == pytest.approx(4 / 6, abs=EXACT)
    # recalls 2/3, 1/2, 1/1
    assert m["weighted_acc"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3, abs=EXACT)
    # F1: c0 (n=3) 4/5 ; c1 (n=2) tp 1 fp 1 fn 1 -> 1/2 ; c2 (n=1) tp 1 fp 1 -> 2/3
    assert m["f1_weighted"] == pytest.approx((3 * 4 / 5 + 2 * 1 / 2 + 1 * 2 / 3) / 6, abs=EXACT)


def test_classification_takes_argmax_of_logits():
    logits = np.array([[2.0, 0.1, 0.0], [0.0, 0.5, 0.2], [0.0, 0.0, 3.0]])
    assert classification_metrics(logits, [0, 1, 2])["acc"] == 1.0


def test_weighted_f1_gives_predicted_only_class_zero_weight():
    # class 0 (n=2): tp 1 fp 0 fn 1 -> 2/3 ; class 1 (n=0) has weight 0
    assert weighted_f1([0, 0], [0, 1]) == pytest.approx(2 / 3, abs=EXACT)


@pytest.mark.skipif(importlib.util.find_spec("sklearn") is None,
                    reason="scikit-learn not installed (optional cross-check; mmcore does not depend on it)")
def test_weighted_f1_matches_sklearn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    for _ in range(20):
        t, p = rng.integers(0, 4, 30), rng.integers(0, 4, 30)
        assert weighted_f1(t, p) == pytest.approx(f1_score(t, p, average="weighted"), abs=EXACT)


def test_compute_metrics_dispatches_on_metric_set():
    info = DatasetInfo(name="x", metric_set="sims")
    assert "acc3" in compute_metrics(np.zeros((3, 1)), np.zeros(3), info)
    with pytest.raises(ValueError, match="unknown metric_set"):
        compute_metrics([0.0], [0.0], DatasetInfo(name="x", metric_set="bleu"))


def test_every_metric_name_has_a_selection_mode():
    names = set(regression_metrics(P, Y, "mosi")) | set(regression_metrics(P, Y, "sims"))
    names |= set(regression_metrics(P, Y, "regression")) | set(classification_metrics([0, 1], [0, 1]))
    assert names <= set(METRIC_MODES)
    assert set(METRIC_MODES.values()) == {"min", "max"}


def test_mismatched_lengths_name_both_shapes():
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        regression_metrics([1.0, 2.0, 3.0], [1.0, 2.0], "mosi")
