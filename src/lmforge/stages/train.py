"""train: fine-tune the model with the transformers Trainer.

Checkpoints live in the stage's work folder, keyed by the cache key, so a run killed
mid-training resumes from its last checkpoint when `lmforge run` is called again.
The best checkpoint (by the validation metric) is what the stage outputs.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from lmforge.config import TrainConfig
from lmforge.pipeline.context import Inputs, StageContext, StageResult
from lmforge.tasks.classification import GREATER_IS_BETTER, EncodedTexts, trainer_metrics


def run(ctx: StageContext, cfg: TrainConfig, inputs: Inputs) -> StageResult:
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback, PrinterCallback, Trainer

    from lmforge.models.load import load_classifier
    from lmforge.models.resolve import resolve_model

    split = inputs["split"]
    labels: list[str] = split.json("labels")
    label_id = {label: i for i, label in enumerate(labels)}
    train, validation = inputs["augment"].table("train"), split.table("validation")
    started = time.perf_counter()
    resolved = resolve_model(ctx.config.model, ctx.config.base_dir)
    tokenizer, model = load_classifier(resolved, labels)
    ctx.log(
        f"loaded {resolved.reference} ({_params(model) / 1e6:.1f}M parameters) "
        f"in {time.perf_counter() - started:.1f}s"
    )
    train_set = EncodedTexts(
        tokenizer, train["text"].tolist(), [label_id[v] for v in train["label"]], cfg.max_length
    )
    eval_set = EncodedTexts(
        tokenizer, validation["text"].tolist(), [label_id[v] for v in validation["label"]], cfg.max_length
    )
    checkpoints = ctx.work_dir / "checkpoints"
    callbacks: list[Any] = [_progress_callback(ctx)]
    if ctx.config.tracking.tensorboard:
        from torch.utils.tensorboard import SummaryWriter
        from transformers.integrations import TensorBoardCallback

        callbacks.append(TensorBoardCallback(SummaryWriter(str(ctx.work_dir / "tensorboard"))))
    if cfg.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
    trainer = Trainer(
        model=model,
        args=_arguments(ctx, cfg, checkpoints),
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        compute_metrics=trainer_metrics,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # lmforge renders progress itself
    resume = _last_checkpoint(checkpoints)
    if resume is not None:
        ctx.log(f"resuming from {resume.name}")
    output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    model_dir = ctx.out.path("model")
    trainer.save_model(str(model_dir))
    tokenizer.save_pretrained(str(model_dir))
    history = trainer.state.log_history
    ctx.out.write_json("history", history)
    if (ctx.work_dir / "tensorboard").exists():
        shutil.move(str(ctx.work_dir / "tensorboard"), str(ctx.out.path("tensorboard")))
    best = trainer.state.best_metric
    result = StageResult(
        rows={"train": len(train_set), "validation": len(eval_set)},
        metrics={
            "train_loss": float(output.training_loss),
            "train_seconds": float(output.metrics.get("train_runtime", 0.0)),
            "steps": float(trainer.state.global_step),
            f"best_validation_{cfg.metric_for_best_model}": float(best) if best is not None else float("nan"),
        },
        summary={
            "model": resolved.reference,
            "model_source": resolved.source,
            "parameters": _params(model),
            "best_checkpoint": Path(trainer.state.best_model_checkpoint or "").name,
            "epochs_run": float(trainer.state.epoch or 0),
            "resumed_from": resume.name if resume else None,
            "device": str(trainer.args.device),
            "precision": _precision(trainer.args),
        },
    )
    return result


def _arguments(ctx: StageContext, cfg: TrainConfig, checkpoints: Path) -> Any:
    import torch
    from transformers import TrainingArguments

    strategy = "steps" if cfg.eval_steps else "epoch"
    use_cuda = torch.cuda.is_available()
    bf16 = cfg.precision == "bf16" or (
        cfg.precision == "auto" and use_cuda and torch.cuda.is_bf16_supported()
    )
    return TrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        warmup_steps=cfg.warmup_ratio,  # a float < 1 is a ratio of all steps
        weight_decay=cfg.weight_decay,
        eval_strategy=strategy,
        save_strategy=strategy,
        eval_steps=cfg.eval_steps,
        save_steps=cfg.eval_steps or 500,  # only used with eval_steps
        logging_steps=cfg.logging_steps,
        load_best_model_at_end=True,
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
    )


def _progress_callback(ctx: StageContext) -> Any:
    from transformers import TrainerCallback

    class RichProgress(TrainerCallback):
        """Turns Trainer steps and evaluations into lmforge progress events."""

        def __init__(self) -> None:
            self.bar: Any = None
            self.loss: float | None = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.cm = ctx.progress("training", total=state.max_steps)
            self.bar = self.cm.__enter__()
            self.bar.update(state.global_step, total=state.max_steps)

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            info = {"epoch": round(state.epoch or 0, 2)}
            if self.loss is not None:
                info["loss"] = round(self.loss, 4)
            self.bar.update(state.global_step, **info)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                self.loss = float(logs["loss"])

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kw: Any) -> None:
            shown = {
                k.removeprefix("eval_"): round(v, 4)
                for k, v in (metrics or {}).items()
                if k in ("eval_loss", "eval_accuracy", "eval_f1_macro")
            }
            ctx.log(f"epoch {state.epoch:.2f} validation " + " ".join(f"{k} {v}" for k, v in shown.items()))

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.bar is not None:
                self.cm.__exit__(None, None, None)
                self.bar = None

    return RichProgress()


def _last_checkpoint(folder: Path) -> Path | None:
    found = [p for p in folder.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
    return max(found, key=lambda p: int(p.name.split("-")[-1])) if found else None


def _params(model: Any) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def _precision(args: Any) -> str:
    return "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"
