"""A ``torch.utils.data.DataLoader`` whose workers can be threads of the calling process.

Reading a batch of windows is one ``memcpy`` per window out of a memory map plus a little
Python for the metadata (:mod:`neurocrane.data.collate`). NumPy releases the GIL while it copies,
so threads copy in parallel, and a thread hands its batch over for free: no pickling, no pipe,
no shared-memory segment, no worker start-up, no copy of the dataset per worker. Worker
*processes* pay all of that on every batch, which on a machine with few cores costs more than
the copy itself (``benchmarks/loading.py``). Threads are the right tool when loading is bound by
memory bandwidth; processes remain the right tool when a dataset runs heavy Python per sample
(the GIL would serialise it), so both are offered and the choice is one argument.

:class:`WindowDataLoader` is a real ``DataLoader`` subclass: Lightning, samplers,
``set_epoch``, ``len`` and ``persistent_workers`` behave as usual, batches arrive in sampler
order, and an exception raised while building a batch surfaces at the ``next()`` that would have
returned it. With ``worker_type="thread"``:

* **Window datasets** (:class:`~neurocrane.data.WindowDataset`,
  :class:`~neurocrane.data.windows.ConcatWindowDataset`): ``prefetch_factor`` batches are built
  ahead, and the ``num_workers`` threads build each of them *together*: one thread lays out the
  batch, its windows are cut into short runs, and every idle loader thread copies runs. The
  consumer's thread, when it calls ``next()`` before its batch is ready, copies runs too instead
  of sleeping. Fewer batch buffers in flight stay in the CPU cache; with one batch per thread,
  every batch streams through DRAM and the threads fight over memory bandwidth (measured:
  slower than one thread on the development machine).
* **Other map-style datasets**: ``num_workers * prefetch_factor`` batches ahead, one per thread at
  a time, as worker processes would.

A consumer that asks for a batch no thread has started yet builds it itself (claimed atomically,
so each batch is built once) instead of sleeping until a thread wakes up for it: while the
consumer is busy (a training step), the threads build ahead; when loading is the bottleneck, the
consumer's thread joins in. ``timeout`` applies to waiting for a batch a loader thread is
building. ``pin_memory`` pins in whichever thread built the batch.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Literal

import torch
from torch.utils.data import DataLoader, IterableDataset

from neurocrane.data.windows import ConcatWindowDataset, WindowDataset, WindowRequest
from neurocrane.errors import InputError

__all__ = ["WindowDataLoader", "WorkerType"]

WorkerType = Literal["thread", "process"]


def _pin(batch: Any) -> Any:
    """Page-locked copies of the tensors in a (nested) batch; other values as they are."""
    if isinstance(batch, torch.Tensor):
        return batch.pin_memory()
    if isinstance(batch, Mapping):
        pinned = {k: _pin(v) for k, v in batch.items()}
        try:
            return type(batch)(pinned)
        except TypeError:  # a mapping type that cannot be built from a dict
            return pinned
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(_pin(v) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(_pin(v) for v in batch)
    if hasattr(batch, "pin_memory"):
        return batch.pin_memory()
    return batch


class _LoaderThreads:
    """``n`` daemon threads running fetch tasks from one queue (a few microseconds per hand-off:
    a C-level ``SimpleQueue`` each way, no futures)."""

    def __init__(self, n: int):
        self.tasks: queue.SimpleQueue = queue.SimpleQueue()
        self.threads = [
            threading.Thread(target=_run_tasks, args=(self.tasks,), name=f"neurocrane-loader-{i}", daemon=True)
            for i in range(n)
        ]
        for thread in self.threads:
            thread.start()

    def run_parts(self, parts: list[Callable[[], Any]], consumer: queue.SimpleQueue | None = None) -> list[Any]:
        """Run ``parts`` on the calling thread and on whichever loader threads are idle (and on the
        consumer's thread if it is waiting: ``consumer`` is its result queue); return their results
        in order (the first error, if any, is raised once all have run)."""
        helpers = min(len(parts), len(self.threads)) - 1
        if len(parts) < 2 or (helpers < 1 and consumer is None):
            return [part() for part in parts]
        job = _PartsJob(parts)
        for _ in range(helpers):
            self.tasks.put(job)  # an invitation to help; late helpers find nothing left to do
        if consumer is not None:
            consumer.put((None, job))
        job.work()  # the caller never waits for a part nobody has started: no deadlock
        return job.wait()

    def close(self, wait: bool = False) -> None:
        for _ in self.threads:
            self.tasks.put(None)
        if wait:
            for thread in self.threads:
                thread.join()

    def __del__(self) -> None:
        self.close()


class _PartsJob:
    """Pieces of one batch that any thread may take (each exactly once)."""

    def __init__(self, parts: list[Callable[[], Any]]):
        self._todo = deque(enumerate(parts))
        self._results: list[Any] = [None] * len(parts)
        self._errors: list[BaseException] = []
        self._left = len(parts)
        self._lock = threading.Lock()
        self._done = threading.Event()

    def work(self) -> None:
        while True:
            try:
                i, part = self._todo.popleft()  # atomic: two threads never take the same piece
            except IndexError:
                return
            try:
                self._results[i] = part()
            except BaseException as error:
                self._errors.append(error)
            with self._lock:
                self._left -= 1
                if not self._left:
                    self._done.set()

    def wait(self) -> list[Any]:
        self._done.wait()
        if self._errors:
            raise self._errors[0]
        return self._results


class _BatchTask:
    """One batch to build; whoever claims it first (a loader thread, or the consumer that needs
    it and finds it not started) builds it."""

    __slots__ = ("_claim", "live", "results", "seq", "fetch", "index")

    def __init__(self, live: list[bool], results: queue.SimpleQueue, seq: int, fetch: Callable[..., Any], index: Any):
        self._claim = threading.Lock()
        self.live, self.results, self.seq, self.fetch, self.index = live, results, seq, fetch, index

    def claim(self) -> bool:
        return self._claim.acquire(blocking=False)

    def run(self, *args: Any) -> tuple[bool, Any]:
        try:
            return True, self.fetch(self.index, *args)
        except BaseException as error:  # surfaces at the consumer's next()
            return False, error


def _run_tasks(tasks: queue.SimpleQueue) -> None:
    while (task := tasks.get()) is not None:
        if isinstance(task, _PartsJob):
            task.work()
        elif task.live[0] and task.claim():  # skip the batches of a dropped iterator, or taken
            task.results.put((task.seq, *task.run()))
        del task  # hold no batch while waiting for the next task


class WindowDataLoader(DataLoader):
    """``DataLoader`` with a choice of worker threads (default) or worker processes.

    Args:
        dataset: A map-style dataset (thread workers need ``__getitem__``/``__getitems__``).
        *args: As for ``torch.utils.data.DataLoader``.
        worker_type: ``"thread"`` (default): ``num_workers`` threads of this process load batches;
            ``"process"``: the standard worker processes. Ignored when ``num_workers == 0``.
        **kwargs: As for ``torch.utils.data.DataLoader``.

    Raises:
        InputError: an unknown ``worker_type``; thread workers with an ``IterableDataset``, a
            ``worker_init_fn`` or a ``multiprocessing_context`` (they are about processes).

    Example:
        >>> loader = WindowDataLoader(dataset, batch_sampler=sampler, num_workers=2,
        ...                           collate_fn=WindowCollator(BasicPreprocessor()))
        >>> batch = next(iter(loader))
    """

    def __init__(self, dataset: Any, *args: Any, worker_type: WorkerType = "thread", **kwargs: Any):
        if worker_type not in ("thread", "process"):
            raise InputError(f"WindowDataLoader: worker_type must be 'thread' or 'process'; got {worker_type!r}.")
        self.worker_type = worker_type  # (before torch's __init__, which checks the worker count)
        self._threads: _LoaderThreads | None = None
        super().__init__(dataset, *args, **kwargs)
        if self._uses_threads:
            if isinstance(dataset, IterableDataset):
                raise InputError(
                    "WindowDataLoader: thread workers need a map-style dataset; an IterableDataset decides "
                    "its own order per worker. Pass worker_type='process' or num_workers=0."
                )
            for name in ("worker_init_fn", "multiprocessing_context"):
                if getattr(self, name) is not None:
                    raise InputError(
                        f"WindowDataLoader: {name} configures worker processes, and thread workers are not "
                        f"processes. Do the set-up once before iterating, or pass worker_type='process'."
                    )

    @property
    def _uses_threads(self) -> bool:
        return self.worker_type == "thread" and self.num_workers > 0

    def check_worker_number_rationality(self) -> None:
        # torch's warning is about worker processes per CPU; threads that mostly copy memory with
        # the GIL released cost no process each, so it does not apply to them.
        if self.worker_type != "thread":
            super().check_worker_number_rationality()

    def __iter__(self) -> Any:
        if not self._uses_threads:
            return super().__iter__()
        if self.persistent_workers:
            if self._threads is None:
                self._threads = _LoaderThreads(self.num_workers)
            return _ThreadedBatchIterator(self, self._threads, owns_threads=False)
        return _ThreadedBatchIterator(self, _LoaderThreads(self.num_workers), owns_threads=True)

    def shutdown(self) -> None:
        """Stop the persistent loader threads (they also stop when the loader is collected)."""
        if self._threads is not None:
            self._threads.close(wait=True)
            self._threads = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_threads": None}  # threads stay in the process that started them


def _build_batch(
    loader: WindowDataLoader, threads: _LoaderThreads, consumer: queue.SimpleQueue, index: Any, by_consumer: bool = False
) -> Any:
    """Fetch and collate one batch (and pin it if asked). A function, not an iterator method, so
    queued tasks do not keep a dropped iterator alive."""
    dataset = loader.dataset
    if loader.batch_sampler is not None:
        getitems = getattr(dataset, "__getitems__", None)
        data = getitems(index) if getitems is not None else [dataset[i] for i in index]
        if isinstance(data, WindowRequest):
            # Loader threads copy pieces of it, and so does the consumer if it is waiting.
            data.run_parts = partial(threads.run_parts, consumer=None if by_consumer else consumer)
            data.n_parts = len(threads.threads) + 1
    else:
        data = dataset[index]
    batch = loader.collate_fn(data)
    return _pin(batch) if loader.pin_memory else batch


class _ThreadedBatchIterator:
    """Batches of a :class:`WindowDataLoader`, fetched by loader threads, returned in sampler order."""

    def __init__(self, loader: WindowDataLoader, threads: _LoaderThreads, owns_threads: bool):
        self._loader = loader
        self._threads = threads
        self._owns_threads = owns_threads
        self._batched = loader.batch_sampler is not None
        self._indices = iter(loader.batch_sampler if self._batched else loader.sampler)
        prefetch = loader.prefetch_factor or 2
        # Window batches are copied by all threads together, so `prefetch` batches in flight keep
        # every thread busy; fewer batch buffers in flight stay in the CPU cache. Other datasets
        # get one batch per thread, as worker processes would.
        self._split = isinstance(loader.dataset, (WindowDataset, ConcatWindowDataset))
        self._depth = prefetch if self._split else loader.num_workers * prefetch
        self._live = [True]  # read by the threads: False once this iterator is done or dropped
        self._results: queue.SimpleQueue = queue.SimpleQueue()
        self._ready: dict[int, tuple[bool, Any]] = {}
        self._tasks: dict[int, _BatchTask] = {}
        self._build = partial(_build_batch, loader, threads, self._results)
        self._submitted = 0
        self._next = 0
        self._exhausted = False
        self._length = len(loader)
        self._fill()

    def _fill(self) -> None:
        # ``depth`` batches in flight while the consumer waits (as torch counts prefetching).
        while not self._exhausted and self._submitted < self._next + self._depth:
            try:
                index = next(self._indices)
            except StopIteration:
                self._exhausted = True
                return
            task = _BatchTask(self._live, self._results, self._submitted, self._build, index)
            self._tasks[self._submitted] = task
            self._threads.tasks.put(task)
            self._submitted += 1

    def __iter__(self) -> _ThreadedBatchIterator:
        return self

    def __len__(self) -> int:
        return self._length

    def __next__(self) -> Any:
        if self._next == self._submitted:
            self._close()
            raise StopIteration
        seq = self._next
        self._next += 1
        timeout = self._loader.timeout or None
        task = self._tasks.pop(seq)
        if seq not in self._ready and task.claim():
            # No thread has started it: build it here rather than sleep until one does (threads
            # still copy pieces of it); while the consumer is busy, threads build ahead as usual.
            self._ready[seq] = task.run(True)
        while seq not in self._ready:
            try:
                item = self._results.get(timeout=timeout)
            except queue.Empty:
                raise RuntimeError(  # the type torch's DataLoader raises on its timeout
                    f"WindowDataLoader timed out after {timeout} seconds waiting for a batch a loader thread is "
                    "building; raise timeout= (0 waits forever) or look for a read that stalls in the dataset."
                ) from None
            if item[0] is None:  # pieces of a batch being built: copy some instead of sleeping
                item[1].work()
                continue
            got, ok, value = item
            self._ready[got] = (ok, value)
        ok, value = self._ready.pop(seq)
        self._fill()  # the next batches load while the consumer uses this one
        if not ok:
            raise value
        return value

    def _close(self) -> None:
        self._live[0] = False
        self._ready.clear()
        self._tasks.clear()
        if self._owns_threads:
            self._threads.close()

    def __del__(self) -> None:
        try:
            self._close()
        except Exception:  # interpreter shutdown: nothing left to clean
            pass
