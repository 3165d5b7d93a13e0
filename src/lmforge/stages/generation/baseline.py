"""baseline (generation, language-modeling): the base model before fine-tuning, scored on
the test split exactly as `evaluate` scores the fine-tuned one (zero-shot answers for
generation), so the report shows before vs after and the gate can require a gain."""

from __future__ import annotations

import pandas as pd

from lmforge.config import BaselineConfig
from lmforge.pipeline.context import Inputs, StageContext, StageResult
from lmforge.stages.generation.scoring import metric_line, score


def run(ctx: StageContext, cfg: BaselineConfig, inputs: Inputs) -> StageResult:
    if not cfg.enabled:
        return StageResult(summary={"skipped": "baseline.enabled is false"})
    test = inputs["split"].table("test")
    reference = ctx.config.model_name
    scores = score(ctx, reference, test, ctx.config.evaluate, "base model")
    ctx.out.write_table(
        "answers",
        pd.DataFrame(
            {
                "question": scores.questions,
                "prompt": scores.prompts,
                "reference": scores.references,
                "answer": scores.answers,
            }
        ),
    )
    ctx.log(f"base model {reference}: {metric_line(scores.metrics)}")
    return StageResult(
        rows={"test": len(test)},
        metrics={f"base_{k}": v for k, v in scores.metrics.items()},
        summary={"model": reference, "tokens_per_second": scores.tokens_per_second},
    )
