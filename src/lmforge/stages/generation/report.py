"""report (generation, language-modeling): one self-contained HTML page: before vs after
fine-tuning, sample answers side by side, data handling, training and stage timings."""

from __future__ import annotations

import base64
from typing import Any

from lmforge.pipeline.context import Inputs, StageContext, StageResult
from lmforge.report import plots
from lmforge.report.assemble import common_context, render

COLUMNS = [
    ("perplexity", "perplexity ↓"),
    ("rouge1", "ROUGE-1"),
    ("rouge2", "ROUGE-2"),
    ("rouge_l", "ROUGE-L"),
    ("bleu", "BLEU"),
    ("exact_match", "exact match"),
]


def run(ctx: StageContext, cfg: Any, inputs: Inputs) -> StageResult:
    train = inputs["train"]
    curves = plots.training_curves(train.json("history"), "loss")
    ctx.out.path("training_curves.png").write_bytes(curves)
    images = {"training_curves": curves}
    if "tune" in inputs:  # the search's own plots, as the tune stage drew them
        for name in ("hpo_history", "hpo_trials", "hpo_importance"):
            if inputs["tune"].has(f"{name}.png"):
                images[name] = inputs["tune"].path(f"{name}.png").read_bytes()
    html = _render(ctx, inputs, {k: base64.b64encode(v).decode() for k, v in images.items()})
    ctx.out.write_text("report.html", html)
    ctx.log(f"report: {ctx.run_dir / 'report' / 'report.html'}")
    return StageResult(summary={"bytes": len(html)})


def _fmt(key: str, value: float | None) -> str | None:
    if value is None:
        return None
    return f"{value:.1f}" if key == "bleu" else f"{value:.2f}" if key == "perplexity" else f"{value:.3f}"


def _render(ctx: StageContext, inputs: Inputs, images: dict[str, str]) -> str:
    clean, split, baseline, train, evaluate, gate = (
        inputs[n] for n in ("clean", "split", "baseline", "train", "evaluate", "gate")
    )
    metrics, base = evaluate.metrics, baseline.metrics
    columns = [(k, label) for k, label in COLUMNS if k in metrics]
    comparison = []
    if base:
        comparison.append(
            {
                "name": f"base model {baseline.summary['model']}",
                **{k: _fmt(k, base.get(f"base_{k}")) for k, _ in columns},
            }
        )
    comparison.append({"name": "fine-tuned", **{k: _fmt(k, metrics.get(k)) for k, _ in columns}})
    summary, hyper = train.summary, train.json("hyperparameters")  # after tuning
    evaluate_cfg = ctx.config.evaluate
    return render(
        "report_generation.html.j2",
        **common_context(ctx, inputs),
        metrics=metrics,
        base=base,
        columns=columns,
        comparison=comparison,
        samples=evaluate.json("samples") if evaluate.has("samples.json") else [],
        sampling=evaluate_cfg.do_sample,
        max_new_tokens=evaluate_cfg.max_new_tokens,
        tokens_per_second=evaluate.summary.get("tokens_per_second", 0.0),
        gate=gate.json("decision") if gate.has("decision.json") else None,
        leaked=split.manifest["rows"].get("leaked", 0),
        removed=clean.summary.get("removed", {}),
        pii=clean.summary.get("pii", {}),
        lengths=inputs["validate"].summary.get("lengths", {}),
        train={
            **summary,
            **{
                k: hyper[k]
                for k in ("lora_r", "lora_alpha", "lora_dropout", "trainable_layers", "max_length")
            },
            "long_examples": hyper["long_examples"],
            "parameters_m": f"{summary['parameters'] / 1e6:.1f}",
            "trainable": f"{summary['trainable_parameters'] / 1e6:.2f}M",
            "trainable_share": f"{summary['trainable_parameters'] / max(summary['parameters'], 1):.1%}",
            "steps": int(train.metrics["steps"]),
            "seconds": train.metrics["train_seconds"],
            "seconds_per_step": train.metrics["seconds_per_step"],
            "best_validation_perplexity": train.metrics["best_validation_perplexity"],
        },
        export=inputs["export"].summary if "export" in inputs else None,
        tune=_tune(inputs),
        images=images,
    )


def _tune(inputs: Inputs) -> dict[str, Any] | None:
    if "tune" not in inputs:
        return None
    import pandas as pd

    tune = inputs["tune"]
    trials = pd.read_csv(tune.path("trials.csv"))
    shown = ["number", "state", "value", "steps"] + [c for c in trials if c.startswith("param_")]
    top = trials[shown].sort_values("value").head(10)  # lowest validation loss first
    rows = [
        ["" if pd.isna(v) else round(v, 6) if isinstance(v, float) else v for v in row]
        for row in top.itertuples(index=False)
    ]
    best = {k: f"{v:.3g}" if isinstance(v, float) else v for k, v in tune.summary["best_params"].items()}
    return {
        **tune.summary,
        "best_params": best,
        **tune.metrics,
        "columns": [c.removeprefix("param_") for c in shown],
        "rows": rows,
    }
