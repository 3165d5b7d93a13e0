"""train: fine-tune the model with the transformers Trainer.

The model is `model` from the config, or the one the `select` stage picked; the
hyperparameters are `train`'s, overridden by the best trial of the `tune` stage.
Checkpoints live in the stage's work folder, keyed by the cache key, so a run killed
mid-training resumes from its last checkpoint when `lmforge run` is called again.
A diverging loss restarts from the last good checkpoint at a lower learning rate.
The best checkpoint (by the validation metric) is what the stage outputs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lmforge.config import TrainConfig
from lmforge.pipeline.context import Inputs, StageContext, StageResult
from lmforge.training.ensemble import maybe_ensemble
from lmforge.training.fit import fit_classifier
from lmforge.training.stage_support import (
    count_params,
    log_decisions,
    precision_name,
    regularisation_summary,
    short_value,
    stage_callbacks,
    write_train_outputs,
)


def run(ctx: StageContext, cfg: TrainConfig, inputs: Inputs) -> StageResult:
    split = inputs["split"]
    labels: list[str] = split.json("labels")
    train, validation = inputs["augment"].table("train"), split.table("validation")
    reference = inputs["select"].json("choice")["model"] if "select" in inputs else ctx.config.model_name
    tuned: dict[str, Any] = inputs["tune"].json("best")["params"] if "tune" in inputs else {}
    if tuned:
        cfg = cfg.tuned(tuned)
        ctx.log("tuned hyperparameters: " + ", ".join(f"{k}={short_value(v)}" for k, v in tuned.items()))
    started = time.perf_counter()
    executor = ctx.config.executor
    if executor.type == "ray" and executor.train_workers > 0:
        return _run_on_ray(ctx, cfg, reference, labels, train, validation, tuned, started)
    checkpoints = ctx.work_dir / "checkpoints"
    budgeted: list[Any] = []
    if ctx.budget is not None and not ctx.budget.count_based:
        from lmforge.training.timed_finetune import fit_in_budget

        cfg, budgeted = fit_in_budget(ctx, reference, labels, train, validation, cfg)
    fit = fit_classifier(
        reference,
        ctx.config.base_dir,
        labels,
        train,
        validation,
        cfg,
        checkpoints,
        callbacks=lambda: [*stage_callbacks(ctx, budgeted[0].ends_at if budgeted else None), *budgeted],
        log=ctx.warn,
    )
    if fit.resumed_from:
        ctx.log(f"resumed from {fit.resumed_from}")
    log_decisions(ctx, fit.decisions)
    settings = fit.settings
    trainer = fit.trainer
    # The model is evaluated, registered and served as a plain folder; the LoRA adapter
    # alone is kept beside it as `model-adapter/`.
    ensemble = None
    if "tune" in inputs and inputs["tune"].has("ensemble"):
        ensemble = maybe_ensemble(ctx, fit, inputs["tune"].path("ensemble"), validation, labels, settings)
    write_train_outputs(ctx, fit, settings, fit.decisions, tuned)
    best = fit.best_metric
    parameters = count_params(fit.model)
    return StageResult(
        rows={"train": len(train), "validation": len(validation)},
        metrics=_metrics(fit, started, settings.metric_for_best_model, best),
        summary={
            "model": reference,
            "method": settings.method,
            "parameters": parameters,
            "trainable_parameters": fit.trainable_parameters,
            "best_checkpoint": Path(trainer.state.best_model_checkpoint or "").name,
            "epochs_run": float(trainer.state.epoch or 0),
            "resumed_from": fit.resumed_from,
            "restarts": fit.restarts,
            "tuned": tuned,
            "ensemble": ensemble,
            "device": str(trainer.args.device),
            "precision": precision_name(trainer.args),
            "regularisation": regularisation_summary(settings),
        },
    )


def _run_on_ray(
    ctx: StageContext,
    cfg: TrainConfig,
    reference: str,
    labels: list[str],
    train: Any,
    validation: Any,
    tuned: dict[str, Any],
    started: float,
) -> StageResult:
    """The same stage on Ray Train workers (training/ray_train.py): the same artifact."""
    from lmforge.training.ray_train import fit_classifier_on_ray
    from lmforge.training.stage_support import RayTrainProgress, ray_train_summary, write_ray_outputs

    executor = ctx.config.executor
    clock = None
    if ctx.budget is not None and not ctx.budget.count_based:
        from lmforge.training.ray_budget import plan_on_ray

        cfg, clock = plan_on_ray(ctx, reference, labels, train, validation, cfg)
    ctx.log(f"Ray Train: {executor.train_workers} worker(s) x {executor.cpus_per_worker:g} CPU")
    progress = RayTrainProgress(ctx, ends_at=float(clock["end"]) if clock else None)
    try:
        fit = fit_classifier_on_ray(
            reference,
            ctx.config.base_dir,
            labels,
            train,
            validation,
            cfg,
            executor,
            ctx.work_dir / "ray",
            f"train-{ctx.work_dir.name}",
            ctx.out.path("model"),
            tensorboard=ctx.config.tracking.tensorboard,
            clock=clock,
            progress=progress,
        )
    finally:
        progress.close()
    log_decisions(ctx, fit.decisions)
    write_ray_outputs(ctx, fit, tuned)
    metric = fit.settings["metric_for_best_model"]
    return StageResult(
        rows={"train": len(train), "validation": len(validation)},
        metrics=_metrics(fit, started, metric, fit.best_metric),
        summary={
            "model": reference,
            "method": fit.settings["method"],
            "parameters": fit.parameters,
            "trainable_parameters": fit.trainable_parameters,
            "best_checkpoint": fit.best_checkpoint,
            "epochs_run": fit.epoch,
            "resumed_from": None,
            "restarts": fit.restarts,
            "tuned": tuned,
            "ensemble": None,
            "device": fit.device,
            "precision": fit.precision,
            "regularisation": regularisation_summary(
                TrainConfig.model_validate(
                    {k: v for k, v in fit.settings.items() if k in TrainConfig.model_fields}
                )
            ),
            "ray_train": ray_train_summary(ctx, fit),
        },
    )


def _metrics(fit: Any, started: float, metric: str, best: float | None) -> dict[str, float]:
    """The train stage's metrics, from a local or a Ray Train fit."""
    metrics = {
        "train_loss": fit.train_loss,
        "train_seconds": float(time.perf_counter() - started),
        "steps": float(fit.steps),
        "restarts": float(len(fit.restarts)),
        f"best_validation_{metric}": best if best is not None else float("nan"),
    }
    if getattr(fit, "median_step_seconds", None) is not None:
        metrics["median_step_seconds"] = float(fit.median_step_seconds)
    return metrics
