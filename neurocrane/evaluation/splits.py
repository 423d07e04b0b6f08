"""Leakage-free train/val/test splits of labelled windows.

Three kinds, each with a single split and a k-fold variant:

* **within-session** — every session is cut into contiguous *time blocks* (never shuffled:
  shuffling puts neighbouring, correlated windows of one continuous recording on both sides,
  which is why Neuroprobe's within-session folds are unshuffled). Windows closer than ``gap``
  seconds to a window of another part are dropped (from train first, then val; test is
  kept whole), so overlapping or adjacent windows never straddle a boundary.
* **cross-session** — whole sessions are held out; the subject was seen in training.
* **cross-subject** — whole subjects are held out.

Splits work on a :class:`WindowTable` (subject, session, start and stop in seconds, label of
every window), built from the window datasets with :meth:`WindowTable.from_datasets`. Every
constructor checks its result with :meth:`Split.check`, which raises :class:`LeakageError` if
windows, sessions or subjects are shared as the kind forbids.

Example:
    >>> table = WindowTable.from_arrays(subject=["s1"] * 10, session=["a"] * 10,
    ...                                 start=np.arange(10.0), stop=np.arange(10.0) + 1)
    >>> [len(s.test) for s in within_session_kfold(table, k=5, gap=0.0, val_fraction=0.0)]
    [2, 2, 2, 2, 2]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from neurocrane.errors import InputError, NeuroCraneError

__all__ = [
    "SPLIT_KINDS",
    "LeakageError",
    "Split",
    "SplitError",
    "WindowTable",
    "cross_session_kfold",
    "cross_session_split",
    "cross_subject_kfold",
    "cross_subject_split",
    "make_splits",
    "within_session_kfold",
    "within_session_split",
]

SplitKind = Literal["within_session", "cross_session", "cross_subject"]
SPLIT_KINDS: tuple[str, ...] = ("within_session", "cross_session", "cross_subject")
_PARTS = ("train", "val", "test")


class SplitError(NeuroCraneError, ValueError):
    """A split cannot be made from the given windows (too few sessions/subjects, an empty part)."""


class LeakageError(NeuroCraneError, AssertionError):
    """A split shares windows, sessions or subjects between its parts where its kind forbids it."""


@dataclass(frozen=True)
class WindowTable:
    """Where each window of a dataset comes from: the facts a split needs.

    Args:
        subject: Subject id of each window.
        session: Session id of each window (unique within its subject).
        start: Window start in seconds from the start of its recording.
        stop: Window end in seconds (``start < stop``).
        label: Optional class id (or target) of each window.

    Example:
        >>> WindowTable.from_arrays(["s1", "s1"], ["a", "a"], [0.0, 1.0], [1.0, 2.0])
        WindowTable(2 windows, 1 subjects, 1 sessions)
    """

    subject: np.ndarray
    session: np.ndarray
    start: np.ndarray
    stop: np.ndarray
    label: np.ndarray | None = None
    _unit: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        subject = np.asarray(self.subject, dtype=str).reshape(-1)
        n = subject.size
        session = np.asarray(self.session, dtype=str).reshape(-1)
        start = np.asarray(self.start, dtype=np.float64).reshape(-1)
        stop = np.asarray(self.stop, dtype=np.float64).reshape(-1)
        if not session.size == start.size == stop.size == n:
            raise InputError(
                f"WindowTable: subject, session, start and stop need one entry per window; got lengths "
                f"{n}, {session.size}, {start.size}, {stop.size}."
            )
        if not (np.all(np.isfinite(start)) and np.all(np.isfinite(stop)) and np.all(stop > start)):
            raise InputError("WindowTable: start and stop must be finite seconds with start < stop for every window.")
        label = None if self.label is None else np.asarray(self.label).reshape(-1)
        if label is not None and label.size != n:
            raise InputError(f"WindowTable: {label.size} labels for {n} windows.")
        for name, value in (("subject", subject), ("session", session), ("start", start), ("stop", stop), ("label", label)):
            object.__setattr__(self, name, value)
        # (subject, session) as one key; "\x1f" cannot occur in ids read from folder names
        object.__setattr__(self, "_unit", np.char.add(np.char.add(subject, "\x1f"), session))

    @classmethod
    def from_arrays(
        cls,
        subject: Sequence[str],
        session: Sequence[str],
        start: Sequence[float],
        stop: Sequence[float],
        label: Sequence[Any] | None = None,
    ) -> WindowTable:
        """Build a table from per-window sequences (see the class arguments)."""
        return cls(np.asarray(subject), np.asarray(session), np.asarray(start), np.asarray(stop),
                   None if label is None else np.asarray(label))

    @classmethod
    def from_datasets(cls, datasets: Iterable[Any]) -> WindowTable:
        """Build the table of a concatenation of window datasets, in concatenation order.

        Args:
            datasets: Objects shaped like :class:`~neurocrane.data.windows.WindowDataset`
                (``starts`` in samples, ``window_samples``, ``labels``, ``subject_id``,
                ``session_id``, ``recording.sampling_rate``). Index ``i`` of the table is
                index ``i`` of ``torch.utils.data.ConcatDataset(datasets)``.

        Returns:
            The table.
        """
        subj, sess, start, stop, label = [], [], [], [], []
        for ds in datasets:
            rate = float(ds.recording.sampling_rate)
            starts = np.asarray(ds.starts, dtype=np.float64)
            subj.append(np.full(starts.size, str(ds.subject_id)))
            sess.append(np.full(starts.size, str(ds.session_id)))
            start.append(starts / rate)
            stop.append((starts + ds.window_samples) / rate)
            label.append(np.asarray(ds.labels))
        if not subj:
            raise InputError("WindowTable.from_datasets: got no datasets.")
        return cls(np.concatenate(subj), np.concatenate(sess), np.concatenate(start), np.concatenate(stop),
                   np.concatenate(label))

    def __len__(self) -> int:
        return int(self.subject.size)

    @property
    def subjects(self) -> tuple[str, ...]:
        """Distinct subject ids, sorted."""
        return tuple(sorted(set(self.subject.tolist())))

    def sessions(self, subject: str | None = None) -> tuple[tuple[str, str], ...]:
        """Distinct ``(subject, session)`` pairs, sorted; only ``subject``'s when given."""
        pairs = sorted(set(zip(self.subject.tolist(), self.session.tolist(), strict=True)))
        return tuple(p for p in pairs if subject is None or p[0] == subject)

    def session_index(self, subject: str, session: str) -> np.ndarray:
        """Indices of one session's windows, in time order."""
        idx = np.flatnonzero((self.subject == subject) & (self.session == session))
        return idx[np.argsort(self.start[idx], kind="stable")]

    def __repr__(self) -> str:
        return f"WindowTable({len(self)} windows, {len(self.subjects)} subjects, {len(self.sessions())} sessions)"


