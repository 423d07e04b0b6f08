"""Named shared-memory blocks a DataLoader worker reuses for its batches; only a token crosses.

A worker builds each batch in one of a few blocks of POSIX shared memory it owns
(:class:`ShmBlockPool`). The batch dict pickles (:class:`LeasedBatch`) to the block's name,
offset, shape and strides plus the small tensors by value, so the main process maps the segment
once (mappings are cached per pool) and views it with ``torch.frombuffer`` without a copy and
without the file-descriptor round trip torch's own sharing costs per storage.

A block is reused only after the main process has dropped every tensor that views it: the
worker marks the block busy in a shared flag segment when it hands it over, and the main
process clears the flag from a ``weakref.finalize`` on the storage it built. The worker unlinks
its segments when it exits (``multiprocessing.util.Finalize``, which runs in worker processes),
and sets the pool's *alive* byte to 0 so the main process drops its mappings of the pool. A
killed worker's segments are unlinked by Python's resource tracker. The main process attaches
with ``shm_open`` + ``mmap`` (not ``SharedMemory``), so it never registers the worker's segments
with the resource tracker (Python < 3.13 would unlink and warn about them at exit).
"""

from __future__ import annotations

import math
import mmap
import os
import weakref
from collections.abc import Mapping
from multiprocessing import shared_memory, util
from typing import Any

import numpy as np
import torch

try:
    import _posixshmem  # POSIX shm_open, the module SharedMemory itself uses
except ImportError:  # Windows: no pool, batches take torch's default path
    _posixshmem = None

AVAILABLE = _posixshmem is not None
_FREE, _BUSY = 0, 1

# Main process: per pool token, (flags array, {slot: (segment name, mmap)}).
_ATTACHED: dict[str, tuple[np.ndarray, dict[int, tuple[str, mmap.mmap]]]] = {}


