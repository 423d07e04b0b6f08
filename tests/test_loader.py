"""WindowDataLoader: thread workers (order, errors, shutdown, pinning, buffer reuse) and LocalBlockPool."""

from __future__ import annotations

import gc
import threading
from collections import namedtuple

import numpy as np
import pytest
import torch
from torch.utils.data import IterableDataset

from neurocrane.data import loader as loader_module
from neurocrane.data.block_pool import LocalBlockPool
from neurocrane.data.collate import WindowCollator, collate_windows
from neurocrane.data.loader import WindowDataLoader
from neurocrane.data.preprocessing import BasicPreprocessor
from neurocrane.data.recording import Recording
from neurocrane.data.samplers import RandomBatchSampler
from neurocrane.data.windows import ConcatWindowDataset, WindowDataset
from neurocrane.errors import InputError

FS = 100.0


def _sessions() -> ConcatWindowDataset:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 3000)).astype(np.float32)
    a[1, 40:90] = np.nan
    a[3, 2500] = np.inf
    b = rng.standard_normal((3, 2000)).astype(np.float32)
    return ConcatWindowDataset([
        WindowDataset(Recording.from_array(a, FS, ["A0", "A1", "A2", "X"], session_id="ses-a", bad_channels=["A2"],
                                           channel_positions=np.arange(12.0).reshape(4, 3)), context_length=0.5),
        WindowDataset(Recording.from_array(b, FS, ["X", "B0", "B1"], session_id="ses-b"), context_length=0.5),
    ])


def _expected(ds, batches):
    return [BasicPreprocessor()(collate_windows(ds.__getitems__(b))) for b in batches]


def _assert_same_batch(got, want):
    assert torch.equal(got["neural_data"], want["neural_data"])
    for key in ("channel_mask", "labels", "start", "channel_positions"):
        if want[key] is None:
            assert got[key] is None, key
        else:
            assert torch.equal(got[key], want[key]), key
    for key in ("channel_names", "session_id", "subject_id", "n_replaced", "sampling_rate"):
        assert got[key] == want[key], key


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_thread_workers_give_the_batches_of_the_main_thread_in_sampler_order(workers):
    ds = _sessions()
    sampler = RandomBatchSampler([len(d) for d in ds.datasets], batch_size=7, shuffle=True, seed=3, drop_last=False)
    loader = WindowDataLoader(ds, batch_sampler=sampler, num_workers=workers, persistent_workers=True,
                              collate_fn=WindowCollator(BasicPreprocessor(), pool_size=3))
    assert isinstance(loader, torch.utils.data.DataLoader) and loader.worker_type == "thread"
    orders = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        got = list(loader)  # every batch kept alive: more batches than pooled blocks
        assert len(got) == len(loader) == len(batches)
        for g, w in zip(got, _expected(ds, batches), strict=True):
            _assert_same_batch(g, w)
        assert sum(g["n_replaced"] for g in got) == 51  # 50 NaN + 1 Inf, every epoch
        orders.append([g["start"].tolist() for g in got])
    assert orders[0] != orders[1]  # set_epoch reached the sampler the loader iterates
    own = loader._threads.threads
    assert len(own) == workers and all(t.is_alive() for t in own)
    loader.shutdown()
    assert not any(t.is_alive() for t in own)


class _Gated(torch.utils.data.Dataset):
    """Batch 0 cannot finish before batch 1 has: forces the threads to complete out of order."""

    def __init__(self):
        self.first_may_finish = threading.Event()

    def __len__(self):
        return 8

    def __getitem__(self, i):
        if i == 0:
            assert self.first_may_finish.wait(timeout=30)
        if i == 2:
            self.first_may_finish.set()
        return torch.tensor(float(i))


def test_batches_arrive_in_order_even_when_threads_finish_out_of_order():
    loader = WindowDataLoader(_Gated(), batch_size=2, num_workers=2)
    assert [b.tolist() for b in loader] == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]]


