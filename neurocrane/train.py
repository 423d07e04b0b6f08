"""``python -m neurocrane.train [hydra overrides]``: train from the packaged Hydra config tree.

The same as ``neurocrane train [overrides]``. Every Hydra command-line feature works:
``--help`` (groups and options), ``--cfg job`` (print the composed config), ``-m`` (sweeps),
``+key=value`` (add a key). Examples::

    python -m neurocrane.train experiment=pretrain_synthetic trainer=gpu
    python -m neurocrane.train experiment=finetune_synthetic model.pretrained_model_name_or_path=PATH
    python -m neurocrane.train experiment=pretrain_synthetic output_dir=outputs/run1 resume=true

Importing this module makes it callable (``neurocrane.train(cfg)`` is
:func:`neurocrane.training.train` whether or not this submodule was imported).
"""

from __future__ import annotations

import sys
import types
from collections.abc import Sequence
from typing import Any

__all__ = ["main"]

_PROG = "neurocrane train"


def _run(cfg: Any) -> None:
    from hydra.core.hydra_config import HydraConfig

    from neurocrane.errors import NeuroCraneError
    from neurocrane.training import train

    if _ORIGINAL_ARGV:
        # Lightning's DDP launcher re-runs sys.argv for the other ranks: give it the real command.
        sys.argv[:] = _ORIGINAL_ARGV
    if HydraConfig.initialized():
        cfg.output_dir = HydraConfig.get().runtime.output_dir
    try:
        result = train(cfg)
    except NeuroCraneError as err:
        print(f"{_PROG}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    if result.global_rank != 0:
        return
    print(f"exported model: {result.export_dir}")
    print("final metrics: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(result.metrics.items())))


_ORIGINAL_ARGV: list[str] = []


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run training with Hydra overrides ``argv`` (default: ``sys.argv[1:]``).

    Args:
        argv: Overrides and Hydra flags, e.g. ``["experiment=pretrain_synthetic", "trainer.max_epochs=1"]``.
        prog: Program name shown by ``--help`` (kept in ``sys.argv[0]`` for DDP re-launches).

    Returns:
        0 on success (errors exit with a non-zero status and a message).
    """
    import hydra

    global _ORIGINAL_ARGV
    _ORIGINAL_ARGV = list(sys.argv)
    args = list(sys.argv[1:] if argv is None else argv)
    entry = hydra.main(version_base="1.3", config_path="pkg://neurocrane.conf", config_name="train")(_run)
    saved = list(sys.argv)
    sys.argv[:] = [prog or sys.argv[0], *args]
    try:
        entry()
    finally:
        sys.argv[:] = saved
    return 0


class _CallableModule(types.ModuleType):
    """Lets ``neurocrane.train(cfg)`` keep meaning the function once this module is imported."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from neurocrane.training import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    main()
