"""iEEGDataModule: subject/trials files, leak-free splits, batch strategies, a real Trainer epoch loop."""

from __future__ import annotations

import json

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from neurocrane.data.datamodule import iEEGDataModule, read_subject_trials, select_sessions
from neurocrane.data.recording import Event, Recording, RecordingIndex, write_recording
from neurocrane.errors import InputError

FS = 64.0


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """3 subjects x 2 sessions, 20 s at 64 Hz; channel sets differ between subjects; events every 1 s."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    for s in range(3):
        names = [f"S{s}_{c}" for c in range(3 + s)] if s < 2 else ["S0_0", "X1", "X2"]
        for e in range(2):
            x = rng.standard_normal((len(names), int(20 * FS))).astype(np.float32)
            x[0, 5] = np.nan
            events = [Event(t + 0.5, 0.2, "a" if k % 3 else "b") for k, t in enumerate(range(19))]
            rec = Recording.from_array(
                x, FS, names, subject_id=f"sub-{s:02d}", session_id=f"ses-{e:02d}", events=events,
                channel_positions=np.arange(3.0 * len(names)).reshape(-1, 3),
            )
            write_recording(root / f"sub-{s:02d}" / f"ses-{e:02d}", rec)
    return root


def trials(tmp_path, text, name="trials.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def dm(corpus, path, **kw):
    kw.setdefault("num_workers", 0)
    kw.setdefault("batch_size", 4)
    kw.setdefault("context_length", 1.0)
    return iEEGDataModule(path, data_root_dir=corpus, **kw)


ALL_CSV = "subject,session\nsub-00,*\nsub-01,*\nsub-02,*\n"


@pytest.mark.parametrize(
    "name,text",
    [
        ("t.csv", "subject,session\nsub-00,ses-00\nsub-01,*\n"),
        ("t.tsv", "subject\tsession\nsub-00\tses-00\nsub-01\t*\n"),
        ("t.yaml", "sub-00: [ses-00]\nsub-01: '*'\n"),
        ("t.json", json.dumps([["sub-00", "ses-00"], {"subject": "sub-01", "session": "*"}])),
    ],
)
def test_subject_trials_formats(tmp_path, corpus, name, text):
    pairs = read_subject_trials(trials(tmp_path, text, name))
    assert pairs == [("sub-00", "ses-00"), ("sub-01", "*")]
    assert select_sessions(pairs, RecordingIndex(corpus)) == [
        ("sub-00", "ses-00"), ("sub-01", "ses-00"), ("sub-01", "ses-01")]


@pytest.mark.parametrize(
    "name,text,match",
    [
        ("t.csv", "subject,session\n", "selects no session"),
        ("t.yaml", "", "selects no session"),
        ("t.json", "[]", "selects no session"),
        ("t.csv", "who,what\na,b\n", "'subject' and a 'session' column"),
        ("t.txt", "sub-00 ses-00", "unknown subject/trials file type"),
        ("t.yaml", "sub-00: {a: 1}", "must be a list"),
    ],
)
def test_bad_subject_trials_files(tmp_path, name, text, match):
    with pytest.raises(InputError, match=match):
        read_subject_trials(trials(tmp_path, text, name))


def test_unknown_ids_are_named(tmp_path, corpus):
    index = RecordingIndex(corpus)
    with pytest.raises(InputError, match="sub-09.*known subjects"):
        select_sessions([("sub-09", "*")], index)
    with pytest.raises(InputError, match="ses-07.*ses-00"):
        select_sessions([("sub-00", "ses-07")], index)
    with pytest.raises(FileNotFoundError):
        read_subject_trials(tmp_path / "missing.csv")


@pytest.mark.parametrize("split_by", ["session", "subject"])
def test_split_holds_out_whole_sessions_or_subjects(tmp_path, corpus, split_by):
    d = dm(corpus, trials(tmp_path, ALL_CSV), val_split=0.34, split_by=split_by, seed=3)
    d.setup("fit")
    assert set(d.train_sessions).isdisjoint(d.val_sessions)
    assert len(d.train_sessions) + len(d.val_sessions) == 6
    train_keys = {(w.subject_id, w.session_id) for w in d.train_dataset.datasets}
    val_keys = {(w.subject_id, w.session_id) for w in d.val_dataset.datasets}
    assert train_keys.isdisjoint(val_keys)
    if split_by == "subject":
        assert {s for s, _ in train_keys}.isdisjoint({s for s, _ in val_keys})
    # every window a training batch can deliver belongs to a training session
    seen = {(s, e) for b in d.train_dataloader() for s, e in zip(b["subject_id"], b["session_id"], strict=True)}
    assert seen <= train_keys
    again = dm(corpus, trials(tmp_path, ALL_CSV), val_split=0.34, split_by=split_by, seed=3)
    again.setup()
    assert again.val_sessions == d.val_sessions  # the split is a function of the seed


def test_explicit_val_file_and_errors(tmp_path, corpus):
    val = trials(tmp_path, "subject,session\nsub-02,ses-01\n", "val.csv")
    d = dm(corpus, trials(tmp_path, ALL_CSV), val_subject_trials_file=val)
    d.setup()
    assert d.val_sessions == [("sub-02", "ses-01")] and ("sub-02", "ses-01") not in d.train_sessions
    one = trials(tmp_path, "subject,session\nsub-00,ses-00\n", "one.csv")
    with pytest.raises(InputError, match="needs at least 2"):
        dm(corpus, one, val_split=0.2).setup()
    with pytest.raises(InputError, match="selects no session"):
        dm(corpus, trials(tmp_path, "subject,session\n", "empty.csv")).setup()
    with pytest.raises(InputError, match="does not fit"):
        dm(corpus, one, val_split=0.0, context_length=30.0).setup()
    with pytest.raises(InputError, match="windows='events'"):
        dm(corpus, one, batch_strategy="balanced")
    with pytest.raises(InputError, match="batch_strategy"):
        dm(corpus, one, batch_strategy="by-phase")


@pytest.mark.parametrize("strategy", ["session", "subject", "random", "balanced"])
def test_batch_strategies_deliver_clean_batches(tmp_path, corpus, strategy):
    kw = dict(windows="events", event_offset=-0.25) if strategy == "balanced" else {}
    d = dm(corpus, trials(tmp_path, ALL_CSV), val_split=0.34, batch_strategy=strategy, batch_size=6, **kw)
    d.setup()
    batches = list(d.train_dataloader())
    assert len(batches) == len(d.train_dataloader().batch_sampler) > 0
    for b in batches:
        x = b["neural_data"]
        assert x.dtype == torch.float32 and torch.isfinite(x).all() and x.shape[0] == 6 and x.shape[2] == 64
        assert x.shape[1] == len(b["channel_names"]) == b["channel_mask"].shape[1]
        assert (x * ~b["channel_mask"][..., None]).eq(0).all()
        if strategy == "session":
            assert len(set(b["session_id"])) == 1 and b["channel_mask"].all()
        if strategy == "subject":
            assert len(set(b["subject_id"])) == 1
        if strategy == "balanced":
            counts = torch.bincount(b["labels"], minlength=2)
            assert (counts == 3).all()
    if strategy != "balanced":  # (event windows start after the planted NaN at 0.08 s)
        assert any(b["n_replaced"] > 0 for b in batches)  # the planted NaN was cleaned and counted
    val = list(d.val_dataloader())
    assert val and sum(len(b["labels"]) for b in val) == len(d.val_dataset)  # validation keeps every window
    if strategy in ("session", "balanced"):  # balanced validates by session, without oversampling
        assert all(len(set(b["session_id"])) == 1 for b in val)


def test_val_split_zero_has_no_val_loader(tmp_path, corpus):
    d = dm(corpus, trials(tmp_path, ALL_CSV), val_split=0.0)
    d.setup()
    assert d.val_dataloader() == [] and len(d.train_sessions) == 6


def test_default_root_is_the_trials_file_folder(corpus):
    path = corpus / "trials.csv"
    path.write_text("subject,session\nsub-00,ses-00\nsub-00,ses-01\n")
    d = iEEGDataModule(path, context_length=1.0, batch_size=4, num_workers=0, val_split=0.5)
    d.setup()
    assert len(d.train_sessions) == 1 and len(d.val_sessions) == 1


def test_pipeline_recording_part_runs_once_and_stamps_batches(tmp_path, corpus):
    from neurocrane.pipeline import Pipeline
    from neurocrane.preprocessing import Highpass, ZScore

    pipe = Pipeline([Highpass(cutoff=2.0), ZScore()])
    part = pipe.split()[0]
    path = trials(tmp_path, "subject,session\nsub-01,ses-00\n")
    d = dm(corpus, path, val_split=0.0, pipeline=pipe.to_dict(), cache_dir=tmp_path / "cache", batch_size=2)
    d.prepare_data()
    assert any((tmp_path / "cache").rglob("recording.json"))  # the cache was filled before setup
    d.setup()
    batch = next(iter(d.train_dataloader()))
    assert batch["applied"] == (part.fingerprint,)
    raw = dm(corpus, path, val_split=0.0, batch_size=2, drop_last=False)
    raw.setup()
    first = raw.train_dataset[3]["neural_data"]  # (window 0 holds the planted NaN)
    filtered = d.train_dataset[3]["neural_data"]
    assert first.shape == filtered.shape and not torch.allclose(first, filtered, atol=1e-3)
    assert torch.isfinite(filtered).all()


class _Recorder(pl.LightningModule):
    """Tiny model that records the windows it was given, per epoch."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(64, 1)
        self.seen: dict[int, list[tuple]] = {}

    def training_step(self, batch, batch_idx):
        ids = list(zip(batch["subject_id"], batch["session_id"], batch["start"].tolist(), strict=True))
        self.seen.setdefault(self.current_epoch, []).append(tuple(ids))
        return self.layer(batch["neural_data"]).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


