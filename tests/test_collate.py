"""Collate (stack / pad by channel name) and BasicPreprocessor (NaN/Inf, dtype, mask, counts)."""

from __future__ import annotations

import gc
import logging
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from neurocrane.batch import NeuralBatch
from neurocrane.data import shm_pool
from neurocrane.data.collate import WindowCollator, collate_windows, to_neural_batch
from neurocrane.data.preprocessing import BasicPreprocessor
from neurocrane.data.recording import Recording
from neurocrane.data.windows import WindowDataset
from neurocrane.errors import InputDTypeError, InputError


def sample(names, t=16, fill=None, session="ses-01", subject="sub-01", label=None, start=0, positions=True,
           mask=None, applied=()):
    c = len(names)
    x = torch.arange(c * t, dtype=torch.float32).reshape(c, t) if fill is None else torch.full((c, t), float(fill))
    pos = torch.tensor([[float(sum(map(ord, n))), 1.0, 2.0] for n in names]) if positions else None
    return {
        "neural_data": x, "channel_names": tuple(names), "channel_positions": pos, "sampling_rate": 100.0,
        "subject_id": subject, "session_id": session, "labels": label, "start": start,
        "channel_mask": None if mask is None else torch.tensor(mask), "applied": tuple(applied),
    }


def test_same_session_stacks_without_padding():
    a, b = sample(["A1", "A2", "A3"], start=0), sample(["A1", "A2", "A3"], fill=7.0, start=16)
    batch = collate_windows([a, b])
    assert batch["neural_data"].shape == (2, 3, 16)
    assert torch.equal(batch["neural_data"][0], a["neural_data"])
    assert torch.equal(batch["neural_data"][1], b["neural_data"])
    assert batch["channel_mask"].all()
    assert batch["channel_names"] == ("A1", "A2", "A3")
    assert batch["start"].tolist() == [0, 16]
    assert batch["labels"].tolist() == [-1, -1]
    assert batch["sampling_rate"] == 100.0


def test_mixed_sessions_pad_by_name_and_mask():
    a = sample(["A1", "A2", "B1"], session="ses-01")
    b = sample(["B1", "C1"], fill=5.0, session="ses-02", label=1)
    batch = collate_windows([a, b])
    assert batch["channel_names"] == ("A1", "A2", "B1", "C1")
    x, m = batch["neural_data"], batch["channel_mask"]
    assert x.shape == (2, 4, 16)
    assert m.tolist() == [[True, True, True, False], [False, False, True, True]]
    assert torch.equal(x[0, :3], a["neural_data"])  # sample a's channels in their named columns
    assert torch.equal(x[1, 2], b["neural_data"][0]) and torch.equal(x[1, 3], b["neural_data"][1])
    assert (x[0, 3] == 0).all() and (x[1, :2] == 0).all()
    assert torch.equal(batch["channel_positions"][1, 2], b["channel_positions"][0])
    assert batch["session_id"] == ["ses-01", "ses-02"]
    assert batch["labels"].tolist() == [-1, 1]


def test_bad_channel_mask_survives_collate():
    a = sample(["A1", "A2"], mask=[True, False])
    b = sample(["A2", "A3"], mask=[False, True], session="ses-02")
    batch = collate_windows([a, b])
    assert batch["channel_names"] == ("A1", "A2", "A3")
    assert batch["channel_mask"].tolist() == [[True, False, False], [False, False, True]]


def test_incompatible_samples_raise():
    with pytest.raises(InputError, match="empty"):
        collate_windows([])
    with pytest.raises(InputError, match="different lengths"):
        collate_windows([sample(["A"], t=8), sample(["A"], t=9)])
    other_rate = sample(["A"])
    other_rate["sampling_rate"] = 200.0
    with pytest.raises(InputError, match="sampling rate"):
        collate_windows([sample(["A"]), other_rate])
    with pytest.raises(InputError, match="applied pipelines"):
        collate_windows([sample(["A"], applied=("abc",)), sample(["A"])])
    with pytest.raises(InputError, match=r"\(channels, time\)"):
        collate_windows([{"neural_data": torch.zeros(3)}])


def test_to_neural_batch_keeps_metadata():
    batch = collate_windows([sample(["A1", "A2"], applied=("fp1",)), sample(["A1", "A2"], applied=("fp1",))])
    nb = to_neural_batch(batch)
    assert isinstance(nb, NeuralBatch)
    assert nb.channel_names == ("A1", "A2") and nb.sampling_rate == 100.0 and nb.applied == ("fp1",)
    assert torch.equal(nb.channel_positions, batch["channel_positions"][0])
    assert nb.channel_mask.all()


