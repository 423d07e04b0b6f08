"""Batch composition: which windows share a batch, and which rank gets which batch.

Four strategies, all batch samplers (they yield lists of dataset indices, for
``DataLoader(batch_sampler=...)``):

* :class:`SessionBatchSampler` — every batch comes from one session (same channels, so batches
  stack without padding).
* :class:`SubjectBatchSampler` — every batch comes from one subject (sessions may differ in
  channels; collate pads and masks them).
* :class:`BalancedClassBatchSampler` — every batch holds (nearly) as many windows of each class.
* :class:`RandomBatchSampler` — plain random batches over everything.

Indices follow the layout of ``torch.utils.data.ConcatDataset``: dataset ``k`` of sizes
``dataset_sizes`` owns indices ``sum(sizes[:k]) ... sum(sizes[:k+1]) - 1``.

**Distributed training.** The samplers shard themselves: each takes ``num_replicas`` and
``rank`` (defaulting from ``torch.distributed`` when it is initialized), builds the same global
list of batches on every rank from ``(seed, epoch)``, deals batch ``i`` to rank
``i % num_replicas`` and truncates so every rank gets exactly ``len(self)`` batches (dropping at
most ``num_replicas - 1`` batches of the epoch). Equal counts matter: a rank with one batch more
than the others crashes gloo and hangs NCCL.

Two Lightning 2.6 behaviours these samplers deal with (checked in
``pytorch_lightning/trainer/connectors/data_connector.py`` and ``pytorch_lightning/utilities/data.py``):

* With ``Trainer(use_distributed_sampler=True)`` (the default) Lightning rebuilds a custom batch
  sampler around a ``DistributedSampler``. Rebuilt that way these samplers would ignore it and
  every rank would see the same batches, so the constructor refuses a sampler in place of its
  first argument with :class:`SamplerInjectionError`. :class:`~neurocrane.data.iEEGDataModule`
  turns the injection off for its own loaders; with a hand-made ``DataLoader`` pass
  ``Trainer(use_distributed_sampler=False)``.
* Lightning calls ``set_epoch`` on ``dataloader.sampler`` and ``dataloader.batch_sampler.sampler``,
  never on the batch sampler. So each batch sampler exposes a ``sampler`` attribute whose
  ``set_epoch`` forwards to the batch sampler's own ``set_epoch``.

Example:
    >>> sampler = SessionBatchSampler([100, 40], batch_size=16, shuffle=True, drop_last=True, seed=0)
    >>> len(sampler)  # 6 batches from the first session, 2 from the second
    8
    >>> sampler.set_epoch(1)
    >>> all(len(b) == 16 for b in sampler)
    True
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from neurocrane.errors import InputError, NeuroCraneError

__all__ = [
    "SamplerInjectionError",
    "SessionBatchSampler",
    "SubjectBatchSampler",
    "BalancedClassBatchSampler",
    "RandomBatchSampler",
    "distributed_defaults",
]


class SamplerInjectionError(NeuroCraneError, TypeError):
    """A framework tried to rebuild a rank-aware batch sampler around a distributed sampler."""


def distributed_defaults(num_replicas: int | None = None, rank: int | None = None) -> tuple[int, int]:
    """Resolve ``(num_replicas, rank)``: given values win, then ``torch.distributed``, then ``(1, 0)``.

    Args:
        num_replicas: Number of processes that share the data, or ``None``.
        rank: This process's rank in ``[0, num_replicas)``, or ``None``.

    Returns:
        The validated pair ``(num_replicas, rank)``.

    Example:
        >>> distributed_defaults()  # outside a process group
        (1, 0)
    """
    initialized = torch.distributed.is_available() and torch.distributed.is_initialized()
    if num_replicas is None:
        num_replicas = torch.distributed.get_world_size() if initialized else 1
    if rank is None:
        rank = torch.distributed.get_rank() if initialized else 0
    if int(num_replicas) != num_replicas or num_replicas < 1:
        raise InputError(f"num_replicas must be a positive integer; got {num_replicas!r}.")
    if int(rank) != rank or not 0 <= rank < num_replicas:
        raise InputError(f"rank must be an integer in [0, {num_replicas}); got {rank!r}.")
    return int(num_replicas), int(rank)


class _EpochForwarder:
    """What Lightning finds at ``batch_sampler.sampler``: forwards ``set_epoch`` to the owner."""

    def __init__(self, owner: _RankAwareBatchSampler):
        self._owner = owner

    def set_epoch(self, epoch: int) -> None:
        self._owner.set_epoch(epoch)

    def __repr__(self) -> str:
        return f"<set_epoch forwarder of {type(self._owner).__name__}>"


def _check_batch_size(batch_size: int, where: str) -> int:
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise InputError(f"{where}: batch_size must be a positive integer; got {batch_size!r}.")
    return int(batch_size)


def _refuse_sampler(first: Any, where: str) -> None:
    if isinstance(first, Sampler):
        raise SamplerInjectionError(
            f"{where} was rebuilt around a {type(first).__name__}: a framework (usually Lightning with "
            "use_distributed_sampler=True) tried to inject a distributed sampler. neurocrane's batch "
            "samplers already shard by rank; injecting one would give every rank the same batches. Use "
            "neurocrane.data.iEEGDataModule (it turns the injection off) or "
            "Trainer(use_distributed_sampler=False)."
        )


def _check_sizes(dataset_sizes: Sequence[int], where: str) -> np.ndarray:
    _refuse_sampler(dataset_sizes, where)
    sizes = np.asarray(list(dataset_sizes), dtype=np.int64)
    if sizes.ndim != 1 or sizes.size == 0 or (sizes < 0).any():
        raise InputError(
            f"{where}: dataset_sizes must be a non-empty list of non-negative ints (one per session); "
            f"got {list(dataset_sizes)!r}."
        )
    if sizes.sum() == 0:
        raise InputError(f"{where}: every dataset is empty (dataset_sizes={sizes.tolist()}); nothing to sample.")
    return sizes


class _RankAwareBatchSampler(Sampler[list[int]]):
    """Shared machinery: epoch-seeded global batches, dealt round-robin to equal-length ranks."""

    def __init__(
        self,
        batch_size: int,
        shuffle: bool,
        drop_last: bool,
        seed: int,
        num_replicas: int | None,
        rank: int | None,
    ):
        name = type(self).__name__
        self.batch_size = _check_batch_size(batch_size, name)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = int(seed)
        self.num_replicas, self.rank = distributed_defaults(num_replicas, rank)
        self.epoch = 0
        self.sampler = _EpochForwarder(self)

    # -- subclasses implement these two -------------------------------------------------
    def _global_batches(self, rng: np.random.Generator | None) -> list[np.ndarray]:
        """All batches of one epoch, identical on every rank; ``rng`` is None when not shuffling."""
        raise NotImplementedError

    def _n_global_batches(self) -> int:
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------
    def _check_enough_batches(self) -> None:
        n = self._n_global_batches()
        if n < self.num_replicas:
            raise InputError(
                f"{type(self).__name__}: an epoch has {n} batch(es) for {self.num_replicas} replicas, so some "
                "rank would get none. Use a smaller batch_size, drop_last=False, more data, or fewer devices."
            )

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch; the batch order is a function of ``(seed, epoch)`` only.

        Args:
            epoch: Epoch number (Lightning passes the number of epochs processed so far).
        """
        self.epoch = int(epoch)

    def _rng(self) -> np.random.Generator | None:
        return np.random.default_rng([self.seed, self.epoch]) if self.shuffle else None

    def __len__(self) -> int:
        return self._n_global_batches() // self.num_replicas

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._global_batches(self._rng())
        per_rank = len(batches) // self.num_replicas
        for batch in batches[self.rank :: self.num_replicas][:per_rank]:
            yield batch.tolist()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(batches={len(self)}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
            f"drop_last={self.drop_last}, seed={self.seed}, epoch={self.epoch}, "
            f"rank={self.rank}/{self.num_replicas})"
        )


