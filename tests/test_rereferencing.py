"""Re-referencing: CAR and bipolar against MNE, Laplacian against a per-electrode loop,
label parsing, metadata, errors and pipeline round-trips."""

from __future__ import annotations

import mne
import numpy as np
import pytest
import torch

from neurocrane.batch import NeuralBatch
from neurocrane.errors import InputError, SpecError, TransformValidationError
from neurocrane.pipeline import Pipeline
from neurocrane.preprocessing import (
    BipolarReference,
    CommonAverageReference,
    LaplacianReference,
    bipolar_montage,
    bipolar_rereference,
    common_average_rereference,
    laplacian_montage,
    laplacian_rereference,
    parse_contact_label,
)

mne.set_log_level("ERROR")

SEEG = ["LA1", "LA2", "LA3", "LA4", "O1aIb3", "O1aIb4", "O1aIb5", "RH7", "RH9"]


def _data(*shape: int, dtype: torch.dtype = torch.float64, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _raw(x: torch.Tensor, names: list[str]) -> mne.io.RawArray:
    info = mne.create_info(names, 100.0, "seeg")
    return mne.io.RawArray(x.numpy().copy(), info)


# -- CAR ------------------------------------------------------------------------------------
def test_car_matches_mne_average_reference() -> None:
    x = _data(6, 50)
    names = [f"E{i}" for i in range(6)]
    ref, _ = mne.set_eeg_reference(_raw(x, names), "average", copy=True, projection=False)
    np.testing.assert_allclose(common_average_rereference(x).numpy(), ref.get_data(), atol=1e-12)


def test_car_excluding_bad_channels_matches_mne_bads() -> None:
    x = _data(6, 50)
    names = [f"E{i}" for i in range(6)]
    raw = _raw(x, names)
    raw.info["bads"] = ["E1", "E4"]
    ref, _ = mne.set_eeg_reference(raw, "average", copy=True, projection=False)
    mask = torch.tensor([True, False, True, True, False, True])
    out = common_average_rereference(x, channel_mask=mask)
    np.testing.assert_allclose(out.numpy(), ref.get_data(), atol=1e-12)
    assert torch.equal(out[1], x[1]) and not torch.allclose(out[0], x[0])


def test_car_median_and_per_sample_mask() -> None:
    x = _data(2, 5, 30)
    out = common_average_rereference(x, method="median")
    np.testing.assert_allclose(out.numpy(), x.numpy() - np.median(x.numpy(), axis=1, keepdims=True), atol=1e-12)
    mask = torch.tensor([[True, True, False, True, True], [True, True, True, True, True]])
    out = common_average_rereference(x, channel_mask=mask, method="median")
    good = x[0, [0, 1, 3, 4]].numpy()
    np.testing.assert_allclose(out[0, 0].numpy(), x[0, 0].numpy() - np.median(good, axis=0), atol=1e-12)
    np.testing.assert_allclose(out[1].numpy(), x[1].numpy() - np.median(x[1].numpy(), axis=0), atol=1e-12)
    assert torch.equal(out[0, 2], x[0, 2])


def test_car_node_exclude_masked_switch() -> None:
    x = _data(1, 4, 20)
    mask = torch.tensor([[True, True, True, False]])
    batch = NeuralBatch(x, channel_mask=mask)
    excl = CommonAverageReference()(batch).signals
    incl = CommonAverageReference(exclude_masked=False)(batch).signals
    torch.testing.assert_close(excl[0, 0], x[0, 0] - x[0, :3].mean(0))
    torch.testing.assert_close(incl[0, 0], x[0, 0] - x[0].mean(0))


# -- labels ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("label", "expected"),
    [("O1aIb4", ("O1aIb", 4)), ("LA12", ("LA", 12)), ("LA01", ("LA", 1)), ("LA'3", ("LA'", 3)), ("x9", ("x", 9))],
)
def test_parse_contact_label(label: str, expected: tuple[str, int]) -> None:
    assert parse_contact_label(label) == expected


@pytest.mark.parametrize("label", ["LA", "123", "", "LA1x"])
def test_parse_contact_label_rejects_unknown_formats(label: str) -> None:
    with pytest.raises(InputError, match="cannot parse") as err:
        parse_contact_label(label)
    assert repr(label) in str(err.value) and "parse_contact_label" in str(err.value)


