"""A stage's declaration (`StageSpec`) and the cache-key inputs that task stage lists share.

Tasks (lmforge.tasks) build their stage lists from these; `graph.stages_for` asks the task.
Nothing here imports torch, a stage module or the config at import time.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the config imports the task registry, which imports this module
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


def data_files(config: Config) -> list[Path]:
    files = [config.data.train, config.data.validation, config.data.test]
    if config.label.enabled:
        files.append(config.label.unlabeled)
    return [config.resolve_path(f) for f in files if f]


def reviewed_labels(config: Config) -> list[Path]:
    # Answers from `lmforge review` change the labels, so they are part of the key.
    path = config.resolve_path(config.label.reviewed)
    return [path] if path.exists() else []


def clean_answers(config: Config) -> list[Path]:
    # Only dropping label errors consults people's answers (a reviewed row is never dropped).
    return reviewed_labels(config) if config.clean.label_noise == "drop" else []


def ingest_fingerprint(config: Config) -> dict[str, Any]:
    # Ingest masks personal data with the clean stage's settings (`clean` is unkeyed for it:
    # only these keys change what it writes, and the rest of `clean` must not rerun it).
    from lmforge.data.row_checks import masks_at_ingest

    clean = config.clean
    if not masks_at_ingest(clean):
        return {}
    keys = ("pii_types", "phone_region", "fix_unicode", "strip_html", "normalize_whitespace")
    return {"masks_pii": {key: getattr(clean, key) for key in keys}}


def label_fingerprint(config: Config) -> dict[str, Any]:
    label = config.label
    if not label.enabled:
        return {}
    return {m: soft_fingerprint(m, config) for m in sorted({label.embedding_model, label.generator_model})}


def soft_fingerprint(reference: str, config: Config) -> str:
    # A model that is only needed when there are rows to label must not fail the key.
    from lmforge.errors import ModelNotFoundError
    from lmforge.models.resolve import fingerprint

    try:
        return fingerprint(reference, config.base_dir)
    except ModelNotFoundError:
        return f"unresolved:{reference}"


def clean_fingerprint(config: Config) -> dict[str, Any]:
    from lmforge.models.resolve import fingerprint

    if config.clean.label_noise == "off" or config.clean.label_noise_model != "embeddings":
        return {}
    return {"minilm-l6": fingerprint("minilm-l6", config.base_dir)}


def augment_fingerprint(config: Config) -> dict[str, Any]:
    from lmforge.models.resolve import fingerprint

    if not config.augment.paraphrases:
        return {}
    return {"model": fingerprint(config.augment.model, config.base_dir), **library_versions(config)}


def model_fingerprint(config: Config) -> dict[str, Any]:
    from lmforge.models.resolve import fingerprint

    return {"model": fingerprint(config.model_name, config.base_dir)}


def library_versions(config: Config) -> dict[str, Any]:
    # Training results depend on these libraries; a new version retrains.
    return {name: _version(name) for name in ("torch", "transformers", "accelerate")}


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "missing"


def tracking_store_exists(config: Config) -> bool:
    # Registering is idempotent (keyed by the model's hash), so it is cached like any
    # stage; but if the local store was deleted, the model must be registered again.
    from lmforge.registry import local_store

    store = local_store(config)
    return store is None or store.exists()


def export_versions(config: Config) -> dict[str, Any]:
    # The graph and the quantized weights depend on the exporter and quantizer versions.
    return {**library_versions(config), "onnx": _version("onnx"), "onnxruntime": _version("onnxruntime")}


def select_fingerprint(config: Config) -> dict[str, Any]:
    from lmforge.models.candidates import candidates

    return {ref: soft_fingerprint(ref, config) for ref in candidates(config)}


def _trained_model_fingerprint(config: Config) -> dict[str, Any]:
    # With `select`, the model is an input (the select artifact), not a config value.
    return {} if config.selects_model else model_fingerprint(config)


def tune_fingerprint(config: Config) -> dict[str, Any]:
    return {**_trained_model_fingerprint(config), **library_versions(config)}


def train_fingerprint(config: Config) -> dict[str, Any]:
    # TensorBoard logs are moved into the train artifact, so turning them on or off changes
    # it; the rest of `tracking` (where MLflow is) does not, and stays out of the key.
    tensorboard = {"tensorboard": config.tracking.tensorboard}
    return {**_trained_model_fingerprint(config), **library_versions(config), **tensorboard}


def on_ray_train(config: Config) -> bool:
    """Whether the train stage runs on Ray Train workers. `executor` then enters its key (the
    artifact records the workers and their share of the batch); otherwise it is read, unkeyed."""
    return config.executor.type == "ray" and config.executor.train_workers > 0


# The encoder the portfolio probes and fine-tunes (`model: auto` with a budget).
PORTFOLIO_ENCODER = "minilm-l6"


def portfolio_encoder(config: Config) -> str:
    """The encoder the portfolio probes and fine-tunes: minilm-l6 for `model: auto`, else the
    first model of the list."""
    return config.model[0] if isinstance(config.model, list) else PORTFOLIO_ENCODER


def portfolio_fingerprint(config: Config) -> dict[str, Any]:
    # The portfolio fine-tunes an encoder and fits scikit-learn models: their versions matter.
    return {
        "model": soft_fingerprint(portfolio_encoder(config), config),
        **library_versions(config),
        "scikit-learn": _version("scikit-learn"),
        "skops": _version("skops"),
    }


# Trials run where `executor` says and are stored under a study named after `project`;
# neither changes which hyperparameters win.
TUNE_UNKEYED = ("executor", "project")
