"""select: pick the base model among candidates (`model: auto` or a list) within budget.

Each candidate is measured on this machine: parameters, latency per text (batch of 1),
throughput, and a cheap proxy of its quality on the validation split: logistic
regression on its frozen mean-pooled hidden states (`embeddings`), or a short fine-tune
on a sample (`finetune`). Candidates over `max_params`, `max_latency_ms` or whose full
fine-tune is estimated to exceed `time_budget_minutes` are ruled out; the best proxy
score among the rest wins. `candidates.json` says why each was kept or ruled out.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from lmforge.config import SelectConfig, TrainConfig
from lmforge.errors import StageError
from lmforge.models.candidates import candidates
from lmforge.models.zoo import ZOO
from lmforge.pipeline.context import Inputs, StageContext, StageResult
from lmforge.tasks.classification import metrics
from lmforge.training.recipe import ResolvedTrain, auto_epochs

# Forward + backward + optimizer step cost about three forward passes.
TRAIN_COST_FACTOR = 3.0


def run(ctx: StageContext, cfg: SelectConfig, inputs: Inputs) -> StageResult:
    split = inputs["split"]
    labels: list[str] = split.json("labels")
    train, validation = inputs["augment"].table("train"), split.table("validation")
    train_cfg = ctx.config.train
    metric = train_cfg.metric_for_best_model if train_cfg.metric_for_best_model != "loss" else "f1_macro"
    sample = _sample(train, cfg.probe_rows)
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for reference in candidates(ctx.config):
        row: dict[str, Any] = {"model": reference}
        zoo = ZOO.get(reference)
        if zoo is not None and ctx.config.task not in zoo.tasks:
            rows.append({**row, "status": "ruled out", "reason": f"does not support {ctx.config.task}"})
            continue
        if zoo is not None and cfg.max_params and zoo.params_millions * 1e6 > cfg.max_params:
            rows.append(
                {
                    **row,
                    "parameters": int(zoo.params_millions * 1e6),
                    "status": "ruled out",
                    "reason": f"{zoo.params_millions:.0f}M parameters > select.max_params",
                }
            )
            continue
        ctx.log(f"probing {reference}")
        measured = _measure(ctx, reference, cfg, train_cfg, sample, validation, labels, metric, len(train))
        row.update(measured)
        row.update(_budget_check(cfg, measured))
        rows.append(row)
        ctx.log(
            f"{reference}: validation {metric} {measured['score']:.4f}, "
            f"{measured['latency_ms']:.1f} ms/text, "
            f"full fine-tune ~{measured['estimated_train_minutes']:.1f} min ({row['status']})"
        )
    kept = [r for r in rows if r["status"] == "kept"]
    if not kept:
        reasons = "; ".join(f"{r['model']}: {r['reason']}" for r in rows)
        raise StageError("select", f"no candidate fits the budget ({reasons})", hint="relax select.* limits")
    # Highest score wins; a tie goes to the faster model.
    winner = max(kept, key=lambda r: (round(r["score"], 4), -r["latency_ms"]))
    why = _why(winner, kept, metric)
    for row in rows:
        row["chosen"] = row is winner
    ctx.out.write_json("candidates", rows)
    ctx.out.write_json("choice", {"model": winner["model"], "metric": metric, "why": why})
    seconds = time.perf_counter() - started
    ctx.log(f"chose {winner['model']}: {why}")
    return StageResult(
        rows={"probe_train": len(sample), "validation": len(validation)},
        metrics={"candidates": float(len(rows)), "kept": float(len(kept)), "seconds": seconds},
        summary={"model": winner["model"], "why": why, "probe": cfg.probe},
    )


def _sample(train: pd.DataFrame, rows: int) -> pd.DataFrame:
    if len(train) <= rows:
        return train
    from lmforge.stages.tune import stratified_sample

    return stratified_sample(train, rows, seed=0)


def _measure(
    ctx: StageContext,
    reference: str,
    cfg: SelectConfig,
    train_cfg: TrainConfig,
    sample: pd.DataFrame,
    validation: pd.DataFrame,
    labels: list[str],
    metric: str,
    train_rows: int,
) -> dict[str, Any]:
    from lmforge.models.embed import embed, encoder
    from lmforge.training.fit import classification_settings

    base = ctx.config.base_dir
    # The candidate is measured with the settings its fine-tune would get (max_length, epochs).
    configured_epochs = train_cfg.epochs
    train_cfg = classification_settings(reference, base, train_cfg, sample, labels)[2]
    batch = train_cfg.batch_size * train_cfg.gradient_accumulation_steps
    epochs = auto_epochs(train_rows, batch)[0] if configured_epochs == "auto" else float(configured_epochs)
    tokenizer, model = encoder(reference, base)
    parameters = int(sum(p.numel() for p in model.parameters()))
    latency_ms = _latency_ms(tokenizer, model, validation["text"].tolist()[: cfg.latency_texts], train_cfg)
    probe_started = time.perf_counter()
    texts = sample["text"].tolist()
    train_vectors = embed(texts, model=reference, base_dir=base, max_length=train_cfg.max_length)
    seconds_per_text = (time.perf_counter() - probe_started) / max(1, len(texts))
    if cfg.probe == "embeddings":
        validation_vectors = embed(
            validation["text"].tolist(), model=reference, base_dir=base, max_length=train_cfg.max_length
        )
        score = _probe_score(train_vectors, sample["label"], validation_vectors, validation["label"], metric)
    else:
        score = _finetune_score(ctx, reference, cfg, train_cfg, sample, validation, labels, metric)
    probe_seconds = time.perf_counter() - probe_started
    epochs_rows = (
        train_cfg.max_steps * train_cfg.batch_size * train_cfg.gradient_accumulation_steps
        if train_cfg.max_steps > 0
        else train_rows * epochs
    )
    estimate = TRAIN_COST_FACTOR * seconds_per_text * epochs_rows / 60
    return {
        "parameters": parameters,
        "latency_ms": latency_ms,
        "score": score,
        "probe_seconds": probe_seconds,
        "estimated_train_minutes": estimate,
    }


def _latency_ms(tokenizer: Any, model: Any, texts: list[str], train_cfg: ResolvedTrain) -> float:
    """Median milliseconds to run one text through the model (after warm-up calls)."""
    import torch

    timings = []
    warm_up = 3  # the first calls pay for thread pools and allocator growth
    with torch.inference_mode():
        for index, text in enumerate([texts[0]] * warm_up + texts):
            batch = tokenizer([text], truncation=True, max_length=train_cfg.max_length, return_tensors="pt")
            started = time.perf_counter()
            model(**batch)
            if index >= warm_up:
                timings.append((time.perf_counter() - started) * 1000)
    return float(np.median(timings))


def _probe_score(
    train_x: np.ndarray, train_y: pd.Series, valid_x: np.ndarray, valid_y: pd.Series, metric: str
) -> float:
    from sklearn.linear_model import LogisticRegression

    probe = LogisticRegression(max_iter=2000, C=10.0)
    probe.fit(train_x, train_y.tolist())
    return metrics(valid_y.tolist(), probe.predict(valid_x).tolist())[metric]


def _finetune_score(
    ctx: StageContext,
    reference: str,
    cfg: SelectConfig,
    train_cfg: ResolvedTrain,
    sample: pd.DataFrame,
    validation: pd.DataFrame,
    labels: list[str],
    metric: str,
) -> float:
    from lmforge.training.fit import fit_classifier, remove_checkpoints

    short = train_cfg.model_copy(
        update={"max_steps": cfg.probe_steps, "eval_steps": cfg.probe_steps, "early_stopping_patience": None}
    )
    folder = ctx.work_dir / f"probe-{abs(hash(reference))}"
    fit = fit_classifier(
        reference, ctx.config.base_dir, labels, sample, validation, short, folder, save_checkpoints=False
    )
    remove_checkpoints(folder)
    return float(fit.trainer.evaluate()[f"eval_{metric}"])


def _budget_check(cfg: SelectConfig, measured: dict[str, Any]) -> dict[str, Any]:
    if cfg.max_params and measured["parameters"] > cfg.max_params:
        return {
            "status": "ruled out",
            "reason": f"{measured['parameters'] / 1e6:.0f}M parameters > select.max_params",
        }
    if cfg.max_latency_ms and measured["latency_ms"] > cfg.max_latency_ms:
        return {
            "status": "ruled out",
            "reason": (
                f"{measured['latency_ms']:.1f} ms per text > select.max_latency_ms {cfg.max_latency_ms:g}"
            ),
        }
    if cfg.time_budget_minutes and measured["estimated_train_minutes"] > cfg.time_budget_minutes:
        return {
            "status": "ruled out",
            "reason": (
                f"full fine-tune estimated at {measured['estimated_train_minutes']:.1f} min "
                f"> select.time_budget_minutes {cfg.time_budget_minutes:g}"
            ),
        }
    return {"status": "kept", "reason": "within budget"}


def _why(winner: dict[str, Any], kept: list[dict[str, Any]], metric: str) -> str:
    others = [r for r in kept if r is not winner]
    if not others:
        return f"the only candidate within budget (validation {metric} {winner['score']:.4f})"
    runner = max(others, key=lambda r: r["score"])
    if round(runner["score"], 4) == round(winner["score"], 4):
        return (
            f"ties {runner['model']} on validation {metric} ({winner['score']:.4f}) and is faster "
            f"({winner['latency_ms']:.1f} vs {runner['latency_ms']:.1f} ms/text)"
        )
    return (
        f"highest validation {metric} of the probe: {winner['score']:.4f} vs {runner['score']:.4f} "
        f"for {runner['model']}"
    )
