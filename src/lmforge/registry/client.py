"""Connecting to MLflow: where the store is, a quiet client on it, the project's experiment.

Every part of lmforge that talks to MLflow (the gate and register stages, `lmforge models`,
the server, the UI, monitor) builds its client here, so a relative sqlite path, a missing
database or MLflow's log chatter are handled one way. mlflow itself is imported inside the
functions: a cached rerun of the pipeline never pays for importing it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.errors import LmforgeError

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from lmforge.config import Config


class RegistryError(LmforgeError):
    """A model reference, version or lifecycle step the registry cannot honour."""

    headline = "registry error"


def tracking_uri(config: Config) -> str:
    """The configured URI with relative sqlite / file paths made relative to the config file."""
    uri = config.tracking.uri
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + config.resolve_path(uri.removeprefix("sqlite:///")).as_posix()
    if "://" not in uri:  # a plain folder: MLflow's file store
        return config.resolve_path(uri).resolve().as_uri()
    return uri


def local_store(config: Config) -> Path | None:
    """The sqlite file or folder of a local tracking store; None for a server."""
    uri = tracking_uri(config)
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///"))
    if uri.startswith("file://"):
        return Path(uri.removeprefix("file://"))
    return None


def artifact_location(uri: str) -> str | None:
    """`mlartifacts/` beside a sqlite database; None (MLflow's default) for other stores.

    Without it MLflow puts artifacts in `./mlartifacts` of whatever folder the command runs
    from, so the same store would scatter its files as people `cd` around.
    """
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()
    return None


def artifact_root(config: Config) -> str | None:
    """Where the project's experiment keeps artifacts: beside its local database."""
    return artifact_location(tracking_uri(config))


def experiment_id(client: Any, config: Config) -> str:
    """The project's experiment, created on first use."""
    name = config.project_name
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    return str(client.create_experiment(name, artifact_location=artifact_root(config)))


def default_uri() -> str:
    """`$MLFLOW_TRACKING_URI`, else `mlruns.db` in the current folder (the config's default)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(Path.cwd() / 'mlruns.db').as_posix()}"


def client_for(uri: str, *, must_exist: bool = False) -> MlflowClient:
    """A client on `uri` for both tracking and registry, with MLflow's chatter turned down.

    Args:
        uri: an MLflow tracking URI.
        must_exist: refuse a sqlite file that is not there instead of letting MLflow create an
            empty store (a mistyped path would otherwise look like "no models").
    """
    import logging

    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # schema-migration chatter
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if must_exist and uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.is_file():
            raise RegistryError(
                f"no MLflow database at {path}",
                hint="pass --tracking-uri or set MLFLOW_TRACKING_URI; `lmforge run` creates it",
            )
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def connect(client: MlflowClient | str) -> MlflowClient:
    """Accept a client or a URI, so library callers need not build clients themselves."""
    return client_for(client) if isinstance(client, str) else client
