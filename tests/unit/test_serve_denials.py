"""Refused requests reach the audit log through a per-caller token bucket: a flood of
keyless requests must not become as many database writes, and what is held back is counted."""

from __future__ import annotations

import pytest

from lmforge.serve.denials import BURST, PER_SECOND, DenialThrottle, with_held_back


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_written_then_held_back_and_counted() -> None:
    clock = Clock()
    throttle = DenialThrottle(clock)
    assert [throttle.admit(None) for _ in range(BURST)] == [0] * BURST
    assert [throttle.admit(None) for _ in range(50)] == [None] * 50
    clock.now += 1 / PER_SECOND  # one row's worth of time
    assert throttle.admit(None) == 50  # the next row carries what was held back
    assert throttle.admit(None) is None


def test_callers_have_their_own_buckets() -> None:
    throttle = DenialThrottle(Clock())
    for _ in range(BURST + 5):
        throttle.admit(None)  # keyless flood
    assert throttle.admit(7) == 0  # a real key's denial is still written


def test_counts_of_forgotten_callers_are_not_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    import lmforge.serve.denials as denials

    monkeypatch.setattr(denials, "MAX_CALLERS", 2)
    monkeypatch.setattr(denials, "BURST", 1)
    throttle = DenialThrottle(Clock())
    assert throttle.admit(1) == 0
    assert throttle.admit(1) is None  # held back: 1
    assert throttle.admit(2) == 0
    assert throttle.admit(3) == 1  # caller 1's bucket was dropped; its count goes with this row


@pytest.mark.parametrize(
    ("held", "detail"), [(0, "no key"), (3, "no key (+3 more refused since the previous entry)")]
)
def test_the_row_says_how_many_it_stands_for(held: int, detail: str) -> None:
    assert with_held_back("no key", held) == detail
