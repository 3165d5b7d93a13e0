"""Ray Train's progress on the driver: rank 0's ticks as the stage's bar and validation lines."""

from __future__ import annotations

from types import SimpleNamespace

from lmforge.pipeline.events import Event, EventBus, progress
from lmforge.training.stage_support import RayTrainProgress


def _ctx() -> tuple[SimpleNamespace, list[Event], list[str]]:
    bus, events, lines = EventBus(), [], []
    bus.subscribe(events.append)
    ctx = SimpleNamespace(log=lines.append, progress=lambda what, total: progress(bus, "train", what, total))
    return ctx, events, lines


def test_ticks_become_one_bar_and_validation_lines() -> None:
    ctx, events, lines = _ctx()
    relay = RayTrainProgress(ctx, ends_at=1_000.0)
    relay({"completed": 0, "total": 40})
    relay({"completed": 12, "total": 40, "epoch": 0.3, "loss": 1.25})
    relay({"evaluated": {"loss": 0.9, "f1_macro": 0.71}, "epoch": 0.5})
    relay({"completed": 40, "total": 40, "epoch": 1.0})
    relay.close()
    relay.close()  # idempotent: the stage closes it in a finally
    kinds = [e.kind for e in events]
    assert kinds == ["progress_start", "progress", "progress", "progress", "progress_end"]
    ticks = [e.data for e in events if e.kind == "progress"]
    assert [t["completed"] for t in ticks] == [0, 12, 40]
    assert ticks[1]["loss"] == 1.25 and all(t["ends_at"] == 1_000.0 for t in ticks)
    assert lines == ["epoch 0.50 validation loss 0.9 f1_macro 0.71"]


def test_no_tick_no_bar() -> None:
    ctx, events, _ = _ctx()
    RayTrainProgress(ctx).close()  # Ray failed before rank 0 started: nothing to close
    assert events == []
