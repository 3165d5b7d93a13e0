"""tune: Bayesian hyperparameter search (optuna TPE) with pruning of weak trials.

Trials are asked from the study and told their outcome here, whether they ran in this
process or as Ray tasks; each trial reports every validation evaluation to the study
through its storage, where the pruner compares it with the other trials'.
The study lives in a sqlite file in the stage's work folder (or `tune.storage`), so a
killed run resumes the study where it stopped. Outputs `best.json` (read by train),
`trials.csv`, HPO plots and, with `tune.ensemble_top_k` > 1, the best trials' models.
"""

from __future__ import annotations

import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from lmforge.config import TuneConfig
from lmforge.errors import StageError
from lmforge.pipeline.context import Inputs, StageContext, StageResult
from lmforge.tasks.classification import GREATER_IS_BETTER
from lmforge.tasks.registry import get_task
from lmforge.training.stage_support import short_value
from lmforge.tuning.executors import make_executor
from lmforge.tuning.objective import TrialOutcome, TrialRequest
from lmforge.tuning.space import default_space, distributions


def run(ctx: StageContext, cfg: TuneConfig, inputs: Inputs) -> StageResult:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    split = inputs["split"]
    causal = not get_task(ctx.config.task).uses_labels  # generation / language-modeling
    labels: list[str] = [] if causal else split.json("labels")
    train = split.table("train") if causal else inputs["augment"].table("train")
    validation = split.table("validation")
    if cfg.max_train_rows and len(train) > cfg.max_train_rows:
        train = stratified_sample(train, cfg.max_train_rows, cfg.seed)
    train_cfg = ctx.config.train
    space = cfg.space or default_space(train_cfg)
    reference = inputs["select"].json("choice")["model"] if "select" in inputs else ctx.config.model_name
    metric = train_cfg.metric_for_best_model
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    storage = cfg.storage or f"sqlite:///{(ctx.work_dir / 'study.db').resolve()}"
    study_name = f"{ctx.config.project_name}-{ctx.work_dir.name}"  # same inputs, same study
    pruner_spec = {
        "kind": cfg.pruner,
        "startup_trials": cfg.startup_trials,
        "prune_after": cfg.prune_after,
        "signal": cfg.prune_on,
    }
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction="maximize" if GREATER_IS_BETTER[metric] else "minimize",
        sampler=_sampler(cfg),
        load_if_exists=True,
    )
    orphans = _fail_orphans(study)
    finished = [t for t in study.trials if t.state.is_finished()]
    if finished:
        ctx.log(f"resuming study {study_name}: {len(finished)} trials finished before, {orphans} interrupted")
    executor = make_executor(ctx.config.executor)
    started = time.perf_counter()
    deadline = started + cfg.timeout_minutes * 60 if cfg.timeout_minutes else None
    outcomes: dict[int, TrialOutcome] = {}
    asked: dict[int, Any] = {}  # trial number -> the optuna Trial to tell its outcome to
    in_flight = 0
    ctx.log(
        f"searching {', '.join(space)} with {cfg.sampler} + {cfg.pruner} pruning "
        f"on {ctx.config.executor.type} "
        f"({getattr(executor, 'slots', 1)} trial(s) at a time) over {len(train)} train rows"
    )
    try:
        with ctx.progress("trials", total=cfg.trials) as bar:
            bar.update(len(finished))
            while True:
                while in_flight < executor.slots and _may_start(cfg, len(finished) + in_flight, deadline):
                    trial = study.ask(distributions(space))
                    asked[trial.number] = trial
                    executor.submit(
                        TrialRequest(
                            storage=storage,
                            study_name=study_name,
                            number=trial.number,
                            params=trial.params,
                            pruner=pruner_spec,
                            train_config=train_cfg.model_dump(),
                            model=reference,
                            base_dir=str(ctx.config.base_dir),
                            labels=labels,
                            train=train,
                            validation=validation,
                            work_dir=str(ctx.work_dir),
                            save_model=cfg.ensemble_top_k > 1,
                            task=ctx.config.task,
                        )
                    )
                    in_flight += 1
                if in_flight == 0:
                    break
                for outcome in executor.finished():
                    in_flight -= 1
                    _tell(study, asked.pop(outcome.number), outcome)
                    outcomes[outcome.number] = outcome
                    if cfg.ensemble_top_k > 1:
                        _drop_weaker_models(ctx.work_dir, study, cfg.ensemble_top_k)
                    finished.append(study.trials[outcome.number])
                    bar.update(len(finished), best=_best_value(study))
                    ctx.log(_describe(outcome, metric))
    finally:
        executor.close()
    seconds = time.perf_counter() - started
    trials = _trials_table(study, outcomes)
    complete = trials[trials["state"] == "COMPLETE"]
    if complete.empty:
        errors = sorted({o.error for o in outcomes.values() if o.error})
        raise StageError("tune", "no trial completed" + (f": {errors[0]}" if errors else ""))
    best = study.best_trial
    ctx.out.write_json(
        "best", {"number": best.number, "value": best.value, "metric": metric, "params": best.params}
    )
    ctx.out.write_csv("trials", trials)
    ctx.out.write_json("space", {k: v.model_dump(exclude_none=True) for k, v in space.items()})
    _plots(study, ctx.out.folder, _signal_label(cfg.prune_on, metric))
    _steps_plot(trials, ctx.out.folder / "hpo_trials.png", metric)
    if cfg.ensemble_top_k > 1:
        _keep_top_models(ctx, study, cfg.ensemble_top_k)
    counts = trials["state"].value_counts()
    ctx.log(
        f"best trial {best.number}: validation {metric} {best.value:.4f} with "
        + ", ".join(f"{k}={short_value(v)}" for k, v in best.params.items())
    )
    return StageResult(
        rows={"train": len(train), "validation": len(validation)},
        metrics={
            f"best_validation_{metric}": float(best.value or 0.0),
            "trials_complete": float(counts.get("COMPLETE", 0)),
            "trials_pruned": float(counts.get("PRUNED", 0)),
            "trials_failed": float(counts.get("FAIL", 0)),
            "total_steps": float(trials["steps"].fillna(0).sum()),
            "seconds": seconds,
        },
        summary={
            "model": reference,
            "sampler": cfg.sampler,
            "pruner": cfg.pruner,
            "executor": ctx.config.executor.type,
            "best_trial": best.number,
            "best_params": best.params,
            "storage": "work folder sqlite" if cfg.storage is None else "tune.storage",
        },
    )


