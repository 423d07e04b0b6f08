"""Serialization: every registered op round-trips through dict/JSON/YAML/files; loading is safe;
every error path names what is wrong; fingerprints are stable across processes."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

import neurocrane as crane
from neurocrane.errors import (
    PipelineFormatError,
    SchemaVersionError,
    TransformValidationError,
    UnknownTransformError,
)
from neurocrane.pipeline import Branch, Identity, Pipeline, registered_ops
from neurocrane.pipeline.io import SCHEMA_VERSION
from neurocrane.preprocessing import CommonAverageReference, Spectrogram, ZScore
from tests.op_examples import EXAMPLES

BUILTIN_OPS = sorted(op for op, cls in registered_ops().items() if cls.__module__.startswith("neurocrane."))


def _all_formats(pipe: Pipeline, tmp_path: Path) -> list[Pipeline]:
    return [
        Pipeline.from_dict(pipe.to_dict()),
        Pipeline.from_dict(json.loads(json.dumps(pipe.to_dict()))),
        Pipeline.from_json(pipe.to_json()),
        Pipeline.from_yaml(pipe.to_yaml()),
        Pipeline.load(pipe.save(tmp_path / "p.yaml")),
        Pipeline.load(pipe.save(tmp_path / "p.json")),
    ]


# -- round trips -----------------------------------------------------------------------------
@pytest.mark.parametrize("op", BUILTIN_OPS)
def test_every_registered_op_has_non_default_examples_covering_all_fields(op):
    assert op in EXAMPLES, f"add non-default parameter examples for op '{op}' to tests/op_examples.py"
    cls = registered_ops()[op]
    covered = set()
    for params in EXAMPLES[op]:
        node = cls(**params)
        covered |= set(node.non_default_params())
    assert covered == set(cls.model_fields), f"op '{op}': fields never set to a non-default value: {set(cls.model_fields) - covered}"


@pytest.mark.parametrize("op", BUILTIN_OPS)
def test_every_registered_op_round_trips_in_every_format(op, tmp_path):
    cls = registered_ops()[op]
    for params in EXAMPLES.get(op, [{}]):
        node = cls(**params)
        pipe = Pipeline([("step", node)])
        for again in _all_formats(pipe, tmp_path):
            assert again == pipe
            assert again["step"].model_dump() == node.model_dump()
            assert again.fingerprint == pipe.fingerprint


def test_nested_and_branched_pipelines_round_trip(tmp_path):
    pipe = Pipeline(
        [
            ("prep", Pipeline([CommonAverageReference(method="median"), ZScore(clip=3.0)])),
            (
                "features",
                Branch(
                    {"raw": Identity(), "spec": [Spectrogram(freq_range=(0.0, 100.0)), ZScore(axes=("time",))]},
                    combine="concat",
                    axis="channel",
                ),
            ),
            ("stack", Branch([("a", Identity()), ("b", Pipeline([Identity()]))], combine="stack", axis="feature")),
        ]
    )
    for again in _all_formats(pipe, tmp_path):
        assert again == pipe
        assert again.fingerprint == pipe.fingerprint
        assert again["features/spec/zscore"] == ZScore(axes=("time",))


def test_layout_reads_as_a_person_would_write_it():
    data = Pipeline([("bp", ZScore(clip=3.0))]).to_dict()
    assert data["format"] == "neurocrane.pipeline"
    assert data["version"] == SCHEMA_VERSION
    assert data["neurocrane_version"] == crane.__version__
    assert data["steps"][0]["op"] == "zscore" and data["steps"][0]["name"] == "bp" and data["steps"][0]["clip"] == 3.0


def test_hand_written_yaml_with_defaults_and_branch_mapping():
    text = """
    version: 1
    steps:
      - op: car
      - op: zscore
        clip: 4
      - op: branch
        combine: stack
        branches:
          raw: [{op: identity}]
          spec: {op: identity}
    """
    pipe = Pipeline.from_yaml(textwrap.dedent(text))
    assert pipe.names == ("car", "zscore", "branch")
    assert pipe["zscore"].clip == 4.0
    assert pipe["branch"].combine == "stack"


def test_fingerprint_is_stable_across_processes_and_key_order():
    pipe = Pipeline([CommonAverageReference(), ZScore(clip=3.0), Spectrogram(freq_range=(0.0, 200.0))])
    shuffled = pipe.to_dict()
    shuffled["steps"] = [dict(reversed(list(s.items()))) for s in shuffled["steps"]]
    assert Pipeline.from_dict(dict(reversed(list(shuffled.items())))).fingerprint == pipe.fingerprint
    code = (
        "import sys, neurocrane as crane; "
        "print(crane.Pipeline.from_json(sys.stdin.read()).fingerprint)"
    )
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    out = subprocess.run([sys.executable, "-c", code], input=pipe.to_json(), capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == pipe.fingerprint


def test_reloaded_pipeline_gives_identical_output(tmp_path):
    pipe = Pipeline([CommonAverageReference(), ZScore(), Spectrogram(freq_range=(0.0, 60.0))])
    x = torch.randn(2, 5, 512)
    again = Pipeline.load(pipe.save(tmp_path / "p.yaml"))
    assert torch.equal(again(x, sampling_rate=256.0), pipe(x, sampling_rate=256.0))


# -- migrations ------------------------------------------------------------------------------
def test_version_0_files_are_migrated():
    old = {
        "format": "neurocrane.pipeline",
        "version": 0,
        "steps": [
            {"op": "zscore", "name": "z", "params": {"clip": 3.0}},
            {"op": "pipeline", "name": "inner", "steps": [{"op": "car", "params": {"method": "median"}}]},
        ],
    }
    pipe = Pipeline.from_dict(old)
    assert pipe == Pipeline([("z", ZScore(clip=3.0)), ("inner", Pipeline([CommonAverageReference(method="median")]))])
    assert pipe.to_dict()["version"] == SCHEMA_VERSION


def test_newer_schema_fails_clearly():
    data = Pipeline([ZScore()]).to_dict()
    data["version"] = SCHEMA_VERSION + 1
    data["neurocrane_version"] = "9.0.0"
    with pytest.raises(SchemaVersionError, match=r"schema version 2 \(written by neurocrane 9.0.0\).*Upgrade"):
        Pipeline.from_dict(data)


# -- safe loading and error paths ------------------------------------------------------------
def test_unknown_op_lists_known_ops_and_what_to_import():
    with pytest.raises(UnknownTransformError) as info:
        Pipeline.from_dict({"steps": [{"op": "zscroe", "name": "norm"}]})
    message = str(info.value)
    assert "unknown op 'zscroe'" in message and "step 0 ('norm')" in message
    assert "Did you mean 'zscore'" in message
    assert "import the module that defines it" in message
    assert "car" in message and "spectrogram" in message


def test_unknown_op_names_the_plugin_package_the_author_declared():
    data = {"requires": ["lab_ops"], "steps": [{"op": "lab_ops.whiten"}]}
    with pytest.raises(UnknownTransformError, match="come from lab_ops: install and import it"):
        Pipeline.from_dict(data)


def test_misspelled_field_names_step_field_and_close_match():
    with pytest.raises(TransformValidationError) as info:
        Pipeline.from_dict({"steps": [{"op": "zscore", "name": "norm", "clpi": 3}]})
    message = str(info.value)
    assert "step 'norm' (op 'zscore')" in message
    assert "unknown field 'clpi'" in message and "Did you mean 'clip'" in message


@pytest.mark.parametrize(
    "step, field",
    [
        ({"op": "zscore", "clip": "lots"}, "clip"),
        ({"op": "zscore", "eps": 0}, "eps"),
        ({"op": "zscore", "clip": float("nan")}, "clip"),
        ({"op": "car", "method": "mode"}, "method"),
    ],
)
def test_wrong_type_or_range_names_step_and_field(step, field):
    with pytest.raises(TransformValidationError, match=rf"step '#0' \(op '{step['op']}'\)[\s\S]*field '{field}'"):
        Pipeline.from_dict({"steps": [step]})


def test_python_object_yaml_tags_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = f"""
steps:
  - op: zscore
    clip: !!python/object/apply:os.system ["touch {marker}"]
