"""The search space: from `tune.space`, or defaults that suit fine-tuning an encoder."""

from __future__ import annotations

from typing import Any

from lmforge.config import TUNABLE, ParamRange, TrainConfig


def default_space(train: TrainConfig) -> dict[str, ParamRange]:
    """Ranges that cover what works for BERT-style and small causal LM fine-tuning, with the
    adapter's rank, alpha and dropout when `train.method` is `lora`."""
    space = {
        "learning_rate": ParamRange(low=1e-5, high=1e-3, log=True),
        "batch_size": ParamRange(choices=[8, 16, 32]),
        "weight_decay": ParamRange(low=0.0, high=0.1),
        "warmup_ratio": ParamRange(low=0.0, high=0.2),
    }
    # `epochs: auto` is left to the recipe (passes from the data size, early stopping);
    # a fixed step budget makes `epochs` meaningless.
    if train.epochs != "auto" and train.max_steps <= 0:
        space["epochs"] = ParamRange(low=1, high=max(5, int(train.epochs)))
    if train.method == "lora":
        # Adapters train few weights: they want higher learning rates than full fine-tuning.
        space["learning_rate"] = ParamRange(low=5e-5, high=2e-3, log=True)
        space["lora_r"] = ParamRange(choices=[4, 8, 16, 32])
        space["lora_alpha"] = ParamRange(choices=[8, 16, 32, 64])
        space["lora_dropout"] = ParamRange(low=0.0, high=0.2)
    return space


def suggest(trial: Any, space: dict[str, ParamRange]) -> dict[str, Any]:
    """Ask an optuna trial for one value per key of `space`."""
    params: dict[str, Any] = {}
    for key, spec in space.items():
        if spec.choices is not None:
            params[key] = trial.suggest_categorical(key, spec.choices)
        elif TUNABLE[key] is int:
            assert spec.low is not None and spec.high is not None
            params[key] = trial.suggest_int(
                key, int(spec.low), int(spec.high), step=int(spec.step or 1), log=spec.log
            )
        else:
            assert spec.low is not None and spec.high is not None
            params[key] = trial.suggest_float(key, spec.low, spec.high, step=spec.step, log=spec.log)
    return params


def distributions(space: dict[str, ParamRange]) -> dict[str, Any]:
    """optuna distributions of `space`, for `study.ask(fixed_distributions)`."""
    import optuna.distributions as d

    out: dict[str, Any] = {}
    for key, spec in space.items():
        if spec.choices is not None:
            out[key] = d.CategoricalDistribution(spec.choices)
        elif TUNABLE[key] is int:
            assert spec.low is not None and spec.high is not None
            out[key] = d.IntDistribution(
                int(spec.low), int(spec.high), step=int(spec.step or 1), log=spec.log
            )
        else:
            assert spec.low is not None and spec.high is not None
            out[key] = d.FloatDistribution(spec.low, spec.high, step=spec.step, log=spec.log)
    return out
