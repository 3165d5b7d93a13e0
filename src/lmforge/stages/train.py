"""train: fine-tune the model with the transformers Trainer.

The model is `model` from the config, or the one the `select` stage picked; the
hyperparameters are `train`'s, overridden by the best trial of the `tune` stage.
Checkpoints live in the stage's work folder, keyed by the cache key, so a run killed
mid-training resumes from its last checkpoint when `lmforge run` is called again.
A diverging loss restarts from the last good checkpoint at a lower learning rate.
The best checkpoint (by the validation metric) is what the stage outputs.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from lmforge.config import TrainConfig
from lmforge.pipeline.context import Inputs, StageContext, StageResult
from lmforge.training.ensemble import maybe_ensemble
from lmforge.training.fit import fit_classifier, save_fitted


def run(ctx: StageContext, cfg: TrainConfig, inputs: Inputs) -> StageResult:
    split = inputs["split"]
    labels: list[str] = split.json("labels")
    train, validation = inputs["augment"].table("train"), split.table("validation")
    reference = inputs["select"].json("choice")["model"] if "select" in inputs else ctx.config.model_name
    tuned: dict[str, Any] = inputs["tune"].json("best")["params"] if "tune" in inputs else {}
    if tuned:
        cfg = cfg.model_copy(update=tuned)
        ctx.log("tuned hyperparameters: " + ", ".join(f"{k}={_short(v)}" for k, v in tuned.items()))
    started = time.perf_counter()
    checkpoints = ctx.work_dir / "checkpoints"
    fit = fit_classifier(
        reference,
        ctx.config.base_dir,
        labels,
        train,
        validation,
        cfg,
        checkpoints,
        callbacks=lambda: _callbacks(ctx),
        log=ctx.warn,
    )
    if fit.resumed_from:
        ctx.log(f"resumed from {fit.resumed_from}")
    trainer = fit.trainer
    # The model is evaluated, registered and served as a plain folder; the LoRA adapter
    # alone is kept beside it as `model-adapter/`.
    ensemble = None
    if "tune" in inputs and inputs["tune"].has("ensemble"):
        ensemble = maybe_ensemble(ctx, fit, inputs["tune"].path("ensemble"), validation, labels, cfg)
    save_fitted(fit, ctx.out.path("model"))
    ctx.out.write_json("history", trainer.state.log_history)
    ctx.out.write_json("hyperparameters", cfg.model_dump(mode="json"))
    ctx.out.write_json("restarts", fit.restarts)
    if (ctx.work_dir / "tensorboard").exists():
        shutil.move(str(ctx.work_dir / "tensorboard"), str(ctx.out.path("tensorboard")))
    best = fit.best_metric
    parameters = _params(fit.model)
    return StageResult(
        rows={"train": len(train), "validation": len(validation)},
        metrics={
            "train_loss": fit.train_loss,
            "train_seconds": float(time.perf_counter() - started),
            "steps": float(fit.steps),
            "restarts": float(len(fit.restarts)),
            f"best_validation_{cfg.metric_for_best_model}": best if best is not None else float("nan"),
        },
        summary={
            "model": reference,
            "method": cfg.method,
            "parameters": parameters,
            "trainable_parameters": fit.trainable_parameters,
            "best_checkpoint": Path(trainer.state.best_model_checkpoint or "").name,
            "epochs_run": float(trainer.state.epoch or 0),
            "resumed_from": fit.resumed_from,
            "restarts": fit.restarts,
            "tuned": tuned,
            "ensemble": ensemble,
            "device": str(trainer.args.device),
            "precision": _precision(trainer.args),
            "regularisation": _regularisation(cfg),
        },
    )


def _callbacks(ctx: StageContext) -> list[Any]:
    callbacks: list[Any] = [_progress_callback(ctx)]
    if ctx.config.tracking.tensorboard:
        from torch.utils.tensorboard import SummaryWriter
        from transformers.integrations import TensorBoardCallback

        callbacks.append(TensorBoardCallback(SummaryWriter(str(ctx.work_dir / "tensorboard"))))
    return callbacks


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


def _regularisation(cfg: TrainConfig) -> dict[str, Any]:
    """The regularisation switches that are on, for the report."""
    on: dict[str, Any] = {}
    if cfg.label_smoothing:
        on["label_smoothing"] = cfg.label_smoothing
    if cfg.dropout is not None:
        on["dropout"] = cfg.dropout
    if cfg.freeze_embeddings or cfg.freeze_layers:
        on["frozen"] = f"embeddings + {cfg.freeze_layers} layers"
    if cfg.adversarial != "off":
        on["adversarial"] = f"{cfg.adversarial} (epsilon {cfg.adversarial_epsilon})"
    if cfg.early_stopping_patience:
        on["early_stopping_patience"] = cfg.early_stopping_patience
    return on


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _params(model: Any) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def _precision(args: Any) -> str:
    return "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"