"""
    with pytest.raises(PipelineFormatError, match="never loaded"):
        Pipeline.from_yaml(evil)
    assert not marker.exists()
    with pytest.raises(PipelineFormatError, match="refused YAML"):
        Pipeline.from_yaml("steps: !!python/name:os.system\n")


def test_import_strings_are_refused():
    with pytest.raises(PipelineFormatError, match="never import paths"):
        Pipeline.from_dict({"steps": [{"op": "zscore", "_target_": "os.system"}]})
    with pytest.raises(PipelineFormatError, match="_target_"):
        Pipeline.from_dict({"steps": [{"op": "branch", "branches": [{"name": "a", "steps": [{"_target_": "x"}]}]}]})


@pytest.mark.parametrize(
    "text, message",
    [
        ("steps: [op: zscore\n", "malformed YAML at line"),
        ("steps:\n  - op: zscore\n    clip: 1\n    clip: 2\n", "duplicate key 'clip'"),
        ("- op: zscore\n", "must be a mapping"),
        ("steps: []\n", "'steps' is empty"),
        ("steps:\n  - clip: 3\n", "missing or non-string 'op'"),
        ("steps: [{op: zscore}]\nextra: 1\n", "unexpected top-level keys \\['extra'\\]"),
        ("format: something.else\nsteps: [{op: zscore}]\n", "not a neurocrane pipeline"),
        ("version: one\nsteps: [{op: zscore}]\n", "non-negative integer"),
        ("steps: [{op: branch, branches: [{name: a, steps: [{op: identity}]}]}]\n", "at least two branches"),
    ],
)
def test_malformed_yaml_fails_with_a_clear_error(text, message):
    with pytest.raises(crane.errors.PipelineError, match=message):
        Pipeline.from_yaml(text)


def test_malformed_json_and_nan_constants():
    with pytest.raises(PipelineFormatError, match="malformed JSON at line 1"):
        Pipeline.from_json('{"steps": [')
    with pytest.raises(PipelineFormatError, match="NaN is not allowed"):
        Pipeline.from_json('{"steps": [{"op": "zscore", "clip": NaN}]}')


def test_files_bad_suffix_missing_file_and_no_partial_writes(tmp_path):
    pipe = Pipeline([ZScore()])
    with pytest.raises(PipelineFormatError, match="suffix '.txt'"):
        pipe.save(tmp_path / "p.txt")
    with pytest.raises(FileNotFoundError, match="no pipeline file"):
        Pipeline.load(tmp_path / "missing.yaml")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        pipe.save(tmp_path / "nope" / "p.yaml")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    target = pipe.save(tmp_path / "p.yaml")
    before = target.read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [{op: zscroe}]\n")
    with pytest.raises(UnknownTransformError) as info:
        Pipeline.load(bad)
    assert any("bad.yaml" in note for note in info.value.__notes__)
    assert target.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "p.yaml"]


def test_model_config_loading_requires_a_preprocessing_entry(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "x"}))
    with pytest.raises(PipelineFormatError, match="no 'preprocessing' pipeline"):
        Pipeline.from_pretrained(tmp_path)
    pipe = Pipeline([ZScore(clip=2.0)])
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "x", "preprocessing": pipe.to_dict()}))
    assert Pipeline.from_pretrained(tmp_path) == pipe
    assert Pipeline.load(tmp_path) == pipe


def test_yaml_dump_is_plain_safe_yaml():
    text = Pipeline([ZScore(axes=("channel", "time"))]).to_yaml()
    assert "!!" not in text
    assert yaml.safe_load(text)["steps"][0]["axes"] == ["channel", "time"]


# -- custom transforms in other processes (DESIGN §6) ----------------------------------------
CUSTOM_MODULE = '''
from typing import ClassVar
from neurocrane.pipeline import Transform

class Double(Transform):
    op: ClassVar[str] = "lab_plugin.double"
    def apply(self, batch):
        return batch.replace(signals=batch.signals * 2)
'''

WORKER_SCRIPT = '''
import sys, torch
from torch.utils.data import DataLoader, Dataset
import neurocrane as crane
{define}

class Windows(Dataset):
    def __init__(self, pipe):
        self.pipe = pipe
    def __len__(self):
        return 4
    def __getitem__(self, i):
        return self.pipe(torch.full((2, 8), float(i)))

if __name__ == "__main__":
    pipe = crane.Pipeline([Double()])
    loader = DataLoader(Windows(pipe), batch_size=2, num_workers=2, multiprocessing_context="spawn")
    out = torch.cat(list(loader))
    assert torch.equal(out[:, 0, 0], torch.tensor([0.0, 2.0, 4.0, 6.0])), out
    print("requires", pipe.to_dict().get("requires"))
'''


@pytest.mark.parametrize("where", ["module", "main"])
def test_custom_transforms_work_in_spawned_dataloader_workers(tmp_path, where):
    if where == "module":
        (tmp_path / "lab_plugin.py").write_text(CUSTOM_MODULE)
        define = "from lab_plugin import Double"
    else:
        define = CUSTOM_MODULE.replace("from neurocrane.pipeline import Transform", "from neurocrane.pipeline import Transform")
    script = tmp_path / "run.py"
    script.write_text(WORKER_SCRIPT.format(define=define))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    expected = "['lab_plugin']" if where == "module" else "None"
    assert f"requires {expected}" in out.stdout
