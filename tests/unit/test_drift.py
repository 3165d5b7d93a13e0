"""Drift metrics on known values, `compare` on shifted and unshifted traffic, and the HTML page."""

from __future__ import annotations

import html
import json
import math
import random
import re
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmforge.monitor.drift import (
    DriftThresholds,
    compare,
    confidence_drop,
    domain_classifier_auc,
    embedding_drift,
    embedding_noise,
    psi,
    psi_categorical,
)
from lmforge.monitor.page import render_html, write_html
from tests.conftest import make_rows

OTHER_WORDS = ["weather", "garden", "tomato", "sunny", "holiday", "beach", "mountain", "river", "forest"]


def hashed_bow(texts: list[str], dim: int = 128) -> np.ndarray:
    """A tiny deterministic sentence embedder: hashed bag of words, rows L2-normalised."""
    out = np.zeros((len(texts), dim))
    for row, text in enumerate(texts):
        for word in text.lower().split():
            out[row, zlib.crc32(word.encode()) % dim] += 1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms == 0, 1.0, norms)


def training_frame(per_class: int = 100, seed: int = 0) -> pd.DataFrame:
    return pd.DataFrame(make_rows(per_class=per_class, seed=seed), columns=["text", "label"])


def as_predictions(
    texts: list[str], labels: list[str], confidence: float, keep_text: bool = True
) -> pd.DataFrame:
    """The shape `ServeStore.recent_predictions` returns (only the columns drift reads)."""
    return pd.DataFrame(
        {
            "text": texts if keep_text else [None] * len(texts),
            "text_length": [len(t) for t in texts],
            "label": labels,
            "confidence": [confidence] * len(texts),
        }
    )


def unshifted(n_per_class: int = 100) -> pd.DataFrame:
    frame = training_frame(n_per_class, seed=1)
    return as_predictions(frame["text"].tolist(), frame["label"].tolist(), confidence=0.88)


def shifted(n: int = 200) -> pd.DataFrame:
    rng = random.Random(3)
    texts = [" ".join(rng.choices(OTHER_WORDS, k=rng.randint(12, 20))) for _ in range(n)]
    return as_predictions(texts, ["bug"] * n, confidence=0.55)


def test_psi_identical_is_zero() -> None:
    values = np.random.default_rng(0).normal(50, 10, 2000)
    assert psi(values, values) == pytest.approx(0.0, abs=1e-12)


def test_psi_shifted_is_major() -> None:
    rng = np.random.default_rng(0)
    assert psi(rng.normal(50, 10, 2000), rng.normal(65, 10, 2000)) > 0.25


def test_psi_hand_computed() -> None:
    # bins=2 -> one edge at the median 2.5: expected shares (0.5, 0.5), actual (0.75, 0.25)
    expected = 0.25 * math.log(1.5) + 0.25 * math.log(2.0)
    assert psi(np.array([1, 2, 3, 4]), np.array([1, 1, 1, 4]), bins=2) == pytest.approx(expected)


def test_psi_constant_reference_still_sees_a_shift() -> None:
    assert psi(np.full(100, 10.0), np.full(100, 40.0)) > 1.0


@pytest.mark.parametrize(
    ("expected", "actual", "value"),
    [
        ({"a": 50, "b": 50}, {"a": 50, "b": 50}, 0.0),
        ({"a": 50, "b": 50}, {"a": 5, "b": 5}, 0.0),  # shares, not counts
        ({"a": 50, "b": 50}, {"a": 80, "b": 20}, 0.3 * math.log(1.6) + 0.3 * math.log(2.5)),
        ({"a": 10}, {"a": 5, "b": 5}, 0.5 * math.log(2) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)),
    ],
)
def test_psi_categorical(expected: dict[str, int], actual: dict[str, int], value: float) -> None:
    assert psi_categorical(expected, actual) == pytest.approx(value)


def test_embedding_drift_identical_and_disjoint_vocabularies() -> None:
    texts = training_frame(50)["text"].tolist()
    assert embedding_drift(hashed_bow(texts), hashed_bow(texts)) == pytest.approx(0.0, abs=1e-9)
    assert embedding_drift(hashed_bow(texts), hashed_bow(shifted()["text"].tolist())) > 0.5


def test_domain_classifier_auc_separates_only_shifted_texts() -> None:
    reference = hashed_bow(training_frame(50)["text"].tolist())
    same = hashed_bow(training_frame(50, seed=1)["text"].tolist())
    other = hashed_bow(shifted()["text"].tolist())
    assert domain_classifier_auc(reference, same) < 0.7
    assert domain_classifier_auc(reference, other) > 0.95


