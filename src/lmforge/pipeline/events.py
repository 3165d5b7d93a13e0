"""Progress events: stages emit, the CLI renders them with Rich, the run log records them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Event:
    """One thing that happened in a run."""

    kind: str  # run_start, stage_start, stage_cached, stage_done, stage_failed, progress*, log, run_end
    stage: str | None = None
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)


Sink = Callable[[Event], None]


class EventBus:
    """Fan-out of events to any number of sinks (Rich console, log file, tests)."""

    def __init__(self, sinks: list[Sink] | None = None) -> None:
        self._sinks: list[Sink] = list(sinks or [])

    def subscribe(self, sink: Sink) -> None:
        self._sinks.append(sink)

    def unsubscribe(self, sink: Sink) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)

    def emit(self, kind: str, stage: str | None = None, message: str = "", **data: Any) -> None:
        event = Event(kind, stage, message, data)
        for sink in list(self._sinks):
            sink(event)


class Progress:
    """Handle of one progress bar; `advance` emits an event the renderer turns into a bar."""

    def __init__(self, bus: EventBus, stage: str, description: str, total: float | None) -> None:
        self.bus, self.stage, self.description, self.total = bus, stage, description, total
        self.completed = 0.0

    def advance(self, amount: float = 1, **info: Any) -> None:
        self.completed += amount
        self.bus.emit(
            "progress", self.stage, self.description, completed=self.completed, total=self.total, **info
        )

    def update(self, completed: float, total: float | None = None, **info: Any) -> None:
        self.completed = completed
        if total is not None:
            self.total = total
        self.bus.emit(
            "progress", self.stage, self.description, completed=self.completed, total=self.total, **info
        )


@contextmanager
def progress(bus: EventBus, stage: str, description: str, total: float | None) -> Iterator[Progress]:
    """A progress bar for the duration of a block."""
    bus.emit("progress_start", stage, description, total=total)
    handle = Progress(bus, stage, description, total)
    try:
        yield handle
    finally:
        bus.emit("progress_end", stage, description)


class LogFileSink:
    """Writes every event but fine-grained progress ticks to the run's log file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._last_progress: dict[str, float] = {}

    def __call__(self, event: Event) -> None:
        if event.kind == "progress":
            # Log a progress tick at most every 10 s per bar: enough to see a run move.
            key = f"{event.stage}:{event.message}"
            if event.time - self._last_progress.get(key, 0.0) < 10:
                return
            self._last_progress[key] = event.time
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.time))
        where = f"[{event.stage}] " if event.stage else ""
        extra = " ".join(f"{k}={v}" for k, v in event.data.items() if k != "traceback")
        line = f"{stamp} {event.kind:<14} {where}{event.message} {extra}".rstrip()
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            if "traceback" in event.data:
                handle.write(str(event.data["traceback"]) + "\n")
