"""Sharing models through the Hugging Face Hub: model cards, pushes, and offline caches.

* :func:`model_card` / :func:`write_model_card` — a README.md with the preprocessing table
  (``Pipeline.describe()``), the expected input and the training summary.
* :func:`push_to_hub` — save (atomically) and upload config, safetensors weights and card
  in a single commit, so a repo never shows a half-uploaded model.
* :func:`save_to_hub_cache` — lay a saved model out as a Hub cache entry
  (``models--org--name/snapshots/<rev>/`` + ``refs/main``), for machines without network:
  with ``HF_HUB_OFFLINE=1``, ``BaseModel.from_pretrained("org/name")`` then loads it by repo id.

Example:
    >>> from neurocrane.utils.hub import push_to_hub
    >>> push_to_hub(model, "lab-a/seeg-foundation-v1", private=True)
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neurocrane.errors import InputError
from neurocrane.pipeline.io import atomic_write_text

if TYPE_CHECKING:
    from neurocrane.models.base import BaseModel

__all__ = ["model_card", "write_model_card", "push_to_hub", "save_to_hub_cache"]

_MODEL_FILES = ("config.json", "model.safetensors", "README.md")


def _summary_rows(summary: dict[str, Any]) -> list[str]:
    rows = ["| key | value |", "| --- | --- |"]
    for key, value in summary.items():
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        rows.append(f"| {key} | {str(text).replace('|', '/')} |")
    return rows


def model_card(model: BaseModel, repo_id: str | None = None) -> str:
    """The model card (README.md text) of a neurocrane model.

    Args:
        model: The model.
        repo_id: Hub id shown in the usage snippet (default: a placeholder).

    Returns:
        Markdown with YAML front matter: the preprocessing pipeline table and fingerprint, the
        input the model expects, the training summary when the config has one, and usage.

    Example:
        >>> print(model_card(model, "lab-a/seeg-foundation-v1"))
    """
    from neurocrane import __version__

    config = model.config
    pipeline = model.preprocess_pipeline
    spec = config.input_spec
    repo = repo_id or "<org>/<model-name>"
    n_params = sum(p.numel() for p in model.parameters())
    lines = [
        "---",
        "library_name: neurocrane",
        "tags:",
        "- neurocrane",
        "- ieeg",
        "- seeg",
        "- neuroscience",
        "---",
        "",
        f"# {repo_id or type(model).__name__}",
        "",
        f"A `{type(model).__name__}` (model_type `{config.model_type}`, {n_params:,} parameters) "
        f"saved with neurocrane {__version__}. Its preprocessing is stored in `config.json` and runs "
        "automatically when the model is called.",
        "",
        "## Preprocessing",
        "",
        f"Pipeline fingerprint: `{pipeline.fingerprint}`",
        "",
        "```text",
        pipeline.describe(spec),
        "```",
        "",
        "## Input",
        "",
        f"- sampling rate: {'any' if spec.sampling_rate is None else f'{spec.sampling_rate:g} Hz'}",
        f"- channels: {'any number (per-channel tokens, channel mask supported)' if spec.n_channels is None else spec.n_channels}",
        f"- window: {'any length' if config.context_length is None else f'{config.context_length:g} s'}",
        f"- input spec: `{spec}`",
        "",
        "## Training",
        "",
    ]
    if config.training_summary:
        lines += _summary_rows(config.training_summary)
    else:
        lines.append("No training summary was recorded.")
    lines += [
        "",
        "## Usage",
        "",
        "```python",
        "import neurocrane as crane",
        "",
        f'model = crane.BaseModel.from_pretrained("{repo}")',
        "print(model.preprocess_pipeline.describe())",
        "features = model.extract_features(data, sampling_rate=...)  # preprocessing included",
        "```",
        "",
    ]
    return "\n".join(lines)


def write_model_card(model: BaseModel, path: str | Path, repo_id: str | None = None) -> Path:
    """Write :func:`model_card` to ``path`` atomically; returns the path."""
    return atomic_write_text(path, model_card(model, repo_id))


def push_to_hub(
    model: BaseModel,
    repo_id: str,
    *,
    commit_message: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    api: Any = None,
    **_: Any,
) -> Any:
    """Upload a model to the Hugging Face Hub in one commit.

    The model is saved to a temporary folder (config with the pipeline, ``model.safetensors``,
    ``README.md`` model card), then ``HfApi.create_repo`` and one ``HfApi.upload_folder`` call
    publish it, so the repo never holds a partial model.

    Args:
        model: A neurocrane model.
        repo_id: ``"org/name"``.
        commit_message: Default ``"Upload <ModelClass> with neurocrane"``.
        private: Create the repo private (ignored when it exists).
        token: Hub token (default: the logged-in one).
        revision: Branch to push to.
        create_pr: Open a pull request instead of committing to the branch.
        api: An ``HfApi``-like object (default ``huggingface_hub.HfApi(token=token)``).

    Returns:
        What ``upload_folder`` returns (the commit info).

    Example:
        >>> push_to_hub(model, "lab-c/seeg-seizure-detector")
    """
    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise InputError(f"repo_id must look like 'org/name'; got {repo_id!r}.")
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="neurocrane-push-") as tmp:
        folder = Path(tmp) / "model"
        model.save_pretrained(folder)
        write_model_card(model, folder / "README.md", repo_id)
        api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
        return api.upload_folder(
            repo_id=repo_id,
            repo_type="model",
            folder_path=str(folder),
            commit_message=commit_message or f"Upload {type(model).__name__} with neurocrane",
            revision=revision,
            create_pr=create_pr,
        )


def save_to_hub_cache(
    model_or_folder: BaseModel | str | Path,
    repo_id: str,
    cache_dir: str | Path | None = None,
    *,
    revision: str | None = None,
) -> Path:
    """Place a model in a Hugging Face Hub cache as if downloaded from ``repo_id``.

    Useful for air-gapped clusters and tests: copy a saved model into the cache layout
    ``models--org--name/{snapshots/<rev>/, refs/main}`` so that, with ``HF_HUB_OFFLINE=1``,
    ``from_pretrained("org/name")`` resolves it by repo id.

    Args:
        model_or_folder: A model (saved first) or a folder written by ``save_pretrained``.
        repo_id: ``"org/name"``.
        cache_dir: Hub cache folder (default: huggingface_hub's ``HF_HUB_CACHE``).
        revision: 40-hex commit id to file it under (default: a hash of the files).

    Returns:
        The snapshot folder.
    """
    from huggingface_hub import constants

    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise InputError(f"repo_id must look like 'org/name'; got {repo_id!r}.")
    cache = Path(cache_dir if cache_dir is not None else constants.HF_HUB_CACHE)
    with tempfile.TemporaryDirectory(prefix="neurocrane-cache-") as tmp:
        if isinstance(model_or_folder, str | Path):
            source = Path(model_or_folder)
            if not (source / "config.json").is_file():
                raise InputError(f"{str(source)!r} is not a saved model folder (no config.json).")
        else:
            source = Path(tmp) / "model"
            model_or_folder.save_pretrained(source)
        files = sorted(p for p in source.iterdir() if p.is_file() and not p.name.startswith("."))
        if revision is None:
            digest = hashlib.sha1()
            for f in files:
                digest.update(f.name.encode())
                digest.update(hashlib.sha256(f.read_bytes()).digest())
            revision = digest.hexdigest()
        if len(revision) != 40 or any(ch not in "0123456789abcdef" for ch in revision):
            raise InputError(f"revision must be a 40-character lowercase hex commit id; got {revision!r}.")
        repo_folder = cache / f"models--{repo_id.replace('/', '--')}"
        snapshot = repo_folder / "snapshots" / revision
        staging = repo_folder / "snapshots" / f".{revision}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for f in files:
            shutil.copy2(f, staging / f.name)
        if snapshot.exists():
            shutil.rmtree(snapshot)
        staging.rename(snapshot)
        (repo_folder / "refs").mkdir(exist_ok=True)
        atomic_write_text(repo_folder / "refs" / "main", revision)
    return snapshot
