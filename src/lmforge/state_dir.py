"""The serve state folder (`serve.state_dir`, default ``lmforge-state/``) and its layout.

The server, the UI and the `keys`, `models`, `monitor` and `retrain` commands all read or
write this folder; this module is the one place that spells its layout, so they cannot
drift apart (a key created where the server does not look is a key that does not work)::

    lmforge-state/
      keys.db              API key hashes and the audit log (``serve.keys_url`` replaces it)
      feedback.db          prediction log and feedback, SQLite WAL (``serve.feedback_url`` replaces it)
      models/NAME-vN/      registry versions downloaded by the server and the UI playground
      drift/NAME.json      latest drift report of a model (read by /metrics and the UI)
      drift/NAME.html      the same report as a page

A relative ``serve.state_dir`` is taken from the current folder (where the server runs), as
the setting's description says; that is resolved once, here.

Deliberately light (no SQLAlchemy, no FastAPI): the CLI imports it at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lmforge.config import ServeConfig

KEYS_DB = "keys.db"
FEEDBACK_DB = "feedback.db"
MODELS = "models"
DRIFT = "drift"


def sqlite_url(path: str | Path) -> str:
    """The SQLAlchemy URL of a local SQLite file."""
    return f"sqlite:///{Path(path)}"


def database_url(target: str | Path) -> str:
    """A SQLAlchemy URL as given, or the URL of the SQLite file a path names (``--db keys.db``)."""
    return target if isinstance(target, str) and "://" in target else sqlite_url(target)


def sqlite_file(url: str) -> Path | None:
    """The file behind a ``sqlite:///`` URL; None for other databases and in-memory SQLite."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url in (prefix, f"{prefix}:memory:"):
        return None
    return Path(url[len(prefix) :].split("?", 1)[0])


@dataclass(frozen=True)
class StateDir:
    """Where one server's state lives: `root` plus the database URLs the config may override.

    Attributes:
        root: The state folder, absolute.
        keys_override: ``serve.keys_url`` when set (e.g. PostgreSQL shared by several hosts).
        feedback_override: ``serve.feedback_url`` when set.
    """

    root: Path
    keys_override: str | None = None
    feedback_override: str | None = None

    @classmethod
    def of(cls, serve: ServeConfig) -> StateDir:
        """The state folder a `serve:` config section names, resolved from the current folder."""
        return cls(Path(serve.state_dir).resolve(), serve.keys_url, serve.feedback_url)

    @property
    def keys_db(self) -> Path:
        return self.root / KEYS_DB

    @property
    def feedback_db(self) -> Path:
        return self.root / FEEDBACK_DB

    @property
    def keys_url(self) -> str:
        """The API keys database: ``serve.keys_url``, else ``keys.db`` in this folder."""
        return self.keys_override or sqlite_url(self.keys_db)

    @property
    def feedback_url(self) -> str:
        """The prediction log and feedback store: ``serve.feedback_url``, else ``feedback.db`` here."""
        return self.feedback_override or sqlite_url(self.feedback_db)

    @property
    def models(self) -> Path:
        return self.root / MODELS

    def model_dir(self, name: str, version: str) -> Path:
        """Where registry version `version` of `name` is downloaded (shared by server and UI)."""
        return self.models / f"{name}-v{version}"

    @property
    def drift(self) -> Path:
        return self.root / DRIFT

    def drift_report(self, name: str, suffix: str = "json") -> Path:
        """The latest drift report of model `name` (`suffix` json for /metrics, html for people)."""
        return self.drift / f"{name}.{suffix}"

    def create(self) -> StateDir:
        """Make the folder (a server creates it at start-up); returns self for chaining."""
        self.root.mkdir(parents=True, exist_ok=True)
        return self
