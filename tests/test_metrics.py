"""Metrics checked against scikit-learn on fixed inputs, plus the errors for wrong label kinds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from neurocrane.errors import InputError
from neurocrane.evaluation.metrics import (
    accuracy,
    auroc,
    balanced_accuracy,
    classification_metrics,
    f1_macro,
    pearson_r,
    r2_score,
    regression_metrics,
    summarize,
)

RNG = np.random.default_rng(1234)
Y_BIN = RNG.integers(0, 2, size=60)
S_BIN = RNG.normal(size=60) + Y_BIN * 0.8
S_BIN[:10] = np.round(S_BIN[:10], 0)  # ties must count one half, as in sklearn
Y_MC = np.repeat(np.arange(4), 15)
RNG.shuffle(Y_MC)
LOGITS_MC = RNG.normal(size=(60, 4)) + np.eye(4)[Y_MC] * 1.2
P_MC = np.exp(LOGITS_MC) / np.exp(LOGITS_MC).sum(1, keepdims=True)
PRED_MC = RNG.integers(0, 5, size=60)  # includes a class (4) that never occurs in y_true


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_accuracy_balanced_f1_match_sklearn():
    assert accuracy(Y_MC, PRED_MC) == pytest.approx(skm.accuracy_score(Y_MC, PRED_MC))
    assert balanced_accuracy(Y_MC, PRED_MC) == pytest.approx(skm.balanced_accuracy_score(Y_MC, PRED_MC))
    assert f1_macro(Y_MC, PRED_MC) == pytest.approx(skm.f1_score(Y_MC, PRED_MC, average="macro", zero_division=0))
    pred_bin = (S_BIN > 0).astype(int)
    assert f1_macro(Y_BIN, pred_bin) == pytest.approx(skm.f1_score(Y_BIN, pred_bin, average="macro"))
    assert balanced_accuracy(Y_BIN, pred_bin) == pytest.approx(skm.balanced_accuracy_score(Y_BIN, pred_bin))


def test_auroc_binary_with_ties_matches_sklearn():
    assert auroc(Y_BIN, S_BIN) == pytest.approx(skm.roc_auc_score(Y_BIN, S_BIN))
    two_col = np.stack([-S_BIN, S_BIN], axis=1)
    assert auroc(Y_BIN, two_col) == pytest.approx(skm.roc_auc_score(Y_BIN, S_BIN))
    assert auroc(torch.tensor(Y_BIN), torch.tensor(S_BIN)) == pytest.approx(skm.roc_auc_score(Y_BIN, S_BIN))


def test_auroc_one_vs_rest_macro_matches_sklearn():
    expected = skm.roc_auc_score(Y_MC, P_MC, multi_class="ovr", average="macro")
    assert auroc(Y_MC, P_MC) == pytest.approx(expected)
    # a monotone per-column transform (logits instead of probabilities) changes nothing per class
    per_class = np.mean([skm.roc_auc_score(Y_MC == k, LOGITS_MC[:, k]) for k in range(4)])
    assert auroc(Y_MC, LOGITS_MC) == pytest.approx(per_class)


def test_regression_metrics_match_sklearn_and_numpy():
    y = RNG.normal(size=40)
    p = y * 0.7 + RNG.normal(size=40) * 0.5
    assert pearson_r(y, p) == pytest.approx(np.corrcoef(y, p)[0, 1])
    assert r2_score(y, p) == pytest.approx(skm.r2_score(y, p))
    assert regression_metrics(y, y) == {"r": 1.0, "r2": 1.0}
    assert r2_score(y, -p) < 0  # worse than the mean is negative, not clipped


def test_classification_metrics_set():
    out = classification_metrics(Y_MC, LOGITS_MC)
    assert set(out) == {"auc", "accuracy", "balanced_accuracy", "f1"}
    pred = LOGITS_MC.argmax(1)
    assert out["accuracy"] == pytest.approx(skm.accuracy_score(Y_MC, pred))
    assert out["f1"] == pytest.approx(skm.f1_score(Y_MC, pred, average="macro"))
    one_class = classification_metrics([1, 1, 1], [[0.0, 1.0], [1.0, 0.0], [0.0, 2.0]])
    assert np.isnan(one_class["auc"]) and one_class["accuracy"] == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    "call, fragment",
    [
        (lambda: accuracy([0.5, 1.2], [0, 1]), "integer class ids"),
        (lambda: auroc([0.2, 0.7, 0.1], [0.1, 0.2, 0.3]), "regression metrics"),
        (lambda: auroc([1, 1, 1], [0.1, 0.2, 0.3]), "at least two classes"),
        (lambda: auroc([0, 1, 2], [0.1, 0.2, 0.3]), "one score column per class"),
        (lambda: accuracy([0, -1], [0, 1]), "non-negative"),
        (lambda: accuracy([[0, 1]], [[0, 1]]), "1-D"),
        (lambda: accuracy([0, 1, 1], [0, 1]), "same length"),
        (lambda: r2_score(["a", "b"], [1.0, 2.0]), "numbers"),
        (lambda: auroc([0, 1, 3], np.zeros((3, 2))), "columns"),
    ],
)
def test_wrong_label_kinds_raise_clear_errors(call, fragment):
    with pytest.raises(InputError, match=fragment):
        call()


def test_summarize_mean_sd_and_bootstrap_ci():
    vals = {"s1": 0.6, "s2": 0.7, "s3": 0.8, "s4": 0.9, "s5": float("nan")}
    s = summarize(vals, seed=0)
    assert s.n == 4
    assert s.mean == pytest.approx(0.75)
    assert s.sd == pytest.approx(np.std([0.6, 0.7, 0.8, 0.9], ddof=1))
    assert 0.6 <= s.ci_low < s.mean < s.ci_high <= 0.9
    assert summarize(vals, seed=0) == s  # seeded: reproducible
    one = summarize([0.5])
    assert (one.mean, one.sd, one.ci_low, one.ci_high) == (0.5, 0.0, 0.5, 0.5)
    assert summarize([]).n == 0 and np.isnan(summarize([]).mean)
