"""`lmforge keys`: create, list and revoke the API keys that `lmforge serve` checks.

Thin on purpose: the rules (scopes, rate forms, what is stored) live in `lmforge.serve.keys`.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from lmforge.cli_support import console, errors
from lmforge.serve.keys import ApiKeyError, KeyStore, check_scope, parse_rate

DEFAULT_DB = Path("lmforge-state/keys.db")

keys_app = typer.Typer(
    no_args_is_help=True,
    help="Create, list and revoke API keys for `lmforge serve` (only their hashes are stored).",
)

_DB_OPTION = typer.Option(DEFAULT_DB, "--db", help="The keys database (SQLite file).")


def _short(timestamp: str | None) -> str:
    # "2024-05-01T12:03:04+00:00" -> "2024-05-01 12:03": minutes are enough to tell keys apart.
    return timestamp[:16].replace("T", " ") if timestamp else "-"


@keys_app.command()
def create(
    scope: str = typer.Option(
        ..., "--scope", help="predict, feedback (feedback and predict) or admin (everything)."
    ),
    name: str | None = typer.Option(
        None, "--name", help="A label to tell keys apart [default: SCOPE-PREFIX]."
    ),
    rate: str | None = typer.Option(
        None, "--rate", help="Rate limit: 50/s, 600/m or 10/h [default: unlimited]."
    ),
    db: Path = _DB_OPTION,
) -> None:
    """Create a key and print its secret once; only its hash is stored."""
    with errors():
        # Validate before KeyStore creates the database, so a typo leaves no files behind.
        checked = check_scope(scope)
        if rate is not None:
            parse_rate(rate)
        created = KeyStore(db).create(checked, name=name, rate=rate)
        info = created.info
        console.print(
            f"created key [bold]{info.id}[/] '{escape(info.name)}' "
            f"(scope {info.scope}, rate {escape(info.rate or 'unlimited')}, prefix {info.prefix})"
        )
        console.print(created.secret, markup=False, highlight=False, soft_wrap=True)
        console.print(
            "[bold yellow]store it now: it cannot be shown again[/] "
            f"(only its hash is kept in {escape(str(db))})",
            soft_wrap=True,
        )


@keys_app.command("list")
def list_keys(db: Path = _DB_OPTION) -> None:
    """List keys with their scope, rate and dates (UTC); secrets are never shown."""
    with errors():
        if not db.exists():  # listing must not create an empty database at a mistyped path
            console.print(
                f"no keys database at {escape(str(db))}; create a key with "
                "`lmforge keys create --scope predict`"
            )
            return
        keys = KeyStore(db).list()
        if not keys:
            console.print(f"no keys in {escape(str(db))}")
            return
        table = Table(title=f"API keys in {escape(str(db))}")
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
    db: Path = _DB_OPTION,
) -> None:
    """Revoke a key: the server refuses it from the next request on; the record stays for the audit log."""
    with errors():
        if not db.exists():
            raise ApiKeyError(
                f"no keys database at {db}", hint="pass --db with the path `lmforge serve` uses"
            )
        info = KeyStore(db).revoke(key)
        console.print(
            f"revoked key [bold]{info.id}[/] '{escape(info.name)}' (prefix {info.prefix}, scope {info.scope})"
        )
