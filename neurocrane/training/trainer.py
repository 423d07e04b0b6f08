"""``train(cfg)``: one Hydra config in, a trained Hugging Face model directory out.

The config (see ``neurocrane/conf/train.yaml``) names a model, a data module, the model's
pipeline, a Lightning trainer, optimizer, scheduler, callbacks and loggers. ``train``:

1. seeds everything and builds the model (new from its config, or ``from_pretrained``);
2. gives it the pipeline the config asks for (a YAML file in ``pipelines/``, a name, or inline);
3. builds the data module and runs **one batch** through the model before training, so a
   model/pipeline/data mismatch stops the run with a message that says what to change;
4. fits with Lightning (DDP/FSDP, mixed precision, multi-node all through ``trainer``),
   resuming from the last checkpoint when asked;
5. exports the best model as a Hugging Face directory (safetensors + ``config.json`` with the
   pipeline + model card) and returns its path with the final metrics.

``_target_`` entries of a training config are instantiated (they import code): that is for
local configs you wrote. A downloaded model's ``config.json`` never goes through here; it is
read by ``BaseModel.from_pretrained``, which refuses import paths.

Example:
    >>> from neurocrane.training import compose_config, train
    >>> cfg = compose_config(["experiment=pretrain_synthetic", "trainer.max_epochs=1"])
    >>> export_dir, metrics = train(cfg)
"""

from __future__ import annotations

import difflib
import inspect
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from neurocrane.errors import NeuroCraneError
from neurocrane.pipeline import Pipeline
from neurocrane.pipeline.io import atomic_write_text, load_pipeline, pipeline_from_dict
from neurocrane.training.callbacks import HFExportCallback, PipelineRecordCallback
from neurocrane.training.lightning_module import LightningModule

__all__ = [
    "TrainResult",
    "TrainingConfigError",
    "check_compatibility",
    "compose_config",
    "find_pipeline_file",
    "module_classes",
    "resolve_pipeline",
    "train",
]

logger = logging.getLogger("neurocrane.training")


