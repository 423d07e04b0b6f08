"""Spatial ops: electrode selection, selection by name, fixed spatial filters."""

from __future__ import annotations

import pickle

import pytest
import torch

from neurocrane.batch import NeuralBatch
from neurocrane.errors import InputError, SpecError, TransformValidationError
from neurocrane.pipeline import Pipeline
from neurocrane.preprocessing import (
    LaplacianReference,
    RandomElectrodes,
    SelectChannels,
    SelectElectrodes,
    SpatialFilter,
    apply_spatial_filter,
    bipolar_montage,
    laplacian_montage,
    select_channel_indices,
    select_electrode_indices,
    select_electrodes,
)


def _data(*shape: int, dtype: torch.dtype = torch.float64, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _scaled(batch: int, channels: int, time: int, scales: list[list[float]]) -> torch.Tensor:
    """Data whose channel c in sample b has standard deviation ``scales[b][c]``."""
    return _data(batch, channels, time) * torch.tensor(scales, dtype=torch.float64)[:, :, None]


# -- select_electrodes (function) -----------------------------------------------------------
def test_first_strategy_and_fewer_channels_than_max() -> None:
    x = _data(2, 6, 10)
    torch.testing.assert_close(select_electrodes(x, 4), x[:, :4])
    torch.testing.assert_close(select_electrodes(x, 10), x)
    out, idx = select_electrodes(x[0], 3, return_indices=True)
    assert idx.tolist() == [0, 1, 2] and out.shape == (3, 10)


def test_variance_strategy_is_per_sample_and_keeps_order() -> None:
    x = _scaled(2, 5, 400, [[1, 9, 2, 8, 3], [7, 1, 1, 1, 6]])
    out, idx = select_electrodes(x, 2, "variance", return_indices=True)
    assert idx.tolist() == [[1, 3], [0, 4]]
    torch.testing.assert_close(out[0], x[0, [1, 3]])
    torch.testing.assert_close(out[1], x[1, [0, 4]])


def test_variance_given_shared_and_masked_channels_last() -> None:
    x = _data(3, 5, 20)
    idx = select_electrode_indices(x, 2, "variance", variance=torch.tensor([5.0, 1, 4, 3, 2]))
    assert idx.tolist() == [0, 2]  # one shared choice, (k,)
    mask = torch.tensor([False, True, True, True, True])
    idx = select_electrode_indices(x, 2, "variance", variance=torch.tensor([5.0, 1, 4, 3, 2]), channel_mask=mask)
    assert idx.tolist() == [2, 3]
    ties = select_electrode_indices(x, 2, "variance", variance=torch.ones(5))
    assert ties.tolist() == [0, 1]


def test_random_strategy_uses_generator() -> None:
    x = _data(2, 20, 5)
    a = select_electrode_indices(x, 6, "random", generator=torch.Generator().manual_seed(3))
    b = select_electrode_indices(x, 6, "random", generator=torch.Generator().manual_seed(3))
    c = select_electrode_indices(x, 6, "random", generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.tolist() == sorted(set(a.tolist())) and len(a) == 6
    torch.testing.assert_close(select_electrodes(x, 6, "random", generator=torch.Generator().manual_seed(3)), x[:, a])


def test_spectral_rank_and_autograd() -> None:
    x = _data(2, 5, 3, 4).requires_grad_()
    out = select_electrodes(x, 2, "variance")
    assert out.shape == (2, 2, 3, 4)
    out.sum().backward()
    assert x.grad.sum(dim=(2, 3)).count_nonzero(dim=1).tolist() == [2, 2]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtypes_preserved(dtype: torch.dtype) -> None:
    x = _data(2, 5, 8, dtype=dtype)
    for strategy in ("first", "random", "variance"):
        assert select_electrodes(x, 3, strategy).dtype == dtype  # type: ignore[union-attr]
    assert apply_spatial_filter(x, torch.eye(5)[:2]).dtype == dtype


def test_selection_errors() -> None:
    x = _data(2, 5, 8)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(InputError, match=r"select_electrodes: max_electrodes must be an integer >= 1"):
            select_electrodes(x, bad)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="strategy must be 'first', 'random' or 'variance'; got 'best'"):
        select_electrodes(x, 2, "best")  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"variance must have shape \(channels,\) = \(5,\)"):
        select_electrodes(x, 2, "variance", variance=torch.ones(4))
    with pytest.raises(TransformValidationError, match="max_electrodes"):
        SelectElectrodes(max_electrodes=0)
    with pytest.raises(TransformValidationError, match="max_electrodes"):
        RandomElectrodes(max_electrodes=0)
    with pytest.raises(TransformValidationError, match="strategy"):
        SelectElectrodes(max_electrodes=2, strategy="random")


# -- nodes ----------------------------------------------------------------------------------
def _batch(n_batch: int = 2, **kw: object) -> NeuralBatch:
    names = ["LA1", "LA2", "LA3", "LB1", "LB2", "LB3"]
    pos = torch.arange(18, dtype=torch.float64).reshape(6, 3)
    x = _scaled(n_batch, 6, 300, [[1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1], [1, 6, 1, 6, 1, 6]][:n_batch])
    return NeuralBatch(x, sampling_rate=100.0, channel_names=names, channel_positions=pos, **kw)  # type: ignore[arg-type]