def _chunk(indices: np.ndarray, batch_size: int, drop_last: bool) -> list[np.ndarray]:
    stop = len(indices) - len(indices) % batch_size if drop_last else len(indices)
    return [indices[i : min(i + batch_size, stop)] for i in range(0, stop, batch_size)]


def _n_chunks(n: int, batch_size: int, drop_last: bool) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)


class _GroupBatchSampler(_RankAwareBatchSampler):
    """Batches that never mix groups (sessions or subjects)."""

    def __init__(self, groups: list[np.ndarray], **kwargs: Any):
        super().__init__(**kwargs)
        self._groups = [g for g in groups if len(g)]
        self._check_enough_batches()

    def _n_global_batches(self) -> int:
        return sum(_n_chunks(len(g), self.batch_size, self.drop_last) for g in self._groups)

    def _global_batches(self, rng: np.random.Generator | None) -> list[np.ndarray]:
        batches: list[np.ndarray] = []
        for group in self._groups:
            order = group if rng is None else rng.permutation(group)
            batches.extend(_chunk(order, self.batch_size, self.drop_last))
        if rng is not None:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches


def _offsets(sizes: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(sizes)])


class SessionBatchSampler(_GroupBatchSampler):
    """Batches whose windows all come from one session (one dataset of a ``ConcatDataset``).

    Args:
        dataset_sizes: Number of windows of each session, in ``ConcatDataset`` order.
        batch_size: Windows per batch.
        shuffle: Shuffle windows within each session and the order of batches.
        drop_last: Drop each session's last incomplete batch (otherwise it is kept, smaller).
        seed: Seed of the shuffle; the order is a function of ``(seed, epoch)``.
        num_replicas: Number of ranks sharing the data (default: from ``torch.distributed``).
        rank: This rank (default: from ``torch.distributed``).

    Example:
        >>> s = SessionBatchSampler([10, 6], batch_size=4, shuffle=False, drop_last=False)
        >>> list(s)
        [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9], [10, 11, 12, 13], [14, 15]]
    """

    def __init__(
        self,
        dataset_sizes: Sequence[int],
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ):
        sizes = _check_sizes(dataset_sizes, "SessionBatchSampler")
        self.dataset_sizes = tuple(int(s) for s in sizes)
        off = _offsets(sizes)
        groups = [np.arange(off[k], off[k + 1]) for k in range(len(sizes))]
        super().__init__(
            groups, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, seed=seed,
            num_replicas=num_replicas, rank=rank,
        )


