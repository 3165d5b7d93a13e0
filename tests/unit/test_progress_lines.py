"""Progress off a terminal (CI, nohup, a file): bounded lines with done/total, elapsed, ETA and
budget left; in a terminal the bar's budget column. Real Rich consoles, real events."""

from __future__ import annotations

import re
import time
from io import StringIO

import pytest
from rich.console import Console

from lmforge.console import BudgetColumn, RichRenderer
from lmforge.pipeline.events import Event, EventBus, progress

T0 = 1_000_000.0


def _renderer(terminal: bool = False) -> tuple[RichRenderer, StringIO]:
    out = StringIO()
    return RichRenderer(Console(file=out, force_terminal=terminal, width=200)), out


def _train(
    renderer: RichRenderer, *, steps: int, stop_at: int | None = None, budget: float | None = 600
) -> None:
    """A train stage of `steps` steps, one per second, starting 10 s into the run."""
    data = {"run_dir": "/runs/r", "budget_seconds": budget, "started_at": T0}
    renderer(Event("run_start", None, "r", data, time=T0))
    renderer(Event("stage_start", "train", time=T0 + 5))
    renderer(Event("progress_start", "train", "training", {"total": steps}, time=T0 + 10))
    for step in range((stop_at or steps) + 1):
        tick = {"completed": step, "total": steps, "epoch": round(step / 100, 2)}
        renderer(Event("progress", "train", "training", tick, time=T0 + 10 + step))
    end = T0 + 11 + (stop_at or steps)
    renderer(Event("progress_end", "train", "training", time=end))
    renderer(Event("stage_done", "train", data={"seconds": end - T0 - 5}, time=end))


def _progress_lines(out: StringIO, stage: str = "train") -> list[str]:
    return [line for line in out.getvalue().splitlines() if line.startswith(f"    {stage} ")]


@pytest.mark.parametrize("steps", [20, 400, 10_000])
def test_a_long_progress_writes_about_twenty_lines_not_one_per_step(steps: int) -> None:
    renderer, out = _renderer()
    _train(renderer, steps=steps)
    lines = _progress_lines(out)
    assert 19 <= len(lines) <= 21, lines
    assert f"training {steps:,}/{steps:,} (100%)" in lines[-1]


def test_each_line_says_done_total_elapsed_eta_and_budget_left() -> None:
    renderer, out = _renderer()
    _train(renderer, steps=400)
    half = next(line for line in _progress_lines(out) if "(50%)" in line)
    # 200 steps at 1 step/s since the progress began at T0+10; the budget began at T0.
    assert "training 200/400 (50%)" in half
    assert "elapsed 3:20" in half and "eta 3:20" in half and "budget left 6:30" in half
    assert "epoch 2.0" in half
    assert "run r  /runs/r  budget 10:00" in out.getvalue()
    assert re.search(r"✓ train .*budget left 3:09", out.getvalue())


def test_a_run_over_budget_says_by_how_much() -> None:
    renderer, out = _renderer()
    _train(renderer, steps=400, budget=300)
    assert "over budget by 1:50" in _progress_lines(out)[-1]  # 410 s into a 300 s budget


def test_without_a_budget_no_budget_figures() -> None:
    renderer, out = _renderer()
    _train(renderer, steps=400, budget=None)
    assert "budget" not in out.getvalue()
    assert "eta" in _progress_lines(out)[0]


def test_a_progress_that_stops_early_writes_where_it_stopped() -> None:
    renderer, out = _renderer()
    _train(renderer, steps=400, stop_at=130)  # early stopping
    lines = _progress_lines(out)
    assert len(lines) == 7, lines  # 5% .. 30%, then the end
    assert "training 130/400 (32%)" in lines[-1] and "eta" not in lines[-1]


