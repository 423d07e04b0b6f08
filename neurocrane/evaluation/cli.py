"""``neurocrane evaluate MODEL_PATH_OR_REPO [hydra overrides]``: evaluate a saved model.

Configured by the packaged Hydra tree (``conf/evaluate.yaml`` and ``conf/benchmark/``), like
training. Writes ``results.json``, ``results.md`` and (with matplotlib) ``results.png`` to
``output_dir`` and prints the results table; a progress bar counts the folds.

Example:
    $ neurocrane evaluate runs/model benchmark=synthetic_events protocols=[linear_probe,finetune]
    $ neurocrane evaluate lab-a/seeg-foundation-v1 baselines=[pipelines/neuroprobe_linear.yaml] benchmark.k=3
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]

_PROG = "neurocrane evaluate"


def main(argv: Sequence[str] | None = None) -> int:
    """Run an evaluation from the command line.

    Args:
        argv: ``[MODEL_PATH_OR_REPO] [key=value ...]`` (default: ``sys.argv[1:]``);
            ``--cfg`` prints the composed config and exits.

    Returns:
        0 on success, 2 on a configuration or data error (with a message on stderr).
    """
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from neurocrane.errors import NeuroCraneError

    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    show_cfg = "--cfg" in args
    args = [a for a in args if a != "--cfg"]
    overrides = []
    for a in args:
        if "=" in a or a.startswith(("+", "~")):
            overrides.append(a)
        elif not any(o.startswith("model_path=") for o in overrides):
            overrides.append(f"model_path={a}")
        else:
            print(f"{_PROG}: error: unexpected argument {a!r}; give one model and key=value overrides.", file=sys.stderr)
            return 2
    from hydra.errors import HydraException

    try:
        with initialize_config_module(config_module="neurocrane.conf", version_base="1.3"):
            cfg = compose(config_name="evaluate", overrides=overrides)
    except HydraException as err:
        print(f"{_PROG}: error in the configuration: {err}", file=sys.stderr)
        return 2
    if show_cfg:
        print(OmegaConf.to_yaml(cfg))
        return 0
    from neurocrane.evaluation.evaluator import evaluate

    try:
        results = evaluate(
            cfg.model_path, [cfg.benchmark], protocols=list(cfg.protocols), baselines=list(cfg.baselines),
            model_name=cfg.model_name, cache_dir=cfg.cache_dir, progress=bool(cfg.progress),
        )
    except (NeuroCraneError, OSError) as err:
        print(f"{_PROG}: error: {err}", file=sys.stderr)
        return 2
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    results.save_json(out / "results.json")
    results.save_markdown(out / "results.md")
    try:
        results.plot(out / "results.png")
    except ImportError:
        pass
    print(results)
    print(f"\nwritten to {out}/ (results.json, results.md, results.png)")
    return 0