def test_to_neural_batch_drops_positions_that_disagree():
    a, b = sample(["A1", "A2"]), sample(["A1", "A2"], session="ses-02", subject="sub-02")
    b["channel_positions"] = b["channel_positions"] + 10.0  # same names, other subject's electrodes
    assert to_neural_batch(collate_windows([a, b])).channel_positions is None
    # a channel one sample lacks does not count as a disagreement
    c = sample(["A1", "A2", "A3"], session="ses-02")
    nb = to_neural_batch(collate_windows([a, c]))
    assert nb.channel_positions is not None and nb.channel_mask.tolist() == [[True, True, False], [True, True, True]]


def test_basic_preprocessor_replaces_and_counts(caplog):
    x = torch.randn(2, 3, 10, dtype=torch.float64)
    x[0, 1, 2:5] = float("nan")  # a NaN run
    x[1, 0, 0] = float("inf")
    x[1, 2, 9] = -float("inf")
    pre = BasicPreprocessor()
    with caplog.at_level(logging.WARNING, logger="neurocrane.data"):
        out = pre({"neural_data": x.clone()})
    y = out["neural_data"]
    assert y.dtype == torch.float32 and torch.isfinite(y).all()
    assert out["n_replaced"] == 5 and pre.n_replaced == 5 and pre.n_batches_with_nonfinite == 1
    assert y[0, 1, 2:5].eq(0).all() and y[1, 0, 0] == 0 and y[1, 2, 9] == 0
    finite = torch.isfinite(x)
    assert torch.allclose(y[finite], x[finite].float())
    assert "replaced 5 non-finite" in caplog.text
    clean = pre({"neural_data": torch.ones(1, 2, 3)})
    assert clean["n_replaced"] == 0 and pre.n_replaced == 5


def test_basic_preprocessor_applies_channel_mask():
    x = torch.ones(2, 3, 4)
    mask = torch.tensor([[True, False, True], [False, True, True]])
    y = BasicPreprocessor()({"neural_data": x, "channel_mask": mask})["neural_data"]
    assert y.sum(dim=-1).tolist() == [[4.0, 0.0, 4.0], [0.0, 4.0, 4.0]]
    with pytest.raises(InputError, match="channel_mask"):
        BasicPreprocessor()({"neural_data": x, "channel_mask": mask[:, :2]})


def test_basic_preprocessor_int16_is_refused_unless_allowed():
    x = torch.tensor([[[1, -2, 300]]], dtype=torch.int16)
    with pytest.raises(InputDTypeError, match="int16"):
        BasicPreprocessor()({"neural_data": x})
    y = BasicPreprocessor(allow_integer=True)({"neural_data": x})["neural_data"]
    assert y.dtype == torch.float32 and y.tolist() == [[[1.0, -2.0, 300.0]]]
    with pytest.raises(InputDTypeError):
        BasicPreprocessor()({"neural_data": torch.ones(1, 1, 2, dtype=torch.bool)})
    with pytest.raises(InputError, match="neural_data"):
        BasicPreprocessor()({"signals": torch.ones(1)})


def test_collator_pickles_and_composes():
    collator = pickle.loads(pickle.dumps(WindowCollator(BasicPreprocessor())))
    a = sample(["A1", "A2"], fill=float("nan"))
    out = collator([a, sample(["A1", "A2"])])
    assert out["n_replaced"] == 32 and torch.isfinite(out["neural_data"]).all()


def test_basic_preprocessor_copy_vs_inplace():
    x = torch.ones(2, 2, 5)
    x[0, 0, 0] = float("nan")
    mask = torch.tensor([[True, False], [True, True]])
    out = BasicPreprocessor()({"neural_data": x, "channel_mask": mask})["neural_data"]
    assert torch.isnan(x[0, 0, 0]) and x[0, 1].eq(1).all()  # the caller's tensor is untouched
    assert out[0, 0, 0] == 0 and out[0, 1].eq(0).all()
    same = BasicPreprocessor(inplace=True)({"neural_data": x, "channel_mask": mask})["neural_data"]
    assert same.data_ptr() == x.data_ptr() and torch.equal(same, out)


def test_basic_preprocessor_large_finite_values_are_not_counted():
    x = torch.full((1, 2, 4), 3e38)  # the fast check's sum overflows; the exact count finds nothing
    out = BasicPreprocessor()({"neural_data": x})
    assert out["n_replaced"] == 0 and torch.equal(out["neural_data"], x)


# -- time-major batches and the workers' shared-memory pool ----------------------------------

