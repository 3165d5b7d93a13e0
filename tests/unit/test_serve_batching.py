"""The micro-batcher keeps one request's failure to itself (issue 21: a text the tokenizer
could not encode failed every request that shared its batch, ~2/3 of other clients' requests)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lmforge.serve.batching import MicroBatcher

POISON = "poison"


class Scorer:
    """A model call that upper-cases texts and, like a tokenizer given a lone surrogate,
    raises for the whole call when any text in it is poisoned; records every call."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, model: Any, texts: list[str]) -> list[str]:
        self.calls.append(list(texts))
        if POISON in texts:
            raise ValueError(f"cannot encode {POISON!r}")
        return [f"{model}:{t.upper()}" for t in texts]


def _requests(count: int, bad: set[int]) -> list[list[str]]:
    return [[POISON, f"r{i}"] if i in bad else [f"r{i}a", f"r{i}b"] for i in range(count)]


async def _submit_all(requests: list[list[str]], scorer: Scorer) -> tuple[list[Any], MicroBatcher]:
    size = sum(len(r) for r in requests)
    # The batch closes as soon as every request is in (max_batch_size), so they surely share it.
    batcher = MicroBatcher(lambda: "m1", scorer, max_batch_size=size, max_wait_ms=10_000)
    batcher.start()
    try:
        outcomes = await asyncio.gather(*(batcher.submit(r) for r in requests), return_exceptions=True)
    finally:
        await batcher.stop()
    return outcomes, batcher


@pytest.mark.parametrize(
    ("count", "bad"),
    [(16, {0}), (16, {7}), (16, {15}), (16, {3, 11}), (5, {0, 1, 2, 3}), (1, {0}), (9, set())],
)
def test_a_failing_request_fails_alone_and_its_batch_mates_get_their_answers(
    count: int, bad: set[int]
) -> None:
    scorer = Scorer()
    requests = _requests(count, bad)
    outcomes, batcher = asyncio.run(_submit_all(requests, scorer))
    assert scorer.calls[0] == [t for r in requests for t in r]  # they did share one model call
    for i, (texts, outcome) in enumerate(zip(requests, outcomes, strict=True)):
        if i in bad:
            assert isinstance(outcome, ValueError), (i, outcome)
        else:
            assert outcome == ([f"m1:{t.upper()}" for t in texts], "m1"), i
    assert batcher.queued_texts == 0  # every text was accounted for, failed or not
    # Bisection: a lone bad request costs O(log n) extra calls, not one per request.
    if len(bad) == 1 and count == 16:
        assert len(scorer.calls) <= 1 + 2 * 4


def test_the_batcher_keeps_working_after_a_failing_batch() -> None:
    scorer = Scorer()

    async def scenario() -> tuple[Any, Any]:
        batcher = MicroBatcher(lambda: "m1", scorer, max_batch_size=4, max_wait_ms=0)
        batcher.start()
        try:
            first = await asyncio.gather(batcher.submit([POISON]), return_exceptions=True)
            second = await batcher.submit(["after"])
        finally:
            await batcher.stop()
        return first[0], second

    first, second = asyncio.run(scenario())
    assert isinstance(first, ValueError)
    assert second == (["m1:AFTER"], "m1")


def test_a_short_result_list_is_retried_in_parts_not_handed_out_misaligned() -> None:
    """A result count that does not match the texts would hand clients each other's answers."""

    def drops_one_for_long_batches(model: Any, texts: list[str]) -> list[str]:
        return [t.upper() for t in texts][: 2 if len(texts) > 2 else None]

    async def scenario() -> list[Any]:
        batcher = MicroBatcher(lambda: "m", drops_one_for_long_batches, max_batch_size=3, max_wait_ms=10_000)
        batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit([t]) for t in "abc"), return_exceptions=True)
        finally:
            await batcher.stop()

    assert asyncio.run(scenario()) == [(["A"], "m"), (["B"], "m"), (["C"], "m")]