class _Failing(torch.utils.data.Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, i):
        if i == 4:
            raise KeyError(f"window {i} is broken")
        return torch.tensor(i)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_worker_error_surfaces_at_its_batch_and_iteration_can_go_on(workers):
    it = iter(WindowDataLoader(_Failing(), batch_size=2, num_workers=workers))
    assert next(it).tolist() == [0, 1] and next(it).tolist() == [2, 3]
    with pytest.raises(KeyError, match="window 4 is broken"):
        next(it)
    assert next(it).tolist() == [6, 7] and next(it).tolist() == [8, 9]
    with pytest.raises(StopIteration):
        next(it)


def test_threads_stop_after_an_epoch_an_early_break_and_a_shutdown():
    ds = _sessions()
    loader = WindowDataLoader(ds, batch_size=4, num_workers=2, collate_fn=WindowCollator(BasicPreprocessor()))
    it = iter(loader)
    own = it._threads.threads
    assert len(list(it)) == len(loader)
    for t in own:  # non-persistent: told to stop when the epoch ended
        t.join(timeout=30)
    assert not any(t.is_alive() for t in own)
    it = iter(loader)
    own = it._threads.threads
    next(it)
    del it  # dropped with batches still in flight
    gc.collect()
    for t in own:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in own)
    persistent = WindowDataLoader(ds, batch_size=4, num_workers=2, persistent_workers=True,
                                  collate_fn=WindowCollator(BasicPreprocessor()))
    list(persistent)
    first = list(persistent._threads.threads)
    list(persistent)
    assert len(first) == 2 and persistent._threads.threads == first  # the same threads every epoch
    persistent.shutdown()
    persistent.shutdown()  # a second shutdown is a no-op
    assert not any(t.is_alive() for t in first)


def test_thread_workers_refuse_what_only_processes_have():
    class Stream(IterableDataset):
        def __iter__(self):
            return iter(range(3))

    with pytest.raises(InputError, match="map-style"):
        WindowDataLoader(Stream(), batch_size=2, num_workers=2)
    assert [b.tolist() for b in WindowDataLoader(Stream(), batch_size=2, num_workers=0)] == [[0, 1], [2]]
    with pytest.raises(InputError, match="worker_init_fn"):
        WindowDataLoader(_Failing(), batch_size=2, num_workers=2, worker_init_fn=print)
    with pytest.raises(InputError, match="multiprocessing_context"):
        WindowDataLoader(_Failing(), batch_size=2, num_workers=2, multiprocessing_context="spawn")
    with pytest.raises(InputError, match="worker_type must be 'thread' or 'process'"):
        WindowDataLoader(_Failing(), batch_size=2, worker_type="fiber")
    # the same arguments are fine for worker processes
    WindowDataLoader(_Failing(), batch_size=2, num_workers=2, worker_init_fn=print, worker_type="process")


def test_process_workers_still_work():
    ds = _sessions()
    loader = WindowDataLoader(ds, batch_size=8, num_workers=2, worker_type="process",
                              collate_fn=WindowCollator(BasicPreprocessor()))
    batches = [list(range(i, min(i + 8, len(ds)))) for i in range(0, len(ds), 8)]
    for g, w in zip(loader, _expected(ds, batches), strict=True):
        _assert_same_batch(g, w)


def test_no_sampler_batching_and_a_timeout_error():
    got = list(WindowDataLoader(_Failing(), batch_size=None, num_workers=2, sampler=[0, 1, 2]))
    assert [int(x) for x in got] == [0, 1, 2]

    class Slow(torch.utils.data.Dataset):
        started, release = threading.Event(), threading.Event()

        def __len__(self):
            return 2

        def __getitem__(self, i):
            self.started.set()
            self.release.wait(timeout=30)
            return i

    slow = Slow()
    it = iter(WindowDataLoader(slow, batch_size=1, num_workers=1, timeout=0.05))
    assert slow.started.wait(timeout=30)  # a loader thread is building the first batch: next() waits for it
    try:
        with pytest.raises(RuntimeError, match="timed out after 0.05 seconds"):
            next(it)
    finally:
        slow.release.set()