# -- Laplacian vs a per-electrode loop -------------------------------------------------------
def _loop_laplacian(
    x: torch.Tensor, neighbours: list[list[int]], require: str, non_laplacian: str
) -> tuple[torch.Tensor, list[int]]:
    outs, kept = [], []
    need = 2 if require == "both" else 1
    for i, nbrs in enumerate(neighbours):
        if len(nbrs) >= need:
            outs.append(x[..., i, :] - torch.stack([x[..., j, :] for j in nbrs]).mean(0))
            kept.append(i)
        elif non_laplacian == "keep":
            outs.append(x[..., i, :])
            kept.append(i)
    return torch.stack(outs, dim=-2), kept


def _label_neighbours_loop(names: list[str]) -> list[list[int]]:
    out = []
    for name in names:
        stem, num = parse_contact_label(name)
        out.append(
            [j for j, other in enumerate(names) if parse_contact_label(other) in ((stem, num - 1), (stem, num + 1))]
        )
    return out


@pytest.mark.parametrize("require", ["any", "both"])
@pytest.mark.parametrize("non_laplacian", ["keep", "drop"])
def test_laplacian_labels_matches_loop(require: str, non_laplacian: str) -> None:
    x = _data(3, len(SEEG), 40)
    out = laplacian_rereference(x, channel_names=SEEG, require_neighbors=require, non_laplacian=non_laplacian)
    expected, kept = _loop_laplacian(x, _label_neighbours_loop(SEEG), require, non_laplacian)
    torch.testing.assert_close(out, expected)
    montage = laplacian_montage(SEEG, require_neighbors=require, non_laplacian=non_laplacian)
    assert montage.names == tuple(SEEG[i] for i in kept)
    if require == "both" and non_laplacian == "drop":
        assert montage.names == ("LA2", "LA3", "O1aIb4")  # RH7/RH9 are not adjacent contacts


@pytest.mark.parametrize("require", ["any", "both"])
@pytest.mark.parametrize("non_laplacian", ["keep", "drop"])
def test_laplacian_adjacent_matches_loop(require: str, non_laplacian: str) -> None:
    x = _data(2, 6, 30)
    out = laplacian_rereference(x, require_neighbors=require, non_laplacian=non_laplacian)
    neighbours = [[j for j in (i - 1, i + 1) if 0 <= j < 6] for i in range(6)]
    expected, _ = _loop_laplacian(x, neighbours, require, non_laplacian)
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("require", ["any", "both"])
@pytest.mark.parametrize("non_laplacian", ["keep", "drop"])
def test_laplacian_positions_matches_loop(require: str, non_laplacian: str) -> None:
    pos = torch.tensor(
        [[0, 0, 0], [3.5, 0, 0], [7, 0, 0], [10.5, 0, 0], [30, 0, 0], [30, 4, 0], [30, 2, 3], [60, 60, 60]],
        dtype=torch.float64,
    )
    x = _data(2, 8, 30)
    out = laplacian_rereference(
        x, neighbor_distance=4.0, electrode_positions=pos, require_neighbors=require, non_laplacian=non_laplacian
    )
    neighbours = [
        [j for j in range(8) if j != i and float(torch.linalg.vector_norm(pos[i] - pos[j])) <= 4.0] for i in range(8)
    ]
    assert neighbours[5] == [4, 6] and neighbours[7] == []
    expected, _ = _loop_laplacian(x, neighbours, require, non_laplacian)
    torch.testing.assert_close(out, expected)


def test_laplacian_auto_mode_prefers_positions_then_labels() -> None:
    x = _data(4, 20)
    names = ["LA1", "LB1", "LA2", "LB2"]
    by_labels = laplacian_rereference(x, channel_names=names)
    torch.testing.assert_close(by_labels[0], x[0] - x[2])
    far = torch.arange(12, dtype=torch.float64).reshape(4, 3) * 100
    by_positions = laplacian_rereference(x, 1.0, far, channel_names=names)
    torch.testing.assert_close(by_positions, x)  # nobody within 1 mm: kept unreferenced
    torch.testing.assert_close(laplacian_rereference(x)[1], x[1] - 0.5 * (x[0] + x[2]))


