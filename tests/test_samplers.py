"""Property tests of the batch samplers: coverage, homogeneity, balance, DDP sharding, determinism."""

from __future__ import annotations

import collections
import itertools

import numpy as np
import pytest
import torch
from torch.utils.data import SequentialSampler

from neurocrane.data.samplers import (
    BalancedClassBatchSampler,
    RandomBatchSampler,
    SamplerInjectionError,
    SessionBatchSampler,
    SubjectBatchSampler,
    distributed_defaults,
)
from neurocrane.errors import InputError

SIZES = [37, 5, 64, 12, 1, 29]  # uneven on purpose, one session smaller than a batch
SUBJECTS = ["a", "b", "a", "c", "b", "c"]
LABELS = np.array([0] * 50 + [1] * 17 + [2] * 9 + [-1] * 4)


def session_of(sizes):
    return np.repeat(np.arange(len(sizes)), sizes)


def make(kind, **kw):
    if kind == "session":
        return SessionBatchSampler(SIZES, **kw)
    if kind == "subject":
        return SubjectBatchSampler(SIZES, SUBJECTS, **kw)
    if kind == "random":
        return RandomBatchSampler(SIZES, **kw)
    return BalancedClassBatchSampler(LABELS, **kw)


KINDS = ["session", "subject", "random", "balanced"]


def all_ranks(kind, replicas, epoch=0, **kw):
    out = []
    for r in range(replicas):
        s = make(kind, num_replicas=replicas, rank=r, **kw)
        s.set_epoch(epoch)
        out.append(list(s))
        assert len(out[-1]) == len(s)
    return out


@pytest.mark.parametrize("kind", ["session", "subject", "random"])
@pytest.mark.parametrize("drop_last", [False, True])
def test_every_index_once_or_dropped_by_drop_last(kind, drop_last):
    s = make(kind, batch_size=8, shuffle=True, drop_last=drop_last, seed=3)
    seen = collections.Counter(i for b in s for i in b)
    assert all(c == 1 for c in seen.values())
    n = sum(SIZES)
    if not drop_last:
        assert set(seen) == set(range(n))
    else:
        # only incomplete groups' tails are dropped: fewer than batch_size per group
        groups = {"session": session_of(SIZES), "random": np.zeros(n, int)}.get(kind)
        if groups is None:
            subj = np.repeat(np.array(SUBJECTS), SIZES)
            groups = np.unique(subj, return_inverse=True)[1]
        missing = collections.Counter(groups[i] for i in set(range(n)) - set(seen))
        assert all(m < 8 for m in missing.values())
        assert all(len(b) == 8 for b in s)


def test_session_batches_are_homogeneous_and_subject_batches_too():
    ses = session_of(SIZES)
    subj = np.repeat(np.array(SUBJECTS), SIZES)
    for b in SessionBatchSampler(SIZES, 8, shuffle=True, seed=1):
        assert len(set(ses[b])) == 1
    mixed_session = False
    for b in SubjectBatchSampler(SIZES, SUBJECTS, 16, shuffle=True, seed=1):
        assert len(set(subj[b])) == 1
        mixed_session |= len(set(ses[b])) > 1
    assert mixed_session  # subject batches do draw from several sessions of that subject


def test_unshuffled_order_is_index_order():
    assert list(SessionBatchSampler([10, 6], 4, shuffle=False)) == [
        [0, 1, 2, 3], [4, 5, 6, 7], [8, 9], [10, 11, 12, 13], [14, 15]]
    assert list(SubjectBatchSampler([3, 3, 4], ["a", "b", "a"], 7, shuffle=False)) == [
        [0, 1, 2, 6, 7, 8, 9], [3, 4, 5]]


@pytest.mark.parametrize("batch_size", [3, 4, 8])
def test_balanced_class_batches(batch_size):
    s = BalancedClassBatchSampler(LABELS, batch_size, shuffle=True, seed=0)
    batches = list(s)
    for b in batches[:-1] if len(batches[-1]) < batch_size else batches:
        counts = collections.Counter(LABELS[b].tolist())
        assert set(counts) == {0, 1, 2}
        assert max(counts.values()) - min(counts.values()) <= 1
        assert len(b) == batch_size
    seen = collections.Counter(i for b in batches for i in b)
    assert all(LABELS[i] >= 0 for i in seen)  # unlabelled windows never sampled
    # largest class exactly once; smaller classes oversampled evenly (counts differ by <= 1)
    for c in (0, 1, 2):
        idx = np.flatnonzero(LABELS == c)
        counts = [seen[i] for i in idx]
        assert min(counts) >= 1 and max(counts) - min(counts) <= 1
    assert all(seen[i] == 1 for i in np.flatnonzero(LABELS == 0))


def test_balanced_rejects_bad_labels():
    with pytest.raises(InputError, match="at least 2 classes"):
        BalancedClassBatchSampler([1, 1, 1], 2)
    with pytest.raises(InputError, match="smaller than the number of classes"):
        BalancedClassBatchSampler([0, 1, 2, 0], 2)
    with pytest.raises(InputError, match="integer class ids"):
        BalancedClassBatchSampler([0.5, 1.0], 2)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("replicas", [1, 2, 3])
