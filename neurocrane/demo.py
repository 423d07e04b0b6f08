"""`make demo`: the four-lab story of neurocrane on the built-in synthetic SEEG corpus.

1. **Lab A** generates a synthetic SEEG corpus, pretrains the reference SEEGTransformer
   (masked reconstruction) with the pipeline ``pipelines/seeg_spectral.yaml`` and shares the
   exported Hugging Face model (weights, ``config.json`` with the pipeline, model card) as
   ``lab-a/seeg-foundation-v1`` in a local Hub cache.
2. **Lab B**, in a fresh process with the Hub offline, loads the model by repo id, prints its
   pipeline and extracts features from raw data of a patient with a different montage.
3. **Lab C** fine-tunes the model to detect the synthetic events and shares it as
   ``lab-c/seeg-event-detector``: same pipeline fingerprint, new weights.
4. **Lab D** benchmarks the shared model on the synthetic event benchmark (linear probe and
   fine-tuning) beside a no-model baseline, and writes JSON / Markdown / PNG results.

Run:  python -m neurocrane.demo [--size small|large] [--out demo_output]
      (``make demo DEMO_ARGS="--size large"`` for a longer, better run)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PIPELINE_FILE = REPO_ROOT / "pipelines" / "seeg_spectral.yaml"
LAB_A_REPO = "lab-a/seeg-foundation-v1"
LAB_C_REPO = "lab-c/seeg-event-detector"


@dataclass(frozen=True)
class Size:
    """How big a demo run is: corpus, training epochs, benchmark."""

    n_subjects: int
    duration_s: float
    pretrain_epochs: int
    finetune_epochs: int
    bench_subjects: int
    bench_duration_s: float


SIZES = {
    "small": Size(n_subjects=3, duration_s=60.0, pretrain_epochs=3, finetune_epochs=8, bench_subjects=2, bench_duration_s=120.0),
    "large": Size(n_subjects=6, duration_s=180.0, pretrain_epochs=20, finetune_epochs=10, bench_subjects=4, bench_duration_s=180.0),
}


def banner(text: str) -> None:
    print(f"\n{'=' * 88}\n{text}\n{'=' * 88}", flush=True)


def lab_a(out: Path, size: Size) -> tuple[Path, str]:
    """Pretrain on the synthetic corpus and share the export in the local Hub cache."""
    import torch

    from neurocrane import Pipeline, SignalSpec
    from neurocrane.data.synthetic import make_synthetic_recording
    from neurocrane.training import compose_config, train
    from neurocrane.utils.hub import save_to_hub_cache

    banner("Lab A: pretrain the reference SEEGTransformer with a declared pipeline, then share it")
    pipeline = Pipeline.load(PIPELINE_FILE)
    print(f"pipeline file: {PIPELINE_FILE.relative_to(REPO_ROOT)}")
    print(pipeline.describe(SignalSpec(shape=(None, None, 1024), sampling_rate=512.0)))
    cfg = compose_config(
        [
            "experiment=pretrain_synthetic",
            "pipeline=file",
            f"pipeline.file={PIPELINE_FILE}",
            f"output_dir={out / 'lab_a'}",
            f"paths.data_dir={out / 'data'}",
            f"data.corpus.n_subjects={size.n_subjects}",
            f"data.corpus.duration_s={size.duration_s}",
            f"trainer.max_epochs={size.pretrain_epochs}",
        ]
    )
    result = train(cfg)
    print(f"pretraining metrics: {json.dumps({k: round(v, 4) for k, v in result.metrics.items()})}")
    snapshot = save_to_hub_cache(result.export_dir, LAB_A_REPO)
    print(f"exported Hugging Face model: {result.export_dir}")
    reloaded = Pipeline.from_pretrained(result.export_dir)
    sample = make_synthetic_recording(subject=1, duration_s=4.0, sampling_rate=512.0, seed=5, nan_gap_probability=0.0)
    x = torch.from_numpy(sample.read(0, 1024))[None]
    same = torch.equal(pipeline(x, sampling_rate=512.0, channel_names=sample.channel_names),
                       reloaded(x, sampling_rate=512.0, channel_names=sample.channel_names))
    print(f"pipeline read back from the export's config.json: fingerprint {reloaded.fingerprint}, "
          f"identical after reload: {'yes' if same and reloaded == pipeline else 'NO'}")
    if not (same and reloaded == pipeline):
        raise SystemExit("the exported pipeline differs from the declared one; this is a bug")
    print(f"shared as '{LAB_A_REPO}' in the local Hub cache: {snapshot}")
    return result.export_dir, result.pipeline_fingerprint


def lab_b() -> int:
    """Runs in a fresh process: load by repo id offline, describe, extract features."""
    import torch

    import neurocrane as crane
    from neurocrane.data.synthetic import make_synthetic_recording

    banner(f"Lab B (new process, HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE')}): load '{LAB_A_REPO}' by repo id")
    model = crane.BaseModel.from_pretrained(LAB_A_REPO)
    print(f"loaded {type(model).__name__} ({sum(p.numel() for p in model.parameters()):,} parameters)")
    print(model.preprocess_pipeline.describe(model.input_spec))
    # Lab B's own patient: another montage (3 shafts of 10 contacts), raw and continuous
    rec = make_synthetic_recording(subject=11, n_shafts=3, contacts_per_shaft=10, duration_s=20.0,
                                   sampling_rate=model.config.sampling_rate, seed=42, nan_gap_probability=0.0)
    n = int(2.0 * rec.sampling_rate)
    windows = torch.stack([torch.from_numpy(rec.read(i * n, (i + 1) * n)) for i in range(8)])
    print(f"\nLab B's raw data: {windows.shape[0]} windows x {rec.n_channels} channels "
          f"({', '.join(rec.channel_names[:3])}, ...) x {windows.shape[-1]} samples at {rec.sampling_rate:g} Hz")
    with torch.no_grad():
        features = model.extract_features(windows, sampling_rate=rec.sampling_rate, channel_names=rec.channel_names)
    for name, value in features.items():
        print(f"  features[{name!r}]: {tuple(value.shape)}")
    print("the stored preprocessing ran automatically; Lab B wrote none of it")
    return 0


def lab_c(out: Path, size: Size, fingerprint: str) -> Path:
    """Fine-tune the shared model on the event task and share it again."""
    import neurocrane as crane
    from neurocrane.training import compose_config, train
    from neurocrane.utils.hub import save_to_hub_cache

    banner(f"Lab C: fine-tune '{LAB_A_REPO}' to detect the synthetic events (event vs rest), then share it")
    cfg = compose_config(
        [
            "experiment=finetune_synthetic",
            f"model.pretrained_model_name_or_path={LAB_A_REPO}",
            f"output_dir={out / 'lab_c'}",
            f"paths.data_dir={out / 'data'}",
            f"data.corpus.n_subjects={size.n_subjects}",
            f"data.corpus.duration_s={size.duration_s}",
            f"trainer.max_epochs={size.finetune_epochs}",
            "optimizer.lr=1e-3",
        ]
    )
    result = train(cfg)
    print(f"fine-tuning metrics: {json.dumps({k: round(v, 4) for k, v in result.metrics.items()})}")
    snapshot = save_to_hub_cache(result.export_dir, LAB_C_REPO)
    tuned = crane.BaseModel.from_pretrained(LAB_C_REPO)
    same = tuned.preprocess_pipeline.fingerprint == fingerprint
    print(f"shared as '{LAB_C_REPO}': {snapshot}")
    print(f"pipeline fingerprint: Lab A {fingerprint}, Lab C {tuned.preprocess_pipeline.fingerprint} "
          f"-> {'unchanged' if same else 'CHANGED'}")
    if not same:
        raise SystemExit("the fine-tuned model's pipeline changed; this is a bug")
    return result.export_dir


def lab_d(out: Path, size: Size) -> Path:
    """Benchmark the shared foundation model against the pipeline alone."""
    import neurocrane as crane
    from neurocrane.evaluation import SyntheticEventBenchmark, evaluate

    banner(f"Lab D: benchmark '{LAB_A_REPO}' on the synthetic event task (linear probe, fine-tune)")
    model = crane.BaseModel.from_pretrained(LAB_A_REPO)
    finetune = {"optimizer": {"_target_": "torch.optim.AdamW", "lr": 1e-3},
                "trainer": {"max_epochs": size.finetune_epochs}, "batch_size": 8}
    bench = SyntheticEventBenchmark(n_subjects=size.bench_subjects, duration_s=size.bench_duration_s, corpus_seed=7,
                                    finetune_config=finetune)
    results = evaluate(model, [bench], protocols=("linear_probe", "finetune"), baselines=[PIPELINE_FILE],
                       model_name=LAB_A_REPO, progress=True)
    print(results.table())
    folder = out / "lab_d"
    folder.mkdir(parents=True, exist_ok=True)
    results.save_json(folder / "results.json")
    results.save_markdown(folder / "results.md")
    try:
        results.plot(folder / "results.png")
    except ImportError:
        print("(matplotlib not installed: no figure)")
    auc = results.metrics(LAB_A_REPO, bench.name, "linear_probe").get("auc")
    print(f"linear-probe AUROC of the shared model: {auc:.3f} (chance {bench.chance_auc})")
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="small", help="small: a few minutes; large: longer, better")
    parser.add_argument("--out", type=Path, default=Path("demo_output"))
    parser.add_argument("--lab-b", action="store_true", help=argparse.SUPPRESS)  # the fresh-process part
    args = parser.parse_args(argv)
    out = args.out.resolve()
    # Every lab uses the local Hub cache and never the network.
    os.environ["HF_HUB_CACHE"] = str(out / "hf_cache")
    os.environ["HF_HUB_OFFLINE"] = "1"
    if args.lab_b:
        return lab_b()

    size = SIZES[args.size]
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    export_a, fingerprint = lab_a(out, size)
    subprocess.run([sys.executable, "-m", "neurocrane.demo", "--lab-b", "--out", str(out)], check=True, env=os.environ.copy())
    export_c = lab_c(out, size, fingerprint)
    results = lab_d(out, size)

    banner(f"Done in {time.perf_counter() - start:.0f} s. Artifacts:")
    rows = [
        ("synthetic corpus", out / "data" / "synthetic"),
        ("Lab A run (checkpoints, logs, pipeline record)", out / "lab_a"),
        ("Lab A model (safetensors + config.json + README)", export_a),
        ("Lab C fine-tuned model", export_c),
        ("local Hugging Face Hub cache (both repo ids)", out / "hf_cache"),
        ("Lab D results (JSON, Markdown, PNG)", results),
    ]
    for what, where in rows:
        print(f"  {what:<50} {where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
