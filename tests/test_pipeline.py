"""Pipeline and Branch: structure, running, modes, fingerprints, splitting, validation, errors."""

from typing import ClassVar

import pytest
import torch

import neurocrane as crane
from neurocrane.batch import NeuralBatch, SignalSpec
from neurocrane.errors import (
    AlreadyAppliedError,
    DuplicateStepNameError,
    DuplicateTransformError,
    InputDTypeError,
    InputError,
    PipelineError,
    SpecError,
    TransformValidationError,
)
from neurocrane.pipeline import Branch, Identity, Pipeline, Transform
from neurocrane.preprocessing import (
    CommonAverageReference,
    Spectrogram,
    ZScore,
    common_average_rereference,
    compute_spectrogram,
    zscore_normalize,
)


class AddOne(Transform):
    """Test op: adds one (recording-safe, wants continuous input like a filter)."""

    op: ClassVar[str] = "tests.add_one"
    wants_continuous: ClassVar[bool] = True

    def apply(self, batch):
        return batch.replace(signals=batch.signals + 1)


class Jitter(Transform):
    """Test op: training-only augmentation that adds a constant."""

    op: ClassVar[str] = "tests.jitter"
    training_only: ClassVar[bool] = True
    amount: float = 10.0

    def apply(self, batch):
        return batch.replace(signals=batch.signals + self.amount)


@pytest.fixture
def x():
    return torch.randn(3, 6, 512, generator=torch.Generator().manual_seed(0))


NAMES = [f"LA{i + 1}" for i in range(6)]


# -- running ---------------------------------------------------------------------------------
def test_pipeline_equals_direct_function_calls(x):
    pipe = Pipeline([CommonAverageReference(), ZScore(), Spectrogram(window_length=0.25, hop_length=0.125)])
    out = pipe(x, sampling_rate=256.0)
    expected = compute_spectrogram(zscore_normalize(common_average_rereference(x)), 256.0, 64, 32)
    assert torch.equal(out, expected)


def test_tensor_in_tensor_out_and_batch_in_batch_out(x):
    pipe = Pipeline([CommonAverageReference(), ZScore()])
    out = pipe(x, sampling_rate=256.0)
    assert isinstance(out, torch.Tensor) and out.shape == x.shape
    unbatched = pipe(x[0], sampling_rate=256.0)
    assert unbatched.shape == x[0].shape
    assert torch.allclose(unbatched, out[0], atol=1e-6)
    batch = NeuralBatch(x, sampling_rate=256.0, channel_names=NAMES)
    result = pipe(batch)
    assert isinstance(result, NeuralBatch)
    assert result.channel_names == tuple(NAMES)
    assert result.applied == (pipe.fingerprint,)
    assert torch.equal(result.signals, out)


def test_spectral_metadata_travels(x):
    batch = Pipeline([Spectrogram(window_length=0.25, hop_length=0.125, freq_range=(0, 40))])(
        NeuralBatch(x, sampling_rate=256.0)
    )
    assert batch.axes == ("batch", "channel", "freq", "time")
    assert batch.frequencies == tuple(4.0 * k for k in range(11))
    assert batch.sampling_rate == 256.0 / 32


def test_eval_mode_skips_training_only_steps(x):
    pipe = Pipeline([Jitter(amount=10.0)])
    assert not pipe.training
    assert torch.equal(pipe(x), x)
    assert torch.equal(pipe.train()(x), x + 10.0)
    assert torch.equal(pipe.eval()(x), x)
    assert torch.equal(pipe(x, training=True), x + 10.0)


def test_nested_pipeline_runs_in_order(x):
    inner = Pipeline([("one", AddOne()), ("car", CommonAverageReference())])
    pipe = Pipeline([("prep", inner), ("z", ZScore())])
    assert torch.allclose(pipe(x), zscore_normalize(common_average_rereference(x + 1)))
    assert pipe["prep/car"] == CommonAverageReference()