def test_select_electrodes_first_node_metadata() -> None:
    mask = torch.tensor([[True, False, True, True, True, True], [True] * 6])
    batch = _batch(channel_mask=mask)
    out = SelectElectrodes(max_electrodes=3)(batch)
    assert out.channel_names == ("LA1", "LA2", "LA3")
    torch.testing.assert_close(out.channel_positions, batch.channel_positions[:3])
    assert out.channel_mask.tolist() == [[True, False, True], [True] * 3]
    assert SelectElectrodes(max_electrodes=6)(batch) is batch


def test_variance_node_metadata_and_batch_independence() -> None:
    mask = torch.tensor([[True] * 6, [False, True, True, True, True, True], [True] * 6])
    batch = _batch(3, channel_mask=mask)
    node = SelectElectrodes(max_electrodes=2, strategy="variance")
    out = node(batch)
    assert out.channel_names == ("sel0", "sel1") and out.channel_positions is None
    torch.testing.assert_close(out.signals[0], batch.signals[0, [4, 5]])
    torch.testing.assert_close(out.signals[1], batch.signals[1, [1, 2]])  # LA1 is masked in sample 1
    assert out.channel_mask.tolist() == [[True, True]] * 3
    alone = NeuralBatch.cat([node(batch[i]) for i in range(3)])
    torch.testing.assert_close(alone.signals, out.signals)
    # a sample's output does not change when its batch-mates do
    swapped = batch.replace(signals=torch.cat([batch.signals[:1], batch.signals[2:], batch.signals[1:2]]))
    torch.testing.assert_close(node(swapped).signals[0], out.signals[0])
    assert node.output_spec(batch.spec).channel_names == out.channel_names
    assert not node.recording_safe and SelectElectrodes(max_electrodes=2).recording_safe


def test_random_node_training_only_seeded_and_picklable() -> None:
    batch = _batch()
    node = RandomElectrodes(max_electrodes=3, seed=7)
    assert RandomElectrodes.training_only
    assert Pipeline([node])(batch).n_channels == 6  # eval mode: skipped
    first = RandomElectrodes(max_electrodes=3, seed=7)(batch).channel_names
    draws = [node(batch).channel_names for _ in range(4)]
    assert draws[0] == first and len(set(draws)) > 1  # a stream, reproducible from the seed
    out = node(batch)
    idx = [batch.channel_names.index(n) for n in out.channel_names]
    torch.testing.assert_close(out.signals, batch.signals[:, idx])
    torch.testing.assert_close(out.channel_positions, batch.channel_positions[idx])
    copy = pickle.loads(pickle.dumps(node))
    assert copy == node == RandomElectrodes(max_electrodes=3, seed=7)
    assert copy(batch).channel_names == node(batch).channel_names
    trained = Pipeline([node], training=True)(batch)
    assert trained.n_channels == 3
    unseeded = RandomElectrodes(max_electrodes=3)
    torch.manual_seed(0)
    a = unseeded(batch).channel_names
    torch.manual_seed(0)
    assert unseeded(batch).channel_names == a


def test_select_channels_keep_drop_and_masked() -> None:
    mask = torch.tensor([[True, False, True, True, False, True], [True, False, True, True, True, True]])
    batch = _batch(channel_mask=mask)
    out = SelectChannels(keep=["LB2", "LA1", "LA3"], drop=["LA3"])(batch)
    assert out.channel_names == ("LB2", "LA1")
    torch.testing.assert_close(out.signals, batch.signals[:, [4, 0]])
    torch.testing.assert_close(out.channel_positions, batch.channel_positions[[4, 0]])
    assert out.channel_mask.tolist() == [[False, True], [True, True]]
    bad = SelectChannels(drop_masked=True)(batch)
    assert bad.channel_names == ("LA1", "LA3", "LB1", "LB2", "LB3")  # LB2 is bad in one sample only
    assert bad.channel_mask[0].tolist() == [True, True, True, False, True]
    assert SelectChannels(keep=["LA1", "XX"], missing="ignore")(batch).channel_names == ("LA1",)
    assert select_channel_indices(["a", "b", "c"], drop=["b"]) == [0, 2]


def test_select_channels_errors() -> None:
    batch = _batch()
    with pytest.raises(InputError, match=r"select_channels: channels \['XX'\] are not in the data"):
        SelectChannels(drop=["XX"])(batch)
    with pytest.raises(SpecError, match=r"step 'select_channels'.*\['XX'\] are not in the data"):
        Pipeline([SelectChannels(keep=["LA1", "XX"])])(batch)
    with pytest.raises(InputError, match="no channel is left"):
        select_channel_indices(["a"], drop=["a"])
    with pytest.raises(TransformValidationError, match="more than once"):
        SelectChannels(keep=["a", "a"])
    with pytest.raises(TransformValidationError, match="at least one"):
        SelectChannels(keep=[])


