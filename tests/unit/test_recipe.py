"""The fine-tune recipe: `auto` settings from the data, the mean-pooling head, class weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from lmforge.config import ConfigError, TrainConfig, load_config
from lmforge.training import recipe
from lmforge.training.recipe import (
    auto_class_weights,
    auto_epochs,
    auto_max_length,
    class_weight_vector,
    resolve_causal,
    resolve_classification,
)
from tests.conftest import make_rows

LABELS = ["billing", "bug", "login", "shipping"]


@pytest.mark.parametrize(
    ("lengths", "limit", "expected"),
    [
        ([10] * 99 + [300], 512, 16),  # one outlier does not set the limit; floor 16
        (list(range(1, 101)), 512, 104),  # 99th percentile 99.01 -> next multiple of 8
        ([600] * 10, 512, 512),  # capped by the model
        ([], 512, 128),  # nothing to measure
    ],
)
def test_max_length_is_the_99th_percentile_rounded_and_capped(
    lengths: list[int], limit: int, expected: int
) -> None:
    value, reason = auto_max_length(lengths, limit)
    assert value == expected
    if lengths:
        assert "99th percentile" in reason and "fit whole" in reason
    if expected == limit and lengths:
        assert "capped by the model's limit of 512" in reason


@pytest.mark.parametrize(
    ("rows", "batch", "epochs"),
    [(100, 32, recipe.MAX_EPOCHS), (900, 32, 6), (1800, 32, 6), (3000, 32, 4), (14_400, 32, 3)],
)
def test_few_rows_get_more_passes(rows: int, batch: int, epochs: int) -> None:
    value, reason = auto_epochs(rows, batch)
    assert value == epochs
    assert f"{rows:,} train rows" in reason


@pytest.mark.parametrize(
    ("rows", "epochs", "lr"),
    # the measured points: 450 / 900 / 1,800 / 9,000 train rows in batches of 32
    [(450, 6.0, 5e-4), (900, 6.0, 4.9e-4), (1800, 6.0, 2.5e-4), (9000, 3.0, 1e-4), (4000, 3.0, 2.3e-4)],
)
def test_encoder_learning_rate_falls_with_the_number_of_steps(rows: int, epochs: float, lr: float) -> None:
    value, reason = recipe.auto_encoder_lr(rows, 32, epochs)
    assert value == pytest.approx(lr)
    assert recipe.ENCODER_MIN_LR <= value <= recipe.ENCODER_PEAK_LR
    assert "optimizer steps" in reason


def test_class_weights_only_when_a_class_is_rare() -> None:
    even = ["a"] * 30 + ["b"] * 30 + ["c"] * 40
    assert auto_class_weights(even, ["a", "b", "c"])[0] == "none"
    rare = ["a"] * 60 + ["b"] * 37 + ["c"] * 3  # 3% < half of an even third
    verdict, reason = auto_class_weights(rare, ["a", "b", "c"])
    assert verdict == "balanced" and "'c' holds 3.0%" in reason
    weights = class_weight_vector(rare, ["a", "b", "c"])
    assert weights[2] == pytest.approx(100 / (3 * 3)) and weights[0] < 1 < weights[2]


def test_configured_values_are_kept_and_said_so() -> None:
    cfg = TrainConfig(max_length=64, learning_rate=1e-4)
    settings, decisions = resolve_classification(
        cfg,
        token_lengths=[20] * 50,
        train_labels=["a"] * 25 + ["b"] * 25,
        labels=["a", "b"],
        model_limit=512,
        pooling=("mean", "the zoo records it"),
        hidden_size=384,
        causal=False,
    )
    assert (settings.max_length, settings.learning_rate) == (64, 1e-4)
    assert settings.epochs == recipe.MAX_EPOCHS and settings.pooling == "mean"
    assert settings.learning_rate == 1e-4 and settings.class_weights == "none"
    by_key = {d.key: d for d in decisions}
    assert not by_key["max_length"].chosen and by_key["max_length"].reason == "set in the config"
    assert by_key["pooling"].chosen and by_key["pooling"].reason == "the zoo records it"


def test_a_configured_length_above_the_model_limit_is_capped_and_said_so() -> None:
    settings, decisions = resolve_classification(
        TrainConfig(max_length=4096),
        token_lengths=[20] * 50,
        train_labels=["a", "b"] * 25,
        labels=["a", "b"],
        model_limit=512,
        pooling=("default", "x"),
        hidden_size=384,
        causal=False,
    )
    causal, causal_decisions = resolve_causal(
        TrainConfig(max_length=4096), token_lengths=[20] * 50, model_limit=512
    )
    assert settings.max_length == causal.max_length == 512
    for made in (decisions, causal_decisions):
        reason = next(d.reason for d in made if d.key == "max_length")
        assert "set to 4096 in the config" in reason and "capped by the model's limit of 512" in reason


@pytest.mark.parametrize(
    ("hidden", "causal", "expected"),
    # 10 rows: a handful of steps, so a small encoder gets the peak rate
    [(384, False, "ENCODER_LR"), (768, False, "WIDE_ENCODER_LR"), (576, True, "CAUSAL_LR")],
)
def test_learning_rate_by_model_family(hidden: int, causal: bool, expected: str) -> None:
    settings, _ = resolve_classification(
        TrainConfig(),
        token_lengths=[12] * 10,
        train_labels=["a", "b"] * 5,
        labels=["a", "b"],
        model_limit=512,
        pooling=("default", "x"),
        hidden_size=hidden,
        causal=causal,
    )
    assert settings.learning_rate == getattr(recipe, expected)["full"]
    assert settings.pooling == "default"


def test_causal_length_is_capped_for_memory() -> None:
    settings, decisions = resolve_causal(
        TrainConfig(method="lora"), token_lengths=[5000] * 20, model_limit=8192
    )
    assert settings.max_length == recipe.CAUSAL_LENGTH_CAP
    assert (
        settings.learning_rate == recipe.CAUSAL_LR["lora"] and settings.epochs == recipe.CAUSAL_EPOCHS["lora"]
    )
    assert "caps causal LMs" in next(d.reason for d in decisions if d.key == "max_length")


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"epochs": "three"}, "train.epochs: input should be a valid number"),
        ({"max_length": 4}, "train.max_length: must be >= 8 (or 'auto'), got 4"),
        ({"max_length": 1_000_000}, "train.max_length: must be <= 131072 (or 'auto'), got 1000000"),
        ({"pooling": "max"}, "train.pooling: must be one of 'auto', 'mean' or 'default'"),
        ({"class_weights": "yes"}, "train.class_weights: must be one of"),
    ],
)
def test_bad_recipe_keys_name_the_key(train: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(data={"data": {"train": "x.csv"}, "train": train})
    assert message in str(caught.value)
    assert "literal" not in str(caught.value)  # one problem per key, not one per union branch


def test_mean_pooling_head_saves_reloads_and_pools_only_real_tokens(tiny_model: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModel

    from lmforge.models.load import load_classifier, load_trained_classifier, model_pooling
    from lmforge.models.resolve import resolve_model

    resolved = resolve_model(str(tiny_model))
    assert model_pooling(resolved)[0] == "default"  # a plain BERT folder records no pooling
    tokenizer, model = load_classifier(resolved, LABELS, pooling="mean")
    model.eval()
    batch = tokenizer(
        ["refund please", "my parcel is not with the courier today"], padding=True, return_tensors="pt"
    )
    with torch.inference_mode():
        logits = model(**batch).logits
        hidden = AutoModel.from_pretrained(tiny_model)(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    expected = model.classifier((hidden * mask).sum(1) / mask.sum(1))
    assert torch.allclose(logits, expected, atol=1e-5)
    assert model.bert.pooler is None  # the [CLS] pooler is not part of this head

    model.save_pretrained(tmp_path / "saved")
    tokenizer.save_pretrained(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["lmforge_pooling"] == "mean"
    _, reloaded = load_trained_classifier(tmp_path / "saved")
    with torch.inference_mode():
        assert torch.allclose(reloaded(**batch).logits, logits, atol=1e-6)


def test_sentence_transformers_folders_are_mean_pooled(tiny_model: Path, tmp_path: Path) -> None:
    import shutil

    from lmforge.models.load import model_pooling
    from lmforge.models.resolve import resolve_model

    folder = tmp_path / "st"
    shutil.copytree(tiny_model, folder)
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    pooling, reason = model_pooling(resolve_model(str(folder)))
    assert pooling == "mean" and "sentence-transformers" in reason
    assert model_pooling(resolve_model("minilm-l6"))[0] == "mean"  # recorded in the zoo


def test_class_weights_raise_a_rare_class_in_a_short_training(tiny_model: Path, tmp_path: Path) -> None:
    """A rare class (8 of 128 rows) must not vanish when training is short (two epochs)."""
    from lmforge.tasks.classification import predict_proba
    from lmforge.training.fit import fit_classifier

    rows = make_rows(per_class=40, seed=3)
    kept = [r for r in rows if r[1] != "bug"] + [r for r in rows if r[1] == "bug"][:8]
    frame = pd.DataFrame(kept, columns=["text", "label"]).sample(frac=1.0, random_state=0)
    recalls = {}
    for weights in ("none", "balanced"):
        cfg = TrainConfig(
            pooling="mean",
            epochs=2,
            batch_size=8,
            learning_rate=5e-3,
            max_length=16,
            class_weights=weights,
            early_stopping_patience=None,
            seed=0,
        )
        fit = fit_classifier(
            str(tiny_model), tmp_path, LABELS, frame, frame, cfg, tmp_path / weights, save_checkpoints=False
        )
        assert fit.settings.class_weights == weights
        probs = predict_proba(fit.model, fit.tokenizer, frame["text"].tolist(), batch_size=32, max_length=16)
        predicted = [LABELS[i] for i in probs.argmax(1)]
        bug = [p for p, t in zip(predicted, frame["label"], strict=True) if t == "bug"]
        recalls[weights] = sum(p == "bug" for p in bug) / len(bug)
    assert recalls["none"] == 0.0 and recalls["balanced"] > 0.0
