"""Pipelines as data: dict, JSON and YAML round-trips, schema versions and migrations.

The dict layout (schema version 1)::

    format: neurocrane.pipeline
    version: 1
    neurocrane_version: 0.1.0
    steps:
      - {op: car, name: car, exclude_masked: true, ...}
      - {op: bandpass, name: bandpass, low: 1.0, high: 200.0, ...}
      - op: branch
        name: features
        combine: stack
        axis: feature
        branches:
          - {name: raw, steps: [...]}
          - {name: gamma, steps: [...]}

Parameters sit flat beside ``op``. JSON and YAML are two views of this dict. Loading is safe
by construction: only registered ops can be built, YAML goes through the safe loader (with
duplicate keys refused), and import strings (``_target_``) are rejected outright.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from neurocrane.errors import (
    PipelineFormatError,
    SchemaVersionError,
    TransformValidationError,
)
from neurocrane.pipeline.pipeline import Branch, Pipeline
from neurocrane.pipeline.transform import Transform, get_transform_class

__all__ = [
    "FORMAT",
    "SCHEMA_VERSION",
    "pipeline_to_dict",
    "pipeline_from_dict",
    "dumps_json",
    "loads_json",
    "dumps_yaml",
    "loads_yaml",
    "save_pipeline",
    "load_pipeline",
    "pipeline_from_pretrained",
    "register_migration",
    "atomic_write_text",
]

FORMAT = "neurocrane.pipeline"
SCHEMA_VERSION = 1
_TOP_LEVEL_KEYS = {"format", "version", "neurocrane_version", "steps", "requires"}
_FORBIDDEN_KEYS = {"_target_", "_partial_", "_args_", "_recursive_", "_convert_"}

# from_version -> function turning a dict of that version into one of version + 1
_MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def register_migration(from_version: int) -> Callable[[Callable], Callable]:
    """Register the function that upgrades a pipeline dict from ``from_version`` to the next."""

    def decorator(fn: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable:
        _MIGRATIONS[from_version] = fn
        return fn

    return decorator


@register_migration(0)
def _migrate_v0_to_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Version 0 (pre-release) nested each step's parameters under ``params``; flatten them."""

    def flatten(steps: list[Any]) -> list[Any]:
        out = []
        for step in steps:
            if not isinstance(step, Mapping):
                out.append(step)
                continue
            step = dict(step)
            params = step.pop("params", None) or {}
            if not isinstance(params, Mapping):
                raise PipelineFormatError(f"version-0 step {step.get('op')!r}: 'params' must be a mapping.")
            clash = set(params) & set(step)
            if clash:
                raise PipelineFormatError(f"version-0 step {step.get('op')!r}: keys {sorted(clash)} appear twice.")
            step.update(params)
            if "steps" in step:
                step["steps"] = flatten(step["steps"])
            if "branches" in step and isinstance(step["branches"], list):
                step["branches"] = [
                    {**b, "steps": flatten(b.get("steps", []))} if isinstance(b, Mapping) else b
                    for b in step["branches"]
                ]
            out.append(step)
        return out

    return {**data, "version": 1, "steps": flatten(list(data.get("steps", [])))}


# -- to dict ---------------------------------------------------------------------------------
def _steps_to_list(pipeline: Pipeline) -> list[dict[str, Any]]:
    out = []
    for name, node in pipeline.steps:
        if isinstance(node, Transform):
            params = node.to_dict()
            out.append({"op": params.pop("op"), "name": name, **params})
        elif isinstance(node, Pipeline):
            out.append({"op": "pipeline", "name": name, "steps": _steps_to_list(node)})
        else:
            out.append(
                {
                    "op": "branch",
                    "name": name,
                    "combine": node.combine,
                    "axis": node.axis,
                    "branches": [{"name": bn, "steps": _steps_to_list(bp)} for bn, bp in node.branches],
                }
            )
    return out


def _plugin_packages(pipeline: Pipeline | Branch) -> set[str]:
    packages: set[str] = set()
    nodes = [p for _, p in pipeline.branches] if isinstance(pipeline, Branch) else list(pipeline)
    for node in nodes:
        if isinstance(node, Transform):
            root = type(node).__module__.split(".")[0]
            if root not in ("neurocrane", "__main__", "__mp_main__"):
                packages.add(root)
        else:
            packages |= _plugin_packages(node)
    return packages


def pipeline_to_dict(pipeline: Pipeline) -> dict[str, Any]:
    """Serialize a pipeline to a plain dict of JSON types (see the module docstring)."""
    from neurocrane import __version__

    data: dict[str, Any] = {
        "format": FORMAT,
        "version": SCHEMA_VERSION,
        "neurocrane_version": __version__,
        "steps": _steps_to_list(pipeline),
    }
    plugins = sorted(_plugin_packages(pipeline))
    if plugins:
        data["requires"] = plugins
    return data


