"""`lmforge keys`: create, list and revoke the API keys that `lmforge serve` checks.

Thin on purpose: the rules (scopes, rate forms, what is stored) live in `lmforge.serve.key_rules`
and `lmforge.serve.keys`. The database is the one the server of the project uses: `--db` when
given, else the config's `serve.keys_url`, else `keys.db` in its `serve.state_dir`; the config is
`--config`, or `lmforge.yaml` in the current folder when there is one (as for `lmforge ui`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from lmforge.cli_support import console, errors
from lmforge.serve.key_rules import ApiKeyError, check_scope, parse_rate
from lmforge.state_dir import StateDir, database_url, sqlite_file

if TYPE_CHECKING:
    from lmforge.serve.keys import KeyStore

DEFAULT_CONFIG = Path("lmforge.yaml")

keys_app = typer.Typer(
    no_args_is_help=True,
    help="Create, list and revoke API keys for `lmforge serve` (only their hashes are stored).",
)

_DB_OPTION = typer.Option(
    None,
    "--db",
    help="The keys database: a SQLite file or a SQLAlchemy URL (default: the config's, see --config).",
)
_CONFIG_OPTION = typer.Option(
    None,
    "--config",
    "-c",
    help="The project config whose serve.keys_url / serve.state_dir name the database "
    "(default: ./lmforge.yaml when present, else ./lmforge-state/keys.db).",
)


def project_state(config: Path | None = None) -> StateDir:
    """The state folder of the project's server: `config`, else ./lmforge.yaml if present, else defaults."""
    from lmforge.config import ServeConfig, load_config

    if config is None and DEFAULT_CONFIG.is_file():
        config = DEFAULT_CONFIG
    return StateDir.of(load_config(config).serve if config else ServeConfig())


def keys_database(db: str | None, config: Path | None) -> str:
    """The URL of the keys database the options name (order in the module docstring)."""
    return database_url(db) if db else project_state(config).keys_url


def _store(url: str) -> KeyStore:
    from lmforge.serve.keys import KeyStore  # SQLAlchemy: imported only when a keys command runs

    return KeyStore(url)


def _existing(url: str) -> KeyStore | None:
    """The store at `url`, or None for a SQLite file that does not exist: listing or revoking
    must not create an empty database at a mistyped path."""
    file = sqlite_file(url)
    return None if file is not None and not file.exists() else _store(url)


def _short(timestamp: str | None) -> str:
    # "2024-05-01T12:03:04+00:00" -> "2024-05-01 12:03": minutes are enough to tell keys apart.
    return timestamp[:16].replace("T", " ") if timestamp else "-"


@keys_app.command()
def create(
    scope: str = typer.Option(
        ..., "--scope", help="predict, feedback (feedback and predict) or admin (everything)."
    ),
    name: str | None = typer.Option(
        None, "--name", help="A label to tell keys apart (default: SCOPE-PREFIX)."
    ),
    rate: str | None = typer.Option(
        None, "--rate", help="Rate limit: 50/s, 600/m or 10/h (default: unlimited)."
    ),
    db: str | None = _DB_OPTION,
    config: Path | None = _CONFIG_OPTION,
) -> None:
    """Create a key and print its secret once; only its hash is stored."""
    with errors():
        # Validate before KeyStore creates the database, so a typo leaves no files behind.
        checked = check_scope(scope)
        if rate is not None:
            parse_rate(rate)
        store = _store(keys_database(db, config))
        created = store.create(checked, name=name, rate=rate)
        info = created.info
        console.print(
            f"created key [bold]{info.id}[/] '{escape(info.name)}' "
            f"(scope {info.scope}, rate {escape(info.rate or 'unlimited')}, prefix {info.prefix})"
        )
        console.print(created.secret, markup=False, highlight=False, soft_wrap=True)
        console.print(
            "[bold yellow]store it now: it cannot be shown again[/] "
            f"(only its hash is kept in {escape(store.location)})",
            soft_wrap=True,
        )


@keys_app.command("list")
def list_keys(db: str | None = _DB_OPTION, config: Path | None = _CONFIG_OPTION) -> None:
    """List keys with their scope, rate and dates (UTC); secrets are never shown."""
    with errors():
        url = keys_database(db, config)
        store = _existing(url)
        if store is None:
            console.print(
                f"no keys database at {escape(str(sqlite_file(url)))}; create a key with "
                "`lmforge keys create --scope predict`"
            )
            return
        keys = store.list()
        if not keys:
            console.print(f"no keys in {escape(store.location)}")
            return
        table = Table(title=f"API keys in {escape(store.location)}")
        # Identifying columns never wrap; on a narrow terminal the dates fold instead.
        for column in ("id", "name", "prefix", "scope", "rate"):
            table.add_column(column, no_wrap=True)
        for column in ("created", "last used", "revoked"):
            table.add_column(column, overflow="fold")
        for key in keys:
            table.add_row(
                str(key.id),
                Text(key.name),  # Text: a name is shown as typed, never read as Rich markup
                key.prefix,
                key.scope,
                Text(key.rate or "unlimited"),
                _short(key.created_at),
                _short(key.last_used_at),
                _short(key.revoked_at),
                style="dim" if key.revoked else None,
            )
        console.print(table)


@keys_app.command()
def revoke(
    key: str = typer.Argument(..., help="The key's id, prefix or name (see `lmforge keys list`)."),
    db: str | None = _DB_OPTION,
    config: Path | None = _CONFIG_OPTION,
) -> None:
    """Revoke a key: the server refuses it from the next request on; the record stays for the audit log."""
    with errors():
        url = keys_database(db, config)
        store = _existing(url)
        if store is None:
            raise ApiKeyError(
                f"no keys database at {sqlite_file(url)}",
                hint="pass the --config (or --db) that `lmforge serve` uses",
            )
        info = store.revoke(key)
        console.print(
            f"revoked key [bold]{info.id}[/] '{escape(info.name)}' (prefix {info.prefix}, scope {info.scope})"
        )
