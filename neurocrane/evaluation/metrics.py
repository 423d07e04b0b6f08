"""Metrics for classification and regression benchmarks, and their aggregation over subjects.

Everything here takes NumPy arrays or torch tensors (any device) and returns Python floats.
Classification metrics follow scikit-learn's definitions (checked against it in the tests)
without depending on it at run time:

* :func:`accuracy`, :func:`balanced_accuracy` (mean recall over the classes present in
  ``y_true``), :func:`f1_macro` (unweighted mean F1 over the classes in ``y_true`` or
  ``y_pred``; 0 where a class has no prediction and no true sample);
* :func:`auroc` — binary ROC-AUC from one score per sample, or one-vs-rest macro ROC-AUC from a
  ``(N, K)`` score matrix (Neuroprobe's multi-class score);
* :func:`pearson_r` and :func:`r2_score` for regression.

:func:`classification_metrics` / :func:`regression_metrics` compute the standard set at once;
:func:`summarize` aggregates per-subject scores into mean ± sd and a bootstrap 95% CI.

Example:
    >>> classification_metrics([0, 1, 1, 0], [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])["accuracy"]
    0.75
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

from neurocrane.errors import InputError

__all__ = [
    "CLASSIFICATION_METRICS",
    "REGRESSION_METRICS",
    "Summary",
    "accuracy",
    "auroc",
    "balanced_accuracy",
    "check_class_labels",
    "check_regression_targets",
    "classification_metrics",
    "f1_macro",
    "pearson_r",
    "r2_score",
    "regression_metrics",
    "summarize",
]

#: Keys of :func:`classification_metrics`, in display order.
CLASSIFICATION_METRICS: tuple[str, ...] = ("auc", "accuracy", "balanced_accuracy", "f1")
#: Keys of :func:`regression_metrics`, in display order.
REGRESSION_METRICS: tuple[str, ...] = ("r", "r2")


def _to_numpy(x: Any, what: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor on any device
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as err:
        raise InputError(f"{what} must be an array-like of numbers; got {type(x).__name__} ({err}).") from None
    if arr.dtype == object:
        raise InputError(f"{what} must be numeric; got objects such as {arr.ravel()[:3].tolist()!r}.")
    return arr


def check_class_labels(y_true: Any, what: str = "labels") -> np.ndarray:
    """Return ``y_true`` as a 1-D int64 array of class ids, or raise a clear error.

    Args:
        y_true: Class ids (ints, bools, or floats holding whole numbers), shape ``(N,)``.
        what: Name used in error messages.

    Returns:
        The labels as ``np.int64``.

    Raises:
        InputError: not 1-D, empty, negative, or not whole numbers (e.g. regression targets
            given to a classification metric).

    Example:
        >>> check_class_labels([0.0, 1.0, 2.0])
        array([0, 1, 2])
    """
    arr = _to_numpy(y_true, what)
    if arr.ndim != 1:
        raise InputError(f"{what} must be 1-D (one class id per sample); got shape {arr.shape}.")
    if arr.size == 0:
        raise InputError(f"{what} is empty; a metric needs at least one sample.")
    if arr.dtype.kind == "b":
        return arr.astype(np.int64)
    if arr.dtype.kind not in "iuf":
        raise InputError(f"{what} must be integer class ids; got dtype {arr.dtype}.")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            bad = arr[~np.isfinite(arr) | (arr != np.round(arr))][:3].tolist()
            raise InputError(
                f"{what} must be integer class ids for a classification metric; got non-integer values "
                f"such as {bad}. Continuous targets need the regression metrics (pearson_r, r2_score)."
            )
    out = arr.astype(np.int64)
    if out.min() < 0:
        raise InputError(
            f"{what} must be non-negative class ids; got {int(out.min())}. Windows without a label (-1) "
            "must be left out of evaluation."
        )
    return out


def check_regression_targets(y: Any, what: str = "targets") -> np.ndarray:
    """Return ``y`` as a finite 1-D float64 array, or raise :class:`InputError`."""
    arr = _to_numpy(y, what)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise InputError(f"{what} must be 1-D (one value per sample); got shape {arr.shape}.")
    if arr.size == 0:
        raise InputError(f"{what} is empty; a metric needs at least one sample.")
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{what} must be numbers; got dtype {arr.dtype}.")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{what} contains NaN or inf; remove those samples first.")
    return arr


def _pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t = check_class_labels(y_true, "y_true")
    p = check_class_labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise InputError(f"y_true and y_pred must have the same length; got {t.shape[0]} and {p.shape[0]}.")
    return t, p


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of correct predictions.

    Example:
        >>> accuracy([0, 1, 1], [0, 1, 0])
        0.6666666666666666
    """
    t, p = _pair(y_true, y_pred)
    return float(np.mean(t == p))