# -- from dict -------------------------------------------------------------------------------
def _refuse_import_strings(obj: Any, path: str = "pipeline") -> None:
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            if key in _FORBIDDEN_KEYS:
                raise PipelineFormatError(
                    f"{path} contains the key {key!r}: pipeline files name registered ops only and "
                    "never import paths (instantiating them could run arbitrary code). Replace it "
                    "with 'op: <registered op name>'."
                )
            _refuse_import_strings(value, f"{path}.{key}")
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            _refuse_import_strings(value, f"{path}[{i}]")


def _build_steps(steps: Any, where: str, requires: list[str]) -> list[tuple[str | None, Any]]:
    if not isinstance(steps, list):
        raise PipelineFormatError(f"{where}: 'steps' must be a list of step mappings; got {type(steps).__name__}.")
    if not steps:
        raise PipelineFormatError(f"{where}: 'steps' is empty; a pipeline needs at least one step.")
    built: list[tuple[str | None, Any]] = []
    for i, step in enumerate(steps):
        here = f"{where} step {i}"
        if not isinstance(step, Mapping):
            raise PipelineFormatError(f"{here}: each step must be a mapping with an 'op' key; got {step!r:.80}.")
        step = dict(step)
        op = step.pop("op", None)
        name = step.pop("name", None)
        if name is not None:
            name = str(name)
            here = f"{where} step {i} ('{name}')"
        if not isinstance(op, str):
            raise PipelineFormatError(f"{here}: missing or non-string 'op' (got {op!r}); every step names its op.")
        if op == "pipeline":
            _expect_keys(step, {"steps"}, here)
            built.append((name, Pipeline(_build_steps(step["steps"], here, requires))))
        elif op == "branch":
            built.append((name, _build_branch(step, here, requires)))
        else:
            cls = get_transform_class(op, where=here, package_hint=requires)
            try:
                node = cls(**{str(k): v for k, v in step.items()})
            except TransformValidationError as err:
                raise err.with_step(name or f"#{i}") from None
            built.append((name, node))
    return built


def _expect_keys(step: dict[str, Any], allowed: set[str], where: str, required: set[str] | None = None) -> None:
    extra = set(step) - allowed
    if extra:
        raise PipelineFormatError(f"{where}: unexpected keys {sorted(extra)}; allowed: {sorted(allowed)}.")
    missing = (allowed if required is None else required) - set(step)
    if missing:
        raise PipelineFormatError(f"{where}: missing keys {sorted(missing)}.")


def _build_branch(step: dict[str, Any], where: str, requires: list[str]) -> Branch:
    _expect_keys(step, {"branches", "combine", "axis"}, where, required={"branches"})
    raw = step["branches"]
    if isinstance(raw, Mapping):  # hand-written form {name: [steps]}
        raw = [{"name": k, "steps": v} for k, v in raw.items()]
    if not isinstance(raw, list):
        raise PipelineFormatError(f"{where}: 'branches' must be a list of {{name, steps}} mappings.")
    branches = []
    for j, b in enumerate(raw):
        if not isinstance(b, Mapping) or set(b) != {"name", "steps"}:
            raise PipelineFormatError(f"{where} branch {j}: expected a mapping with keys 'name' and 'steps'; got {b!r:.80}.")
        steps = b["steps"] if isinstance(b["steps"], list) else [b["steps"]]
        branches.append((str(b["name"]), Pipeline(_build_steps(steps, f"{where} branch '{b['name']}'", requires))))
    return Branch(branches, combine=step.get("combine", "concat"), axis=step.get("axis"))


