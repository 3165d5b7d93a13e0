"""`lmforge retrain`: users' accepted corrections become training rows, and the pipeline
runs again; the gate decides whether the result replaces the champion. The `register`
stage promotes it through `registry.lifecycle`, so `lmforge models rollback` can undo it.

Classification learns from label feedback (the text and its correct label); generation from
corrected answers (what the user asked and the answer they wanted). The feedback is merged
into a copy of the training file, `<config dir>/<stem>.with-feedback.csv` (`.jsonl` for
generation, so chat messages stay lists), with provenance columns (`source` = data |
feedback, `feedback_id`, `prediction_id`), and the run reads that file instead of
`data.train`. The merge is deterministic (feedback by id), so a retrain with no new feedback
reproduces the same file and every stage is reused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from lmforge.config import Config, load_config
from lmforge.datafiles import read_data_file
from lmforge.errors import LmforgeError
from lmforge.pipeline.events import EventBus
from lmforge.state_dir import StateDir


@dataclass
class RetrainResult:
    feedback_rows: int
    merged_file: Path | None
    pipeline: Any  # the PipelineResult, None when there was nothing to learn from


def retrain(
    config_file: Path,
    *,
    overrides: list[str] | None = None,
    accept_all: bool = False,
    store_url: str | None = None,
    events: EventBus | None = None,
) -> RetrainResult:
    """Merge accepted feedback into the training data and rerun the pipeline on it."""
    from lmforge.pipeline.runner import run_pipeline
    from lmforge.serve.store import ServeStore, accepted_training_rows

    config = load_config(config_file, overrides=overrides)
    kind = config.task_def.feedback_kind
    if kind is None:
        raise LmforgeError(
            f"retrain learns from corrections of answers or labels; a {config.task} run has neither",
            hint="add the new text to your data file and run `lmforge run`",
        )
    url = store_url or StateDir.of(config.serve).feedback_url  # where `lmforge serve` stores it
    store = ServeStore(url)
    if accept_all:
        store.accept_pending(kind)
    rows = (
        accepted_training_rows(store, config.data.text_column, config.data.label_column)
        if kind == "label"
        else _corrections(store)
    )
    pending = len(store.feedback(status="pending", kind=kind))
    if rows.empty:
        hint = f"{pending} pending: review them or pass --accept-all" if pending else "collect some first"
        raise LmforgeError(f"no accepted {kind} feedback with its text in {url}", hint=hint)
    merged = _merge(config, rows) if kind == "label" else _merge_answers(config, rows)
    fmt = "csv" if kind == "label" else "jsonl"
    config = load_config(
        config_file, overrides=[*(overrides or []), f"data.train={merged}", f"data.format={fmt}"]
    )
    result = run_pipeline(config, events=events, config_file=str(config_file))
    store.mark_used([int(i) for i in rows["feedback_id"]], result.run_id)
    return RetrainResult(len(rows), merged, result)


def _corrections(store: Any) -> pd.DataFrame:
    """Accepted corrected answers whose question is known; the latest wins per question."""
    items = [f for f in store.feedback(status="accepted", kind="correction") if f.text is not None]
    latest = {f.text: f for f in items}
    return pd.DataFrame(
        [
            {
                "asked": f.text,
                "answer": f.corrected_output,
                "feedback_id": f.id,
                "prediction_id": f.prediction_id,
            }
            for f in sorted(latest.values(), key=lambda f: f.id or 0)
        ],
        columns=["asked", "answer", "feedback_id", "prediction_id"],
    )


def _merge_answers(config: Config, feedback: pd.DataFrame) -> Path:
    """Corrections in the data file's own layout: instruction/output, prompt/response or messages."""
    import json

    d = config.data
    source = config.resolve_path(d.train)
    data = read_data_file(source, format=d.format, encoding=d.encoding).frame.drop(
        columns=["source_row"], errors="ignore"
    )
    if d.messages_column in data.columns:
        new = [
            {d.messages_column: [{"role": "user", "content": a}, {"role": "assistant", "content": b}]}
            for a, b in zip(feedback["asked"], feedback["answer"], strict=True)
        ]
    elif d.prompt_column in data.columns:
        new = [
            {d.prompt_column: a, d.response_column: b}
            for a, b in zip(feedback["asked"], feedback["answer"], strict=True)
        ]
    elif d.instruction_column in data.columns:
        new = [
            {d.instruction_column: a, d.output_column: b}
            for a, b in zip(feedback["asked"], feedback["answer"], strict=True)
        ]
    else:
        raise LmforgeError(f"{source.name}: no instruction, prompt or messages column to add corrections to")
    rows = [{**r, "source": "data"} for r in data.to_dict("records")]
    for item, fid, pid in zip(new, feedback["feedback_id"], feedback["prediction_id"], strict=True):
        rows.append({**item, "source": "feedback", "feedback_id": int(fid), "prediction_id": pid})
    out = config.resolve_path(f"{source.stem}.with-feedback.jsonl")
    tmp = out.with_name(f".{out.name}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            clean = {k: (None if _missing(v) else v) for k, v in row.items()}
            handle.write(json.dumps(clean, ensure_ascii=False, default=str) + "\n")
    tmp.replace(out)
    return out


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # lists (messages) are never missing
        return False


def _merge(config: Config, feedback: pd.DataFrame) -> Path:
    source = config.resolve_path(config.data.train)
    data = read_data_file(source, format=config.data.format, encoding=config.data.encoding).frame
    data = data.drop(columns=["source_row"], errors="ignore")
    data = data.assign(source="data", feedback_id=pd.NA, prediction_id=pd.NA)
    # A corrected text replaces its original row: the user's label is the newer truth.
    text = config.data.text_column
    data = data[~data[text].isin(set(feedback[text]))]
    merged = pd.concat([data, feedback.reindex(columns=data.columns)], ignore_index=True)
    out = config.resolve_path(f"{source.stem}.with-feedback.csv")
    tmp = out.with_name(f".{out.name}.tmp")
    merged.to_csv(tmp, index=False)
    tmp.replace(out)
    return out
