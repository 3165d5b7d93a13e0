"""One trial: fine-tune with the trial's parameters, report each validation evaluation to
optuna and stop when the pruner says so.

The same function runs in-process (local executor) and as a Ray task: it reaches the
study through its storage URL and the trial by its number, so both report to, and prune
against, the same study.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from optuna.pruners import BasePruner


@dataclass
class TrialRequest:
    storage: str
    study_name: str
    number: int  # the trial the coordinator asked for; the worker finds it in the storage by number
    params: dict[str, Any]
    pruner: dict[str, Any]
    train_config: dict[str, Any]
    model: str
    base_dir: str
    labels: list[str]
    train: pd.DataFrame
    validation: pd.DataFrame
    work_dir: str
    save_model: bool = False
    num_threads: int | None = None
    task: str = "classification"


@dataclass
class TrialOutcome:
    number: int
    state: str  # "complete", "pruned" or "fail"
    value: float | None
    steps: int
    seconds: float
    evaluations: list[float] = field(default_factory=list)
    error: str | None = None
    model_dir: str | None = None


def make_pruner(spec: dict[str, Any]) -> BasePruner:
    import optuna

    kind = spec["kind"]
    if kind == "median":
        # Steps are evaluation indices (1, 2, ...); optuna prunes from step n_warmup_steps on,
        # so a trial is first judged at evaluation prune_after + 1.
        return optuna.pruners.MedianPruner(
            n_startup_trials=spec["startup_trials"], n_warmup_steps=spec["prune_after"] + 1
        )
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=spec["prune_after"] + 1, max_resource="auto", reduction_factor=3
        )
    if kind == "successive_halving":
        # Asynchronous successive halving (ASHA): rungs at evaluations r, 3r, 9r, ...; a trial
        # goes on past a rung only if it is in the top third of the trials that reached it.
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=spec["prune_after"] + 1, reduction_factor=3, min_early_stopping_rate=0
        )
    return optuna.pruners.NopPruner()


def run_trial(request: TrialRequest) -> TrialOutcome:
    import optuna

    from lmforge.config import TrainConfig
    from lmforge.training.fit import save_fitted

    if request.num_threads:
        import torch

        torch.set_num_threads(request.num_threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trial = StoredTrial(request.storage, request.study_name, request.number, make_pruner(request.pruner))
    cfg = TrainConfig.model_validate(
        {**request.train_config, **request.params, "early_stopping_patience": None}
    )
    folder = Path(request.work_dir) / f"trial-{request.number}"
    reporter = _Reporter(trial, cfg.metric_for_best_model, request.pruner.get("signal", "metric"))
    started = time.perf_counter()
    try:
        fit = _fit(request, cfg, folder / "checkpoints", reporter)
    except Exception as exc:  # a failed trial must not end the study
        shutil.rmtree(folder, ignore_errors=True)
        return TrialOutcome(
            request.number,
            "fail",
            None,
            reporter.steps,
            time.perf_counter() - started,
            reporter.values,
            str(exc),
        )
    steps = fit.steps
    trial.set_user_attr("steps", steps)
    # The pruner may have read the loss: the trial's metric is kept apart for the trials table.
    trial.set_user_attr("best_metric", reporter.best)
    trial.set_user_attr("metric_curve", reporter.values)
    trial.set_user_attr("pid", os.getpid())  # which process (local or Ray worker) ran it
    model_dir = None
    if request.save_model and not reporter.pruned:
        model_dir = str(folder / "model")
        save_fitted(fit, folder / "model")
    shutil.rmtree(folder / "checkpoints", ignore_errors=True)
    return TrialOutcome(
        number=request.number,
        state="pruned" if reporter.pruned else "complete",
        value=reporter.best,
        steps=steps,
        seconds=time.perf_counter() - started,
        evaluations=reporter.values,
        model_dir=model_dir,
    )


def _fit(request: TrialRequest, cfg: Any, checkpoints: Path, reporter: _Reporter) -> Any:
    """The same fine-tune as the train stage of the task, reporting to the trial."""
    from lmforge.tasks.registry import get_task

    task = get_task(request.task)
    if task.uses_labels:
        from lmforge.training.fit import fit_classifier

        return fit_classifier(
            request.model,
            Path(request.base_dir),
            request.labels,
            request.train,
            request.validation,
            cfg,
            checkpoints,
            callbacks=lambda: [reporter.callback()],
            save_checkpoints=False,
        )
    from lmforge.training.causal_fit import fit_causal_lm, prepare_causal

    data = prepare_causal(
        request.model, Path(request.base_dir), cfg, request.train, request.validation, task.raw_text
    )
    return fit_causal_lm(
        request.model,
        Path(request.base_dir),
        data.tokenizer,
        data.train,
        data.validation,
        data.settings,
        checkpoints,
        callbacks=lambda: [reporter.callback()],
        save_checkpoints=False,
    )


class StoredTrial:
    """A running trial of a stored study, reached by the study's name and the trial's number.

    The coordinator (`stages/tune.py`) asks the study for the trial and tells it the outcome;
    in between the trial may run in another process (a Ray worker), which cannot hold the
    coordinator's `optuna.trial.Trial`. optuna has no public way to rebuild one there (its
    constructor is not meant to be called by users and needs the private `_trial_id`), so this
    does what `Trial.report`, `Trial.should_prune` and `Trial.set_user_attr` do through the
    interfaces optuna defines for custom storages and pruners: `BaseStorage`'s methods and
    `BasePruner.prune`. Any storage URL optuna accepts is a SQLAlchemy URL for `RDBStorage`.

    Args:
        storage_url: The study's storage URL (sqlite file or database server).
        study_name: The study's name in that storage.
        number: The trial's number in the study (what `Study.ask` returned).
        pruner: The pruner the study prunes with; the coordinator's study never prunes.
    """

    def __init__(self, storage_url: str, study_name: str, number: int, pruner: BasePruner) -> None:
        import optuna

        self.storage = optuna.storages.RDBStorage(storage_url)
        self.study = optuna.load_study(study_name=study_name, storage=self.storage, pruner=pruner)
        self.pruner = pruner
        self.number = number
        study_id = self.storage.get_study_id_from_name(study_name)
        self.trial_id = self.storage.get_trial_id_from_study_id_trial_number(study_id, number)

    def report(self, value: float, step: int) -> None:
        """Store an intermediate value, where every trial's pruner reads it."""
        self.storage.set_trial_intermediate_value(self.trial_id, step, float(value))

    def should_prune(self) -> bool:
        """Ask the pruner about the trial as stored now (its values and the pruner's own marks)."""
        return bool(self.pruner.prune(self.study, self.storage.get_trial(self.trial_id)))

    def set_user_attr(self, key: str, value: Any) -> None:
        """Store a user attribute of the trial (JSON-serialisable)."""
        self.storage.set_trial_user_attr(self.trial_id, key, value)