def _windows(n_times=4000, n_channels=3):
    x = np.random.default_rng(5).standard_normal((n_channels, n_times)).astype(np.float32)
    x[1, 7] = np.nan
    rec = Recording.from_array(x, 100.0, [f"A{i}" for i in range(n_channels)], bad_channels=["A2"])
    return WindowDataset(rec, context_length=0.1)  # 10-sample windows


class _Reporting(WindowCollator):
    """Notes, in each batch, what the worker's pool looked like when the batch was built."""

    def __call__(self, samples):
        batch = super().__call__(samples)
        pool = self._pool
        ptr = batch["neural_data"].untyped_storage().data_ptr()
        batch["pooled"] = pool is not None and any(b is not None and b.data_ptr() == ptr for b in pool.blocks)
        batch["n_blocks"] = 0 if pool is None else len(pool.blocks)
        batch["token"] = None if pool is None else pool.token
        batch["segments"] = [] if pool is None else pool.names
        return batch


def _expected(ds, batch_size):
    for i in range(0, len(ds), batch_size):
        yield BasicPreprocessor(inplace=True)(collate_windows(ds.__getitems__(list(range(i, min(i + batch_size, len(ds)))))))


def test_basic_preprocessor_masks_time_major_views_like_contiguous_batches():
    base = torch.arange(2 * 6 * 3, dtype=torch.float32).reshape(2, 6, 3)
    base[1, 2, 0] = float("inf")
    mask = torch.tensor([[True, False, True], [True, True, False]])
    view = base.clone().transpose(1, 2)
    contiguous = view.contiguous()
    copy = BasicPreprocessor()({"neural_data": view, "channel_mask": mask})
    assert torch.isinf(view[1, 0, 2]) and view[0, 1].ne(0).all()  # the copy path leaves the input alone
    inplace = BasicPreprocessor(inplace=True)({"neural_data": view, "channel_mask": mask})
    reference = BasicPreprocessor()({"neural_data": contiguous, "channel_mask": mask})
    for out in (copy, inplace):
        assert torch.equal(out["neural_data"], reference["neural_data"]) and out["n_replaced"] == 1
    assert inplace["neural_data"].data_ptr() == view.data_ptr()
    assert reference["neural_data"][0, 1].eq(0).all() and reference["neural_data"][1, 2].eq(0).all()


def test_reference_models_accept_time_major_views():
    from tests.helpers_models import RATE, signals, tiny_spectral, tiny_transformer

    x = signals(batch=2)
    view = x.transpose(1, 2).contiguous().transpose(1, 2)  # same values, time-major memory
    assert not view.is_contiguous()
    for model in (tiny_transformer(), tiny_spectral()):
        with torch.no_grad():
            a = model(neural_data=x, sampling_rate=RATE)
            b = model(neural_data=view, sampling_rate=RATE)
        key = "logits" if "logits" in a else "hidden_states"
        torch.testing.assert_close(a[key], b[key])


def test_pool_size_must_be_a_non_negative_int():
    with pytest.raises(InputError, match="pool_size"):
        WindowCollator(pool_size=-1)
    assert WindowCollator(pool_size=0).pool_size == 0


def _exists(name):
    return os.path.exists(f"/dev/shm/{name}")


def test_block_pool_reuses_only_released_blocks_and_drops_escaped_ones():
    pool = shm_pool.ShmBlockPool(2)
    a, slot_a = pool.take((2, 5, 3))
    leased = pool.lease({"neural_data": a.transpose(1, 2)}, slot_a)
    assert type(leased) is shm_pool.LeasedBatch and pool.flags[slot_a] == 1
    b, slot_b = pool.take((2, 5, 3))
    assert slot_b != slot_a and b.data_ptr() != a.data_ptr()
    assert pool.take((2, 5, 3)) is None  # both busy, pool full: the caller uses fresh memory
    escaped = pool.segments[slot_b].name
    plain = pool.lease({"neural_data": torch.zeros(2, 3, 5), "kept": b}, slot_b)  # block replaced
    assert type(plain) is dict and pool.blocks[slot_b] is None and pool.flags[slot_b] == 0
    assert not _exists(escaped) and plain["kept"].sum() == b.sum()  # unlinked, still mapped here
    d, slot_d = pool.take((4, 5, 3))  # the dropped slot gets a new block, never the escaped one
    assert slot_d == slot_b and d.data_ptr() != b.data_ptr()
    pool.flags[slot_a] = 0  # what the main process does when it frees the batch
    e, slot_e = pool.take((1, 5, 3))
    assert slot_e == slot_a and e.data_ptr() == a.data_ptr()
    names = pool.names
    assert len(names) == 3 and all(_exists(n) for n in names)
    pool.close()
    pool.close()  # a second close (and the exit hook) is a no-op
    assert not any(_exists(n) for n in names)


