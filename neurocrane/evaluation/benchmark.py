"""Benchmarks: a task on fixed data, scored the same way for every model (SPEC §3.7).

:class:`Benchmark` is the base class of the spec: ``name``, ``dataset`` (with ``train``,
``val``, ``test`` and ``get_datamodule()``), ``requires_finetuning``, ``finetune_config``,
``evaluate(model, force_zero_shot=False)`` and an abstract ``_evaluate_split``. A subclass
that only implements ``_default_finetune_config`` and ``_evaluate_split`` supports the
``zero_shot`` and ``finetune`` protocols.

:class:`WindowBenchmark` is the ready implementation for labelled windows of recordings
(:class:`WindowBenchmarkData`): leakage-free splits (:mod:`~neurocrane.evaluation.splits`),
per-subject scores, all three protocols, and the checks that a model can take the data before
anything is trained.

Three rules hold for every protocol:

* **The model's own pipeline is applied throughout.** The benchmark hands the model raw
  (cleaned) windows; the model's pipeline turns them into what it expects. Steps that need
  continuous input (the pipeline's *recording part*) run once on each whole recording, then
  windows are cut (DESIGN.md §7) — still the model's pipeline, never the benchmark's.
* **Fine-tuning works on a copy.** The model passed in is never changed, so evaluating it on
  several benchmarks in a row gives the numbers each gives alone.
* **Bad input fails first.** A model whose pipeline cannot take the data (sampling rate,
  channel count), an empty split or labels of the wrong kind raise :class:`BenchmarkError`
  before any training starts.

Example:
    >>> benchmark = SyntheticEventBenchmark(n_subjects=2)
    >>> benchmark.evaluate(model)                      # fine-tunes a copy if required
    {'auc': 0.91, 'accuracy': 0.84, 'balanced_accuracy': 0.84, 'f1': 0.84}
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset

from neurocrane.batch import NeuralBatch
from neurocrane.data.collate import WindowCollator, to_neural_batch
from neurocrane.data.preprocessing import BasicPreprocessor
from neurocrane.data.recording import Recording
from neurocrane.data.samplers import SessionBatchSampler
from neurocrane.errors import InputError, NeuroCraneError, PipelineError
from neurocrane.evaluation.cache import ResultCache
from neurocrane.evaluation.metrics import (
    check_class_labels,
    check_regression_targets,
    classification_metrics,
    regression_metrics,
)
from neurocrane.evaluation.protocols import PROTOCOLS, LinearProbe, pool_features, weights_hash
from neurocrane.evaluation.results import ALL_SUBJECTS, ScoreRecord
from neurocrane.evaluation.splits import Split, SplitError, WindowTable, make_splits

__all__ = ["Benchmark", "BenchmarkError", "FoldData", "WindowBenchmark", "WindowBenchmarkData"]

logger = logging.getLogger("neurocrane.evaluation")


class BenchmarkError(NeuroCraneError, ValueError):
    """A benchmark cannot run: the model does not fit its data, a split is empty, an
    unsupported protocol was asked for, or labels do not suit the task."""


# -- data -----------------------------------------------------------------------------------
class _Windows(Dataset):
    """Windows of one recording at given start times, as the sample dicts of
    :class:`~neurocrane.data.WindowDataset` (same keys), with numeric labels."""

    def __init__(self, recording: Recording, starts_s: np.ndarray, labels: np.ndarray, context_length: float):
        self.recording = recording
        rate = recording.sampling_rate
        self.window_samples = int(round(context_length * rate))
        self.starts = np.round(np.asarray(starts_s, dtype=np.float64) * rate).astype(np.int64)
        self.labels = np.asarray(labels)
        self.subject_id, self.session_id = recording.subject_id, recording.session_id
        if self.starts.size and (self.starts.min() < 0 or self.starts.max() + self.window_samples > recording.n_times):
            raise BenchmarkError(
                f"{self.subject_id}/{self.session_id}: a window of {context_length:g} s reaches outside the recording "
                f"({recording.duration:.3f} s); place windows inside it."
            )
        self._names = tuple(recording.channel_names)
        pos = recording.channel_positions
        self._positions = None if pos is None else torch.tensor(np.array(pos, dtype=np.float32))
        self._mask = torch.as_tensor(~np.asarray(recording.bad_channels, dtype=bool))
        self._applied = tuple(getattr(recording, "applied", ()) or ())

    def __len__(self) -> int:
        return int(self.starts.size)

    def __getitem__(self, i: int) -> dict[str, Any]:
        start = int(self.starts[i])
        label = self.labels[i]
        return {
            "neural_data": torch.from_numpy(np.ascontiguousarray(self.recording.read(start, start + self.window_samples))),
            "labels": int(label) if np.issubdtype(self.labels.dtype, np.integer) else -1,
            "subject_id": self.subject_id,
            "session_id": self.session_id,
            "channel_names": self._names,
            "channel_positions": self._positions,
            "channel_mask": self._mask,
            "sampling_rate": self.recording.sampling_rate,
            "start": start,
            "applied": self._applied,
        }


class _FoldDataModule(pl.LightningDataModule):
    """Train/val loaders of one fold for fine-tuning: one session per batch, clean-up only."""

    def __init__(self, fold: FoldData, batch_size: int, seed: int):
        super().__init__()
        self.fold, self.batch_size, self.seed = fold, int(batch_size), int(seed)

    def _loader(self, part: str, train: bool) -> DataLoader:
        subset = self.fold.part(part)
        sampler = SessionBatchSampler(
            self.fold.session_sizes(part), batch_size=self.batch_size, shuffle=train, drop_last=False,
            seed=self.seed, num_replicas=1, rank=0,
        )
        return DataLoader(subset, batch_sampler=sampler, collate_fn=WindowCollator(BasicPreprocessor()), num_workers=0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val", False) if len(self.fold.val) else []


@dataclass
class FoldData:
    """One split of a benchmark's windows: ``train``, ``val``, ``test`` datasets of sample
    dicts (subsets of one concatenation), the :class:`WindowTable` and the :class:`Split`."""

    windows: ConcatDataset
    table: WindowTable
    split: Split
    task: str
    n_classes: int
    batch_size: int = 32

    @property
    def train(self) -> Subset:
        return self.part("train")

    @property
    def val(self) -> Subset:
        return self.part("val")

    @property
    def test(self) -> Subset:
        return self.part("test")

    def part(self, name: str) -> Subset:
        return Subset(self.windows, self.split.part(name).tolist())

    def session_sizes(self, name: str) -> list[int]:
        """Window counts of consecutive sessions in a part (indices are in concatenation order)."""
        units = self.table._unit[self.split.part(name)]
        if not units.size:
            return []
        change = np.flatnonzero(units[1:] != units[:-1]) + 1
        return np.diff(np.concatenate([[0], change, [units.size]])).tolist()

    def labels(self, name: str) -> np.ndarray:
        return self.table.label[self.split.part(name)]

    def get_datamodule(self, batch_size: int | None = None, seed: int = 0) -> pl.LightningDataModule:
        """A LightningDataModule over this fold's train and val windows (session batches)."""
        return _FoldDataModule(self, batch_size or self.batch_size, seed)