class SubjectBatchSampler(_GroupBatchSampler):
    """Batches whose windows all come from one subject (possibly several of its sessions).

    Args:
        dataset_sizes: Number of windows of each session, in ``ConcatDataset`` order.
        subject_ids: The subject of each session (same length as ``dataset_sizes``).
        batch_size, shuffle, drop_last, seed, num_replicas, rank: As for
            :class:`SessionBatchSampler` (``drop_last`` applies per subject).

    Example:
        >>> s = SubjectBatchSampler([3, 3, 4], ["a", "b", "a"], batch_size=7, shuffle=False)
        >>> list(s)
        [[0, 1, 2, 6, 7, 8, 9], [3, 4, 5]]
    """

    def __init__(
        self,
        dataset_sizes: Sequence[int],
        subject_ids: Sequence[str],
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ):
        sizes = _check_sizes(dataset_sizes, "SubjectBatchSampler")
        subject_ids = [str(s) for s in subject_ids]
        if len(subject_ids) != len(sizes):
            raise InputError(
                f"SubjectBatchSampler: {len(subject_ids)} subject ids for {len(sizes)} datasets; give the "
                "subject of every session."
            )
        self.dataset_sizes = tuple(int(s) for s in sizes)
        self.subject_ids = tuple(subject_ids)
        off = _offsets(sizes)
        order = list(dict.fromkeys(subject_ids))
        groups = [
            np.concatenate([np.arange(off[k], off[k + 1]) for k in range(len(sizes)) if subject_ids[k] == subj])
            for subj in order
        ]
        super().__init__(
            groups, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, seed=seed,
            num_replicas=num_replicas, rank=rank,
        )


class RandomBatchSampler(_GroupBatchSampler):
    """Plain random batches over all windows (sessions mix; collate pads and masks channels).

    Args:
        dataset_sizes: Number of windows of each dataset (or ``[len(dataset)]``).
        batch_size, shuffle, drop_last, seed, num_replicas, rank: As for
            :class:`SessionBatchSampler` (``drop_last`` drops the one incomplete batch).

    Example:
        >>> s = RandomBatchSampler([5, 5], batch_size=4, drop_last=True, seed=1)
        >>> len(s), sorted(len(b) for b in s)
        (2, [4, 4])
    """

    def __init__(
        self,
        dataset_sizes: Sequence[int],
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ):
        sizes = _check_sizes(dataset_sizes, "RandomBatchSampler")
        self.dataset_sizes = tuple(int(s) for s in sizes)
        super().__init__(
            [np.arange(int(sizes.sum()))], batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
            seed=seed, num_replicas=num_replicas, rank=rank,
        )


