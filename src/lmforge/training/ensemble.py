"""Ensemble of the best tuning trials: averaged class probabilities, used only when the
average beats the single best model on the validation split."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lmforge.pipeline.context import StageContext
from lmforge.tasks.classification import metrics, predict_proba
from lmforge.training.recipe import ResolvedTrain


def member_folders(folder: Path) -> list[Path]:
    """Saved trial models in rank order (`rank-1` is the best trial)."""
    found = [p for p in folder.glob("rank-*") if (p / "config.json").exists()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def folder_proba(folder: Path, texts: list[str], *, batch_size: int, max_length: int) -> np.ndarray:
    from lmforge.models.load import load_trained_classifier

    tokenizer, model = load_trained_classifier(folder, on_device=True)
    return predict_proba(model, tokenizer, texts, batch_size=batch_size, max_length=max_length)


def maybe_ensemble(
    ctx: StageContext,
    fit: Any,
    members: Path,
    validation: pd.DataFrame,
    labels: list[str],
    cfg: ResolvedTrain,
) -> dict[str, Any] | None:
    """Average the trained model with the runner-up trials; keep the ensemble in the
    stage output (`ensemble/`) only if it scores higher on validation."""
    # rank-1 is the trial whose parameters the trained model reproduces.
    others = member_folders(members)[1:]
    if not others:
        return None
    texts, truth = validation["text"].tolist(), validation["label"].tolist()
    metric = cfg.metric_for_best_model if cfg.metric_for_best_model != "loss" else "f1_macro"
    size, length = cfg.eval_batch_size, cfg.max_length
    probs = [predict_proba(fit.model, fit.tokenizer, texts, batch_size=size, max_length=length)]
    probs += [folder_proba(folder, texts, batch_size=size, max_length=length) for folder in others]
    single = metrics(truth, [labels[i] for i in probs[0].argmax(axis=1)])[metric]
    averaged = metrics(truth, [labels[i] for i in np.mean(probs, axis=0).argmax(axis=1)])[metric]
    used = averaged > single
    if used:
        for index, folder in enumerate(others, start=2):
            shutil.copytree(folder, ctx.out.path(f"ensemble/member-{index}"))
    decision = {
        "members": 1 + len(others),
        "metric": metric,
        "validation_single": single,
        "validation_ensemble": averaged,
        "used": used,
    }
    ctx.out.write_json("ensemble", decision)
    ctx.log(
        f"ensemble of {decision['members']} models: validation {metric} {averaged:.4f} vs single {single:.4f}"
        + (" - using the ensemble" if used else " - keeping the single model")
    )
    return decision