class WindowBenchmarkData:
    """Labelled windows of recordings and how to split them: the data of a :class:`WindowBenchmark`.

    Windows are placed in **seconds** so the same windows are cut after a model's recording
    part has run (even one that resamples).

    Args:
        recordings: The recordings (in memory or memory-mapped).
        windows: For each recording, ``(starts_s, labels)``: window starts in seconds and one
            label per window — class names (mapped through ``label_map``), class ids, or float
            targets for regression.
        context_length: Window length in seconds.
        task: ``"classification"`` or ``"regression"``.
        label_map: Class name → id (or a list of names) when labels are names.
        split: Split kind (``"within_session"``, ``"cross_session"``, ``"cross_subject"``).
        k: Folds (``None`` for a single split).
        split_kwargs: Extra arguments of the split function (``gap``, ``test_fraction``, ...).
        batch_size: Windows per batch for feature extraction and fine-tuning.

    Raises:
        BenchmarkError: labels that do not suit the task, no windows, or a split with an empty
            part (raised here, before any model is involved).
    """

    def __init__(
        self,
        recordings: Sequence[Recording],
        windows: Sequence[tuple[Sequence[float], Sequence[Any]]],
        context_length: float,
        *,
        task: str = "classification",
        label_map: Mapping[str, int] | Sequence[str] | None = None,
        split: str = "within_session",
        k: int | None = None,
        split_kwargs: Mapping[str, Any] | None = None,
        batch_size: int = 32,
    ):
        if task not in ("classification", "regression"):
            raise BenchmarkError(f"task must be 'classification' or 'regression'; got {task!r}.")
        if len(recordings) != len(windows) or not recordings:
            raise BenchmarkError(
                f"give one (starts_s, labels) pair per recording; got {len(recordings)} recordings and {len(windows)} window lists."
            )
        self.recordings = list(recordings)
        self.context_length = float(context_length)
        self.task = task
        self.batch_size = int(batch_size)
        if label_map is not None and not isinstance(label_map, Mapping):
            label_map = {str(n): i for i, n in enumerate(label_map)}
        self.label_map = None if label_map is None else {str(k_): int(v) for k_, v in label_map.items()}
        self._starts, self._labels = [], []
        for rec, (starts, labels) in zip(self.recordings, windows, strict=True):
            starts = np.asarray(starts, dtype=np.float64).reshape(-1)
            labels = self._encode(np.asarray(labels).reshape(-1), rec)
            if starts.size != labels.size:
                raise BenchmarkError(f"{rec.subject_id}/{rec.session_id}: {starts.size} window starts but {labels.size} labels.")
            order = np.argsort(starts, kind="stable")
            self._starts.append(starts[order])
            self._labels.append(labels[order])
        n = sum(s.size for s in self._starts)
        if n == 0:
            raise BenchmarkError("the benchmark has no windows at all.")
        self.table = WindowTable(
            np.concatenate([np.full(s.size, r.subject_id) for r, s in zip(self.recordings, self._starts, strict=True)]),
            np.concatenate([np.full(s.size, r.session_id) for r, s in zip(self.recordings, self._starts, strict=True)]),
            np.concatenate(self._starts),
            np.concatenate(self._starts) + self.context_length,
            np.concatenate(self._labels),
        )
        try:
            if task == "classification":
                ids = check_class_labels(self.table.label, "benchmark labels")
                self.n_classes = int(ids.max()) + 1 if self.label_map is None else max(self.label_map.values()) + 1
            else:
                check_regression_targets(self.table.label, "benchmark targets")
                self.n_classes = 1
        except InputError as err:
            raise BenchmarkError(f"labels do not suit a {task} benchmark: {err}") from err
        self.split_kind, self.k = split, k
        self.split_kwargs = dict(split_kwargs or {})
        try:
            self.splits = make_splits(self.table, split, k, **self.split_kwargs)
        except (SplitError, InputError) as err:
            raise BenchmarkError(f"cannot split the benchmark's windows: {err}") from err

    def _encode(self, labels: np.ndarray, rec: Recording) -> np.ndarray:
        if labels.dtype.kind in "UO":
            if self.task != "classification":
                raise BenchmarkError(
                    f"{rec.subject_id}/{rec.session_id}: regression targets must be numbers; got names such as {labels[:3].tolist()}."
                )
            if self.label_map is None:
                raise BenchmarkError("labels are class names: give label_map (name → id, or a list of names).")
            unknown = sorted(set(labels.tolist()) - set(self.label_map))
            if unknown:
                raise BenchmarkError(f"labels {unknown} are not in label_map {self.label_map}.")
            return np.asarray([self.label_map[str(x)] for x in labels], dtype=np.int64)
        return labels

    # -- SPEC-style views (raw data, first split) ------------------------------------------
    @property
    def train(self) -> Subset:
        return self.fold(self.splits[0]).train

    @property
    def val(self) -> Subset:
        return self.fold(self.splits[0]).val

    @property
    def test(self) -> Subset:
        return self.fold(self.splits[0]).test

    def get_datamodule(self) -> pl.LightningDataModule:
        """DataModule of the first split (raw recordings)."""
        return self.fold(self.splits[0]).get_datamodule()

    # -- model-specific data ---------------------------------------------------------------
    def windows_for(self, pipeline: Any = None, *, cache_dir: Any = None) -> ConcatDataset:
        """All windows as one dataset, cut after ``pipeline``'s recording part (if any) ran on
        each whole recording. Index ``i`` is row ``i`` of :attr:`table`."""
        recordings = self.recordings
        if pipeline is not None and pipeline.split()[0] is not None:
            from neurocrane.data.recording_cache import preprocess_recording

            recordings = [
                preprocess_recording(r, pipeline, cache=cache_dir is not None, cache_dir=cache_dir) for r in recordings
            ]
        return ConcatDataset([
            _Windows(r, s, lab, self.context_length)
            for r, s, lab in zip(recordings, self._starts, self._labels, strict=True)
        ])

    def fold(self, split: Split, windows: ConcatDataset | None = None) -> FoldData:
        """The :class:`FoldData` of ``split`` over ``windows`` (default: the raw windows)."""
        return FoldData(windows if windows is not None else self.windows_for(None), self.table, split, self.task,
                        self.n_classes, self.batch_size)

    @property
    def fingerprint(self) -> str:
        """Hash of what defines the data: recordings, windows, labels, task and splits."""
        digest = hashlib.sha256()
        for r in self.recordings:
            digest.update(json.dumps([r.subject_id, r.session_id, r.sampling_rate, list(r.channel_names), r.n_times,
                                      str(r.path) if r.path else None, r.info.get("synthetic")], default=str).encode())
        for arr in (self.table.start, self.table.stop, np.asarray(self.table.label, dtype=np.float64)):
            digest.update(np.ascontiguousarray(arr).tobytes())
        digest.update(json.dumps([self.task, self.context_length, self.label_map, self.split_kind, self.k,
                                  self.split_kwargs], sort_keys=True, default=str).encode())
        for s in self.splits:
            for part in ("train", "val", "test"):
                digest.update(s.part(part).tobytes())
        return digest.hexdigest()[:16]

    def __repr__(self) -> str:
        return (f"WindowBenchmarkData({self.table!r}, {self.context_length:g} s windows, {self.task}, "
                f"{len(self.splits)} {self.split_kind} split(s))")


