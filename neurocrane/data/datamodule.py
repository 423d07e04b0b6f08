"""``iEEGDataModule``: sessions listed in a subject/trials file → windows → batches, DDP-aware.

The subject/trials file
-----------------------
Lists which sessions (BrainTreebank calls them trials) to use. ``session`` may be ``*`` for all
sessions of a subject. Three spellings, chosen by the file extension:

``.csv`` / ``.tsv`` — a header with ``subject`` and ``session`` columns::

    subject,session
    sub-01,ses-01
    sub-02,*

``.yaml`` / ``.yml`` / ``.json`` — a mapping from subject to a list of sessions (or ``"*"``)::

    sub-01: [ses-01, ses-02]
    sub-02: "*"

or a list of pairs ``[[sub-01, ses-01], [sub-02, ses-01]]`` (also ``{subject:, session:}`` items).

Ids are matched as strings against the ``subject_id``/``session_id`` of the recordings under
``data_root_dir``. Unknown ids and a selection that names no session are errors.

Splits never leak
-----------------
Validation data is held out by whole sessions (``split_by="session"``) or whole subjects
(``split_by="subject"``), chosen from ``seed``; or listed in ``val_subject_trials_file``. No
window of a validation session is ever in training.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
import yaml
from torch.utils.data import ConcatDataset, DataLoader

from neurocrane.data.collate import WindowCollator
from neurocrane.data.loader import WindowDataLoader, WorkerType
from neurocrane.data.preprocessing import BasicPreprocessor
from neurocrane.data.recording import Recording, RecordingIndex
from neurocrane.data.samplers import (
    BalancedClassBatchSampler,
    RandomBatchSampler,
    SessionBatchSampler,
    SubjectBatchSampler,
    distributed_defaults,
)
from neurocrane.data.windows import ConcatWindowDataset, WindowDataset, label_mapping
from neurocrane.errors import InputError

__all__ = ["iEEGDataModule", "read_subject_trials", "select_sessions"]

logger = logging.getLogger("neurocrane.data")

BatchStrategy = Literal["session", "subject", "balanced", "random"]
ALL = "*"


def read_subject_trials(path: str | Path) -> list[tuple[str, str]]:
    """Read a subject/trials file (format in the module docstring) into ``(subject, session)`` pairs.

    Args:
        path: A ``.csv``, ``.tsv``, ``.yaml``, ``.yml`` or ``.json`` file.

    Returns:
        Pairs in file order, duplicates removed; ``session`` may be ``"*"`` (all sessions).

    Raises:
        FileNotFoundError: the file does not exist.
        InputError: an unknown extension, a malformed file, or a file that selects nothing.

    Example:
        >>> Path("trials.yaml").write_text("sub-01: [ses-01]\\nsub-02: '*'\\n")
        >>> read_subject_trials("trials.yaml")
        [('sub-01', 'ses-01'), ('sub-02', '*')]
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"subject/trials file {str(path)!r} does not exist.")
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8")
    if suffix in (".csv", ".tsv"):
        rows = list(csv.DictReader(text.splitlines(), delimiter="\t" if suffix == ".tsv" else ","))
        cols = {c.strip().lower(): c for c in (rows[0].keys() if rows else [])}
        sub = cols.get("subject") or cols.get("subject_id")
        ses = cols.get("session") or cols.get("session_id") or cols.get("trial")
        if rows and (sub is None or ses is None):
            raise InputError(
                f"{str(path)!r}: the header must name a 'subject' and a 'session' column; got {list(rows[0])}."
            )
        pairs = [(str(r[sub]).strip(), str(r[ses]).strip()) for r in rows] if rows else []
    elif suffix in (".yaml", ".yml", ".json"):
        try:
            data = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as err:
            raise InputError(f"{str(path)!r} is not valid {suffix[1:].upper()}: {err}") from None
        pairs = _pairs_from_data(data, path)
    else:
        raise InputError(
            f"{str(path)!r}: unknown subject/trials file type {suffix!r}; use .csv, .tsv, .yaml, .yml or .json."
        )
    for s, e in pairs:
        if not s or not e:
            raise InputError(f"{str(path)!r}: empty subject or session id in ({s!r}, {e!r}).")
    pairs = list(dict.fromkeys(pairs))
    if not pairs:
        raise InputError(
            f"{str(path)!r} selects no session (it is empty). List subject/session pairs, e.g. a CSV with the "
            "header 'subject,session' and rows like 'sub-01,ses-01' ('*' for all sessions of a subject)."
        )
    return pairs


