"""train (generation, language-modeling): fine-tune the causal LM with the Trainer.

Examples are tokenised with the prompt masked (generation) or fully trained (language
modelling), optionally packed into full blocks; the checkpoint with the lowest
validation loss is kept. The output `model/` is a plain transformers folder (LoRA
merged); a LoRA adapter alone is kept in `model-adapter/`. Checkpoints in the work
folder let a killed run resume; a diverging loss restarts at a lower learning rate.
With `executor: {type: ray, train_workers: N}` the same fit runs data-parallel on Ray Train
(training/ray_causal.py) and leaves the same files.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from lmforge.config import TrainConfig
from lmforge.pipeline.context import Inputs, StageContext, StageResult
from lmforge.pipeline.spec import on_ray_train
from lmforge.tasks.generation import Encoded
from lmforge.tasks.registry import get_task
from lmforge.training.causal_fit import CausalData, fit_causal_lm, lora_targets, prepare_causal
from lmforge.training.recipe import ResolvedTrain
from lmforge.training.stage_support import (
    RayTrainProgress,
    count_params,
    log_decisions,
    precision_name,
    ray_train_summary,
    regularisation_summary,
    short_value,
    stage_callbacks,
    write_ray_outputs,
    write_train_outputs,
)

if TYPE_CHECKING:
    from lmforge.training.causal_budget import CausalPlan


def run(ctx: StageContext, cfg: TrainConfig, inputs: Inputs) -> StageResult:
    split = inputs["split"]
    lm = get_task(ctx.config.task).raw_text
    reference = ctx.config.model_name
    tuned: dict[str, Any] = inputs["tune"].json("best")["params"] if "tune" in inputs else {}
    if tuned:
        cfg = cfg.tuned(tuned)
        ctx.log("tuned hyperparameters: " + ", ".join(f"{k}={short_value(v)}" for k, v in tuned.items()))
    data = prepare_causal(
        reference, ctx.config.base_dir, cfg, split.table("train"), split.table("validation"), lm
    )
    settings, train, validation = data.settings, data.train, data.validation
    log_decisions(ctx, data.decisions)
    _report_lengths(ctx, train, len(split.table("train")), settings)
    if not len(validation):
        from lmforge.errors import DataError

        raise DataError(
            f"no validation example fits train.max_length={settings.max_length} tokens",
            hint="raise train.max_length or shorten the prompts",
        )
    started = time.perf_counter()
    plan = None
    if ctx.budget is not None and not ctx.budget.count_based:
        from lmforge.training.causal_budget import plan_causal

        plan = plan_causal(ctx, data, on_ray=on_ray_train(ctx.config))
        ctx.budget.decide("train", "ends by the clock", plan.reason)
        ctx.log(f"budget: {plan.reason}")
    if on_ray_train(ctx.config):
        trained = _train_on_ray(ctx, reference, data, tuned, plan)
    else:
        trained = _train_here(ctx, reference, data, tuned, plan)
    if plan is not None and ctx.budget is not None:
        for reason in plan.stops:
            ctx.budget.decide("train", "stopped", reason)
    best = trained.best
    return StageResult(
        rows={"train": len(train), "validation": len(validation)},
        metrics={
            "train_loss": trained.train_loss,
            "train_seconds": float(time.perf_counter() - started),
            "steps": float(trained.steps),
            "restarts": float(len(trained.restarts)),
            "best_validation_loss": best if best is not None else float("nan"),
            "best_validation_perplexity": math.exp(min(best, 50.0)) if best is not None else float("nan"),
            "seconds_per_step": trained.fit_seconds / max(trained.steps, 1),
            "train_target_tokens": float(train.target_tokens),
        },
        summary={
            "model": reference,
            "method": settings.method,
            "parameters": trained.parameters,
            "trainable_parameters": trained.trainable_parameters,
            "lora_target_modules": trained.lora_target_modules,
            "best_checkpoint": trained.best_checkpoint,
            "epochs_run": trained.epochs_run,
            "resumed_from": trained.resumed_from,
            "restarts": trained.restarts,
            "tuned": tuned,
            "device": trained.device,
            "precision": trained.precision,
            "regularisation": regularisation_summary(settings),
            "truncated": train.truncated,
            "dropped_long": len(train.dropped),
            "packed": settings.packing,
            **trained.summary,
        },
    )


@dataclass
class _Trained:
    """What the stage reports of a fit, in this process or on Ray Train."""

    train_loss: float
    fit_seconds: float
    steps: int
    restarts: list[dict[str, Any]]
    best: float | None
    parameters: int
    trainable_parameters: int
    lora_target_modules: list[str]
    best_checkpoint: str
    epochs_run: float
    resumed_from: str | None
    device: str
    precision: str
    summary: dict[str, Any] = field(default_factory=dict)  # what only one of them reports


def _train_here(
    ctx: StageContext, reference: str, data: CausalData, tuned: dict[str, Any], plan: CausalPlan | None
) -> _Trained:
    budgeted = plan.callbacks() if plan is not None else []
    ends_at = budgeted[0].ends_at if budgeted else None  # the clock schedule's end caps the ETA
    fit = fit_causal_lm(
        reference,
        ctx.config.base_dir,
        data.tokenizer,
        data.train,
        data.validation,
        plan.settings if plan is not None else data.settings,
        ctx.work_dir / "checkpoints",
        callbacks=lambda: [*stage_callbacks(ctx, ends_at), *budgeted],
        log=ctx.warn,
    )
    if fit.resumed_from:
        ctx.log(f"resumed from {fit.resumed_from}")
    state = fit.trainer.state
    fit.model.config.use_cache = True  # off for training; generation wants it
    write_train_outputs(ctx, fit, data.settings, data.decisions, tuned)
    return _Trained(
        train_loss=fit.train_loss,
        fit_seconds=fit.train_seconds,
        steps=fit.steps,
        restarts=fit.restarts,
        best=fit.best_metric,
        parameters=count_params(fit.model),
        trainable_parameters=fit.trainable_parameters,
        lora_target_modules=lora_targets(fit.model),
        best_checkpoint=(state.best_model_checkpoint or "").rsplit("/", 1)[-1],
        epochs_run=float(state.epoch or 0),
        resumed_from=fit.resumed_from,
        device=str(fit.trainer.args.device),
        precision=precision_name(fit.trainer.args),
    )


def _train_on_ray(
    ctx: StageContext, reference: str, data: CausalData, tuned: dict[str, Any], plan: CausalPlan | None
) -> _Trained:
    """The same fit on Ray Train workers (training/ray_causal.py), the same artifact."""
    from lmforge.training.ray_causal import fit_causal_lm_on_ray

    executor = ctx.config.executor
    ctx.log(f"Ray Train: {executor.train_workers} worker(s) x {executor.cpus_per_worker:g} CPU")
    progress = RayTrainProgress(ctx, ends_at=float(plan.clock["end"]) if plan is not None else None)
    try:
        fit = fit_causal_lm_on_ray(
            reference,
            ctx.config.base_dir,
            data if plan is None else replace(data, settings=plan.settings),
            executor,
            ctx.work_dir / "ray",
            f"train-{ctx.work_dir.name}",
            ctx.out.path("model"),
            tensorboard=ctx.config.tracking.tensorboard,
            clock=plan.clock if plan is not None else None,
            progress=progress,
        )
    finally:
        progress.close()
    write_ray_outputs(ctx, fit, tuned)
    return _Trained(
        train_loss=fit.train_loss,
        fit_seconds=fit.train_seconds,
        steps=fit.steps,
        restarts=fit.restarts,
        best=fit.best_metric,
        parameters=fit.parameters,
        trainable_parameters=fit.trainable_parameters,
        lora_target_modules=list(fit.extra.get("lora_target_modules", [])),
        best_checkpoint=fit.best_checkpoint,
        epochs_run=fit.epoch,
        resumed_from=None,
        device=fit.device,
        precision=fit.precision,
        summary={"ray_train": ray_train_summary(ctx, fit)},
    )


def _report_lengths(ctx: StageContext, train: Encoded, rows: int, cfg: ResolvedTrain) -> None:
    if train.truncated:
        ctx.warn(
            f"{train.truncated} of {rows} training examples cut to train.max_length={cfg.max_length} tokens"
        )
    if train.dropped:
        ctx.warn(
            f"{len(train.dropped)} of {rows} training examples left out: longer than "
            f"train.max_length={cfg.max_length} tokens"
            + (" (long_examples: drop)" if cfg.long_examples == "drop" else " with no answer token left")
        )
    if not len(train):
        from lmforge.errors import DataError

        raise DataError(
            "no training example fits train.max_length", hint="raise train.max_length or shorten the prompts"
        )