def balanced_accuracy(y_true: Any, y_pred: Any) -> float:
    """Mean recall over the classes present in ``y_true`` (chance = 1 / n_classes).

    Example:
        >>> balanced_accuracy([0, 0, 0, 1], [0, 0, 0, 0])
        0.5
    """
    t, p = _pair(y_true, y_pred)
    recalls = [np.mean(p[t == c] == c) for c in np.unique(t)]
    return float(np.mean(recalls))


def f1_macro(y_true: Any, y_pred: Any) -> float:
    """Unweighted mean of per-class F1 over the classes in ``y_true`` or ``y_pred``.

    A class with no true and no predicted sample does not occur; a class with predictions but
    no correct one scores 0 (scikit-learn's ``zero_division=0`` behaviour).

    Example:
        >>> round(f1_macro([0, 1, 1, 0], [0, 1, 0, 0]), 4)
        0.7333
    """
    t, p = _pair(y_true, y_pred)
    scores = []
    for c in np.union1d(t, p):
        tp = np.sum((p == c) & (t == c))
        denom = np.sum(p == c) + np.sum(t == c)
        scores.append(0.0 if denom == 0 else 2.0 * tp / denom)
    return float(np.mean(scores))


def _binary_auc(positive: np.ndarray, score: np.ndarray) -> float:
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    ranks = rankdata(score)  # average ranks: ties count one half (Mann-Whitney U)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def auroc(y_true: Any, scores: Any) -> float:
    """Area under the ROC curve.

    Args:
        y_true: Class ids ``(N,)``.
        scores: ``(N,)`` scores of class 1 (binary), or ``(N, K)`` scores (logits or
            probabilities) with one column per class. With ``K == 2`` the binary AUC of
            column 1 is returned; with ``K > 2`` the one-vs-rest macro average over the
            classes present in ``y_true``.

    Returns:
        The AUC in [0, 1]; 0.5 is chance.

    Raises:
        InputError: fewer than two classes in ``y_true`` (the AUC is undefined), labels that
            are not class ids, or a score shape that does not match.

    Example:
        >>> auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        0.75
    """
    t = check_class_labels(y_true, "y_true")
    s = _to_numpy(scores, "scores").astype(np.float64)
    if s.shape[0] != t.shape[0] or s.ndim not in (1, 2):
        raise InputError(f"scores must be (N,) or (N, K) with N = {t.shape[0]} labels; got shape {s.shape}.")
    if not np.all(np.isfinite(s)):
        raise InputError("scores contain NaN or inf; the model or probe produced invalid outputs.")
    present = np.unique(t)
    if present.size < 2:
        raise InputError(
            f"AUROC needs samples of at least two classes in y_true; got only class {present.tolist()}. "
            "Use a split whose test part contains every class."
        )
    if s.ndim == 1 or s.shape[1] == 1:
        if present.size > 2 or present.max() > 1:
            raise InputError(
                f"a single score column only works for binary labels 0/1; got classes {present.tolist()}. "
                "Give one score column per class for a multi-class AUROC."
            )
        return _binary_auc(t == 1, s.reshape(-1))
    n_classes = s.shape[1]
    if present.max() >= n_classes:
        raise InputError(f"y_true has class {int(present.max())} but scores have only {n_classes} columns.")
    if n_classes == 2:
        if present.size != 2:
            raise InputError("binary AUROC needs both classes 0 and 1 in y_true.")
        return _binary_auc(t == 1, s[:, 1])
    return float(np.mean([_binary_auc(t == c, s[:, c]) for c in present]))


def pearson_r(y_true: Any, y_pred: Any) -> float:
    """Pearson correlation between targets and predictions (0 when either is constant).

    Example:
        >>> round(pearson_r([1.0, 2.0, 3.0], [2.0, 4.0, 6.5]), 4)
        0.9979
    """
    t = check_regression_targets(y_true, "y_true")
    p = check_regression_targets(y_pred, "y_pred")
    if t.shape != p.shape:
        raise InputError(f"y_true and y_pred must have the same length; got {t.shape[0]} and {p.shape[0]}.")
    tc, pc = t - t.mean(), p - p.mean()
    denom = math.sqrt(float(np.sum(tc * tc)) * float(np.sum(pc * pc)))
    return 0.0 if denom == 0.0 else float(np.sum(tc * pc) / denom)


