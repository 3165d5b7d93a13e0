"""split (generation, language-modeling): train / validation / test by a seeded shuffle.

Files given as `data.validation` / `data.test` are used as they are; otherwise the
fractions in `split` are taken from train. With `split.remove_leakage`, a train row
whose prompt (or text) equals a validation or test one after normalisation is dropped,
so the test score is not inflated by memorised answers; those rows are in `leaked.csv`.
"""

from __future__ import annotations

import json

import pandas as pd

from lmforge.config import SplitConfig
from lmforge.data.dedup import normal_form
from lmforge.errors import DataError
from lmforge.pipeline.context import Inputs, StageContext, StageResult
from lmforge.tasks.registry import get_task


def prompt_key(value: str, lm: bool) -> str:
    """What counts as the same example: the prompt's messages (the text, for LM)."""
    if lm:
        return normal_form(value)
    turns = json.loads(value)
    return normal_form("\n".join(m["content"] for m in turns[:-1]))


def run(ctx: StageContext, cfg: SplitConfig, inputs: Inputs) -> StageResult:
    clean = inputs["clean"]
    lm = get_task(ctx.config.task).raw_text
    column = "text" if lm else "messages"
    pool = clean.table("train").sample(frac=1.0, random_state=cfg.seed).reset_index(drop=True)
    parts: dict[str, pd.DataFrame] = {}
    for name, share in (("test", cfg.test), ("validation", cfg.validation)):
        if clean.has(f"{name}.parquet"):
            parts[name] = clean.table(name)
            continue
        count = max(1, round(len(pool) * share))
        if len(pool) - count < 1:
            raise DataError(
                f"{len(pool)} rows are too few to hold out a {name} split",
                file=ctx.config.resolve_path(ctx.config.data.train),
                hint=f"add rows or give data.{name}",
            )
        parts[name], pool = pool.iloc[:count], pool.iloc[count:]
    leaked = pd.DataFrame()
    if cfg.remove_leakage:
        held = {prompt_key(v, lm) for name in ("validation", "test") for v in parts[name][column]}
        mask = pool[column].map(lambda v: prompt_key(v, lm) in held)
        leaked, pool = pool[mask], pool[~mask]
        if len(leaked):
            ctx.warn(f"{len(leaked)} train row(s) repeat a validation/test prompt and were dropped")
    ctx.out.write_csv("leaked", leaked)
    result = StageResult()
    for name, table in (("train", pool), *parts.items()):
        ctx.out.write_table(name, table.reset_index(drop=True))
        result.rows[name] = len(table)
    result.rows["leaked"] = len(leaked)
    result.summary["seed"] = cfg.seed
    return result
