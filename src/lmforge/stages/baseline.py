"""baseline: the scores a fine-tuned model must beat (majority class, TF-IDF + LR)."""

from __future__ import annotations

import time

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline

from lmforge.config import BaselineConfig
from lmforge.pipeline.context import Inputs, StageContext, StageResult
from lmforge.tasks.classification import metrics


def run(ctx: StageContext, cfg: BaselineConfig, inputs: Inputs) -> StageResult:
    split = inputs["split"]
    # The same (possibly augmented) train rows the model sees, so the comparison is fair.
    train, test = inputs["augment"].table("train"), split.table("test")
    result = StageResult(rows={"train": len(train), "test": len(test)})
    majority = train["label"].value_counts().idxmax()
    for name, value in metrics(test["label"], [majority] * len(test)).items():
        result.metrics[f"majority_{name}"] = value
    result.summary["majority_class"] = majority
    if not cfg.enabled:
        return result
    started = time.perf_counter()
    model = tfidf_pipeline(cfg)
    model.fit(train["text"], train["label"])
    predicted = model.predict(test["text"])
    for name, value in metrics(test["label"], predicted).items():
        result.metrics[f"tfidf_{name}"] = value
    ctx.out.write_table("tfidf_predictions", test.assign(predicted=predicted))
    result.summary["tfidf_fit_seconds"] = round(time.perf_counter() - started, 3)
    ctx.log(
        f"TF-IDF + LR: accuracy {result.metrics['tfidf_accuracy']:.3f}, "
        f"macro-F1 {result.metrics['tfidf_f1_macro']:.3f}"
    )
    return result


def tfidf_pipeline(cfg: BaselineConfig) -> Pipeline:
    """TF-IDF word n-grams + class-balanced logistic regression (unfitted)."""
    return make_pipeline(
        TfidfVectorizer(
            ngram_range=(1, cfg.ngram_max), max_features=cfg.max_features, sublinear_tf=True, min_df=1
        ),
        LogisticRegression(max_iter=2000, C=10.0, class_weight="balanced"),
    )
