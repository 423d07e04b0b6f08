"""Collate window samples into a batch dict, and turn a batch dict into a :class:`NeuralBatch`.

Samples are the dicts :class:`~neurocrane.data.WindowDataset` returns. Windows of one session
share their channels and simply stack. A batch that mixes sessions (subject or random batching)
is laid out on the **union of channel names** in first-seen order: each sample's channels go to
the columns of their names, absent channels are zero and ``channel_mask`` is False there. Within
one subject this lines up the same contacts across sessions; across subjects equal names are only
a shared column, so per-sample ``channel_positions`` travel along.

Batch dict keys:
    ``neural_data`` (B, C, T) float (see *Memory layout*); ``channel_mask`` (B, C) bool (False for padded and bad
    channels); ``channel_names`` tuple of C names; ``channel_positions`` (B, C, 3) float32 mm or
    ``None``; ``sampling_rate`` float; ``labels`` (B,) int64 (``-1`` where a window has no label);
    ``subject_id`` / ``session_id`` lists of B strings; ``start`` (B,) int64 first sample of each
    window in its recording; ``applied`` tuple of pipeline fingerprints already applied.

Memory layout
-------------
Recordings are stored time-major, so a batch collated from a
:class:`~neurocrane.data.windows.WindowRequest` (what ``WindowDataset.__getitems__`` gives a
DataLoader) is one contiguous **time-major** ``(B, T, C)`` block, and ``neural_data`` is its
``(B, C, T)`` view ``block.transpose(1, 2)``: shape and indexing are (batch, channels, time) as
everywhere else, but ``neural_data.is_contiguous()`` is False. Torch ops accept it as is; the
transpose copy, if an op needs one, happens where the batch is used (on the GPU after the
transfer, which preserves strides), not in the loader. Call ``.contiguous()`` if you need
(C, T) memory order. A list of sample dicts is stacked into a contiguous (B, C, T) tensor.

Inside DataLoader worker processes :class:`WindowCollator` writes each batch into a small pool
of named shared-memory blocks that it reuses (fresh shared memory costs a page fault per 4 KiB
page, which dominated loading on virtual machines), and the batch crosses the process boundary
as a token for its block (see :mod:`neurocrane.data.shm_pool`). A block is reused only after the
main process has released every tensor that views it. Without POSIX shared memory, or with
``pool_size=0``, batches take torch's default path (fresh shared memory per batch).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
from torch.utils.data import default_collate, get_worker_info

from neurocrane.batch import NeuralBatch
from neurocrane.data.block_pool import LocalBlockPool
from neurocrane.data.preprocessing import BasicPreprocessor
from neurocrane.data.shm_pool import AVAILABLE as _SHM_AVAILABLE
from neurocrane.data.shm_pool import ShmBlockPool
from neurocrane.data.windows import WindowRequest
from neurocrane.errors import InputError

__all__ = ["collate_windows", "to_neural_batch", "WindowCollator"]


def _same(samples: Sequence[Mapping[str, Any]], key: str, what: str, fix: str) -> Any:
    first = samples[0].get(key)
    for i, s in enumerate(samples[1:], start=1):
        if s.get(key) != first:
            raise InputError(
                f"collate_windows: sample {i} has {what} {s.get(key)!r} but sample 0 has {first!r}; {fix}"
            )
    return first


def collate_windows(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack window samples into one batch dict, padding channels when sessions differ.

    Args:
        samples: Sample dicts with at least ``neural_data`` (C, T); optional ``channel_names``,
            ``channel_positions`` (C, 3), ``channel_mask`` (C,) bool, ``labels``, ``subject_id``,
            ``session_id``, ``start``, ``sampling_rate``, ``applied``.

    Returns:
        The batch dict described in the module docstring.

    Raises:
        InputError: on an empty list, or samples that differ in sampling rate, window length,
            dtype or applied pipelines (they cannot share a batch).

    Example:
        >>> a = {"neural_data": torch.zeros(2, 8), "channel_names": ("A1", "A2"), "sampling_rate": 8.0}
        >>> b = {"neural_data": torch.ones(1, 8), "channel_names": ("B1",), "sampling_rate": 8.0}
        >>> batch = collate_windows([a, b])
        >>> batch["neural_data"].shape, batch["channel_mask"].tolist()
        (torch.Size([2, 3, 8]), [[True, True, False], [False, False, True]])
    """
    if not len(samples):
        raise InputError("collate_windows: got an empty list of samples; a batch needs at least one window.")
    if isinstance(samples, WindowRequest):
        return _collate_request(samples, _new_block)[0]
    datas = [torch.as_tensor(s["neural_data"]) for s in samples]
    for i, x in enumerate(datas):
        if x.ndim != 2:
            raise InputError(
                f"collate_windows: sample {i} neural_data must be (channels, time); got shape {tuple(x.shape)}."
            )
    n_times = {x.shape[1] for x in datas}
    if len(n_times) > 1:
        raise InputError(
            f"collate_windows: windows have different lengths {sorted(n_times)} samples; every window of a "
            "batch must have the same context_length and sampling rate."
        )
    if len({x.dtype for x in datas}) > 1:
        raise InputError(f"collate_windows: windows have different dtypes {sorted({str(x.dtype) for x in datas})}.")
    rate = _same(samples, "sampling_rate", "sampling rate", "resample recordings to one rate before batching them.")
    applied = _same(
        samples, "applied", "applied pipelines",
        "recordings preprocessed by different pipelines cannot share a batch; preprocess them all the same way.",
    )
    names = [tuple(s["channel_names"]) if s.get("channel_names") is not None else None for s in samples]
    if any(n is None for n in names):
        if len({x.shape[0] for x in datas}) > 1 or any(n is not None for n in names):
            raise InputError(
                "collate_windows: some samples lack channel_names while channel counts or names differ; "
                "give every sample its channel_names so channels can be matched."
            )
        names = [tuple(str(i) for i in range(datas[0].shape[0]))] * len(samples)
    for i, n in enumerate(names):
        if len(n) != datas[i].shape[0]:
            raise InputError(
                f"collate_windows: sample {i} has {len(n)} channel names for {datas[i].shape[0]} channels."
            )

    homogeneous = all(n == names[0] for n in names)
    union = names[0] if homogeneous else tuple(dict.fromkeys(c for n in names for c in n))
    B, C, T = len(samples), len(union), datas[0].shape[1]
    if homogeneous:
        # default_collate stacks into shared memory inside a worker, so sending the batch to
        # the main process costs no extra copy; it also transposes time-major views in one pass.
        signals = default_collate(datas)
        present = torch.ones(B, C, dtype=torch.bool)
        columns = [torch.arange(C)] * B
    else:
        col = {c: j for j, c in enumerate(union)}
        signals = datas[0].new_zeros(B, C, T)
        present = torch.zeros(B, C, dtype=torch.bool)
        columns = []
        for i, (x, n) in enumerate(zip(datas, names, strict=True)):
            idx = torch.tensor([col[c] for c in n], dtype=torch.long)
            signals[i, idx] = x
            present[i, idx] = True
            columns.append(idx)

    mask = present.clone()
    for i, s in enumerate(samples):
        m = s.get("channel_mask")
        if m is not None:
            m = torch.as_tensor(m, dtype=torch.bool)
            if m.shape != (len(names[i]),):
                raise InputError(f"collate_windows: sample {i} channel_mask must have shape ({len(names[i])},).")
            mask[i, columns[i]] &= m

    positions = None
    if any(s.get("channel_positions") is not None for s in samples):
        positions = torch.zeros(B, C, 3, dtype=torch.float32)
        for i, s in enumerate(samples):
            p = s.get("channel_positions")
            if p is not None:
                positions[i, columns[i]] = torch.as_tensor(p, dtype=torch.float32)

    labels = torch.tensor([-1 if s.get("labels") is None else int(s["labels"]) for s in samples], dtype=torch.long)
    return {
        "neural_data": signals,
        "channel_mask": mask,
        "channel_names": union,
        "channel_positions": positions,
        "sampling_rate": None if rate is None else float(rate),
        "labels": labels,
        "subject_id": [str(s.get("subject_id", "")) for s in samples],
        "session_id": [str(s.get("session_id", "")) for s in samples],
        "start": torch.tensor([int(s.get("start", -1)) for s in samples], dtype=torch.long),
        "applied": tuple(applied or ()),
    }


