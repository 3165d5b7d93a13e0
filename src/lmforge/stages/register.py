"""register: log the run to MLflow and register the model as a new version.

Not cached, but idempotent: a model whose content hash is already registered under the
same name is not registered twice; the existing version is reported instead.
"""

from __future__ import annotations

from typing import Any

from lmforge.config import RegisterConfig
from lmforge.pipeline.context import Inputs, StageContext, StageResult
from lmforge.tracking import experiment_id, flatten, tracking_uri

HASH_TAG = "lmforge.model_hash"


def run(ctx: StageContext, cfg: RegisterConfig, inputs: Inputs) -> StageResult:
    if not ctx.config.tracking.enabled:
        ctx.log("tracking disabled: nothing logged to MLflow")
        return StageResult(summary={"skipped": "tracking.enabled is false"})
    import logging

    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # schema-migration chatter

    train, evaluate = inputs["train"], inputs["evaluate"]
    uri = tracking_uri(ctx.config)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp_id = experiment_id(client, ctx.config)
    name = cfg.model_name or ctx.config.project_name
    model_hash = train.content_hash

    previous = client.search_runs(
        [exp_id], filter_string=f"tags.`{HASH_TAG}` = '{model_hash}'", max_results=1
    )
    if previous:
        run_id = previous[0].info.run_id
        version = _version_of(client, name, run_id) if cfg.enabled else None
        if version is not None or not cfg.enabled:
            ctx.log(
                f"model already tracked in MLflow run {run_id}"
                + (f", registered as {name} version {version}" if version else "")
            )
            return StageResult(
                summary={
                    "mlflow_run_id": run_id,
                    "model_name": name,
                    "version": version,
                    "reused": True,
                    "tracking_uri": uri,
                }
            )

    run = client.create_run(
        exp_id, run_name=ctx.run_id, tags={HASH_TAG: model_hash, "lmforge.run_id": ctx.run_id}
    )
    run_id = run.info.run_id
    _log(client, run_id, ctx, inputs)
    version = None
    if cfg.enabled:
        version = _register(client, name, run_id, run.info.artifact_uri, ctx, evaluate.metrics)
    client.set_terminated(run_id)
    ctx.log(f"MLflow run {run_id}" + (f"; registered {name} version {version}" if version else ""))
    return StageResult(
        summary={
            "mlflow_run_id": run_id,
            "model_name": name,
            "version": version,
            "reused": False,
            "tracking_uri": uri,
        }
    )


def _log(client: Any, run_id: str, ctx: StageContext, inputs: Inputs) -> None:
    from mlflow.entities import Metric, Param

    train, evaluate, report, baseline = (inputs[n] for n in ("train", "evaluate", "report", "baseline"))
    params = flatten(ctx.config.model_dump(mode="json", by_alias=True))
    params = {k: str(v)[:500] for k, v in params.items()}
    metrics = []
    for entry in train.json("history"):
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
    client.log_artifact(run_id, str(report.path("confusion_matrix.png")))
    client.log_artifact(run_id, str(report.path("training_curves.png")))
    client.log_artifact(run_id, str(ctx.run_dir / "config.yaml"))
    client.log_artifacts(run_id, str(train.path("model")), "model")


def _register(
    client: Any, name: str, run_id: str, artifact_uri: str, ctx: StageContext, metrics: dict[str, float]
) -> str:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, description=f"lmforge project {ctx.config.project_name}")
    except MlflowException as exc:
        if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
            raise
    tags = {
        "lmforge.run_id": ctx.run_id,
        "task": ctx.config.task,
        **{f"test_{k}": f"{v:.4f}" for k, v in metrics.items() if k in ("accuracy", "f1_macro")},
    }
    version = client.create_model_version(name, source=f"{artifact_uri}/model", run_id=run_id, tags=tags)
    return str(version.version)


def _version_of(client: Any, name: str, run_id: str) -> str | None:
    try:
        versions = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    except Exception:  # the registered model may not exist
        return None
    return str(versions[0].version) if versions else None
