"""evaluate: score the trained model on the held-out test split.

Outputs: `predictions` (every test row with predicted label and confidence),
`per_class` (precision / recall / F1 / support per label), `confusion` (matrix), and
`worst_errors` (the wrong predictions the model was most sure of).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from lmforge.config import EvaluateConfig
from lmforge.pipeline.context import Inputs, StageContext, StageResult
from lmforge.tasks.classification import metrics


def run(ctx: StageContext, cfg: EvaluateConfig, inputs: Inputs) -> StageResult:
    from lmforge.models.scorer import load_scorer, reorder

    split, train = inputs["split"], inputs["train"]
    labels: list[str] = split.json("labels")
    test = split.table("test")
    model_dir = train.path("model")
    max_length = recorded_max_length(train)
    scorer = load_scorer(model_dir, max_length=max_length)  # any kind: transformer, linear, ensemble
    texts = test["text"].tolist()
    with ctx.progress("predicting test set", total=len(texts)) as bar:
        probs = scorer.proba(texts, batch_size=cfg.batch_size, on_batch=bar.advance)
    probs = reorder(probs, scorer.labels, labels, where=f"the trained {scorer.kind} model")
    ensemble = train.json("ensemble") if train.has("ensemble.json") else None
    if ensemble and ensemble["used"] and scorer.kind == "transformer":
        from lmforge.training.ensemble import folder_proba

        members = sorted(train.path("ensemble").glob("member-*"))
        ctx.log(f"averaging {1 + len(members)} ensemble members")
        probs = np.mean(
            [probs]
            + [
                folder_proba(m, texts, batch_size=cfg.batch_size, max_length=max_length or 128)
                for m in members
            ],
            axis=0,
        )
    predicted_ids = probs.argmax(axis=1)
    predicted = [labels[i] for i in predicted_ids]
    truth = test["label"].tolist()
    result = StageResult(rows={"test": len(test)}, metrics=metrics(truth, predicted))

    predictions = test.assign(
        predicted=predicted,
        confidence=probs.max(axis=1),
        true_label_probability=[probs[i, labels.index(t)] for i, t in enumerate(truth)],
        correct=[p == t for p, t in zip(predicted, truth, strict=True)],
    )
    ctx.out.write_table("predictions", predictions)
    ctx.out.write_json("per_class", _per_class(truth, predicted, labels))
    ctx.out.write_json(
        "confusion",
        {
            "labels": labels,
            "matrix": confusion_matrix(truth, predicted, labels=labels).tolist(),
        },
    )
    wrong = predictions[~predictions["correct"]].sort_values("confidence", ascending=False)
    worst = wrong.head(cfg.worst_errors)[["source_row", "text", "label", "predicted", "confidence"]].to_dict(
        "records"
    )
    ctx.out.write_json("worst_errors", worst)

    baseline = inputs["baseline"].metrics
    for name in ("accuracy", "f1_macro"):
        if f"tfidf_{name}" in baseline:
            result.metrics[f"gain_{name}_vs_tfidf"] = result.metrics[name] - baseline[f"tfidf_{name}"]
    result.summary["errors"] = int((~predictions["correct"]).sum())
    result.summary["mean_confidence"] = float(np.mean(probs.max(axis=1)))
    ctx.log(f"test accuracy {result.metrics['accuracy']:.3f}, macro-F1 {result.metrics['f1_macro']:.3f}")
    return result


def recorded_max_length(train: Any) -> int | None:
    """The token limit the train stage recorded; None when it has none (a linear model reads
    words, not tokens), and then a transformer uses the limit saved in its own config."""
    if not train.has("hyperparameters.json"):
        return None
    value = train.json("hyperparameters").get("max_length")
    return int(value) if value else None


def _per_class(truth: list[str], predicted: list[str], labels: list[str]) -> list[dict[str, object]]:
    p, r, f, s = precision_recall_fscore_support(truth, predicted, labels=labels, zero_division=0)
    return [
        {
            "label": label,
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "support": int(s[i]),
        }
        for i, label in enumerate(labels)
    ]
