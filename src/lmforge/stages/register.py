"""register: log the run to MLflow, register the model as a new version and give it the
alias the gate decided: `champion` when it passed, else `challenger`.

The alias moves through `registry.lifecycle` like a person's `lmforge models promote`, so an
automatic promotion (by `lmforge run` or `lmforge retrain`) is remembered in the champion
history and `lmforge models rollback` can undo it.

Idempotent: a model whose content hash is already registered under the same name is not
registered twice; the existing version is reported (and aliased) instead.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import yaml

from lmforge.config import RegisterConfig
from lmforge.models.kinds import kind_of
from lmforge.pipeline.context import Inputs, StageContext, StageResult
from lmforge.registry import RegistryError, client_for, experiment_id, tracking_uri
from lmforge.registry.lifecycle import promote, set_challenger
from lmforge.registry.names import (
    CHALLENGER,
    CHAMPION,
    CHECK_TAG,
    GATE_TAG,
    HASH_TAG,
    KIND_TAG,
    METRIC_TAG_PREFIX,
    RUN_ID_TAG,
    SCORE_TAG,
    TASK_TAG,
)
from lmforge.registry.orphans import end_orphans, end_run, owner_tags
from lmforge.registry.versions import ModelRef
from lmforge.stages.gate import CHAMPION_CHECK, testset_hash

# Metrics shown as version tags, and those the gate may compare a later model on.
HEADLINE = ("accuracy", "f1_macro", "rouge_l", "perplexity")
GATE_METRICS = ("accuracy", "f1_macro", "f1_weighted", "rouge_l", "exact_match", "perplexity")


def run(ctx: StageContext, cfg: RegisterConfig, inputs: Inputs) -> StageResult:
    if not ctx.config.tracking.enabled:
        ctx.log("tracking disabled: nothing logged to MLflow")
        return StageResult(summary={"skipped": "tracking.enabled is false"})
    train = inputs["train"]
    uri = tracking_uri(ctx.config)
    client = client_for(uri)
    exp_id = experiment_id(client, ctx.config)
    name = cfg.model_name or ctx.config.project_name
    model_hash = train.content_hash

    for orphan, status in end_orphans(client, exp_id):
        ctx.warn(f"MLflow run {orphan} was left RUNNING by a killed process: marked {status}")
    # Only a FINISHED run holds everything `_log` writes; a FAILED or RUNNING one is partial.
    previous = client.search_runs(
        [exp_id],
        filter_string=f"tags.`{HASH_TAG}` = '{model_hash}' and attributes.status = 'FINISHED'",
        max_results=1,
    )
    if previous:
        run_id = previous[0].info.run_id
        version = _version_of(client, name, run_id) if cfg.enabled else None
        if version is not None or not cfg.enabled:
            _log_export(client, run_id, inputs)  # a model tracked before it was exported
            ctx.log(
                f"model already tracked in MLflow run {run_id}"
                + (f", registered as {name} version {version}" if version else "")
            )
            alias = _alias(client, name, version, ctx, inputs) if version else None
            return StageResult(
                summary={
                    "mlflow_run_id": run_id,
                    "model_name": name,
                    "version": version,
                    "alias": alias,
                    "reused": True,
                    "tracking_uri": uri,
                }
            )

    run = client.create_run(
        exp_id, run_name=ctx.run_id, tags={HASH_TAG: model_hash, RUN_ID_TAG: ctx.run_id, **owner_tags()}
    )
    run_id = run.info.run_id
    version = alias = None
    try:
        _log(client, run_id, ctx, inputs)
        if cfg.enabled:
            version = _register(client, name, run_id, run.info.artifact_uri, ctx, inputs)
            alias = _alias(client, name, version, ctx, inputs)
    except BaseException as exc:
        # As an orphan would be ended: no RUNNING run, no partial model copy left for the retry.
        why = f"register failed: {str(exc)[:200] or type(exc).__name__}"
        with contextlib.suppress(Exception):  # the store may be what failed: the next run ends it
            end_run(client, client.get_run(run_id), why)
        raise
    client.set_terminated(run_id)
    ctx.log(
        f"MLflow run {run_id}"
        + (f"; registered {name} version {version}" if version else "")
        + (f" as {alias}" if alias else "")
    )
    return StageResult(
        summary={
            "mlflow_run_id": run_id,
            "model_name": name,
            "version": version,
            "alias": alias,
            "reused": False,
            "tracking_uri": uri,
        }
    )


def _log(client: Any, run_id: str, ctx: StageContext, inputs: Inputs) -> None:
    from mlflow.entities import Metric, Param

    train, evaluate, report, baseline = (inputs[n] for n in ("train", "evaluate", "report", "baseline"))
    # The resolved config the runner saved for this run: a record of what produced the model,
    # logged once per model hash (a rerun with the same model reuses the MLflow run), so it
    # is not a setting of this stage and reading it whole does not widen the stage's key.
    params = _flatten(yaml.safe_load((ctx.run_dir / "config.yaml").read_text(encoding="utf-8")))
    params = {k: str(v)[:500] for k, v in params.items()}
    metrics = []
    # A linear model's train artifact has no training curve.
    for entry in train.json("history") if train.has("history.json") else []:
        step = int(entry.get("step", 0))
        for key, value in entry.items():
            if key in ("step", "epoch") or not isinstance(value, (int, float)):
                continue
            metrics.append(Metric(f"train/{key}", float(value), 0, step))
        if "epoch" in entry:
            metrics.append(Metric("train/epoch", float(entry["epoch"]), 0, step))
    for key, value in evaluate.metrics.items():
        metrics.append(Metric(f"test/{key}", float(value), 0, 0))
    for key, value in baseline.metrics.items():
        metrics.append(Metric(f"baseline/{key}", float(value), 0, 0))
    for start in range(0, len(metrics), 900):  # MLflow caps one batch at 1000 entries
        client.log_batch(run_id, metrics=metrics[start : start + 900])
    param_list = [Param(k, v) for k, v in params.items()]
    for start in range(0, len(param_list), 90):
        client.log_batch(run_id, params=param_list[start : start + 90])
    client.log_artifact(run_id, str(report.path("report.html")))
    for png in sorted(report.folder.glob("*.png")):
        client.log_artifact(run_id, str(png))
    client.log_artifact(run_id, str(ctx.run_dir / "config.yaml"))
    client.log_artifacts(run_id, str(train.path("model")), "model")
    _log_export(client, run_id, inputs)


def _log_export(client: Any, run_id: str, inputs: Inputs) -> None:
    """ONNX graphs, model card, GGUF: every export file but the manifest, once per run."""
    if "export" not in inputs:
        return
    logged = {Path(a.path).name for a in client.list_artifacts(run_id, "export")}
    for path in sorted(inputs["export"].folder.iterdir()):
        if path.is_file() and path.name != "manifest.json" and path.name not in logged:
            client.log_artifact(run_id, str(path), "export")


def _alias(client: Any, name: str, version: str, ctx: StageContext, inputs: Inputs) -> str | None:
    """`champion` if the gate passed, else `challenger`; None for a version someone archived.

    Promotion goes through `registry.lifecycle.promote`: the champion it replaces is pushed on
    the history that `lmforge models rollback` walks back, and a challenger that wins loses
    that alias. An archived version (the same model trained again) gets no alias: archiving
    was a person's decision, and a rerun does not overrule it.
    """
    gate = inputs["gate"].summary
    passed = gate.get("passed", True)
    reasons = "; ".join(gate.get("reasons", [])) or "passed"
    client.set_model_version_tag(name, version, GATE_TAG, reasons[:4000])
    ref = ModelRef(name, version=version)
    try:
        if passed:
            promote(client, ref)
        else:
            set_challenger(client, ref)
    except RegistryError as exc:
        ctx.warn(f"{exc.message}: registered without an alias")
        return None
    if passed and inputs["gate"].has("decision.json"):
        checks = [c for c in inputs["gate"].json("decision")["checks"] if c["name"] == CHAMPION_CHECK]
        if checks:
            client.set_model_version_tag(name, version, CHECK_TAG, json.dumps(checks[0])[:4900])
    return CHAMPION if passed else CHALLENGER


def _register(
    client: Any, name: str, run_id: str, artifact_uri: str, ctx: StageContext, inputs: Inputs
) -> str:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, description=f"lmforge project {ctx.config.project_name}")
    except MlflowException as exc:
        if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
            raise
    metrics = inputs["evaluate"].metrics
    test = testset_hash(inputs["split"].table("test")) if "split" in inputs else None
    tags = {
        RUN_ID_TAG: ctx.run_id,
        HASH_TAG: inputs["train"].content_hash,
        TASK_TAG: ctx.config.task,
        KIND_TAG: kind_of(inputs["train"].path("model")),
        **{f"{METRIC_TAG_PREFIX}{k}": f"{v:.4f}" for k, v in metrics.items() if k in HEADLINE},
        # The gate compares later models with this one on the same test set by these tags.
        **{
            SCORE_TAG.format(test=test, metric=k): f"{v:.6f}"
            for k, v in metrics.items()
            if test and k in GATE_METRICS
        },
    }
    version = client.create_model_version(name, source=f"{artifact_uri}/model", run_id=run_id, tags=tags)
    return str(version.version)


def _version_of(client: Any, name: str, run_id: str) -> str | None:
    try:
        versions = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    except Exception:  # the registered model may not exist
        return None
    return str(versions[0].version) if versions else None


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config sections as `section.key` params."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
