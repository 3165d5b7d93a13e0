"""`lmforge monitor`: recent served traffic vs the training data of the run that produced the
model, written as JSON (read by the server's drift gauges) and an HTML page.

The reference is the registered version's own run folder: its `split` train table (texts,
labels) and its `evaluate` confidences on the test set (what a healthy confidence looks like).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmforge.config import Config
from lmforge.errors import LmforgeError
from lmforge.monitor.drift import DriftReport, compare
from lmforge.monitor.page import write_html
from lmforge.pipeline.artifacts import write_json_atomic
from lmforge.state_dir import StateDir


@dataclass
class MonitorResult:
    report: DriftReport
    model: str
    version: str
    html: Path
    json: Path


def monitor(
    config: Config, name: str, *, tracking_uri: str, hours: float = 24.0, use_embeddings: bool = True
) -> MonitorResult:
    """Compare the last `hours` of `name`'s logged predictions with its champion's training data."""
    from lmforge.registry import client_for, resolve
    from lmforge.registry.names import CHAMPION, RUN_ID_TAG
    from lmforge.serve.store import ServeStore

    info = resolve(client_for(tracking_uri), name if "@" in name else f"{name}@{CHAMPION}")
    run_id = info.tags.get(RUN_ID_TAG)
    run_dir = config.resolve_path(config.output_dir) / str(run_id)
    split = run_dir / "split" / "train.parquet"
    if not run_id or not split.exists():
        raise LmforgeError(
            f"the training data of {info.name} version {info.version} (run {run_id}) "
            f"is not in {run_dir.parent}",
            hint="run `lmforge monitor` with the --config of the project that trained it",
        )
    import pandas as pd

    reference = pd.read_parquet(split)
    predictions = run_dir / "evaluate" / "predictions.parquet"
    confidence = pd.read_parquet(predictions)["confidence"].to_numpy() if predictions.exists() else None
    state = StateDir.of(config.serve)
    recent = ServeStore(state.feedback_url).recent_predictions(
        info.name, since=time.time() - hours * 3600 if hours else None
    )
    embed = _embedder(config) if use_embeddings else None
    report = compare(reference, recent, embed=embed, reference_confidence=confidence)
    state.drift.mkdir(parents=True, exist_ok=True)
    json_path, html_path = state.drift_report(info.name), state.drift_report(info.name, "html")
    write_json_atomic(json_path, {**report.to_dict(), "model": info.name, "version": str(info.version)})
    write_html(report, html_path, f"Drift of {info.name} version {info.version} (last {hours:g} h)")
    return MonitorResult(report, info.name, str(info.version), html_path, json_path)


def _embedder(config: Config):  # type: ignore[no-untyped-def]
    from lmforge.models.embed import embed

    def run(texts: list[str]) -> np.ndarray:
        return embed(texts, base_dir=config.base_dir)

    return run


def load_report(path: Path) -> dict[str, object]:
    return dict(json.loads(path.read_text()))
