"""Evaluation protocols and the linear probe.

Three protocols (a benchmark declares which it supports):

* ``"zero_shot"`` — the model's own outputs (``logits``) on the test windows, no training.
* ``"linear_probe"`` — frozen features (``model.extract_features``, preprocessing included) →
  :class:`LinearProbe`: a ``StandardScaler`` fit on train, then an L2-regularized logistic
  regression (classification) or ridge regression, whose strength is chosen on val. This is
  Neuroprobe's linear protocol (scored by ROC-AUC, one-vs-rest macro for several classes).
* ``"finetune"`` — a copy of the model trained on train/val through the
  :class:`~neurocrane.training.LightningModule`, then scored like zero-shot.

:class:`PipelineBaseline` is the no-model baseline: a declared pipeline's output, flattened,
fed to the same linear probe — what preprocessing alone achieves, to put beside every model.

The probe is implemented with NumPy/PyTorch (L-BFGS for the logistic loss, a closed form for
ridge), so scikit-learn is not a run-time dependency; it minimizes the same objective as
``sklearn.linear_model.LogisticRegression(C=C)`` (multinomial, intercept not penalized).

Example:
    >>> probe = LinearProbe("classification").fit(x_train, y_train, x_val, y_val)
    >>> scores = probe.decision_function(x_test)     # (N, K) class probabilities
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from neurocrane.batch import NeuralBatch
from neurocrane.errors import InputError
from neurocrane.evaluation.metrics import auroc, check_class_labels, check_regression_targets, r2_score
from neurocrane.pipeline import Pipeline

__all__ = [
    "PROTOCOLS",
    "LinearProbe",
    "PipelineBaseline",
    "check_protocols",
    "pool_features",
]

#: Every protocol name, in the order results show them.
PROTOCOLS: tuple[str, ...] = ("zero_shot", "linear_probe", "finetune")

Task = Literal["classification", "regression"]
Pool = Literal["flatten", "mean"]


def check_protocols(protocols: str | Sequence[str], where: str = "evaluate") -> tuple[str, ...]:
    """Normalize a protocol name or list of names; raise :class:`InputError` on unknown ones."""
    names = (protocols,) if isinstance(protocols, str) else tuple(protocols)
    unknown = [p for p in names if p not in PROTOCOLS]
    if unknown or not names:
        raise InputError(f"{where}: protocols must be among {PROTOCOLS}; got {list(names)}.")
    return tuple(dict.fromkeys(names))


def pool_features(features: torch.Tensor, pool: Pool = "flatten") -> torch.Tensor:
    """Turn a feature tensor ``(batch, ...)`` into one vector per sample ``(batch, D)``.

    Args:
        features: Any tensor with a leading batch axis.
        pool: ``"flatten"`` keeps every value (Neuroprobe's probe on electrodes x time x
            frequency); ``"mean"`` averages every axis between the batch and the last one
            (e.g. channels and tokens of ``(batch, channels, tokens, hidden)``).

    Returns:
        ``(batch, D)`` tensor.

    Example:
        >>> pool_features(torch.zeros(4, 3, 5, 8), "mean").shape
        torch.Size([4, 8])
    """
    if features.ndim < 1:
        raise InputError("features need a leading batch axis; got a scalar.")
    if features.ndim <= 2:
        return features.reshape(features.shape[0], -1)
    if pool == "flatten":
        return features.reshape(features.shape[0], -1)
    if pool == "mean":
        return features.mean(dim=tuple(range(1, features.ndim - 1)))
    raise InputError(f"pool must be 'flatten' or 'mean'; got {pool!r}.")


class LinearProbe:
    """``StandardScaler`` + L2 logistic regression (classification) or ridge (regression).

    Args:
        task: ``"classification"`` or ``"regression"``.
        grid: Regularization values tried when val data is given: inverse strengths ``C``
            for logistic regression (larger = weaker), ``alpha`` for ridge (larger =
            stronger). The value scoring best on val (ROC-AUC; R² for ridge) is kept.
        default: Value used when there is no val data (``C = 1``, scikit-learn's default;
            ``alpha = 1``).
        max_iter: L-BFGS iterations for the logistic loss.

    Attributes:
        chosen: The regularization value used.
        val_scores: ``{value: val score}`` for every value tried.

    Example:
        >>> probe = LinearProbe("classification", grid=(0.01, 1.0)).fit(x, y, x_val, y_val)
        >>> probe.chosen in (0.01, 1.0)
        True
    """

    def __init__(
        self,
        task: Task = "classification",
        grid: Sequence[float] = (1e-3, 1e-2, 1e-1, 1.0, 10.0),
        default: float = 1.0,
        max_iter: int = 200,
    ):
        if task not in ("classification", "regression"):
            raise InputError(f"LinearProbe task must be 'classification' or 'regression'; got {task!r}.")
        grid = tuple(float(g) for g in grid)
        if not grid or any(not np.isfinite(g) or g <= 0 for g in grid) or default <= 0:
            raise InputError(f"LinearProbe grid/default values must be positive numbers; got grid={grid}, default={default}.")
        self.task = task
        self.grid = grid
        self.default = float(default)
        self.max_iter = int(max_iter)
        self.chosen: float | None = None
        self.val_scores: dict[float, float] = {}

    # -- fitting ------------------------------------------------------------------------
    def fit(self, x: Any, y: Any, x_val: Any = None, y_val: Any = None) -> LinearProbe:
        """Fit the scaler on ``x``, then the linear model for each grid value; keep the best on val.

        Args:
            x: ``(N, D)`` train features.
            y: ``(N,)`` class ids (classification) or targets (regression).
            x_val, y_val: Validation features and labels; without them ``default`` is used.

        Returns:
            ``self``.

        Raises:
            InputError: mismatched shapes, non-finite features, labels of the wrong kind, or a
                train set with a single class.
        """
        x = _features(x, "train features")
        y = self._targets(y, x.shape[0], "train labels")
        if self.task == "classification":
            self.n_classes = int(y.max()) + 1
            if np.unique(y).size < 2:
                raise InputError(
                    f"the linear probe needs at least two classes in its train data; got only {np.unique(y).tolist()}."
                )
        self.mean_ = x.mean(axis=0)
        std = x.std(axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)  # constant features: scale 1, as StandardScaler
        xs = self._scale(x)
        has_val = x_val is not None and y_val is not None and len(y_val) > 0
        if not has_val:
            self.chosen = self.default
            self.coef_, self.intercept_ = self._fit_one(xs, y, self.default)
            return self
        x_val = _features(x_val, "val features")
        if x_val.shape[1] != x.shape[1]:
            raise InputError(f"val features have {x_val.shape[1]} dimensions, train features {x.shape[1]}.")
        y_val = self._targets(y_val, x_val.shape[0], "val labels")
        xv = self._scale(x_val)
        best = None
        for value in self.grid:
            coef, intercept = self._fit_one(xs, y, value)
            score = self._val_score(xv @ coef + intercept, y_val)
            self.val_scores[value] = score
            if best is None or score > best[0] + 1e-12:
                best = (score, value, coef, intercept)
        _, self.chosen, self.coef_, self.intercept_ = best
        return self

    def _targets(self, y: Any, n: int, what: str) -> np.ndarray:
        y = check_class_labels(y, what) if self.task == "classification" else check_regression_targets(y, what)
        if y.shape[0] != n:
            raise InputError(f"{what}: {y.shape[0]} labels for {n} feature rows.")
        return y

    def _scale(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean_) / self.scale_

    def _fit_one(self, xs: np.ndarray, y: np.ndarray, value: float) -> tuple[np.ndarray, np.ndarray]:
        if self.task == "regression":
            return _ridge(xs, y, alpha=value)
        return _logistic(xs, y, self.n_classes, c=value, max_iter=self.max_iter)

    def _val_score(self, raw: np.ndarray, y_val: np.ndarray) -> float:
        if self.task == "regression":
            return r2_score(y_val, raw[:, 0])
        k = raw.shape[1]
        if np.unique(y_val).size >= 2 and int(y_val.max()) < k:
            return auroc(y_val, raw)
        return float(np.mean(np.argmax(raw, axis=1) == y_val))  # AUROC undefined on one class

    # -- predicting -----------------------------------------------------------------------
    def _check_fitted(self, x: Any) -> np.ndarray:
        if self.chosen is None:
            raise InputError("LinearProbe: call fit(...) before predicting.")
        x = _features(x, "features")
        if x.shape[1] != self.coef_.shape[0]:
            raise InputError(f"features have {x.shape[1]} dimensions; the probe was fit on {self.coef_.shape[0]}.")
        return x

    def decision_function(self, x: Any) -> np.ndarray:
        """Class probabilities ``(N, K)`` (classification) or predictions ``(N,)`` (regression)."""
        raw = self._scale(self._check_fitted(x)) @ self.coef_ + self.intercept_
        if self.task == "regression":
            return raw[:, 0]
        raw = raw - raw.max(axis=1, keepdims=True)
        p = np.exp(raw)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, x: Any) -> np.ndarray:
        """Class ids ``(N,)`` or regression predictions ``(N,)``."""
        out = self.decision_function(x)
        return out if self.task == "regression" else np.argmax(out, axis=1)

    def config(self) -> dict[str, Any]:
        """What defines this probe (part of the result-cache key)."""
        return {"task": self.task, "grid": list(self.grid), "default": self.default, "max_iter": self.max_iter}


def _features(x: Any, what: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise InputError(f"{what} must be a non-empty (samples, dimensions) array; got shape {x.shape}.")
    if not np.all(np.isfinite(x)):
        raise InputError(f"{what} contain NaN or inf; check the model's pipeline output (e.g. a log of zero power).")
    return x


def _ridge(xs: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    n, d = xs.shape
    intercept = np.array([y.mean()])
    yc = y - y.mean()
    if d <= n:
        coef = np.linalg.solve(xs.T @ xs + alpha * np.eye(d), xs.T @ yc)
    else:  # dual form: cheaper when features outnumber samples
        coef = xs.T @ np.linalg.solve(xs @ xs.T + alpha * np.eye(n), yc)
    return coef[:, None], intercept


def _logistic(xs: np.ndarray, y: np.ndarray, n_classes: int, c: float, max_iter: int) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression, minimizing sum(CE) + ||W||² / (2C) like scikit-learn."""
    x = torch.from_numpy(xs)
    target = torch.from_numpy(y)
    n, d = xs.shape
    w = torch.zeros(d, n_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-7, tolerance_change=1e-10,
                            history_size=20, line_search_fn="strong_wolfe")
    penalty = 1.0 / (2.0 * c * n)  # the objective divided by n keeps the scale of the loss O(1)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ w + b, target) + penalty * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach().numpy(), b.detach().numpy()


