"""Reusable batch buffers inside one process: a block goes back to the pool when its batch dies.

Writing every batch into fresh memory costs a page fault per 4 KiB page and a cold cache; a
loader that writes into a few buffers it reuses does neither. The catch is that a buffer may be
reused only once nobody holds the batch built in it any more. :class:`LocalBlockPool` hands out
each block as a tensor over a fresh NumPy view of the buffer; the tensor's storage keeps that
view alive, and a ``weakref.finalize`` on the view returns the buffer when the storage (with
every tensor, slice or transpose that shares it) is gone. A consumer that keeps batches simply
keeps their blocks; when every block is held, :meth:`take` returns ``None`` and the caller
allocates fresh memory. Taking and returning are thread-safe (loader threads take, the
consumer's thread returns).

The cross-process version of the same idea, for DataLoader worker processes, is
:mod:`neurocrane.data.shm_pool`.
"""

from __future__ import annotations

import math
import threading
import weakref

import numpy as np
import torch

from neurocrane.errors import InputError

__all__ = ["LocalBlockPool"]


class LocalBlockPool:
    """Up to ``size`` reusable float32 buffers, each handed out as one batch tensor at a time.

    Args:
        size: Most buffers the pool keeps (each as large as the largest batch it served).

    Example:
        >>> pool = LocalBlockPool(2)
        >>> x = pool.take((16, 2048, 64))
        >>> pool.n_free
        0
        >>> del x
        >>> pool.n_free
        1
    """

    def __init__(self, size: int):
        if int(size) != size or size < 1:
            raise InputError(f"LocalBlockPool: size must be a positive int; got {size!r}.")
        self.size = int(size)
        self._free: list[np.ndarray] = []
        self._n_buffers = 0
        self._lock = threading.Lock()

    @property
    def n_free(self) -> int:
        """Buffers ready for reuse."""
        return len(self._free)

    @property
    def n_buffers(self) -> int:
        """Buffers the pool owns (free or held by a live batch)."""
        return self._n_buffers

    def take(self, shape: tuple[int, ...]) -> torch.Tensor | None:
        """A float32 tensor of ``shape`` over a pool buffer (contents undefined), or ``None`` when
        every buffer is held and the pool is full.

        Args:
            shape: The tensor's shape.

        Returns:
            A contiguous float32 tensor whose buffer returns to the pool once the tensor and every
            tensor sharing its storage are gone; ``None`` if no buffer is free.
        """
        nbytes = math.prod(shape) * 4
        with self._lock:
            # Most recently returned first: that buffer is the likeliest to still be in the CPU
            # cache (cycling through all of them would stream every batch through DRAM).
            k = next((i for i in range(len(self._free) - 1, -1, -1) if self._free[i].nbytes >= nbytes), None)
            if k is not None:
                buffer = self._free.pop(k)
            elif self._n_buffers < self.size:
                buffer, self._n_buffers = None, self._n_buffers + 1
            elif self._free:  # every free buffer is too small: replace one by a larger one
                buffer = None
                self._free.pop()
            else:
                return None
        if buffer is None:
            buffer = np.empty(max(nbytes, 1), dtype=np.uint8)
        view = buffer[:nbytes].view(np.float32).reshape(shape)  # a new object per lease
        weakref.finalize(view, self._give_back, buffer)
        return torch.from_numpy(view)

    def _give_back(self, buffer: np.ndarray) -> None:
        with self._lock:
            self._free.append(buffer)

    def __getstate__(self) -> dict:
        return {"size": self.size}  # buffers and the lock belong to this process

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["size"])

    def __repr__(self) -> str:
        return f"LocalBlockPool(size={self.size}, buffers={self._n_buffers}, free={self.n_free})"
