"""Rich rendering of pipeline events: a line per finished stage, a bar for the running one.

In a terminal the bar shows elapsed time, ETA and the run's budget left. Elsewhere (CI, nohup,
a log file) a bar cannot redraw, so each progress writes a line every `LINE_STEP` of its total
and at its end with the same figures: a 27-minute train is ~20 lines, not 3 or 4,000.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from lmforge.budget_text import format_duration
from lmforge.pipeline.events import Event

# Off a terminal: a line each time a progress crosses another 5% of its total ...
LINE_STEP = 0.05
# ... and, for a progress without a total, at most one line per this many seconds.
UNSIZED_LINE_SECONDS = 60.0


def _fmt_rows(rows: dict[str, int]) -> str:
    shown = [f"{k} {v:,}" for k, v in rows.items() if not k.endswith("_rejected")]
    rejected = sum(v for k, v in rows.items() if k.endswith("_rejected"))
    if rejected:
        shown.append(f"[yellow]{rejected:,} rejected[/]")
    return ", ".join(shown)


@dataclass
class _Bar:
    """What a line off the terminal needs about one progress: where and when it started."""

    description: str
    total: float | None
    started: float
    first: float | None = None  # completed count and time of the first tick: the rate's origin
    first_time: float = 0.0
    step: int = 0  # LINE_STEP buckets already written (a progress with a total)
    last_line: float = 0.0  # time of the last line written (a progress without a total)
    last_completed: float | None = None
    written: float | None = None  # completed count of the last line written
    ends_at: float | None = None  # the last tick's ENDS_AT


# A progress event's `ends_at` (wall-clock time): work that ends by the clock, not by its count
# (a budgeted fine-tune), so its ETA is the sooner of the rate's and this.
ENDS_AT = "ends_at"


class RemainingColumn(TimeRemainingColumn):
    """Rich's time remaining, capped by the task's `ends_at` when it has one."""

    def render(self, task: Task) -> Text:
        ends_at = task.fields.get(ENDS_AT)
        if ends_at is None or task.finished:
            return super().render(task)
        left = max(0.0, float(ends_at) - time.time())
        if task.time_remaining is not None:
            left = min(left, task.time_remaining)
        return Text(format_duration(left), style="progress.remaining")


class BudgetColumn(ProgressColumn):
    """Budget left of the run (none without a budget); turns red once over."""

    def __init__(self, renderer: RichRenderer) -> None:
        super().__init__()
        self.renderer = renderer

    def render(self, task: Task) -> Text:
        left = self.renderer.budget_left(time.time())
        if left is None:
            return Text("")
        return Text(_budget_words(left), style="red" if left < 0 else "cyan")


def _budget_words(left: float) -> str:
    return f"budget left {format_duration(left)}" if left >= 0 else f"over budget by {format_duration(-left)}"


class RichRenderer:
    """An event sink that draws progress on a Rich console."""

    def __init__(self, console: Console) -> None:
        self.console = console
        # A bar needs a terminal that redraws; anything else gets lines (see the module doc).
        self.live = console.is_terminal and not console.is_dumb_terminal
        self.deadline: float | None = None  # wall-clock time the run's budget ends
        self.bars: dict[str, _Bar] = {}
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[stage]:<9}[/] {task.description}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            RemainingColumn(),
            BudgetColumn(self),
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

    def budget_left(self, now: float) -> float | None:
        """Seconds of budget left at `now` (negative once over); None without a budget."""
        return None if self.deadline is None else self.deadline - now

    def _on_run_start(self, event: Event) -> None:
        budget = event.data.get("budget_seconds")
        shown = ""
        if budget is not None:
            self.deadline = float(event.data.get("started_at") or event.time) + float(budget)
            shown = f"  budget {format_duration(float(budget))}"
        self.console.print(
            f"run [bold]{event.message}[/]  [dim]{event.data['run_dir']}[/]{shown}", soft_wrap=True
        )

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
        left = self.budget_left(event.time)
        budget = "" if left is None else f"  [dim]{_budget_words(left)}[/]"
        self.console.print(
            f"  [green]✓[/] {event.stage:<9} {event.data['seconds']:>7.1f}s  [dim]{rows}[/]{budget}"
        )

    def _on_stage_failed(self, event: Event) -> None:
        self._drop(event.stage)
        self.console.print(f"  [red]✗[/] {event.stage:<9} failed")

    def _on_log(self, event: Event) -> None:
        self.console.print(f"    [dim]{event.message}[/]", soft_wrap=True)

    def _on_warning(self, event: Event) -> None:
        self.console.print(f"    [yellow]! {event.message}[/]")

    def _on_progress_start(self, event: Event) -> None:
        self.bars[f"{event.stage}:{event.message}"] = _Bar(event.message, event.data.get("total"), event.time)
        task = self.tasks.get(event.stage or "")
        if task is not None:
            self.progress.update(task, description=event.message, total=event.data.get("total"), completed=0)

    def _on_progress(self, event: Event) -> None:
        info = " ".join(f"{k} {v}" for k, v in event.data.items() if k not in ("completed", "total", ENDS_AT))
        if not self.live:
            self._line_if_due(event, info)
        task = self.tasks.get(event.stage or "")
        if task is None:
            return
        fields: dict[str, Any] = {"info": info, ENDS_AT: event.data.get(ENDS_AT)}
        self.progress.update(task, completed=event.data["completed"], total=event.data.get("total"), **fields)

    def _on_progress_end(self, event: Event) -> None:
        bar = self.bars.pop(f"{event.stage}:{event.message}", None)
        # Off a terminal the end gets a line unless the last one already showed the final count.
        if self.live or bar is None or bar.last_completed is None or bar.last_completed == bar.written:
            return
        self._write_line(event.stage, bar, bar.last_completed, event.time, "", ended=True)

    def _line_if_due(self, event: Event, info: str) -> None:
        """Off a terminal: write this tick when it crosses another LINE_STEP of its total."""
        bar = self.bars.get(f"{event.stage}:{event.message}")
        if bar is None:  # a tick without a start: begin its bookkeeping here
            bar = self.bars[f"{event.stage}:{event.message}"] = _Bar(event.message, None, event.time)
        completed = float(event.data["completed"])
        total = event.data.get("total")
        # A total that is missing, zero or not a number gets time-spaced lines instead.
        bar.total = float(total) if total and math.isfinite(total) and total > 0 else None
        if bar.first is None:
            bar.first, bar.first_time = completed, event.time
        bar.last_completed = completed
        bar.ends_at = event.data.get(ENDS_AT)
        if bar.total:
            step = math.floor(min(completed / bar.total, 1.0) / LINE_STEP + 1e-9)
            if step <= bar.step:
                return
            bar.step = step
        else:
            if bar.written is not None and event.time - bar.last_line < UNSIZED_LINE_SECONDS:
                return
            bar.last_line = event.time
        self._write_line(event.stage, bar, completed, event.time, info)

    def _write_line(
        self, stage: str | None, bar: _Bar, completed: float, now: float, info: str, *, ended: bool = False
    ) -> None:
        bar.written = completed
        parts = [f"{bar.description} {_count(completed)}"]
        if bar.total:
            parts[0] += f"/{_count(bar.total)} ({completed / bar.total:.0%})"
        parts.append(f"elapsed {format_duration(now - bar.started)}")
        eta = _eta(bar, completed, now)
        if bar.ends_at is not None:
            eta = max(0.0, bar.ends_at - now) if eta is None else min(eta, max(0.0, bar.ends_at - now))
        if eta is not None and not ended and completed < (bar.total or 0):
            parts.append(f"eta {format_duration(eta)}")
        left = self.budget_left(now)
        if left is not None:
            parts.append(_budget_words(left))
        if info:
            parts.append(info)
        self.console.print(f"    {stage or '':<9} " + "  ".join(parts), soft_wrap=True, markup=False)

    def _drop(self, stage: str | None) -> None:
        task = self.tasks.pop(stage or "", None)
        if task is not None:
            self.progress.remove_task(task)


def _count(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _eta(bar: _Bar, completed: float, now: float) -> float | None:
    """Seconds left at the average rate since the first tick; None before a rate exists."""
    if not bar.total or bar.first is None or completed <= bar.first or now <= bar.first_time:
        return None
    rate = (completed - bar.first) / (now - bar.first_time)
    return max(bar.total - completed, 0.0) / rate