def _new_block(shape: tuple[int, int, int]) -> torch.Tensor:
    return torch.empty(shape, dtype=torch.float32)


def _collate_request(
    request: WindowRequest, new_block: Callable[[tuple[int, int, int]], torch.Tensor], clean: bool = False
) -> tuple[dict[str, Any], int]:
    """Batch the windows of a :class:`WindowRequest`: one copy per window into a time-major block
    from ``new_block((B, T, C))``; metadata built once per session.

    Returns the batch and the number of non-finite values read; with ``clean`` they are replaced
    by 0 and bad channels zeroed while each window is in cache (``WindowDataset.read_into``)."""
    groups = request.groups()
    first = groups[0][0]
    for ds, _ in groups[1:]:
        if ds.window_samples != first.window_samples:
            raise InputError(
                f"collate_windows: windows have different lengths {sorted({first.window_samples, ds.window_samples})} "
                "samples; every window of a batch must have the same context_length and sampling rate."
            )
        if ds.recording.sampling_rate != first.recording.sampling_rate:
            raise InputError(
                f"collate_windows: {ds.subject_id}/{ds.session_id} has sampling rate {ds.recording.sampling_rate!r} "
                f"but {first.subject_id}/{first.session_id} has {first.recording.sampling_rate!r}; resample recordings "
                "to one rate before batching them."
            )
        if ds.applied != first.applied:
            raise InputError(
                f"collate_windows: {ds.subject_id}/{ds.session_id} has applied pipelines {ds.applied!r} but "
                f"{first.subject_id}/{first.session_id} has {first.applied!r}; recordings preprocessed by different "
                "pipelines cannot share a batch; preprocess them all the same way."
            )
    names = [ds.channel_names for ds, _ in groups]
    homogeneous = all(n == names[0] for n in names)
    union = names[0] if homogeneous else tuple(dict.fromkeys(c for n in names for c in n))
    col = None if homogeneous else {c: j for j, c in enumerate(union)}
    B, T, C = len(request), first.window_samples, len(union)
    block = new_block((B, T, C))
    out = block.numpy()
    if not homogeneous:
        out.fill(0.0)  # channels a session lacks stay zero (and masked)
    # Metadata in NumPy: every torch call releases and retakes the GIL, which loader threads
    # would then hand back and forth between them.
    mask = np.zeros((B, C), dtype=bool)
    has_positions = any(ds._positions is not None for ds, _ in groups)
    positions = np.zeros((B, C, 3), dtype=np.float32) if has_positions else None
    labels = np.empty(B, dtype=np.int64)
    starts = np.empty(B, dtype=np.int64)
    subjects: list[str] = [""] * B
    sessions: list[str] = [""] * B
    reads = []  # (dataset, window positions, batch rows, columns of `out`)
    for ds, rows in groups:
        pos = request.positions[rows]
        if homogeneous:  # the common case (session batching): every column in order
            reads.append((ds, pos, rows, slice(0, C)))
            mask[rows] = ds._good
            if positions is not None and ds._positions is not None:
                positions[rows] = ds._positions_array
        else:
            idx = np.array([col[c] for c in ds.channel_names], dtype=np.int64)
            contiguous = len(idx) and bool((np.diff(idx) == 1).all())
            columns = slice(int(idx[0]), int(idx[-1]) + 1) if contiguous else idx
            reads.append((ds, pos, rows, columns))
            good = np.zeros(C, dtype=bool)
            good[idx] = ds._good
            mask[rows] = good
            if positions is not None and ds._positions is not None:
                p = np.zeros((C, 3), dtype=np.float32)
                p[idx] = ds._positions_array
                positions[rows] = p
        labels[rows] = ds.labels[pos]
        starts[rows] = ds.starts[pos]
        subject, session = str(ds.subject_id), str(ds.session_id)
        for r in rows.tolist():
            subjects[r], sessions[r] = subject, session
    n_nonfinite = _read_windows(reads, out, clean, request.run_parts, request.n_parts)
    batch = {
        "neural_data": block.transpose(1, 2),  # (B, C, T) view of the time-major block
        "channel_mask": torch.from_numpy(mask),
        "channel_names": union,
        "channel_positions": None if positions is None else torch.from_numpy(positions),
        "sampling_rate": float(first.recording.sampling_rate),
        "labels": torch.from_numpy(labels),
        "subject_id": subjects,
        "session_id": sessions,
        "start": torch.from_numpy(starts),
        "applied": tuple(first.applied),
    }
    return batch, n_nonfinite


