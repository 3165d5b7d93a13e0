"""Divergence detection and recovery, and the regularisation switches, on a tiny BERT."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from lmforge.config import TrainConfig, load_config
from lmforge.pipeline.runner import run_pipeline
from lmforge.training.fit import TrainingDiverged, fit_classifier
from lmforge.training.monitor import Divergence, LossWatch
from tests.conftest import make_rows

LABELS = ["billing", "bug", "login", "shipping"]


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = pd.DataFrame(make_rows(per_class=40), columns=["text", "label"])
    return rows.iloc[:128], rows.iloc[128:]


def train_config(**overrides: Any) -> TrainConfig:
    base = {"epochs": 4, "batch_size": 8, "learning_rate": 5e-3, "max_length": 16, "eval_steps": 4}
    base["pooling"] = "mean"  # as conftest.fast_config: the tiny BERT learns from every seed
    return TrainConfig.model_validate({**base, "early_stopping_patience": None, **overrides})


def test_a_fine_tune_from_a_trained_head_is_not_divergence_below_a_uniform_guess() -> None:
    # LP-FT on sms_spam: the probe's head starts at loss 0.03 and the first steps rise to ~0.5
    # while the top layers adapt; a binary uniform guess costs ln 2 = 0.69.
    losses = [0.03, 0.02, 0.04, 0.9, 0.6, 0.5, 0.4, 0.3]
    unguarded = LossWatch(factor=10.0)
    with pytest.raises(Divergence):  # what failed the run before the floor
        for step, loss in enumerate(losses, start=1):
            unguarded.check(step, loss)
    guarded = LossWatch(factor=10.0, floor=math.log(2))
    for step, loss in enumerate(losses, start=1):
        guarded.check(step, loss)
    exploding = LossWatch(factor=10.0, floor=math.log(2))
    with pytest.raises(Divergence):  # above the floor it still fires
        for step, loss in enumerate([0.03, 0.02, 0.04, 9.0, 50.0, 80.0], start=1):
            exploding.check(step, loss)


@pytest.mark.parametrize(
    ("losses", "diverges"),
    [
        ([1.4, 1.3, 1.2, 1.0, 0.8, 0.5], False),
        ([1.4, 1.3, 1.2, 0.05, 0.02, 0.01, 0.3, 0.2], False),  # overfitting noise is not divergence
        ([1.4, 1.3, 1.2, 1.1, 80.0, 900.0, 5000.0], True),
        ([1.4, float("nan")], True),
        ([1.4, float("inf")], True),
    ],
)
def test_loss_watch(losses: list[float], diverges: bool) -> None:
    watch = LossWatch(factor=10.0)
    if diverges:
        with pytest.raises(Divergence):
            for step, loss in enumerate(losses, start=1):
                watch.check(step, loss)
    else:
        for step, loss in enumerate(losses, start=1):
            watch.check(step, loss)


def test_huge_learning_rate_restarts_at_a_lower_rate(
    tiny_model: Path, frames: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    train, validation = frames
    # 5e3 blows the loss up at once; one restart at 5e3 * 1e-6 = 5e-3 trains normally.
    cfg = train_config(learning_rate=5e3, restart_lr_factor=1e-6, max_restarts=2)
    fit = fit_classifier(str(tiny_model), tmp_path, LABELS, train, validation, cfg, tmp_path / "ckpt")
    assert len(fit.restarts) == 1
    restart = fit.restarts[0]
    assert restart["new_learning_rate"] == pytest.approx(5e-3)
    assert "loss" in restart["reason"]
    assert math.isfinite(fit.train_loss)
    assert fit.best_metric is not None and fit.best_metric > 0.3


def test_divergence_after_the_last_restart_is_a_clear_error(
    tiny_model: Path, frames: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    train, validation = frames
    cfg = train_config(learning_rate=1e4, max_restarts=1, restart_lr_factor=0.5)
    with pytest.raises(TrainingDiverged, match=r"after 1 restart\(s\).*lower train.learning_rate"):
        fit_classifier(str(tiny_model), tmp_path, LABELS, train, validation, cfg, tmp_path / "ckpt")


def test_restart_resumes_from_the_last_good_checkpoint(
    tiny_model: Path, frames: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    from lmforge.training import monitor

    train, validation = frames
    original = monitor.LossWatch.check
    tripped: list[int] = []

    def trip_once(self: LossWatch, step: int, loss: float) -> None:
        if step == 6 and not tripped:  # after checkpoint-4 was saved
            tripped.append(step)
            raise Divergence(step, float("nan"), "non-finite loss")
        original(self, step, loss)

    monitor.LossWatch.check = trip_once  # type: ignore[method-assign]
    try:
        cfg = train_config()
        fit = fit_classifier(str(tiny_model), tmp_path, LABELS, train, validation, cfg, tmp_path / "ckpt")
    finally:
        monitor.LossWatch.check = original  # type: ignore[method-assign]
    assert fit.restarts[0]["restarted_from"] == "checkpoint-4"
    assert fit.restarts[0]["new_learning_rate"] == pytest.approx(2.5e-3)
    assert fit.steps == 64  # the run continued from step 4 to the end, not from 0


def test_divergence_is_reported(config_dict: dict[str, Any]) -> None:
    config_dict["train"].update({"learning_rate": 5e3, "restart_lr_factor": 1e-6, "eval_steps": 4})
    result = run_pipeline(load_config(data=config_dict))
    assert result.artifacts["train"].metrics["restarts"] == 1
    html = (result.run_dir / "report" / "report.html").read_text()
    assert "Training diverged 1 time(s)" in html


@pytest.mark.parametrize(
    ("overrides", "check"),
    [
        ({"label_smoothing": 0.2}, "smoothing"),
        ({"dropout": 0.3}, "dropout"),
        ({"freeze_layers": 1}, "freeze"),
        ({"freeze_embeddings": True}, "embeddings"),
        ({"adversarial": "fgm", "adversarial_epsilon": 0.5}, "fgm"),
    ],
)
def test_regularisation_switches(
    overrides: dict[str, Any],
    check: str,
    tiny_model: Path,
    frames: tuple[pd.DataFrame, pd.DataFrame],
    tmp_path: Path,
) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification

    train, validation = frames
    cfg = train_config(**overrides)
    fit = fit_classifier(str(tiny_model), tmp_path, LABELS, train, validation, cfg, tmp_path / "ckpt")
    model = fit.model
    base = AutoModelForSequenceClassification.from_pretrained(tiny_model)
    if check not in ("freeze", "embeddings"):  # a random model with frozen embeddings learns slowly
        assert fit.best_metric is not None and fit.best_metric > 0.2  # constant predictions: 0.1
    if check == "smoothing":
        assert fit.trainer.args.label_smoothing_factor == 0.2
        assert fit.trainer.label_smoother is not None
    elif check == "dropout":
        assert model.config.hidden_dropout_prob == 0.3 and model.config.attention_probs_dropout_prob == 0.3
    elif check in ("freeze", "embeddings"):
        embeddings = model.bert.embeddings.word_embeddings.weight
        assert torch.equal(embeddings, base.bert.embeddings.word_embeddings.weight)
        first, second = model.bert.encoder.layer
        frozen_first = torch.equal(first.output.dense.weight, base.bert.encoder.layer[0].output.dense.weight)
        assert frozen_first == (check == "freeze")
        assert not torch.equal(second.output.dense.weight, base.bert.encoder.layer[1].output.dense.weight)
        assert fit.trainable_parameters < sum(p.numel() for p in model.parameters())
    else:
        plain = fit_classifier(
            str(tiny_model), tmp_path, LABELS, train, validation, train_config(), tmp_path / "plain"
        )
        # The adversarial gradient changes the updates, hence the loss.
        assert fit.train_loss != pytest.approx(plain.train_loss, rel=1e-6)


def test_freezing_more_layers_than_the_model_has_names_the_key(
    tiny_model: Path, frames: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    train, validation = frames
    cfg = train_config(freeze_layers=5)
    with pytest.raises(ValueError, match=r"train\.freeze_layers is 5 but the model has 2 layers"):
        fit_classifier(str(tiny_model), tmp_path, LABELS, train, validation, cfg, tmp_path / "c")