def test_laplacian_nonfinite_position_has_no_neighbours() -> None:
    pos = torch.tensor([[0.0, 0, 0], [1, 0, 0], [float("nan"), 0, 0]])
    m = laplacian_montage(["a1", "a2", "a3"], pos, neighbor_distance=2.0, require_neighbors="any", non_laplacian="drop")
    assert m.names == ("a1", "a2")


def test_laplacian_resolves_sources_by_name_with_scrambled_and_missing_channels() -> None:
    # channels out of order, LA4 missing (dropped upstream), LA5/LA6 present
    names = ["LA6", "LB2", "LA2", "LA5", "LA1", "LB1", "LA3", "LB3"]
    x = torch.stack([torch.full((5,), 10.0**i) for i in range(len(names))]).double()
    idx = {n: i for i, n in enumerate(names)}
    batch = NeuralBatch(x[None], channel_names=names)
    out = LaplacianReference(require_neighbors="both", non_laplacian="drop")(batch)
    assert out.channel_names == ("LB2", "LA2")
    assert not any(n in out.channel_names for n in ("LA3", "LA5"))  # LA4 is missing
    la2 = x[idx["LA2"]] - 0.5 * (x[idx["LA1"]] + x[idx["LA3"]])
    lb2 = x[idx["LB2"]] - 0.5 * (x[idx["LB1"]] + x[idx["LB3"]])
    torch.testing.assert_close(out.signals[0], torch.stack([lb2, la2]))


def test_laplacian_montage_is_cached_per_channels_and_device_dtype() -> None:
    a = laplacian_montage(["LA1", "LA2", "LA3"])
    assert laplacian_montage(["LA1", "LA2", "LA3"]) is a
    assert laplacian_montage(["LA1", "LA2", "LA4"]) is not a
    w32 = a.weights_for(torch.device("cpu"), torch.float32)
    assert a.weights_for(torch.device("cpu"), torch.float32) is w32 and w32.dtype == torch.float32


# -- bipolar --------------------------------------------------------------------------------
def test_bipolar_matches_mne_set_bipolar_reference() -> None:
    x = _data(len(SEEG), 40)
    anode, cathode = ["LA1", "LA3", "O1aIb5", "RH9"], ["LA2", "LA2", "O1aIb3", "LA1"]
    ref = mne.set_bipolar_reference(_raw(x, SEEG), anode, cathode, copy=True)
    out = bipolar_rereference(x, list(zip(anode, cathode, strict=True)), channel_names=SEEG)
    names = bipolar_montage(SEEG, list(zip(anode, cathode, strict=True))).names
    expected = ref.get_data(picks=list(names))
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-12)
    assert set(names) <= set(ref.ch_names)


def test_bipolar_sequential_shaft_and_index_pairs() -> None:
    x = _data(2, len(SEEG), 10)
    seq = bipolar_rereference(x)
    torch.testing.assert_close(seq, x[:, :-1] - x[:, 1:])
    shaft = bipolar_montage(SEEG, "shaft")
    assert shaft.names == ("LA1-LA2", "LA2-LA3", "LA3-LA4", "O1aIb3-O1aIb4", "O1aIb4-O1aIb5")
    by_index = bipolar_rereference(x, [(3, 0)])
    torch.testing.assert_close(by_index, x[:, 3:4] - x[:, 0:1])


def test_bipolar_node_metadata_positions_midpoints_and_mask() -> None:
    names = ["LA1", "LA2", "LA3", "LB1"]
    pos = torch.tensor([[0.0, 0, 0], [2, 0, 0], [4, 2, 0], [9, 9, 9]])
    mask = torch.tensor([[True, True, False, True], [True, True, True, True]])
    batch = NeuralBatch(
        _data(2, 4, 16), sampling_rate=100.0, channel_names=names, channel_positions=pos, channel_mask=mask
    )
    out = BipolarReference(pairs="shaft")(batch)
    assert out.channel_names == ("LA1-LA2", "LA2-LA3")
    torch.testing.assert_close(out.channel_positions, torch.tensor([[1.0, 0, 0], [3, 1, 0]]))
    assert out.channel_mask.tolist() == [[True, False], [True, True]]
    assert out.sampling_rate == 100.0
    named = BipolarReference(pairs=[("LB1", "LA1")])(batch)
    torch.testing.assert_close(named.signals, batch.signals[:, 3:4] - batch.signals[:, 0:1])
    assert named.channel_names == ("LB1-LA1",)


