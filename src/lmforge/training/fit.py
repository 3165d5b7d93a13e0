"""Fine-tune a sequence classifier with the Trainer, restarting after divergence.

One function serves the train stage, every tuning trial (local or on Ray), the
fine-tune probe of model selection and cross-validation, so they all train alike.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from lmforge.config import TrainConfig
from lmforge.errors import LmforgeError
from lmforge.tasks.classification import GREATER_IS_BETTER, EncodedTexts, trainer_metrics
from lmforge.training.monitor import Divergence, LossWatch, step_timer
from lmforge.training.recipe import Decision, ResolvedTrain, class_weight_vector, resolve_classification
from lmforge.training.trainer import checkpoint_lr_scale, trainer_class


class TrainingDiverged(LmforgeError):
    """Training diverged more often than `train.max_restarts` allows."""

    headline = "training diverged"


@dataclass
class FitResult:
    trainer: Any
    tokenizer: Any
    train_loss: float
    train_seconds: float
    restarts: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: str | None = None
    trainable_parameters: int = 0
    settings: Any = None  # the ResolvedTrain the model was trained with
    decisions: list[Decision] = field(default_factory=list)
    median_step_seconds: float | None = None  # of the last attempt (monitor.step_timer)

    @property
    def model(self) -> Any:
        return self.trainer.model

    @property
    def best_metric(self) -> float | None:
        best = self.trainer.state.best_metric
        return float(best) if best is not None else None

    @property
    def steps(self) -> int:
        return int(self.trainer.state.global_step)


def fit_classifier(
    model_reference: str,
    base_dir: Path,
    labels: list[str],
    train: pd.DataFrame,
    validation: pd.DataFrame,
    cfg: TrainConfig,
    checkpoints: Path,
    *,
    callbacks: Callable[[], list[Any]] = list,
    log: Callable[[str], None] = lambda message: None,
    save_checkpoints: bool = True,
    prepare: Callable[[Any], Any] | None = None,
    resume: Path | Literal["last"] | None = "last",
) -> FitResult:
    """Train on `train`, evaluate on `validation` as `cfg` says, keep the best checkpoint.

    Every `auto` setting of `cfg` is resolved from the data and the model first
    (training/recipe.py); the result carries the settings used and why.
    A non-finite or exploding loss restarts training from the last checkpoint (or from
    the start) with the learning rate times `cfg.restart_lr_factor`, at most
    `cfg.max_restarts` times. Checkpoints in `checkpoints` let a killed run resume.
    `prepare` wraps each Trainer built (Ray Train's `prepare_trainer`); `resume` is the
    checkpoint to start from: `"last"` (the last one in `checkpoints`), a folder, or None, in
    which case a divergence also restarts from the start (a data-parallel worker's own folder
    holds no checkpoint, rank 0's does, and every rank must restart alike).
    """
    from transformers import DataCollatorWithPadding, set_seed

    from lmforge.models.load import load_classifier
    from lmforge.models.pooling import MAX_LENGTH_KEY
    from lmforge.training.regularize import add_lora, freeze, train_top_layers

    label_id = {label: i for i, label in enumerate(labels)}
    texts, train_labels = train["text"].tolist(), train["label"].tolist()
    resolved, tokenizer, settings, decisions = classification_settings(
        model_reference, base_dir, cfg, train, labels
    )
    weights = class_weight_vector(train_labels, labels) if settings.class_weights == "balanced" else None
    train_set = EncodedTexts(tokenizer, texts, [label_id[v] for v in train_labels], settings.max_length)
    eval_set = EncodedTexts(
        tokenizer,
        validation["text"].tolist(),
        [label_id[v] for v in validation["label"]],
        settings.max_length,
    )

    def build(scale: float) -> tuple[Any, Any, int]:
        # The new classification head is initialised at load time, before the Trainer seeds:
        # seed first, or the same parameters give different models (and trials are not comparable).
        set_seed(settings.seed)
        tokenizer, model = load_classifier(
            resolved, labels, dropout=settings.dropout, pooling=settings.pooling
        )
        setattr(model.config, MAX_LENGTH_KEY, settings.max_length)  # serving truncates alike
        trainable = freeze(model, embeddings=settings.freeze_embeddings, layers=settings.freeze_layers)
        if settings.method == "freeze":
            trainable = train_top_layers(model, settings.trainable_layers)
        if settings.method == "lora":
            model = add_lora(
                model,
                r=settings.lora_r,
                alpha=settings.lora_alpha,
                dropout=settings.lora_dropout,
                targets=settings.lora_target_modules,
            )
            trainable = int(sum(p.numel() for p in model.parameters() if p.requires_grad))
        trainer = trainer_class()(
            model=model,
            args=training_arguments(
                settings,
                checkpoints,
                settings.learning_rate * scale,
                save=save_checkpoints,
                parameters=sum(p.numel() for p in model.parameters()),
            ),
            train_dataset=train_set,
            eval_dataset=eval_set,
            data_collator=DataCollatorWithPadding(tokenizer),
            processing_class=tokenizer,
            compute_metrics=trainer_metrics,
            callbacks=_with_early_stopping(callbacks(), settings),
            loss_watch=LossWatch(settings.explode_factor, floor=math.log(max(2, len(labels)))),
            lr_scale=scale,
            fgm_epsilon=settings.adversarial_epsilon if settings.adversarial == "fgm" else None,
            class_weights=weights,
        )
        return (prepare(trainer) if prepare else trainer), tokenizer, trainable

    fit = train_with_restarts(build, settings, checkpoints, log, resume)
    fit.settings, fit.decisions = settings, decisions
    return fit


def classification_settings(
    model_reference: str, base_dir: Path, cfg: TrainConfig, train: pd.DataFrame, labels: list[str]
) -> tuple[Any, Any, ResolvedTrain, list[Decision]]:
    """The resolved model, its tokenizer, and `cfg` with every `auto` resolved for this train split."""
    from lmforge.models.load import load_tokenizer, model_facts
    from lmforge.models.resolve import resolve_model

    resolved = resolve_model(model_reference, base_dir)
    tokenizer = load_tokenizer(resolved)
    facts = model_facts(resolved, tokenizer)
    settings, decisions = resolve_classification(
        cfg,
        token_lengths=[len(ids) for ids in tokenizer(train["text"].tolist(), truncation=False)["input_ids"]],
        train_labels=train["label"].tolist(),
        labels=labels,
        model_limit=facts.token_limit,
        pooling=facts.pooling,
        hidden_size=facts.hidden_size,
        causal=facts.causal,
    )
    return resolved, tokenizer, settings, decisions


def train_with_restarts(
    build: Callable[[float], tuple[Any, Any, int]],
    cfg: ResolvedTrain,
    checkpoints: Path,
    log: Callable[[str], None],
    start: Path | Literal["last"] | None = "last",
) -> FitResult:
    """Run `build(lr_scale)`'s Trainer; after a divergence, rebuild it at a lower learning
    rate and resume from the last checkpoint (or the start), at most `cfg.max_restarts` times.
    `start`: see `fit_classifier`'s `resume`."""
    from transformers import PrinterCallback

    restarts: list[dict[str, Any]] = []
    resume = _last_checkpoint(checkpoints) if start == "last" else start
    resumed_from = resume.name if resume else None
    scale = checkpoint_lr_scale(resume)
    while True:
        trainer, tokenizer, trainable = build(scale)
        trainer.remove_callback(PrinterCallback)  # lmforge renders progress itself
        timer = step_timer()
        trainer.add_callback(timer)
        started = time.perf_counter()
        try:
            output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        except Divergence as diverged:
            _end_callbacks(trainer)
            if len(restarts) >= cfg.max_restarts:
                raise TrainingDiverged(
                    f"{diverged} after {len(restarts)} restart(s) "
                    f"(learning rate {cfg.learning_rate * scale:.3g}); lower train.learning_rate "
                    "or raise train.max_restarts",
                ) from None
            resume = _last_checkpoint(checkpoints) if start == "last" else None
            scale *= cfg.restart_lr_factor
            restarts.append(
                {
                    "step": diverged.step,
                    "loss": diverged.loss,
                    "reason": diverged.reason,
                    "restarted_from": resume.name if resume else "start",
                    "new_learning_rate": cfg.learning_rate * scale,
                }
            )
            log(
                f"{diverged}; restarting from {resume.name if resume else 'the start'} "
                f"with learning rate {cfg.learning_rate * scale:.3g}"
            )
            continue
        return FitResult(
            trainer=trainer,
            tokenizer=tokenizer,
            train_loss=float(output.training_loss),
            train_seconds=time.perf_counter() - started,
            restarts=restarts,
            resumed_from=resumed_from,
            trainable_parameters=trainable,
            median_step_seconds=timer.median(),
        )


def _with_early_stopping(callbacks: list[Any], cfg: TrainConfig) -> list[Any]:
    from transformers import EarlyStoppingCallback

    if cfg.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
    return callbacks


# `precision: auto` trains in bf16 on a GPU only for models this large. Measured on an H200
# (bench/bench_gpu.py, steady-state steps): minilm-l6 (22M) took 79 ms per step under bf16
# autocast against 20 ms in fp32, its small steps being bound by kernel launches that autocast
# multiplies; a 0.8B causal LM took 86 ms in bf16 against 143 ms in fp32 (LoRA: 82 against
# 113, and half the memory). Between 22M and 0.8B it was not measured; the line is drawn here.
BF16_MIN_PARAMETERS = 300_000_000


def training_arguments(
    cfg: ResolvedTrain,
    checkpoints: Path,
    learning_rate: float,
    *,
    save: bool = True,
    loss_only: bool = False,
    parameters: int | None = None,
) -> Any:
    """Trainer arguments from `cfg`. `loss_only`: evaluation keeps no logits (a causal LM's are
    rows x tokens x vocabulary floats, gigabytes for a few hundred validation rows).
    `parameters`: the model's size, which `precision: auto` goes by on a GPU."""
    import torch
    from transformers import TrainingArguments

    strategy = "steps" if cfg.eval_steps else "epoch"
    use_cuda = torch.cuda.is_available()
    bf16 = cfg.precision == "bf16" or (
        cfg.precision == "auto" and use_cuda and auto_bf16(parameters, torch.cuda.is_bf16_supported())
    )
    return TrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        learning_rate=learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        warmup_steps=cfg.warmup_ratio,  # a float < 1 is a ratio of all steps
        weight_decay=cfg.weight_decay,
        label_smoothing_factor=cfg.label_smoothing,
        eval_strategy=strategy,
        save_strategy=strategy if save else "no",
        eval_steps=cfg.eval_steps,
        save_steps=cfg.eval_steps or 500,  # only used with eval_steps
        logging_steps=cfg.logging_steps,
        load_best_model_at_end=save,
        metric_for_best_model=cfg.metric_for_best_model,
        greater_is_better=GREATER_IS_BETTER[cfg.metric_for_best_model],
        save_total_limit=2,
        seed=cfg.seed,
        bf16=bf16,
        fp16=cfg.precision == "fp16",
        report_to=[],  # TensorBoard is added as a callback with an explicit folder
        disable_tqdm=True,
        dataloader_num_workers=0,
        use_cpu=not use_cuda,
        prediction_loss_only=loss_only,
        **_checkpointing(cfg.gradient_checkpointing),
    )


def auto_bf16(parameters: int | None, gpu_has_bf16: bool) -> bool:
    """Whether `precision: auto` trains in bf16 on a GPU (see BF16_MIN_PARAMETERS)."""
    return gpu_has_bf16 and (parameters is None or parameters >= BF16_MIN_PARAMETERS)


def _checkpointing(enabled: bool) -> dict[str, Any]:
    """Activation checkpointing arguments (renamed from gradient_ in transformers 5)."""
    import dataclasses

    from transformers import TrainingArguments

    if not enabled:
        return {}
    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    name = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    # Non-reentrant checkpointing works with frozen inputs (LoRA, frozen embeddings).
    return {name: True, f"{name}_kwargs": {"use_reentrant": False}}


def _end_callbacks(trainer: Any) -> None:
    # The loop was left by an exception: let callbacks close their progress bars.
    trainer.callback_handler.on_train_end(trainer.args, trainer.state, trainer.control)


def _last_checkpoint(folder: Path) -> Path | None:
    found = [p for p in folder.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
    return max(found, key=lambda p: int(p.name.split("-")[-1])) if found else None


def save_fitted(fit: FitResult, folder: Path) -> None:
    """The best model as a plain transformers folder (LoRA merged), with its tokenizer."""
    from lmforge.training.regularize import plain_model

    model = fit.model
    if hasattr(model, "save_pretrained") and hasattr(model, "peft_config"):
        model.save_pretrained(str(folder.with_name(folder.name + "-adapter")))  # the adapter alone
    plain_model(model).save_pretrained(str(folder))
    fit.tokenizer.save_pretrained(str(folder))


def remove_checkpoints(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