def test_leased_batch_crosses_as_a_token_and_frees_its_block_when_dropped():
    pool = shm_pool.ShmBlockPool(1)
    try:
        block, slot = pool.take((2, 5, 3))
        block.copy_(torch.arange(30, dtype=torch.float32).reshape(2, 5, 3))
        leased = pool.lease({"neural_data": block.transpose(1, 2), "labels": torch.tensor([1, 2]), "ids": ["a", "b"]}, slot)
        data = pickle.dumps(leased)
        assert len(data) < 1000  # a token and the small tensors, not the 120-byte block... nor its fd
        got = pickle.loads(data)
        x = got["neural_data"]
        assert type(got) is dict and got["ids"] == ["a", "b"] and got["labels"].tolist() == [1, 2]
        assert torch.equal(x, block.transpose(1, 2)) and x.stride() == block.transpose(1, 2).stride()
        assert x.data_ptr() != block.data_ptr()  # its own mapping of the same segment
        block[0, 0, 0] = -1.0
        assert x[0, 0, 0] == -1.0  # no copy: the same memory
        y = x[1]  # a view keeps the block busy
        del got, x
        gc.collect()
        assert pool.flags[slot] == 1 and pool.take((2, 5, 3)) is None
        del y
        gc.collect()
        assert pool.flags[slot] == 0
    finally:
        pool.close()


def test_workers_reuse_pooled_blocks_when_batches_are_released():
    ds = _windows()
    loader = DataLoader(ds, batch_size=16, num_workers=2, collate_fn=_Reporting(BasicPreprocessor(inplace=True), pool_size=3))
    n, flags, segments = 0, {}, set()
    for got, want in zip(loader, _expected(ds, 16), strict=True):
        assert type(got) is dict and got["pooled"] and 1 <= got["n_blocks"] <= 3
        assert torch.equal(got["neural_data"], want["neural_data"]) and got["n_replaced"] == want["n_replaced"]
        for key in ("channel_mask", "labels", "start"):
            assert torch.equal(got[key], want[key])
        flags[got["token"]] = shm_pool._ATTACHED[got["token"]][0]
        segments.update(got["segments"])
        n += 1
        del got
    assert n == 25 and len(flags) == 2  # 25 batches from at most 3 blocks per worker
    gc.collect()
    for f in flags.values():
        assert f[:3].tolist() == [0, 0, 0] and f[-1] == 0  # all released again; the workers closed their pools
    assert segments and not any(_exists(s) for s in segments)  # and unlinked every segment


def test_batches_held_by_the_main_process_are_never_overwritten():
    ds = _windows()
    loader = DataLoader(ds, batch_size=16, num_workers=2, collate_fn=_Reporting(BasicPreprocessor(inplace=True), pool_size=2))
    held = list(loader)  # far more batches alive at once than blocks in the pools
    assert sum(b["pooled"] for b in held) <= 4 < len(held)
    for got, want in zip(held, _expected(ds, 16), strict=True):
        assert torch.equal(got["neural_data"], want["neural_data"])
    segments = {s for b in held for s in b["segments"]}
    assert segments and not any(_exists(s) for s in segments)  # unlinked at worker exit; still mapped here
    off = list(DataLoader(ds, batch_size=16, num_workers=2, collate_fn=_Reporting(pool_size=0)))
    assert len(off) == len(held) and not any(b["pooled"] or b["n_blocks"] for b in off)
    raw = collate_windows(ds.__getitems__(list(range(16))))  # no preprocessor: the NaN is still there
    torch.testing.assert_close(off[0]["neural_data"], raw["neural_data"], equal_nan=True, rtol=0, atol=0)