class _Reporter:
    """Reports every validation evaluation to the trial; asks the pruner after each.

    The pruner reads the metric, or with `signal="loss"` the validation loss, signed so that
    it points the study's way (minus the loss when the study maximises a metric). Which of the
    two ranks trials better early depends on the data (docs/decisions.md)."""

    def __init__(self, trial: StoredTrial, metric: str, signal: str = "metric") -> None:
        from lmforge.tasks.classification import GREATER_IS_BETTER

        self.trial, self.key = trial, f"eval_{metric}"
        self.greater = GREATER_IS_BETTER[metric]
        self.signal_key = "eval_loss" if signal == "loss" else self.key
        self.signal_sign = -1.0 if signal == "loss" and self.greater else 1.0
        self.values: list[float] = []
        self.pruned = False
        self.steps = 0

    @property
    def best(self) -> float | None:
        if not self.values:
            return None
        return max(self.values) if self.greater else min(self.values)

    def callback(self) -> Any:
        from transformers import TrainerCallback

        reporter = self

        class Report(TrainerCallback):
            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                reporter.steps = state.global_step

            def on_evaluate(
                self, args: Any, state: Any, control: Any, metrics: Any = None, **kw: Any
            ) -> None:
                metrics = metrics or {}
                reporter.values.append(float(metrics[reporter.key]))
                signal = reporter.signal_sign * float(metrics[reporter.signal_key])
                # Step = evaluation index, so Hyperband's resource is "evaluations done".
                reporter.trial.report(signal, step=len(reporter.values))
                # Pruning at the last evaluation saves nothing and would discard a finished trial.
                last = state.global_step >= state.max_steps
                if not last and reporter.trial.should_prune():
                    reporter.pruned = True
                    control.should_training_stop = True

        return Report()
