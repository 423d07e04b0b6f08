"""Normalization: z-score, min-max, robust scaling vs NumPy/SciPy/scikit-learn; masks, batches."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch
from sklearn.preprocessing import RobustScaler

from neurocrane import NeuralBatch, Pipeline
from neurocrane.errors import InputError, SpecError, TransformValidationError
from neurocrane.preprocessing import (
    MinMax,
    PermuteAxes,
    RobustScale,
    ZScore,
    minmax_normalize,
    robust_normalize,
    zscore_normalize,
)

RNG = np.random.default_rng(7)


def _data(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape) * RNG.uniform(0.5, 5.0, shape[:-1] + (1,)) + 3.0


def _minmax_ref(x: np.ndarray, axis, low=0.0, high=1.0) -> np.ndarray:
    lo, hi = x.min(axis=axis, keepdims=True), x.max(axis=axis, keepdims=True)
    return low + (high - low) * (x - lo) / (hi - lo)


def _robust_ref(x: np.ndarray, axis, rng=(25, 75)) -> np.ndarray:
    return (x - np.median(x, axis=axis, keepdims=True)) / scipy.stats.iqr(x, axis=axis, rng=rng, keepdims=True)


# -- against reference implementations -------------------------------------------------------------
@pytest.mark.parametrize("ddof", [0, 1])
@pytest.mark.parametrize("dim", [-1, (1, 2)])
def test_zscore_matches_scipy(ddof, dim):
    x = _data(3, 4, 200)
    ours = zscore_normalize(torch.from_numpy(x), dim=dim, ddof=ddof).numpy()
    axis = (1, 2) if dim == (1, 2) else -1
    np.testing.assert_allclose(ours, scipy.stats.zscore(x, axis=axis, ddof=ddof), atol=1e-12)


@pytest.mark.parametrize("dim", [-1, (1, 2)])
def test_minmax_matches_numpy(dim):
    x = _data(3, 4, 200)
    axis = (1, 2) if dim == (1, 2) else -1
    ours = minmax_normalize(torch.from_numpy(x), dim=dim, feature_range=(-1.0, 2.0)).numpy()
    np.testing.assert_allclose(ours, _minmax_ref(x, axis, -1.0, 2.0), atol=1e-12)
    assert ours.min() == pytest.approx(-1.0) and ours.max() == pytest.approx(2.0)


@pytest.mark.parametrize("dim", [-1, (1, 2)])
@pytest.mark.parametrize("n", [200, 201])  # even and odd counts: median interpolation
def test_robust_matches_median_and_scipy_iqr(dim, n):
    x = _data(3, 4, n)
    axis = (1, 2) if dim == (1, 2) else -1
    ours = robust_normalize(torch.from_numpy(x), dim=dim).numpy()
    np.testing.assert_allclose(ours, _robust_ref(x, axis), atol=1e-12)
    wide = robust_normalize(torch.from_numpy(x), dim=dim, quantile_range=(10.0, 90.0)).numpy()
    np.testing.assert_allclose(wide, _robust_ref(x, axis, (10, 90)), atol=1e-12)


def test_robust_unit_variance_matches_sklearn_robust_scaler():
    x = _data(2, 3, 300)
    ours = robust_normalize(torch.from_numpy(x), unit_variance=True, quantile_range=(20.0, 80.0)).numpy()
    for b in range(2):  # scikit-learn scales columns over rows: one channel per column
        ref = RobustScaler(quantile_range=(20.0, 80.0), unit_variance=True).fit_transform(x[b].T).T
        np.testing.assert_allclose(ours[b], ref, atol=1e-12)


def test_clipping():
    x = torch.from_numpy(_data(2, 3, 100))
    x[0, 0, 5] = 1e6
    assert zscore_normalize(x, clip=2.0).abs().max() == 2.0
    assert robust_normalize(x, clip=3.0).abs().max() == 3.0
    out = minmax_normalize(x, feature_range=(0.0, 1.0), clip=True)
    assert out.min() >= 0.0 and out.max() <= 1.0


# -- masks, constants, batches ------------------------------------------------------------------
FUNCS = {
    "zscore": lambda x, **kw: zscore_normalize(x, **kw),
    "minmax": lambda x, **kw: minmax_normalize(x, **kw),
    "robust": lambda x, **kw: robust_normalize(x, **kw),
}


@pytest.mark.parametrize("name", list(FUNCS))
@pytest.mark.parametrize("dim", [-1, (1, 2)])
def test_masked_channels_are_ignored_and_never_nan(name, dim):
    fn = FUNCS[name]
    x = torch.from_numpy(_data(2, 4, 120))
    mask = torch.tensor([[True, False, True, True], [False, True, True, False]])
    dirty = x.clone()
    dirty[0, 1] = float("nan")  # padding channels may hold anything
    dirty[1, 0] = 1e9
    dirty[1, 3] = float("inf")
    out = fn(dirty, dim=dim, channel_mask=mask)
    assert torch.isfinite(out).all()
    assert (out[~mask] == 0).all()
    for b in range(2):
        kept = mask[b]
        alone = fn(x[b : b + 1, kept], dim=dim)  # the same sample with only its real channels
        torch.testing.assert_close(out[b : b + 1, kept], alone)


@pytest.mark.parametrize("name", list(FUNCS))
def test_constant_channels_do_not_produce_nan(name):
    x = torch.zeros(2, 3, 50, dtype=torch.float32)
    x[:, 1] = 7.5
    x[:, 2] = torch.randn(2, 50)
    out = FUNCS[name](x)
    assert torch.isfinite(out).all()
    assert (out[:, :2] == 0).all()  # constant -> 0 (zscore/robust: centred; minmax: low end)
    everything_masked = FUNCS[name](x, channel_mask=torch.zeros(2, 3, dtype=torch.bool), dim=(1, 2))
    assert (everything_masked == 0).all()


@pytest.mark.parametrize("name", list(FUNCS))
def test_statistics_are_per_sample(name):
    x = torch.from_numpy(_data(4, 3, 80))
    out = FUNCS[name](x, dim=(1, 2))
    for i in range(4):
        torch.testing.assert_close(FUNCS[name](x[i : i + 1], dim=(1, 2)), out[i : i + 1])
    x2 = x.clone()
    x2[1:] *= 100  # other samples change: sample 0 must not
    torch.testing.assert_close(FUNCS[name](x2, dim=(1, 2))[0], out[0])


@pytest.mark.parametrize("name", list(FUNCS))
def test_dtype_rank_and_autograd(name):
    x = torch.randn(3, 60, requires_grad=True)  # unbatched (channels, time)
    out = FUNCS[name](x)
    assert out.shape == (3, 60) and out.dtype == torch.float32
    (out * torch.linspace(0, 1, 60)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_robust_on_input_larger_than_torch_quantile_accepts():
    # torch.quantile refuses more than 2**24 elements; the sort-based quantiles must not
    x = torch.linspace(-1.0, 1.0, (1 << 24) + 1, dtype=torch.float64).reshape(1, 1, -1)
    out = robust_normalize(x)  # median 0, quartiles -0.5 and 0.5: the output equals the input
    torch.testing.assert_close(out[..., ::65537], x[..., ::65537], atol=1e-9, rtol=0)


# -- nodes -------------------------------------------------------------------------------------
def test_nodes_use_axis_names_on_any_layout():
    spec_data = torch.from_numpy(_data(2, 3, 5, 40))  # (batch, channel, freq, time)
    batch = NeuralBatch(spec_data, sampling_rate=10.0, axes=("batch", "channel", "freq", "time"), frequencies=range(5))
    permuted = PermuteAxes(axes=("batch", "channel", "time", "freq"))(batch)
    for node, fn in (
        (ZScore(axes=("time",)), zscore_normalize),
        (MinMax(axes=("time",)), minmax_normalize),
        (RobustScale(axes=("time",)), robust_normalize),
    ):
        direct = node(batch)
        torch.testing.assert_close(direct.signals, fn(spec_data, dim=-1))
        # after reordering to (time, freq) the node still normalizes over time
        torch.testing.assert_close(node(permuted).signals, direct.signals.transpose(-1, -2))
        assert direct.frequencies == batch.frequencies and direct.axes == batch.axes


def test_nodes_apply_the_batch_channel_mask():
    x = torch.from_numpy(_data(2, 3, 100))
    mask = torch.tensor([[True, True, False], [True, True, True]])
    batch = NeuralBatch(x, sampling_rate=100.0, channel_mask=mask)
    for node, fn in (
        (ZScore(axes=("channel", "time")), zscore_normalize),
        (MinMax(axes=("channel", "time")), minmax_normalize),
        (RobustScale(axes=("channel", "time"), unit_variance=True), lambda v, **kw: robust_normalize(v, unit_variance=True, **kw)),
    ):
        out = node(batch)
        torch.testing.assert_close(out.signals, fn(x, dim=(1, 2), channel_mask=mask))
        assert (out.signals[0, 2] == 0).all()
        assert out.channel_mask is not None and torch.equal(out.channel_mask, mask)


def test_node_validation_and_spec_errors():
    with pytest.raises(TransformValidationError, match="low < high"):
        MinMax(feature_range=(1.0, 1.0))
    with pytest.raises(TransformValidationError, match="quantile_range"):
        RobustScale(quantile_range=(75.0, 25.0))
    with pytest.raises(TransformValidationError, match="distinct"):
        RobustScale(axes=("time", "time"))
    with pytest.raises(TransformValidationError, match="axes"):
        ZScore(axes=("batch",))  # statistics never run across the batch
    with pytest.raises(SpecError, match="freq"):
        Pipeline([MinMax(axes=("freq",))])(torch.randn(2, 3, 10), sampling_rate=10.0)


def test_function_errors():
    x = torch.randn(2, 3, 10)
    with pytest.raises(InputError, match="out of range"):
        minmax_normalize(x, dim=3)
    with pytest.raises(InputError, match="channel_mask"):
        robust_normalize(x, channel_mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(InputError, match="quantile_range"):
        robust_normalize(x, quantile_range=(30.0, 20.0))
    with pytest.raises(InputError, match="feature_range"):
        minmax_normalize(x, feature_range=(0.0, float("inf")))
    with pytest.raises(InputError, match="eps"):
        zscore_normalize(x, eps=-1.0)
    with pytest.raises(TypeError, match="floating-point"):
        robust_normalize(torch.ones(2, 3, dtype=torch.int64))


def test_normalization_nodes_round_trip_in_a_pipeline():
    pipe = Pipeline(
        [
            ZScore(axes=("channel", "time"), ddof=1),
            RobustScale(quantile_range=(10.0, 90.0), clip=5.0),
            MinMax(feature_range=(-1.0, 1.0), clip=True),
        ]
    )
    for again in (Pipeline.from_dict(pipe.to_dict()), Pipeline.from_yaml(pipe.to_yaml()), Pipeline.from_json(pipe.to_json())):
        assert again == pipe and again.fingerprint == pipe.fingerprint
    x = torch.randn(2, 3, 50)
    torch.testing.assert_close(Pipeline.from_dict(pipe.to_dict())(x), pipe(x))
    assert pipe(x).abs().max() <= 1.0
