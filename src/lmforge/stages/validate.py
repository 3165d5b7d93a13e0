"""validate: reject unusable rows with a reason each, and stop on data that cannot train.

Rejected rows go to `rejected.csv` (file, row, reason, text, label): nothing is dropped
silently. Fatal problems (too many rejects, one class, tiny classes) name the file and
the class so the user can fix the data. With auto-labelling on (`label.enabled`), rows of
train without a label are not rejected but passed on as `unlabeled` (with the rows of
`label.unlabeled`), and the class checks wait until the label stage has labelled them.
"""

from __future__ import annotations

import pandas as pd

from lmforge.config import ValidateConfig
from lmforge.errors import DataError
from lmforge.pipeline.context import Inputs, StageContext, StageResult


def _reasons(table: pd.DataFrame, *, need_label: bool = True) -> pd.Series:
    text = table["text"].fillna("")
    label = table["label"].fillna("")
    reasons = pd.Series("", index=table.index, dtype=object)
    reasons[table["text"].isna()] = "missing text"
    reasons[(reasons == "") & (text.str.strip() == "")] = "blank text"
    if need_label:
        reasons[(reasons == "") & (label.str.strip() == "")] = "missing label"
    return reasons


def run(ctx: StageContext, cfg: ValidateConfig, inputs: Inputs) -> StageResult:
    ingest = inputs["ingest"]
    auto_label = ctx.config.label.enabled
    result = StageResult()
    rejected, unlabeled = [], []
    train = pd.DataFrame()
    for name in ("train", "validation", "test", "unlabeled"):
        if not ingest.has(f"{name}.parquet"):
            continue
        table = ingest.table(name)
        file = ingest.summary[name]["file"]
        reasons = _reasons(table, need_label=name != "unlabeled" and not (name == "train" and auto_label))
        bad = table[reasons != ""].assign(file=file, split=name, reason=reasons[reasons != ""])
        good = table[reasons == ""].copy()
        good["label"] = good["label"].str.strip()
        if name in ("train", "unlabeled"):
            # Every row of the unlabeled file waits for a label, whatever its label column says.
            missing = good["label"].isna() | (good["label"] == "") | (name == "unlabeled")
            unlabeled.append(good[missing].assign(label=None, source_file=name))
            good = good[~missing]
        check_rejected(ctx, cfg, name, file, bad, len(table), "data.text_column / data.label_column")
        rejected.append(bad)
        if name == "train":
            train = good
        if name != "unlabeled":
            ctx.out.write_table(name, good)
            result.rows[name] = len(good)
        result.rows[f"{name}_rejected"] = len(bad)
    waiting = pd.concat(unlabeled, ignore_index=True) if unlabeled else pd.DataFrame()
    if train.empty and len(waiting) and not ctx.config.label.labels:
        # Auto-labelling learns from the labelled rows; with none and no label names it has nothing.
        raise DataError(
            f"no row has a label ({len(waiting):,} rows, every label empty)",
            file=ingest.summary["train"]["file"],
            column="label",
            hint="check data.label_column, fill in labels, or list the classes in label.labels "
            "to label the rows zero-shot",
        )
    if len(waiting):
        kept = ["source_row", "text", "label", "source_file"] + (["pii"] if "pii" in waiting else [])
        ctx.out.write_table("unlabeled", waiting[kept])
        ctx.log(f"{len(waiting):,} row(s) without a label go to the label stage")
    else:
        check_classes(train, ingest.summary["train"]["file"], cfg)
    result.rows["unlabeled"] = len(waiting)
    write_rejected(ctx, result, rejected, ["file", "split", "source_row", "reason", "text", "label"])
    counts = ingest.table("train").pipe(lambda t: t[_reasons(t) == ""])["label"].str.strip()
    result.summary["label_counts"] = counts.value_counts().to_dict()
    result.summary["train_file"] = ingest.summary["train"]["file"]
    result.summary["text_chars"] = _lengths(ingest.table("train")["text"].dropna())
    return result


def write_rejected(
    ctx: StageContext, result: StageResult, rejected: list[pd.DataFrame], columns: list[str]
) -> pd.DataFrame:
    """`rejected.csv` (every task) and the report's view of it: counts by reason, first rows."""
    all_bad = pd.concat(rejected) if rejected else pd.DataFrame(columns=columns)
    ctx.out.write_csv("rejected", all_bad[columns])
    result.summary["rejected_reasons"] = all_bad["reason"].value_counts().to_dict()
    result.summary["rejected_examples"] = all_bad[columns].head(10).to_dict("records")
    return all_bad


def check_rejected(
    ctx: StageContext, cfg: ValidateConfig, name: str, file: str, bad: pd.DataFrame, total: int, columns: str
) -> None:
    """Stop when more than `validate.max_rejected_fraction` of a file's rows were rejected (most
    often a wrong column setting, named in the hint); otherwise warn when any were."""
    share = len(bad) / max(total, 1)
    if share > cfg.max_rejected_fraction:
        first = bad.iloc[0]
        raise DataError(
            f"{len(bad)} of {total} rows rejected ({share:.0%}); first at row "
            f"{first.source_row}: {first.reason}",
            file=file,
            hint=f"check {columns}, or raise validate.max_rejected_fraction",
        )
    if len(bad):
        ctx.warn(f"{name}: {len(bad)} row(s) rejected, see rejected.csv")


def check_classes(table: pd.DataFrame, file: str, cfg: ValidateConfig) -> None:
    """Stop on labelled train data that cannot train a classifier: one class, tiny classes."""
    counts = table["label"].value_counts()
    if len(counts) < 2:
        only = counts.index[0] if len(counts) else "none"
        raise DataError(
            f"only one class ('{only}') among {len(table)} valid rows; classification needs at least two",
            file=file,
            column="label",
            hint="check data.label_column",
        )
    small = counts[counts < cfg.min_rows_per_class]
    if len(small):
        # Five are enough to see the pattern; a thousand would bury the line.
        listed = ", ".join(f"'{str(k)[:40]}' ({v})" for k, v in small.head(5).items())
        more = f", and {len(small) - 5} more" if len(small) > 5 else ""
        hint = "add examples, merge or remove those classes, or lower validate.min_rows_per_class"
        if len(counts) > len(table) / 2:  # nearly every row its own class: texts, not labels
            hint = "most labels occur once: are data.text_column and data.label_column swapped?"
        raise DataError(
            f"{len(small)} class(es) have fewer than {cfg.min_rows_per_class} rows: {listed}{more}",
            file=file,
            column="label",
            hint=hint,
        )


def _lengths(text: pd.Series) -> dict[str, float]:
    lengths = text.str.len()
    return {
        "mean": float(lengths.mean()),
        "p50": float(lengths.median()),
        "p95": float(lengths.quantile(0.95)),
        "max": float(lengths.max()),
    }
