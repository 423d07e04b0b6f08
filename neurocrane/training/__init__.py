"""Training: the Lightning wrapper around any neurocrane model, ``train(cfg)``, callbacks, schedules.

Importing this package imports PyTorch Lightning and Hydra; ``import neurocrane`` does not
(``crane.LightningModule`` and ``crane.train`` load it on first use).

Example:
    >>> from neurocrane.training import LightningModule, compose_config, train
    >>> export_dir, metrics = train(compose_config(["experiment=pretrain_synthetic"]))
"""

from neurocrane.training.callbacks import HFExportCallback, PipelineRecordCallback, tensorboard_logger
from neurocrane.training.lightning_module import LightningModule, MissingLossError
from neurocrane.training.optim import (
    OptimConfigError,
    WarmupCosine,
    build_optimizer,
    build_scheduler,
    warmup_cosine_schedule,
)
from neurocrane.training.trainer import (
    TrainingConfigError,
    TrainResult,
    check_compatibility,
    compose_config,
    find_pipeline_file,
    resolve_pipeline,
    train,
)

__all__ = [
    "HFExportCallback",
    "LightningModule",
    "MissingLossError",
    "OptimConfigError",
    "PipelineRecordCallback",
    "TrainResult",
    "TrainingConfigError",
    "WarmupCosine",
    "build_optimizer",
    "build_scheduler",
    "check_compatibility",
    "compose_config",
    "find_pipeline_file",
    "resolve_pipeline",
    "tensorboard_logger",
    "train",
    "warmup_cosine_schedule",
]
