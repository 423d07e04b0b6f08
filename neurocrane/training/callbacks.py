"""Training callbacks and loggers: Hugging Face export, pipeline record, optional TensorBoard.

* :class:`HFExportCallback` saves the wrapped model as a Hugging Face model directory
  (``model.safetensors`` + ``config.json`` with the pipeline + ``README.md`` model card) each
  time the monitored metric improves (``<dirpath>/best``) and when training ends
  (``<dirpath>/last``). That directory, not a Lightning ``.ckpt``, is what you share.
* :class:`PipelineRecordCallback` writes the model's pipeline (YAML, ``describe()`` table and
  fingerprint) into the run directory and logs the fingerprint with the hyperparameters, so
  every run says exactly which preprocessing it trained with.
* Learning-rate monitoring, early stopping and the progress bar are Lightning's own
  (``LearningRateMonitor``, ``EarlyStopping``, ``TQDMProgressBar``); the Hydra config tree
  (``neurocrane/conf/callbacks``) switches them on.

Example:
    >>> trainer = pl.Trainer(callbacks=[HFExportCallback("run/export"), PipelineRecordCallback("run")])
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from neurocrane.pipeline.io import atomic_write_text

__all__ = ["HFExportCallback", "PipelineRecordCallback", "tensorboard_logger", "wrapped_model"]

logger = logging.getLogger("neurocrane.training")


def wrapped_model(pl_module: pl.LightningModule) -> torch.nn.Module:
    """The neurocrane model inside a Lightning module (its ``model`` attribute)."""
    model = getattr(pl_module, "model", None)
    if model is None or not hasattr(model, "save_pretrained"):
        raise TypeError(
            f"{type(pl_module).__name__} has no 'model' with save_pretrained; wrap a neurocrane BaseModel in "
            "neurocrane.training.LightningModule."
        )
    return model


def _json_safe(value: Any) -> Any:
    """JSON values only, without Hydra keys (``_target_`` ...): a model config never names code."""
    if isinstance(value, Mapping):
        return {
            str(k): _json_safe(v)
            for k, v in value.items()
            if not (str(k).startswith("_") and str(k).endswith("_"))
        }
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)


def _sharded(strategy: Any) -> bool:
    """Whether parameters are split across ranks (FSDP, DeepSpeed), so export must gather them."""
    name = type(strategy).__name__.lower()
    return "fsdp" in name or "deepspeed" in name


def _pipeline_of(model: Any) -> Any:
    return getattr(model, "preprocess_pipeline", None)


class HFExportCallback(pl.Callback):
    """Export the model as a Hugging Face directory on improvement (``best``) and at the end (``last``).

    Works under DDP and FSDP: the full state dict is gathered through the strategy on every
    rank and written by global rank 0 only.

    Args:
        dirpath: Folder that receives ``best/`` and ``last/``.
        monitor: Metric deciding "best" (``val_loss`` by default). Without it (no validation
            data), ``best`` is the model at the end of training.
        mode: ``"min"`` or ``"max"``.
        save_best: Export ``best/`` on improvement.
        save_last: Export ``last/`` when training ends.
        summary: Extra JSON fields for the config's ``training_summary`` (data, experiment).

    Example:
        >>> pl.Trainer(callbacks=[HFExportCallback("outputs/run1/export")])
    """

    def __init__(
        self,
        dirpath: str | Path,
        monitor: str | None = "val_loss",
        mode: str = "min",
        save_best: bool = True,
        save_last: bool = True,
        summary: Mapping[str, Any] | None = None,
    ):
        if mode not in ("min", "max"):
            raise ValueError(f"HFExportCallback: mode must be 'min' or 'max'; got {mode!r}.")
        self.dirpath = Path(dirpath)
        self.monitor = monitor
        self.mode = mode
        self.save_best = save_best
        self.save_last = save_last
        self.summary = dict(summary or {})
        self.best_score: float | None = None
        self.best_step: int | None = None
        self.best_path: Path | None = None
        self.last_path: Path | None = None
        self._started = time.monotonic()

    # -- state (so a resumed run keeps its best score) ------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "best_step": self.best_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_score = state_dict.get("best_score")
        self.best_step = state_dict.get("best_step")
        if self.best_score is not None and (self.dirpath / "best").is_dir():
            self.best_path = self.dirpath / "best"

    # -- hooks ---------------------------------------------------------------------------------
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not self.save_best or self.monitor is None:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        score = float(value)
        improved = math.isfinite(score) and (
            self.best_score is None or (score < self.best_score if self.mode == "min" else score > self.best_score)
        )
        improved = trainer.strategy.reduce_boolean_decision(improved, all=True)
        if improved:
            self.best_score, self.best_step = score, int(trainer.global_step)
            self.best_path = self._export(trainer, pl_module, "best")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.save_last:
            self.last_path = self._export(trainer, pl_module, "last")
        if self.best_path is None and self.save_best:
            # No monitored metric was ever seen (e.g. no validation data): best is the final model.
            self.best_path = self._export(trainer, pl_module, "best")

    # -- export --------------------------------------------------------------------------------
    def training_summary(self, trainer: pl.Trainer, pl_module: pl.LightningModule, which: str) -> dict[str, Any]:
        """The ``training_summary`` written into the exported config (JSON values only)."""
        metrics = {}
        for key, value in trainer.callback_metrics.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            if math.isfinite(number):
                metrics[str(key)] = number
        summary: dict[str, Any] = {
            "exported": which,
            "global_step": int(trainer.global_step),
            "epoch": int(trainer.current_epoch),
            "metrics": metrics,
            "monitor": self.monitor,
            "best_score": self.best_score,
            "best_step": self.best_step,
            "world_size": int(trainer.world_size),
            "precision": str(trainer.precision),
            "framework": "neurocrane + pytorch-lightning",
        }
        summary.update(self.summary)
        return _json_safe(summary)

    def _export(self, trainer: pl.Trainer, pl_module: pl.LightningModule, which: str) -> Path:
        model = wrapped_model(pl_module)
        state = None
        if _sharded(trainer.strategy):
            # A collective: every rank takes part, rank 0 receives the full weights.
            full = trainer.strategy.lightning_module_state_dict()
            state = {k[len("model."):]: v for k, v in full.items() if k.startswith("model.")}
        target = self.dirpath / which
        if trainer.is_global_zero:
            config = getattr(model, "config", None)
            if config is not None and hasattr(config, "training_summary"):
                config.training_summary = self.training_summary(trainer, pl_module, which)
            model.save_pretrained(target, state_dict=state or None)
            logger.info("exported the %s model to %s", which, target)
        trainer.strategy.barrier("neurocrane_hf_export")
        return target


class PipelineRecordCallback(pl.Callback):
    """Write the model's pipeline into the run directory and the loggers when fitting starts.

    Files written (global rank 0): ``pipeline.yaml`` (loadable with ``Pipeline.load``),
    ``pipeline.txt`` (the ``describe()`` table for the data's input spec when known) and
    ``pipeline_fingerprint.txt``. Loggers receive ``pipeline_fingerprint`` and the pipeline
    dict as hyperparameters.

    Args:
        run_dir: The run's output folder.
        input_spec: The data's :class:`~neurocrane.SignalSpec`, for the description.
    """

    def __init__(self, run_dir: str | Path, input_spec: Any = None):
        self.run_dir = Path(run_dir)
        self.input_spec = input_spec
        self.fingerprint: str | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pipeline = _pipeline_of(wrapped_model(pl_module))
        if pipeline is None:
            return
        self.fingerprint = pipeline.fingerprint
        if not trainer.is_global_zero:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        pipeline.save(self.run_dir / "pipeline.yaml")
        try:
            table = pipeline.describe(self.input_spec)
        except Exception as err:  # a description must never stop training
            table = f"{pipeline.describe()}\n(could not describe it for the data's input spec: {err})"
        atomic_write_text(self.run_dir / "pipeline.txt", table + "\n")
        atomic_write_text(self.run_dir / "pipeline_fingerprint.txt", self.fingerprint + "\n")
        for lg in trainer.loggers:
            lg.log_hyperparams({"pipeline_fingerprint": self.fingerprint, "pipeline": pipeline.to_dict()})


def tensorboard_logger(save_dir: str | Path, name: str = "tensorboard", **kwargs: Any) -> Any:
    """A Lightning ``TensorBoardLogger`` when TensorBoard (or tensorboardX) is installed, else ``None``.

    The default logger config lists it next to the CSV logger; :func:`neurocrane.training.train`
    drops a ``None`` logger, so TensorBoard is used exactly when it is available.

    Args:
        save_dir: Folder for the event files.
        name: Sub-folder name.
        **kwargs: Passed to ``TensorBoardLogger``.
    """
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None and importlib.util.find_spec("tensorboardX") is None:
        logger.info("TensorBoard is not installed (pip install tensorboard); logging to CSV only.")
        return None
    from pytorch_lightning.loggers import TensorBoardLogger

    return TensorBoardLogger(save_dir=str(save_dir), name=name, **kwargs)