def test_selection_then_laplacian_uses_source_channels() -> None:
    # distinct powers of ten per channel make any wrong source index visible
    names = ["LB1", "LA1", "X", "LA2", "LB2", "LA3", "LB3", "LA4"]
    x = torch.stack([torch.full((4,), 10.0**i) for i in range(len(names))]).double()[None]
    src = {n: x[0, i] for i, n in enumerate(names)}
    batch = NeuralBatch(x, channel_names=names)
    pipe = Pipeline(
        [
            SelectChannels(drop=["X", "LA3"]),
            LaplacianReference(require_neighbors="any", non_laplacian="drop"),
            SelectChannels(keep=["LA2", "LB2", "LA4"], missing="ignore"),
        ]
    )
    out = pipe(batch)
    assert out.channel_names == ("LA2", "LB2")  # LA4 lost its only neighbour LA3
    torch.testing.assert_close(out.signals[0, 0], src["LA2"] - src["LA1"])
    torch.testing.assert_close(out.signals[0, 1], src["LB2"] - 0.5 * (src["LB1"] + src["LB3"]))


# -- spatial filter -------------------------------------------------------------------------
def test_spatial_filter_resolves_inputs_by_name() -> None:
    batch = _batch()
    node = SpatialFilter(
        weights=[[1.0, -1.0, 0.0], [0.5, 0.0, 0.5]], input_channels=["LB3", "LA1", "LA2"], output_channels=["d", "m"]
    )
    out = node(batch)
    s = batch.signals
    torch.testing.assert_close(out.signals[:, 0], s[:, 5] - s[:, 0])
    torch.testing.assert_close(out.signals[:, 1], 0.5 * (s[:, 5] + s[:, 1]))
    assert out.channel_names == ("d", "m") and out.channel_positions is None
    assert node.output_spec(batch.spec).channel_names == ("d", "m")
    torch.testing.assert_close(apply_spatial_filter(s[0], torch.eye(6)[[5]]), s[0, [5]])


def test_spatial_filter_from_montage_matches_montage() -> None:
    batch = _batch()
    montage = laplacian_montage(batch.channel_names, require_neighbors="both", non_laplacian="drop")
    frozen = SpatialFilter.from_montage(montage)
    assert frozen.output_channels == ("LA2", "LB2")
    torch.testing.assert_close(
        frozen(batch).signals, LaplacianReference(require_neighbors="both", non_laplacian="drop")(batch).signals
    )
    bip = SpatialFilter.from_montage(bipolar_montage(batch.channel_names, "shaft"))
    again = Pipeline.from_json(Pipeline([bip]).to_json())[0]
    assert again == bip
    mask = torch.tensor([[True, False, True, True, True, True], [True] * 6])
    assert again(batch.replace(channel_mask=mask)).channel_mask[0].tolist() == [False, False, True, True]


def test_spatial_filter_validation() -> None:
    with pytest.raises(TransformValidationError, match="2 rows but 1 output_channels"):
        SpatialFilter(weights=[[1.0], [2.0]], input_channels=["a"], output_channels=["x"])
    with pytest.raises(TransformValidationError, match="needs 2 values"):
        SpatialFilter(weights=[[1.0, 2.0], [1.0]], input_channels=["a", "b"], output_channels=["x", "y"])
    with pytest.raises(TransformValidationError, match="weights"):
        SpatialFilter(weights=[[float("nan")]], input_channels=["a"], output_channels=["x"])
    with pytest.raises(TransformValidationError, match="must be unique"):
        SpatialFilter(weights=[[1.0, 1.0]], input_channels=["a", "a"], output_channels=["x"])
    node = SpatialFilter(weights=[[1.0]], input_channels=["ZZ"], output_channels=["x"])
    with pytest.raises(SpecError, match=r"input channels \['ZZ'\] are not in the data"):
        Pipeline([node])(_batch())
    with pytest.raises(InputError, match=r"weights must be \(channels_out, channels_in\) with channels_in = 6"):
        apply_spatial_filter(_data(6, 4), torch.ones(2, 5))


def test_all_nodes_round_trip_in_pipeline() -> None:
    pipe = Pipeline(
        [
            SelectChannels(keep=["LA1", "LA2", "LA3", "LB1"], drop=["LB1"], drop_masked=True, missing="ignore"),
            RandomElectrodes(max_electrodes=3, seed=5),
            SelectElectrodes(max_electrodes=2, strategy="variance"),
            SpatialFilter(weights=[[1.0, -1.0]], input_channels=["sel0", "sel1"], output_channels=["d"]),
        ],
        training=True,
    )
    for again in (Pipeline.from_dict(pipe.to_dict()), Pipeline.from_yaml(pipe.to_yaml())):
        assert again == pipe and again.fingerprint == pipe.fingerprint
    out = pipe(_batch())
    assert out.channel_names == ("d",) and tuple(out.signals.shape) == (2, 1, 300)
