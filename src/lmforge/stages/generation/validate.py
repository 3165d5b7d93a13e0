"""validate (generation, language-modeling): reject unusable rows with a reason each.

generation: unreadable rows (the reason from ingest), an empty answer, an empty user
message. language-modeling: missing or blank text. Rejected rows go to `rejected.csv`;
too many rejects (likely a wrong column) stop the run naming the file and first row.
"""

from __future__ import annotations

import json

import pandas as pd

from lmforge.config import ValidateConfig
from lmforge.errors import DataError
from lmforge.pipeline.context import Inputs, StageContext, StageResult
from lmforge.stages.validate import check_rejected, write_rejected
from lmforge.tasks.registry import get_task

COLUMNS = ["file", "split", "source_row", "reason", "content"]


def conversation_reason(messages: str | None, problem: str | None) -> str:
    """Why a generation row cannot train ("" when it can). Missing cells may be None or NaN."""
    if isinstance(problem, str) and problem:
        return problem
    if not isinstance(messages, str):
        return "missing messages"
    turns = json.loads(messages)
    if not turns[-1]["content"].strip():
        return "empty output"
    if not any(m["content"].strip() for m in turns if m["role"] == "user"):
        return "empty instruction"
    return ""


def run(ctx: StageContext, cfg: ValidateConfig, inputs: Inputs) -> StageResult:
    ingest = inputs["ingest"]
    lm = get_task(ctx.config.task).raw_text
    result = StageResult()
    rejected = []
    for name in ("train", "validation", "test"):
        if not ingest.has(f"{name}.parquet"):
            continue
        table = ingest.table(name)
        file = ingest.summary[name]["file"]
        if lm:
            reasons = pd.Series(
                [
                    "missing text" if t is None else "blank text" if not t.strip() else ""
                    for t in table["text"]
                ],
                index=table.index,
            )
            content = table["text"]
        else:
            reasons = pd.Series(
                [conversation_reason(m, p) for m, p in zip(table["messages"], table["problem"], strict=True)],
                index=table.index,
            )
            content = table["messages"]
        bad = pd.DataFrame(
            {
                "file": file,
                "split": name,
                "source_row": table["source_row"],
                "reason": reasons,
                "content": content,
            }
        )[reasons != ""]
        check_rejected(ctx, cfg, name, file, bad, len(table), "the data.*_column settings")
        good = table[reasons == ""].drop(columns=["problem"], errors="ignore")
        ctx.out.write_table(name, good)
        result.rows[name] = len(good)
        result.rows[f"{name}_rejected"] = len(bad)
        rejected.append(bad)
        if name == "train":
            result.summary["lengths"] = _lengths(good, lm)
    write_rejected(ctx, result, rejected, COLUMNS)
    if result.rows.get("train", 0) < 2:
        raise DataError(
            f"only {result.rows.get('train', 0)} usable training row(s)", file=ingest.summary["train"]["file"]
        )
    result.summary["train_file"] = ingest.summary["train"]["file"]
    return result


def _lengths(table: pd.DataFrame, lm: bool) -> dict[str, dict[str, float]]:
    """Characters of prompts and answers (or texts), for the report."""
    if lm:
        parts = {"text": table["text"].str.len()}
    else:
        turns = [json.loads(m) for m in table["messages"]]
        parts = {
            "prompt": pd.Series([sum(len(m["content"]) for m in t[:-1]) for t in turns], dtype=float),
            "answer": pd.Series([len(t[-1]["content"]) for t in turns], dtype=float),
        }
    return {
        name: {
            "mean": float(s.mean()),
            "p50": float(s.median()),
            "p95": float(s.quantile(0.95)),
            "max": float(s.max()),
        }
        for name, s in parts.items()
    }
