"""The causal train stage (generation, language modelling) on Ray Train.

The same design as classification (`ray_train.py`): the recipe resolves and the splits are
encoded once on the driver (`prepare_causal`), the token ids travel through Ray's object
store, and every worker runs the single-process `fit_causal_lm` with `prepare_trainer`,
`RayTrainReportCallback` and the checkpoint Ray restored after a failure. Each worker takes
`batch_size / N` of every batch, so the global batch (and the learning rate and steps the
recipe chose for it) holds. Rank 0 saves the model as the single-process stage does (LoRA
merged, the adapter alone beside it), so evaluate, export and register see the same folders.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmforge.config import ExecutorConfig
from lmforge.training.causal_fit import CausalData
from lmforge.training.ray_run import RayFit, fit_on_ray, ray_fit, worker_batch


def _causal_loop(config: dict[str, Any]) -> None:
    """One worker: the ordinary causal fit, resumed from Ray's checkpoint after a failure."""
    from ray.train.huggingface.transformers import prepare_trainer

    from lmforge.training.causal_fit import fit_causal_lm, load_tokenizer, lora_targets
    from lmforge.training.ray_run import report_final, worker_start
    from lmforge.training.recipe import ResolvedTrain

    with worker_start(config) as start:
        base_dir = Path(config["base_dir"])
        fit = fit_causal_lm(
            config["reference"],
            base_dir,
            load_tokenizer(config["reference"], base_dir),
            start.payload["train"],
            start.payload["validation"],
            ResolvedTrain.model_validate(config["train"]),
            start.scratch / "checkpoints",
            callbacks=start.callbacks,
            prepare=prepare_trainer,
            resume=start.resume,
        )
        fit.model.config.use_cache = True  # off for training; generation wants it
        report_final(fit, start, {"lora_target_modules": lora_targets(fit.model)})


def fit_causal_lm_on_ray(
    reference: str,
    base_dir: Path,
    data: CausalData,
    executor: ExecutorConfig,
    storage: Path,
    name: str,
    out_model: Path,
    *,
    tensorboard: bool = False,
    clock: dict[str, Any] | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> RayFit:
    """Fit on `executor.train_workers` Ray Train workers with the settings and encoded splits
    `prepare_causal` made; the model folder lands in `out_model` (a LoRA adapter beside it,
    and TensorBoard logs in `tensorboard/` with `tensorboard`). `clock`: under a budget, the
    workers' clock schedule (`causal_budget.plan_causal`)."""
    workers = executor.train_workers
    per_worker = worker_batch(data.settings.batch_size, workers)
    settings = data.settings.model_dump(mode="json")
    facts = fit_on_ray(
        _causal_loop,
        {
            "reference": reference,
            "base_dir": str(base_dir),
            "train": {**settings, "batch_size": per_worker},
            "tensorboard": tensorboard,
            "clock": clock,
        },
        {"train": data.train, "validation": data.validation},
        executor,
        storage,
        name,
        out_model,
        progress,
    )
    return ray_fit(
        facts,
        out_model,
        {**settings, "train_workers": workers, "batch_size_per_worker": per_worker},
        data.decisions,
    )
