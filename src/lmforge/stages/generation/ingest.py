"""ingest (generation, language-modeling): read the user's files into one shape.

generation: each row becomes a conversation, `messages` (JSON text: a list of
{role, content}, the last being the answer), from whichever layout the file has:
chat `messages`, `instruction` / optional `input` / `output`, or `prompt` / `response`
(column names from `data.*_column`). language-modeling: a `text` column, or paragraphs
of a .txt file. A row that cannot be read keeps `messages` empty and says why in
`problem`; the validate stage rejects it with that reason.

Personal data is masked here (every turn, or the text), before anything is written, as in the
classification ingest: see `lmforge.stages.ingest`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from lmforge.config import DataConfig
from lmforge.data.row_checks import IngestMasker, found_label, masks_at_ingest, merge_found
from lmforge.datafiles import DataFile, read_data_file, require_text
from lmforge.errors import DataError
from lmforge.pipeline.context import Inputs, StageContext, StageResult
from lmforge.tasks.generation import conversation, parse_messages
from lmforge.tasks.registry import get_task


def run(ctx: StageContext, cfg: DataConfig, inputs: Inputs) -> StageResult:
    result = StageResult()
    clean = ctx.config.clean
    masker = IngestMasker(clean, whitespace=False) if masks_at_ingest(clean) else None
    masked: dict[str, int] = {}
    for name, value in {"train": cfg.train, "validation": cfg.validation, "test": cfg.test}.items():
        if value is None:
            continue
        path = ctx.config.resolve_path(value)
        data = read_data_file(path, format=cfg.format, encoding=cfg.encoding)
        if get_task(ctx.config.task).raw_text:
            table, layout = _texts(data, cfg, path), "text"
        else:
            layout = _layout(list(data.frame.columns), cfg, path)
            _require_texts(data, cfg, layout)
            table = _conversations(data.frame, cfg, layout)
        if masker is not None:
            table, found = _mask(masker, table)
            masked = merge_found(masked, found)
        ctx.out.write_table(name, table)
        result.rows[name] = len(table)
        result.summary[name] = {"file": str(path), "format": data.format, "layout": layout}
        ctx.log(f"{path.name}: {len(table):,} rows ({data.format}, {layout})")
    if masked:
        result.summary["pii_masked"] = masked
        ctx.log("masked personal data as read: " + ", ".join(f"{k} {v}" for k, v in sorted(masked.items())))
    return result


def _mask(masker: IngestMasker, table: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """`table` with every text masked (each turn's content, the text, and a `problem` that may
    quote a cell), plus a `pii` column when any row had personal data; and the totals."""
    column = "text" if "text" in table.columns else "messages"
    values, labels = [], []
    totals: dict[str, int] = {}
    for value in table[column]:
        found: dict[str, int] = {}
        if isinstance(value, str) and column == "text":
            value, found = masker.mask(value)
        elif isinstance(value, str):
            turns = json.loads(value)
            for turn in turns:
                turn["content"], more = masker.mask(turn["content"])
                found = merge_found(found, more)
            value = json.dumps(turns, ensure_ascii=False) if found else value
        values.append(value)
        labels.append(found_label(found))
        totals = merge_found(totals, found)
    table = table.assign(**{column: values})
    if "problem" in table.columns:
        table = table.assign(
            problem=[masker.mask(p)[0] if isinstance(p, str) else p for p in table["problem"]]
        )
    return (table.assign(pii=labels) if any(labels) else table), totals


def _texts(data: DataFile, cfg: DataConfig, path: Path) -> pd.DataFrame:
    frame = data.frame
    if cfg.text_column not in frame.columns:
        columns = ", ".join(c for c in frame.columns if c != "source_row")
        raise DataError(
            f"no text column; the file has columns: {columns}",
            file=path,
            column=cfg.text_column,
            hint="set data.text_column to one of them",
        )
    require_text(data, cfg.text_column, "check data.text_column")
    texts = [_cell(v) for v in frame[cfg.text_column]]
    return pd.DataFrame({"source_row": frame["source_row"], "text": texts})


def _layout(columns: list[str], cfg: DataConfig, path: Path) -> str:
    if cfg.messages_column in columns:
        return "messages"
    if cfg.instruction_column in columns and cfg.output_column in columns:
        return "instruction"
    if cfg.prompt_column in columns and cfg.response_column in columns:
        return "prompt"
    shown = ", ".join(c for c in columns if c != "source_row")
    raise DataError(
        f"no generation columns; the file has columns: {shown}",
        file=path,
        hint=(
            f"expected `{cfg.messages_column}`, or `{cfg.instruction_column}` + `{cfg.output_column}` "
            f"(+ optional `{cfg.input_column}`), or `{cfg.prompt_column}` + `{cfg.response_column}`; "
            "set data.messages_column / instruction_column / output_column / prompt_column / "
            "response_column to your names"
        ),
    )


def _require_texts(data: DataFile, cfg: DataConfig, layout: str) -> None:
    """Stop on a prompt or answer column that holds no text (as the classification ingest does):
    `str()` would train on `42`, `True` or a list's repr as if a person had written it.

    A prompt column of nothing but numbers is a wrong column; an answer column of number
    strings can be right (arithmetic), so answers and inputs are refused only when the file
    itself types them as numbers, true/false or lists. A `messages` column holds lists by
    design: each row's messages are checked by `parse_messages`.
    """
    if layout == "messages":
        return
    if layout == "instruction":
        prompt, answers = cfg.instruction_column, [cfg.output_column, cfg.input_column]
        prompt_key, answer_keys = "instruction_column", ["output_column", "input_column"]
    else:
        prompt, answers = cfg.prompt_column, [cfg.response_column]
        prompt_key, answer_keys = "prompt_column", ["response_column"]
    require_text(data, prompt, f"check data.{prompt_key}")
    for column, key in zip(answers, answer_keys, strict=True):
        if column in data.frame.columns:
            hint = f"check data.{key}; a number meant as text goes in quotes (JSON) or a string column"
            require_text(data, column, hint, all_numbers=False)


def _conversations(frame: pd.DataFrame, cfg: DataConfig, layout: str) -> pd.DataFrame:
    messages: list[str | None] = []
    problems: list[str | None] = []
    for _, row in frame.iterrows():
        try:
            found = _one(row, cfg, layout)
            messages.append(json.dumps(found, ensure_ascii=False))
            problems.append(None)
        except ValueError as exc:
            messages.append(None)
            problems.append(str(exc))
    return pd.DataFrame({"source_row": frame["source_row"], "messages": messages, "problem": problems})


def _cell(value: Any) -> Any:
    """A cell, or None when missing (pandas' string columns hold missing values as NaN)."""
    if isinstance(value, (list, dict)):
        return value
    return None if value is None or pd.isna(value) else value


def _one(row: Any, cfg: DataConfig, layout: str) -> list[dict[str, str]]:
    row = row.map(_cell)
    if layout == "messages":
        value = row[cfg.messages_column]
        if value is None:
            raise ValueError("missing messages")
        found = parse_messages(value)
        if cfg.system_prompt and found[0]["role"] != "system":
            found = [{"role": "system", "content": cfg.system_prompt}, *found]
        return found
    if layout == "instruction":
        instruction, output = row[cfg.instruction_column], row[cfg.output_column]
        extra = row[cfg.input_column] if cfg.input_column in row.index else None
    else:
        instruction, output, extra = row[cfg.prompt_column], row[cfg.response_column], None
    if instruction is None or not str(instruction).strip():
        raise ValueError("missing instruction" if layout == "instruction" else "missing prompt")
    if output is None:
        raise ValueError("missing output" if layout == "instruction" else "missing response")
    return conversation(
        str(instruction), None if extra is None else str(extra), str(output), cfg.system_prompt
    )
