"""clean (generation, language-modeling): repair text, mask personal data, drop rows outside
the length limits, duplicates and near-duplicates, and settle conflicting answers.

The steps and the `clean` keys are the classification stage's (`lmforge.data.row_checks`,
`lmforge.data.duplicate_rows`), applied to a row's parts:

- repair and PII: every turn of a conversation (the text, for language modeling). Newlines
  are kept (dialogues and code need them): `clean.normalize_whitespace` cannot apply.
  With `executor.type: ray` the repair and the near-duplicate sketches run on Ray Data, as
  in the classification stage (`lmforge.data.on_ray`).
- `min_chars` / `max_chars` / `min_tokens` / `max_tokens`: the prompt (every turn but the
  last, joined) and the answer (the last turn) must each be within the limits.
- duplicates (`exact_duplicates`, `near_duplicates`): rows whose prompts are the same (or
  near-copies) are one example, as in the split stage's leakage check. Their answers play the
  part of a classifier's labels, compared by normal form (case, punctuation, spacing): equal
  answers make a plain duplicate, and differing answers a conflict settled by
  `clean.conflicts` (`majority` keeps one row with the most frequent answer and drops the group
  on a tie, `drop` drops the group, `keep` keeps every row). Conflicts go to `conflicts.csv`.
  A language-modeling text has no answer: its duplicates never conflict.

Every removed row is listed in `removed.csv` with its reason (prompt and answer, or text).
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from lmforge.config import CleanConfig, ExecutorConfig
from lmforge.data.cleanlog import CleanLog
from lmforge.data.dedup import normal_form
from lmforge.data.duplicate_rows import deduplicate
from lmforge.data.on_ray import data_executor, mapper_for
from lmforge.data.row_checks import length_filter, merge_found, parse_found, repaired_in_blocks
from lmforge.pipeline.context import Inputs, StageContext, StageResult
from lmforge.tasks.registry import get_task

SPLITS = ("train", "validation", "test")


def run(ctx: StageContext, cfg: CleanConfig, inputs: Inputs) -> StageResult:
    validate = inputs["validate"]
    lm = get_task(ctx.config.task).raw_text
    column = "text" if lm else "messages"
    tables = {n: validate.table(n) for n in SPLITS if validate.has(f"{n}.parquet")}
    # What ingest masked already (its `pii` column): counted and acted on like a new find.
    earlier: dict[str, list[dict[str, int]]] = {
        n: [parse_found(v) for v in t["pii"]] if "pii" in t else [{}] * len(t) for n, t in tables.items()
    }
    tables = {n: t.drop(columns=["pii"], errors="ignore") for n, t in tables.items()}
    log = CleanLog(row_columns=("answer",))
    repaired = 0
    if cfg.enabled:
        rows = {}
        with data_executor(ctx.config.executor, ctx.log) as executor:
            for name, table in tables.items():
                table, changed = _repair(cfg, name, table, column, log, earlier[name], executor)
                repaired += changed
                roles = {"text": ""} if lm else {"text": "prompt", "answer": "answer"}
                rows[name] = length_filter(cfg, name, table, log, roles)
            # Each answer's text by its normal form (the first row's), before duplicates go:
            # the text `conflicts: majority` gives a kept row whose answer lost.
            texts = {n: _first_texts(f) for n, f in rows.items()}
            answers = {
                (n, r): a for n, f in rows.items() for r, a in zip(f["source_row"], f["answer"], strict=True)
            }
            if cfg.exact_duplicates or cfg.near_duplicates:
                with ctx.progress("finding duplicates", total=None):
                    rows = deduplicate(cfg, rows, log, mapper=mapper_for(executor))
        tables = {name: _settled(frame, column, texts[name]) for name, frame in rows.items()}
        for conflict in log.conflicts:  # the answer as written, not its normal form
            conflict["label"] = answers[(conflict["split"], conflict["source_row"])]
    return _write(ctx, tables, lm, log, repaired)


def _repair(
    cfg: CleanConfig,
    name: str,
    table: pd.DataFrame,
    column: str,
    log: CleanLog,
    earlier: list[dict[str, int]],
    executor: ExecutorConfig | None,
) -> tuple[pd.DataFrame, int]:
    """Each row repaired turn by turn, with the parts the row checks read: `text` (the prompt,
    or the whole text), `answer` and `label` (the answer's normal form, for conflicts).
    `earlier`: the personal data ingest masked in each row. Every turn of every row is one
    text of the repair (in blocks, on Ray Data with an `executor`); the turns are put back
    into their rows in order."""
    lm = column == "text"
    turns = [[value] if lm else [m["content"] for m in json.loads(value)] for value in table[column]]
    flat = (text for row in turns for text in row)
    done = repaired_in_blocks(cfg, list(flat), whitespace=False, executor=executor)
    out, keep, changed = [], [], 0
    for value, found, texts in zip(table[column], earlier, turns, strict=True):
        fixed: list[str] = []
        for _ in texts:
            repaired, changes, pii = next(done)
            fixed.append(repaired.strip())
            changed += any(not c.startswith("pii:") for c in changes) or repaired != repaired.strip()
            found = merge_found(found, pii)
        log.pii.update(found)
        keep.append(not (found and cfg.pii == "drop"))
        out.append(fixed[0] if lm else _with_contents(value, fixed))
    table = table.assign(**{column: out})
    parts = _parts(table[column], lm)
    table = table.assign(**parts)
    dropped = table[[not k for k in keep]]
    if len(dropped):
        log.remove(name, dropped, "personal data")
    return table[keep].reset_index(drop=True), changed


def _parts(values: pd.Series, lm: bool) -> dict[str, list[Any]]:
    if lm:
        return {"text": list(values), "answer": [None] * len(values), "label": [None] * len(values)}
    turns = [json.loads(v) for v in values]
    answers = [t[-1]["content"] for t in turns]
    return {
        "text": ["\n".join(m["content"] for m in t[:-1]) for t in turns],
        "answer": answers,
        # Answers that differ only in case, punctuation or spacing are the same answer.
        "label": [normal_form(a) for a in answers],
    }


def _first_texts(frame: pd.DataFrame) -> dict[str, str]:
    texts: dict[str, str] = {}
    for label, answer in zip(frame["label"], frame["answer"], strict=True):
        texts.setdefault(label, answer)
    return texts


def _settled(frame: pd.DataFrame, column: str, texts: dict[str, str]) -> pd.DataFrame:
    """The kept rows in their own columns; where `conflicts: majority` gave a row the group's
    answer (as a label), the conversation gets that answer's text."""
    if column == "messages" and len(frame):
        for i in frame.index[frame["label"] != frame["answer"].map(normal_form)]:
            frame.loc[i, "messages"] = _with_answer(frame.at[i, "messages"], texts[frame.at[i, "label"]])
    return frame.drop(columns=["answer", "label"] + (["text"] if column == "messages" else []))


def _write(
    ctx: StageContext, tables: dict[str, pd.DataFrame], lm: bool, log: CleanLog, repaired: int
) -> StageResult:
    result = StageResult()
    for name, table in tables.items():
        ctx.out.write_table(name, table)
        result.rows[name] = len(table)
    columns = (
        ["split", "source_row", "reason", "text"]
        if lm
        else ["split", "source_row", "reason", "text", "answer"]
    )
    removed = pd.DataFrame(log.removed, columns=columns)
    removed = removed if lm else removed.rename(columns={"text": "prompt"})
    for name in tables:
        result.rows[f"{name}_removed"] = int((removed["split"] == name).sum())
    ctx.out.write_csv("removed", removed)
    ctx.out.write_csv(
        "conflicts",
        pd.DataFrame(
            log.conflicts, columns=["group", "split", "source_row", "text", "label", "resolution"]
        ).rename(columns={"text": "prompt", "label": "answer"}),
    )
    by_reason = {str(k): int(v) for k, v in removed["reason"].value_counts().items()}
    if by_reason:
        ctx.log("removed: " + ", ".join(f"{v} {k}" for k, v in by_reason.items()))
    result.summary.update(
        {
            "removed": by_reason,
            "removed_by_reason": by_reason,  # the key the UI's run page reads for every task
            "pii": dict(log.pii),
            "repaired_texts": repaired,
            "conflict_groups": len({c["group"] for c in log.conflicts}),
        }
    )
    return result


def _with_contents(messages: str, contents: list[str]) -> str:
    turns: list[dict[str, Any]] = json.loads(messages)
    for turn, content in zip(turns, contents, strict=True):
        turn["content"] = content
    return json.dumps(turns, ensure_ascii=False)


def _with_answer(messages: str, answer: str) -> str:
    turns: list[dict[str, Any]] = json.loads(messages)
    turns[-1]["content"] = answer
    return json.dumps(turns, ensure_ascii=False)
