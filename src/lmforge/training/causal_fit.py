"""Fine-tune a causal LM (instruction tuning or continued pretraining) with the Trainer.

The same restart-after-divergence loop as classification (`train_with_restarts`); the
best checkpoint is the one with the lowest validation loss. Methods: `full`, `lora`
(peft adapters, saved alone and merged) and `freeze` (only the top blocks train).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmforge.config import TrainConfig
from lmforge.tasks.generation import CausalCollator, Encoded
from lmforge.training.fit import FitResult, _with_early_stopping, train_with_restarts, training_arguments
from lmforge.training.monitor import LossWatch
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


def fit_causal_lm(
    model_reference: str,
    base_dir: Path,
    tokenizer: Any,
    train: Encoded,
    validation: Encoded,
    cfg: TrainConfig,
    checkpoints: Path,
    *,
    callbacks: Callable[[], list[Any]] = list,
    log: Callable[[str], None] = lambda message: None,
    save_checkpoints: bool = True,
) -> FitResult:
    """Train on `train` (prompt tokens already masked), pick the checkpoint with the lowest
    validation loss; checkpoints in `checkpoints` let a killed run resume."""
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
        model, trainable = prepare_model(model, cfg)
        trainer = trainer_class()(
            model=model,
            args=training_arguments(
                cfg, checkpoints, cfg.learning_rate * scale, save=save_checkpoints, loss_only=True
            ),
            train_dataset=train,
            eval_dataset=validation,
            data_collator=CausalCollator(tokenizer.pad_token_id),
            processing_class=tokenizer,
            callbacks=_with_early_stopping(callbacks(), cfg),
            loss_watch=LossWatch(cfg.explode_factor),
            lr_scale=scale,
        )
        return trainer, tokenizer, trainable

    return train_with_restarts(build, cfg, checkpoints, log)


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
