"""The stage graph: every stage, its inputs and the config it reads, in one place.

Stage modules are imported when a stage runs, not here, so that a fully cached rerun
never pays for importing torch or transformers.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from lmforge.config import Config


@dataclass(frozen=True)
class StageSpec:
    """A stage: `lmforge.stages.<name>.run(ctx, section, inputs) -> StageResult`, where
    `section` is the config section named first in `sections`.

    Its cache key hashes: the stage name, the config `sections` it reads, the content
    hashes of its `inputs` artifacts, the content of its `files(config)` (user data),
    its `fingerprint(config)` (e.g. the base model's identity) and the lmforge version.
    Stages with side effects outside the run folder are not `cacheable`.

    While it runs, a stage's `ctx.config` reads only its `sections` and its `unkeyed`
    sections (anything else raises `UndeclaredConfigRead`). `unkeyed` sections say where or
    how the stage runs (the trial executor, the study's name), never what it produces, so they
    stay out of the key; a value among them that does change the artifact enters the key
    through `fingerprint` (train's `tracking.tensorboard`).
    """

    name: str
    inputs: tuple[str, ...]
    sections: tuple[str, ...]
    cacheable: bool = True
    unkeyed: tuple[str, ...] = ()
    files: Callable[[Config], list[Path]] | None = None
    fingerprint: Callable[[Config], dict[str, Any]] | None = None
    still_valid: Callable[[Config], bool] | None = None  # checked on a cache hit
    module: str | None = None  # module under lmforge.stages when not `name` (task-specific)

    def function(self) -> Callable[..., Any]:
        module = importlib.import_module(f"lmforge.stages.{self.module or self.name}")
        return module.run


def _data_files(config: Config) -> list[Path]:
    files = [config.data.train, config.data.validation, config.data.test]
    if config.label.enabled:
        files.append(config.label.unlabeled)
    return [config.resolve_path(f) for f in files if f]


def _reviewed_labels(config: Config) -> list[Path]:
    # Answers from `lmforge review` change the labels, so they are part of the key.
    path = config.resolve_path(config.label.reviewed)
    return [path] if path.exists() else []


def _clean_answers(config: Config) -> list[Path]:
    # Only dropping label errors consults people's answers (a reviewed row is never dropped).
    return _reviewed_labels(config) if config.clean.label_noise == "drop" else []


def _label_fingerprint(config: Config) -> dict[str, Any]:
    label = config.label
    if not label.enabled:
        return {}
    return {m: _soft_fingerprint(m, config) for m in sorted({label.embedding_model, label.generator_model})}


def _soft_fingerprint(reference: str, config: Config) -> str:
    # A model that is only needed when there are rows to label must not fail the key.
    from lmforge.errors import ModelNotFoundError
    from lmforge.models.resolve import fingerprint

    try:
        return fingerprint(reference, config.base_dir)
    except ModelNotFoundError:
        return f"unresolved:{reference}"


def _clean_fingerprint(config: Config) -> dict[str, Any]:
    from lmforge.models.resolve import fingerprint

    if config.clean.label_noise == "off" or config.clean.label_noise_model != "embeddings":
        return {}
    return {"minilm-l6": fingerprint("minilm-l6", config.base_dir)}


def _augment_fingerprint(config: Config) -> dict[str, Any]:
    from lmforge.models.resolve import fingerprint

    if not config.augment.paraphrases:
        return {}
    return {"model": fingerprint(config.augment.model, config.base_dir), **_library_versions(config)}


def _model_fingerprint(config: Config) -> dict[str, Any]:
    from lmforge.models.resolve import fingerprint

    return {"model": fingerprint(config.model_name, config.base_dir)}


def _library_versions(config: Config) -> dict[str, Any]:
    # Training results depend on these libraries; a new version retrains.
    return {name: _version(name) for name in ("torch", "transformers", "accelerate")}


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "missing"


def _tracking_store_exists(config: Config) -> bool:
    # Registering is idempotent (keyed by the model's hash), so it is cached like any
    # stage; but if the local store was deleted, the model must be registered again.
    from lmforge.registry import local_store

    store = local_store(config)
    return store is None or store.exists()


def _export_versions(config: Config) -> dict[str, Any]:
    # The graph and the quantized weights depend on the exporter and quantizer versions.
    return {**_library_versions(config), "onnx": _version("onnx"), "onnxruntime": _version("onnxruntime")}


def _select_fingerprint(config: Config) -> dict[str, Any]:
    from lmforge.models.candidates import candidates

    return {ref: _soft_fingerprint(ref, config) for ref in candidates(config)}


def _trained_model_fingerprint(config: Config) -> dict[str, Any]:
    # With `select`, the model is an input (the select artifact), not a config value.
    return {} if config.selects_model else _model_fingerprint(config)


def _tune_fingerprint(config: Config) -> dict[str, Any]:
    return {**_trained_model_fingerprint(config), **_library_versions(config)}


def _train_fingerprint(config: Config) -> dict[str, Any]:
    # TensorBoard logs are moved into the train artifact, so turning them on or off changes
    # it; the rest of `tracking` (where MLflow is) does not, and stays out of the key.
    tensorboard = {"tensorboard": config.tracking.tensorboard}
    return {**_trained_model_fingerprint(config), **_library_versions(config), **tensorboard}


# Trials run where `executor` says and are stored under a study named after `project`;
# neither changes which hyperparameters win.
_TUNE_UNKEYED = ("executor", "project")


def stages_for(config: Config) -> tuple[StageSpec, ...]:
    """The stage graph for the config, in a valid execution order.

    `select` exists when the model is `auto` or a list, `tune` when `tune.enabled`,
    `crossval` when `evaluate.cv_folds` is set; `gate` always runs (never cached: the
    champion it compares with lives outside the run folder).
    """
    if config.task != "classification":
        return _causal_stages(config)
    chosen = ("select",) if config.selects_model else ()
    tuned = ("tune",) if config.tune.enabled else ()
    specs = [
        StageSpec("ingest", (), ("data", "label"), files=_data_files),  # label: the unlabeled file
        StageSpec("validate", ("ingest",), ("validate", "label")),
        StageSpec(
            "clean", ("validate",), ("clean", "label"), files=_clean_answers, fingerprint=_clean_fingerprint
        ),
        StageSpec(
            "label", ("clean",), ("label", "validate"), files=_reviewed_labels, fingerprint=_label_fingerprint
        ),
        StageSpec("split", ("label",), ("split",)),
        StageSpec("augment", ("split",), ("augment",), fingerprint=_augment_fingerprint),
        StageSpec("baseline", ("split", "augment"), ("baseline",)),
    ]
    if chosen:
        specs.append(
            StageSpec(
                "select", ("split", "augment"), ("select", "model", "train"), fingerprint=_select_fingerprint
            )
        )
    if tuned:
        specs.append(
            StageSpec(
                "tune",
                ("split", "augment", *chosen),
                ("tune", "train", "model"),
                unkeyed=_TUNE_UNKEYED,
                fingerprint=_tune_fingerprint,
            )
        )
    specs.append(
        StageSpec(
            "train",
            ("split", "augment", *chosen, *tuned),
            ("train", "model", "task"),
            unkeyed=("tracking",),
            fingerprint=_train_fingerprint,
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
            fingerprint=_export_versions,
        )
    )
    crossval = ("crossval",) if config.evaluate.cv_folds else ()
    if crossval:
        specs.append(
            StageSpec(
                "crossval",
                ("split", "augment", *chosen, *tuned),
                ("evaluate", "train", "model"),
                fingerprint=_train_fingerprint,
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
            still_valid=_tracking_store_exists,
        )
    )
    return tuple(specs)


def _causal_stages(config: Config) -> tuple[StageSpec, ...]:
    """generation / language-modeling: no labelling, augmentation or TF-IDF; the baseline is
    the base model itself, scored on the test split like the fine-tuned one."""

    def own(name: str, inputs: tuple[str, ...], sections: tuple[str, ...], **kw: Any) -> StageSpec:
        return StageSpec(name, inputs, (*sections, "task"), module=f"generation.{name}", **kw)

    exported = ("export",) if config.export.gguf else ()
    tuned = ("tune",) if config.tune.enabled else ()
    specs = [
        own("ingest", (), ("data",), files=_data_files),
        own("validate", ("ingest",), ("validate",)),
        own("clean", ("validate",), ("clean",)),
        own("split", ("clean",), ("split", "data")),  # data: names the file when too few rows
        own("baseline", ("split",), ("baseline", "evaluate", "model"), fingerprint=_model_fingerprint),
        *(
            StageSpec(
                "tune",
                ("split",),
                ("tune", "train", "model", "task"),
                unkeyed=_TUNE_UNKEYED,
                fingerprint=_tune_fingerprint,
            )
            for _ in tuned
        ),
        own(
            "train",
            ("split", *tuned),
            ("train", "model"),
            unkeyed=("tracking",),
            fingerprint=_train_fingerprint,
        ),
        own("evaluate", ("split", "train", "baseline"), ("evaluate",)),
    ]
    if exported:
        specs.append(own("export", ("split", "train"), ("export", "model"), fingerprint=_library_versions))
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
            still_valid=_tracking_store_exists,
        ),
    ]
    return tuple(specs)


def dependents(stages: tuple[StageSpec, ...], names: set[str]) -> set[str]:
    """`names` and every stage that depends on them, transitively."""
    closed = set(names)
    for spec in stages:  # stages are in topological order, one pass suffices
        if closed.intersection(spec.inputs):
            closed.add(spec.name)
    return closed
