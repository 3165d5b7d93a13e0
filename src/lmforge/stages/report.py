"""report: one self-contained HTML file (images embedded) telling the run's story."""

from __future__ import annotations

import base64
from typing import Any

from lmforge.pipeline.context import Inputs, StageContext, StageResult
from lmforge.report import plots
from lmforge.report.assemble import common_context, render
from lmforge.report.automl_section import automl_section
from lmforge.report.data_section import data_section


def run(ctx: StageContext, cfg: Any, inputs: Inputs) -> StageResult:
    split, train, evaluate = inputs["split"], inputs["train"], inputs["evaluate"]
    metric = train.json("hyperparameters")["metric_for_best_model"]
    confusion = evaluate.json("confusion")
    data, data_images = data_section(inputs, ctx.config.label.min_confidence)
    images = {
        "training_curves": plots.training_curves(train.json("history"), metric),
        "confusion_matrix": plots.confusion(confusion["matrix"], confusion["labels"]),
        "labels": plots.label_distribution(split.summary["label_counts"]),
        **data_images,
    }
    for name, png in images.items():
        ctx.out.path(f"{name}.png").write_bytes(png)
    html = _render(ctx, inputs, {k: base64.b64encode(v).decode() for k, v in images.items()}, data)
    ctx.out.write_text("report.html", html)
    ctx.log(f"report: {ctx.run_dir / 'report' / 'report.html'}")
    return StageResult(summary={"bytes": len(html)})


def _render(ctx: StageContext, inputs: Inputs, images: dict[str, str], data: dict[str, Any]) -> str:
    baseline, train, evaluate = (inputs[n] for n in ("baseline", "train", "evaluate"))
    b = baseline.metrics
    keys = ("accuracy", "f1_macro", "f1_weighted", "precision_macro", "recall_macro")
    comparison = [
        {
            "name": f"majority class ('{baseline.summary['majority_class']}')",
            **{k: b.get(f"majority_{k}") for k in keys},
        },
    ]
    if "tfidf_accuracy" in b:
        comparison.append({"name": "TF-IDF + logistic regression", **{k: b.get(f"tfidf_{k}") for k in keys}})
    comparison.append({"name": _model_name(train.summary), **{k: evaluate.metrics[k] for k in keys}})
    summary = train.summary
    return render(
        "report.html.j2",
        **common_context(ctx, inputs),
        metrics=evaluate.metrics,
        gain=evaluate.metrics.get("gain_f1_macro_vs_tfidf"),
        comparison=comparison,
        lengths=inputs["validate"].summary["text_chars"],
        images=images,
        data=data,
        config_clean=ctx.config.clean,
        train={
            "parameters_m": f"{summary['parameters'] / 1e6:.1f}",
            "steps": int(train.metrics["steps"]),
            "epochs_run": summary["epochs_run"],
            "seconds": train.metrics["train_seconds"],
            "device": summary["device"],
            "precision": summary["precision"],
            "best_checkpoint": summary["best_checkpoint"],
            "resumed_from": summary.get("resumed_from"),
            "ray_train": summary.get("ray_train"),
        },
        automl=automl_section(inputs),
        tuned=summary.get("tuned") or {},
        per_class=evaluate.json("per_class"),
        worst=evaluate.json("worst_errors"),
        export=inputs["export"].summary.get("check") if "export" in inputs else None,
    )


def _model_name(summary: dict[str, Any]) -> str:
    # Auto mode's winner may be a linear model or an ensemble: its candidate name says so.
    return summary["model"] if summary.get("kind") else f"fine-tuned {summary['model']}"