def stratified_sample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """`rows` rows keeping the class proportions (every class keeps at least one row)."""
    from sklearn.model_selection import train_test_split

    if "label" not in frame.columns:  # generation rows: a plain random sample
        return frame.sample(n=rows, random_state=seed).reset_index(drop=True)
    try:
        kept, _ = train_test_split(frame, train_size=rows, stratify=frame["label"], random_state=seed)
    except ValueError:  # a class too small to stratify
        kept = frame.sample(n=rows, random_state=seed)
    return kept.reset_index(drop=True)


def _sampler(cfg: TuneConfig) -> Any:
    import optuna

    if cfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=cfg.seed)
    # Multivariate TPE models learning rate and epochs jointly (they trade off).
    return optuna.samplers.TPESampler(n_startup_trials=cfg.startup_trials, seed=cfg.seed, multivariate=True)


def _may_start(cfg: TuneConfig, started: int, deadline: float | None) -> bool:
    if cfg.trials is not None and started >= cfg.trials:
        return False
    return deadline is None or time.perf_counter() < deadline


def _fail_orphans(study: Any) -> int:
    """Trials left RUNNING by a killed process will never report; mark them failed.

    `Study.tell` takes a trial number, so a trial asked by an earlier process can be finished
    without its `Trial` object.
    """
    from optuna.trial import TrialState

    orphans = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in orphans:
        study.tell(trial.number, state=TrialState.FAIL)
    return len(orphans)


def _tell(study: Any, trial: Any, outcome: TrialOutcome) -> None:
    """Record a finished trial: its wall time (and error) as user attributes, then its state.

    A pruned trial's value is its last reported intermediate value, which `Study.tell` reads
    from the storage where the trial (maybe in another process) reported it.
    """
    from optuna.trial import TrialState

    trial.set_user_attr("seconds", outcome.seconds)
    if outcome.state == "complete" and outcome.value is not None:
        study.tell(trial, outcome.value)
    elif outcome.state == "pruned":
        study.tell(trial, state=TrialState.PRUNED)
    else:
        trial.set_user_attr("error", outcome.error or "no evaluation")
        study.tell(trial, state=TrialState.FAIL)


def _best_value(study: Any) -> float | None:
    try:
        return round(float(study.best_value), 4)
    except ValueError:  # no complete trial yet
        return None