@pytest.mark.parametrize("size", [30, 300])
def test_embedding_noise_accounts_for_small_samples(size: int) -> None:
    reference = hashed_bow(training_frame(100)["text"].tolist())
    recent = hashed_bow(training_frame(100, seed=1)["text"].tolist()[:size])
    raw, noise = embedding_drift(reference, recent), embedding_noise(reference, size)
    assert raw - noise < 0.01  # same distribution: the noise explains the raw distance
    assert embedding_noise(reference, 30) > 3 * embedding_noise(reference, 300)


def test_label_mix_on_too_few_predictions_is_noted_not_alerted() -> None:
    labels = [f"class{i}" for i in range(20)]
    reference = pd.DataFrame({"text": ["some text"] * 200, "label": labels * 10})
    recent = as_predictions(["some text"] * 40, labels[:10] * 4, confidence=0.9)
    report = compare(reference, recent, embed=None, reference_confidence=None)
    assert report.metrics["psi_label"] is not None and report.metrics["psi_label"] > 0.2
    assert report.alerts == []
    assert any("sampling noise alone" in note for note in report.notes)


def test_confidence_drop_ignores_missing_values() -> None:
    assert confidence_drop(np.array([0.9, 0.8]), np.array([0.6, np.nan, 0.5])) == pytest.approx(0.3)


def test_compare_not_enough_traffic_raises_no_alert() -> None:
    report = compare(training_frame(), unshifted().head(10), embed=hashed_bow, reference_confidence=None)
    assert report.alerts == [] and not report.enough_traffic
    assert report.status == "not enough traffic"
    assert "Not enough traffic" in report.notes[0]
    assert report.to_dict()["metrics"] == {}


@pytest.mark.parametrize("per_class", [10, 100])  # 40 predictions: small-sample noise must not alert
def test_compare_unshifted_traffic_has_no_alerts(per_class: int) -> None:
    report = compare(
        training_frame(),
        unshifted(per_class),
        embed=hashed_bow,
        reference_confidence=np.full(50, 0.9),
        thresholds=DriftThresholds(),
    )
    assert report.alerts == [], report.metrics
    assert report.status == "OK"
    assert set(report.metrics) == {"psi_length", "psi_label", "embedding", "domain_auc", "confidence_drop"}
    assert all(v is not None for v in report.metrics.values())


def test_compare_shifted_traffic_names_each_metric() -> None:
    report = compare(training_frame(), shifted(), embed=hashed_bow, reference_confidence=np.full(50, 0.9))
    joined = " ".join(report.alerts)
    for name in ("psi_length", "psi_label", "embedding", "domain_auc", "confidence_drop"):
        assert name in joined
    assert report.status == "5 alerts"
    assert report.label_counts["recent"] == {"bug": 200}
    data = json.loads(json.dumps(report.to_dict()))
    assert data["alerts"] == report.alerts and data["metrics"]["psi_length"] > 0.2


@pytest.mark.parametrize(
    ("embed", "keep_text", "reason"),
    [(None, True, "no embedding model"), (hashed_bow, False, "logged their text")],
)
def test_compare_says_why_embedding_drift_was_skipped(embed: object, keep_text: bool, reason: str) -> None:
    frame = training_frame(30, seed=1)
    recent = as_predictions(frame["text"].tolist(), frame["label"].tolist(), 0.9, keep_text=keep_text)
    report = compare(training_frame(), recent, embed=embed, reference_confidence=None)  # type: ignore[arg-type]
    assert report.metrics["embedding"] is None and reason in report.skipped["embedding"]
    assert "confidence_drop" in report.skipped and report.metrics["psi_length"] is not None


def test_compare_generation_traffic_skips_labels() -> None:
    recent = unshifted().assign(label=None, confidence=None)
    report = compare(training_frame().drop(columns="label"), recent, embed=None, reference_confidence=None)
    assert "psi_label" in report.skipped and report.label_counts == {}


def test_html_page_shows_alerts_and_charts(tmp_path: Path) -> None:
    report = compare(training_frame(), shifted(), embed=hashed_bow, reference_confidence=np.full(50, 0.9))
    page = render_html(report, "tickets drift")
    assert "5 alerts" in page
    assert report.alerts[0] in html.unescape(page)
    assert page.count("data:image/png;base64,") == 2
    assert not re.search(r"(src|href)=\"https?:", page)  # self-contained

    out = tmp_path / "monitor" / "drift.html"
    write_html(report, out, "tickets drift")
    assert out.read_text(encoding="utf-8") == page
    assert [p.name for p in out.parent.iterdir()] == ["drift.html"]  # no temp file left


def test_html_page_without_traffic() -> None:
    report = compare(training_frame(), unshifted().head(3), embed=None, reference_confidence=None)
    page = render_html(report, "quiet model")
    assert "Not enough traffic" in page and "base64" not in page
