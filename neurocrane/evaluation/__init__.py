"""Evaluation: benchmarks, protocols (zero-shot, linear probe, fine-tune), leakage-free splits,
metrics and the :func:`evaluate` entry point."""

from neurocrane.evaluation.metrics import (
    Summary,
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

__all__ = [
    "Summary",
    "accuracy",
    "auroc",
    "balanced_accuracy",
    "classification_metrics",
    "f1_macro",
    "pearson_r",
    "r2_score",
    "regression_metrics",
    "summarize",
]
