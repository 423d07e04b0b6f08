"""Optimizers and learning-rate schedules from training configs.

An optimizer or scheduler is given either as a Hydra-style dict naming a class or function by
``_target_`` (resolved with :func:`hydra.utils.instantiate` as a partial, then called with the
parameters or the optimizer) or as a plain callable. The caller's dict is never modified, so
building twice gives two equal objects.

``_target_`` resolution imports code. It is meant for *local* training configs that you wrote;
nothing read from a downloaded model (``config.json``) ever goes through this module.

Example:
    >>> import torch
    >>> params = [torch.nn.Parameter(torch.zeros(3))]
    >>> opt = build_optimizer(params, {"_target_": "torch.optim.AdamW", "lr": 1e-3})
    >>> sched = build_scheduler(opt, {"_target_": "neurocrane.training.optim.warmup_cosine_schedule",
    ...                               "warmup_steps": 10}, total_steps=100)
    >>> sched["interval"]
    'step'
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR

from neurocrane.errors import NeuroCraneError

__all__ = [
    "OptimConfigError",
    "WarmupCosine",
    "build_optimizer",
    "build_scheduler",
    "warmup_cosine_schedule",
]

#: Keys of a scheduler config that are Lightning's, not the scheduler's.
LIGHTNING_SCHEDULER_KEYS = ("interval", "frequency", "monitor", "strict", "name")

OptimizerSpec = Mapping[str, Any] | Callable[..., Any]


class OptimConfigError(NeuroCraneError, ValueError):
    """An optimizer or scheduler config cannot be turned into an object."""


def _plain(config: Any) -> Any:
    """A deep copy of ``config`` made of plain dicts/lists (an OmegaConf node is resolved)."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(config, DictConfig | ListConfig):
            return OmegaConf.to_container(config, resolve=True)
    except ImportError:  # pragma: no cover - hydra-core is a dependency
        pass
    return copy.deepcopy(dict(config)) if isinstance(config, Mapping) else config


def _partial(config: Mapping[str, Any], what: str) -> Callable[..., Any]:
    if "_target_" not in config:
        raise OptimConfigError(
            f"the {what} config {dict(config)!r} has no '_target_'; name the class or function to build, e.g. "
            "{'_target_': 'torch.optim.AdamW', 'lr': 1e-3}, or pass a callable."
        )
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(config, _partial_=True, _convert_="all")
    except InstantiationException as err:
        raise OptimConfigError(f"cannot build the {what} from {dict(config)!r}: {err}") from err


def build_optimizer(params: Any, config: OptimizerSpec | None) -> torch.optim.Optimizer:
    """Build an optimizer for ``params`` from a config dict or a callable.

    Args:
        params: Parameters (or parameter groups) to optimize.
        config: ``{"_target_": "torch.optim.AdamW", "lr": ...}`` (a dict or OmegaConf node), a
            callable ``f(params) -> Optimizer`` (e.g. ``functools.partial(torch.optim.SGD, lr=0.1)``),
            or ``None`` for AdamW with lr 1e-3.

    Returns:
        The optimizer.

    Raises:
        OptimConfigError: no ``_target_``, an unimportable target, bad arguments, or a result
            that is not a ``torch.optim.Optimizer``.

    Example:
        >>> build_optimizer(model.parameters(), {"_target_": "torch.optim.SGD", "lr": 0.1})
    """
    if config is None:
        factory: Callable[..., Any] = lambda p: torch.optim.AdamW(p, lr=1e-3)  # noqa: E731
    elif isinstance(config, Mapping):
        factory = _partial(_plain(config), "optimizer")
    elif callable(config):
        factory = config
    else:
        raise OptimConfigError(f"optimizer config must be a dict with '_target_' or a callable; got {type(config).__name__}.")
    try:
        optimizer = factory(params)
    except TypeError as err:
        raise OptimConfigError(f"cannot build the optimizer: {err}. Check the optimizer's argument names.") from err
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise OptimConfigError(f"the optimizer config built a {type(optimizer).__name__}, not a torch.optim.Optimizer.")
    return optimizer


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    config: OptimizerSpec | None,
    *,
    total_steps: int | None = None,
) -> dict[str, Any] | None:
    """Build a learning-rate scheduler and its Lightning settings.

    Args:
        optimizer: The optimizer to schedule.
        config: A dict with ``_target_`` plus the scheduler's arguments and, optionally,
            Lightning's keys ``interval`` (``"step"``/``"epoch"``), ``frequency``, ``monitor``,
            ``strict``, ``name``; or a callable ``f(optimizer)`` returning a scheduler (or a
            Lightning scheduler dict); or ``None`` for no scheduler.
        total_steps: Number of optimizer steps in the whole run. Passed to a scheduler that has
            a ``total_steps`` argument the config leaves out (or sets to null), such as
            :func:`warmup_cosine_schedule`; such a scheduler then steps every batch by default.

    Returns:
        ``None`` or a Lightning ``lr_scheduler`` dict (``{"scheduler": ..., "interval": ...}``).

    Raises:
        OptimConfigError: as :func:`build_optimizer`, or a scheduler needing ``total_steps``
            when it is unknown.
    """
    if config is None:
        return None
    settings: dict[str, Any] = {}
    if isinstance(config, Mapping):
        plain = _plain(config)
        settings = {k: plain.pop(k) for k in LIGHTNING_SCHEDULER_KEYS if k in plain}
        factory = _partial(plain, "scheduler")
    elif callable(config):
        factory = config
    else:
        raise OptimConfigError(f"scheduler config must be a dict with '_target_' or a callable; got {type(config).__name__}.")
    kwargs: dict[str, Any] = {}
    if _wants_total_steps(factory):
        if total_steps is None or total_steps <= 0 or not math.isfinite(total_steps):
            raise OptimConfigError(
                "the scheduler needs total_steps (the number of optimizer steps of the run) and it is unknown; "
                "set trainer.max_steps, or give total_steps in the scheduler config."
            )
        kwargs["total_steps"] = int(total_steps)
        settings.setdefault("interval", "step")
    try:
        scheduler = factory(optimizer, **kwargs)
    except TypeError as err:
        raise OptimConfigError(f"cannot build the scheduler: {err}. Check the scheduler's argument names.") from err
    if isinstance(scheduler, Mapping):
        return {**settings, **scheduler}
    return {"scheduler": scheduler, **settings}


