"""Evaluation: benchmarks, protocols (zero-shot, linear probe, fine-tune), leakage-free splits,
metrics, results and the :func:`evaluate` entry point.

Importing this package imports PyTorch Lightning (benchmarks fine-tune through it); the
training package itself is imported only when a fine-tune runs.

Example:
    >>> from neurocrane.evaluation import SyntheticEventBenchmark, evaluate
    >>> results = evaluate(model, [SyntheticEventBenchmark()], protocols=["linear_probe"],
    ...                    baselines=[high_gamma_pipeline()])
"""

from neurocrane.evaluation.benchmark import (
    Benchmark,
    BenchmarkError,
    FoldData,
    WindowBenchmark,
    WindowBenchmarkData,
)
from neurocrane.evaluation.cache import ResultCache
from neurocrane.evaluation.evaluator import BENCHMARKS, build_benchmark, evaluate, load_model, register_benchmark
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
from neurocrane.evaluation.protocols import PROTOCOLS, LinearProbe, PipelineBaseline, pool_features, weights_hash
from neurocrane.evaluation.results import ALL_SUBJECTS, EvaluationResults, ScoreRecord
from neurocrane.evaluation.splits import (
    LeakageError,
    Split,
    SplitError,
    WindowTable,
    cross_session_kfold,
    cross_session_split,
    cross_subject_kfold,
    cross_subject_split,
    make_splits,
    within_session_kfold,
    within_session_split,
)
from neurocrane.evaluation.synthetic_benchmark import SyntheticEventBenchmark, event_windows, high_gamma_pipeline

__all__ = [
    "ALL_SUBJECTS",
    "BENCHMARKS",
    "PROTOCOLS",
    "Benchmark",
    "BenchmarkError",
    "EvaluationResults",
    "FoldData",
    "LeakageError",
    "LinearProbe",
    "PipelineBaseline",
    "ResultCache",
    "ScoreRecord",
    "Split",
    "SplitError",
    "Summary",
    "SyntheticEventBenchmark",
    "WindowBenchmark",
    "WindowBenchmarkData",
    "WindowTable",
    "accuracy",
    "auroc",
    "balanced_accuracy",
    "build_benchmark",
    "classification_metrics",
    "cross_session_kfold",
    "cross_session_split",
    "cross_subject_kfold",
    "cross_subject_split",
    "evaluate",
    "event_windows",
    "f1_macro",
    "high_gamma_pipeline",
    "load_model",
    "make_splits",
    "pearson_r",
    "pool_features",
    "r2_score",
    "register_benchmark",
    "regression_metrics",
    "summarize",
    "weights_hash",
    "within_session_kfold",
    "within_session_split",
]