def test_branch_concat_channels_and_stack_features(x):
    concat = Pipeline([Branch({"raw": Identity(), "car": CommonAverageReference()})])
    out = concat(NeuralBatch(x, channel_names=NAMES, channel_positions=torch.zeros(6, 3)))
    assert out.signals.shape == (3, 12, 512)
    assert out.channel_names[:2] == ("raw/LA1", "raw/LA2") and out.channel_names[6] == "car/LA1"
    assert out.channel_positions.shape == (12, 3)
    assert torch.equal(out.signals[:, :6], x)
    assert torch.allclose(out.signals[:, 6:], common_average_rereference(x))

    stack = Pipeline([Branch({"a": Identity(), "b": [AddOne(), ZScore()]}, combine="stack")])
    out = stack(NeuralBatch(x))
    assert out.axes == ("batch", "channel", "feature", "time")
    assert out.signals.shape == (3, 6, 2, 512)
    assert torch.allclose(out.signals[:, :, 1], zscore_normalize(x + 1))


def test_branch_concat_along_freq(x):
    low = Spectrogram(window_length=0.25, hop_length=0.125, freq_range=(0, 20))
    high = Spectrogram(window_length=0.25, hop_length=0.125, freq_range=(60, 80))
    out = Pipeline([Branch({"low": low, "high": high}, axis="freq")])(NeuralBatch(x, sampling_rate=256.0))
    assert out.frequencies == (0.0, 4.0, 8.0, 12.0, 16.0, 20.0, 60.0, 64.0, 68.0, 72.0, 76.0, 80.0)
    assert out.signals.shape[2] == 12


# -- structure -------------------------------------------------------------------------------
def test_auto_names_indexing_slicing():
    pipe = Pipeline([ZScore(), ZScore(clip=3.0), CommonAverageReference()])
    assert pipe.names == ("zscore", "zscore_1", "car")
    assert pipe[1] == ZScore(clip=3.0) == pipe["zscore_1"]
    assert pipe[-1] == CommonAverageReference()
    part = pipe[1:]
    assert isinstance(part, Pipeline) and part.names == ("zscore_1", "car")
    with pytest.raises(KeyError, match="no step named 'nope'"):
        pipe["nope"]
    with pytest.raises(IndexError):
        pipe[7]


def test_append_insert_add_return_new_pipelines():
    pipe = Pipeline([CommonAverageReference()])
    longer = pipe.append(ZScore())
    assert len(pipe) == 1 and longer.names == ("car", "zscore")
    first = longer.insert(0, AddOne(), name="offset")
    assert first.names == ("offset", "car", "zscore") and len(longer) == 2
    joined = Pipeline([ZScore()]) + Pipeline([ZScore(clip=2.0)])
    assert joined.names == ("zscore", "zscore_1")
    assert (Pipeline([ZScore()]) + CommonAverageReference()).names == ("zscore", "car")
    swapped = joined.replace_step("zscore_1", Identity())
    assert swapped["zscore_1"] == Identity() and joined["zscore_1"] == ZScore(clip=2.0)


def test_explicit_duplicate_names_fail_everywhere():
    with pytest.raises(DuplicateStepNameError, match="'a'"):
        Pipeline([("a", ZScore()), ("a", Identity())])
    with pytest.raises(DuplicateStepNameError, match="appears in both"):
        Pipeline([("a", ZScore())]) + Pipeline([("a", Identity())])
    with pytest.raises(DuplicateStepNameError, match="already exists"):
        Pipeline([("a", ZScore())]).append(Identity(), name="a")


def test_empty_pipeline_and_bad_steps_fail():
    with pytest.raises(PipelineError, match="at least one step"):
        Pipeline([])
    with pytest.raises(PipelineError, match="not an instance"):
        Pipeline([ZScore])
    with pytest.raises(PipelineError, match="Plain functions cannot be stored"):
        Pipeline([lambda b: b])
    with pytest.raises(PipelineError, match="is empty"):
        Pipeline([ZScore()])[5:]


