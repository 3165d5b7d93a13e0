"""train (auto mode: `model: auto` with a `budget`): try the portfolio of candidates within the
run's budget and output the winner as the train artifact, whatever its kind.

The artifact has the train stage's usual files, so evaluate, export, gate, report and register
read it as any train artifact: `model/` (a transformer folder, a linear model, or an ensemble:
`lmforge.models.kinds`), `history.json`, `hyperparameters.json` (`kind`, and `max_length` when
a transformer is in it), `recipe.json`; plus `portfolio.json` (every candidate: kind, status,
validation score, seconds, why) and `budget.json` (the plan and the planner's decisions).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from lmforge.config import TrainConfig
from lmforge.models.kinds import write_kind
from lmforge.pipeline.budget import RunBudget
from lmforge.pipeline.context import Inputs, StageContext, StageResult
from lmforge.pipeline.spec import portfolio_encoder
from lmforge.training.portfolio import Candidate, Portfolio
from lmforge.training.stage_support import precision_name, stage_callbacks, write_train_outputs


def run(ctx: StageContext, cfg: TrainConfig, inputs: Inputs) -> StageResult:
    split = inputs["split"]
    labels: list[str] = split.json("labels")
    train, validation = inputs["augment"].table("train"), split.table("validation")
    budget = ctx.budget or RunBudget.from_config(ctx.config, ["train"])
    assert budget is not None, "the portfolio runs only with a budget"
    metric = cfg.metric_for_best_model if cfg.metric_for_best_model != "loss" else "f1_macro"
    started = time.perf_counter()
    portfolio = Portfolio(
        reference=portfolio_encoder(ctx.config),
        base_dir=ctx.config.base_dir,
        cfg=cfg,
        labels=labels,
        train=train,
        validation=validation,
        metric=metric,
        budget=budget,
        work_dir=ctx.work_dir,
        log=ctx.log,
    )
    portfolio.majority()
    portfolio.linear()  # the one candidate that must succeed: without it there is nothing to ship
    # A candidate that fails (a diverging fine-tune, a probe out of memory) is reported as
    # failed, and the others still compete: one candidate must not sink the run.
    portfolio.attempt("fine-tune timing", portfolio.measure_finetune)
    portfolio.attempt("frozen encoder + LR", portfolio.embedding_probe)
    portfolio.attempt("fine-tune", lambda: portfolio.finetune(lambda: stage_callbacks(ctx)))
    portfolio.attempt("blend", portfolio.ensemble)
    winner = portfolio.winner()
    kind = _write_winner(ctx, portfolio, winner, metric)
    rows = [c.row() for c in portfolio.candidates]
    for row in rows:
        row["chosen"] = row["candidate"] == winner.name
    ctx.out.write_json("portfolio", rows)
    ctx.out.write_json("budget", budget.to_json())
    ctx.log(f"winner: {winner.name} (validation {metric} {winner.score:.4f})")
    fit = portfolio.finetune_fit
    if fit is not None and not ctx.out.path("history.json").exists():
        ctx.out.write_json("history", fit.trainer.state.log_history)  # the fine-tune's curves, shown
    return StageResult(
        rows={"train": len(train), "validation": len(validation)},
        metrics={
            "train_seconds": time.perf_counter() - started,
            f"best_validation_{metric}": float(winner.score or 0.0),
            "candidates": float(len(rows)),
            "steps": float(fit.steps if fit is not None else 0),
        },
        summary={
            "model": winner.name,
            "base_model": portfolio.reference,  # the encoder of a transformer or ensemble winner
            "kind": kind,
            "method": kind,
            "portfolio": rows,
            "parameters": _parameters(ctx.out.path("model"), kind, _linear_of(winner)),
            "epochs_run": float(fit.trainer.state.epoch or 0) if fit is not None else 0.0,
            "device": str(fit.trainer.args.device) if fit is not None else "cpu",
            "precision": precision_name(fit.trainer.args) if fit is not None else "fp32",
            "best_checkpoint": Path(fit.trainer.state.best_model_checkpoint or "").name if fit else "",
            "resumed_from": None,
            "restarts": fit.restarts if fit is not None else [],
            "regularisation": {},
        },
    )


def _linear_of(winner: Candidate) -> Any:
    if winner.kind == "linear":
        return winner.model
    if winner.kind == "ensemble":
        return winner.model[1].model
    return None


def _parameters(model_dir: Path, kind: str, linear: Any) -> int:
    """Weights of the shipped model: the transformer's, plus a linear head's coefficients."""
    total = 0
    if kind in ("transformer", "ensemble"):
        from safetensors import safe_open

        with safe_open(str(model_dir / "model.safetensors"), framework="np") as weights:
            for name in weights.keys():  # noqa: SIM118 (safe_open has no __iter__)
                total += int(np.prod(weights.get_slice(name).get_shape()))
    if linear is not None:
        head = linear.pipeline.named_steps["head"]
        coefs = getattr(head, "coef_", None)
        if coefs is None:  # calibrated SVC: one LinearSVC per calibration fold
            coefs = np.concatenate([c.estimator.coef_ for c in head.calibrated_classifiers_])
        total += int(np.asarray(coefs).size)
    return total


def _write_winner(ctx: StageContext, portfolio: Portfolio, winner: Candidate, metric: str) -> str:
    model_dir = ctx.out.path("model")
    if winner.kind == "linear":
        _save_linear(winner, model_dir)
        _plain_outputs(ctx, {"kind": "linear", "metric_for_best_model": metric, **_linear_facts(winner)})
        return "linear"
    if winner.kind == "ensemble":
        transformer, linear = winner.model
        _write_transformer(ctx, portfolio, transformer, metric)
        _save_linear(linear, model_dir / "linear")
        weights = winner.details["weights"]
        write_kind(
            model_dir,
            "ensemble",
            labels=portfolio.labels,
            method="weighted_average",
            members=[
                {
                    "kind": "transformer",
                    "path": ".",
                    "weight": weights["transformer"],
                    "name": transformer.name,
                },
                {"kind": "linear", "path": "linear", "weight": weights["linear"], "name": linear.name},
            ],
        )
        return "ensemble"
    _write_transformer(ctx, portfolio, winner, metric)
    return "transformer"


def _write_transformer(ctx: StageContext, portfolio: Portfolio, winner: Candidate, metric: str) -> None:
    if winner.model == "finetune":
        fit = portfolio.finetune_fit
        write_train_outputs(ctx, fit, fit.settings, fit.decisions, {})
        return
    shutil.copytree(winner.model, ctx.out.path("model"))  # the frozen-encoder probe's folder
    _plain_outputs(
        ctx,
        {
            "kind": "transformer",
            "method": "frozen encoder + logistic regression",
            "max_length": winner.details["max_length"],
            "metric_for_best_model": metric,
        },
    )


def _save_linear(candidate: Candidate, folder: Any) -> None:
    from lmforge.classical.linear import save_linear

    save_linear(candidate.model, folder)


def _linear_facts(candidate: Candidate) -> dict[str, Any]:
    return {"head": getattr(candidate.model, "head", None), "C": getattr(candidate.model, "C", None)}


def _plain_outputs(ctx: StageContext, hyperparameters: dict[str, Any]) -> None:
    ctx.out.write_json("history", [])
    ctx.out.write_json("hyperparameters", hyperparameters)
    ctx.out.write_json("recipe", [])
    ctx.out.write_json("restarts", [])
