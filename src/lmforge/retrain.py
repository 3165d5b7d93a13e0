"""`lmforge retrain`: users' accepted label corrections become training rows, and the
pipeline runs again; the gate decides whether the result replaces the champion.

The feedback is merged into a copy of the training file, `<config dir>/<stem>.with-feedback.csv`,
with provenance columns (`source` = data | feedback, `feedback_id`, `prediction_id`), and the
run reads that file instead of `data.train`. The merge is deterministic (feedback by id), so a
retrain with no new feedback reproduces the same file and every stage is reused.
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


@dataclass
class RetrainResult:
    feedback_rows: int
    merged_file: Path | None
    pipeline: Any  # the PipelineResult, None when there was nothing to learn from


def feedback_url(config: Config) -> str:
    """Where `lmforge serve` stores feedback for this config (the same default)."""
    if config.serve.feedback_url:
        return config.serve.feedback_url
    return f"sqlite:///{(Path(config.serve.state_dir) / 'feedback.db').resolve()}"


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
    if config.task != "classification":
        raise LmforgeError(
            "retrain learns from label feedback, which only classification models receive "
            f"(task: {config.task})",
            hint="add corrected answers to your data file and run `lmforge run`",
        )
    url = store_url or feedback_url(config)
    store = ServeStore(url)
    if accept_all:
        store.accept_pending("label")
    rows = accepted_training_rows(store, config.data.text_column, config.data.label_column)
    pending = store.count_feedback("pending")
    if rows.empty:
        hint = f"{pending} pending: review them or pass --accept-all" if pending else "collect some first"
        raise LmforgeError(f"no accepted label feedback in {url}", hint=hint)
    merged = _merge(config, rows)
    config = load_config(
        config_file, overrides=[*(overrides or []), f"data.train={merged}", "data.format=csv"]
    )
    result = run_pipeline(config, events=events, config_file=str(config_file))
    store.mark_used([int(i) for i in rows["feedback_id"]], result.run_id)
    return RetrainResult(len(rows), merged, result)


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
