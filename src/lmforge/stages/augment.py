"""augment: balance classes and add variants of the train split (never validation or test).

Off by default. Oversampling repeats rows of small classes; token edits and paraphrases
(written by a causal LM) add new wordings. Every added row keeps its `origin` and the
`source_row` it came from, so the report and a reviewer can trace it.
"""

from __future__ import annotations

from contextlib import ExitStack

from lmforge.config import AugmentConfig
from lmforge.pipeline.context import Inputs, StageContext, StageResult
from lmforge.pipeline.events import Progress


def run(ctx: StageContext, cfg: AugmentConfig, inputs: Inputs) -> StageResult:
    train = inputs["split"].table("train")
    if cfg.oversample is None and not cfg.token_edits and not cfg.paraphrases:
        ctx.out.write_table("train", train.assign(origin="original", augment_model=None))
        return StageResult(rows={"train": len(train)}, summary={"added": {}})
    from lmforge.data.augment import augment_train

    with ExitStack() as stack:
        bars: dict[str, Progress] = {}

        def progress(step: str, done: int, total: int) -> None:
            if step not in bars:  # one bar per step (edits, paraphrases, oversampling)
                bars[step] = stack.enter_context(ctx.progress(step, total=total))
            bars[step].update(done)

        augmented, added = augment_train(
            train,
            oversample_target=cfg.oversample,
            token_edits_per_row=cfg.token_edits,
            paraphrases_per_row=cfg.paraphrases,
            max_paraphrases=cfg.max_paraphrases,
            model=cfg.model,
            seed=cfg.seed,
            base_dir=ctx.config.base_dir,
            on_progress=progress,
        )
    ctx.out.write_table("train", augmented)
    added = {k: v for k, v in added.items() if v}
    grew = ", ".join(f"{k} +{v}" for k, v in added.items()) or "nothing added"
    ctx.log(f"train: {len(train):,} -> {len(augmented):,} rows ({grew})")
    return StageResult(
        rows={"train": len(augmented), "original": len(train)},
        summary={
            "added": added,
            "label_counts_before": train["label"].value_counts().to_dict(),
            "label_counts_after": augmented["label"].value_counts().to_dict(),
            "examples": augmented[augmented["origin"] != "original"].head(10).to_dict("records"),
        },
    )