def test_pin_memory_pins_every_tensor_of_every_batch(monkeypatch):
    class Pinnable:
        def __init__(self):
            self.pinned = False

        def pin_memory(self):
            out = Pinnable()
            out.pinned = True
            return out

    Pair = namedtuple("Pair", "x y")
    pinned_in = []

    def fake_pin(self):  # no CUDA here: record the call and the thread it ran in
        pinned_in.append(threading.current_thread().name)
        return self.clone()

    monkeypatch.setattr(torch.Tensor, "pin_memory", fake_pin)
    batch = {"a": torch.ones(2), "b": [torch.zeros(1), "text", 3], "c": Pair(torch.ones(1), None), "d": Pinnable()}
    out = loader_module._pin(batch)
    assert type(out) is dict and out["b"][1:] == ["text", 3] and type(out["c"]) is Pair and out["d"].pinned
    assert torch.equal(out["a"], batch["a"]) and len(pinned_in) == 3
    pinned_in.clear()
    loader = WindowDataLoader(_sessions(), batch_size=16, num_workers=2, pin_memory=True,
                              collate_fn=WindowCollator(BasicPreprocessor()))
    batches = list(loader)
    # every tensor of every batch, pinned by whichever thread built the batch
    assert len(pinned_in) == sum(isinstance(v, torch.Tensor) for batch in batches for v in batch.values())
    assert all(torch.isfinite(b["neural_data"]).all() for b in batches)


def test_local_block_pool_reuses_only_released_blocks():
    pool = LocalBlockPool(2)
    a = pool.take((2, 5, 3))
    a_ptr = a.data_ptr()
    b = pool.take((2, 5, 3))
    assert a.shape == (2, 5, 3) and a.dtype == torch.float32 and b.data_ptr() != a_ptr
    assert pool.take((1, 1, 1)) is None and pool.n_buffers == 2  # both held, pool full
    view = a.transpose(1, 2)[0]  # a view keeps the block
    del a
    gc.collect()
    assert pool.n_free == 0
    del view
    gc.collect()
    assert pool.n_free == 1
    c = pool.take((1, 5, 3))  # fits in the freed block
    assert c.data_ptr() == a_ptr and pool.n_free == 0
    del c
    gc.collect()
    big = pool.take((4, 5, 3))  # larger than any free block: one is replaced, the pool does not grow
    assert big is not None and big.data_ptr() != a_ptr and pool.n_buffers == 2
    with pytest.raises(InputError, match="positive int"):
        LocalBlockPool(0)
    assert "LocalBlockPool(size=2" in repr(pool)


def test_local_block_pool_is_safe_across_threads():
    pool = LocalBlockPool(3)
    errors = []

    def work(k):
        for i in range(200):
            x = pool.take((4, 8))
            if x is None:
                x = torch.empty(4, 8)
            x.fill_(k * 1000 + i)
            if not bool((x == k * 1000 + i).all()):
                errors.append((k, i))
            del x

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    gc.collect()
    assert not errors and pool.n_buffers <= 3 and pool.n_free == pool.n_buffers


def test_pieces_of_a_batch_run_once_each_on_any_thread_and_errors_surface():
    threads = loader_module._LoaderThreads(2)
    try:
        ran = []
        lock = threading.Lock()

        def piece(i):
            def run():
                with lock:
                    ran.append(i)
                return i * i
            return run

        assert threads.run_parts([piece(i) for i in range(9)]) == [i * i for i in range(9)]
        assert sorted(ran) == list(range(9))  # each exactly once

        def broken():
            raise ValueError("piece 3 failed")

        with pytest.raises(ValueError, match="piece 3 failed"):
            threads.run_parts([piece(0), piece(1), piece(2), broken, piece(4)])
    finally:
        threads.close(wait=True)


