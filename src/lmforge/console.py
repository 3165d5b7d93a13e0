"""Rich rendering of pipeline events: a line per finished stage, a bar for the running one."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from lmforge.pipeline.events import Event


def _fmt_rows(rows: dict[str, int]) -> str:
    shown = [f"{k} {v:,}" for k, v in rows.items() if not k.endswith("_rejected")]
    rejected = sum(v for k, v in rows.items() if k.endswith("_rejected"))
    if rejected:
        shown.append(f"[yellow]{rejected:,} rejected[/]")
    return ", ".join(shown)


class RichRenderer:
    """An event sink that draws progress on a Rich console."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[stage]:<9}[/] {task.description}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=console,
            transient=True,
        )
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> RichRenderer:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, event: Event) -> None:
        handler = getattr(self, f"_on_{event.kind}", None)
        if handler is not None:
            handler(event)

    def _on_run_start(self, event: Event) -> None:
        self.console.print(f"run [bold]{event.message}[/]  [dim]{event.data['run_dir']}[/]")

    def _on_stage_start(self, event: Event) -> None:
        self.tasks[event.stage or ""] = self.progress.add_task(
            "running", total=None, stage=event.stage, info=""
        )

    def _on_stage_cached(self, event: Event) -> None:
        self.console.print(
            f"  [dim]•[/] {event.stage:<9} [dim]cached (from {event.data.get('reused_from')})[/]"
        )

    def _on_stage_done(self, event: Event) -> None:
        self._drop(event.stage)
        rows = _fmt_rows(event.data.get("rows") or {})
        self.console.print(f"  [green]✓[/] {event.stage:<9} {event.data['seconds']:>7.1f}s  [dim]{rows}[/]")

    def _on_stage_failed(self, event: Event) -> None:
        self._drop(event.stage)
        self.console.print(f"  [red]✗[/] {event.stage:<9} failed")

    def _on_log(self, event: Event) -> None:
        self.console.print(f"    [dim]{event.message}[/]", soft_wrap=True)

    def _on_warning(self, event: Event) -> None:
        self.console.print(f"    [yellow]! {event.message}[/]")

    def _on_progress_start(self, event: Event) -> None:
        task = self.tasks.get(event.stage or "")
        if task is not None:
            self.progress.update(task, description=event.message, total=event.data.get("total"), completed=0)

    def _on_progress(self, event: Event) -> None:
        task = self.tasks.get(event.stage or "")
        if task is None:
            return
        info = " ".join(f"{k} {v}" for k, v in event.data.items() if k not in ("completed", "total"))
        self.progress.update(
            task, completed=event.data["completed"], total=event.data.get("total"), info=info
        )

    def _drop(self, stage: str | None) -> None:
        task = self.tasks.pop(stage or "", None)
        if task is not None:
            self.progress.remove_task(task)
