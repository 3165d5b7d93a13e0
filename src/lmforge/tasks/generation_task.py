"""The `generation` task: instruction tuning (SFT) of a causal LM on instruction / response
rows or chat conversations, scored by perplexity, ROUGE, BLEU and exact match.

`causal_stages` is the stage list generation and language-modeling share: no labelling,
augmentation or TF-IDF; the baseline is the base model itself, scored on the test split
like the fine-tuned one. The stage modules live in `lmforge.stages.generation`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lmforge.pipeline.spec import (
    TUNE_UNKEYED,
    StageSpec,
    data_files,
    ingest_fingerprint,
    library_versions,
    model_fingerprint,
    on_ray_train,
    tracking_store_exists,
    train_fingerprint,
    tune_fingerprint,
)

if TYPE_CHECKING:
    from lmforge.config import Config, ParamRange, TrainConfig

# What a causal LM does not read: labels and their sections, the TF-IDF baseline, the
# classifier head and its loss, label noise, cross-validation, ONNX export. (Data column keys
# are not listed: the UI's start form submits the column fields it hides for the other task.)
CAUSAL_UNUSED_KEYS = (
    "validate.min_rows_per_class",
    # clean.label_noise: defaults to off for causal tasks; config._clean_problems checks it
    "clean.label_noise_model",
    "clean.label_noise_probe",
    "label",
    "augment",
    "baseline.max_features",
    "baseline.ngram_max",
    "select",
    "train.pooling",
    "train.class_weights",
    "train.adversarial",
    "train.adversarial_epsilon",
    "evaluate.worst_errors",
    "evaluate.cv_folds",
    "export.onnx",
    "export.int8",
    "export.opset",
    "export.onnx_max_logit_diff",
    "export.max_accuracy_drop",
)

# A causal LM's logits are tokens x vocabulary floats per row: batches of 64 rows of
# 512 tokens would need ~6 GB for smollm2's 49k vocabulary alone.
CAUSAL_DEFAULTS = {
    # The measured recipe (bench/bench_recipe_causal.py), what `lmforge init` writes: a full
    # fine-tune at the classifier's batch of 32 needs over 24 GB for smollm2-135m on samsum's
    # 568-token examples (killed by the OOM killer on the reference machine).
    "train.method": "lora",
    "train.batch_size": 4,
    "train.eval_batch_size": 8,
    "evaluate.batch_size": 8,
    "train.metric_for_best_model": "loss",
}


class GenerationTask:
    """Instruction tuning of a causal LM (see `lmforge.tasks.base.Task`)."""

    name = "generation"
    description = "instruction tuning of a causal LM"
    default_model = "smollm2-135m"
    metrics = ("perplexity", "rouge_l", "bleu")
    gate_metric = "rouge_l"
    gate_metrics = ("rouge_l", "exact_match", "perplexity")
    threshold_metrics = ("rouge_l", "rouge1", "rouge2", "bleu", "exact_match", "perplexity")
    best_model_metrics = ("loss",)
    uses_labels = False
    raw_text = False
    selects_models = False
    ensembles_trials = False
    baseline_prefix = "base_"
    baseline_name = "base model"
    feedback_kind: str | None = "correction"
    defaults = CAUSAL_DEFAULTS
    unused_keys = CAUSAL_UNUSED_KEYS

    def stages(self, config: Config) -> tuple[StageSpec, ...]:
        return causal_stages(config)

    def search_space(self, train: TrainConfig) -> dict[str, ParamRange]:
        from lmforge.tuning.space import default_space

        return default_space(train)


def causal_stages(config: Config) -> tuple[StageSpec, ...]:
    """generation / language-modeling: ingest .. register with the `generation.*` stage
    modules; `tune` when `tune.enabled`, `export` (GGUF) when `export.gguf`."""

    def own(name: str, inputs: tuple[str, ...], sections: tuple[str, ...], **kw: Any) -> StageSpec:
        return StageSpec(name, inputs, (*sections, "task"), module=f"generation.{name}", **kw)

    exported = ("export",) if config.export.gguf else ()
    tuned = ("tune",) if config.tune.enabled else ()
    specs = [
        own("ingest", (), ("data",), files=data_files, unkeyed=("clean",), fingerprint=ingest_fingerprint),
        own("validate", ("ingest",), ("validate",)),
        # executor: where the per-row work runs (Ray Data), not what it gives
        own("clean", ("validate",), ("clean",), unkeyed=("executor",)),
        own("split", ("clean",), ("split", "data")),  # data: names the file when too few rows
        own("baseline", ("split",), ("baseline", "evaluate", "model"), fingerprint=model_fingerprint),
        *(
            StageSpec(
                "tune",
                ("split",),
                ("tune", "train", "model", "task"),
                unkeyed=TUNE_UNKEYED,
                fingerprint=tune_fingerprint,
            )
            for _ in tuned
        ),
        own(
            "train",
            ("split", *tuned),
            # A wall-clock budget ends the fit by the clock: part of what the stage produces.
            (
                "train",
                "model",
                *(("budget",) if config.budget.enabled else ()),
                *(("executor",) if on_ray_train(config) else ()),
            ),
            unkeyed=("tracking", *(() if on_ray_train(config) else ("executor",))),
            fingerprint=train_fingerprint,
        ),
        own("evaluate", ("split", "train", "baseline"), ("evaluate",)),
    ]
    if exported:
        specs.append(own("export", ("split", "train"), ("export", "model"), fingerprint=library_versions))
    specs += [
        StageSpec(
            "gate",
            ("split", "train", "baseline", "evaluate"),
            ("gate", "tracking", "register", "project", "evaluate"),
            cacheable=False,
        ),
        own(
            "report",
            (
                "ingest",
                "validate",
                "clean",
                "split",
                "baseline",
                *tuned,
                "train",
                "evaluate",
                *exported,
                "gate",
            ),
            ("project", "evaluate"),  # the report shows the sampling settings
        ),
        StageSpec(
            "register",
            ("split", "baseline", "train", "evaluate", *exported, "gate", "report"),
            ("register", "project", "tracking"),
            still_valid=tracking_store_exists,
        ),
    ]
    return tuple(specs)
