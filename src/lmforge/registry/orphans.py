"""MLflow runs whose logging process was killed: end them instead of leaving them RUNNING.

`register` and `lmforge models import` tag the MLflow run they create with its owner
(`PID@HOST`, `names.OWNER_TAG`). A `kill -9` while they log leaves the run RUNNING forever,
holding a partial copy of the model (~the model's size). The next `register` / import in the
same experiment ends every RUNNING run whose owner is dead on this host:

- no model version points at it: its artifacts are deleted and it is marked FAILED. The retry
  logs the model again into a fresh run. Reusing the orphan instead would mix a half-logged run
  (params that MLflow refuses to change, metrics of another config) with the retry, and would
  make "this run is complete" depend on which step the kill hit; a FAILED run with no files
  records the killed attempt honestly and costs no disk.
- a model version points at it (the kill came after `create_model_version`): everything was
  logged and the version serves from its files, so they are kept and the run is marked FINISHED;
  `register`'s retry then reuses it like any run of the same model.

A run of another host, or without an owner tag (written by an older lmforge), is left alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lmforge.owner import owner, owner_dead
from lmforge.registry.names import ORPHAN_TAG, OWNER_TAG

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient


def owner_tags() -> dict[str, str]:
    """Tags that let a later process tell whether this run's logger is still alive."""
    return {OWNER_TAG: owner()}


def end_orphans(client: MlflowClient, experiment: str) -> list[tuple[str, str]]:
    """End the RUNNING runs of `experiment` whose owner died; (run id, status given) for each."""
    ended = []
    runs = client.search_runs([experiment], filter_string="attributes.status = 'RUNNING'", max_results=1000)
    for run in runs:
        token = run.data.tags.get(OWNER_TAG)
        if not token or not owner_dead(token):
            continue
        ended.append((run.info.run_id, end_run(client, run, f"its process {token} died while logging it")))
    return ended


def end_run(client: MlflowClient, run: Any, why: str) -> str:
    """FAILED with its artifacts deleted, or FINISHED when a model version serves from them."""
    run_id = run.info.run_id
    if client.search_model_versions(f"run_id = '{run_id}'"):
        client.set_tag(run_id, ORPHAN_TAG, f"{why}; a model version was registered, files kept")
        client.set_terminated(run_id, "FINISHED")
        return "FINISHED"
    # Deleted first: a kill right here leaves the run RUNNING, and the next process retries.
    deleted = _delete_artifacts(run.info.artifact_uri)
    files = "its partial artifacts were deleted" if deleted else "its artifact store could not delete them"
    client.set_tag(run_id, ORPHAN_TAG, f"{why}; {files}")
    client.set_terminated(run_id, "FAILED")
    return "FAILED"


def _delete_artifacts(artifact_uri: str) -> bool:
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    try:
        get_artifact_repository(artifact_uri).delete_artifacts()
    except Exception:  # a store that cannot delete (a server without proxied artifacts)
        return False
    return True
