"""What every task's report page shares: the template environment and the facts read the
same way for every task (run header, rejected rows, split sizes, recipe, stage timings,
library versions). The task's report stage adds its own sections and renders its template.
"""

from __future__ import annotations

import time
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from lmforge.pipeline.context import Inputs, StageContext


def render(template: str, **context: Any) -> str:
    """One self-contained HTML page from `lmforge/report/templates/<template>`."""
    env = Environment(
        loader=PackageLoader("lmforge.report", "templates"), autoescape=select_autoescape(["html", "j2"])
    )
    return env.get_template(template).render(**context)


def common_context(ctx: StageContext, inputs: Inputs) -> dict[str, Any]:
    """The template values every task's report has, from the validate, split and train artifacts."""
    validate, split, train = inputs["validate"], inputs["split"], inputs["train"]
    rejected = validate.summary.get("rejected_reasons", {})
    return {
        "project": ctx.config.project_name,
        "run_id": ctx.run_id,
        "task": ctx.config.task,
        "model": train.summary["model"],
        "created": time.strftime("%Y-%m-%d %H:%M"),
        "rows": {k: v for k, v in split.manifest["rows"].items() if k in ("train", "validation", "test")},
        "rejected_total": sum(rejected.values()),
        "rejected_reasons": rejected,
        "rejected_examples": validate.summary.get("rejected_examples", []),
        "recipe": train.json("recipe") if train.has("recipe.json") else [],
        "stages": stage_times(inputs),
        "versions": train.manifest.get("versions", {}),
        # The run's budget as of this stage (the plan, the seconds so far, every decision).
        "run_budget": ctx.budget.to_json() if ctx.budget is not None else None,
    }


def stage_times(inputs: Inputs) -> list[dict[str, Any]]:
    """Each input stage's time, in the order the report's spec lists its inputs (the graph's)."""
    return [
        {"name": art.stage, "seconds": art.manifest["seconds"], "run_id": art.manifest["run_id"]}
        for art in inputs.values()
    ]