class _DropCloudLoggerTip(logging.Filter):
    """Lightning 2.6 logs an advertisement for its cloud logger at every ``fit``; it says nothing
    about the run, and in ``make demo`` it was the loudest line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


_TIP_FILTER = _DropCloudLoggerTip()

CONFIG_MODULE = "neurocrane.conf"
#: Top-level keys of a training config.
KNOWN_KEYS = frozenset(
    {
        "model", "data", "pipeline", "trainer", "optimizer", "scheduler", "callbacks", "logger",
        "experiment", "seed", "task_name", "output_dir", "resume", "ckpt_path", "test",
        "check_compatibility", "paths", "hydra", "matmul_precision",
    }
)
#: Environment variable through which DDP child processes learn the run folder of rank 0.
RUN_DIR_ENV = "NEUROCRANE_RUN_DIR"


class TrainingConfigError(NeuroCraneError, ValueError):
    """The training config, or the model/pipeline/data it describes, cannot be trained as given."""


@dataclass
class TrainResult:
    """What :func:`train` returns; unpacks as ``export_dir, metrics = train(cfg)``.

    Attributes:
        export_dir: Hugging Face model directory of the best model (load with
            ``crane.BaseModel.from_pretrained``).
        metrics: Final metrics (``train_loss``, ``val_loss``, ...), as floats.
        output_dir: The run folder (checkpoints, logs, pipeline record, resolved config).
        last_export_dir: The model at the end of training, when exported.
        best_checkpoint: Lightning checkpoint of the best model (for resuming, not sharing).
        last_checkpoint: The last Lightning checkpoint (what ``resume=True`` continues from).
        global_step: Optimizer steps taken in total (including before a resume).
        pipeline_fingerprint: Fingerprint of the model's pipeline.
        global_rank: Rank of this process (0 unless distributed).
    """

    export_dir: Path | None
    metrics: dict[str, float]
    output_dir: Path
    last_export_dir: Path | None = None
    best_checkpoint: str | None = None
    last_checkpoint: str | None = None
    global_step: int = 0
    pipeline_fingerprint: str | None = None
    global_rank: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.export_dir, self.metrics))


# -- config ----------------------------------------------------------------------------------
def compose_config(overrides: Sequence[str] = (), config_name: str = "train") -> DictConfig:
    """Compose the packaged training config with command-line style overrides.

    Args:
        overrides: Hydra overrides, e.g. ``["experiment=pretrain_synthetic", "trainer.max_epochs=1"]``.
        config_name: Primary config in ``neurocrane/conf``.

    Returns:
        The composed config (interpolations not yet resolved).

    Raises:
        TrainingConfigError: an unknown config group or option, an unknown key, a malformed
            override; the message lists what exists.
    """
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            return compose(config_name=config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as err:
        raise TrainingConfigError(_config_error_message(err, overrides)) from err


def _config_error_message(err: Exception, overrides: Sequence[str]) -> str:
    text = str(err).strip()
    hint = (
        "Check the spelling of config groups and keys (`neurocrane train --help` lists the groups and their options; "
        "`neurocrane train --cfg job` prints the composed config). A key the config does not have can be added "
        "with a leading '+', e.g. +trainer.profiler=simple."
    )
    return f"cannot compose the training config from overrides {list(overrides)}: {text}\n{hint}"


def _as_config(cfg: Any) -> DictConfig:
    if cfg is None:
        return compose_config()
    if isinstance(cfg, DictConfig):
        return OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    if isinstance(cfg, Mapping):
        return OmegaConf.create(dict(cfg))
    raise TrainingConfigError(f"train() takes a Hydra DictConfig or a dict; got {type(cfg).__name__}.")


def _check_keys(cfg: DictConfig) -> None:
    unknown = [k for k in cfg.keys() if k not in KNOWN_KEYS]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), sorted(KNOWN_KEYS), n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise TrainingConfigError(
            f"unknown top-level training config key(s) {', '.join(hints)}. Known keys: {', '.join(sorted(KNOWN_KEYS))}."
        )
    for key in ("model", "data", "trainer"):
        if cfg.get(key) is None:
            raise TrainingConfigError(
                f"the training config has no '{key}' section; choose one, e.g. {key}=... on the command line "
                "or an experiment (experiment=pretrain_synthetic)."
            )


def _resolve(cfg: DictConfig) -> DictConfig:
    """Resolve interpolations once (``${now:...}`` must give one run folder, not several)."""
    try:
        missing = sorted(k for k in _missing_keys(cfg))
        if missing:
            raise TrainingConfigError(
                f"the training config leaves {', '.join(missing)} unset ('???'); give them on the command line, "
                f"e.g. {missing[0]}=..."
            )
        hydra_node = cfg.pop("hydra", None) if "hydra" in cfg else None
        resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
        if hydra_node is not None:
            cfg["hydra"] = hydra_node
        return resolved
    except OmegaConfBaseException as err:
        raise TrainingConfigError(f"cannot resolve the training config: {err}") from err


def _missing_keys(node: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(node, DictConfig):
        for key in node.keys():
            path = f"{prefix}{key}"
            if key == "hydra":
                continue
            if OmegaConf.is_missing(node, key):
                yield path
            else:
                yield from _missing_keys(node._get_node(key), path + ".")


def _instantiate(node: Any, what: str, **kwargs: Any) -> Any:
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, NeuroCraneError):
            raise TrainingConfigError(f"cannot build the {what}: {cause}") from cause
        raise TrainingConfigError(f"cannot build the {what} from the '{what}' config: {err}") from err
    except NeuroCraneError as err:
        raise TrainingConfigError(f"cannot build the {what}: {err}") from err


# -- pipeline --------------------------------------------------------------------------------
def _pipeline_dirs() -> list[Path]:
    import neurocrane

    dirs = [Path.cwd() / "pipelines", Path(neurocrane.__file__).resolve().parent.parent / "pipelines"]
    extra = os.environ.get("NEUROCRANE_PIPELINES")
    if extra:
        dirs = [Path(p) for p in extra.split(os.pathsep) if p] + dirs
    return list(dict.fromkeys(dirs))


def find_pipeline_file(name: str | Path) -> Path:
    """Find a pipeline file by path or by name (``brainbert`` → ``pipelines/brainbert.yaml``).

    Names are looked up in ``$NEUROCRANE_PIPELINES`` (``os.pathsep``-separated folders), then
    ``./pipelines`` and the ``pipelines/`` folder of the neurocrane source tree.

    Raises:
        TrainingConfigError: nothing found; the message lists the available names.
    """
    path = Path(name)
    if path.is_file():
        return path
    if path.suffix in ("", ".yaml", ".yml", ".json") and len(path.parts) == 1:
        stem = path.stem if path.suffix else path.name
        for folder in _pipeline_dirs():
            for suffix in (".yaml", ".yml", ".json"):
                candidate = folder / f"{stem}{suffix}"
                if candidate.is_file():
                    return candidate
    available = sorted({p.stem for d in _pipeline_dirs() if d.is_dir() for p in d.iterdir() if p.suffix in (".yaml", ".yml", ".json")})
    raise TrainingConfigError(
        f"no pipeline file {str(name)!r}: not a file, and no pipeline of that name in "
        f"{[str(d) for d in _pipeline_dirs()]}. Available names: {available or 'none'}. "
        "Give pipeline.file=<path or name> or an inline pipeline (pipeline.inline={format:..., steps:[...]})."
    )


def resolve_pipeline(spec: Any) -> Pipeline | None:
    """Build the pipeline a training config asks for, or ``None`` to keep the model's own.

    Args:
        spec: ``None``/empty (keep the model's), a file path or name, a
            :class:`~neurocrane.Pipeline`, ``{"file": ...}``, ``{"inline": <pipeline dict>}`` or a
            pipeline dict itself (``{"format": "neurocrane.pipeline", "steps": [...]}``).

    Returns:
        The validated pipeline, or ``None``.

    Raises:
        TrainingConfigError: a missing file, a file or dict that fails validation (naming the
            step and field to fix), or both ``file`` and ``inline`` given.
    """
    if spec is None or isinstance(spec, Pipeline):
        return spec
    if isinstance(spec, DictConfig):
        spec = OmegaConf.to_container(spec, resolve=True)
    if isinstance(spec, str | Path):
        spec = {"file": str(spec)}
    if not isinstance(spec, Mapping):
        raise TrainingConfigError(f"pipeline must be a file, a name or a dict; got {type(spec).__name__}.")
    if "steps" in spec:
        spec = {"inline": dict(spec)}
    unknown = sorted(set(spec) - {"file", "inline"})
    if unknown:
        raise TrainingConfigError(
            f"the pipeline config has unknown key(s) {unknown}; use pipeline.file=<path or name> or "
            "pipeline.inline={format: neurocrane.pipeline, version: 1, steps: [...]}."
        )
    file, inline = spec.get("file"), spec.get("inline")
    if file and inline:
        raise TrainingConfigError("the pipeline config gives both 'file' and 'inline'; keep one.")
    try:
        if file:
            path = find_pipeline_file(file)
            return load_pipeline(path)
        if inline:
            return pipeline_from_dict(inline)
    except TrainingConfigError:
        raise
    except (NeuroCraneError, OSError) as err:
        where = f"pipeline file {str(file)!r}" if file else "the inline pipeline"
        notes = "".join(f" ({n})" for n in getattr(err, "__notes__", []))
        raise TrainingConfigError(
            f"{where} failed validation: {err}{notes}\nFix the step and field named above, then run again "
            "(`neurocrane describe <file>` shows a valid pipeline)."
        ) from err
    return None


# -- model and data --------------------------------------------------------------------------
def _build_model(cfg: DictConfig) -> torch.nn.Module:
    from neurocrane.models import BaseModel

    model = _instantiate(cfg.model, "model")
    if not isinstance(model, BaseModel):
        raise TrainingConfigError(
            f"the model config built a {type(model).__name__}, not a neurocrane BaseModel; point model._target_ at a "
            "BaseModel subclass (with its config) or at neurocrane.models.BaseModel.from_pretrained."
        )
    return model


def _accepts(target: Any, name: str) -> bool:
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _build_data(cfg: DictConfig, pipeline: Pipeline) -> Any:
    from hydra.utils import get_object

    node = cfg.data
    kwargs: dict[str, Any] = {}
    recording_part, _ = pipeline.split()
    if recording_part is not None and "_target_" in node:
        try:
            target = get_object(node._target_)
        except Exception:  # reported by _instantiate below
            target = None
        if target is not None and _accepts(target, "pipeline") and node.get("pipeline") is None:
            kwargs["pipeline"] = pipeline
    datamodule = _instantiate(node, "data", **kwargs)
    if not isinstance(datamodule, pl.LightningDataModule):
        raise TrainingConfigError(
            f"the data config built a {type(datamodule).__name__}, not a LightningDataModule; point data._target_ at "
            "neurocrane.data.datamodule.iEEGDataModule (or neurocrane.training.synthetic.synthetic_datamodule)."
        )
    return datamodule


def _first_batch(datamodule: pl.LightningDataModule) -> dict[str, Any]:
    try:
        datamodule.setup("fit")
        loader = datamodule.train_dataloader()
        iterator = iter(loader)
        batch = next(iterator)
    except StopIteration:
        raise TrainingConfigError(
            "the data module yields no training batch; lower data.batch_size, set data.drop_last=false, or select more "
            "sessions."
        ) from None
    except NeuroCraneError as err:
        raise TrainingConfigError(f"the data cannot be loaded: {err}") from err
    finally:
        loader = iterator = None  # noqa: F841 (release DataLoader workers now)
    hook = getattr(datamodule, "on_after_batch_transfer", None)
    if callable(hook):
        batch = hook(batch, 0)
    if not isinstance(batch, Mapping) or "neural_data" not in batch:
        raise TrainingConfigError(
            "training batches must be dicts with 'neural_data' (what iEEGDataModule yields); got "
            f"{type(batch).__name__} with keys {sorted(batch) if isinstance(batch, Mapping) else '-'}."
        )
    return dict(batch)


def _has_val_data(datamodule: pl.LightningDataModule) -> bool:
    try:
        loaders = datamodule.val_dataloader()
    except (NotImplementedError, AttributeError):
        return False
    if isinstance(loaders, list | tuple):
        return any(_loader_len(dl) != 0 for dl in loaders)
    return _loader_len(loaders) != 0


def _loader_len(loader: Any) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None


def check_compatibility(model: torch.nn.Module, datamodule: pl.LightningDataModule) -> dict[str, Any]:
    """Run one training batch through the model (no gradient) before any training.

    Also records in the model's config the input it is being trained on (sampling rate,
    window length) when the config leaves them open.

    Args:
        model: The neurocrane model, with its final pipeline.
        datamodule: The data module.

    Returns:
        A summary of the data: ``sampling_rate``, ``n_channels``, ``n_times``, ``context_length``,
        ``batch_size`` and the ``input_spec`` of the data.

    Raises:
        TrainingConfigError: the data cannot be loaded, or the model (with its pipeline) does
            not accept it; the message says what to change.
    """
    from neurocrane.batch import SignalSpec

    batch = _first_batch(datamodule)
    x = batch["neural_data"]
    rate = batch.get("sampling_rate")
    rate = float(rate) if rate is not None else None
    n_times = int(x.shape[-1])
    summary = {
        "sampling_rate": rate,
        "n_channels": int(x.shape[1]),
        "n_times": n_times,
        "context_length": None if rate is None else n_times / rate,
        "batch_size": int(x.shape[0]),
        "channel_names": list(batch.get("channel_names") or []),
    }
    summary["input_spec"] = SignalSpec(shape=(None, None, n_times), sampling_rate=rate)
    data_spec = SignalSpec(shape=(None, summary["n_channels"], n_times), sampling_rate=rate)
    config = getattr(model, "config", None)
    expected = getattr(config, "sampling_rate", None)
    pipeline = model.preprocess_pipeline
    if expected is not None and rate is not None and not math.isclose(expected, rate, rel_tol=1e-6):
        has_resample = any(getattr(node, "op", None) == "resample" for node in pipeline)
        if not has_resample:
            raise TrainingConfigError(
                f"model, pipeline and data do not fit: the model expects input sampled at {expected:g} Hz, the data are "
                f"at {rate:g} Hz, and the pipeline has no resampling step. Change one of: add a resample step to the "
                f"pipeline (e.g. {{op: resample, new_rate: {expected:g}}} first), give data at {expected:g} Hz, or "
                "train a new model on this rate."
            )
    if config is not None:
        if getattr(config, "sampling_rate", "absent") is None and rate is not None:
            config.sampling_rate = rate
        if getattr(config, "context_length", "absent") is None and summary["context_length"] is not None:
            config.context_length = summary["context_length"]
    module = LightningModule(model)
    inputs = module._model_inputs(batch)
    try:
        with torch.no_grad():
            outputs = model(**inputs)
    except NeuroCraneError as err:
        notes = "".join(f"\n  ({n})" for n in getattr(err, "__notes__", []))
        raise TrainingConfigError(
            f"model, pipeline and data do not fit (checked on the first training batch: {tuple(x.shape)} at "
            f"{rate} Hz, {summary['n_channels']} channels): {err}{notes}\nChange the pipeline (pipeline=...), "
            "the model config (model.config....) or the data (data....) so they agree; "
            f"`neurocrane describe` shows what each pipeline step expects. Pipeline now:\n{_describe_safely(pipeline, data_spec)}"
        ) from err
    if not isinstance(outputs, Mapping) or outputs.get("loss") is None:
        keys = sorted(outputs) if isinstance(outputs, Mapping) else type(outputs).__name__
        labelled = "labels" in inputs
        raise TrainingConfigError(
            f"the model returned no 'loss' on the first training batch (outputs: {keys}). "
            + (
                "The batches carry no labels: for supervised fine-tuning use labelled windows (data.windows=events), "
                "or a self-supervised objective (e.g. model.config.objective=masked)."
                if not labelled
                else "Check the model's objective."
            )
        )
    return summary


def _describe_safely(pipeline: Pipeline, spec: Any) -> str:
    try:
        return pipeline.describe(spec)
    except NeuroCraneError:
        return pipeline.describe()


# -- trainer pieces --------------------------------------------------------------------------
def _build_callbacks(cfg: DictConfig) -> list[pl.Callback]:
    callbacks = []
    for name, node in (cfg.get("callbacks") or {}).items():
        if node is None:
            continue
        callback = _instantiate(node, f"callbacks.{name}")
        if callback is not None:
            callbacks.append(callback)
    return callbacks


def _build_loggers(cfg: DictConfig) -> list[Any] | bool:
    node = cfg.get("logger")
    if not node:
        return False
    loggers = []
    for name, sub in node.items():
        if sub is None:
            continue
        built = _instantiate(sub, f"logger.{name}")
        if built is not None:
            loggers.append(built)
    return loggers or False


def _without_val_monitors(cfg: DictConfig) -> None:
    """No validation data: drop early stopping and monitor nothing (best = last)."""
    callbacks = cfg.get("callbacks") or {}
    for name in list(callbacks.keys()):
        node = callbacks[name]
        if node is None:
            continue
        target = str(node.get("_target_", ""))
        monitor = node.get("monitor")
        if monitor and str(monitor).startswith("val"):
            if target.endswith("EarlyStopping"):
                logger.warning("no validation data: early stopping (%s) is off.", name)
                callbacks[name] = None
            else:
                node["monitor"] = None


def _checkpoint_to_resume(cfg: DictConfig, output_dir: Path, resume: bool, ckpt_path: str | None) -> str | None:
    if ckpt_path:
        if not Path(ckpt_path).is_file():
            raise TrainingConfigError(f"ckpt_path={ckpt_path!r} is not a file; give the path of a Lightning .ckpt to resume.")
        return str(ckpt_path)
    if not resume:
        return None
    last = output_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        raise TrainingConfigError(
            f"resume=true but there is no checkpoint at {last}. Point output_dir=<the interrupted run's folder> "
            "(it holds checkpoints/last.ckpt), or give ckpt_path=<file.ckpt>."
        )
    return str(last)


def _output_dir(cfg: DictConfig) -> Path:
    local_rank = os.environ.get("LOCAL_RANK", "0")
    inherited = os.environ.get(RUN_DIR_ENV)
    if local_rank != "0" and inherited:
        return Path(inherited)  # a DDP child started by Lightning: use rank 0's folder
    value = cfg.get("output_dir")
    if not value:
        raise TrainingConfigError("output_dir is empty; set output_dir=<folder for this run>.")
    return Path(str(value))


def _final_metrics(trainer: pl.Trainer) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in trainer.callback_metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        out[str(key)] = number
    return out


# -- train -----------------------------------------------------------------------------------
def train(
    cfg: DictConfig | Mapping[str, Any] | None = None,
    *,
    resume: bool | None = None,
    ckpt_path: str | None = None,
    callbacks: Sequence[pl.Callback] = (),
) -> TrainResult:
    """Train a neurocrane model from a config and export it as a Hugging Face directory.

    Args:
        cfg: A composed config (:func:`compose_config` or ``@hydra.main``), a plain dict with
            the same layout, or ``None`` for the packaged defaults.
        resume: Continue an interrupted run from ``<output_dir>/checkpoints/last.ckpt`` (same
            global step, optimizer and scheduler state). Default: ``cfg.resume``.
        ckpt_path: Resume from this Lightning checkpoint instead. Default: ``cfg.ckpt_path``.
        callbacks: Extra Lightning callbacks (added to those of the config).

    Returns:
        A :class:`TrainResult` (unpacks as ``export_dir, metrics``).

    Raises:
        TrainingConfigError: an unknown key or group, a pipeline that fails validation, a
            model/pipeline/data mismatch, a missing checkpoint to resume — all before training.

    Example:
        >>> export_dir, metrics = train(compose_config(["experiment=pretrain_synthetic"]))
        >>> crane.BaseModel.from_pretrained(export_dir)
    """
    cfg = _as_config(cfg)
    _check_keys(cfg)
    cfg = _resolve(cfg)
    resume = bool(cfg.get("resume", False)) if resume is None else bool(resume)
    ckpt_path = ckpt_path if ckpt_path is not None else cfg.get("ckpt_path")
    output_dir = _output_dir(cfg)
    cfg.output_dir = str(output_dir)
    resume_from = _checkpoint_to_resume(cfg, output_dir, resume, ckpt_path)
    seed = int(cfg.get("seed", 0))
    if cfg.get("matmul_precision"):
        torch.set_float32_matmul_precision(str(cfg.matmul_precision))

    pl.seed_everything(seed, workers=True)
    pipeline = resolve_pipeline(cfg.get("pipeline"))
    model = _build_model(cfg)
    if pipeline is not None:
        model.preprocess_pipeline = pipeline
    pipeline = model.preprocess_pipeline
    datamodule = _build_data(cfg, pipeline)
    data_summary: dict[str, Any] = {}
    if cfg.get("check_compatibility", True):
        data_summary = check_compatibility(model, datamodule)
    if not _has_val_data(datamodule):
        _without_val_monitors(cfg)
    pl.seed_everything(seed, workers=True)  # the check above drew random numbers
    model.train()  # from_pretrained returns eval mode, and Lightning keeps a module's mode

    module = LightningModule(model, cfg.get("optimizer"), cfg.get("scheduler"))
    all_callbacks = _build_callbacks(cfg) + list(callbacks)
    summary = {
        "task_name": cfg.get("task_name"),
        "seed": seed,
        "pipeline_fingerprint": pipeline.fingerprint,
        "data": OmegaConf.to_container(cfg.data, resolve=True),
    }
    exporter = next((c for c in all_callbacks if isinstance(c, HFExportCallback)), None)
    if exporter is None:
        exporter = HFExportCallback(output_dir / "export", monitor=None if not _has_val_data(datamodule) else "val_loss")
        all_callbacks.append(exporter)
    exporter.summary = {**summary, **exporter.summary}
    record = next((c for c in all_callbacks if isinstance(c, PipelineRecordCallback)), None)
    if record is None:
        all_callbacks.append(PipelineRecordCallback(output_dir, input_spec=data_summary.get("input_spec")))
    elif record.input_spec is None:
        record.input_spec = data_summary.get("input_spec")

    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(_TIP_FILTER)  # (idempotent)
    trainer = _instantiate(cfg.trainer, "trainer", callbacks=all_callbacks, logger=_build_loggers(cfg))
    if not isinstance(trainer, pl.Trainer):
        raise TrainingConfigError(f"the trainer config built a {type(trainer).__name__}, not a pytorch_lightning.Trainer.")
    os.environ[RUN_DIR_ENV] = str(output_dir)
    if trainer.is_global_zero:
        output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(output_dir / "train_config.yaml", OmegaConf.to_yaml(cfg))
        logger.info("run folder: %s", output_dir)

    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
    if cfg.get("test") and _has_test_data(datamodule):
        trainer.test(module, datamodule=datamodule, verbose=False)

    checkpoint = next((c for c in trainer.callbacks if isinstance(c, pl.callbacks.ModelCheckpoint)), None)
    return TrainResult(
        export_dir=exporter.best_path,
        metrics=_final_metrics(trainer),
        output_dir=output_dir,
        last_export_dir=exporter.last_path,
        best_checkpoint=(checkpoint.best_model_path or None) if checkpoint else None,
        last_checkpoint=(checkpoint.last_model_path or None) if checkpoint else None,
        global_step=int(trainer.global_step),
        pipeline_fingerprint=pipeline.fingerprint,
        global_rank=int(trainer.global_rank),
        extra={"data": {k: v for k, v in data_summary.items() if k != "input_spec"}},
    )


def module_classes(names: Sequence[str]) -> set[type]:
    """Module classes by import path, as a set (FSDP's ``auto_wrap_policy`` in a YAML config).

    Example:
        >>> module_classes(["torch.nn.TransformerEncoderLayer"])
        {<class 'torch.nn.modules.transformer.TransformerEncoderLayer'>}
    """
    from hydra.utils import get_class

    return {get_class(name) for name in names}


def _has_test_data(datamodule: pl.LightningDataModule) -> bool:
    try:
        loaders = datamodule.test_dataloader()
    except (NotImplementedError, AttributeError):
        return False
    return bool(loaders)
