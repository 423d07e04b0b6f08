"""``evaluate(model, benchmarks, protocols=...)``: run several protocols on several benchmarks,
with no-model baselines beside the model, and collect an :class:`EvaluationResults`.

Benchmarks can be given as objects or as config dicts naming a registered benchmark
(``{"kind": "synthetic_events", "n_subjects": 2}``); the registry is how the CLI and Hydra
configs build them, without import paths in any config.

Example:
    >>> results = evaluate("runs/model", [SyntheticEventBenchmark()], protocols=["linear_probe", "finetune"],
    ...                    baselines=["pipelines/neuroprobe_linear.yaml"])
    >>> print(results)
    >>> results.save_markdown("results.md")
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from neurocrane.evaluation.benchmark import Benchmark, BenchmarkError
from neurocrane.evaluation.cache import ResultCache
from neurocrane.evaluation.protocols import PipelineBaseline, check_protocols
from neurocrane.evaluation.results import EvaluationResults
from neurocrane.pipeline import Pipeline

__all__ = ["BENCHMARKS", "build_benchmark", "evaluate", "load_model", "register_benchmark"]

#: Registered benchmark factories, by the ``kind`` configs name them with.
BENCHMARKS: dict[str, Callable[..., Benchmark]] = {}


def register_benchmark(kind: str, factory: Callable[..., Benchmark]) -> None:
    """Make a benchmark buildable from a config: ``{"kind": kind, **kwargs}`` → ``factory(**kwargs)``.

    Example:
        >>> register_benchmark("my_task", MyTaskBenchmark)
    """
    BENCHMARKS[str(kind)] = factory


def _register_builtins() -> None:
    from neurocrane.evaluation.synthetic_benchmark import SyntheticEventBenchmark

    BENCHMARKS.setdefault("synthetic_events", SyntheticEventBenchmark)


def build_benchmark(config: Benchmark | Mapping[str, Any]) -> Benchmark:
    """A benchmark from a config dict ``{"kind": ..., **arguments}`` (or the benchmark itself).

    Raises:
        BenchmarkError: no ``kind``, an unknown kind (the known ones are listed), an import
            path (``_target_``) or arguments the benchmark does not take.
    """
    if isinstance(config, Benchmark):
        return config
    if not isinstance(config, Mapping):
        raise BenchmarkError(f"a benchmark is a Benchmark or a config dict with 'kind'; got {type(config).__name__}.")
    _register_builtins()
    cfg = _plain(config)
    if "_target_" in cfg:
        raise BenchmarkError("benchmark configs name a registered 'kind', never an import path ('_target_').")
    kind = cfg.pop("kind", None)
    if kind not in BENCHMARKS:
        raise BenchmarkError(f"unknown benchmark kind {kind!r}; registered: {sorted(BENCHMARKS)} (see register_benchmark).")
    try:
        return BENCHMARKS[kind](**cfg)
    except TypeError as err:
        raise BenchmarkError(f"bad arguments for benchmark {kind!r}: {err}") from err


def _plain(config: Mapping[str, Any]) -> dict[str, Any]:
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(config, DictConfig):
            return dict(OmegaConf.to_container(config, resolve=True))
    except ImportError:  # pragma: no cover - hydra-core is a dependency
        pass
    return copy.deepcopy(dict(config))


def load_model(path_or_repo: str | Path, **kwargs: Any) -> Any:
    """Load a saved neurocrane model (folder or Hub repo id) with its pipeline."""
    from neurocrane.models import BaseModel

    return BaseModel.from_pretrained(str(path_or_repo), **kwargs)


def _as_baseline(item: Any) -> PipelineBaseline:
    if isinstance(item, PipelineBaseline):
        return item
    if isinstance(item, Pipeline | str | Path):
        return PipelineBaseline(item)
    raise BenchmarkError(f"a baseline is a Pipeline, a pipeline file or a PipelineBaseline; got {type(item).__name__}.")


def evaluate(
    model: Any,
    benchmarks: Benchmark | Mapping[str, Any] | Sequence[Benchmark | Mapping[str, Any]],
    protocols: str | Sequence[str] = ("linear_probe",),
    *,
    baselines: Sequence[Any] = (),
    model_name: str | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> EvaluationResults:
    """Evaluate a model (and no-model baselines) on benchmarks under several protocols.

    Args:
        model: A :class:`~neurocrane.models.BaseModel`, a saved model folder / Hub repo id, or
            ``None`` to run only the baselines. It is never modified: fine-tuning works on copies.
        benchmarks: Benchmarks or config dicts (``{"kind": "synthetic_events", ...}``).
        protocols: Any of ``"zero_shot"``, ``"linear_probe"``, ``"finetune"``. A protocol a
            benchmark does not support is skipped and listed in ``results.skipped``.
        baselines: Pipelines (objects or YAML/JSON files) scored with the linear probe on
            each benchmark, so every table shows what preprocessing alone achieves.
        model_name: Label of the model in results (default: the path, or the model's name).
        cache_dir: Reuse results of finished folds stored there (keyed by weights hash,
            pipeline fingerprint, benchmark, split and protocol) and store new ones.
        progress: Show a progress bar (tqdm) over the folds.

    Returns:
        An :class:`EvaluationResults`.

    Raises:
        BenchmarkError: before any training, when the model cannot take a benchmark's data,
            a split is empty, or a configuration is invalid.
    """
    protocols = check_protocols(protocols)
    if isinstance(benchmarks, Benchmark | Mapping):
        benchmarks = [benchmarks]
    benches = [build_benchmark(b) for b in benchmarks]
    if not benches:
        raise BenchmarkError("evaluate needs at least one benchmark.")
    names = [b.name for b in benches]
    if len(set(names)) != len(names):
        raise BenchmarkError(f"benchmark names must be unique in one evaluation; got {names}.")
    if isinstance(model, str | Path):
        model_name = model_name or str(model)
        model = load_model(model)
    runs: list[tuple[Any, str, Benchmark, str]] = []
    skipped: list[tuple[str, str, str, str]] = []
    if model is not None:
        label = model_name or _label(model)
        for bench in benches:
            for protocol in protocols:
                if protocol in bench.supported_protocols:
                    runs.append((model, label, bench, protocol))
                else:
                    skipped.append((label, bench.name, protocol, f"not supported (supports {list(bench.supported_protocols)})"))
    for item in baselines:
        base = _as_baseline(item)
        for bench in benches:
            if "linear_probe" in bench.supported_protocols:
                runs.append((base, base.name, bench, "linear_probe"))
            else:
                skipped.append((base.name, bench.name, "linear_probe", "the benchmark has no linear probe"))
    if not runs:
        raise BenchmarkError(f"nothing to run: no model or baseline fits the protocols {list(protocols)}; skipped: {skipped}.")
    # every check first, so a mismatch fails before any (long) training starts
    for m, _, bench, protocol in runs:
        bench.check_model(m, protocol)
    cache = ResultCache(cache_dir) if cache_dir is not None else None
    bar = _progress_bar(sum(len(b.split_names()) for _, _, b, _ in runs)) if progress else None
    results = EvaluationResults(skipped=skipped)
    try:
        for m, label, bench, protocol in runs:
            tick = None
            if bar is not None:
                def tick(msg: str, bar: Any = bar) -> None:
                    bar.set_description(msg)
                    bar.update(1)
            results.extend(bench.run(m, protocol, model_name=label, cache=cache, progress=tick))
    finally:
        if bar is not None:
            bar.close()
    return results


def _label(model: Any) -> str:
    from neurocrane.evaluation.benchmark import _model_label

    return _model_label(model)


def _progress_bar(total: int) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with huggingface_hub
        return None
    return tqdm(total=total, unit="fold", desc="evaluate")
