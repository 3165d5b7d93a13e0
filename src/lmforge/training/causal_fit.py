"""Fine-tune a causal LM (instruction tuning or continued pretraining) with the Trainer.

The same restart-after-divergence loop as classification (`train_with_restarts`); the
best checkpoint is the one with the lowest validation loss. Methods: `full`, `lora`
(peft adapters, saved alone and merged) and `freeze` (only the top blocks train).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from lmforge.config import TrainConfig
from lmforge.tasks.generation import CausalCollator, Encoded, encode_split
from lmforge.training.fit import FitResult, _with_early_stopping, train_with_restarts, training_arguments
from lmforge.training.monitor import LossWatch
from lmforge.training.recipe import Decision, ResolvedTrain, resolve_causal
from lmforge.training.trainer import trainer_class


def load_tokenizer(model_reference: str, base_dir: Path) -> Any:
    """The model's tokenizer, right-padded for training, with a pad token."""
    from transformers import AutoTokenizer

    from lmforge.models.load import model_folder
    from lmforge.models.quiet import quiet_transformers
    from lmforge.models.resolve import resolve_model

    quiet_transformers()
    tokenizer = AutoTokenizer.from_pretrained(model_folder(resolve_model(model_reference, base_dir)))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@dataclass
class CausalData:
    """A causal task's tokenizer, resolved settings and encoded splits."""

    tokenizer: Any
    settings: ResolvedTrain
    decisions: list[Decision]
    train: Encoded
    validation: Encoded


def prepare_causal(
    model_reference: str,
    base_dir: Path,
    cfg: TrainConfig,
    train: pd.DataFrame,
    validation: pd.DataFrame,
    lm: bool,
) -> CausalData:
    """Resolve `cfg`'s `auto` settings from the train split's token lengths, then encode the
    splits with them: what the train stage and every tuning trial train on."""
    from lmforge.models.load import model_facts
    from lmforge.models.resolve import resolve_model

    tokenizer = load_tokenizer(model_reference, base_dir)
    facts = model_facts(resolve_model(model_reference, base_dir), tokenizer)
    measure = cfg.model_copy(update={"max_length": 10**9, "packing": False, "long_examples": "truncate"})
    lengths = [len(ids) for ids in encode_split(tokenizer, train, measure, lm).input_ids]
    settings, decisions = resolve_causal(cfg, token_lengths=lengths, model_limit=facts.token_limit)
    return CausalData(
        tokenizer,
        settings,
        decisions,
        encode_split(tokenizer, train, settings, lm),
        encode_split(tokenizer, validation, settings, lm),
    )


def fit_causal_lm(
    model_reference: str,
    base_dir: Path,
    tokenizer: Any,
    train: Encoded,
    validation: Encoded,
    cfg: ResolvedTrain,
    checkpoints: Path,
    *,
    callbacks: Callable[[], list[Any]] = list,
    log: Callable[[str], None] = lambda message: None,
    save_checkpoints: bool = True,
    prepare: Callable[[Any], Any] | None = None,
    resume: Path | Literal["last"] | None = "last",
) -> FitResult:
    """Train on `train` (prompt tokens already masked), pick the checkpoint with the lowest
    validation loss; checkpoints in `checkpoints` let a killed run resume. `prepare` and
    `resume` are `fit_classifier`'s (Ray Train's `prepare_trainer`, Ray's restored checkpoint)."""
    from transformers import AutoModelForCausalLM, set_seed

    from lmforge.models.load import model_folder
    from lmforge.models.resolve import resolve_model

    folder = model_folder(resolve_model(model_reference, base_dir))
    cfg = cfg.model_copy(update={"metric_for_best_model": "loss", "adversarial": "off"})

    def build(scale: float) -> tuple[Any, Any, int]:
        set_seed(cfg.seed)
        model = AutoModelForCausalLM.from_pretrained(folder)
        if cfg.dropout is not None:
            from lmforge.training.regularize import override_dropout

            override_dropout(model.config, cfg.dropout)
        model.config.use_cache = False  # the cache is useless in training and warns with checkpointing
        parameters = sum(p.numel() for p in model.parameters())
        model, trainable = prepare_model(model, cfg)
        trainer = trainer_class()(
            model=model,
            args=training_arguments(
                cfg,
                checkpoints,
                cfg.learning_rate * scale,
                save=save_checkpoints,
                loss_only=True,
                parameters=parameters,
            ),
            train_dataset=train,
            eval_dataset=validation,
            data_collator=CausalCollator(tokenizer.pad_token_id),
            processing_class=tokenizer,
            callbacks=_with_early_stopping(callbacks(), cfg),
            loss_watch=LossWatch(cfg.explode_factor),
            lr_scale=scale,
        )
        return (prepare(trainer) if prepare else trainer), tokenizer, trainable

    fit = train_with_restarts(build, cfg, checkpoints, log, resume)
    fit.settings = cfg
    return fit


def prepare_model(model: Any, cfg: TrainConfig) -> tuple[Any, int]:
    """Apply the training method; returns the model to train and its trainable parameters."""
    from lmforge.training.regularize import add_lora, freeze, train_top_layers

    if cfg.method == "lora":
        if cfg.gradient_checkpointing:
            model.enable_input_require_grads()  # checkpointed blocks need a grad-requiring input
        model = add_lora(
            model,
            r=cfg.lora_r,
            alpha=cfg.lora_alpha,
            dropout=cfg.lora_dropout,
            targets=cfg.lora_target_modules,
            causal=True,
        )
    elif cfg.method == "freeze":
        train_top_layers(model, cfg.trainable_layers)
    else:
        freeze(model, embeddings=cfg.freeze_embeddings, layers=cfg.freeze_layers)
    return model, int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def lora_targets(model: Any) -> list[str]:
    """The modules a LoRA adapter was put on (none for the other methods)."""
    config = getattr(model, "peft_config", {}).get("default")
    return sorted(config.target_modules) if config is not None else []