# -- shapes, dtypes, devices, autograd ------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ranks_dtypes_and_autograd(dtype: torch.dtype) -> None:
    x = _data(2, 5, 12, dtype=dtype).requires_grad_()
    for fn in (
        lambda d: laplacian_rereference(d, channel_names=["a1", "a2", "a3", "a4", "a5"]),
        lambda d: bipolar_rereference(d),
        lambda d: common_average_rereference(d),
    ):
        out = fn(x)
        assert out.dtype == dtype and out.device == x.device
        single = fn(x[0])
        assert single.ndim == 2
        torch.testing.assert_close(single, out[0])
    out = laplacian_rereference(x)
    out.sum().backward()
    # gradient of the sum = column sums of the weight matrix (end rows use their one neighbour)
    expected = torch.tensor([0.5, -0.5, 0.0, -0.5, 0.5], dtype=dtype)
    torch.testing.assert_close(x.grad[0, :, 0], expected)


def test_node_on_spectral_data_mixes_channel_axis() -> None:
    x = _data(2, 3, 4, 5)
    batch = NeuralBatch(
        x, channel_names=["LA1", "LA2", "LA3"], axes=("batch", "channel", "freq", "time"), frequencies=[1, 2, 3, 4]
    )
    out = LaplacianReference(require_neighbors="both", non_laplacian="drop")(batch)
    torch.testing.assert_close(out.signals[:, 0], x[:, 1] - 0.5 * (x[:, 0] + x[:, 2]))
    assert out.frequencies == batch.frequencies and out.axes == batch.axes


def test_laplacian_node_modes_metadata() -> None:
    names = ["LA1", "LA2", "LA3", "LB5"]
    pos = torch.tensor([[0.0, 0, 0], [3.5, 0, 0], [7, 0, 0], [50, 0, 0]])
    mask = torch.tensor([[True, True, True, False]])
    batch = NeuralBatch(_data(1, 4, 8), channel_names=names, channel_positions=pos, channel_mask=mask)
    out = LaplacianReference(mode="positions", non_laplacian="drop")(batch)
    assert out.channel_names == ("LA1", "LA2", "LA3")
    torch.testing.assert_close(out.channel_positions, pos[:3])
    keep = LaplacianReference(mode="adjacent")(batch)
    assert keep.channel_names == tuple(names)
    assert keep.channel_mask.tolist() == [[True, True, False, False]]  # LA3 uses masked LB5


# -- errors ---------------------------------------------------------------------------------
def test_error_messages() -> None:
    x = _data(3, 10)
    with pytest.raises(InputError, match=r"laplacian_rereference: channel_names .*\['REF', 'EKG'\]"):
        laplacian_rereference(x, channel_names=["LA1", "REF", "EKG"])
    with pytest.raises(InputError, match=r"electrode_positions must have shape \(channels, 3\) = \(3, 3\).*\(2, 3\)"):
        laplacian_rereference(x, electrode_positions=torch.zeros(2, 3))
    for bad in (float("nan"), float("inf"), -1.0, 0.0):
        with pytest.raises(InputError, match="neighbor_distance must be a positive finite number"):
            laplacian_rereference(x, bad, torch.zeros(3, 3))
    with pytest.raises(InputError, match="non_laplacian='drop' leaves nothing"):
        laplacian_rereference(x, channel_names=["LA1", "LB1", "LC1"], non_laplacian="drop")
    with pytest.raises(InputError, match="require_neighbors must be one of"):
        laplacian_rereference(x, require_neighbors="two")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="mode='labels' needs channel_names"):
        laplacian_rereference(x, mode="labels")
    with pytest.raises(InputError, match=r"bipolar_rereference: pairs \[\(0, 3\), \('LA1', 'XX'\)\] name channels"):
        bipolar_rereference(x, [(0, 1), (0, 3), ("LA1", "XX")], channel_names=["LA1", "LA2", "LA3"])
    with pytest.raises(InputError, match="subtract a channel from itself"):
        bipolar_rereference(x, [(1, 1)])
    with pytest.raises(InputError, match="listed more than once"):
        bipolar_rereference(x, [(0, 1), (0, 1)])
    with pytest.raises(InputError, match=r"pairs='shaft'.*cannot parse \['Fz'\]"):
        bipolar_rereference(x, "shaft", channel_names=["LA1", "LA2", "Fz"])
    with pytest.raises(InputError, match="found no two contacts"):
        bipolar_rereference(x, "shaft", channel_names=["LA1", "LB2", "LC3"])
    with pytest.raises(InputError, match="2 channel_names given for 3 channels"):
        laplacian_rereference(x, channel_names=["LA1", "LA2"])
    with pytest.raises(InputError, match="2 channel names for 3 channels"):
        bipolar_rereference(x, channel_names=["LA1", "LA2"])
    with pytest.raises(InputError, match="both mean contact 1 of shaft 'LA'"):
        laplacian_rereference(x, channel_names=["LA1", "LA01", "LA2"])