def _pairs_from_data(data: Any, path: Path) -> list[tuple[str, str]]:
    if data is None:
        return []
    if isinstance(data, Mapping):
        pairs = []
        for subject, sessions in data.items():
            if sessions in (ALL, None):
                pairs.append((str(subject), ALL))
            elif isinstance(sessions, str | int):
                pairs.append((str(subject), str(sessions)))
            elif isinstance(sessions, list):
                pairs.extend((str(subject), str(s)) for s in sessions)
            else:
                raise InputError(f"{str(path)!r}: sessions of {subject!r} must be a list or '*'; got {sessions!r}.")
        return pairs
    if isinstance(data, list):
        pairs = []
        for item in data:
            if isinstance(item, Mapping) and {"subject", "session"} <= set(item):
                pairs.append((str(item["subject"]), str(item["session"])))
            elif isinstance(item, list | tuple) and len(item) == 2:
                pairs.append((str(item[0]), str(item[1])))
            else:
                raise InputError(
                    f"{str(path)!r}: each list item must be a [subject, session] pair or a "
                    f"{{subject:, session:}} mapping; got {item!r}."
                )
        return pairs
    raise InputError(f"{str(path)!r}: expected a mapping subject → sessions or a list of pairs; got {type(data).__name__}.")


def select_sessions(pairs: Sequence[tuple[str, str]], index: RecordingIndex) -> list[tuple[str, str]]:
    """Resolve ``(subject, session)`` pairs (``"*"`` allowed) against the sessions of an index.

    Args:
        pairs: From :func:`read_subject_trials`.
        index: The recordings available.

    Returns:
        Concrete pairs, in the order given (``"*"`` expands in the index's order), without duplicates.

    Raises:
        InputError: a subject or session that is not in the index, or an empty result.

    Example:
        >>> select_sessions([("sub-01", "*")], RecordingIndex("corpus"))
        [('sub-01', 'ses-01'), ('sub-01', 'ses-02')]
    """
    available: dict[str, list[str]] = {}
    for subject, session, _ in index.sessions:
        available.setdefault(subject, []).append(session)
    out: list[tuple[str, str]] = []
    for subject, session in pairs:
        if subject not in available:
            raise InputError(
                f"subject {subject!r} has no recordings under {str(index.root)!r}; known subjects: "
                f"{sorted(available)}."
            )
        if session == ALL:
            out.extend((subject, s) for s in available[subject])
        elif session in available[subject]:
            out.append((subject, session))
        else:
            raise InputError(
                f"session {session!r} of {subject!r} is not under {str(index.root)!r}; its sessions are "
                f"{available[subject]}."
            )
    out = list(dict.fromkeys(out))
    if not out:
        raise InputError("the subject/trials selection is empty; nothing to train on.")
    return out


def _fraction_count(n: int, fraction: float) -> int:
    return 0 if fraction <= 0 else max(1, int(round(fraction * n)))