def test_a_progress_without_a_total_writes_a_line_a_minute() -> None:
    renderer, out = _renderer()
    renderer(Event("progress_start", "export", "exporting", {"total": None}, time=T0))
    for second in range(1, 301):
        renderer(
            Event("progress", "export", "exporting", {"completed": second, "total": None}, time=T0 + second)
        )
    renderer(Event("progress_end", "export", "exporting", time=T0 + 301))
    lines = _progress_lines(out, "export")
    assert len(lines) == 6, lines  # the first tick, every 60 s, and the end
    assert "exporting 300  elapsed 5:01" in lines[-1]


@pytest.mark.parametrize("total", [0, -5, float("nan"), float("inf")])
def test_a_senseless_total_falls_back_to_time_spaced_lines(total: float) -> None:
    renderer, out = _renderer()
    renderer(Event("progress_start", "clean", "repairing", {"total": total}, time=T0))
    for second in range(1, 121):
        renderer(
            Event("progress", "clean", "repairing", {"completed": second, "total": total}, time=T0 + second)
        )
    assert 2 <= len(_progress_lines(out, "clean")) <= 3


def test_real_events_through_the_bus_stay_bounded() -> None:
    renderer, out = _renderer()
    bus = EventBus([renderer])
    bus.emit("run_start", None, "r", run_dir="/runs/r", budget_seconds=900, started_at=time.time())
    bus.emit("stage_start", "evaluate")
    with progress(bus, "evaluate", "predicting test set", total=1000) as bar:
        for _ in range(1000):
            bar.advance(1, batch=1)
    bus.emit("stage_done", "evaluate", seconds=1.0)
    lines = _progress_lines(out, "evaluate")
    assert len(lines) == 20, lines
    assert re.search(
        r"predicting test set 1,000/1,000 \(100%\)  elapsed \d+:\d\d  budget left 1[45]:\d\d", lines[-1]
    )


def test_a_terminal_draws_a_bar_instead_of_lines() -> None:
    renderer, out = _renderer(terminal=True)
    with renderer:
        _train(renderer, steps=400)
    assert "(50%)" not in out.getvalue()


@pytest.mark.parametrize(
    ("offset", "pattern", "style"),
    [(3600, r"budget left (0:59:\d\d|1:00:00)", "cyan"), (-3600, r"over budget by 1:00:0\d", "red")],
)
def test_the_bar_shows_the_budget_left(offset: float, pattern: str, style: str) -> None:
    renderer, _ = _renderer(terminal=True)
    column = BudgetColumn(renderer)
    task_id = renderer.progress.add_task("training", total=10, stage="train", info="")
    task = renderer.progress.tasks[0]
    assert task.id == task_id and column.render(task).plain == ""  # no budget, no figure
    renderer.deadline = time.time() + offset
    shown = column.render(task)
    assert re.fullmatch(pattern, shown.plain) and shown.style == style


def test_work_that_ends_by_the_clock_shows_the_sooner_eta() -> None:
    renderer, out = _renderer()
    renderer(
        Event(
            "run_start", None, "r", {"run_dir": "/runs/r", "budget_seconds": 600, "started_at": T0}, time=T0
        )
    )
    renderer(Event("progress_start", "train", "training", {"total": 400}, time=T0))
    for step in range(101):  # 1 step/s: 300 s left by the count, but the clock ends it in 30 s
        tick = {"completed": step, "total": 400, "ends_at": T0 + 130}
        renderer(Event("progress", "train", "training", tick, time=T0 + step))
    line = next(line for line in _progress_lines(out) if "(25%)" in line)
    assert "eta 0:30" in line and "ends_at" not in line


def test_the_bar_caps_its_eta_by_the_clock() -> None:
    from lmforge.console import RemainingColumn

    renderer, _ = _renderer(terminal=True)
    renderer.progress.add_task("training", total=10, stage="train", info="", ends_at=time.time() + 90)
    task = renderer.progress.tasks[0]
    assert RemainingColumn().render(task).plain in ("1:29", "1:30")  # no rate yet: the clock's end
