"""split: stratified train / validation / test with a seed (or the user's own files).

After splitting, train rows that copy (exactly or nearly) a validation or test row are
removed from train and listed in `leakage.csv`: a model must not be scored on rows it
was trained on.
"""

from __future__ import annotations

import pandas as pd
from sklearn.model_selection import train_test_split

from lmforge.config import SplitConfig
from lmforge.data.duplicate_rows import leakage
from lmforge.errors import DataError, StageError
from lmforge.pipeline.context import Inputs, StageContext, StageResult


def run(ctx: StageContext, cfg: SplitConfig, inputs: Inputs) -> StageResult:
    valid = inputs["label"]
    train = valid.table("train")
    labels = sorted(train["label"].unique().tolist())
    parts: dict[str, pd.DataFrame] = {}
    given_test = valid.has("test.parquet")
    given_validation = valid.has("validation.parquet")
    if given_test:
        parts["test"] = valid.table("test")
    else:
        train, parts["test"] = _stratified(train, cfg.test, cfg.seed, "test")
    if given_validation:
        parts["validation"] = valid.table("validation")
    else:
        # The validation fraction is of all rows, so rescale it to what is left.
        share = cfg.validation if given_test else cfg.validation / (1 - cfg.test)
        train, parts["validation"] = _stratified(train, share, cfg.seed, "validation")
    parts = {"train": train, "validation": parts["validation"], "test": parts["test"]}
    leaks = pd.DataFrame()
    if cfg.remove_leakage:
        held_out = {"validation": parts["validation"], "test": parts["test"]}
        parts["train"], leaks = leakage(parts["train"], held_out, cfg.leakage_threshold)
        ctx.out.write_csv("leakage", leaks)
        if len(leaks):
            ctx.warn(
                f"removed {len(leaks)} train row(s) that duplicate validation/test rows, see leakage.csv"
            )
        # A given test file that repeats train (the same file twice) would leave nothing to train on.
        gone = sorted(set(labels) - set(parts["train"]["label"]))
        if gone:
            raise StageError(
                "split",
                f"no train rows of class(es) {', '.join(map(repr, gone[:5]))} are left after removing "
                f"{len(leaks)} that duplicate validation/test rows (leakage.csv)",
                hint="data.validation / data.test repeat the train rows; give other files, "
                "or set split.remove_leakage: false",
            )
    for name in ("validation", "test"):
        unseen = sorted(set(parts[name]["label"]) - set(labels))
        if unseen:
            raise DataError(
                f"{name} has label(s) never seen in train: {', '.join(map(str, unseen[:5]))}",
                file=valid.manifest["summary"].get(name, {}).get("file") or name,
                column="label",
            )
    result = StageResult()
    for name, table in parts.items():
        ctx.out.write_table(name, table.reset_index(drop=True))
        result.rows[name] = len(table)
    ctx.out.write_json("labels", labels)
    result.summary["labels"] = labels
    result.summary["given"] = {"test": given_test, "validation": given_validation}
    result.rows["leakage_removed"] = len(leaks)
    result.summary["leakage"] = {
        "removed": len(leaks),
        "by_kind": leaks["kind"].value_counts().to_dict() if len(leaks) else {},
        "examples": leaks.head(5).to_dict("records") if len(leaks) else [],
    }
    result.summary["label_counts"] = {
        name: table["label"].value_counts().to_dict() for name, table in parts.items()
    }
    return result


def _stratified(table: pd.DataFrame, share: float, seed: int, name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    n_classes = table["label"].nunique()
    if round(share * len(table)) < n_classes:
        raise DataError(
            f"{len(table)} rows are too few for a stratified {name} split of {share:.0%} "
            f"with {n_classes} classes",
            hint=f"add rows, raise split.{name}, or give data.{name}",
        )
    kept, held = train_test_split(table, test_size=share, random_state=seed, stratify=table["label"])
    return kept, held