# -- transforms ------------------------------------------------------------------------------
def test_transform_validation_names_field_and_close_match():
    with pytest.raises(TransformValidationError) as info:
        ZScore(cilp=3.0)
    assert "unknown field 'cilp'" in str(info.value) and "Did you mean 'clip'" in str(info.value)
    with pytest.raises(TransformValidationError, match="field 'eps'"):
        ZScore(eps=-1.0)
    with pytest.raises(TransformValidationError, match="field 'clip'"):
        ZScore(clip=float("nan"))
    with pytest.raises(TransformValidationError, match="freq_range must satisfy"):
        Spectrogram(freq_range=(50.0, 10.0))


def test_transforms_are_frozen_and_keyword_only():
    z = ZScore()
    with pytest.raises(Exception, match="frozen"):
        z.eps = 1.0
    with pytest.raises(TypeError):
        ZScore(1e-3)


def test_duplicate_op_registration_raises():
    with pytest.raises(DuplicateTransformError, match="already registered"):

        class Other(Transform):
            op: ClassVar[str] = "zscore"

    with pytest.raises(DuplicateTransformError, match="reserved"):

        class Reserved(Transform):
            op: ClassVar[str] = "branch"

    with pytest.raises(DuplicateTransformError, match="'name' and 'op' are the step keys"):

        class Named(Transform):
            op: ClassVar[str] = "tests.named"
            name: str = "x"


def test_registry_lists_builtin_ops():
    ops = crane.registered_ops()
    for op in ("car", "zscore", "spectrogram", "identity"):
        assert op in ops


# -- input errors ----------------------------------------------------------------------------
def test_wrong_rank_and_dtype_fail_clearly():
    pipe = Pipeline([ZScore()])
    with pytest.raises(InputError, match=r"\(batch, channels, time\) or \(channels, time\)"):
        pipe(torch.zeros(2, 3, 4, 5))
    with pytest.raises(InputDTypeError, match="x.float()"):
        pipe(torch.zeros(2, 3, 4, dtype=torch.int16))
    with pytest.raises(InputError, match="metadata keywords"):
        pipe(NeuralBatch(torch.zeros(1, 2, 3)), sampling_rate=3.0)


# -- fingerprints and stamps -----------------------------------------------------------------
def test_fingerprint_depends_on_params_not_names():
    a = Pipeline([("x", ZScore()), ("y", CommonAverageReference())])
    b = Pipeline([("p", ZScore(eps=1e-8)), ("q", CommonAverageReference())])
    assert a.fingerprint == b.fingerprint and a != b
    assert Pipeline([ZScore(clip=3.0)]).fingerprint != Pipeline([ZScore()]).fingerprint
    assert Pipeline([ZScore(), Identity()]).fingerprint != Pipeline([Identity(), ZScore()]).fingerprint


def test_running_twice_raises_unless_asked(x):
    pipe = Pipeline([ZScore()])
    once = pipe(NeuralBatch(x))
    with pytest.raises(AlreadyAppliedError, match="reapply=True"):
        pipe(once)
    twice = pipe(once, reapply=True)
    assert torch.allclose(twice.signals, once.signals, atol=1e-5)
    assert twice.applied == once.applied


def test_split_and_resume(x):
    pipe = Pipeline([("offset", AddOne()), ("car", CommonAverageReference()), ("z", ZScore())])
    recording, window = pipe.split()
    assert recording.names == ("offset",) and window.names == ("car", "z")
    continuous = recording(NeuralBatch(x))
    assert continuous.applied == (recording.fingerprint,)
    assert pipe.resume_point(continuous) == 1 and pipe.resume_point(NeuralBatch(x)) == 0
    resumed = pipe(continuous)
    with pytest.raises(AlreadyAppliedError):
        pipe.resume_point(resumed)
    assert pipe.resume_point(resumed, reapply=True) == 0
    assert torch.allclose(resumed.signals, pipe(NeuralBatch(x)).signals)
    assert resumed.applied == (recording.fingerprint, pipe.fingerprint)
    assert pipe.split("z")[0].names == ("offset", "car")
    assert Pipeline([ZScore()]).split() == (None, Pipeline([ZScore()]))


