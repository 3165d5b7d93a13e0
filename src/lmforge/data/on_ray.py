"""The data stages' per-row work as Ray Data `map_batches` over blocks of rows.

With `executor.type: ray` the expensive per-row functions (text repair and PII masking,
MinHash sketches, sentence embeddings) run on the cluster's CPUs in actors that build their
state (a PII detector, an encoder) once, while the stage keeps the order-dependent part
(which duplicate is kept) in its own process. Each block's result comes back in order, so the
outcome equals the single-process one, and only a few blocks are in flight at a time: memory
is bounded by the block size, not the data size.

The work is a pure function of one block, made by a picklable zero-argument factory
(`functools.partial` of a module-level function) that each actor calls once.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from lmforge.config import ExecutorConfig
from lmforge.ray_logs import ray_data_console_warnings_only

T = TypeVar("T")
R = TypeVar("R")
# Rows per Ray block: big enough that a block's work dwarfs Ray's per-task cost (~ms).
BLOCK_ROWS = 10_000
# Embeddings cost ~4 ms a text on one core: 2,000 rows are seconds of work, and enough blocks
# that every actor gets a share (bench/bench_embed_blocks.py: 16k texts on 2 actors took 1.91x
# the local time in blocks of 10,000, 1.10x in blocks of 2,500).
EMBED_BLOCK_ROWS = 2_000


class _Worker:
    """One Ray Data actor: builds the work once (a model, a detector), then applies it per block."""

    def __init__(self, factory: Callable[[], Callable[[list[Any]], Any]]) -> None:
        self.work = factory()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        # Pickled, because a block's result (a tuple of arrays, a list of records) is not a
        # column Arrow can hold; Ray would pickle it in its object store anyway.
        result = pickle.dumps(self.work(batch["item"].tolist()))
        return {"start": [int(batch["row"][0])], "rows": [len(batch["row"])], "result": [result]}


def map_blocks(
    executor: ExecutorConfig,
    factory: Callable[[], Callable[[list[T]], R]],
    items: Sequence[T],
    *,
    block_rows: int | None = None,
) -> Iterator[R]:
    """`factory()(block)` for consecutive blocks of `items` (at most `block_rows` each), run by
    Ray Data actors, yielded in order; a block's rows are the next ones after the last block's.

    The items go to Ray's object store as one Arrow table (spilled to disk past its limit) and
    stream through the actors a few blocks at a time.
    """
    import pandas as pd
    import ray
    import ray.data

    if not items:
        return
    block_rows = block_rows or BLOCK_ROWS
    # Order matters (the stage matches results to rows); the settings are put back after.
    context = ray.data.DataContext.get_current()
    saved = (context.execution_options.preserve_order, context.enable_progress_bars)
    with ray_session(executor), ray_data_console_warnings_only():
        try:
            context.execution_options.preserve_order = True
            context.enable_progress_bars = False
            cpus = max(1, int(ray.cluster_resources().get("CPU", 1) // executor.num_cpus))
            table = pd.DataFrame({"item": list(items), "row": np.arange(len(items))})
            # One Ray block per batch: from one frame Ray Data makes one block, which goes to
            # one actor whole, so the other actors sat idle (embeddings took 1.9x the local time).
            blocks = [table.iloc[start : start + block_rows] for start in range(0, len(table), block_rows)]
            done = ray.data.from_pandas(blocks).map_batches(
                _Worker,
                fn_constructor_args=(factory,),
                batch_size=block_rows,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=cpus),
                num_cpus=executor.num_cpus,
            )
            del table, blocks
            expected = 0
            for row in done.iter_rows():
                if int(row["start"]) != expected:  # preserve_order guarantees it; checked anyway
                    raise RuntimeError(f"Ray Data returned row {row['start']} where {expected} was due")
                expected += int(row["rows"])
                yield pickle.loads(row["result"])
            if expected != len(items):
                raise RuntimeError(f"Ray Data returned {expected} of {len(items)} rows")
        finally:
            context.execution_options.preserve_order, context.enable_progress_bars = saved


@contextmanager
def ray_session(executor: ExecutorConfig) -> Iterator[None]:
    """Connected to `executor`'s Ray for the block: a stage that maps several times holds one
    session around them all (else each map would start and stop a local Ray of its own)."""
    import ray

    from lmforge.tuning.executors import connect_ray

    started_here = connect_ray(executor)
    try:
        yield
    finally:
        if started_here:
            ray.shutdown()


@contextmanager
def data_executor(executor: ExecutorConfig, log: Callable[[str], None]) -> Iterator[ExecutorConfig | None]:
    """A data stage's per-row work: `executor` inside one Ray session with `executor.type: ray`,
    None (this process) otherwise."""
    if executor.type != "ray":
        yield None
        return
    with ray_session(executor):
        log("per-row work (repair, PII, MinHash, embeddings) on Ray Data")
        yield executor


def mapper_for(executor: ExecutorConfig | None) -> Callable[..., Iterator[Any]] | None:
    """The duplicate search's block mapper: Ray Data's, or None for this process."""
    return None if executor is None else block_mapper(executor)


def block_mapper(
    executor: ExecutorConfig,
) -> Callable[[Callable[[Sequence[T]], R], Sequence[T]], Iterator[R]]:
    """`map_blocks` for work that needs no set-up (a `functools.partial` of a pure function)."""

    def mapper(work: Callable[[Sequence[T]], R], items: Sequence[T]) -> Iterator[R]:
        return map_blocks(executor, partial(_given, work), items)

    return mapper


def _given(work: Callable[[Sequence[T]], R]) -> Callable[[Sequence[T]], R]:
    return work


def embed_factory(model: str, base_dir: Path | None, batch_size: int = 64) -> Callable[[list[str]], Any]:
    """The encoder loaded once (in an actor) and `embed` applied to each block."""
    from lmforge.models.embed import embed

    embed([], model=model, base_dir=base_dir)  # loads the encoder now, not on the first block

    def work(texts: list[str]) -> np.ndarray:
        return embed(texts, model=model, base_dir=base_dir, batch_size=batch_size)

    return work


def embed_on_ray(
    executor: ExecutorConfig,
    texts: Sequence[str],
    *,
    model: str,
    base_dir: Path | None,
    block_rows: int | None = None,
) -> np.ndarray:
    """`lmforge.models.embed.embed(texts)` computed by Ray Data actors, one encoder each."""
    factory = partial(embed_factory, model, base_dir)
    parts = list(map_blocks(executor, factory, texts, block_rows=block_rows or EMBED_BLOCK_ROWS))
    return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)
