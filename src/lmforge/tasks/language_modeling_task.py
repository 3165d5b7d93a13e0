"""The `language-modeling` task: continued (domain-adaptive) pretraining of a causal LM on
raw text, scored by perplexity; its model can be the base of a later generation run.

It shares generation's stages (`causal_stages`); they read `raw_text` to treat rows as
plain text whose every token is a target.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmforge.tasks.generation_task import CAUSAL_DEFAULTS, CAUSAL_UNUSED_KEYS, causal_stages

# Raw text is scored by perplexity only: nothing is generated.
LM_UNUSED_KEYS = (
    *CAUSAL_UNUSED_KEYS,
    "evaluate.generation_rows",
    "evaluate.max_new_tokens",
    "evaluate.do_sample",
    "evaluate.temperature",
    "evaluate.top_p",
    "evaluate.samples",
)

if TYPE_CHECKING:
    from lmforge.config import Config, ParamRange, TrainConfig
    from lmforge.pipeline.spec import StageSpec


class LanguageModelingTask:
    """Continued pretraining of a causal LM (see `lmforge.tasks.base.Task`)."""

    name = "language-modeling"
    description = "continued pretraining on raw text"
    default_model = "smollm2-135m"
    metrics = ("perplexity",)
    gate_metric = "perplexity"
    gate_metrics = ("perplexity",)
    threshold_metrics = ("perplexity",)
    best_model_metrics = ("loss",)
    uses_labels = False
    raw_text = True
    selects_models = False
    ensembles_trials = False
    baseline_prefix = "base_"
    baseline_name = "base model"
    feedback_kind: str | None = None  # neither labels nor answers to correct
    defaults = CAUSAL_DEFAULTS
    unused_keys = LM_UNUSED_KEYS

    def stages(self, config: Config) -> tuple[StageSpec, ...]:
        return causal_stages(config)

    def search_space(self, train: TrainConfig) -> dict[str, ParamRange]:
        from lmforge.tuning.space import default_space

        return default_space(train)
