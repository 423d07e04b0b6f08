"""NeuralBatch and SignalSpec: validation, metadata survival (pickle, .to, slicing, cat)."""

import pickle

import pytest
import torch

from neurocrane.batch import NeuralBatch, SignalSpec
from neurocrane.errors import InputError


def make_batch(b=3, c=4, t=100, **kw):
    names = kw.pop("channel_names", [f"LA{i + 1}" for i in range(c)])
    return NeuralBatch(
        torch.randn(b, c, t),
        sampling_rate=kw.pop("sampling_rate", 100.0),
        channel_names=names,
        channel_positions=kw.pop("channel_positions", torch.arange(c * 3, dtype=torch.float32).reshape(c, 3)),
        channel_mask=kw.pop("channel_mask", torch.ones(b, c, dtype=torch.bool)),
        applied=kw.pop("applied", ("abc",)),
        **kw,
    )


def assert_same_metadata(a: NeuralBatch, b: NeuralBatch) -> None:
    assert a.sampling_rate == b.sampling_rate
    assert a.channel_names == b.channel_names
    assert a.axes == b.axes
    assert a.frequencies == b.frequencies
    assert a.applied == b.applied
    assert torch.equal(a.channel_positions, b.channel_positions)


def test_defaults_and_spec():
    batch = NeuralBatch(torch.zeros(2, 3, 50))
    assert batch.channel_names == ("0", "1", "2")
    assert batch.sampling_rate is None
    spec = make_batch().spec
    assert spec.shape == (3, 4, 100)
    assert spec.duration == 1.0
    assert spec.has_positions
    assert "100 Hz" in str(spec)


def test_pickle_keeps_everything():
    batch = make_batch()
    again = pickle.loads(pickle.dumps(batch))
    assert torch.equal(again.signals, batch.signals)
    assert torch.equal(again.channel_mask, batch.channel_mask)
    assert_same_metadata(again, batch)


def test_to_keeps_metadata_and_mask_dtype():
    batch = make_batch()
    moved = batch.to(torch.float64)
    assert moved.dtype == torch.float64
    assert moved.channel_mask.dtype == torch.bool
    assert moved.channel_positions.dtype == torch.float64
    assert_same_metadata(moved.to(torch.float32), batch)


def test_slicing_keeps_batch_axis_and_metadata():
    batch = make_batch(b=5)
    one = batch[2]
    assert one.signals.shape == (1, 4, 100)
    assert torch.equal(one.signals[0], batch.signals[2])
    assert batch[-1].signals.shape[0] == 1 and torch.equal(batch[-1].signals[0], batch.signals[-1])
    part = batch[1:4]
    assert len(part) == 3 and part.channel_mask.shape == (3, 4)
    assert_same_metadata(part, batch)


def test_cat_is_the_collate_of_same_session_batches():
    a, b = make_batch(b=2), make_batch(b=3)
    both = NeuralBatch.cat([a, b])
    assert len(both) == 5
    assert torch.equal(both.signals[2:], b.signals)
    assert_same_metadata(both, a)
    with pytest.raises(InputError, match="different sampling_rate"):
        NeuralBatch.cat([a, make_batch(sampling_rate=200.0)])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"channel_names": ["a", "b"]}, "2 channel names given for 4 channels"),
        ({"channel_names": ["a", "a", "b", "c"]}, "repeated: \\['a'\\]"),
        ({"channel_positions": torch.zeros(3, 3)}, "channel_positions must have shape \\(4, 3\\)"),
        ({"channel_mask": torch.ones(4, 3, dtype=torch.bool)}, "channel_mask must have shape"),
        ({"sampling_rate": -5.0}, "positive finite"),
        ({"sampling_rate": float("nan")}, "positive finite"),
    ],
)
def test_invalid_metadata_is_refused(kwargs, message):
    with pytest.raises(InputError, match=message):
        make_batch(**kwargs)


def test_wrong_rank_is_refused_with_a_fix():
    with pytest.raises(InputError, match="unsqueeze"):
        NeuralBatch(torch.zeros(4, 100))


def test_channel_index_by_name():
    batch = make_batch()
    assert batch.channel_index(["LA3", "LA1"]) == [2, 0]
    with pytest.raises(InputError, match="not in this batch"):
        batch.channel_index(["RB1"])


def test_signal_spec_checks():
    with pytest.raises(InputError, match="one size"):
        SignalSpec(shape=(None, 3), axes=("batch", "channel", "time"))
    with pytest.raises(InputError, match="axes must start"):
        SignalSpec(shape=(None, 3, 4), axes=("channel", "batch", "time"))
    spec = SignalSpec(channel_names=["a", "b"])
    assert spec.n_channels == 2
