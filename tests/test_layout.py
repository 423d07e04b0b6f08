"""Layout ops: trim, NaN → number, axis reordering, and the BrainBERT output layout end to end."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import scipy.stats
import torch

from neurocrane import NeuralBatch, Pipeline, SignalSpec
from neurocrane.errors import InputError, SpecError, TransformValidationError
from neurocrane.preprocessing import (
    CommonAverageReference,
    NanToNum,
    PermuteAxes,
    Spectrogram,
    Trim,
    ZScore,
    nan_to_num,
    permute_axes,
    trim_edges,
)

SPECTRAL = ("batch", "channel", "freq", "time")


def _spectral_batch() -> NeuralBatch:
    x = torch.arange(2 * 3 * 4 * 30, dtype=torch.float32).reshape(2, 3, 4, 30)
    return NeuralBatch(x, sampling_rate=20.0, axes=SPECTRAL, frequencies=(1.0, 2.0, 3.0, 4.0), channel_names=["a", "b", "c"])


# -- functions --------------------------------------------------------------------------------
def test_trim_edges_drops_entries_at_both_ends():
    x = torch.arange(20.0).reshape(2, 10)
    torch.testing.assert_close(trim_edges(x, 2), x[:, 2:8])
    torch.testing.assert_close(trim_edges(x, 1, 3), x[:, 1:7])
    torch.testing.assert_close(trim_edges(x, 0, 0), x)
    torch.testing.assert_close(trim_edges(x.T, 3, dim=0), x.T[3:7])
    with pytest.raises(InputError, match="leaves nothing"):
        trim_edges(x, 5)
    with pytest.raises(InputError, match="integer >= 0"):
        trim_edges(x, -1)


def test_nan_to_num_replaces_nan_and_inf():
    x = torch.tensor([[1.0, float("nan"), float("inf"), -float("inf")]], dtype=torch.float64)
    assert nan_to_num(x).tolist()[0][:2] == [1.0, 0.0]
    assert torch.isfinite(nan_to_num(x)).all()
    assert nan_to_num(x, nan=-1.0, posinf=9.0, neginf=-9.0).tolist() == [[1.0, -1.0, 9.0, -9.0]]
    with pytest.raises(TypeError, match="floating-point"):
        nan_to_num(torch.ones(3, dtype=torch.int32))


def test_permute_axes_by_name():
    x = torch.randn(2, 3, 4, 5)
    out = permute_axes(x, SPECTRAL, ("batch", "channel", "time", "freq"))
    assert out.shape == (2, 3, 5, 4)
    torch.testing.assert_close(out, x.transpose(-1, -2))
    with pytest.raises(InputError, match="exactly the axes"):
        permute_axes(x, SPECTRAL, ("batch", "channel", "time", "feature"))
    with pytest.raises(InputError, match="once"):
        permute_axes(x, ("batch", "channel", "time"), ("batch", "channel", "time"))


# -- nodes ----------------------------------------------------------------------------------
def test_trim_node_finds_the_time_axis_by_name():
    batch = _spectral_batch()
    out = Trim(frames=10)(batch)
    torch.testing.assert_close(out.signals, batch.signals[..., 10:20])
    assert out.frequencies == batch.frequencies and out.sampling_rate == 20.0 and out.axes == SPECTRAL
    permuted = PermuteAxes(axes=("batch", "channel", "time", "freq"))(batch)
    torch.testing.assert_close(Trim(frames=10)(permuted).signals, permuted.signals[:, :, 10:20])
    # seconds are converted with the rate of the time axis (here the frame rate)
    torch.testing.assert_close(Trim(seconds=0.25)(batch).signals, batch.signals[..., 5:25])
    assert Trim(frames=10).output_spec(batch.spec).shape == (2, 3, 4, 10)


def test_trim_node_errors():
    with pytest.raises(TransformValidationError, match="exactly one"):
        Trim()
    with pytest.raises(TransformValidationError, match="exactly one"):
        Trim(frames=3, seconds=1.0)
    with pytest.raises(TransformValidationError, match="frames"):
        Trim(frames=-1)
    with pytest.raises(SpecError, match="leaves nothing"):
        Pipeline([Trim(frames=15)])(_spectral_batch())
    with pytest.raises(SpecError, match="sampling rate"):
        Trim(seconds=0.1).output_spec(SignalSpec(shape=(1, 2, 100)))
    # shape unknown: nothing to check yet
    assert Trim(frames=5).output_spec(SignalSpec()) == SignalSpec()


def test_nan_to_num_node():
    x = torch.randn(2, 3, 10)
    x[0, 1, 4] = float("nan")
    x[1, 2, 0] = float("inf")
    out = NanToNum()(NeuralBatch(x, sampling_rate=10.0))
    assert torch.isfinite(out.signals).all() and out.signals[0, 1, 4] == 0
    assert out.signals[1, 2, 0] == torch.finfo(torch.float32).max
    assert NanToNum(posinf=5.0)(x)[1, 2, 0] == 5.0


def test_permute_node_updates_axes_and_keeps_metadata():
    batch = _spectral_batch()
    node = PermuteAxes(axes=("channel", "time", "freq"))  # leading "batch" may be left out
    assert node.axes == ("batch", "channel", "time", "freq")
    out = node(batch)
    assert out.axes == ("batch", "channel", "time", "freq")
    assert out.signals.shape == (2, 3, 30, 4)
    assert out.frequencies == batch.frequencies and out.channel_names == batch.channel_names
    assert node.output_spec(batch.spec).shape == (2, 3, 30, 4)
    # spectral-aware steps keep working by axis name after the reordering
    z_after = Pipeline([node, ZScore(axes=("time",))])(batch)
    z_before = Pipeline([ZScore(axes=("time",)), node])(batch)
    torch.testing.assert_close(z_after.signals, z_before.signals)
    car_after = Pipeline([node, CommonAverageReference()])(batch)
    car_before = Pipeline([CommonAverageReference(), node])(batch)
    torch.testing.assert_close(car_after.signals, car_before.signals)


def test_permute_node_errors():
    with pytest.raises(TransformValidationError, match="start with"):
        PermuteAxes(axes=("time", "batch", "channel"))
    with pytest.raises(TransformValidationError, match="distinct"):
        PermuteAxes(axes=("batch", "channel", "time", "time"))
    with pytest.raises(TransformValidationError, match="axes"):
        PermuteAxes(axes=("batch", "channel", "space"))
    with pytest.raises(SpecError, match="reordering"):
        Pipeline([PermuteAxes(axes=("batch", "channel", "time", "freq"))])(torch.randn(2, 3, 10), sampling_rate=10.0)


# -- BrainBERT output layout end to end ----------------------------------------------------------
def test_brainbert_output_layout_matches_a_scipy_reference():
    fs, n = 2048, 2048 * 2
    x = np.random.default_rng(3).standard_normal((2, 3, n))
    x[1, 2] = 0.0  # a flat channel: std 0 is replaced by 1, so NaN never appears
    pipe = Pipeline(
        [
            Spectrogram(window_length=400 / fs, hop_length=50 / fs, freq_range=(0.0, 200.0), pad_end=True, scale_by_window=True),
            ZScore(axes=("time",)),
            Trim(frames=10),
            NanToNum(),
            PermuteAxes(axes=("batch", "channel", "time", "freq")),
        ]
    )
    out = pipe(NeuralBatch(torch.from_numpy(x), sampling_rate=float(fs)))
    _, _, z = scipy.signal.stft(x, fs=fs, nperseg=400, noverlap=350)
    mag = np.abs(z[..., :40, :])
    std = mag.std(axis=-1, keepdims=True)
    ref = (mag - mag.mean(axis=-1, keepdims=True)) / np.where(std > 1e-8, std, 1.0)
    ref = np.nan_to_num(ref[..., 10:-10]).swapaxes(-1, -2)
    assert out.signals.shape == ref.shape == (2, 3, z.shape[-1] - 20, 40)
    np.testing.assert_allclose(out.signals.numpy(), ref, atol=1e-9)
    assert out.axes == ("batch", "channel", "time", "freq") and len(out.frequencies) == 40
    spec = pipe.output_spec(SignalSpec(shape=(None, 3, n), sampling_rate=float(fs)))
    assert spec.shape == (None, *out.signals.shape[1:]) and spec.axes == out.axes


def test_layout_nodes_round_trip():
    pipe = Pipeline([Trim(seconds=0.5), NanToNum(nan=-1.0, posinf=1e3, neginf=-1e3), PermuteAxes(axes=("channel", "time"))])
    for again in (Pipeline.from_dict(pipe.to_dict()), Pipeline.from_yaml(pipe.to_yaml()), Pipeline.from_json(pipe.to_json())):
        assert again == pipe and again.fingerprint == pipe.fingerprint
    x = torch.randn(2, 3, 100)
    torch.testing.assert_close(Pipeline.from_yaml(pipe.to_yaml())(x, sampling_rate=20.0), x[..., 10:90])
