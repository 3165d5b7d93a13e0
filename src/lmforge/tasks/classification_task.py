"""The `classification` task: text -> one label, from a CSV/JSONL/Parquet of labelled rows.

Its data stages clean, auto-label and augment labelled rows; the baseline is TF-IDF +
logistic regression; the model is picked (`select`), tuned, trained, cross-validated,
exported to ONNX and gated on a classification metric.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import TYPE_CHECKING

from lmforge.pipeline.spec import (
    TUNE_UNKEYED,
    StageSpec,
    augment_fingerprint,
    clean_answers,
    clean_fingerprint,
    data_files,
    export_versions,
    ingest_fingerprint,
    label_fingerprint,
    on_ray_train,
    portfolio_fingerprint,
    reviewed_labels,
    select_fingerprint,
    tracking_store_exists,
    train_fingerprint,
    tune_fingerprint,
)

if TYPE_CHECKING:
    from lmforge.config import Config, ParamRange, TrainConfig


class ClassificationTask:
    """Single-label text classification (see `lmforge.tasks.base.Task`)."""

    name = "classification"
    description = "text -> label"
    default_model = "minilm-l6"
    metrics = ("accuracy", "f1_macro", "f1_weighted")
    gate_metric = "f1_macro"
    gate_metrics = ("f1_macro", "f1_weighted", "accuracy")
    threshold_metrics = (*gate_metrics, "precision_macro", "recall_macro")
    best_model_metrics = ("f1_macro", "f1_weighted", "accuracy", "loss")
    uses_labels = True
    raw_text = False
    selects_models = True
    ensembles_trials = True
    baseline_prefix = "tfidf_"
    baseline_name = "TF-IDF baseline"
    feedback_kind: str | None = "label"
    defaults: Mapping[str, object] = MappingProxyType({})
    # Keys only the causal stages read (generated answers, packing, GGUF export).
    unused_keys = (
        "train.packing",
        "train.long_examples",
        "evaluate.generation_rows",
        "evaluate.perplexity_rows",
        "evaluate.max_new_tokens",
        "evaluate.max_length",
        "evaluate.do_sample",
        "evaluate.temperature",
        "evaluate.top_p",
        "evaluate.samples",
        "export.gguf",
        "export.gguf_dtype",
        "export.max_logit_diff",
    )

    def stages(self, config: Config) -> tuple[StageSpec, ...]:
        """ingest .. register; `select` when the model is `auto` or a list, `tune` when
        `tune.enabled`, `crossval` when `evaluate.cv_folds` is set; `gate` always runs (never
        cached: the champion it compares with lives outside the run folder)."""
        if config.runs_portfolio:
            return self._portfolio_stages(config)
        chosen = ("select",) if config.selects_model else ()
        tuned = ("tune",) if config.tune.enabled else ()
        specs = [
            StageSpec(
                "ingest",
                (),
                ("data", "label"),  # label: the unlabeled file
                files=data_files,
                unkeyed=("clean",),  # it masks personal data: the keys that matter are in its fingerprint
                fingerprint=ingest_fingerprint,
            ),
            StageSpec("validate", ("ingest",), ("validate", "label")),
            StageSpec(
                "clean",
                ("validate",),
                ("clean", "label"),
                files=clean_answers,
                fingerprint=clean_fingerprint,
                unkeyed=("executor",),  # where the per-row work runs (Ray Data), not what it gives
            ),
            StageSpec(
                "label",
                ("clean",),
                ("label", "validate"),
                files=reviewed_labels,
                fingerprint=label_fingerprint,
                unkeyed=("executor",),  # embeddings on Ray Data or here: the same labels
            ),
            StageSpec("split", ("label",), ("split",)),
            StageSpec("augment", ("split",), ("augment",), fingerprint=augment_fingerprint),
            StageSpec("baseline", ("split", "augment"), ("baseline",)),
        ]
        if chosen:
            specs.append(
                StageSpec(
                    "select",
                    ("split", "augment"),
                    ("select", "model", "train"),
                    fingerprint=select_fingerprint,
                )
            )
        if tuned:
            # The executor section only says where trials run, so it is not part of the key.
            specs.append(
                StageSpec(
                    "tune",
                    ("split", "augment", *chosen),
                    ("tune", "train", "model"),
                    unkeyed=TUNE_UNKEYED,
                    fingerprint=tune_fingerprint,
                )
            )
        specs.append(
            StageSpec(
                "train",
                ("split", "augment", *chosen, *tuned),
                # A wall-clock budget cuts the steps: it is part of what the stage produces; so
                # does training on Ray Train workers (the same global batch, sharded).
                (
                    "train",
                    "model",
                    "task",
                    *(("budget",) if config.budget.enabled else ()),
                    *(("executor",) if on_ray_train(config) else ()),
                ),
                unkeyed=("tracking", *(() if on_ray_train(config) else ("executor",))),
                fingerprint=train_fingerprint,
            )
        )
        specs.append(StageSpec("evaluate", ("split", "train", "baseline"), ("evaluate",)))
        # Always: the model card and serving facts are written even when ONNX is off.
        exported = ("export",)
        specs.append(
            StageSpec(
                "export",
                ("split", "train", "evaluate"),
                ("export", "project", "data"),
                fingerprint=export_versions,
            )
        )
        crossval = ("crossval",) if config.evaluate.cv_folds else ()
        if crossval:
            specs.append(
                StageSpec(
                    "crossval",
                    ("split", "augment", *chosen, *tuned),
                    ("evaluate", "train", "model"),
                    fingerprint=train_fingerprint,
                )
            )
        specs.append(
            StageSpec(
                "gate",
                ("split", "train", "baseline", "evaluate"),
                ("gate", "tracking", "register", "project", "evaluate"),
                cacheable=False,
            )
        )
        specs.append(
            StageSpec(
                "report",
                (
                    "ingest",
                    "validate",
                    "clean",
                    "label",
                    "split",
                    "augment",
                    "baseline",
                    *chosen,
                    *tuned,
                    "train",
                    "evaluate",
                    *crossval,
                    *exported,
                    "gate",
                ),
                ("project", "clean", "label"),  # the report shows clean and label settings
            )
        )
        specs.append(
            StageSpec(
                "register",
                ("split", "baseline", "train", "evaluate", *exported, "gate", "report"),
                ("register", "project", "tracking"),
                still_valid=tracking_store_exists,
            )
        )
        return tuple(specs)

    def _portfolio_stages(self, config: Config) -> tuple[StageSpec, ...]:
        """`model: auto` with a budget: the train stage tries the portfolio (stages/portfolio.py)
        and outputs the winner, whatever its kind; select, tune and crossval do not run (the
        portfolio searches models and their settings itself, within the budget)."""
        specs = [
            s for s in self.stages(_without_budget(config)) if s.name not in ("select", "tune", "crossval")
        ]
        out = []
        for spec in specs:
            if spec.name == "train":
                spec = StageSpec(
                    "train",
                    ("split", "augment"),
                    ("train", "model", "task", "budget"),
                    unkeyed=("tracking",),
                    fingerprint=portfolio_fingerprint,
                    module="portfolio",
                )
            elif "select" in spec.inputs or "tune" in spec.inputs or "crossval" in spec.inputs:
                dropped = {"select", "tune", "crossval"}
                spec = replace(spec, inputs=tuple(i for i in spec.inputs if i not in dropped))
            out.append(spec)
        return tuple(out)

    def search_space(self, train: TrainConfig) -> dict[str, ParamRange]:
        from lmforge.tuning.space import default_space

        return default_space(train)


def _without_budget(config: Config) -> Config:
    # The ordinary stage list of the same config, which the portfolio list is derived from.
    from lmforge.config import BudgetConfig

    return config.model_copy(update={"budget": BudgetConfig()})
