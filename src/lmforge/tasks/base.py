"""The `Task` protocol: everything the pipeline, the config and the front ends need to know
about a task, declared in one object instead of `if task == ...` branches.

A task is a plain class with these attributes and methods (no base class to inherit);
`lmforge.tasks.registry` holds one instance per task name. Task modules stay light: a
fully cached rerun imports them, so they must not import torch, transformers or a stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # the config imports the registry, which imports the task modules
    from lmforge.config import Config, ParamRange, TrainConfig
    from lmforge.pipeline.spec import StageSpec


class Task(Protocol):
    """What differs between tasks, as data the rest of lmforge reads.

    Attributes:
        name: the `task:` value in the config.
        description: one line for docs and `lmforge config schema`.
        default_model: the model used when the config does not name one.
        metrics: test-set metrics of the evaluate stage, in the order a summary shows them.
        gate_metric: `gate.metric` when the config does not set it.
        gate_metrics: the `gate.metric` values the task can be gated on.
        threshold_metrics: the test metrics `gate.min` can bound (the evaluate stage reports them).
        best_model_metrics: the `train.metric_for_best_model` values the task supports.
        uses_labels: rows carry a class label (labelling, stratified splits, label feedback).
        raw_text: rows are raw text and every token is a training target (language
            modelling), as opposed to conversations whose answers are the targets.
        selects_models: `model: auto` or a list (the select stage) is supported.
        ensembles_trials: `tune.ensemble_top_k > 1` (averaging trial models) is supported.
        baseline_prefix: prefix of the baseline stage's metrics comparable with `metrics`.
        baseline_name: what that baseline is, for tables ("TF-IDF baseline", "base model").
        feedback_kind: the kind of served feedback that can become training rows
            ("label", "correction"), or None when retraining from feedback does not apply.
        defaults: config values (by key path) that differ from the schema's defaults for
            this task; applied when the key is not set.
        unused_keys: key paths (a section or a section's key) the task's stages never read;
            setting one to a non-default value is a config error.
    """

    # Read-only, so a class attribute of a narrower type (a 3-tuple) satisfies them.
    @property
    def name(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def default_model(self) -> str: ...
    @property
    def metrics(self) -> tuple[str, ...]: ...
    @property
    def gate_metric(self) -> str: ...
    @property
    def gate_metrics(self) -> tuple[str, ...]: ...
    @property
    def threshold_metrics(self) -> tuple[str, ...]: ...
    @property
    def best_model_metrics(self) -> tuple[str, ...]: ...
    @property
    def uses_labels(self) -> bool: ...
    @property
    def raw_text(self) -> bool: ...
    @property
    def selects_models(self) -> bool: ...
    @property
    def ensembles_trials(self) -> bool: ...
    @property
    def baseline_prefix(self) -> str: ...
    @property
    def baseline_name(self) -> str: ...
    @property
    def feedback_kind(self) -> str | None: ...
    @property
    def defaults(self) -> Mapping[str, Any]: ...
    @property
    def unused_keys(self) -> tuple[str, ...]: ...

    def stages(self, config: Config) -> tuple[StageSpec, ...]:
        """The stage graph for `config`, in a valid execution order."""
        ...

    def search_space(self, train: TrainConfig) -> dict[str, ParamRange]:
        """The default hyperparameter search space (`tune.space` unset)."""
        ...
