"""Sharing: model cards, push_to_hub (no network: HfApi methods are replaced), Hub cache
layout, and the four-lab workflow across a fresh Python process with HF_HUB_OFFLINE=1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import huggingface_hub
import pytest
import torch
from safetensors.torch import load_file, save_file

import neurocrane as crane
from neurocrane.errors import InputError
from neurocrane.models import BaseModel, SEEGTransformer
from neurocrane.pipeline import Pipeline
from neurocrane.utils.hub import model_card, push_to_hub, save_to_hub_cache
from tests.helpers_models import RATE, signals, tiny_transformer

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_model_card_has_pipeline_table_input_and_training_summary():
    model = tiny_transformer()
    model.config.training_summary = {"dataset": "synthetic", "steps": 12}
    card = model_card(model, "lab-a/seeg-foundation-v1")
    table = model.preprocess_pipeline.describe(model.input_spec)
    assert table in card
    assert model.preprocess_pipeline.fingerprint in card
    assert "- sampling rate: 128 Hz" in card and "- window: 1 s" in card
    assert "| dataset | synthetic |" in card and "| steps | 12 |" in card
    assert 'crane.BaseModel.from_pretrained("lab-a/seeg-foundation-v1")' in card
    assert card.startswith("---\nlibrary_name: neurocrane\n")
    model.config.training_summary = None
    assert "No training summary was recorded." in model_card(model)


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """Replace the two HfApi calls push_to_hub makes; record them and keep the uploaded files."""
    calls: list[tuple[str, dict]] = []
    uploaded = tmp_path / "uploaded"

    def create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        calls.append(("upload_folder", {"repo_id": repo_id, **kwargs}))
        shutil.copytree(folder_path, uploaded / repo_id)
        return "commit-info"

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    return calls, uploaded


def test_push_to_hub_uploads_config_weights_and_card_in_one_commit(fake_hub):
    calls, uploaded = fake_hub
    model = tiny_transformer(seed=5)
    model.config.training_summary = {"epochs": 1}
    result = model.push_to_hub("lab-c/seeg-seizure-detector", private=True, commit_message="first")
    assert result == "commit-info"
    assert [name for name, _ in calls] == ["create_repo", "upload_folder"]
    assert calls[0][1] == {"repo_id": "lab-c/seeg-seizure-detector", "repo_type": "model", "private": True, "exist_ok": True}
    assert calls[1][1]["commit_message"] == "first" and calls[1][1]["create_pr"] is False
    folder = uploaded / "lab-c/seeg-seizure-detector"
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["preprocessing"] == model.preprocess_pipeline.to_dict()
    assert config["model_type"] == "neurocrane_seeg_transformer"
    card = (folder / "README.md").read_text()
    assert model.preprocess_pipeline.describe(model.input_spec) in card
    assert "lab-c/seeg-seizure-detector" in card and "| epochs | 1 |" in card
    weights = load_file(folder / "model.safetensors")
    assert torch.equal(weights["token_proj.weight"], model.token_proj.weight)
    reloaded = BaseModel.from_pretrained(folder)
    x = signals()
    assert torch.equal(reloaded(x, sampling_rate=RATE)["hidden_states"], model(x, sampling_rate=RATE)["hidden_states"])


def test_push_to_hub_function_takes_an_api_object_and_checks_the_repo_id(tmp_path):
    class Recorder:
        def __init__(self):
            self.files = None

        def create_repo(self, **kwargs):
            pass

        def upload_folder(self, *, folder_path, **kwargs):
            self.files = sorted(os.listdir(folder_path))
            return kwargs["repo_id"]

    api = Recorder()
    assert push_to_hub(tiny_transformer(), "org/name", api=api) == "org/name"
    assert api.files == ["README.md", "config.json", "model.safetensors"]
    with pytest.raises(InputError, match="org/name"):
        push_to_hub(tiny_transformer(), "no-slash", api=api)


def test_save_to_hub_cache_lays_out_snapshot_and_ref(tmp_path):
    model = tiny_transformer()
    snapshot = save_to_hub_cache(model, "org/name", tmp_path)
    repo = tmp_path / "models--org--name"
    revision = (repo / "refs" / "main").read_text()
    assert snapshot == repo / "snapshots" / revision and len(revision) == 40
    assert sorted(p.name for p in snapshot.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    loaded = BaseModel.from_pretrained("org/name", cache_dir=tmp_path, local_files_only=True)
    assert torch.equal(loaded.token_proj.weight, model.token_proj.weight)
    pipe = Pipeline.from_pretrained("org/name", cache_dir=tmp_path, local_files_only=True)
    assert pipe.fingerprint == model.preprocess_pipeline.fingerprint
    with pytest.raises(InputError, match="saved model folder"):
        save_to_hub_cache(tmp_path, "org/other", tmp_path)


_LAB_B_AND_C = textwrap.dedent(
    """
    import json, sys
    import torch
    from safetensors.torch import load_file, save_file
    import neurocrane as crane
    from neurocrane.utils.hub import save_to_hub_cache

    work = sys.argv[1]
    x = load_file(work + "/input.safetensors")["x"]

    # Lab B: load by repo id (offline, from the Hub cache) and extract features
    model = crane.BaseModel.from_pretrained("lab-a/seeg-foundation-v1")
    feats = model.extract_features(x, sampling_rate=128.0)
    save_file({k: v.contiguous() for k, v in feats.items()}, work + "/features_b.safetensors")

    # Lab C: fine-tune one step for classification and share under a new id
    model.config.objective = "classification"
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = model(x, sampling_rate=128.0, labels=torch.tensor([0, 1, 1]))["loss"]
    loss.backward()
    opt.step()
    model.config.training_summary = {"finetuned_from": "lab-a/seeg-foundation-v1", "steps": 1}
    model.eval()
    save_to_hub_cache(model, "lab-c/seeg-seizure-detector")
    print(json.dumps({"class": type(model).__name__, "fingerprint": model.preprocess_pipeline.fingerprint,
                      "loss": float(loss)}))
    """
)


def test_four_lab_workflow_across_processes_offline(tmp_path):
    cache = tmp_path / "hub"
    # Lab A: pretrain (here: build) and share
    lab_a = tiny_transformer(seed=11)
    lab_a.config.training_summary = {"objective": "masked", "steps": 0}
    save_to_hub_cache(lab_a, "lab-a/seeg-foundation-v1", cache)
    x = signals(batch=3, seed=4)
    save_file({"x": x}, tmp_path / "input.safetensors")
    ours = lab_a.extract_features(x, sampling_rate=RATE)

    script = tmp_path / "lab_b_c.py"
    script.write_text(_LAB_B_AND_C)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["class"] == "SEEGTransformer"
    assert report["fingerprint"] == lab_a.preprocess_pipeline.fingerprint

    theirs = load_file(tmp_path / "features_b.safetensors")
    assert sorted(theirs) == sorted(ours)
    for key in ours:
        assert torch.equal(theirs[key], ours[key]), key  # bit-for-bit on CPU

    # Lab D: load the fine-tuned model; same pipeline, changed weights
    tuned = BaseModel.from_pretrained("lab-c/seeg-seizure-detector", cache_dir=cache, local_files_only=True)
    assert isinstance(tuned, SEEGTransformer) and tuned.config.objective == "classification"
    assert tuned.preprocess_pipeline.fingerprint == lab_a.preprocess_pipeline.fingerprint
    assert tuned.config.preprocessing == lab_a.config.preprocessing
    pipe = crane.Pipeline.from_pretrained("lab-c/seeg-seizure-detector", cache_dir=cache, local_files_only=True)
    assert pipe == lab_a.preprocess_pipeline
    assert not torch.equal(tuned.classifier.weight, lab_a.classifier.weight)
    assert not torch.equal(tuned.token_proj.weight, lab_a.token_proj.weight)
    card = next((cache / "models--lab-c--seeg-seizure-detector" / "snapshots").iterdir()) / "README.md"
    assert "| finetuned_from | lab-a/seeg-foundation-v1 |" in card.read_text()