def test_split_refuses_window_statistics_in_recording_part():
    pipe = Pipeline([("z", ZScore()), ("offset", AddOne())])
    with pytest.raises(PipelineError, match="per-window statistics"):
        pipe.split()
    with pytest.raises(PipelineError, match="training-only"):
        Pipeline([Jitter(), AddOne()]).split()


# -- validation and description --------------------------------------------------------------
def test_validate_reports_every_problem_at_once():
    pipe = Pipeline([("z", ZScore(axes=("freq",))), ("stft", Spectrogram(freq_range=(300.0, 400.0)))])
    with pytest.raises(SpecError) as info:
        pipe.validate(SignalSpec(shape=(None, 4, 1000), sampling_rate=250.0))
    problems = info.value.problems
    assert len(problems) >= 2
    assert "step 'z'" in problems[0] and "'freq'" in problems[0]
    assert "step 'stft'" in problems[1] and "Nyquist" in problems[1]


def test_call_validates_before_computing():
    pipe = Pipeline([Spectrogram(window_length=2.0, center=False)])
    with pytest.raises(SpecError, match="longer than the data"):
        pipe(torch.randn(1, 2, 100), sampling_rate=100.0)
    with pytest.raises(SpecError, match="needs the sampling rate"):
        pipe(torch.randn(1, 2, 100))


def test_describe_rows_match_steps():
    pipe = Pipeline(
        [
            ("car", CommonAverageReference(method="median")),
            ("prep", Pipeline([ZScore(clip=5.0)])),
            ("feat", Branch({"a": Identity(), "b": Spectrogram()}, axis="channel")),
        ]
    )
    text = pipe.describe(SignalSpec(shape=(None, 8, 1024), sampling_rate=256.0))
    lines = text.splitlines()
    assert lines[0].startswith(f"Pipeline: 3 steps, fingerprint {pipe.fingerprint}")
    body = lines[lines.index(next(ln for ln in lines if ln.startswith("-----"))) + 1 :]
    assert body[0].split()[:3] == ["car", "car", "method=median"]
    assert body[0].rstrip().endswith("(B, 8, 1024) 256 Hz [batch x channel x time]")
    assert body[1].split()[:2] == ["prep", "pipeline"]
    assert body[2].split()[:3] == ["zscore", "zscore", "clip=5"] and body[2].startswith("  zscore")
    assert body[3].split()[:2] == ["feat", "branch"]
    assert "!!" in body[3]  # a spectrogram and a time series cannot be concatenated
    assert "warnings:" in text
    rows = body[: body.index("")]
    assert len(rows) == 8  # car, prep, zscore, feat, [a], identity, [b], spectrogram
    html = pipe._repr_html_()
    assert html.count("<tr>") == 1 + len(rows) and "<b>feat</b>" in html


def test_describe_warns_about_long_filters_on_short_windows():
    class SlowFilter(Transform):
        op: ClassVar[str] = "tests.slow_filter"

        def apply(self, batch):
            return batch

        def min_duration(self, spec):
            return 3.0

    text = Pipeline([SlowFilter()]).describe(SignalSpec(shape=(None, 4, 256), sampling_rate=256.0))
    assert "needs about 3 s of signal" in text and "1 s windows" in text and "split" in text
    assert "warnings" not in Pipeline([SlowFilter()]).describe(SignalSpec(shape=(None, 4, 2560), sampling_rate=256.0))
    crane.pipeline.unregister_transform("tests.slow_filter")


def test_repr_is_short():
    assert repr(Pipeline([CommonAverageReference(), ZScore()])) == "Pipeline(2 steps: car -> zscore)"
    assert repr(ZScore(clip=3.0)) == "ZScore(clip=3.0)"