def test_node_validation_and_spec_errors() -> None:
    with pytest.raises(TransformValidationError, match="neighbor_distance"):
        LaplacianReference(neighbor_distance=float("nan"))
    with pytest.raises(TransformValidationError, match="neighbor_distance"):
        LaplacianReference(neighbor_distance=-2.0)
    with pytest.raises(TransformValidationError, match="require_neighbors"):
        LaplacianReference(require_neighbors="all")
    with pytest.raises(TransformValidationError, match="at least one"):
        BipolarReference(pairs=[])
    with pytest.raises(TransformValidationError, match="itself"):
        BipolarReference(pairs=[("LA1", "LA1")])
    batch = NeuralBatch(_data(1, 3, 8), channel_names=["LA1", "LA2", "XYZ"])
    with pytest.raises(SpecError, match=r"step 'laplacian' \(op 'laplacian'\).*cannot parse \['XYZ'\]"):
        Pipeline([LaplacianReference()])(batch)
    with pytest.raises(SpecError, match="mode='positions' needs channel positions"):
        Pipeline([LaplacianReference(mode="positions")])(batch)
    with pytest.raises(InputError, match="mode='positions' needs channel positions"):
        LaplacianReference(mode="positions")(batch)
    with pytest.raises(SpecError, match=r"pairs \[\('LA1', 'LA9'\)\]"):
        Pipeline([BipolarReference(pairs=[("LA1", "LA9")])])(batch)


# -- pipelines ------------------------------------------------------------------------------
def test_nodes_in_pipeline_round_trip_and_spec() -> None:
    pipe = Pipeline(
        [
            (
                "lap",
                LaplacianReference(
                    mode="labels", neighbor_distance=3.0, require_neighbors="both", non_laplacian="drop"
                ),
            ),
            ("bip", BipolarReference(pairs=[("LA2", "LA3")])),
            ("car", CommonAverageReference(method="median", exclude_masked=False)),
        ]
    )
    for again in (
        Pipeline.from_dict(pipe.to_dict()),
        Pipeline.from_json(pipe.to_json()),
        Pipeline.from_yaml(pipe.to_yaml()),
    ):
        assert again == pipe and again.fingerprint == pipe.fingerprint
        assert again["bip"].pairs == (("LA2", "LA3"),)
    batch = NeuralBatch(_data(2, len(SEEG), 16), sampling_rate=200.0, channel_names=SEEG)
    out = pipe(batch)
    spec = pipe.validate(batch.spec)
    assert out.channel_names == spec.channel_names == ("LA2-LA3",)
    assert tuple(out.signals.shape) == (2, 1, 16)
    for node in (BipolarReference(pairs="shaft"), BipolarReference(), LaplacianReference(mode="adjacent")):
        assert Pipeline.from_dict(Pipeline([node]).to_dict())[0] == node
        assert node(batch).spec.channel_names == node.output_spec(batch.spec).channel_names


def test_tensor_call_of_node() -> None:
    x = _data(2, 4, 10)
    out = LaplacianReference(mode="adjacent")(x)
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out, laplacian_rereference(x))
