"""What the classification and generation train stages share: the Trainer callbacks that turn
steps into lmforge progress events (and TensorBoard), and the small summaries the report shows."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from lmforge.config import TrainConfig
from lmforge.pipeline.context import StageContext
from lmforge.training.recipe import Decision


def stage_callbacks(ctx: StageContext, ends_at: Callable[[], float | None] | None = None) -> list[Any]:
    """The progress bar (and TensorBoard): `ends_at` gives the wall-clock time a fit that ends
    by the clock will end, which caps the bar's ETA."""
    callbacks: list[Any] = [progress_callback(ctx, ends_at)]
    if ctx.config.tracking.tensorboard:
        from torch.utils.tensorboard import SummaryWriter
        from transformers.integrations import TensorBoardCallback

        callbacks.append(TensorBoardCallback(SummaryWriter(str(ctx.work_dir / "tensorboard"))))
    return callbacks


def progress_callback(ctx: StageContext, ends_at: Callable[[], float | None] | None = None) -> Any:
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
            end = ends_at() if ends_at is not None else None
            if end is not None:
                info["ends_at"] = end  # console.ENDS_AT
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


class RayTrainProgress:
    """Rank 0's ticks on Ray Train (`ray_run.progress_sender`), shown as the single-process
    stage shows its own: a training bar and a line per validation pass. Called from the
    driver's relay thread while the main thread waits on the workers."""

    def __init__(self, ctx: StageContext, ends_at: float | None = None) -> None:
        self.ctx = ctx
        self.ends_at = ends_at  # wall-clock end of a fit under a budget: caps the bar's ETA
        self.cm: Any = None
        self.bar: Any = None

    def __call__(self, tick: dict[str, Any]) -> None:
        if "evaluated" in tick:
            shown = " ".join(f"{k} {v}" for k, v in tick["evaluated"].items())
            self.ctx.log(f"epoch {float(tick.get('epoch', 0)):.2f} validation {shown}")
            return
        if self.bar is None:
            self.cm = self.ctx.progress("training", total=tick.get("total"))
            self.bar = self.cm.__enter__()
        info: dict[str, Any] = {k: tick[k] for k in ("epoch", "loss") if k in tick}
        if self.ends_at is not None:
            info["ends_at"] = self.ends_at  # console.ENDS_AT
        self.bar.update(tick["completed"], total=tick.get("total"), **info)

    def close(self) -> None:
        if self.bar is not None:
            self.cm.__exit__(None, None, None)
            self.bar = None


def write_train_outputs(
    ctx: StageContext, fit: Any, settings: BaseModel, decisions: list[Decision], tuned: dict[str, Any]
) -> None:
    """The files every train stage leaves: `model/`, the Trainer's log history, the effective
    hyperparameters (after tuning and `auto` resolution: later stages read these, never the
    config's `train`), the recipe's decisions, the restarts, and TensorBoard logs if written."""
    from lmforge.training.fit import save_fitted

    save_fitted(fit, ctx.out.path("model"))
    ctx.out.write_json("history", fit.trainer.state.log_history)
    ctx.out.write_json("hyperparameters", settings.model_dump(mode="json"))
    ctx.out.write_json("recipe", recipe_rows(decisions, tuned))
    ctx.out.write_json("restarts", fit.restarts)
    if (ctx.work_dir / "tensorboard").exists():
        shutil.move(str(ctx.work_dir / "tensorboard"), str(ctx.out.path("tensorboard")))


def regularisation_summary(cfg: TrainConfig) -> dict[str, Any]:
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


def short_value(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def count_params(model: Any) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def precision_name(args: Any) -> str:
    return "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"


def log_decisions(ctx: StageContext, decisions: list[Decision]) -> None:
    """One log line per setting the recipe chose (`auto`), with the number it came from."""
    for decision in decisions:
        if decision.chosen:
            ctx.log(f"train.{decision.key} = {short_value(decision.value)}: {decision.reason}")


def recipe_rows(decisions: list[Decision], tuned: dict[str, Any]) -> list[dict[str, Any]]:
    """The decisions as `recipe.json` rows; a value the tune stage chose says so."""
    rows = []
    for decision in decisions:
        row = decision.as_dict()
        if decision.key in tuned:
            row["reason"] = "the best trial of the tune stage"
        rows.append(row)
    return rows


def write_ray_outputs(ctx: StageContext, fit: Any, tuned: dict[str, Any]) -> None:
    """What a train stage writes beside the model after a fit on Ray Train (`RayFit`): the
    files `write_train_outputs` writes after a fit in this process."""
    ctx.out.write_json("history", fit.log_history)
    ctx.out.write_json("hyperparameters", fit.settings)
    ctx.out.write_json("recipe", recipe_rows(fit.decisions, tuned))
    ctx.out.write_json("restarts", fit.restarts)


def ray_train_summary(ctx: StageContext, fit: Any) -> dict[str, Any]:
    """How a Ray Train fit ran, for the artifact and the report: the model itself does not say."""
    executor = ctx.config.executor
    return {
        "workers": fit.workers,
        "cpus_per_worker": executor.cpus_per_worker,
        "backend": "nccl" if executor.use_gpu else "gloo",
        "resumed_after_a_failure": fit.resumed,
    }