def r2_score(y_true: Any, y_pred: Any) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot`` (can be negative).

    When ``y_true`` is constant the score is 1.0 for a perfect prediction and 0.0 otherwise
    (scikit-learn's convention).

    Example:
        >>> r2_score([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
        1.0
    """
    t = check_regression_targets(y_true, "y_true")
    p = check_regression_targets(y_pred, "y_pred")
    if t.shape != p.shape:
        raise InputError(f"y_true and y_pred must have the same length; got {t.shape[0]} and {p.shape[0]}.")
    ss_res = float(np.sum((t - p) ** 2))
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    if ss_tot == 0.0:
        return 1.0 if ss_res == 0.0 else 0.0
    return 1.0 - ss_res / ss_tot


def classification_metrics(y_true: Any, scores: Any) -> dict[str, float]:
    """The standard classification set: ``auc``, ``accuracy``, ``balanced_accuracy``, ``f1``.

    Args:
        y_true: Class ids ``(N,)``.
        scores: ``(N, K)`` class scores (logits or probabilities; the prediction is the
            arg-max), or ``(N,)`` binary decision scores (class 1 where the score is > 0).

    Returns:
        A dict of floats. ``auc`` is NaN when ``y_true`` holds a single class (e.g. one
        subject's test windows are all one class); the others are always defined.

    Example:
        >>> classification_metrics([0, 1], [[2.0, -1.0], [0.0, 3.0]])["auc"]
        1.0
    """
    t = check_class_labels(y_true, "y_true")
    s = _to_numpy(scores, "scores")
    if s.ndim == 2 and s.shape[1] > 1:
        pred = np.argmax(s, axis=1)
    elif s.ndim in (1, 2):
        pred = (s.reshape(-1) > 0).astype(np.int64)
    else:
        raise InputError(f"scores must be (N,) or (N, K); got shape {s.shape}.")
    auc = auroc(t, s) if np.unique(t).size > 1 else float("nan")
    return {
        "auc": auc,
        "accuracy": accuracy(t, pred),
        "balanced_accuracy": balanced_accuracy(t, pred),
        "f1": f1_macro(t, pred),
    }


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """The standard regression set: Pearson ``r`` and ``r2``.

    Example:
        >>> regression_metrics([0.0, 1.0, 2.0], [0.0, 1.0, 2.0])
        {'r': 1.0, 'r2': 1.0}
    """
    return {"r": pearson_r(y_true, y_pred), "r2": r2_score(y_true, y_pred)}


@dataclass(frozen=True)
class Summary:
    """Aggregate of one metric over units (usually subjects).

    Attributes:
        mean: Mean over units (NaN values ignored).
        sd: Sample standard deviation (ddof = 1; 0 for a single unit).
        ci_low, ci_high: Percentile bootstrap confidence interval of the mean.
        n: Number of units that had a value.
    """

    mean: float
    sd: float
    ci_low: float
    ci_high: float
    n: int

    def __str__(self) -> str:
        if self.n == 0:
            return "n/a"
        return f"{self.mean:.3f} ± {self.sd:.3f} [{self.ci_low:.3f}, {self.ci_high:.3f}]"

    def to_dict(self) -> dict[str, float | int]:
        return {"mean": self.mean, "sd": self.sd, "ci_low": self.ci_low, "ci_high": self.ci_high, "n": self.n}


def summarize(
    values: Sequence[float] | Mapping[Any, float] | np.ndarray,
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Summary:
    """Mean ± sd and a percentile-bootstrap CI of the mean over units (e.g. per-subject scores).

    Args:
        values: One score per unit (a sequence, array, or a dict unit → score); NaN values are
            left out.
        n_boot: Bootstrap resamples.
        confidence: Width of the interval (0.95 for a 95% CI).
        seed: Seed of the resampling, so reports are reproducible.

    Returns:
        A :class:`Summary`; with one unit the interval collapses to the value, with none
        every field is NaN and ``n == 0``.

    Example:
        >>> s = summarize({"sub-01": 0.8, "sub-02": 0.7, "sub-03": 0.9})
        >>> round(s.mean, 3), s.n
        (0.8, 3)
    """
    if isinstance(values, Mapping):
        values = list(values.values())
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    arr = arr[np.isfinite(arr)]
    if not 0.0 < confidence < 1.0:
        raise InputError(f"confidence must lie in (0, 1); got {confidence}.")
    if arr.size == 0:
        nan = float("nan")
        return Summary(nan, nan, nan, nan, 0)
    mean = float(arr.mean())
    if arr.size == 1:
        return Summary(mean, 0.0, mean, mean, 1)
    rng = np.random.default_rng(seed)
    means = arr[rng.integers(0, arr.size, size=(int(n_boot), arr.size))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return Summary(mean, float(arr.std(ddof=1)), float(low), float(high), int(arr.size))
