"""The train stage on Ray Train: data-parallel workers around the same Trainer code.

`executor: {type: ray, train_workers: N}` runs `fit_classifier` in N workers of a Ray Train
`TorchTrainer` (V2 API). Ray sets up `torch.distributed` (gloo on CPU, NCCL on GPU) and the
Hugging Face Trainer sees a distributed run: each worker trains on its shard of every batch
and gradients are all-reduced. `RayTrainReportCallback` hands every checkpoint the Trainer
saves to Ray, which keeps it under `storage_path` (a folder or URI every node reaches); when a
worker dies, Ray restarts the group (`FailureConfig(max_failures)`) and each worker resumes
from the last reported checkpoint. When training ends, rank 0 reports one last checkpoint that
holds the fitted model folder and what the train stage writes beside it, so the driver writes
the same artifact a single-process train stage writes.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lmforge.config import ExecutorConfig, TrainConfig

FINAL = "lmforge_final"  # the folder inside rank 0's last checkpoint
FACTS = "facts.json"


@dataclass
class RayFit:
    """What the train stage needs of a fit done on Ray (the `FitResult` fields it reads)."""

    model_dir: Path  # the fitted model folder, copied from the final checkpoint
    log_history: list[dict[str, Any]]
    train_loss: float
    steps: int
    epoch: float
    best_metric: float | None
    best_checkpoint: str
    restarts: list[dict[str, Any]]
    trainable_parameters: int
    settings: dict[str, Any]  # the resolved settings (global batch), with the per-worker batch
    decisions: list[Any]  # the recipe's Decisions, made on the driver
    device: str
    precision: str
    workers: int
    resumed: bool = False  # a worker group Ray restarted resumed from its last checkpoint
    extra: dict[str, Any] = field(default_factory=dict)


def _train_loop(config: dict[str, Any]) -> None:
    """One worker: the ordinary fit, resumed from Ray's checkpoint after a failure."""
    import os

    import ray.train
    import torch
    from ray.train.huggingface.transformers import RayTrainReportCallback, prepare_trainer

    from lmforge.config import TrainConfig
    from lmforge.training.fit import fit_classifier, save_fitted
    from lmforge.training.stage_support import precision_name

    torch.set_num_threads(max(1, int(config["threads"])))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    context = ray.train.get_context()
    rank = context.get_world_rank()
    cfg = TrainConfig.model_validate(config["train"])
    with tempfile.TemporaryDirectory(prefix="lmforge-ray-train-") as scratch:
        resume: Path | None = None
        restored = ray.train.get_checkpoint()
        if restored is not None:
            # A restarted group: every worker starts from the checkpoint Ray kept.
            local = Path(scratch) / "restored"
            shutil.copytree(restored.to_directory(), local)
            resume = local / RayTrainReportCallback.CHECKPOINT_NAME
        fit = fit_classifier(
            config["reference"],
            Path(config["base_dir"]),
            config["labels"],
            pd.DataFrame(config["train_rows"]),
            pd.DataFrame(config["validation_rows"]),
            cfg,
            Path(scratch) / "checkpoints",
            callbacks=lambda: [RayTrainReportCallback()],
            prepare=prepare_trainer,
            resume=resume,
        )
        final = Path(scratch) / "final"
        checkpoint = None
        if rank == 0:
            save_fitted(fit, final / FINAL / "model")
            state = fit.trainer.state
            facts = {
                "log_history": state.log_history,
                "train_loss": fit.train_loss,
                "steps": int(state.global_step),
                "epoch": float(state.epoch or 0),
                "best_metric": fit.best_metric,
                "best_checkpoint": Path(state.best_model_checkpoint or "").name,
                "restarts": fit.restarts,
                "trainable_parameters": fit.trainable_parameters,
                "device": str(fit.trainer.args.device),
                "precision": precision_name(fit.trainer.args),
                "workers": context.get_world_size(),
                "resumed": resume is not None,
            }
            (final / FINAL / FACTS).write_text(json.dumps(facts, default=str))
            checkpoint = ray.train.Checkpoint.from_directory(str(final))
        # Every worker reports (Ray Train V2 reports are collective); rank 0 with the model.
        ray.train.report({"lmforge_final": 1}, checkpoint=checkpoint)


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
) -> RayFit:
    """Fit on `executor.train_workers` Ray Train workers; the model folder lands in `out_model`."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from lmforge.errors import ConfigError
    from lmforge.training.fit import classification_settings
    from lmforge.tuning.executors import connect_ray

    # The recipe resolves once, here, on every train row; the workers get concrete settings.
    # The global batch stays the recipe's (each worker takes its share), so the learning rate
    # and step count the recipe chose for that batch still hold.
    settings, decisions = classification_settings(reference, base_dir, cfg, train, labels)[2:]
    workers = executor.train_workers
    per_worker = max(1, settings.batch_size // workers)
    worker_cfg = TrainConfig.model_validate(
        {
            **{k: v for k, v in settings.model_dump(mode="json").items() if k in TrainConfig.model_fields},
            "batch_size": per_worker,
        }
    )
    started_here = connect_ray(executor)
    try:
        cpus = float(ray.cluster_resources().get("CPU", 0))
        needed = executor.train_workers * executor.cpus_per_worker
        if needed > cpus:
            raise ConfigError(
                [
                    f"executor.train_workers: {workers} workers x {executor.cpus_per_worker:g} "
                    f"CPU need {needed:g} CPU; the Ray cluster has {cpus:g}"
                ]
            )
        trainer = TorchTrainer(
            _train_loop,
            train_loop_config={
                "reference": reference,
                "base_dir": str(base_dir),
                "labels": labels,
                "train_rows": train[["text", "label"]].to_dict("list"),
                "validation_rows": validation[["text", "label"]].to_dict("list"),
                "train": worker_cfg.model_dump(mode="json"),
                "threads": executor.cpus_per_worker,
            },
            scaling_config=ScalingConfig(
                num_workers=executor.train_workers,
                use_gpu=executor.use_gpu,
                resources_per_worker={"CPU": executor.cpus_per_worker},
            ),
            run_config=RunConfig(
                name=name,
                storage_path=executor.storage_path or str(storage),
                failure_config=FailureConfig(max_failures=executor.max_failures),
                checkpoint_config=CheckpointConfig(num_to_keep=3),
            ),
        )
        result = trainer.fit()
        if result.checkpoint is None:
            raise RuntimeError("Ray Train ended without the final checkpoint of rank 0")
        with result.checkpoint.as_directory() as folder:
            final = Path(folder) / FINAL
            facts = json.loads((final / FACTS).read_text())
            if out_model.exists():
                shutil.rmtree(out_model)
            shutil.copytree(final / "model", out_model)
    finally:
        if started_here:
            ray.shutdown()
    return RayFit(
        model_dir=out_model,
        log_history=facts["log_history"],
        train_loss=float(facts["train_loss"]),
        steps=int(facts["steps"]),
        epoch=float(facts["epoch"]),
        best_metric=facts["best_metric"],
        best_checkpoint=facts["best_checkpoint"],
        restarts=facts["restarts"],
        trainable_parameters=int(facts["trainable_parameters"]),
        settings={
            **settings.model_dump(mode="json"),
            "train_workers": workers,
            "batch_size_per_worker": per_worker,
        },
        decisions=decisions,
        device=facts["device"],
        precision=facts["precision"],
        workers=int(facts["workers"]),
        resumed=bool(facts.get("resumed")),
    )
