"""evaluate (generation, language-modeling): the fine-tuned model on the test split,
scored like the base model in `baseline` (perplexity; ROUGE-1/2/L, BLEU and exact match
of greedy answers), with the gains over the base model and a table of sample answers
(prompt, reference, base model, fine-tuned) for the report."""

from __future__ import annotations

import pandas as pd

from lmforge.config import EvaluateConfig
from lmforge.pipeline.context import Inputs, StageContext, StageResult
from lmforge.stages.generation.scoring import metric_line, score
from lmforge.tasks.generation_eval import GREATER_IS_BETTER


def run(ctx: StageContext, cfg: EvaluateConfig, inputs: Inputs) -> StageResult:
    test = inputs["split"].table("test")
    scores = score(ctx, str(inputs["train"].path("model")), test, cfg, "fine-tuned")
    metrics = dict(scores.metrics)
    base = inputs["baseline"].metrics
    for key, value in scores.metrics.items():
        if f"base_{key}" in base and GREATER_IS_BETTER.get(key):
            metrics[f"gain_{key}_vs_base"] = value - base[f"base_{key}"]
    if "base_perplexity" in base:  # lower is better: how much of the base perplexity is left
        metrics["perplexity_ratio_vs_base"] = scores.metrics["perplexity"] / base["base_perplexity"]
    answers = pd.DataFrame(
        {
            "question": scores.questions,
            "prompt": scores.prompts,
            "reference": scores.references,
            "answer": scores.answers,
        }
    )
    if inputs["baseline"].has("answers.parquet"):
        before = inputs["baseline"].table("answers")
        if len(before) == len(answers):
            answers.insert(3, "base_answer", before["answer"].tolist())
    ctx.out.write_table("answers", answers)
    ctx.out.write_json("samples", answers.head(cfg.samples).to_dict("records"))
    ctx.log(f"fine-tuned: {metric_line(metrics)}")
    return StageResult(
        rows={"test": len(test)},
        metrics=metrics,
        summary={"tokens_per_second": scores.tokens_per_second},
    )