@pytest.mark.parametrize("workers", [0, 2])  # the main thread, and two loader threads (the default kind)
def test_set_epoch_fires_under_a_real_trainer(tmp_path, corpus, workers):
    d = dm(corpus, trials(tmp_path, ALL_CSV), val_split=0.0, batch_size=8, drop_last=False, num_workers=workers)
    model = _Recorder()
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_epochs=3, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=d)
    epochs = [model.seen[e] for e in range(3)]
    assert all(len(e) == len(epochs[0]) > 0 for e in epochs)
    assert epochs[0] != epochs[1] and epochs[1] != epochs[2]  # the order changes every epoch
    # and each epoch is the same set of windows, none twice
    for e in epochs:
        flat = [w for b in e for w in b]
        assert len(flat) == len(set(flat))
    assert {w for b in epochs[0] for w in b} == {w for b in epochs[1] for w in b}
    assert d.n_replaced > 0  # counted in the main process via on_after_batch_transfer


@pytest.mark.parametrize("worker_type", ["thread", "process"])
def test_worker_batches_equal_main_process_batches_and_are_time_major(tmp_path, corpus, worker_type):
    from neurocrane.data.loader import WindowDataLoader
    from neurocrane.data.windows import ConcatWindowDataset

    path = trials(tmp_path, ALL_CSV)
    kw = dict(val_split=0.0, batch_strategy="random", batch_size=5, drop_last=False)
    main, workers = dm(corpus, path, **kw), dm(corpus, path, num_workers=2, worker_type=worker_type, **kw)
    loader = workers.train_dataloader()
    assert isinstance(loader, WindowDataLoader) and loader.worker_type == worker_type
    assert loader.prefetch_factor == (1 if worker_type == "thread" else 2)
    for d in (main, workers):
        d.setup()
        assert isinstance(d.train_dataset, ConcatWindowDataset)
    a, b = list(main.train_dataloader()), list(workers.train_dataloader())
    assert len(a) == len(b) == len(main.train_dataloader().batch_sampler)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x["neural_data"], y["neural_data"]) and x["channel_names"] == y["channel_names"]
        assert torch.equal(x["channel_mask"], y["channel_mask"]) and torch.equal(x["start"], y["start"])
        assert x["session_id"] == y["session_id"] and x["n_replaced"] == y["n_replaced"]
        for batch in (x, y):  # (B, C, T) views of time-major (B, T, C) memory
            assert batch["neural_data"].transpose(1, 2).is_contiguous()
    assert sum(x["n_replaced"] for x in a) > 0


def test_worker_type_and_prefetch_factor_are_checked(tmp_path, corpus):
    path = trials(tmp_path, ALL_CSV)
    with pytest.raises(InputError, match="worker_type must be 'thread' or 'process'"):
        dm(corpus, path, worker_type="greenlet")
    with pytest.raises(InputError, match="prefetch_factor"):
        dm(corpus, path, prefetch_factor=0)
    d = dm(corpus, path, num_workers=2, prefetch_factor=3, val_split=0.0)
    assert d.train_dataloader().prefetch_factor == 3