# -- the base class ---------------------------------------------------------------------------
def _model_device(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError, TypeError):
        return torch.device("cpu")


class _eval_mode:
    """Put a model in eval mode and no-grad for a block, then restore its mode."""

    def __init__(self, model: Any):
        self.model, self.was_training = model, bool(getattr(model, "training", False))

    def __enter__(self) -> Any:
        self.model.eval()
        self._grad = torch.no_grad()
        self._grad.__enter__()
        return self.model

    def __exit__(self, *exc: Any) -> None:
        self._grad.__exit__(*exc)
        self.model.train(self.was_training)


class Benchmark(ABC):
    """Base class of neurocrane benchmarks (SPEC §3.7).

    Args:
        name: Benchmark name (results and cache keys use it).
        dataset: Provides ``train``, ``val``, ``test`` and ``get_datamodule()``; a
            :class:`WindowBenchmarkData` also provides several folds and model-specific windows.
        requires_finetuning: Whether :meth:`evaluate` fine-tunes (a copy) by default.
        finetune_config: ``{"optimizer": {...}, "trainer": {...}, "batch_size": ...}``;
            default :meth:`_default_finetune_config`.
        protocols: Protocols this benchmark supports (default: the class's
            ``supported_protocols``).
        seed: Seed of fine-tuning (weights of a new head, batch order).

    Subclasses implement ``_default_finetune_config`` and ``_evaluate_split(model, split_data)``.
    """

    supported_protocols: ClassVar[tuple[str, ...]] = ("zero_shot", "finetune")

    def __init__(
        self,
        name: str,
        dataset: Any,
        requires_finetuning: bool = True,
        finetune_config: Mapping[str, Any] | None = None,
        *,
        protocols: Sequence[str] | None = None,
        seed: int = 0,
    ):
        if not isinstance(name, str) or not name:
            raise BenchmarkError(f"a benchmark needs a non-empty name; got {name!r}.")
        self.name = name
        self.dataset = dataset
        self.requires_finetuning = bool(requires_finetuning)
        self.finetune_config = dict(finetune_config) if finetune_config is not None else self._default_finetune_config()
        if protocols is not None:
            unknown = [p for p in protocols if p not in type(self).supported_protocols]
            if unknown:
                raise BenchmarkError(
                    f"benchmark {name!r} cannot run protocols {unknown}; {type(self).__name__} supports "
                    f"{type(self).supported_protocols}."
                )
            self.supported_protocols = tuple(protocols)
        self.seed = int(seed)
        self.last_records: list[ScoreRecord] = []

    @abstractmethod
    def _default_finetune_config(self) -> dict[str, Any]:
        """Return the default fine-tuning configuration."""

    @abstractmethod
    def _evaluate_split(self, model: Any, split_data: Any) -> dict[str, float]:
        """Compute metrics of ``model`` on a data split (the test part, usually)."""

    # -- the spec's entry point -------------------------------------------------------------
    def evaluate(self, model: Any, force_zero_shot: bool = False, protocol: str | None = None) -> dict[str, float]:
        """Evaluate a model on this benchmark.

        Args:
            model: Any :class:`~neurocrane.models.BaseModel` (never modified).
            force_zero_shot: Skip fine-tuning even if the benchmark requires it.
            protocol: Run this protocol instead of the default (``"finetune"`` when
                fine-tuning is required, else ``"zero_shot"``).

        Returns:
            Metric name → value on the test windows (mean over folds), e.g.
            ``{"auc": ..., "accuracy": ..., "balanced_accuracy": ..., "f1": ...}``.

        Raises:
            BenchmarkError: before any training, when the model cannot take the data.
        """
        if protocol is None:
            protocol = "finetune" if self.requires_finetuning and not force_zero_shot else "zero_shot"
        elif force_zero_shot and protocol == "finetune":
            protocol = "zero_shot"
        records = self.run(model, protocol)
        pooled = [r for r in records if r.subject == ALL_SUBJECTS]
        names = list(dict.fromkeys(k for r in pooled for k in r.metrics))
        return {k: float(np.nanmean([r.metrics[k] for r in pooled])) if any(np.isfinite(r.metrics[k]) for r in pooled)
                else float("nan") for k in names}

    # -- protocols ---------------------------------------------------------------------------
    def folds(self, model: Any = None, *, cache_dir: Any = None) -> list[Any]:
        """The data of each fold for ``model`` (default: the dataset itself, one fold)."""
        return [self.dataset]

    def check_model(self, model: Any, protocol: str) -> None:
        """Raise :class:`BenchmarkError` if ``model`` cannot run ``protocol`` on this data.
        Called before any training; the base class checks only the protocol's needs."""
        if protocol == "finetune" and not hasattr(model, "parameters"):
            raise BenchmarkError(f"{type(model).__name__} has no parameters to fine-tune.")

    def run(
        self,
        model: Any,
        protocol: str,
        *,
        model_name: str | None = None,
        cache: ResultCache | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> list[ScoreRecord]:
        """Run one protocol on every fold and return per-subject and pooled records.

        Args:
            model: The model (never modified: fine-tuning works on a copy).
            protocol: ``"zero_shot"``, ``"linear_probe"`` or ``"finetune"``.
            model_name: Label in the records (default: the model's name or class).
            cache: Reuse and store fold results (keyed by weights, pipeline, benchmark, split,
                protocol and its configuration).
            progress: Called with a short message after each fold.

        Returns:
            The records (also kept in ``last_records``).
        """
        if protocol not in PROTOCOLS:
            raise BenchmarkError(f"unknown protocol {protocol!r}; choose from {PROTOCOLS}.")
        if protocol not in self.supported_protocols:
            raise BenchmarkError(
                f"benchmark {self.name!r} does not support the {protocol!r} protocol; it supports {self.supported_protocols}."
            )
        label = model_name or _model_label(model)
        self.check_model(model, protocol)
        records: list[ScoreRecord] = []
        key_parts = None
        if cache is not None:
            pipeline = getattr(model, "preprocess_pipeline", None)
            key_parts = dict(
                weights=weights_hash(model), pipeline=getattr(pipeline, "fingerprint", None),
                benchmark=f"{self.name}:{self.fingerprint}", config=self.protocol_config(protocol),
            )
        folds = None
        for i, split_name in enumerate(self.split_names()):
            if cache is not None:
                key = cache.key(split=split_name, protocol=protocol, **key_parts)
                hit = cache.get(key)
                if hit is not None:
                    records += [_relabel(r, label, cached=True) for r in hit]
                    if progress:
                        progress(f"{self.name}/{protocol}/{split_name} (cached)")
                    continue
            if folds is None:
                folds = self.folds(model)
                self._feature_memo = None
            fold_records = self._run_fold(model, protocol, folds[i], split_name, label)
            if cache is not None:
                cache.put(key, fold_records)
            records += fold_records
            if progress:
                progress(f"{self.name}/{protocol}/{split_name}")
        self._feature_memo = None
        self.last_records = records
        return records

    def split_names(self) -> list[str]:
        """Labels of the folds, in order."""
        return ["test"]

    @property
    def fingerprint(self) -> str:
        """Identifies the benchmark's data and splits (part of the result-cache key)."""
        fp = getattr(self.dataset, "fingerprint", None)
        return fp if isinstance(fp, str) else hashlib.sha256(repr(self.dataset).encode()).hexdigest()[:16]

    def protocol_config(self, protocol: str) -> Any:
        """What configures a protocol (part of the cache key)."""
        return self.finetune_config if protocol == "finetune" else None

    def _run_fold(self, model: Any, protocol: str, fold: Any, split_name: str, label: str) -> list[ScoreRecord]:
        if protocol == "linear_probe":
            raise BenchmarkError(f"benchmark {self.name!r} has no feature extraction for the linear probe.")
        if protocol == "finetune":
            model = self._finetune(model, fold)
        with _eval_mode(model):
            metrics = self._evaluate_split(model, fold.test)
        return [ScoreRecord(label, self.name, protocol, split_name, ALL_SUBJECTS, dict(metrics), len(fold.test))]

    # -- fine-tuning -------------------------------------------------------------------------
    def prepare_for_finetuning(self, model: Any) -> Any:
        """A trainable copy of ``model`` for this task (the original is never touched).

        The default deep-copies the model. :class:`WindowBenchmark` also gives the copy a
        classification head with the benchmark's number of classes when needed.
        """
        return copy.deepcopy(model)

    def _finetune(self, model: Any, data: Any = None) -> Any:
        """Fine-tune a copy of ``model`` on ``data``'s train/val sets through the neurocrane
        :class:`~neurocrane.training.LightningModule`; returns the tuned copy."""
        from neurocrane.training.lightning_module import LightningModule  # training is imported only when used

        data = self.dataset if data is None else data
        cfg = self.finetune_config
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            tuned = self.prepare_for_finetuning(model)
            tuned.train()
            module = LightningModule(tuned, optimizer_config=cfg.get("optimizer"), scheduler_config=cfg.get("scheduler"))
            trainer_kwargs = {
                "logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
                "enable_model_summary": False, "max_epochs": 1, **dict(cfg.get("trainer") or {}),
            }
            trainer = pl.Trainer(**trainer_kwargs)
            try:
                datamodule = data.get_datamodule(batch_size=cfg.get("batch_size"), seed=self.seed)
            except TypeError:  # a SPEC-style dataset whose get_datamodule takes no arguments
                datamodule = data.get_datamodule()
            trainer.fit(module, datamodule=datamodule)
        tuned = module.model
        tuned.eval()
        return tuned

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, protocols={self.supported_protocols})"