@dataclass(frozen=True)
class Split:
    """One train/val/test partition of a :class:`WindowTable`'s windows (indices into it).

    Attributes:
        kind: ``"within_session"``, ``"cross_session"`` or ``"cross_subject"``.
        train, val, test: Sorted int64 window indices; ``val`` may be empty.
        fold, n_folds: Position of this split in its k-fold family (0 of 1 for a single split).
        gap: Minimum distance in seconds between windows of different parts of one session
            (within-session splits).
    """

    kind: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    fold: int = 0
    n_folds: int = 1
    gap: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in SPLIT_KINDS:
            raise InputError(f"Split kind must be one of {SPLIT_KINDS}; got {self.kind!r}.")
        for part in _PARTS:
            object.__setattr__(self, part, np.unique(np.asarray(getattr(self, part), dtype=np.int64)))

    @property
    def name(self) -> str:
        """Short label, e.g. ``within_session/fold2of5`` (used as a cache and results key)."""
        return self.kind if self.n_folds == 1 else f"{self.kind}/fold{self.fold}of{self.n_folds}"

    def part(self, name: str) -> np.ndarray:
        """Indices of ``"train"``, ``"val"`` or ``"test"``."""
        if name not in _PARTS:
            raise InputError(f"a split has parts {_PARTS}; got {name!r}.")
        return getattr(self, name)

    def check(self, table: WindowTable) -> None:
        """Raise :class:`LeakageError` unless the parts are disjoint as this kind requires.

        Always: no window index in two parts, every index valid, train and test non-empty.
        Within-session: windows of different parts of one session are at least ``gap``
        seconds apart (so never overlap). Cross-session: no session in two parts.
        Cross-subject: no subject in two parts.
        """
        n = len(table)
        for part in _PARTS:
            idx = self.part(part)
            if idx.size and (idx[0] < 0 or idx[-1] >= n):
                raise LeakageError(f"{self.name}: {part} holds indices outside the table of {n} windows.")
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            shared = np.intersect1d(self.part(a), self.part(b))
            if shared.size:
                raise LeakageError(f"{self.name}: windows {shared[:5].tolist()} are in both {a} and {b}.")
        if not self.train.size or not self.test.size:
            raise LeakageError(f"{self.name}: train and test must both hold windows.")
        if self.kind == "within_session":
            _check_gaps(self, table)
        else:
            key = table._unit if self.kind == "cross_session" else table.subject
            what = "sessions" if self.kind == "cross_session" else "subjects"
            for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
                shared = np.intersect1d(key[self.part(a)], key[self.part(b)])
                if shared.size:
                    shown = [s.replace("\x1f", "/") for s in shared[:5].tolist()]
                    raise LeakageError(f"{self.name}: {what} {shown} appear in both {a} and {b}.")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (indices as lists)."""
        return {
            "kind": self.kind, "fold": self.fold, "n_folds": self.n_folds, "gap": self.gap,
            **{p: self.part(p).tolist() for p in _PARTS},
        }

    def __repr__(self) -> str:
        return f"Split({self.name}: train={self.train.size}, val={self.val.size}, test={self.test.size})"


# -- gaps -----------------------------------------------------------------------------------
def _conflicts(table: WindowTable, idx: np.ndarray, other: np.ndarray, gap: float) -> np.ndarray:
    """Bool per window of ``idx``: closer than ``gap`` to (or overlapping) a window of ``other``
    in the same session. Distance between [s1, e1] and [s2, e2] is max(s2 - e1, s1 - e2)."""
    out = np.zeros(idx.size, dtype=bool)
    if not idx.size or not other.size:
        return out
    for unit in np.unique(table._unit[idx]):
        mine = np.flatnonzero(table._unit[idx] == unit)
        theirs = other[table._unit[other] == unit]
        if not theirs.size:
            continue
        order = np.argsort(table.start[theirs], kind="stable")
        t_start = table.start[theirs][order]
        t_stop_max = np.maximum.accumulate(table.stop[theirs][order])
        s, e = table.start[idx[mine]], table.stop[idx[mine]]
        # conflict iff some other window has start < e + gap and stop > s - gap
        k = np.searchsorted(t_start, e + gap - 1e-9, side="left")
        hit = k > 0
        hit[hit] = t_stop_max[k[hit] - 1] > s[hit] - gap + 1e-9
        out[mine] = hit
    return out


def _check_gaps(split: Split, table: WindowTable) -> None:
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        bad = _conflicts(table, split.part(a), split.part(b), split.gap)
        if bad.any():
            i = int(split.part(a)[np.argmax(bad)])
            raise LeakageError(
                f"{split.name}: {a} window {i} ({table.subject[i]}/{table.session[i]}, "
                f"{table.start[i]:g}-{table.stop[i]:g} s) is closer than the gap of {split.gap:g} s to a {b} window."
            )


def _enforce_gap(table: WindowTable, train: np.ndarray, val: np.ndarray, test: np.ndarray, gap: float):
    val = val[~_conflicts(table, val, test, gap)]
    train = train[~_conflicts(table, train, np.concatenate([val, test]), gap)]
    return train, val, test


def _resolve_gap(table: WindowTable, gap: float | None) -> float:
    if gap is None:
        return float(np.max(table.stop - table.start)) if len(table) else 0.0
    gap = float(gap)
    if not np.isfinite(gap) or gap < 0:
        raise InputError(f"gap must be a non-negative number of seconds; got {gap}.")
    return gap


def _check_fraction(value: float, name: str, allow_zero: bool = True) -> float:
    value = float(value)
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value < 1):
        raise InputError(f"{name} must lie in {'[0' if allow_zero else '(0'}, 1); got {value}.")
    return value


def _finish(kind: str, table: WindowTable, train, val, test, *, fold=0, n_folds=1, gap=0.0) -> Split:
    cat = lambda parts: np.concatenate(parts) if parts else np.zeros(0, np.int64)  # noqa: E731
    split = Split(kind, cat(train), cat(val), cat(test), fold=fold, n_folds=n_folds, gap=gap)
    if not split.train.size or not split.test.size:
        raise SplitError(
            f"{split.name}: the {'train' if not split.train.size else 'test'} part is empty "
            f"({table!r}). Use fewer folds, a smaller gap, or more data."
        )
    split.check(table)
    return split


# -- within-session -------------------------------------------------------------------------
def _time_blocks(n: int, k: int) -> list[np.ndarray]:
    return [b for b in np.array_split(np.arange(n), k)]


def within_session_split(
    table: WindowTable,
    *,
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    gap: float | None = None,
) -> Split:
    """Time-blocked split of every session: train first, then val, then test (the last part).

    Args:
        table: The windows.
        test_fraction: Share of each session's windows (in time order) that form the test block.
        val_fraction: Share that forms the val block just before it (0 for no val).
        gap: Seconds kept free between blocks; windows closer than that to the next block are
            dropped. Default: the longest window (so neighbouring windows never touch).

    Returns:
        The :class:`Split` (kind ``"within_session"``).

    Raises:
        SplitError: a part would be empty.
    """
    test_fraction = _check_fraction(test_fraction, "test_fraction", allow_zero=False)
    val_fraction = _check_fraction(val_fraction, "val_fraction")
    if test_fraction + val_fraction >= 1:
        raise InputError(f"test_fraction + val_fraction must be < 1; got {test_fraction + val_fraction}.")
    gap = _resolve_gap(table, gap)
    train, val, test = [], [], []
    for subj, sess in table.sessions():
        idx = table.session_index(subj, sess)
        n = idx.size
        n_test = max(1, int(round(n * test_fraction)))
        n_val = int(round(n * val_fraction))
        if n - n_test - n_val < 1:
            continue  # too short to split; left out rather than leaked
        tr, va, te = _enforce_gap(table, idx[: n - n_test - n_val], idx[n - n_test - n_val: n - n_test], idx[n - n_test:], gap)
        train.append(tr), val.append(va), test.append(te)
    return _finish("within_session", table, train, val, test, gap=gap)


def within_session_kfold(
    table: WindowTable,
    k: int = 5,
    *,
    val_fraction: float = 0.1,
    gap: float | None = None,
) -> list[Split]:
    """Unshuffled k-fold within every session: fold ``i`` tests on the ``i``-th time block.

    The val part is ``val_fraction`` of each session's remaining windows, taken right before the
    test block (right after it for the first fold); windows within ``gap`` seconds of another
    part are dropped.

    Args:
        table: The windows.
        k: Number of folds (>= 2).
        val_fraction: Share of the train windows held out for validation (0 for none).
        gap: Seconds kept free between parts (default: the longest window).

    Returns:
        ``k`` splits.
    """
    k = _check_k(k)
    val_fraction = _check_fraction(val_fraction, "val_fraction")
    gap = _resolve_gap(table, gap)
    sessions = [table.session_index(s, e) for s, e in table.sessions()]
    if sessions and max(i.size for i in sessions) < k:
        raise SplitError(f"within_session_kfold: k={k} folds need sessions of at least {k} windows.")
    splits = []
    for fold in range(k):
        train, val, test = [], [], []
        for idx in sessions:
            if idx.size < k:
                continue
            block = _time_blocks(idx.size, k)[fold]
            te, before, after = idx[block], idx[: block[0]], idx[block[-1] + 1:]
            n_val = int(round((idx.size - block.size) * val_fraction))
            # val sits right next to the test block, so train loses only one gap's worth per side
            if before.size >= n_val:
                va, tr = before[before.size - n_val:], np.concatenate([before[: before.size - n_val], after])
            else:
                va, tr = after[:n_val], np.concatenate([before, after[n_val:]])
            tr, va, te = _enforce_gap(table, tr, va, te, gap)
            train.append(tr), val.append(va), test.append(te)
        splits.append(_finish("within_session", table, train, val, test, fold=fold, n_folds=k, gap=gap))
    return splits


def _check_k(k: int) -> int:
    if isinstance(k, bool) or int(k) != k or int(k) < 2:
        raise InputError(f"k must be an integer >= 2 folds; got {k!r}.")
    return int(k)


# -- cross-session --------------------------------------------------------------------------
def _by_unit(table: WindowTable, units: Iterable[tuple[str, str]]) -> list[np.ndarray]:
    return [table.session_index(s, e) for s, e in units]


def cross_session_split(table: WindowTable, *, n_val_sessions: int = 1) -> Split:
    """Hold out each subject's last session (sorted by id) for test, the one before for val.

    Subjects with a single session cannot be split across sessions and are left out; a
    subject with two sessions contributes no val session.

    Args:
        table: The windows.
        n_val_sessions: Sessions per subject for val (when the subject has enough).

    Returns:
        The :class:`Split` (kind ``"cross_session"``).

    Raises:
        SplitError: no subject has two sessions.
    """
    train, val, test = [], [], []
    for subj in table.subjects:
        units = table.sessions(subj)
        if len(units) < 2:
            continue
        n_val = min(int(n_val_sessions), len(units) - 2)
        test += _by_unit(table, units[-1:])
        val += _by_unit(table, units[len(units) - 1 - n_val: -1])
        train += _by_unit(table, units[: len(units) - 1 - n_val])
    if not test:
        raise SplitError(f"cross_session_split needs a subject with at least two sessions; {table!r}.")
    return _finish("cross_session", table, train, val, test)


def cross_session_kfold(table: WindowTable) -> list[Split]:
    """Leave-one-session-out per subject: fold ``i`` tests on every subject's ``i``-th session.

    The val part of a fold is the session just before the test one (cyclically) when the
    subject has at least three sessions. There are as many folds as the largest session count.

    Returns:
        The splits (subjects with fewer sessions than ``i + 1`` sit out fold ``i``'s test).
    """
    per_subject = {s: table.sessions(s) for s in table.subjects}
    per_subject = {s: u for s, u in per_subject.items() if len(u) >= 2}
    if not per_subject:
        raise SplitError(f"cross_session_kfold needs a subject with at least two sessions; {table!r}.")
    k = max(len(u) for u in per_subject.values())
    splits = []
    for fold in range(k):
        train, val, test = [], [], []
        for units in per_subject.values():
            if fold >= len(units):
                train += _by_unit(table, units)
                continue
            v = (fold - 1) % len(units) if len(units) >= 3 else None
            test += _by_unit(table, [units[fold]])
            val += _by_unit(table, [units[v]] if v is not None else [])
            train += _by_unit(table, [u for j, u in enumerate(units) if j not in (fold, v)])
        splits.append(_finish("cross_session", table, train, val, test, fold=fold, n_folds=k))
    return splits


# -- cross-subject --------------------------------------------------------------------------
def _subject_windows(table: WindowTable, subjects: Iterable[str]) -> list[np.ndarray]:
    return [np.flatnonzero(table.subject == s) for s in subjects]


def cross_subject_split(
    table: WindowTable,
    *,
    test_subjects: Sequence[str] | None = None,
    val_subjects: Sequence[str] | None = None,
) -> Split:
    """Hold out whole subjects.

    Args:
        table: The windows.
        test_subjects: Subjects for test (default: the last subject, sorted by id).
        val_subjects: Subjects for val (default: the one before it, when there are three or more).

    Returns:
        The :class:`Split` (kind ``"cross_subject"``).

    Raises:
        SplitError: fewer than two subjects, or a named subject that is not in the table.
    """
    subjects = list(table.subjects)
    if len(subjects) < 2:
        raise SplitError(f"cross_subject_split needs at least two subjects; {table!r}.")
    for given in (test_subjects, val_subjects):
        missing = sorted(set(given or ()) - set(subjects))
        if missing:
            raise SplitError(f"subjects {missing} are not in the data; it has {subjects}.")
    test_subjects = list(test_subjects) if test_subjects is not None else subjects[-1:]
    if val_subjects is None:
        rest = [s for s in subjects if s not in test_subjects]
        val_subjects = rest[-1:] if len(rest) >= 2 else []
    train_subjects = [s for s in subjects if s not in test_subjects and s not in val_subjects]
    return _finish("cross_subject", table, _subject_windows(table, train_subjects),
                   _subject_windows(table, val_subjects), _subject_windows(table, test_subjects))


def cross_subject_kfold(table: WindowTable, k: int | None = None) -> list[Split]:
    """K-fold over subjects (leave-one-subject-out when ``k`` is None).

    Subjects (sorted) are dealt into ``k`` contiguous groups; fold ``i`` tests on group ``i``
    and validates on group ``i - 1`` (cyclically) when ``k >= 3``.
    """
    subjects = list(table.subjects)
    k = len(subjects) if k is None else _check_k(k)
    if len(subjects) < max(k, 2):
        raise SplitError(f"cross_subject_kfold: {k} folds need at least {max(k, 2)} subjects; {table!r}.")
    groups = [[subjects[i] for i in g] for g in np.array_split(np.arange(len(subjects)), k)]
    splits = []
    for fold in range(k):
        v = (fold - 1) % k if k >= 3 else None
        train = [s for j, g in enumerate(groups) if j not in (fold, v) for s in g]
        val = groups[v] if v is not None else []
        splits.append(_finish("cross_subject", table, _subject_windows(table, train),
                              _subject_windows(table, val), _subject_windows(table, groups[fold]),
                              fold=fold, n_folds=k))
    return splits


def make_splits(table: WindowTable, kind: str = "within_session", k: int | None = None, **kwargs: Any) -> list[Split]:
    """Config-friendly entry point: ``k`` None/1 gives one split, ``k >= 2`` a k-fold family.

    Args:
        table: The windows.
        kind: ``"within_session"``, ``"cross_session"`` or ``"cross_subject"``.
        k: Number of folds (cross-session k-fold always leaves one session out; ``k`` is
            ignored there beyond selecting the k-fold variant).
        **kwargs: Passed to the chosen function (``gap``, ``val_fraction``, ...).

    Returns:
        A list of splits (one when ``k`` is None or 1).

    Example:
        >>> make_splits(table, "within_session", k=None, test_fraction=0.3)
    """
    if kind not in SPLIT_KINDS:
        raise InputError(f"split kind must be one of {SPLIT_KINDS}; got {kind!r}.")
    single = k is None or int(k) == 1
    if kind == "within_session":
        return [within_session_split(table, **kwargs)] if single else within_session_kfold(table, int(k), **kwargs)
    if kind == "cross_session":
        return [cross_session_split(table, **kwargs)] if single else cross_session_kfold(table, **kwargs)
    return [cross_subject_split(table, **kwargs)] if single else cross_subject_kfold(table, int(k), **kwargs)