def _map(name: str) -> mmap.mmap:
    fd = _posixshmem.shm_open("/" + name, os.O_RDWR, mode=0o600)
    try:
        return mmap.mmap(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def _create(nbytes: int) -> shared_memory.SharedMemory:
    """A new segment, registered with the resource tracker (which unlinks it if the worker is
    killed); its own mapping is closed at once and views use :func:`_map`, so no exported buffer
    blocks closing it."""
    seg = shared_memory.SharedMemory(create=True, size=nbytes)
    seg.close()
    return seg


def _release(flags: np.ndarray, slot: int) -> None:
    flags[slot] = _FREE


def _sweep() -> None:
    """Forget the mappings of pools whose worker has closed them (live tensors keep theirs)."""
    for token in [t for t, (flags, _) in _ATTACHED.items() if flags[-1] == 0]:
        del _ATTACHED[token]


def _receive(batch: dict[str, Any], small: dict[str, np.ndarray], lease: tuple[Any, ...]) -> dict[str, Any]:
    """Unpickling side of a leased batch (main process): view the block, free it when the view dies."""
    key, token, flags_name, slot, name, nbytes, size, stride, offset = lease
    pool = _ATTACHED.get(token)
    if pool is None:
        _sweep()
        pool = _ATTACHED[token] = (np.frombuffer(_map(flags_name), dtype=np.uint8), {})
    flags, blocks = pool
    seen = blocks.get(slot)
    if seen is None or seen[0] != name:  # a new or regrown block in this slot
        seen = blocks[slot] = (name, _map(name))
    storage = torch.frombuffer(seen[1], dtype=torch.float32, count=nbytes // 4)
    batch[key] = storage.as_strided(size, stride, offset)
    batch.update({k: torch.from_numpy(v) for k, v in small.items()})
    weakref.finalize(batch[key].untyped_storage(), _release, flags, slot)
    return batch


class LeasedBatch(dict):
    """A batch dict whose ``neural_data`` views a pool block; pickles to a token for the block plus
    everything else (tensors by value: sharing each small one costs more than copying it)."""

    def __init__(self, batch: Mapping[str, Any], lease: tuple[Any, ...]):
        super().__init__(batch)
        self._lease = lease

    def __reduce__(self) -> tuple[Any, ...]:
        key = self._lease[0]
        rest = {k: v for k, v in self.items() if k != key and not isinstance(v, torch.Tensor)}
        small = {k: v.numpy() for k, v in self.items() if k != key and isinstance(v, torch.Tensor)}
        return _receive, (rest, small, self._lease)


class ShmBlockPool:
    """Up to ``size`` reusable float32 blocks of named shared memory (one pool per worker process).

    With every block busy, :meth:`take` returns ``None`` and the caller uses fresh memory.
    """

    def __init__(self, size: int):
        self.size = size
        self.pid = os.getpid()
        self.token = f"{self.pid}-{os.urandom(8).hex()}"
        self._flags_shm = _create(size + 1)  # + the alive byte
        self.flags = np.frombuffer(_map(self._flags_shm.name), dtype=np.uint8)
        self.flags[:] = _FREE
        self.flags[-1] = 1
        self.segments: list[shared_memory.SharedMemory | None] = []
        self.blocks: list[torch.Tensor | None] = []
        # (runs at worker exit, unlike atexit and weakref.finalize; calling it twice is a no-op)
        self._finalizer = util.Finalize(self, ShmBlockPool._close_segments,
                                        args=(self.flags, self._flags_shm, self.segments), exitpriority=10)

    @property
    def names(self) -> list[str]:
        """Names of the segments this pool owns (flags first)."""
        return [self._flags_shm.name] + [s.name for s in self.segments if s is not None]

    def take(self, shape: tuple[int, int, int]) -> tuple[torch.Tensor, int] | None:
        """A free block viewed as float32 ``shape`` (marked busy) and its slot, or ``None``."""
        nbytes = math.prod(shape) * 4
        if nbytes == 0:
            return None
        free = np.flatnonzero(self.flags[: len(self.blocks)] == _FREE)
        if len(free):
            slot = int(free[0])
        elif len(self.blocks) < self.size:
            slot = len(self.blocks)
            self.blocks.append(None)
            self.segments.append(None)
        else:
            return None
        if self.blocks[slot] is None or self.blocks[slot].numel() < nbytes:
            self.drop(slot)
            seg = _create(nbytes)
            self.segments[slot] = seg
            self.blocks[slot] = torch.frombuffer(_map(seg.name), dtype=torch.uint8, count=nbytes)
        self.flags[slot] = _BUSY
        return self.blocks[slot][:nbytes].view(torch.float32).view(shape), slot

    def lease(self, batch: dict[str, Any], slot: int, key: str = "neural_data") -> dict[str, Any]:
        """Wrap ``batch`` so it pickles to a token for block ``slot``; if ``batch[key]`` no longer
        views the block (e.g. a preprocessor replaced it), retire the block and return ``batch``."""
        block = self.blocks[slot]
        x = batch.get(key)
        if (isinstance(x, torch.Tensor) and x.dtype == torch.float32
                and x.untyped_storage().data_ptr() == block.untyped_storage().data_ptr()):
            nbytes = x.untyped_storage().nbytes()
            lease = (key, self.token, self._flags_shm.name, slot, self.segments[slot].name, nbytes,
                     tuple(x.shape), tuple(x.stride()), x.storage_offset())
            return LeasedBatch(batch, lease)
        self.drop(slot)  # it may live on elsewhere in the batch: never write to it again
        return batch

    def drop(self, slot: int) -> None:
        """Retire the block in ``slot`` (unlinked now; memory freed once nothing maps it)."""
        seg = self.segments[slot]
        if seg is not None:
            seg.unlink()
        self.segments[slot] = None
        self.blocks[slot] = None
        self.flags[slot] = _FREE

    @staticmethod
    def _close_segments(flags: np.ndarray, flags_shm: shared_memory.SharedMemory,
                        segments: list[shared_memory.SharedMemory | None]) -> None:
        flags[-1] = 0  # tells the main process to drop its mappings of this pool
        for seg in segments:
            if seg is not None:
                seg.unlink()
        segments[:] = [None] * len(segments)
        flags_shm.unlink()

    def close(self) -> None:
        """Unlink every segment of the pool (also done when the worker process exits)."""
        self.blocks[:] = [None] * len(self.blocks)
        self._finalizer()