class PipelineBaseline:
    """A no-model baseline: a preprocessing pipeline whose output is the feature vector.

    It quacks like a model for the ``linear_probe`` protocol (``preprocess_pipeline``,
    ``extract_features``, ``eval``/``train``, ``state_dict``), so :func:`evaluate` scores
    "pipeline + linear probe" next to each model, e.g. Neuroprobe's Laplacian + STFT baseline.

    Args:
        pipeline: A :class:`Pipeline`, or the path of a pipeline YAML/JSON file.
        name: Label in result tables (default: the file stem, or ``baseline-<fingerprint>``).

    Example:
        >>> base = PipelineBaseline("pipelines/neuroprobe_linear.yaml")
        >>> base.extract_features(batch)["final"].shape     # (batch, electrodes x time x freq)
    """

    def __init__(self, pipeline: Pipeline | str | Path, name: str | None = None):
        if isinstance(pipeline, str | Path):
            path = Path(pipeline)
            pipeline = Pipeline.load(path)
            name = name or f"baseline:{path.stem}"
        if not isinstance(pipeline, Pipeline):
            raise InputError(f"PipelineBaseline needs a Pipeline or a pipeline file; got {type(pipeline).__name__}.")
        self.preprocess_pipeline = pipeline.eval()
        self.name = name or f"baseline:{pipeline.fingerprint}"
        self.training = False
        self.config = None

    def eval(self) -> PipelineBaseline:
        return self

    def train(self, mode: bool = True) -> PipelineBaseline:
        return self

    def parameters(self) -> Any:
        return iter(())

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def preprocess(self, batch: NeuralBatch) -> NeuralBatch:
        return batch if self.preprocess_pipeline.fingerprint in batch.applied else self.preprocess_pipeline(batch)

    def extract_features(self, neural_data: NeuralBatch, layer_ids: Any = None, **metadata: Any) -> dict[str, torch.Tensor]:
        """``{"final": pipeline output}`` for a :class:`NeuralBatch` (pipeline run if not yet)."""
        if not isinstance(neural_data, NeuralBatch):
            from neurocrane.pipeline import as_batch

            neural_data, _ = as_batch(neural_data, **metadata)
        out = self.preprocess(neural_data)
        return {"final": out.signals}

    def __repr__(self) -> str:
        return f"PipelineBaseline({self.name}, {len(self.preprocess_pipeline)} steps)"


def weights_hash(model: Any) -> str:
    """Hash of a model's weights (names, shapes, dtypes and bytes of its ``state_dict``).

    Two models with equal weights hash the same whatever their object identity, so cached
    results are reused for a reloaded model and never for a changed one.
    """
    digest = hashlib.sha256()
    state: Mapping[str, Any] = model.state_dict() if hasattr(model, "state_dict") else {}
    for name in sorted(state):
        tensor = state[name]
        if not isinstance(tensor, torch.Tensor):
            continue
        t = tensor.detach().cpu().contiguous()
        digest.update(json.dumps([name, list(t.shape), str(t.dtype)]).encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    digest.update(type(model).__qualname__.encode())
    return digest.hexdigest()[:16]