def _wants_total_steps(factory: Callable[..., Any]) -> bool:
    keywords = getattr(factory, "keywords", None) or {}
    if keywords.get("total_steps") is not None:
        return False
    try:
        return "total_steps" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


class WarmupCosine:
    """Learning-rate factor: linear warm-up to 1, then a cosine decay to ``min_lr_ratio``.

    A plain object (not a closure) so ``LambdaLR.state_dict()`` saves it and a resumed run
    continues the same curve.

    Args:
        warmup_steps: Steps of linear warm-up (factor ``(step + 1) / warmup_steps``).
        total_steps: Total optimizer steps; the cosine reaches ``min_lr_ratio`` there.
        min_lr_ratio: Final factor, in ``[0, 1]``.
    """

    def __init__(self, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0):
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.min_lr_ratio = float(min_lr_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine_schedule(
    optimizer: torch.optim.Optimizer,
    total_steps: int | None = None,
    warmup_steps: int = 0,
    warmup_ratio: float | None = None,
    min_lr_ratio: float = 0.0,
) -> LambdaLR:
    """Linear warm-up followed by cosine decay, as a ``LambdaLR`` stepped every batch.

    Args:
        optimizer: The optimizer whose learning rates (the peak values) are scaled.
        total_steps: Total optimizer steps of the run (filled in by the LightningModule from
            the trainer when left out).
        warmup_steps: Warm-up steps.
        warmup_ratio: Warm-up as a fraction of ``total_steps`` (overrides ``warmup_steps``).
        min_lr_ratio: Final learning rate as a fraction of the peak.

    Returns:
        The scheduler.

    Raises:
        OptimConfigError: non-positive ``total_steps``, negative warm-up, a ratio outside [0, 1].

    Example:
        >>> sched = warmup_cosine_schedule(opt, total_steps=1000, warmup_ratio=0.1)
    """
    if total_steps is None or int(total_steps) < 1:
        raise OptimConfigError(f"warmup_cosine_schedule: total_steps must be a positive int; got {total_steps!r}.")
    if warmup_ratio is not None:
        if not 0.0 <= float(warmup_ratio) <= 1.0:
            raise OptimConfigError(f"warmup_cosine_schedule: warmup_ratio must be in [0, 1]; got {warmup_ratio!r}.")
        warmup_steps = int(round(float(warmup_ratio) * int(total_steps)))
    if int(warmup_steps) < 0:
        raise OptimConfigError(f"warmup_cosine_schedule: warmup_steps must be >= 0; got {warmup_steps!r}.")
    if not 0.0 <= float(min_lr_ratio) <= 1.0:
        raise OptimConfigError(f"warmup_cosine_schedule: min_lr_ratio must be in [0, 1]; got {min_lr_ratio!r}.")
    return LambdaLR(optimizer, WarmupCosine(int(warmup_steps), int(total_steps), float(min_lr_ratio)))
