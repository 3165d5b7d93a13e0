"""label: give every row a label, with provenance, and queue the doubtful ones for a person.

Order of authority: a person's answer (from `lmforge review`, file `label.reviewed`) beats
the file's label, which beats a model's. Rows without a label are labelled by
`lmforge.data.autolabel` (sentence-embedding classifier, or zero-shot prompting of a causal
LM); those under `label.min_confidence` go to `review_queue.csv` together with the clean
stage's likely label errors, and are held back from training unless `label.low_confidence:
keep`. Every train row leaves with `label_source` (given / human / method:model) and
`label_confidence`.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from functools import partial

import numpy as np
import pandas as pd

from lmforge.config import LabelConfig
from lmforge.data import review
from lmforge.pipeline.artifacts import Artifact
from lmforge.pipeline.context import Inputs, StageContext, StageResult
from lmforge.stages.validate import check_classes


def run(ctx: StageContext, cfg: LabelConfig, inputs: Inputs) -> StageResult:
    clean = inputs["clean"]
    train = clean.table("train").assign(source_file="train", label_source="given", label_confidence=1.0)
    unlabeled = clean.table("unlabeled") if clean.has("unlabeled.parquet") else train.iloc[:0]
    answers = review.human_labels(review.read_answers(ctx.config.resolve_path(cfg.reviewed)))
    train, unlabeled, by_human = _apply_answers(train, unlabeled, answers)
    names = sorted(set(train["label"]) | set(cfg.labels or []))
    auto = pd.DataFrame()
    if len(unlabeled):
        auto = _auto_label(ctx, cfg, train, unlabeled, names)
        confident = auto["label_confidence"] >= cfg.min_confidence
        use = auto if cfg.low_confidence == "keep" else auto[confident]
        train = pd.concat([train, use.drop(columns=["queued"])], ignore_index=True)
    queue = _queue(auto, clean, answers, cfg)
    review.write_queue(ctx.out.path(review.QUEUE_FILE), queue, names)
    if len(queue):
        ctx.warn(f"{len(queue)} row(s) wait for review: `lmforge review` (answers go to {cfg.reviewed})")
    check_classes(train, str(clean.summary.get("train_file", "train")), ctx.config.validate_)
    ctx.out.write_table("train", train)
    for name in ("validation", "test"):
        if clean.has(f"{name}.parquet"):
            ctx.out.write_table(name, clean.table(name))
    ctx.out.write_csv("autolabels", auto)
    return _result(train, auto, queue, by_human)


def _apply_answers(
    train: pd.DataFrame, unlabeled: pd.DataFrame, answers: dict[str, str]
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """A person's label replaces the given one, and labels an unlabelled row outright."""
    if not answers:
        return train, unlabeled, 0
    ids = train["text"].map(review.item_id)
    human = ids.isin(answers)
    train.loc[human, "label"] = ids[human].map(answers)
    train.loc[human, "label_source"] = "human"
    ids_u = unlabeled["text"].map(review.item_id)
    answered = ids_u.isin(answers)
    moved = unlabeled[answered].assign(
        label=ids_u[answered].map(answers), label_source="human", label_confidence=1.0
    )
    train = pd.concat([train, moved], ignore_index=True)
    return train, unlabeled[~answered].reset_index(drop=True), int(human.sum() + answered.sum())


def _auto_label(
    ctx: StageContext, cfg: LabelConfig, train: pd.DataFrame, unlabeled: pd.DataFrame, names: list[str]
) -> pd.DataFrame:
    from lmforge.data.autolabel import auto_label

    embedder = None
    session: AbstractContextManager[None] = nullcontext()
    # The encoder's work on Ray Data actors, one encoder each (zero-shot stays here: no encoder).
    if ctx.config.executor.type == "ray" and cfg.method != "zero-shot":
        from lmforge.data.on_ray import embed_on_ray, ray_session

        executor, session = ctx.config.executor, ray_session(ctx.config.executor)
        embedder = partial(embed_on_ray, executor, model=cfg.embedding_model, base_dir=ctx.config.base_dir)
    with session, ctx.progress(f"labelling {len(unlabeled):,} rows", total=len(unlabeled)) as bar:
        found = auto_label(
            unlabeled["text"].tolist(),
            names,
            labeled_texts=train["text"].tolist(),
            labeled_labels=train["label"].tolist(),
            method=cfg.method,
            embedding_model=cfg.embedding_model,
            generator_model=cfg.generator_model,
            min_examples_per_class=cfg.min_examples_per_class,
            on_progress=bar.advance,
            base_dir=ctx.config.base_dir,
            embedder=embedder,
        )
    ctx.log(f"auto-labelled {len(unlabeled):,} rows with {found.method} ({found.model})")
    return unlabeled.assign(
        label=found.labels,
        label_source=f"{found.method}:{found.model}",
        label_confidence=np.round(found.confidence, 4),
        queued=[c < cfg.min_confidence for c in found.confidence],
    )


def _queue(auto: pd.DataFrame, clean: Artifact, answers: dict[str, str], cfg: LabelConfig) -> pd.DataFrame:
    parts = []
    if len(auto):
        low = auto[auto["queued"]]
        parts.append(
            pd.DataFrame(
                {
                    "source_row": low["source_row"],
                    "text": low["text"],
                    "suggested": low["label"],
                    "confidence": low["label_confidence"],
                    "reason": review.LOW_CONFIDENCE,
                    "given": "",
                }
            )
        )
    # Texts and labels stay strings: a text "42" or a label "NA" must not turn into 42 or NaN.
    text_columns = {"text": str, "given": str, "suggested": str}
    issues = pd.read_csv(clean.path("label_issues.csv"), dtype=text_columns, keep_default_na=False)
    if len(issues):
        parts.append(
            pd.DataFrame(
                {
                    "source_row": issues["source_row"],
                    "text": issues["text"],
                    "suggested": issues["suggested"],
                    "confidence": 1 - issues["quality"],
                    "reason": review.POSSIBLE_ERROR,
                    "given": issues["given"],
                }
            )
        )
    if not parts:
        return pd.DataFrame(columns=list(review.QUEUE_COLUMNS))
    queue = pd.concat(parts, ignore_index=True)
    queue.insert(0, "item_id", queue["text"].map(review.item_id))
    queue = queue[~queue["item_id"].isin(answers)].drop_duplicates("item_id")
    return queue[list(review.QUEUE_COLUMNS)].reset_index(drop=True)


def _result(train: pd.DataFrame, auto: pd.DataFrame, queue: pd.DataFrame, by_human: int) -> StageResult:
    sources = train["label_source"].map(lambda s: s if s in ("given", "human") else "model")
    confidences = auto["label_confidence"].to_numpy() if len(auto) else np.array([])
    histogram, edges = np.histogram(confidences, bins=10, range=(0.0, 1.0))
    return StageResult(
        rows={"train": len(train), "auto_labelled": len(auto), "queued": len(queue), "human": by_human},
        summary={
            "label_sources": sources.value_counts().to_dict(),
            "label_counts": train["label"].value_counts().to_dict(),
            "auto_method": str(auto["label_source"].iloc[0]) if len(auto) else None,
            "confidence_histogram": {"counts": histogram.tolist(), "edges": edges.tolist()},
            "queue_reasons": queue["reason"].value_counts().to_dict() if len(queue) else {},
            "auto_examples": auto.head(10).to_dict("records") if len(auto) else [],
        },
    )