def _model_label(model: Any) -> str:
    name = getattr(model, "name", None)
    if isinstance(name, str) and name:
        return name
    path = getattr(getattr(model, "config", None), "_name_or_path", None) or getattr(getattr(model, "config", None), "name_or_path", None)
    return str(path) if path else type(model).__name__


def _relabel(record: ScoreRecord, model: str, cached: bool) -> ScoreRecord:
    return ScoreRecord(record.model if not model else model, record.benchmark, record.protocol, record.split,
                       record.subject, record.metrics, record.n_test, {**record.info, "cached": cached})


# -- windows benchmark ----------------------------------------------------------------------
class WindowBenchmark(Benchmark):
    """A benchmark on labelled windows (:class:`WindowBenchmarkData`) with all three protocols.

    Args:
        name: Benchmark name.
        dataset: The windows, labels and split definition.
        requires_finetuning: Default protocol of :meth:`evaluate` (fine-tune or zero-shot).
        finetune_config: See :meth:`_default_finetune_config`.
        protocols: Subset of ``("zero_shot", "linear_probe", "finetune")`` to support.
        probe: The :class:`LinearProbe` settings (default: logistic/ridge with a C grid
            chosen on val).
        feature_key: Which entry of ``extract_features`` the probe uses (default ``"final"``).
        pool: How features become one vector per window (``"flatten"`` or ``"mean"``).
        probe_scope: Fit one probe per ``"subject"`` (Neuroprobe's within-subject protocol;
            features may differ in size between subjects), one ``"pooled"`` over subjects, or
            ``"auto"``: pooled for cross-subject splits, per subject otherwise.
        cache_dir: Where model recording parts are cached (default: in memory only).
        seed: Seed of fine-tuning.

    Example:
        >>> data = WindowBenchmarkData([rec], [(starts, labels)], 1.0, label_map=["rest", "event"])
        >>> bench = WindowBenchmark("my-task", data, requires_finetuning=False)
        >>> bench.evaluate(model, protocol="linear_probe")["auc"]
    """

    supported_protocols: ClassVar[tuple[str, ...]] = PROTOCOLS

    def __init__(
        self,
        name: str,
        dataset: WindowBenchmarkData,
        requires_finetuning: bool = True,
        finetune_config: Mapping[str, Any] | None = None,
        *,
        protocols: Sequence[str] | None = None,
        probe: LinearProbe | None = None,
        feature_key: str = "final",
        pool: str = "flatten",
        probe_scope: str = "auto",
        cache_dir: Any = None,
        seed: int = 0,
    ):
        if not isinstance(dataset, WindowBenchmarkData):
            raise BenchmarkError(f"WindowBenchmark needs a WindowBenchmarkData; got {type(dataset).__name__}.")
        super().__init__(name, dataset, requires_finetuning, finetune_config, protocols=protocols, seed=seed)
        self.probe = probe or LinearProbe(dataset.task)
        if self.probe.task != dataset.task:
            raise BenchmarkError(f"the probe is for {self.probe.task} but the benchmark task is {dataset.task}.")
        if pool not in ("flatten", "mean"):
            raise BenchmarkError(f"pool must be 'flatten' or 'mean'; got {pool!r}.")
        if probe_scope not in ("auto", "subject", "pooled"):
            raise BenchmarkError(f"probe_scope must be 'auto', 'subject' or 'pooled'; got {probe_scope!r}.")
        self.feature_key, self.pool, self.cache_dir, self.probe_scope = feature_key, pool, cache_dir, probe_scope
        if dataset.task == "regression" and "finetune" in self.supported_protocols and protocols is None:
            self.supported_protocols = ("zero_shot", "linear_probe")  # window labels are class ids

    def _default_finetune_config(self) -> dict[str, Any]:
        """AdamW (lr 1e-3), one epoch, batches of 16 windows."""
        return {"optimizer": {"_target_": "torch.optim.AdamW", "lr": 1e-3}, "trainer": {"max_epochs": 1}, "batch_size": 16}

    def split_names(self) -> list[str]:
        return [s.name for s in self.dataset.splits]

    def protocol_config(self, protocol: str) -> Any:
        if protocol == "linear_probe":
            return {"probe": self.probe.config(), "feature_key": self.feature_key, "pool": self.pool,
                    "scope": self.probe_scope}
        return super().protocol_config(protocol)

    def folds(self, model: Any = None, *, cache_dir: Any = None) -> list[FoldData]:
        """One :class:`FoldData` per split, over windows cut after the model's recording part."""
        pipeline = getattr(model, "preprocess_pipeline", None)
        windows = self.dataset.windows_for(pipeline, cache_dir=cache_dir or self.cache_dir)
        return [self.dataset.fold(s, windows) for s in self.dataset.splits]

    # -- checks before anything runs ----------------------------------------------------------
    def check_model(self, model: Any, protocol: str) -> None:
        """Before any training: every session's first window must go through the model's
        pipeline (rate, channels, steps), zero-shot logits must have one column per class, a
        fine-tuned model must be rebuildable with a new head, and every fold must have train
        and test windows (and two classes in train, for classification)."""
        data = self.dataset
        for split in data.splits:
            if not split.train.size or not split.test.size:
                raise BenchmarkError(f"benchmark {self.name!r}: split {split.name} has an empty train or test part.")
            if data.task == "classification" and protocol != "zero_shot":
                classes = np.unique(data.table.label[split.train])
                if classes.size < 2:
                    raise BenchmarkError(
                        f"benchmark {self.name!r}: split {split.name} has only class {classes.tolist()} in train; "
                        "a probe or fine-tune needs at least two."
                    )
        if protocol == "finetune" and not hasattr(model, "config"):
            raise BenchmarkError(f"{type(model).__name__} has no config: only neurocrane models can be fine-tuned.")
        for ds in data.windows_for(None).datasets:
            if len(ds):
                self._dry_run(model, ds)

    def _dry_run(self, model: Any, ds: _Windows) -> None:
        """Check one raw window of a session against the model's config and pipeline specs
        (no forward pass: nothing is computed that the protocol would not compute anyway)."""
        where = f"{ds.subject_id}/{ds.session_id} ({ds.recording.sampling_rate:g} Hz, {ds.recording.n_channels} channels)"
        pipeline = getattr(model, "preprocess_pipeline", None)
        try:
            batch = _collate([ds[0]], torch.device("cpu"))
            check_input = getattr(model, "check_input", None)
            if check_input is not None:
                check_input(batch)
            if pipeline is not None:
                recording_part, _ = pipeline.split()
                if recording_part is not None:  # runs on the continuous recording
                    recording_part.output_spec(_recording_spec(ds.recording))
                pipeline.output_spec(batch.spec)
        except (InputError, PipelineError) as err:
            raise BenchmarkError(
                f"benchmark {self.name!r}: {_model_label(model)} cannot take the data of {where}: {err}"
            ) from err

    # -- protocols ---------------------------------------------------------------------------
    def _batches(self, model: Any, fold: FoldData, part: str) -> Iterator[tuple[NeuralBatch, np.ndarray]]:
        """Batches of one part, one session at a time, with their table indices."""
        idx = fold.split.part(part)
        device = _model_device(model)
        start = 0
        for size in fold.session_sizes(part):
            session_idx = idx[start:start + size]
            start += size
            for b in range(0, size, fold.batch_size):
                chunk = session_idx[b:b + fold.batch_size]
                yield _collate([fold.windows[int(i)] for i in chunk], device), chunk

    def _predict(self, model: Any, fold: FoldData, part: str = "test") -> tuple[np.ndarray, np.ndarray]:
        """Model outputs (``logits``) of a part, and the table indices they belong to."""
        outs, rows = [], []
        with _eval_mode(model):
            for batch, chunk in self._batches(model, fold, part):
                out = model(batch)
                logits = out.get("logits") if isinstance(out, Mapping) else None
                want = self.dataset.n_classes
                if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[1] != want:
                    shape = None if not isinstance(logits, torch.Tensor) else tuple(logits.shape)
                    raise BenchmarkError(
                        f"benchmark {self.name!r}: scoring the model's own outputs needs logits of shape (batch, {want}); "
                        f"{_model_label(model)} gives {shape}. Use the linear_probe or finetune protocol."
                    )
                outs.append(logits.detach().float().cpu().numpy())
                rows.append(chunk)
        return np.concatenate(outs), np.concatenate(rows)

    def _window_features(self, model: Any, fold: FoldData) -> dict[int, np.ndarray]:
        """Frozen, pooled features of every window of the fold's dataset, by table row.

        The model is frozen, so features do not depend on the fold: they are computed once per
        run and shared by all folds."""
        memo = getattr(self, "_feature_memo", None)
        if memo is not None and memo[0] is fold.windows:
            return memo[1]
        everything = Split(fold.split.kind, np.arange(len(fold.table)), [], np.arange(len(fold.table)))
        all_rows = FoldData(fold.windows, fold.table, everything, fold.task, fold.n_classes, fold.batch_size)
        out: dict[int, np.ndarray] = {}
        with _eval_mode(model):
            for batch, chunk in self._batches(model, all_rows, "train"):
                f = model.extract_features(batch)
                if self.feature_key not in f:
                    raise BenchmarkError(
                        f"benchmark {self.name!r}: extract_features returned {sorted(f)}, without {self.feature_key!r}; "
                        "set feature_key."
                    )
                x = pool_features(f[self.feature_key].detach(), self.pool).double().cpu().numpy()
                out.update(zip(chunk.tolist(), x, strict=True))
        self._feature_memo = (fold.windows, out)
        return out

    def _features(self, model: Any, fold: FoldData, part: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Frozen, pooled features of a part, per subject: ``{subject: ((N, D), table rows)}``."""
        every = self._window_features(model, fold)
        feats: dict[str, list[np.ndarray]] = {}
        rows: dict[str, list[np.ndarray]] = {}
        for i in fold.split.part(part).tolist():
            subject = str(fold.table.subject[i])
            feats.setdefault(subject, []).append(every[i][None, :])
            rows.setdefault(subject, []).append(np.asarray([i]))
        out = {}
        for subject, fs in feats.items():
            dims = {x.shape[1] for x in fs}
            if len(dims) > 1:
                raise BenchmarkError(
                    f"benchmark {self.name!r}: {subject}'s feature vectors differ in size between sessions {sorted(dims)}; "
                    "use pool='mean' or a model whose features do not depend on the channel count."
                )
            out[subject] = (np.concatenate(fs), np.concatenate(rows[subject]))
        return out

    def _evaluate_split(self, model: Any, split_data: Any) -> dict[str, float]:
        """Metrics of the model's own outputs on the test windows of a fold (or the first fold)."""
        fold = split_data if isinstance(split_data, FoldData) else self.folds(model)[0]
        scores, rows = self._predict(model, fold, "test")
        return self._metrics(self.dataset.table.label[rows], scores)

    def _metrics(self, y: np.ndarray, scores: np.ndarray) -> dict[str, float]:
        if self.dataset.task == "regression":
            return regression_metrics(y, scores.reshape(scores.shape[0], -1)[:, 0])
        return classification_metrics(y, scores)

    def _records(self, scores: np.ndarray, rows: np.ndarray, protocol: str, split: str, label: str,
                 info: Mapping[str, Any]) -> list[ScoreRecord]:
        table = self.dataset.table
        y = table.label[rows]
        out = [ScoreRecord(label, self.name, protocol, split, ALL_SUBJECTS, self._metrics(y, scores), int(rows.size), dict(info))]
        subjects = table.subject[rows]
        for subject in sorted(set(subjects.tolist())):
            sel = subjects == subject
            out.append(ScoreRecord(label, self.name, protocol, split, subject, self._metrics(y[sel], scores[sel]),
                                   int(sel.sum()), dict(info)))
        return out

    def _run_fold(self, model: Any, protocol: str, fold: FoldData, split_name: str, label: str) -> list[ScoreRecord]:
        if protocol == "linear_probe":
            return self._probe_fold(model, fold, split_name, label)
        if protocol == "finetune":
            model = self._finetune(model, fold)
        scores, rows = self._predict(model, fold, "test")
        return self._records(scores, rows, protocol, split_name, label, {})

    def _probe_scope(self, split: Split) -> str:
        if self.probe_scope != "auto":
            return self.probe_scope
        return "pooled" if split.kind == "cross_subject" else "subject"

    def _probe_fold(self, model: Any, fold: FoldData, split_name: str, label: str) -> list[ScoreRecord]:
        """Fit the probe on train features (per subject, or pooled over subjects), choose its
        strength on val, score the test windows."""
        parts = {p: self._features(model, fold, p) for p in ("train", "val", "test")}
        if self._probe_scope(fold.split) == "pooled":
            for p, per in parts.items():
                dims = {x.shape[1] for x, _ in per.values()}
                if len(dims) > 1:
                    raise BenchmarkError(
                        f"benchmark {self.name!r}: a probe pooled over subjects needs features of one size; got "
                        f"{sorted(dims)} in {p} (channel counts differ). Use pool='mean'."
                    )
                parts[p] = {"*": (np.concatenate([x for x, _ in per.values()]), np.concatenate([r for _, r in per.values()]))} if per else {}
        labels = self.dataset.table.label
        scores, rows, chosen = [], [], {}
        for group, (x_test, r_test) in parts["test"].items():
            if group not in parts["train"]:
                raise BenchmarkError(f"benchmark {self.name!r}: {group} has test windows but no train windows in {split_name}.")
            x_train, r_train = parts["train"][group]
            x_val, r_val = parts["val"].get(group, (None, np.zeros(0, np.int64)))
            probe = copy.deepcopy(self.probe)
            probe.fit(x_train, labels[r_train], x_val if r_val.size else None, labels[r_val] if r_val.size else None)
            scores.append(probe.decision_function(x_test))
            rows.append(r_test)
            chosen[group] = probe.chosen
        scores_all = np.concatenate(scores)
        return self._records(scores_all, np.concatenate(rows), "linear_probe", split_name, label,
                             {"probe_value": chosen, "probe_scope": self._probe_scope(fold.split)})

    def prepare_for_finetuning(self, model: Any) -> Any:
        """A copy of ``model`` with a classification objective and ``n_classes`` outputs.

        When the config already matches, a deep copy; otherwise a new model of the same class
        is built from an edited copy of the config (``num_labels``, and ``objective`` when the
        config has one) and every weight whose name and shape match is copied over (the new
        head starts fresh, seeded by the benchmark's seed).
        """
        if self.dataset.task != "classification":
            return copy.deepcopy(model)
        config = getattr(model, "config", None)
        n = self.dataset.n_classes
        needs_head = getattr(config, "num_labels", n) != n
        needs_objective = getattr(config, "objective", "classification") != "classification"
        if not (needs_head or needs_objective):
            return copy.deepcopy(model)
        new_config = copy.deepcopy(config)
        if needs_head:
            new_config.num_labels = n
        if needs_objective:
            new_config.objective = "classification"
        tuned = type(model)(new_config)
        own = tuned.state_dict()
        matching = {k: v for k, v in model.state_dict().items() if k in own and own[k].shape == v.shape}
        tuned.load_state_dict(matching, strict=False)
        return tuned.to(_model_device(model))


def _recording_spec(recording: Recording) -> Any:
    from neurocrane.batch import SignalSpec

    return SignalSpec(shape=(None, recording.n_channels, recording.n_times), sampling_rate=recording.sampling_rate,
                      channel_names=recording.channel_names, has_positions=recording.channel_positions is not None)


def _collate(samples: list[dict[str, Any]], device: torch.device) -> NeuralBatch:
    batch = WindowCollator(BasicPreprocessor())(samples)
    return to_neural_batch(batch).to(device)
