"""MLflow connection helpers: resolve the tracking URI and the project's experiment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmforge.config import Config


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


def artifact_root(config: Config) -> str | None:
    """Local stores keep artifacts beside the database instead of in the current folder."""
    uri = tracking_uri(config)
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
    return None


def experiment_id(client: Any, config: Config) -> str:
    """The project's experiment, created on first use."""
    name = config.project_name
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    return str(client.create_experiment(name, artifact_location=artifact_root(config)))


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config sections as `section.key` params."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