class BalancedClassBatchSampler(_RankAwareBatchSampler):
    """Batches that hold (nearly) the same number of windows of every class.

    Each batch takes ``batch_size // n_classes`` windows of every class, plus one extra window for
    ``batch_size % n_classes`` classes (which classes get the extra one rotates from batch to
    batch). An epoch is as long as the largest class needs: every window of the largest class
    appears exactly once; smaller classes are oversampled, each of their windows appearing
    ``floor`` or ``ceil`` of the mean number of times (never a window twice before every window
    of its class was used once). Windows whose label is negative (e.g. ``-1``, unlabelled) are
    never sampled.

    Args:
        labels: Class label of every window (ints; ``ConcatDataset`` order).
        batch_size: Windows per batch; at least the number of classes.
        shuffle: Shuffle within classes and the order of batches. Without shuffling the batches are
            still balanced, drawn in index order.
        drop_last: Drop the last batch if it would be incomplete (it can only be incomplete when
            the largest class does not fill it).
        seed, num_replicas, rank: As for :class:`SessionBatchSampler`.

    Example:
        >>> s = BalancedClassBatchSampler([0] * 12 + [1] * 4, batch_size=4, seed=0)
        >>> len(s)
        6
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray | torch.Tensor,
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ):
        _refuse_sampler(labels, "BalancedClassBatchSampler")
        super().__init__(batch_size, shuffle, drop_last, seed, num_replicas, rank)
        arr = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(list(labels))
        if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
            raise InputError(
                "BalancedClassBatchSampler: labels must be a non-empty 1-D sequence of integer class ids; "
                f"got dtype {arr.dtype}, shape {arr.shape}."
            )
        self.labels = arr.astype(np.int64)
        self.classes = tuple(int(c) for c in np.unique(self.labels[self.labels >= 0]))
        if len(self.classes) < 2:
            raise InputError(
                f"BalancedClassBatchSampler needs at least 2 classes with non-negative labels; found {self.classes}."
            )
        if self.batch_size < len(self.classes):
            raise InputError(
                f"BalancedClassBatchSampler: batch_size {self.batch_size} is smaller than the number of classes "
                f"({len(self.classes)}); a batch could not hold one window of each."
            )
        self._by_class = [np.flatnonzero(self.labels == c) for c in self.classes]
        self._check_enough_batches()

    def _quota(self, batch: int) -> np.ndarray:
        """Windows of each class in batch number ``batch``."""
        k = len(self.classes)
        q = np.full(k, self.batch_size // k)
        extra = self.batch_size % k
        if extra:
            q[(np.arange(extra) + batch * extra) % k] += 1
        return q

    def _n_global_batches(self) -> int:
        # Smallest number of batches in which the largest class is used once (quotas rotate, so
        # count batch by batch; this is at most len(largest class) iterations).
        need = np.array([len(c) for c in self._by_class])
        taken = np.zeros_like(need)
        n = 0
        while not np.all(taken[need == need.max()] >= need.max()):
            taken += self._quota(n)
            n += 1
        if self.drop_last and n and np.any(taken[need == need.max()] > need.max()):
            n -= 1
        return n

    def _global_batches(self, rng: np.random.Generator | None) -> list[np.ndarray]:
        n = self._n_global_batches()
        quotas = np.stack([self._quota(b) for b in range(n)]) if n else np.zeros((0, len(self.classes)), int)
        biggest = max(len(c) for c in self._by_class)
        streams = []
        for k, idx in enumerate(self._by_class):
            total = int(quotas[:, k].sum())
            if len(idx) == biggest:  # the largest class is used exactly once, never oversampled
                total = min(total, len(idx))
            reps = -(-total // len(idx))
            cycles = [idx if rng is None else rng.permutation(idx) for _ in range(reps)]
            streams.append(np.concatenate(cycles)[:total] if cycles else idx[:0])
        pos = np.zeros(len(self.classes), dtype=np.int64)
        batches = []
        for b in range(n):
            parts = []
            for k, q in enumerate(quotas[b]):
                parts.append(streams[k][pos[k] : pos[k] + q])
                pos[k] += q
            batch = np.concatenate(parts)
            batches.append(batch if rng is None else rng.permutation(batch))
        if rng is not None:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches
