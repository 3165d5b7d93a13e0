"""`lmforge models`: list, inspect, promote, roll back, archive, export and import registered models.

Thin on purpose: the rules (what may be promoted or archived, the champion history, archive
checks) live in `lmforge.registry` (`lifecycle`, `archive`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from lmforge.cli_support import console, errors
from lmforge.registry import VersionInfo, client_for, default_uri, list_models, list_versions, resolve

models_app = typer.Typer(
    no_args_is_help=True,
    help="Registered models (MLflow registry): list, show, promote, rollback, archive, export, import.",
)

_URI = typer.Option(
    None,
    "--tracking-uri",
    help="MLflow tracking/registry URI [default: $MLFLOW_TRACKING_URI or sqlite:///mlruns.db here].",
)


def _auditor() -> Callable[[str, str], None]:
    """Lifecycle actions from the command line go to the same audit log as the server's admin
    actions (the keys database of ./lmforge.yaml's server, as `lmforge keys` finds it), naming
    the OS user who ran them. Resolved before the registry is touched: a config that cannot be
    read, or a keys database that cannot be opened, stops the command before the change."""
    import getpass

    from lmforge.cli_keys import project_state
    from lmforge.serve.keys import KeyStore

    keys = KeyStore(project_state().keys_url)

    def audit(action: str, target: str) -> None:
        keys.audit(action, None, target, f"cli user {getpass.getuser()}")

    return audit


def _uri(uri: str | None) -> str:
    # Resolved when the command runs, not at import: the default depends on the current folder.
    return uri or default_uri()


def _metrics(info: VersionInfo, sep: str = ", ") -> str:
    return sep.join(f"{k} {v:.4f}" for k, v in sorted(info.metrics.items())) or "-"


@models_app.command("list")
def list_cmd(tracking_uri: str | None = _URI) -> None:
    """List registered models with their latest version and aliases."""
    with errors():
        uri = _uri(tracking_uri)
        rows = list_models(client_for(uri, must_exist=True))
        if not rows:
            console.print(f"no registered models in {escape(uri)}")
            return
        table = Table(title=f"registered models in {escape(uri)}")
        for column in ("name", "latest", "champion", "aliases"):
            table.add_column(column, no_wrap=True)
        table.add_column("description", overflow="fold")
        for row in rows:
            aliases = ", ".join(f"{a}={v}" for a, v in sorted(row["aliases"].items())) or "-"
            table.add_row(
                escape(row["name"]),
                row["latest"] or "-",
                row["champion"] or "-",
                escape(aliases),
                escape(row["description"]) or "-",
            )
        console.print(table)


@models_app.command()
def show(
    ref: str = typer.Argument(..., help="NAME (all its versions), or one version: NAME@ALIAS, NAME@3."),
    tracking_uri: str | None = _URI,
) -> None:
    """Show a model's versions (aliases, metrics, archived, gate reasons), or one version's tags."""
    with errors():
        client = client_for(_uri(tracking_uri), must_exist=True)
        if "@" in ref or "/" in ref:
            _show_version(resolve(client, ref))
            return
        versions = list_versions(client, ref.strip())
        table = Table(title=f"{escape(ref.strip())}: {len(versions)} version(s)")
        for column in ("version", "aliases", "state", "created"):
            table.add_column(column, no_wrap=True)
        for column in ("metrics", "gate"):
            table.add_column(column, overflow="fold")
        for info in versions:
            table.add_row(
                info.version,
                ", ".join(info.aliases) or "-",
                "[dim]archived[/]" if info.archived else info.state,
                info.created.strftime("%Y-%m-%d %H:%M"),
                _metrics(info, "\n"),  # one metric a line: a narrow column stays readable
                escape(info.gate or "-"),
            )
        console.print(table)


def _show_version(info: VersionInfo) -> None:
    table = Table(title=f"{escape(info.name)} version {info.version}", show_header=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for field, value in (
        ("aliases", ", ".join(info.aliases) or "-"),
        ("state", info.state),
        ("created", info.created.strftime("%Y-%m-%d %H:%M UTC")),
        ("metrics", _metrics(info)),
        ("gate", info.gate or "-"),
        ("run id", info.run_id or "-"),
        ("source", info.source),
    ):
        table.add_row(field, escape(value))
    for key, value in sorted(info.tags.items()):
        table.add_row(f"tag {escape(key)}", escape(value))
    console.print(table)


@models_app.command()
def promote(
    ref: str = typer.Argument(..., help="The version to make champion: NAME@3, NAME@challenger."),
    tracking_uri: str | None = _URI,
) -> None:
    """Make a version the champion; the previous champion is remembered for `rollback`."""
    from lmforge.registry import promote as promote_version

    with errors():
        info = promote_version(client_for(_uri(tracking_uri), must_exist=True), ref, audit=_auditor())
        console.print(
            f"{escape(info.name)} version {info.version} is the champion "
            f"(undo with `lmforge models rollback {escape(info.name)}`)"
        )


@models_app.command()
def rollback(
    name: str = typer.Argument(..., help="The registered model whose champion goes back one step."),
    tracking_uri: str | None = _URI,
) -> None:
    """Give the champion alias back to the previous champion."""
    from lmforge.registry import rollback as rollback_model

    with errors():
        info = rollback_model(client_for(_uri(tracking_uri), must_exist=True), name, audit=_auditor())
        console.print(f"{escape(info.name)} version {info.version} is the champion again")


@models_app.command()
def archive(
    ref: str = typer.Argument(..., help="The version to retire: NAME@3, NAME@challenger."),
    tracking_uri: str | None = _URI,
) -> None:
    """Archive a version: it loses its aliases and can no longer be promoted."""
    from lmforge.registry import archive as archive_version

    with errors():
        info = archive_version(client_for(_uri(tracking_uri), must_exist=True), ref, audit=_auditor())
        console.print(f"archived {escape(info.name)} version {info.version}")


@models_app.command("export")
def export_cmd(
    ref: str = typer.Argument(..., help="The version to export: NAME (champion), NAME@3."),
    out: Path | None = typer.Option(None, "--out", "-o", help="The tarball [default: NAME-vN.tar.gz]."),
    tracking_uri: str | None = _URI,
) -> None:
    """Write a version (model, exports, manifest, SHA256SUMS) to one .tar.gz for another store."""
    from lmforge.registry import export_version

    with errors():
        client = client_for(_uri(tracking_uri), must_exist=True)
        info = resolve(client, ref)
        path = export_version(
            client, info.ref, out or Path(f"{info.name}-v{info.version}.tar.gz"), audit=_auditor()
        )
        size = path.stat().st_size / 1e6
        console.print(f"exported {escape(info.ref)} to {escape(str(path))} ({size:.1f} MB)")


@models_app.command("import")
def import_cmd(
    file: Path = typer.Argument(..., help="A tarball written by `lmforge models export`."),
    name: str | None = typer.Option(None, "--name", help="Register under this name [default: the original]."),
    tracking_uri: str | None = _URI,
) -> None:
    """Verify every checksum, then register the tarball's model as a new version (no alias)."""
    from lmforge.registry import import_version

    with errors():
        info = import_version(client_for(_uri(tracking_uri)), file, name, audit=_auditor())
        console.print(
            f"imported {escape(file.name)} as {escape(info.name)} version {info.version}; "
            f"it has no alias: `lmforge models promote {escape(info.ref)}` to serve it"
        )