def _describe(outcome: TrialOutcome, metric: str) -> str:
    value = f"{outcome.value:.4f}" if outcome.value is not None else "-"
    detail = f": {outcome.error}" if outcome.error else ""
    return (
        f"trial {outcome.number} {outcome.state}{detail}, validation {metric} {value} "
        f"after {outcome.steps} steps ({outcome.seconds:.1f}s)"
    )


def _trials_table(study: Any, outcomes: dict[int, TrialOutcome]) -> pd.DataFrame:
    rows = []
    for trial in study.trials:
        rows.append(
            {
                "number": trial.number,
                "state": trial.state.name,
                # optuna gives a pruned trial its last reported value, which may be a loss.
                "value": trial.value
                if trial.state.name == "COMPLETE"
                else trial.user_attrs.get("best_metric", trial.value),
                "steps": trial.user_attrs.get(
                    "steps", outcomes[trial.number].steps if trial.number in outcomes else None
                ),
                "seconds": trial.user_attrs.get("seconds"),
                "evaluations": len(trial.intermediate_values),
                "pid": trial.user_attrs.get("pid"),
                **{f"param_{k}": v for k, v in trial.params.items()},
                "error": trial.user_attrs.get("error", ""),
            }
        )
    return pd.DataFrame(rows)


def _signal_label(prune_on: str, metric: str) -> str:
    if prune_on == "loss" and GREATER_IS_BETTER[metric]:
        return "minus validation loss"  # what the pruner compared, in the study's direction
    return f"validation {'loss' if prune_on == 'loss' else metric}"


def _plots(study: Any, folder: Path, curves_label: str) -> None:
    """History, parameter importances and learning curves (pruned vs complete)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ov

    plots: dict[str, Any] = {
        "hpo_history.png": ov.plot_optimization_history,
        "hpo_importance.png": ov.plot_param_importances,
        "hpo_curves.png": ov.plot_intermediate_values,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
        for name, plot in plots.items():
            try:
                axes = plot(study)
            except (ValueError, RuntimeError, ZeroDivisionError):
                continue  # e.g. importances need two complete trials with varied parameters
            figure = axes.figure if hasattr(axes, "figure") else axes
            if name == "hpo_curves.png":
                axes.set_ylabel(curves_label)
                axes.set_xlabel("validation evaluation")
            figure.set_size_inches(7, 4)
            figure.tight_layout()
            figure.savefig(folder / name, dpi=110)
            plt.close(figure)


def _ranked(study: Any) -> list[Any]:
    from optuna.trial import TrialState

    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    return sorted(complete, key=lambda t: t.value, reverse=study.direction.name == "MAXIMIZE")


def _drop_weaker_models(work_dir: Path, study: Any, k: int) -> None:
    # Only the k best trials' models can join the ensemble; the rest would fill the disk.
    keep = {t.number for t in _ranked(study)[:k]}
    for folder in work_dir.glob("trial-*/model"):
        if int(folder.parent.name.split("-")[1]) not in keep:
            shutil.rmtree(folder, ignore_errors=True)


def _steps_plot(trials: pd.DataFrame, path: Path, metric: str) -> None:
    """Training steps each trial used, coloured by complete / pruned / failed: what pruning saved."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"COMPLETE": "#2b6cb0", "PRUNED": "#dd6b20", "FAIL": "#c53030"}
    figure, axes = plt.subplots(figsize=(7, 3.2))
    steps = trials["steps"].fillna(0)
    axes.bar(trials["number"], steps, color=[colours.get(s, "#718096") for s in trials["state"]])
    for number, height, value in zip(trials["number"], steps, trials["value"], strict=True):
        if value == value and value is not None:  # not NaN
            axes.annotate(f"{value:.3f}", (number, height), ha="center", va="bottom", fontsize=7)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
    axes.legend(handles, ["complete", "pruned", "failed"], fontsize=8, loc="upper right")
    axes.set_xlabel("trial")
    axes.set_ylabel("training steps")
    axes.set_title(f"Steps per trial (labels: validation {metric})", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _keep_top_models(ctx: StageContext, study: Any, k: int) -> None:
    rank = 0
    for trial in _ranked(study):
        source = ctx.work_dir / f"trial-{trial.number}" / "model"
        if not source.exists():
            continue
        rank += 1
        shutil.copytree(source, ctx.out.path(f"ensemble/rank-{rank}"))
        if rank == k:
            break
