"""ingest: read the user's files, map their columns to `text` and `label`.

Output tables (`train`, and `validation` / `test` / `unlabeled` when given) have the columns
`source_row` (1-based row in the file), `text` and `label` (strings, None when missing).

Personal data is masked here, before anything is written, when the clean stage would mask or
drop it (`clean.pii`, unless `clean.keep_raw_pii`): then a table where any was found also has
a `pii` column (`email:1 phone:2`, None for clean rows), which the clean stage counts, drops
rows by (`clean.pii: drop`) and removes.
"""

from __future__ import annotations

from collections import Counter

import pandas as pd

from lmforge.config import DataConfig
from lmforge.data.row_checks import IngestMasker, found_label, masks_at_ingest
from lmforge.datafiles import read_data_file, require_text
from lmforge.errors import DataError
from lmforge.pipeline.context import Inputs, StageContext, StageResult


def run(ctx: StageContext, cfg: DataConfig, inputs: Inputs) -> StageResult:
    result = StageResult()
    clean = ctx.config.clean
    masker = IngestMasker(clean, whitespace=clean.normalize_whitespace) if masks_at_ingest(clean) else None
    masked: Counter[str] = Counter()
    files = {
        "train": cfg.train,
        "validation": cfg.validation,
        "test": cfg.test,
        "unlabeled": ctx.config.label.unlabeled if ctx.config.label.enabled else None,
    }
    for name, value in files.items():
        if value is None:
            continue
        path = ctx.config.resolve_path(value)
        data = read_data_file(path, format=cfg.format, encoding=cfg.encoding)
        if name == "unlabeled" and cfg.label_column not in data.frame.columns:
            data.frame[cfg.label_column] = None  # a file of texts only, as expected
        columns = {"text": cfg.text_column, "label": cfg.label_column}
        for role, column in columns.items():
            if column not in data.frame.columns:
                raise DataError(
                    f"no {role} column; the file has columns: {', '.join(data.columns)}",
                    file=path,
                    column=column,
                    hint=f"set data.{role}_column to one of them",
                )
        require_text(data, cfg.text_column, "check data.text_column")
        table = data.frame[["source_row", cfg.text_column, cfg.label_column]].copy()
        table.columns = ["source_row", "text", "label"]
        if masker is not None:
            table = mask_table(masker, table, masked)
        ctx.out.write_table(name, table)
        result.rows[name] = len(table)
        result.summary[name] = {"file": str(path), "format": data.format, "encoding": data.encoding}
        if data.encoding not in (None, "utf-8", "ascii"):
            ctx.warn(f"{path.name}: not UTF-8, read as {data.encoding}")
        ctx.log(f"{path.name}: {len(table):,} rows ({data.format}, {data.encoding or 'binary'})")
    if masked:
        result.summary["pii_masked"] = dict(masked)
        ctx.log("masked personal data as read: " + ", ".join(f"{k} {v}" for k, v in sorted(masked.items())))
    return result


def mask_table(masker: IngestMasker, table: pd.DataFrame, totals: Counter[str]) -> pd.DataFrame:
    """`table` with its texts masked, plus a `pii` column when any row had personal data."""
    texts, labels = [], []
    for text in table["text"]:
        found: dict[str, int] = {}
        if isinstance(text, str):
            text, found = masker.mask(text)
        texts.append(text)
        labels.append(found_label(found))
        totals.update(found)
    table = table.assign(text=texts)
    return table.assign(pii=labels) if any(labels) else table