def pipeline_from_dict(data: Mapping[str, Any]) -> Pipeline:
    """Build a :class:`Pipeline` from a dict, migrating older schema versions.

    Raises:
        PipelineFormatError: wrong layout or refused content (import strings).
        SchemaVersionError: written by a newer neurocrane than this one.
        UnknownTransformError: an op is not registered.
        TransformValidationError: a parameter is misspelled, missing, mistyped or out of range.
    """
    if not isinstance(data, Mapping):
        raise PipelineFormatError(
            f"a pipeline must be a mapping with a 'steps' list; got {type(data).__name__}."
        )
    _refuse_import_strings(data)
    data = dict(data)
    fmt = data.get("format", FORMAT)
    if fmt != FORMAT:
        raise PipelineFormatError(f"not a neurocrane pipeline: format is {fmt!r}, expected {FORMAT!r}.")
    version = data.get("version", SCHEMA_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise PipelineFormatError(f"pipeline 'version' must be a non-negative integer; got {version!r}.")
    if version > SCHEMA_VERSION:
        from neurocrane import __version__

        raise SchemaVersionError(
            f"this pipeline uses schema version {version} (written by neurocrane "
            f"{data.get('neurocrane_version', '?')}); neurocrane {__version__} reads versions up to "
            f"{SCHEMA_VERSION}. Upgrade neurocrane (pip install -U neurocrane) to load it."
        )
    while version < SCHEMA_VERSION:
        migrate = _MIGRATIONS.get(version)
        if migrate is None:
            raise SchemaVersionError(f"no migration from pipeline schema version {version}; cannot load it.")
        data = migrate(data)
        version = data["version"]
    unknown = set(data) - _TOP_LEVEL_KEYS
    if unknown:
        raise PipelineFormatError(
            f"unexpected top-level keys {sorted(unknown)} in pipeline; allowed: {sorted(_TOP_LEVEL_KEYS)}."
        )
    if "steps" not in data:
        raise PipelineFormatError("pipeline has no 'steps' list.")
    requires = data.get("requires") or []
    if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
        raise PipelineFormatError(f"'requires' must be a list of package names; got {requires!r}.")
    return Pipeline(_build_steps(data["steps"], "pipeline", requires))


# -- text formats ----------------------------------------------------------------------------
def dumps_json(data: Mapping[str, Any], indent: int | None = 2, **kwargs: Any) -> str:
    return json.dumps(data, indent=indent, allow_nan=False, **kwargs)


def loads_json(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as err:
        raise PipelineFormatError(f"malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}.") from None


def _refuse_constant(name: str) -> None:
    raise PipelineFormatError(f"JSON constant {name} is not allowed in pipelines; parameters must be finite numbers.")


class _StrictSafeLoader(yaml.SafeLoader):
    """The safe loader, refusing duplicate keys (YAML would silently keep the last one)."""


def _construct_mapping(loader: _StrictSafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise PipelineFormatError(
                f"duplicate key {key!r} at line {key_node.start_mark.line + 1}; each parameter may appear once."
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictSafeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def dumps_yaml(data: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=False, allow_unicode=True)


def loads_yaml(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictSafeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.constructor.ConstructorError as err:
        raise PipelineFormatError(
            f"refused YAML content {('at line ' + str(err.problem_mark.line + 1)) if err.problem_mark else ''}: "
            f"{err.problem}. Pipeline files may contain only plain mappings, lists, strings and "
            "numbers; tags that build Python objects (like !!python/object) are never loaded."
        ) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise PipelineFormatError(f"malformed YAML{where}: {getattr(err, 'problem', err)}.") from None


# -- files -----------------------------------------------------------------------------------
_SUFFIXES = {".yaml": "yaml", ".yml": "yaml", ".json": "json"}


def _format_for(path: Path) -> str:
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise PipelineFormatError(
            f"cannot tell the format of {str(path)!r} from its suffix {path.suffix!r}; use one of "
            f"{sorted(_SUFFIXES)}."
        )
    return fmt


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file and an atomic rename, so a crash never
    leaves a half-written file. The parent folder must exist."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder {str(path.parent)!r} does not exist; create it before saving {path.name!r}.")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_pipeline(pipeline: Pipeline, path: str | Path) -> Path:
    """Write ``pipeline`` to a ``.yaml``/``.yml``/``.json`` file atomically."""
    path = Path(path)
    fmt = _format_for(path)
    data = pipeline_to_dict(pipeline)
    text = dumps_yaml(data) if fmt == "yaml" else dumps_json(data) + "\n"
    return atomic_write_text(path, text)


def load_pipeline(path: str | Path) -> Pipeline:
    """Read a pipeline file (``.yaml``/``.yml``/``.json``), or the pipeline stored in a model
    directory's ``config.json``."""
    path = Path(path)
    if path.is_dir():
        return pipeline_from_pretrained(path)
    fmt = _format_for(path)
    if not path.is_file():
        raise FileNotFoundError(f"no pipeline file at {str(path)!r}.")
    text = path.read_text(encoding="utf-8")
    data = loads_yaml(text) if fmt == "yaml" else loads_json(text)
    try:
        return pipeline_from_dict(data)
    except Exception as err:
        err.add_note(f"while loading pipeline file {str(path)!r}")
        raise


def pipeline_from_pretrained(path_or_repo_id: str | Path, **hub_kwargs: Any) -> Pipeline:
    """Load the pipeline stored under ``preprocessing`` in a model's ``config.json``.

    Args:
        path_or_repo_id: A local model directory or a Hugging Face Hub repo id (the Hub cache
            is used; set ``HF_HUB_OFFLINE=1`` to stay offline).
        **hub_kwargs: Passed to ``huggingface_hub.hf_hub_download`` (``revision``,
            ``cache_dir``, ``token``, ...).
    """
    local = Path(path_or_repo_id)
    if local.is_dir():
        config_path = local / "config.json"
        if not config_path.is_file():
            raise FileNotFoundError(f"{str(local)!r} is a folder without config.json; it is not a saved model.")
    else:
        from huggingface_hub import hf_hub_download

        config_path = Path(hf_hub_download(str(path_or_repo_id), "config.json", **hub_kwargs))
    config = loads_json(config_path.read_text(encoding="utf-8"))
    if not isinstance(config, Mapping) or not isinstance(config.get("preprocessing"), Mapping):
        raise PipelineFormatError(
            f"{str(config_path)!r} has no 'preprocessing' pipeline; it was not saved by a neurocrane model."
        )
    return pipeline_from_dict(config["preprocessing"])