def _read_windows(
    reads: list[tuple[Any, np.ndarray, np.ndarray, slice | np.ndarray]],
    out: np.ndarray,
    clean: bool,
    run_parts: Callable[[list[Callable[[], int]]], list[int]] | None,
    n_parts: int,
) -> int:
    """Copy every window of a batch into ``out``; with ``run_parts``, as pieces (runs of whole
    windows, about four per each of the ``n_parts`` threads) that loader threads copy together.
    Returns the number of non-finite values read."""
    n_windows = sum(len(rows) for _, _, rows, _ in reads)
    if run_parts is None or n_parts < 2 or n_windows < 2:
        return sum(ds.read_into(pos, out, rows=rows, columns=columns, clean=clean) for ds, pos, rows, columns in reads)
    # Several pieces per thread: a helper thread that wakes late still finds work, and the last
    # piece anyone waits for is short.
    size = max(1, -(-n_windows // (4 * n_parts)))
    parts = []
    for ds, pos, rows, columns in reads:
        copy = ds._window_copier(out, columns, clean)
        pos, rows = pos.tolist(), rows.tolist()
        for i in range(0, len(rows), size):
            parts.append(partial(copy, pos[i:i + size], rows[i:i + size]))
    return sum(run_parts(parts))


def to_neural_batch(batch: Mapping[str, Any]) -> NeuralBatch:
    """Build the :class:`NeuralBatch` a model pipeline runs on from a collated batch dict.

    Channel positions are shared by a NeuralBatch, so they are kept only when every sample agrees
    on the position of every channel it has (always true within a session or a subject);
    otherwise they are dropped (``None``). The mask, names, rate and applied record travel along.

    Args:
        batch: A dict from :func:`collate_windows` (after :class:`BasicPreprocessor` if you like).

    Returns:
        A NeuralBatch on the device of ``batch["neural_data"]``.

    Example:
        >>> nb = to_neural_batch(collate_windows([{"neural_data": torch.zeros(2, 8), "sampling_rate": 8.0}]))
        >>> nb.spec.shape
        (1, 2, 8)
    """
    x = batch["neural_data"]
    mask = batch.get("channel_mask")
    positions = batch.get("channel_positions")
    shared = None
    if positions is not None:
        pos = torch.as_tensor(positions)
        have = (mask if mask is not None else torch.ones(pos.shape[:2], dtype=torch.bool)).to(pos.device)
        # A channel's position is the one any sample that has it gives; check they all agree.
        first = torch.argmax(have.to(torch.int8), dim=0)
        ref = pos[first, torch.arange(pos.shape[1], device=pos.device)]
        agree = torch.isclose(pos, ref.unsqueeze(0), atol=1e-4, equal_nan=True) | ~have.unsqueeze(-1)
        if bool(agree.all()):
            shared = ref.to(device=x.device, dtype=x.dtype if x.is_floating_point() else torch.float32)
    return NeuralBatch(
        signals=x,
        sampling_rate=batch.get("sampling_rate"),
        channel_names=batch.get("channel_names"),
        channel_positions=shared,
        channel_mask=None if mask is None else mask.to(x.device),
        applied=tuple(batch.get("applied", ())),
    )


class WindowCollator:
    """``collate_fn`` for DataLoaders: :func:`collate_windows`, then an optional clean-up step.

    A class (not a closure) so DataLoader workers started with ``spawn`` can pickle it. Batches of
    a :class:`~neurocrane.data.windows.WindowRequest` (what window datasets give a DataLoader) are
    built in reused blocks: a :class:`~neurocrane.data.block_pool.LocalBlockPool` in the main
    process and its loader threads, a pool of named shared memory in worker processes (module
    docstring). With a :class:`~neurocrane.data.BasicPreprocessor` the clean-up is done on each
    window while it is read (in cache; :meth:`WindowDataset.read_into`) and the preprocessor only
    records the counts, which gives the same batch as running it afterwards.

    Args:
        preprocessor: Called on the batch dict after collation, e.g. a
            :class:`~neurocrane.data.BasicPreprocessor`; ``None`` for none.
        pool_size: Batch-sized blocks kept for reuse (per worker process, or for the main process
            and its threads). They stay allocated while the collator lives; a batch you keep
            keeps its block. 0 turns reuse off.

    Example:
        >>> from neurocrane.data.preprocessing import BasicPreprocessor
        >>> loader = DataLoader(ds, batch_size=8, collate_fn=WindowCollator(BasicPreprocessor()))
    """

    def __init__(self, preprocessor: Any = None, pool_size: int = 4):
        if int(pool_size) != pool_size or pool_size < 0:
            raise InputError(f"WindowCollator: pool_size must be a non-negative int; got {pool_size!r}.")
        self.preprocessor = preprocessor
        self.pool_size = int(pool_size)
        self._pool: ShmBlockPool | None = None
        self._local = LocalBlockPool(self.pool_size) if self.pool_size else None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_pool": None, "_local": None}  # pools belong to the process that made them

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = LocalBlockPool(self.pool_size) if self.pool_size else None

    def _worker_pool(self) -> ShmBlockPool | None:
        if not self.pool_size or not _SHM_AVAILABLE or get_worker_info() is None:
            return None
        if self._pool is None or self._pool.pid != os.getpid():  # (a forked copy is not ours)
            self._pool = ShmBlockPool(self.pool_size)
        return self._pool

    def _fused(self) -> bool:
        """Whether the clean-up can run inside the read: a plain BasicPreprocessor (not a subclass
        that changes what it does)."""
        return self.preprocessor is not None and type(self.preprocessor).__call__ is BasicPreprocessor.__call__

    def _finish(self, batch: dict[str, Any], n_nonfinite: int, fused: bool) -> dict[str, Any]:
        if fused:
            return self.preprocessor.record(batch, n_nonfinite)
        return batch if self.preprocessor is None else self.preprocessor(batch)

    def __call__(self, samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if not isinstance(samples, WindowRequest):
            batch = collate_windows(samples)
            return batch if self.preprocessor is None else self.preprocessor(batch)
        fused = self._fused()
        pool = self._worker_pool()
        if pool is None:
            local = self._local

            def local_block(shape: tuple[int, int, int]) -> torch.Tensor:
                block = None if local is None else local.take(shape)
                return _new_block(shape) if block is None else block

            return self._finish(*_collate_request(samples, local_block, clean=fused), fused)
        taken: list[int | None] = []

        def new_block(shape: tuple[int, int, int]) -> torch.Tensor:
            got = pool.take(shape)
            if got is None:  # every block busy: fresh shared memory, torch's default path
                taken.append(None)
                return torch.empty(shape, dtype=torch.float32).share_memory_()
            taken.append(got[1])
            return got[0]

        try:
            batch = self._finish(*_collate_request(samples, new_block, clean=fused), fused)
        except BaseException:
            for slot in taken:
                if slot is not None:
                    pool.drop(slot)
            raise
        slot = taken[0] if taken else None
        return batch if slot is None else pool.lease(batch, slot)
