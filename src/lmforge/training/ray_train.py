"""The train stage on Ray Train: data-parallel workers around the same Trainer code.

`executor: {type: ray, train_workers: N}` runs `fit_classifier` in N workers of a Ray Train
`TorchTrainer` (V2 API). Ray sets up `torch.distributed` (gloo on CPU, NCCL on GPU) and the
Hugging Face Trainer sees a distributed run: each worker trains on its shard of every batch
and gradients are all-reduced. `RayTrainReportCallback` hands every checkpoint the Trainer
saves to Ray, which keeps it under `storage_path` (a folder or URI every node reaches); when a
worker dies, Ray restarts the group (`FailureConfig(max_failures)`) and each worker resumes
from the last reported checkpoint. When training ends, rank 0 reports one last checkpoint that
holds the fitted model folder and what the train stage writes beside it, so the driver writes
the same artifact a single-process train stage writes. The plumbing the causal tasks share
(`ray_causal.py`) is in `ray_run.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from lmforge.config import ExecutorConfig, TrainConfig
from lmforge.training.ray_run import RayFit, fit_on_ray, ray_fit, worker_batch


def _train_loop(config: dict[str, Any]) -> None:
    """One worker: the ordinary fit, resumed from Ray's checkpoint after a failure."""
    from ray.train.huggingface.transformers import prepare_trainer

    from lmforge.config import TrainConfig
    from lmforge.training.fit import fit_classifier
    from lmforge.training.ray_run import report_final, worker_start

    with worker_start(config) as start:
        rows = start.payload
        fit = fit_classifier(
            config["reference"],
            Path(config["base_dir"]),
            config["labels"],
            pd.DataFrame(rows["train"]),
            pd.DataFrame(rows["validation"]),
            TrainConfig.model_validate(config["train"]),
            start.scratch / "checkpoints",
            callbacks=start.callbacks,
            prepare=prepare_trainer,
            resume=start.resume,
        )
        report_final(fit, start)


def fit_classifier_on_ray(
    reference: str,
    base_dir: Path,
    labels: list[str],
    train: pd.DataFrame,
    validation: pd.DataFrame,
    cfg: TrainConfig,
    executor: ExecutorConfig,
    storage: Path,
    name: str,
    out_model: Path,
    *,
    tensorboard: bool = False,
    clock: dict[str, Any] | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> RayFit:
    """Fit on `executor.train_workers` Ray Train workers; the model folder lands in `out_model`
    (TensorBoard logs in `tensorboard/` beside it with `tensorboard`). `clock`: under a budget,
    the workers' clock schedule (`ray_budget.plan_on_ray`)."""
    from lmforge.training.fit import classification_settings

    # The recipe resolves once, here, on every train row; the workers get concrete settings.
    # The global batch stays the recipe's (each worker takes its share), so the learning rate
    # and step count the recipe chose for that batch still hold.
    settings, decisions = classification_settings(reference, base_dir, cfg, train, labels)[2:]
    workers = executor.train_workers
    per_worker = worker_batch(settings.batch_size, workers)
    worker_cfg = TrainConfig.model_validate(
        {
            **{k: v for k, v in settings.model_dump(mode="json").items() if k in TrainConfig.model_fields},
            "batch_size": per_worker,
        }
    )
    facts = fit_on_ray(
        _train_loop,
        {
            "reference": reference,
            "base_dir": str(base_dir),
            "labels": labels,
            "train": worker_cfg.model_dump(mode="json"),
            "tensorboard": tensorboard,
            "clock": clock,
        },
        {
            "train": train[["text", "label"]].to_dict("list"),
            "validation": validation[["text", "label"]].to_dict("list"),
        },
        executor,
        storage,
        name,
        out_model,
        progress,
    )
    return ray_fit(
        facts,
        out_model,
        {**settings.model_dump(mode="json"), "train_workers": workers, "batch_size_per_worker": per_worker},
        decisions,
    )