def test_the_waiting_consumer_copies_pieces_itself():
    """With no idle loader thread, a piece the building thread has not reached is taken by the
    consumer waiting for the batch (here: the test's main thread)."""
    threads = loader_module._LoaderThreads(1)  # one thread: it builds the batch, nobody else is idle
    consumer = __import__("queue").SimpleQueue()
    second_ran = threading.Event()
    ran_on = {}

    def first():
        ran_on["first"] = threading.current_thread().name
        assert second_ran.wait(timeout=30)  # cannot finish before another thread ran the second piece
        return 1

    def second():
        ran_on["second"] = threading.current_thread().name
        second_ran.set()
        return 2

    result = {}
    builder = threading.Thread(target=lambda: result.update(out=threads.run_parts([first, second], consumer=consumer)))
    builder.start()
    marker, job = consumer.get(timeout=30)
    assert marker is None
    job.work()
    builder.join(timeout=30)
    threads.close(wait=True)
    assert result["out"] == [1, 2] and ran_on["second"] == threading.current_thread().name != ran_on["first"]


def test_split_copies_equal_whole_batch_copies_for_every_storage_kind():
    rng = np.random.default_rng(5)
    a = rng.standard_normal((3, 2000)).astype(np.float32)
    a[0, 100:140] = np.nan
    b16 = (rng.integers(-300, 300, (2, 1500))).astype(np.int16)
    ds = ConcatWindowDataset([
        WindowDataset(Recording.from_array(a, FS, ["A0", "A1", "X"], session_id="a", bad_channels=["A1"]), 0.25),
        WindowDataset(Recording.from_array(b16, FS, ["X", "B0"], session_id="b", scale=0.1), 0.25),
    ])
    threads = loader_module._LoaderThreads(2)
    try:
        for indices in ([0, 1, 2, 3, 4, 5, 6], [0, 90, 3, 85, 1, 80, 2, 75, 7], list(range(len(ds)))):
            whole = WindowCollator(BasicPreprocessor())(ds.__getitems__(indices))
            request = ds.__getitems__(indices)
            request.run_parts, request.n_parts = threads.run_parts, 3
            split = WindowCollator(BasicPreprocessor())(request)
            _assert_same_batch(split, whole)
    finally:
        threads.close(wait=True)


def test_the_consumer_builds_a_batch_no_thread_has_started(monkeypatch):
    busy = threading.Event()

    def stuck_thread(tasks):  # a loader thread that never gets to the queue (e.g. busy elsewhere)
        busy.wait(timeout=30)

    monkeypatch.setattr(loader_module, "_run_tasks", stuck_thread)
    built_by = []

    class Recording(torch.utils.data.Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, i):
            built_by.append(threading.current_thread().name)
            return torch.tensor(i)

    try:
        got = [b.tolist() for b in WindowDataLoader(Recording(), batch_size=2, num_workers=2)]
    finally:
        busy.set()
    assert got == [[0, 1], [2, 3], [4, 5]] and set(built_by) == {threading.current_thread().name}


def test_lightning_can_rebuild_the_loader_with_its_worker_type():
    from lightning_fabric.utilities.data import _replace_dunder_methods
    from pytorch_lightning.utilities.data import _update_dataloader
    from torch.utils.data import DataLoader, SequentialSampler

    data = list(range(10))
    with _replace_dunder_methods(DataLoader, "dataset"):  # what Lightning wraps its hooks in
        loader = WindowDataLoader(data, batch_size=3, num_workers=2, worker_type="thread")
    rebuilt = _update_dataloader(loader, SequentialSampler(data))
    assert type(rebuilt) is WindowDataLoader and rebuilt.worker_type == "thread" and rebuilt.num_workers == 2
    assert [b.tolist() for b in rebuilt] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