def test_pooled_loading_leaves_no_segments_and_no_resource_tracker_warnings(tmp_path):
    script = textwrap.dedent("""
        import os, numpy as np, torch
        from torch.utils.data import DataLoader
        from neurocrane.data.collate import WindowCollator
        from neurocrane.data.recording import Recording
        from neurocrane.data.windows import WindowDataset
        rec = Recording.from_array(np.ones((3, 4000), np.float32), 100.0, ["A0", "A1", "A2"])
        ds = WindowDataset(rec, context_length=0.1)
        collator = WindowCollator(pool_size=2)
        loader = DataLoader(ds, batch_size=16, num_workers=2, collate_fn=collator, persistent_workers=True)
        kept = []
        for epoch in range(2):
            kept += [b["neural_data"] for b in loader]
        assert all(float(x.sum()) == x.numel() for x in kept)
        from neurocrane.data.shm_pool import _ATTACHED
        print("segments", *[name for _, blocks in _ATTACHED.values() for name, _ in blocks.values()])
        del loader
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.returncode == 0, out.stderr
    assert "resource_tracker" not in out.stderr and "leaked" not in out.stderr, out.stderr
    segments = out.stdout.split()[1:]
    assert out.stdout.startswith("segments") and 2 <= len(segments) <= 4  # at most 2 blocks in each of 2 pools
    assert not any(_exists(s) for s in segments)  # every segment unlinked when the workers ended


def _dirty_sessions():
    rng = np.random.default_rng(7)
    a = rng.standard_normal((4, 600)).astype(np.float32)
    a[2, 10:30] = np.nan  # NaNs in a bad channel count too (BasicPreprocessor counts before masking)
    a[0, 205] = -np.inf
    b = rng.standard_normal((3, 500)).astype(np.float32)
    b[1, 7] = np.nan
    ra = Recording.from_array(a, 100.0, ["A0", "A1", "A2", "X"], session_id="a", bad_channels=["A2"])
    rb = Recording.from_array(b, 100.0, ["X", "B0", "B1"], session_id="b", bad_channels=["B1"])
    from neurocrane.data.windows import ConcatWindowDataset

    return ConcatWindowDataset([WindowDataset(ra, context_length=0.5), WindowDataset(rb, context_length=0.5)])


@pytest.mark.parametrize("indices", [[0, 1, 2, 3], [4, 12, 0, 19, 2], list(range(22))])
def test_cleaning_inside_the_read_gives_the_batch_basic_preprocessor_gives(indices):
    ds = _dirty_sessions()
    fused_pre = BasicPreprocessor()
    collator = WindowCollator(fused_pre, pool_size=2)
    for _ in range(2):  # the second time the non-finite counts come from the per-window memo
        want = BasicPreprocessor()(collate_windows(ds.__getitems__(indices)))
        got = collator(ds.__getitems__(indices))
        assert torch.equal(got["neural_data"], want["neural_data"]) and got["n_replaced"] == want["n_replaced"] > 0
        assert torch.equal(got["channel_mask"], want["channel_mask"]) and got["channel_names"] == want["channel_names"]
    assert fused_pre.n_replaced == 2 * want["n_replaced"] and fused_pre.n_batches_with_nonfinite == 2


def test_a_preprocessor_subclass_that_changes_the_clean_up_is_called_not_fused():
    class Clip(BasicPreprocessor):
        def __call__(self, batch):
            batch = super().__call__(batch)
            batch["neural_data"] = batch["neural_data"].clamp(-0.5, 0.5)
            return batch

    ds = _dirty_sessions()
    got = WindowCollator(Clip())(ds.__getitems__([0, 1]))
    assert got["neural_data"].abs().max() <= 0.5 and got["n_replaced"] > 0
    raw = WindowCollator(None)(ds.__getitems__([0, 1]))  # no preprocessor: nothing cleaned
    assert torch.isnan(raw["neural_data"]).any() and "n_replaced" not in raw


def test_read_into_counts_non_finite_values_once_per_window():
    ds = _dirty_sessions().datasets[0]
    out = np.empty((2, ds.window_samples, 4), np.float32)
    assert ds._nonfinite.tolist() == [-1] * len(ds)
    assert ds.read_into([0, 4], out) == 21  # 20 NaN in window 0, one -inf in window 4
    assert np.isnan(out[0]).sum() == 20  # clean=False copies as stored
    assert ds._nonfinite[[0, 4]].tolist() == [20, 1] and (ds._nonfinite[[1, 2, 3]] == -1).all()
    assert ds.read_into([0, 4], out, clean=True) == 21
    assert np.isfinite(out).all() and (out[:, :, 2] == 0).all()  # bad channel A2 zeroed
    x16 = (np.arange(2 * 400).reshape(2, 400) % 50).astype(np.int16)
    ds16 = WindowDataset(Recording.from_array(x16, 100.0, ["A", "B"], scale=0.5), context_length=1.0)
    assert (ds16._nonfinite == 0).all()  # scaled int16 is always finite: nothing to learn


def test_basic_preprocessor_counts_are_exact_across_threads_and_survive_pickling():
    import threading

    pre = BasicPreprocessor(log_every=0)

    def work():
        for _ in range(500):
            pre.record({}, 3)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert pre.n_replaced == 6000 and pre.n_batches_with_nonfinite == 2000
    again = pickle.loads(pickle.dumps(pre))
    assert again.n_replaced == 6000 and again.record({}, 1)["n_replaced"] == 1 and again.n_replaced == 6001
