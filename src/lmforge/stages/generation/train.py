"""train (generation, language-modeling): fine-tune the causal LM with the Trainer.

Examples are tokenised with the prompt masked (generation) or fully trained (language
modelling), optionally packed into full blocks; the checkpoint with the lowest
validation loss is kept. The output `model/` is a plain transformers folder (LoRA
merged); a LoRA adapter alone is kept in `model-adapter/`. Checkpoints in the work
folder let a killed run resume; a diverging loss restarts at a lower learning rate.
"""

from __future__ import annotations

import math
import time
from typing import Any

from lmforge.config import TrainConfig
from lmforge.pipeline.context import Inputs, StageContext, StageResult
from lmforge.tasks.generation import Encoded
from lmforge.tasks.registry import get_task
from lmforge.training.causal_fit import fit_causal_lm, prepare_causal
from lmforge.training.recipe import ResolvedTrain
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
    lm = get_task(ctx.config.task).raw_text
    reference = ctx.config.model_name
    tuned: dict[str, Any] = inputs["tune"].json("best")["params"] if "tune" in inputs else {}
    if tuned:
        cfg = cfg.model_copy(update=tuned)
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
    fit = fit_causal_lm(
        reference,
        ctx.config.base_dir,
        data.tokenizer,
        train,
        validation,
        settings,
        ctx.work_dir / "checkpoints",
        callbacks=lambda: stage_callbacks(ctx),
        log=ctx.warn,
    )
    if fit.resumed_from:
        ctx.log(f"resumed from {fit.resumed_from}")
    trainer = fit.trainer
    fit.model.config.use_cache = True  # off for training; generation wants it
    write_train_outputs(ctx, fit, settings, data.decisions, tuned)
    best = fit.best_metric
    return StageResult(
        rows={"train": len(train), "validation": len(validation)},
        metrics={
            "train_loss": fit.train_loss,
            "train_seconds": float(time.perf_counter() - started),
            "steps": float(fit.steps),
            "restarts": float(len(fit.restarts)),
            "best_validation_loss": best if best is not None else float("nan"),
            "best_validation_perplexity": math.exp(min(best, 50.0)) if best is not None else float("nan"),
            "seconds_per_step": fit.train_seconds / max(fit.steps, 1),
            "train_target_tokens": float(train.target_tokens),
        },
        summary={
            "model": reference,
            "method": settings.method,
            "parameters": count_params(fit.model),
            "trainable_parameters": fit.trainable_parameters,
            "lora_target_modules": _lora_targets(fit.model),
            "best_checkpoint": (trainer.state.best_model_checkpoint or "").rsplit("/", 1)[-1],
            "epochs_run": float(trainer.state.epoch or 0),
            "resumed_from": fit.resumed_from,
            "restarts": fit.restarts,
            "tuned": tuned,
            "device": str(trainer.args.device),
            "precision": precision_name(trainer.args),
            "regularisation": regularisation_summary(settings),
            "truncated": train.truncated,
            "dropped_long": len(train.dropped),
            "packed": settings.packing,
        },
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


def _lora_targets(model: Any) -> list[str]:
    config = getattr(model, "peft_config", {}).get("default")
    return sorted(config.target_modules) if config is not None else []
