"""crossval: k-fold cross-validation of the training recipe over train + validation.

For small datasets one validation split is a noisy judge; k models trained on k-1 folds
and scored on the held-out fold give the metric's mean and spread. The held-out fold is
only scored at the end (no early stopping or checkpoint choice on it), so the estimate
is not tuned to it. The models are discarded; the train stage's model is the one shipped.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from lmforge.config import EvaluateConfig
from lmforge.pipeline.context import Inputs, StageContext, StageResult


def run(ctx: StageContext, cfg: EvaluateConfig, inputs: Inputs) -> StageResult:
    from sklearn.model_selection import StratifiedKFold

    from lmforge.training.fit import fit_classifier, remove_checkpoints

    assert cfg.cv_folds is not None
    split = inputs["split"]
    labels: list[str] = split.json("labels")
    data = pd.concat([inputs["augment"].table("train"), split.table("validation")], ignore_index=True)
    reference = inputs["select"].json("choice")["model"] if "select" in inputs else ctx.config.model_name
    train_cfg = ctx.config.train
    tuned: dict[str, Any] = inputs["tune"].json("best")["params"] if "tune" in inputs else {}
    train_cfg = train_cfg.model_copy(update={**tuned, "early_stopping_patience": None})
    smallest = int(data["label"].value_counts().min())
    folds = min(cfg.cv_folds, smallest)
    if folds < cfg.cv_folds:
        ctx.warn(f"the smallest class has {smallest} rows: using {folds} folds instead of {cfg.cv_folds}")
    if folds < 2:
        ctx.warn("a class has a single row: cross-validation skipped")
        ctx.out.write_json("folds", [])
        return StageResult(summary={"skipped": "a class has a single row"})
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=train_cfg.seed)
    results = []
    started = time.perf_counter()
    with ctx.progress("folds", total=folds) as bar:
        for fold, (train_index, held_index) in enumerate(splitter.split(data, data["label"]), start=1):
            held = data.iloc[held_index]
            folder = ctx.work_dir / f"fold-{fold}"
            fit = fit_classifier(
                reference,
                ctx.config.base_dir,
                labels,
                data.iloc[train_index],
                held,
                train_cfg,
                folder,
                save_checkpoints=False,
            )
            scores = fit.trainer.evaluate()
            remove_checkpoints(folder)
            results.append(
                {
                    "fold": fold,
                    "rows": len(held),
                    **{k.removeprefix("eval_"): float(v) for k, v in scores.items() if _is_metric(k)},
                }
            )
            bar.advance(1)
            ctx.log(f"fold {fold}/{folds}: macro-F1 {results[-1]['f1_macro']:.4f}")
    ctx.out.write_json("folds", results)
    out: dict[str, float] = {"folds": float(folds), "seconds": time.perf_counter() - started}
    for name in ("accuracy", "f1_macro"):
        values = np.array([r[name] for r in results])
        out[f"{name}_mean"] = float(values.mean())
        out[f"{name}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    ctx.log(f"{folds}-fold macro-F1 {out['f1_macro_mean']:.4f} ± {out['f1_macro_std']:.4f}")
    return StageResult(rows={"rows": len(data)}, metrics=out)


def _is_metric(key: str) -> bool:
    return key.startswith("eval_") and key.removeprefix("eval_") in (
        "accuracy",
        "f1_macro",
        "f1_weighted",
        "precision_macro",
        "recall_macro",
        "loss",
    )