@pytest.mark.parametrize("drop_last", [False, True])
def test_ranks_equal_count_and_disjoint(kind, replicas, drop_last):
    single = make(kind, batch_size=4, shuffle=True, drop_last=drop_last, seed=7)
    single.set_epoch(2)
    global_batches = list(single)
    ranks = all_ranks(kind, replicas, epoch=2, batch_size=4, shuffle=True, drop_last=drop_last, seed=7)
    counts = {len(r) for r in ranks}
    assert len(counts) == 1  # every rank the same number of batches: no DDP hang
    # ranks' batches are disjoint and together are the global epoch minus < replicas batches
    flat = [tuple(b) for r in ranks for b in r]
    assert len(flat) == len(set(flat))
    assert set(flat) <= {tuple(b) for b in global_batches}
    assert len(global_batches) - len(flat) < replicas
    if kind != "balanced":  # balanced oversamples on purpose; others must not share a window
        idx = [i for r in ranks for b in r for i in b]
        assert len(idx) == len(set(idx))


@pytest.mark.parametrize("kind", KINDS)
def test_order_is_a_function_of_seed_and_epoch(kind):
    def run(seed, epoch):
        s = make(kind, batch_size=4, shuffle=True, seed=seed)
        s.set_epoch(epoch)
        return list(s)

    assert run(0, 0) == run(0, 0)
    assert run(0, 1) == run(0, 1)
    assert run(0, 0) != run(0, 1)
    assert run(0, 0) != run(1, 0)
    s = make(kind, batch_size=4, shuffle=True, seed=0)
    first = list(s)
    assert list(s) == first  # iterating twice in one epoch repeats the epoch


def test_set_epoch_reaches_through_sampler_attribute():
    # Lightning calls dataloader.batch_sampler.sampler.set_epoch, never the batch sampler's
    s = SessionBatchSampler(SIZES, 4, seed=0)
    before = list(s)
    s.sampler.set_epoch(5)
    assert s.epoch == 5 and list(s) != before


def test_lightning_style_rebuild_raises_instead_of_duplicating():
    # what pytorch_lightning.utilities.data does for a batch sampler with batch_size/drop_last
    s = SessionBatchSampler(SIZES, 4)
    with pytest.raises(SamplerInjectionError, match="use_distributed_sampler"):
        type(s)(SequentialSampler(range(10)), batch_size=s.batch_size, drop_last=s.drop_last)
    with pytest.raises(TypeError):
        BalancedClassBatchSampler(SequentialSampler(range(10)), batch_size=4, drop_last=False)


def test_too_few_batches_for_replicas_is_an_error():
    with pytest.raises(InputError, match="some rank would get none"):
        SessionBatchSampler([4], 4, num_replicas=2, rank=0)


@pytest.mark.parametrize(
    "kwargs",
    [dict(batch_size=0), dict(batch_size=2.5), dict(batch_size=2, num_replicas=2, rank=2), dict(batch_size=2, rank=-1)],
)
def test_bad_arguments(kwargs):
    with pytest.raises(InputError):
        SessionBatchSampler([10], **kwargs)


def test_bad_sizes():
    for sizes in ([], [0, 0], [-1, 3]):
        with pytest.raises(InputError):
            SessionBatchSampler(sizes, 2)
    with pytest.raises(InputError, match="subject ids"):
        SubjectBatchSampler([3, 3], ["a"], 2)


def test_defaults_without_process_group():
    assert not torch.distributed.is_initialized()
    assert distributed_defaults() == (1, 0)
    assert distributed_defaults(4, 3) == (4, 3)


def test_empty_sessions_are_skipped():
    s = SessionBatchSampler([0, 5, 0, 3], 2, shuffle=False)
    assert list(s) == [[0, 1], [2, 3], [4], [5, 6], [7]]


def test_all_replica_combinations_cover_without_overlap_across_epochs():
    # a smaller exhaustive sweep: several seeds and epochs, 3 replicas, session batching
    for seed, epoch in itertools.product(range(3), range(3)):
        ranks = all_ranks("session", 3, epoch=epoch, batch_size=5, seed=seed)
        idx = [i for r in ranks for b in r for i in b]
        assert len(idx) == len(set(idx))


def test_real_lightning_rebuild_raises_instead_of_duplicating():
    # the exact call Lightning 2.6 makes when use_distributed_sampler=True under DDP
    from pytorch_lightning.utilities.data import _update_dataloader
    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler

    data = list(range(sum(SIZES)))
    loader = DataLoader(data, batch_sampler=SessionBatchSampler(SIZES, 4, num_replicas=2, rank=0))
    with pytest.raises(SamplerInjectionError, match="use_distributed_sampler=False"):
        _update_dataloader(loader, DistributedSampler(data, num_replicas=2, rank=0, shuffle=True))


def test_lightning_set_epoch_helper_reaches_the_batch_sampler():
    from lightning_fabric.utilities.data import _set_sampler_epoch
    from torch.utils.data import DataLoader

    sampler = SessionBatchSampler(SIZES, 4, seed=0)
    loader = DataLoader(list(range(sum(SIZES))), batch_sampler=sampler)
    before = [b.tolist() for b in loader]
    _set_sampler_epoch(loader, 3)
    assert sampler.epoch == 3 and [b.tolist() for b in loader] != before