class iEEGDataModule(pl.LightningDataModule):  # noqa: N801 (name from SPEC)
    """Windows of the listed sessions, batched by session, subject, class or at random.

    Only data-quality clean-up happens here (:class:`BasicPreprocessor`); model-specific
    preprocessing is the model's pipeline. Optionally ``pipeline``'s *recording part* (filters
    that need continuous input) runs once per recording through the recording cache, and the
    batches are stamped with its fingerprint so the model skips it.

    Args:
        train_subject_trials_file: Sessions to use (format in the module docstring).
        context_length: Window length in seconds.
        batch_size: Windows per batch (per rank).
        num_workers: Loader workers (threads or processes, see ``worker_type``); 0 loads in the
            main thread.
        val_split: Fraction of sessions (or subjects) held out for validation; 0 for none.
        data_root_dir: Folder holding the recordings. Default: ``$NEUROCRANE_DATA_ROOT``, else the
            folder of the subject/trials file.
        stride: Seconds between window starts (default: ``context_length``). Continuous windows only.
        batch_strategy: ``"session"`` (default; one session per batch, no padding), ``"subject"``,
            ``"balanced"`` (equal classes per batch; needs ``windows="events"``) or ``"random"``.
            Validation batches are not shuffled; ``"balanced"`` validates by session (no oversampling).
        split_by: Hold out whole ``"session"``\\ s (default) or whole ``"subject"``\\ s.
        val_subject_trials_file: Explicit validation sessions (then ``val_split`` is ignored); they
            are removed from the training selection.
        windows: ``"continuous"`` (default) or ``"events"`` (one labelled window per event).
        event_offset: Window start relative to each event onset, seconds (``windows="events"``).
        label_map: Class names (list) or name → id; default: sorted labels of all selected events.
        rest_label: With ``windows="events"``, also cut rest windows between events with this
            label (see :meth:`WindowDataset.around_events`); it joins the default label map.
        drop_last: Drop incomplete training batches (validation keeps them).
        seed: Seed of the split and of the batch order (which also depends on the epoch).
        pin_memory: Default: True when CUDA is available.
        pipeline: A model's :class:`~neurocrane.Pipeline` (or its dict); its recording part runs on
            each recording once (cached under ``cache_dir``, filled in ``prepare_data``) before
            windowing, and batches carry its fingerprint in ``applied``.
        cache_dir: Where the recording cache lives (default: next to each recording).
        worker_type: ``"thread"`` (default): workers are threads of this process (reading windows
            is a memory copy that releases the GIL, so threads load in parallel and hand batches
            over for free); ``"process"``: standard DataLoader worker processes (see
            :class:`~neurocrane.data.WindowDataLoader`).
        prefetch_factor: Batches each worker loads ahead. Default: 1 for threads (loading windows
            is bound by memory bandwidth, and every batch ahead is one more batch-sized buffer
            falling out of the CPU cache), 2 (torch's default) for processes.

    Example:
        >>> dm = iEEGDataModule("trials.csv", context_length=2.0, batch_size=16, num_workers=2,
        ...                     data_root_dir="corpus", val_split=0.25)
        >>> dm.setup("fit")
        >>> batch = next(iter(dm.train_dataloader()))
        >>> batch["neural_data"].shape[0]
        16
    """

    def __init__(
        self,
        train_subject_trials_file: str | Path,
        context_length: float,
        batch_size: int = 32,
        num_workers: int = 4,
        val_split: float = 0.1,
        data_root_dir: str | Path | None = None,
        *,
        stride: float | None = None,
        batch_strategy: BatchStrategy = "session",
        split_by: Literal["session", "subject"] = "session",
        val_subject_trials_file: str | Path | None = None,
        windows: Literal["continuous", "events"] = "continuous",
        event_offset: float = 0.0,
        label_map: Mapping[str, int] | Sequence[str] | None = None,
        rest_label: str | None = None,
        drop_last: bool = True,
        seed: int = 0,
        pin_memory: bool | None = None,
        pipeline: Any = None,
        cache_dir: str | Path | None = None,
        worker_type: WorkerType = "thread",
        prefetch_factor: int | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["pipeline"])
        if batch_strategy not in ("session", "subject", "balanced", "random"):
            raise InputError(
                f"batch_strategy must be 'session', 'subject', 'balanced' or 'random'; got {batch_strategy!r}."
            )
        if split_by not in ("session", "subject"):
            raise InputError(f"split_by must be 'session' or 'subject'; got {split_by!r}.")
        if windows not in ("continuous", "events"):
            raise InputError(f"windows must be 'continuous' or 'events'; got {windows!r}.")
        if batch_strategy == "balanced" and windows != "events":
            raise InputError("batch_strategy='balanced' needs labelled windows; pass windows='events'.")
        if not 0 <= float(val_split) < 1:
            raise InputError(f"val_split must be in [0, 1); got {val_split!r}.")
        if int(num_workers) != num_workers or num_workers < 0:
            raise InputError(f"num_workers must be a non-negative int; got {num_workers!r}.")
        if worker_type not in ("thread", "process"):
            raise InputError(f"worker_type must be 'thread' or 'process'; got {worker_type!r}.")
        if prefetch_factor is not None and (int(prefetch_factor) != prefetch_factor or prefetch_factor < 1):
            raise InputError(f"prefetch_factor must be a positive int or None; got {prefetch_factor!r}.")
        # in place: it only ever sees tensors its own collate just built
        self.basic_preprocessor = BasicPreprocessor(inplace=True)
        if isinstance(pipeline, Mapping):
            from neurocrane.pipeline import Pipeline

            pipeline = Pipeline.from_dict(pipeline)
        self.pipeline = pipeline
        self.train_dataset: ConcatDataset | None = None
        self.val_dataset: ConcatDataset | None = None
        self.train_sessions: list[tuple[str, str]] = []
        self.val_sessions: list[tuple[str, str]] = []
        self.label_map: dict[str, int] = {}
        self.n_replaced = 0  # non-finite values BasicPreprocessor replaced in batches seen by this process

    # -- data -------------------------------------------------------------------------------
    def _root(self) -> Path:
        root = self.hparams.data_root_dir or os.environ.get("NEUROCRANE_DATA_ROOT")
        return Path(root) if root else Path(self.hparams.train_subject_trials_file).parent

    def _split(self, selected: list[tuple[str, str]], index: RecordingIndex) -> tuple[list, list]:
        hp = self.hparams
        if hp.val_subject_trials_file is not None:
            val = select_sessions(read_subject_trials(hp.val_subject_trials_file), index)
            train = [p for p in selected if p not in set(val)]
            if not train:
                raise InputError("every training session is also listed for validation; nothing left to train on.")
            return train, val
        rng = np.random.default_rng(hp.seed)
        if hp.split_by == "subject":
            subjects = list(dict.fromkeys(s for s, _ in selected))
            n_val = _fraction_count(len(subjects), hp.val_split)
            if n_val and n_val >= len(subjects):
                raise InputError(
                    f"split_by='subject' with val_split={hp.val_split} needs at least 2 subjects; the selection has "
                    f"{len(subjects)}. Select more subjects, split_by='session', or val_split=0."
                )
            held = {subjects[i] for i in rng.permutation(len(subjects))[:n_val]}
            return [p for p in selected if p[0] not in held], [p for p in selected if p[0] in held]
        n_val = _fraction_count(len(selected), hp.val_split)
        if n_val and n_val >= len(selected):
            raise InputError(
                f"val_split={hp.val_split} holds out whole sessions and needs at least 2; the selection has "
                f"{len(selected)}. Select more sessions, pass val_subject_trials_file, or val_split=0."
            )
        held_idx = set(rng.permutation(len(selected))[:n_val].tolist())
        return (
            [p for i, p in enumerate(selected) if i not in held_idx],
            [p for i, p in enumerate(selected) if i in held_idx],
        )

    def _open(self, index: RecordingIndex, pair: tuple[str, str]) -> Recording:
        rec = index.open(*pair)
        if self.pipeline is not None:
            from neurocrane.data.recording_cache import preprocess_recording

            rec = preprocess_recording(rec, self.pipeline, cache_dir=self.hparams.cache_dir)
        return rec

    def _windows(self, recordings: list[Recording]) -> ConcatWindowDataset:
        hp = self.hparams
        if hp.windows == "events":
            datasets = [
                WindowDataset.around_events(
                    r, hp.context_length, offset=hp.event_offset, label_map=self.label_map, rest_label=hp.rest_label
                )
                for r in recordings
            ]
        else:
            datasets = [WindowDataset(r, hp.context_length, hp.stride) for r in recordings]
        return ConcatWindowDataset(datasets)  # serves whole batches (one copy per window, see collate)

    def _selection(self) -> tuple[RecordingIndex, list[tuple[str, str]]]:
        index = RecordingIndex(self._root())
        selected = select_sessions(read_subject_trials(self.hparams.train_subject_trials_file), index)
        if self.hparams.val_subject_trials_file is not None:
            val = select_sessions(read_subject_trials(self.hparams.val_subject_trials_file), index)
            selected = list(dict.fromkeys(selected + val))
        return index, selected

    def prepare_data(self) -> None:
        """Fill the recording cache with ``pipeline``'s recording part (Lightning runs this on one
        process per node before ``setup``, so DDP ranks do not all filter the same recordings)."""
        if self.pipeline is None:
            return
        index, selected = self._selection()
        for pair in selected:
            self._open(index, pair)

    def setup(self, stage: str | None = None) -> None:
        """Read the selection, split it, open the recordings and cut windows (idempotent)."""
        if self.train_dataset is not None:
            return
        index = RecordingIndex(self._root())
        selected = select_sessions(read_subject_trials(self.hparams.train_subject_trials_file), index)
        self.train_sessions, self.val_sessions = self._split(selected, index)
        train_recs = [self._open(index, p) for p in self.train_sessions]
        val_recs = [self._open(index, p) for p in self.val_sessions]
        if self.hparams.windows == "events":
            if self.hparams.label_map is not None:
                self.label_map = label_mapping(self.hparams.label_map)
            else:
                names = sorted({e.label for r in train_recs + val_recs for e in r.events})
                if not names:
                    raise InputError("windows='events' but the selected recordings have no events.")
                if self.hparams.rest_label is not None:
                    names = [self.hparams.rest_label, *(n for n in names if n != self.hparams.rest_label)]
                self.label_map = label_mapping(names)
        self.train_dataset = self._windows(train_recs)
        self.val_dataset = self._windows(val_recs) if val_recs else None
        logger.info(
            "iEEGDataModule: %d train sessions (%d windows), %d val sessions (%d windows)",
            len(self.train_sessions), len(self.train_dataset), len(self.val_sessions),
            0 if self.val_dataset is None else len(self.val_dataset),
        )

    # -- loaders ----------------------------------------------------------------------------
    def _replicas(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return distributed_defaults()
        # Lightning would rebuild our batch samplers around a DistributedSampler they ignore
        # (every rank the same batches); they shard themselves, so turn the injection off.
        connector = getattr(trainer, "_accelerator_connector", None)
        if connector is not None and getattr(connector, "use_distributed_sampler", False):
            connector.use_distributed_sampler = False
            logger.info("iEEGDataModule: turned off Lightning's distributed sampler; neurocrane samplers shard by rank.")
        return trainer.world_size, trainer.global_rank

    def _batch_sampler(self, dataset: ConcatDataset, train: bool) -> Any:
        hp = self.hparams
        num_replicas, rank = self._replicas()
        sizes = [len(d) for d in dataset.datasets]
        common = dict(
            batch_size=hp.batch_size, shuffle=train, drop_last=hp.drop_last and train, seed=hp.seed,
            num_replicas=num_replicas, rank=rank,
        )
        strategy = hp.batch_strategy
        if strategy == "balanced" and not train:
            strategy = "session"
        if strategy == "session":
            return SessionBatchSampler(sizes, **common)
        if strategy == "subject":
            return SubjectBatchSampler(sizes, [d.subject_id for d in dataset.datasets], **common)
        if strategy == "random":
            return RandomBatchSampler(sizes, **common)
        labels = np.concatenate([d.labels for d in dataset.datasets])
        return BalancedClassBatchSampler(labels, **common)

    def _loader(self, dataset: ConcatDataset, train: bool) -> DataLoader:
        hp = self.hparams
        pin = torch.cuda.is_available() if hp.pin_memory is None else bool(hp.pin_memory)
        threads = hp.worker_type == "thread" and hp.num_workers > 0
        prefetch = hp.prefetch_factor or (1 if threads else 2)
        # Reused batch blocks: per worker process a few; in this process, one per batch in flight
        # (loader threads build each window batch together) plus the two a training loop holds.
        pool_size = prefetch + 2 if threads else (4 if hp.num_workers else 3)
        return WindowDataLoader(
            dataset,
            batch_sampler=self._batch_sampler(dataset, train),
            num_workers=hp.num_workers,
            collate_fn=WindowCollator(self.basic_preprocessor, pool_size=pool_size),
            pin_memory=pin,
            persistent_workers=hp.num_workers > 0,
            worker_type=hp.worker_type,
            prefetch_factor=prefetch if hp.num_workers else None,
        )

    def _require_setup(self) -> None:
        if self.train_dataset is None:
            self.setup("fit")

    def train_dataloader(self) -> DataLoader:
        """Training batches: shuffled per ``(seed, epoch)``, sharded by rank, equal count per rank."""
        self._require_setup()
        return self._loader(self.train_dataset, train=True)

    def val_dataloader(self) -> DataLoader | list:
        """Validation batches in a fixed order (an empty list when nothing is held out)."""
        self._require_setup()
        if self.val_dataset is None:
            return []
        return self._loader(self.val_dataset, train=False)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, dict):
            self.n_replaced += int(batch.get("n_replaced", 0))
        return batch
