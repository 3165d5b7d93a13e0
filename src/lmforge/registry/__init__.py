"""lmforge's model registry on MLflow: connect, find, move aliases, copy between stores.

The `register` stage creates versions; everything done with them afterwards (by a person,
`lmforge serve`, the UI, or the pipeline's own auto-promotion) goes through this package.

- `names`: every alias and tag name lmforge writes or reads.
- `client`: the tracking URI from a config, a client on it, the project's experiment.
- `versions`: parse `NAME@ALIAS` references, list, resolve and download versions (read-only).
- `lifecycle`: promote, challenge, roll back and archive, keeping the champion history.
- `archive`: a version to a checksummed tarball and back, between stores.
"""

from __future__ import annotations

from lmforge.registry import names
from lmforge.registry.client import (
    RegistryError,
    artifact_root,
    client_for,
    connect,
    default_uri,
    experiment_id,
    local_store,
    tracking_uri,
)
from lmforge.registry.lifecycle import Audit, archive, promote, rollback, set_challenger
from lmforge.registry.transfer import export_version, import_version
from lmforge.registry.versions import (
    REF_FORMS,
    ModelRef,
    VersionInfo,
    download,
    list_models,
    list_versions,
    parse_ref,
    resolve,
    version_record,
)

__all__ = [
    "REF_FORMS",
    "Audit",
    "ModelRef",
    "RegistryError",
    "VersionInfo",
    "archive",
    "artifact_root",
    "client_for",
    "connect",
    "default_uri",
    "download",
    "experiment_id",
    "export_version",
    "import_version",
    "list_models",
    "list_versions",
    "local_store",
    "names",
    "parse_ref",
    "promote",
    "resolve",
    "rollback",
    "set_challenger",
    "tracking_uri",
    "version_record",
]
