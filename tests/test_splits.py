"""Every split kind is checked for leakage by brute force, independently of Split.check."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from neurocrane.errors import InputError
from neurocrane.evaluation.splits import (
    LeakageError,
    Split,
    SplitError,
    WindowTable,
    cross_session_kfold,
    cross_session_split,
    cross_subject_kfold,
    cross_subject_split,
    make_splits,
    within_session_kfold,
    within_session_split,
)


def make_table(n_subjects=4, n_sessions=3, n_windows=20, length=1.0, stride=0.5, shuffle=True) -> WindowTable:
    """Overlapping windows (stride < length), rows deliberately not in time order."""
    rows = []
    for s in range(n_subjects):
        for e in range(n_sessions):
            for w in range(n_windows):
                rows.append((f"sub-{s:02d}", f"ses-{e:02d}", w * stride, w * stride + length, w % 2))
    if shuffle:
        order = np.random.default_rng(0).permutation(len(rows))
        rows = [rows[i] for i in order]
    subj, sess, start, stop, label = zip(*rows, strict=True)
    return WindowTable.from_arrays(subj, sess, start, stop, label)


def brute_force_leaks(split: Split, table: WindowTable) -> list[str]:
    leaks = []
    parts = {"train": split.train, "val": split.val, "test": split.test}
    for (a, ia), (b, ib) in itertools.combinations(parts.items(), 2):
        if set(ia.tolist()) & set(ib.tolist()):
            leaks.append(f"window shared {a}/{b}")
        if split.kind == "cross_subject" and set(table.subject[ia]) & set(table.subject[ib]):
            leaks.append(f"subject shared {a}/{b}")
        if split.kind == "cross_session":
            ua = set(zip(table.subject[ia], table.session[ia], strict=True))
            ub = set(zip(table.subject[ib], table.session[ib], strict=True))
            if ua & ub:
                leaks.append(f"session shared {a}/{b}")
        if split.kind == "within_session":
            for i in ia:
                for j in ib:
                    if table.subject[i] == table.subject[j] and table.session[i] == table.session[j]:
                        dist = max(table.start[j] - table.stop[i], table.start[i] - table.stop[j])
                        if dist < split.gap - 1e-9:
                            leaks.append(f"windows {i},{j} closer than gap ({a}/{b})")
    return leaks


TABLE = make_table()


@pytest.mark.parametrize(
    "factory",
    [
        lambda t: [within_session_split(t)],
        lambda t: [within_session_split(t, gap=0.0, val_fraction=0.0)],
        lambda t: within_session_kfold(t, k=4),
        lambda t: within_session_kfold(t, k=3, gap=2.0, val_fraction=0.2),
        lambda t: [cross_session_split(t)],
        lambda t: cross_session_kfold(t),
        lambda t: [cross_subject_split(t)],
        lambda t: cross_subject_kfold(t),
        lambda t: cross_subject_kfold(t, k=2),
    ],
    ids=["ws", "ws-nogap", "ws-k4", "ws-k3-gap2", "xsess", "xsess-k", "xsubj", "xsubj-loso", "xsubj-k2"],
)
def test_no_leakage_for_every_split_kind(factory):
    splits = factory(TABLE)
    assert splits
    for split in splits:
        assert brute_force_leaks(split, TABLE) == []
        assert split.train.size and split.test.size
    # k-fold families test on every window/unit exactly once (nothing silently lost from test)
    if len(splits) > 1 and splits[0].kind != "within_session":
        tested = np.concatenate([s.test for s in splits])
        assert np.array_equal(np.sort(tested), np.arange(len(TABLE)))


def test_within_session_is_time_blocked_and_unshuffled():
    split = within_session_split(TABLE, test_fraction=0.25, val_fraction=0.25, gap=0.0)
    for subj, sess in TABLE.sessions():
        idx = TABLE.session_index(subj, sess)
        tr = TABLE.start[np.intersect1d(idx, split.train)]
        va = TABLE.start[np.intersect1d(idx, split.val)]
        te = TABLE.start[np.intersect1d(idx, split.test)]
        assert tr.max() < va.min() and va.max() < te.min()  # train, then val, then test


def test_within_session_gap_drops_overlapping_neighbours():
    no_gap = within_session_split(TABLE, gap=0.0, val_fraction=0.0)
    default = within_session_split(TABLE, val_fraction=0.0)  # gap = window length = 1 s
    assert default.gap == 1.0
    assert default.test.size == no_gap.test.size  # test kept whole
    assert default.train.size < no_gap.train.size  # windows within 1 s of test dropped from train
    # with 50 % overlap, a 0-gap split must still drop the window that overlaps the first test window
    n_per_session = 20
    assert no_gap.train.size + no_gap.test.size < len(TABLE)
    assert no_gap.test.size == len(TABLE.sessions()) * round(n_per_session * 0.2)


def test_within_session_kfold_folds_are_contiguous_blocks_covering_each_session():
    splits = within_session_kfold(TABLE, k=4, gap=0.0, val_fraction=0.0)
    tested = np.sort(np.concatenate([s.test for s in splits]))
    assert np.array_equal(tested, np.arange(len(TABLE)))
    idx = TABLE.session_index("sub-00", "ses-00")
    for fold, split in enumerate(splits):
        block = np.intersect1d(idx, split.test)
        starts = np.sort(TABLE.start[block])
        assert np.allclose(np.diff(starts), 0.5)  # contiguous in time
        assert starts[0] == pytest.approx(fold * 5 * 0.5)


def test_cross_session_keeps_subject_in_training():
    split = cross_session_split(TABLE)
    assert set(TABLE.subject[split.test]) <= set(TABLE.subject[split.train])
    assert set(TABLE.session[split.test]) == {"ses-02"} and set(TABLE.session[split.val]) == {"ses-01"}


def test_cross_subject_named_subjects():
    split = cross_subject_split(TABLE, test_subjects=["sub-00"], val_subjects=["sub-01"])
    assert set(TABLE.subject[split.test]) == {"sub-00"}
    assert set(TABLE.subject[split.train]) == {"sub-02", "sub-03"}
    with pytest.raises(SplitError, match="not in the data"):
        cross_subject_split(TABLE, test_subjects=["sub-99"])


def test_check_catches_tampered_splits():
    good = cross_subject_split(TABLE)
    moved = np.flatnonzero(TABLE.subject == TABLE.subject[good.test[0]])[:1]
    bad = Split("cross_subject", np.concatenate([good.train, moved]), good.val, np.setdiff1d(good.test, moved))
    with pytest.raises(LeakageError, match="subjects"):
        bad.check(TABLE)
    ws = within_session_split(TABLE, val_fraction=0.0)
    idx = TABLE.session_index("sub-00", "ses-00")
    neighbour = np.setdiff1d(idx, np.concatenate([ws.train, ws.test]))[:1]  # dropped by the gap
    bad = Split("within_session", np.concatenate([ws.train, neighbour]), ws.val, ws.test, gap=ws.gap)
    with pytest.raises(LeakageError, match="closer than the gap"):
        bad.check(TABLE)
    xs = cross_session_split(TABLE)
    bad = Split("cross_session", np.concatenate([xs.train, xs.test[:1]]), xs.val, xs.test[1:])
    with pytest.raises(LeakageError, match="sessions"):
        bad.check(TABLE)
    with pytest.raises(LeakageError, match="both train and test"):
        Split("cross_subject", [0, 1], [], [1, 2]).check(TABLE)


def test_impossible_splits_raise_clear_errors():
    one_session = make_table(n_subjects=2, n_sessions=1)
    with pytest.raises(SplitError, match="two sessions"):
        cross_session_split(one_session)
    one_subject = make_table(n_subjects=1, n_sessions=2)
    with pytest.raises(SplitError, match="two subjects"):
        cross_subject_split(one_subject)
    with pytest.raises(SplitError, match="at least 30 windows"):
        within_session_kfold(one_subject, k=30)
    with pytest.raises(InputError, match="k must be"):
        within_session_kfold(TABLE, k=1)
    with pytest.raises(InputError, match="split kind"):
        make_splits(TABLE, "random")
    with pytest.raises(SplitError, match="empty"):
        within_session_split(make_table(1, 1, n_windows=3, stride=0.1), gap=5.0)


def test_make_splits_and_table_from_datasets():
    assert len(make_splits(TABLE, "cross_subject", k=None)) == 1
    assert len(make_splits(TABLE, "within_session", k=3)) == 3

    class FakeRecording:
        sampling_rate = 100.0

    class FakeDataset:
        recording = FakeRecording()
        window_samples = 50
        starts = np.array([0, 50, 100])
        labels = np.array([0, 1, 0])
        subject_id, session_id = "s1", "a"

    table = WindowTable.from_datasets([FakeDataset(), FakeDataset()])
    assert len(table) == 6 and np.allclose(table.stop[:3], [0.5, 1.0, 1.5])
    assert table.label.tolist() == [0, 1, 0, 0, 1, 0]
