"""clean: repair text, mask personal data, drop bad lengths, duplicates and (optionally) label errors.

Every row that is removed goes to `removed.csv` with its reason and, for duplicates, the
row it duplicates; every row that is changed goes to `changed.csv` with before and after;
duplicates whose labels disagree go to `conflicts.csv` with what was done about them; and
likely label errors go to `label_issues.csv`. Nothing is lost without a line saying why.

Tables in and out: `train`, and `unlabeled` / `validation` / `test` when present.
Duplicates are looked for within train + unlabeled together (an unlabelled copy of a
labelled row needs no label), and within validation and within test; duplicates *across*
splits are the split stage's leakage check.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from lmforge.config import CleanConfig, ExecutorConfig
from lmforge.data import review
from lmforge.data.cleanlog import CleanLog
from lmforge.data.duplicate_rows import deduplicate
from lmforge.data.on_ray import data_executor, mapper_for
from lmforge.data.row_checks import length_filter, merge_found, parse_found, repaired_in_blocks
from lmforge.pipeline.context import Inputs, StageContext, StageResult

TABLES = ("train", "unlabeled", "validation", "test")
REMOVED_COLUMNS = [
    "split",
    "source_row",
    "reason",
    "duplicate_of_split",
    "duplicate_of_row",
    "similarity",
    "text",
    "label",
]


def run(ctx: StageContext, cfg: CleanConfig, inputs: Inputs) -> StageResult:
    valid = inputs["validate"]
    frames = {n: valid.table(n) for n in TABLES if valid.has(f"{n}.parquet")}
    # What ingest masked already (see `pii` there): counted and acted on here like a new find.
    found_at_ingest = {n: _pop_found(f) for n, f in frames.items()}
    frames = {n: f.drop(columns=["pii"], errors="ignore") for n, f in frames.items()}
    rows_in = {n: len(f) for n, f in frames.items()}
    log = CleanLog()
    if cfg.enabled:
        with data_executor(ctx.config.executor, ctx.log) as executor:
            for name in frames:
                frames[name] = _repair(ctx, cfg, name, frames[name], log, found_at_ingest[name], executor)
                frames[name] = length_filter(cfg, name, frames[name], log)
            if cfg.exact_duplicates or cfg.near_duplicates:
                with ctx.progress("finding duplicates", total=None):
                    frames = deduplicate(cfg, frames, log, mapper=mapper_for(executor))
            if cfg.label_noise != "off":
                frames["train"] = _label_noise(ctx, cfg, frames["train"], log, executor)
    result = _write(ctx, frames, rows_in, log)
    result.summary["train_file"] = valid.summary.get("train_file")
    return result


def _pop_found(frame: pd.DataFrame) -> list[dict[str, int]]:
    if "pii" not in frame.columns:
        return [{}] * len(frame)
    return [parse_found(v) for v in frame["pii"]]


def _repair(
    ctx: StageContext,
    cfg: CleanConfig,
    name: str,
    frame: pd.DataFrame,
    log: CleanLog,
    earlier: list[dict[str, int]],
    executor: ExecutorConfig | None,
) -> pd.DataFrame:
    """Unicode / HTML / whitespace repair, then PII masking (or dropping), per row.

    `earlier` is what ingest masked in each row: the row's `before` in changed.csv is then
    already masked, and its `changes` still name the kinds."""
    texts_in = frame["text"].tolist()
    repaired = repaired_in_blocks(cfg, texts_in, whitespace=cfg.normalize_whitespace, executor=executor)
    texts, keep, dropped = [], [], []
    with ctx.progress(f"repairing {name} texts", total=len(frame)) as bar:
        for i, (row, (text, changes, found)) in enumerate(
            zip(frame.itertuples(index=False), repaired, strict=True)
        ):
            if earlier[i]:
                found = merge_found(earlier[i], found)
                if cfg.pii == "mask":
                    repairs = [c for c in changes if not c.startswith("pii:")]
                    changes = [*repairs, *(f"pii:{kind}" for kind in sorted(found))]
            log.pii.update(found)
            keep.append(not (found and cfg.pii == "drop"))
            if not keep[-1]:
                dropped.append((i, f"personal data ({', '.join(sorted(found))})"))
            elif changes:
                log.change(name, row.source_row, changes, row.text, text)
            texts.append(text)
            if i % 500 == 499:
                bar.advance(500)
    if dropped:  # logged at once: `frame.iloc[[i]]` row by row copies the text column each time
        log.remove(name, frame.iloc[[i for i, _ in dropped]], [reason for _, reason in dropped])
    return frame.assign(text=texts).loc[keep].reset_index(drop=True)  # [[]] would drop the columns


def _label_noise(
    ctx: StageContext, cfg: CleanConfig, train: pd.DataFrame, log: CleanLog, executor: ExecutorConfig | None
) -> pd.DataFrame:
    """Flag (or drop) rows whose label an out-of-fold model strongly disagrees with."""
    from lmforge.data.noise import choose_probe, find_label_issues

    if train["label"].nunique() < 2 or len(train) < 20:
        ctx.log("label-noise check skipped: it needs at least 20 rows of 2 classes")
        return train
    probe, why = choose_probe(cfg.label_noise_probe, len(train))
    if ctx.budget is not None:
        # The budget set the probe (pipeline/budget.py): say so, not "set in the config".
        for decision in ctx.budget.decisions:
            if decision["decision"] == f"clean.label_noise_probe: {probe}":
                why = f"the time budget: {decision['reason']}"
    with ctx.progress(f"checking labels ({cfg.label_noise_model}, {probe} probe)", total=None):
        embeddings = None
        if executor is not None and cfg.label_noise_model == "embeddings":
            from lmforge.data.on_ray import embed_on_ray

            embeddings = embed_on_ray(executor, train["text"].tolist(), model="minilm-l6", base_dir=None)
        issues = find_label_issues(
            train["text"].tolist(),
            train["label"].tolist(),
            model=cfg.label_noise_model,
            seed=0,
            probe=probe,
            embeddings=embeddings,
        )
    log.noise_probe = {"probe": probe, "reason": why, "folds": int(issues.attrs["folds"])}
    ctx.log(f"label-noise probe: {probe} ({why}), {issues.attrs['folds']} folds")
    flagged = train.assign(
        suggested=issues["suggested"].to_numpy(),
        quality=issues["quality"].to_numpy(),
        given_probability=issues["given_probability"].to_numpy(),
    )[issues["is_issue"].to_numpy()]
    flagged = flagged.sort_values("quality")
    ctx.out.write_csv(
        "label_issues",
        flagged[["source_row", "text", "label", "suggested", "quality", "given_probability"]].rename(
            columns={"label": "given"}
        ),
    )
    ctx.log(f"{len(flagged):,} possible label error(s) ({cfg.label_noise}), see label_issues.csv")
    if cfg.label_noise == "drop":
        # A row a person has already judged (`lmforge review`) is theirs to keep or fix.
        answered = review.read_answers(ctx.config.resolve_path(ctx.config.label.reviewed))["item_id"]
        flagged = flagged[~flagged["text"].map(review.item_id).isin(set(answered))]
        log.remove(
            "train", flagged, [f"possible label error (suggested '{s}')" for s in flagged["suggested"]]
        )
        return train[~train["source_row"].isin(flagged["source_row"])].reset_index(drop=True)
    return train


def _write(
    ctx: StageContext, frames: dict[str, pd.DataFrame], rows_in: dict[str, int], log: CleanLog
) -> StageResult:
    result = StageResult()
    for name, frame in frames.items():
        ctx.out.write_table(name, frame)
        result.rows[name] = len(frame)
    removed = pd.DataFrame(log.removed, columns=REMOVED_COLUMNS)
    ctx.out.write_csv("removed", removed)
    ctx.out.write_csv(
        "changed", pd.DataFrame(log.changed, columns=["split", "source_row", "changes", "before", "after"])
    )
    ctx.out.write_csv(
        "conflicts",
        pd.DataFrame(log.conflicts, columns=["group", "split", "source_row", "text", "label", "resolution"]),
    )
    if not ctx.out.path("label_issues.csv").exists():
        ctx.out.write_csv(
            "label_issues",
            pd.DataFrame(
                columns=["source_row", "text", "given", "suggested", "quality", "given_probability"]
            ),
        )
    issues = pd.read_csv(ctx.out.path("label_issues.csv"))
    result.rows["removed"] = len(removed)
    result.rows["changed"] = len(log.changed)
    result.rows["label_issues"] = len(issues)
    result.summary = {
        "rows_in": rows_in,
        "rows_out": {n: len(f) for n, f in frames.items()},
        "removed_by_reason": _by_reason(removed),
        "removed_examples": _examples(removed),
        "repairs": dict(log.repairs),
        "changed_examples": log.changed[:8],
        "pii": dict(log.pii),
        "conflict_groups": len({c["group"] for c in log.conflicts}),
        "conflict_examples": log.conflicts[:10],
        "label_issues": len(issues),
        "label_issue_examples": issues.head(15).to_dict("records"),
        "label_noise_probe": log.noise_probe,
    }
    if len(removed):
        ctx.log(
            f"removed {len(removed):,} row(s): "
            + ", ".join(f"{k} {v}" for k, v in _by_reason(removed).items())
        )
    return result


def _by_reason(removed: pd.DataFrame) -> dict[str, int]:
    # Reasons carrying a value (e.g. the suggested label) are grouped by their general kind.
    kinds = removed["reason"].str.replace(r"\s*\(.*\)$", "", regex=True)
    return {str(k): int(v) for k, v in kinds.value_counts().items()}


def _examples(removed: pd.DataFrame, per_reason: int = 3) -> list[dict[str, Any]]:
    kinds = removed["reason"].str.replace(r"\s*\(.*\)$", "", regex=True)
    picked = removed.groupby(kinds, sort=False).head(per_reason)
    return picked.where(picked.notna(), None).to_dict("records")
