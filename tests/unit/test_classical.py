"""The classical candidates: TF-IDF + linear heads, their search, ONNX head, embedding probe."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lmforge.classical.linear import (
    SKOPS_FILE,
    LinearModelFileError,
    build_features,
    fit_head,
    fit_linear,
    load_linear,
    save_linear,
)
from lmforge.models.kinds import KIND_FILE, kind_of, read_kind
from tests.conftest import TOPICS, make_rows

TOPICS_LABELS = set(TOPICS)


def _split(per_class: int = 30, seed: int = 0) -> tuple[list[str], list[str]]:
    rows = make_rows(per_class, seed)
    return [t for t, _ in rows], [label for _, label in rows]


@pytest.mark.parametrize("head", ["logistic_regression", "linear_svc"])
def test_linear_model_saves_and_loads_with_the_same_probabilities(tmp_path: Path, head: str) -> None:
    texts, labels = _split()
    model = fit_linear(texts, labels, head=head, C=1.0)
    probe_texts, probe_labels = _split(5, seed=1)
    probs = model.proba(probe_texts)
    assert probs.shape == (len(probe_texts), 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert np.mean(np.array(model.labels)[probs.argmax(1)] == np.array(probe_labels)) > 0.9

    save_linear(model, tmp_path / "model", source="test")
    assert kind_of(tmp_path / "model") == "linear"
    record = read_kind(tmp_path / "model")
    assert record["labels"] == model.labels and record["head"] == head and record["C"] == 1.0
    assert record["source"] == "test" and set(record["features"]) == {"word", "char_wb"}
    loaded = load_linear(tmp_path / "model")
    np.testing.assert_array_equal(loaded.proba(probe_texts), probs)
    assert loaded.head == head and loaded.labels == model.labels


def test_the_saved_vectorisers_keep_no_pruned_ngrams_and_plain_int_indices(tmp_path: Path) -> None:
    # Numpy-integer vocabulary values made skops write one array per n-gram (minutes at 200k);
    # scikit-learn before 1.7 also kept every pruned n-gram (raw text) in stop_words_.
    texts, labels = _split(per_class=600)  # over 2k rows: min_df=2 prunes n-grams seen once
    model = fit_linear([f"{t} unique{i}" for i, t in enumerate(texts)], labels)
    save_linear(model, tmp_path / "model")
    loaded = load_linear(tmp_path / "model")
    for vectoriser in dict(loaded.pipeline.named_steps["features"].transformer_list).values():
        assert not getattr(vectoriser, "stop_words_", None)
        assert all(type(index) is int for index in vectoriser.vocabulary_.values())
    np.testing.assert_array_equal(loaded.proba(texts[:20]), model.proba(texts[:20]))


def test_proba_reorders_columns_and_gives_unseen_labels_zero() -> None:
    texts, labels = _split()
    model = fit_linear(texts, labels)
    probs = model.proba(texts[:3])
    wanted = ["shipping", "never-seen", "billing", "bug", "login"]
    reordered = model.proba(texts[:3], labels=wanted)
    for j, label in enumerate(wanted):
        expected = probs[:, model.labels.index(label)] if label in model.labels else 0.0
        np.testing.assert_array_equal(reordered[:, j], expected)


def test_feature_caps_follow_the_row_count() -> None:
    small = build_features(500).transformer_list[1][1]
    large = build_features(60_000).transformer_list[1][1]
    assert small.min_df == 1 and large.min_df == 2
    assert large.max_features is not None


def test_linear_svc_calibrates_when_a_class_has_one_row() -> None:
    texts, labels = _split(10)
    texts.append("a completely different singleton text")
    labels.append("rare")
    X = build_features(len(texts)).fit_transform(texts)
    head = fit_head(X, labels, "linear_svc", 1.0)
    probs = head.predict_proba(X)
    assert list(head.classes_) == sorted(set(labels))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("head", ["logistic_regression", "linear_svc"])
def test_fit_head_refuses_one_class_and_unknown_heads(head: str) -> None:
    X = build_features(10).fit_transform(["ab bc", "bc cd", "cd de"])
    with pytest.raises(ValueError):
        fit_head(X, ["x", "x", "x"], head, 1.0)
    with pytest.raises(ValueError, match="unknown linear head"):
        fit_head(X, ["x", "y", "x"], "random_forest", 1.0)


def test_texts_without_words_fall_back_to_character_ngrams() -> None:
    texts = ["😀 1", "😢 2", "😀😀 3", "😢😢 4"] * 3
    labels = ["happy", "sad", "happy", "sad"] * 3
    model = fit_linear(texts, labels)
    assert [name for name, _ in model.pipeline.named_steps["features"].transformer_list] == ["char_wb"]
    assert model.proba(["😀"]).argmax() == model.labels.index("happy")


def test_all_empty_texts_are_a_user_error() -> None:
    from lmforge.errors import LmforgeError

    with pytest.raises(LmforgeError, match="all empty"):
        fit_linear(["", " ", ""], ["a", "b", "a"])


def test_a_huge_text_is_cut_before_vectorising() -> None:
    from lmforge.classical.linear import MAX_TEXT_CHARS

    texts, labels = _split(10)
    huge = "refund invoice " * (MAX_TEXT_CHARS // 5)  # 3x the cap
    model = fit_linear([*texts, huge], [*labels, "billing"])
    tail_changed = huge[:MAX_TEXT_CHARS] + " crash error freeze" * 1000
    np.testing.assert_array_equal(model.proba([tail_changed]), model.proba([huge[:MAX_TEXT_CHARS]]))


def _saved(tmp_path: Path) -> Path:
    texts, labels = _split(10)
    return save_linear(fit_linear(texts, labels), tmp_path / "model")


def _replace_schema(path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["schema.json"] = json.dumps(edit(json.loads(members["schema.json"]))).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    path.write_bytes(buffer.getvalue())


def test_a_skops_file_holding_a_function_is_refused(tmp_path: Path) -> None:
    import skops.io as sio

    folder = _saved(tmp_path)
    # A file that would hand `eval` to whoever loads it (skops trusts no function by default,
    # but lmforge must not even ask: only the types it writes are accepted).
    sio.dump({"steps": eval}, folder / SKOPS_FILE)
    with pytest.raises(LinearModelFileError, match=r"linear.skops: holds type builtins.eval"):
        load_linear(folder)


def test_a_skops_file_with_a_smuggled_sklearn_type_is_refused(tmp_path: Path) -> None:
    folder = _saved(tmp_path)

    def smuggle(schema: dict[str, Any]) -> dict[str, Any]:
        # skops trusts every scikit-learn estimator by default; lmforge's list is narrower.
        schema["__class__"] = "FunctionTransformer"
        schema["__module__"] = "sklearn.preprocessing._function_transformer"
        return schema

    _replace_schema(folder / SKOPS_FILE, smuggle)
    with pytest.raises(
        LinearModelFileError, match=r"sklearn\.preprocessing\._function_transformer\.FunctionTransformer"
    ):
        load_linear(folder)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda b: b[: len(b) // 2], id="truncated"),
        pytest.param(lambda b: b"", id="empty"),
        pytest.param(lambda b: b"PK\x03\x04" + b"\x00" * 200, id="garbage-zip"),
        pytest.param(lambda b: b"[" * 200_000, id="not-a-zip"),
    ],
)
def test_a_corrupt_skops_file_gives_one_clear_error(tmp_path: Path, damage) -> None:  # type: ignore[no-untyped-def]
    folder = _saved(tmp_path)
    path = folder / SKOPS_FILE
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(LinearModelFileError, match=str(path).replace("\\", "\\\\")):
        load_linear(folder)


@pytest.mark.parametrize("content", ["plain-dict", "lone-vectoriser", "unfitted-pipeline"])
def test_a_file_of_trusted_types_that_is_not_a_fitted_pipeline_is_refused(
    tmp_path: Path, content: str
) -> None:
    import skops.io as sio
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, Pipeline

    folder = _saved(tmp_path)
    obj: Any = {
        "plain-dict": {"features": [1, 2], "head": "x"},
        "lone-vectoriser": TfidfVectorizer().fit(["ab cd", "cd ef"]),
        "unfitted-pipeline": Pipeline(
            [("features", FeatureUnion([("word", TfidfVectorizer())])), ("head", LogisticRegression())]
        ),
    }[content]
    sio.dump(obj, folder / SKOPS_FILE)
    with pytest.raises(LinearModelFileError, match="does not hold a fitted TF-IDF"):
        load_linear(folder)


@pytest.mark.parametrize(
    ("kind_text", "message"),
    [
        ("{not json", "not a readable kind record"),
        ('{"kind": "pickle"}', "not a readable kind record"),
        ('{"kind": "linear", "labels": 5}', "'labels' must be a list of strings"),
        ('{"kind": "linear", "labels": [1, 2]}', "'labels' must be a list of strings"),
    ],
)
def test_a_tampered_kind_file_gives_one_clear_error(tmp_path: Path, kind_text: str, message: str) -> None:
    folder = _saved(tmp_path)
    (folder / KIND_FILE).write_text(kind_text)
    with pytest.raises(LinearModelFileError, match=message):
        load_linear(folder)


def test_a_deeply_nested_schema_is_refused_without_a_crash(tmp_path: Path) -> None:
    folder = _saved(tmp_path)
    path = folder / SKOPS_FILE
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("schema.json", "[" * 100_000 + "]" * 100_000)
    with pytest.raises(LinearModelFileError, match="not a readable skops file"):
        load_linear(folder)


def test_the_kind_file_must_say_linear_and_match_the_classes(tmp_path: Path) -> None:
    folder = _saved(tmp_path)
    record = read_kind(folder)
    (folder / KIND_FILE).write_text(json.dumps({**record, "labels": ["a", "b"]}))
    with pytest.raises(LinearModelFileError, match="do not match the labels"):
        load_linear(folder)
    (folder / KIND_FILE).unlink()
    with pytest.raises(LinearModelFileError, match="not 'linear'"):
        load_linear(folder)
    (folder / KIND_FILE).write_text(json.dumps(record))
    (folder / SKOPS_FILE).unlink()
    with pytest.raises(LinearModelFileError, match="missing"):
        load_linear(folder)


# --- search ---------------------------------------------------------------------------------


def _search_data() -> tuple[list[str], list[str], list[str], list[str]]:
    train_texts, train_labels = _split(20, seed=0)
    val_texts, val_labels = _split(8, seed=1)
    return train_texts, train_labels, val_texts, val_labels


def test_search_runs_the_coarse_grid_cheapest_first_then_refines() -> None:
    from lmforge.classical.search import COARSE, search_linear

    messages: list[str] = []
    result = search_linear(*_search_data(), sorted(TOPICS_LABELS), log=messages.append)
    coarse = [(h, COARSE[h][i]) for i in range(2) for h in ("linear_svc", "logistic_regression")]
    assert [(t.head, t.C) for t in result.trials[:4]] == coarse
    assert len(result.trials) > 4 and result.stopped == "converged"
    assert len({(t.head, t.C) for t in result.trials}) == len(result.trials)  # no trial twice
    assert result.best_trial.score == max(t.score for t in result.trials) > 0.9
    assert set(result.seconds_per_fit) == {"linear_svc", "logistic_regression"}
    assert any("vectorised" in m for m in messages) and len(messages) == len(result.trials) + 1
    val_texts = _search_data()[2]
    probs = result.best.proba(val_texts, labels=sorted(TOPICS_LABELS))
    assert probs.shape == (len(val_texts), 4)


def test_search_with_max_fits_is_reproducible() -> None:
    from lmforge.classical.search import search_linear

    first = search_linear(*_search_data(), sorted(TOPICS_LABELS), max_fits=5, seed=3)
    second = search_linear(*_search_data(), sorted(TOPICS_LABELS), max_fits=5, seed=3)
    assert [(t.head, t.C, t.score) for t in first.trials] == [(t.head, t.C, t.score) for t in second.trials]
    assert len(first.trials) == 5 and first.stopped == "max_fits (5) reached"
    texts = _search_data()[2]
    np.testing.assert_array_equal(first.best.proba(texts), second.best.proba(texts))


def test_search_with_an_explicit_grid_and_one_head() -> None:
    from lmforge.classical.search import search_linear

    result = search_linear(
        *_search_data(), sorted(TOPICS_LABELS), heads=["logistic_regression"], Cs=[2.0, 0.5]
    )
    assert [(t.head, t.C) for t in result.trials] == [
        ("logistic_regression", 0.5),
        ("logistic_regression", 2.0),
    ]
    assert result.stopped == "grid done"


def test_a_distant_deadline_changes_nothing() -> None:
    import time

    from lmforge.classical.search import search_linear

    free = search_linear(*_search_data(), sorted(TOPICS_LABELS), max_fits=6)
    bounded = search_linear(
        *_search_data(), sorted(TOPICS_LABELS), max_fits=6, deadline=time.monotonic() + 3600
    )
    assert [(t.head, t.C, t.score) for t in free.trials] == [(t.head, t.C, t.score) for t in bounded.trials]
    assert bounded.skipped == []


def test_a_head_not_fitted_yet_is_predicted_from_the_other_heads_time() -> None:
    from lmforge.classical.search import SLACK, _predicted_seconds, estimate_fit_seconds

    measured = {"linear_svc": [2.0, 3.0], "logistic_regression": []}
    assert _predicted_seconds("linear_svc", measured, 8_000, 6) == SLACK * 3.0
    ratio = estimate_fit_seconds(8_000, 6, "logistic_regression") / estimate_fit_seconds(
        8_000, 6, "linear_svc"
    )
    assert _predicted_seconds("logistic_regression", measured, 8_000, 6) == pytest.approx(SLACK * 3.0 * ratio)
    nothing: dict[str, list[float]] = {"linear_svc": []}
    assert _predicted_seconds("linear_svc", nothing, 8_000, 6) == estimate_fit_seconds(8_000, 6, "linear_svc")


def test_a_passed_deadline_still_runs_the_first_fit_and_nothing_more() -> None:
    import time

    from lmforge.classical.search import search_linear

    result = search_linear(*_search_data(), sorted(TOPICS_LABELS), deadline=time.monotonic() - 1.0)
    assert len(result.trials) == 1
    assert result.stopped.startswith("deadline")
    assert result.skipped and "left" in result.skipped[0][2]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"heads": ["random_forest"]}, "heads must be among"),
        ({"heads": []}, "heads must be among"),
        ({"metric": "loss"}, "metric must be one of"),
        ({"labels": ["billing", "bug"]}, "not in `labels`"),
        ({"max_fits": 0}, "max_fits must be at least 1"),
    ],
)
def test_search_refuses_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    from lmforge.classical.search import search_linear

    with pytest.raises(ValueError, match=message):
        search_linear(*_search_data(), **{"labels": sorted(TOPICS_LABELS), **kwargs})


def test_search_refuses_a_single_class() -> None:
    from lmforge.classical.search import search_linear

    texts, _, val_texts, val_labels = _search_data()
    with pytest.raises(ValueError, match="at least two classes"):
        search_linear(texts, ["billing"] * len(texts), val_texts, val_labels, sorted(TOPICS_LABELS))


def test_search_refuses_an_empty_validation_split() -> None:
    from lmforge.classical.search import search_linear

    train_texts, train_labels, _, _ = _search_data()
    with pytest.raises(ValueError, match="validation rows"):
        search_linear(train_texts, train_labels, [], [], sorted(TOPICS_LABELS))


def test_estimates_grow_with_rows_and_classes() -> None:
    from lmforge.classical.search import estimate_fit_seconds, estimate_seconds

    assert estimate_seconds(16_000, 6) > estimate_seconds(2_000, 6) > 0
    assert estimate_seconds(8_000, 77) > estimate_seconds(8_000, 6)
    assert estimate_seconds(8_000, 6, n_fits=2) < estimate_seconds(8_000, 6, n_fits=8)
    assert estimate_fit_seconds(1_000, 2, "linear_svc") > 0


# --- ONNX head ------------------------------------------------------------------------------


@pytest.mark.parametrize("head", ["logistic_regression", "linear_svc"])
def test_onnx_head_matches_the_sklearn_model(tmp_path: Path, head: str) -> None:
    from lmforge.classical.onnx import HEAD_FILE, OnnxLinear, export_head, parity

    texts, labels = _split(20)
    model = fit_linear(texts, labels, head=head, C=1.0)
    folder = save_linear(model, tmp_path / "model")
    onnx_path = export_head(model, folder / HEAD_FILE)
    runner = OnnxLinear(folder, onnx_path, threads=1)
    runner.batch_size = 7  # several batches, the last one partial
    probe = _split(6, seed=2)[0] + ["", "an unseen text entirely", "😀" * 50]
    report = parity(model, runner, probe)
    assert report["texts"] == len(probe)
    assert report["max_prob_diff"] < 1e-5 and report["argmax_agreement"] == 1.0
    assert runner.labels == model.labels
    assert runner.proba([]).shape == (0, 4) and model.proba([], labels=["a"]).shape == (0, 1)
    assert parity(model, runner, [])["texts"] == 0


def test_onnx_runner_refuses_a_head_of_another_width(tmp_path: Path) -> None:
    from lmforge.classical.onnx import OnnxLinear, export_head

    texts, labels = _split(20)
    folder = save_linear(fit_linear(texts, labels), tmp_path / "model")
    other = export_head(fit_linear(texts[:30], labels[:30]), tmp_path / "other.onnx")
    with pytest.raises(ValueError, match="features"):
        OnnxLinear(folder, other)


# --- embedding probe ------------------------------------------------------------------------


def _folder_proba(folder: Path, texts: list[str], max_length: int) -> np.ndarray:
    import torch

    from lmforge.models.load import load_trained_classifier, trained_max_length

    tokenizer, model = load_trained_classifier(folder)
    assert trained_max_length(model.config) == max_length
    batch = tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    with torch.inference_mode():
        return torch.softmax(model(**batch).logits.double(), dim=-1).numpy()


def _probe_case(
    reference: Path | str, tmp_path: Path, rows: list[tuple[str, str]], labels: list[str], **kwargs: Any
) -> tuple[Path, Any, list[str]]:
    from lmforge.classical.embedding_probe import fit_embedding_probe

    texts, targets = [t for t, _ in rows], [label for _, label in rows]
    folder, probe = fit_embedding_probe(
        str(reference),
        None,
        texts,
        targets,
        labels,
        max_length=24,
        C=1.0,
        out_dir=tmp_path / "probe",
        **kwargs,
    )
    return folder, probe, texts


@pytest.mark.parametrize("n_labels", [2, 4])
def test_embedding_probe_folder_gives_the_probe_probabilities(
    tmp_path: Path, tiny_model: Path, n_labels: int
) -> None:
    from lmforge.classical.embedding_probe import raw_embeddings
    from lmforge.classical.linear import reorder_columns

    rows = [r for r in make_rows(12) if r[1] in sorted(TOPICS)[:n_labels]]
    labels = [*sorted({label for _, label in rows})[::-1], "never-seen"]  # not sorted: order is kept
    folder, probe, texts = _probe_case(tiny_model, tmp_path, rows, labels)
    assert probe.rows_used == probe.rows_total == len(rows)
    expected = reorder_columns(
        probe.estimator.predict_proba(raw_embeddings(str(tiny_model), None, texts, 24)),
        [str(c) for c in probe.estimator.classes_],
        labels,
    )
    got = _folder_proba(folder, texts, 24)
    assert np.abs(got - expected).max() < 1e-4
    assert np.abs(probe.proba(texts) - expected).max() < 1e-4
    assert got[:, labels.index("never-seen")].max() < 1e-6
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder)
    assert [config.id2label[i] for i in range(len(labels))] == labels
    assert config.lmforge_pooling == "mean" and kind_of(folder) == "transformer"


def test_embedding_probe_stops_embedding_at_the_deadline(tmp_path: Path, tiny_model: Path) -> None:
    import time

    from lmforge.classical import embedding_probe

    rows = make_rows(200)  # 800 rows: two chunks of 512 at most
    _, probe, _ = _probe_case(tiny_model, tmp_path, rows, sorted(TOPICS), deadline=time.monotonic())
    assert probe.rows_used == embedding_probe.CHUNK_ROWS < probe.rows_total == len(rows)


def test_embedding_probe_interleaves_classes_so_a_prefix_holds_them_all() -> None:
    from lmforge.classical.embedding_probe import _interleaved

    targets = ["a"] * 50 + ["b"] * 3 + ["c"] * 20
    order = _interleaved(targets, 0)
    assert sorted(order) == list(range(len(targets)))
    assert {targets[i] for i in order[:3]} == {"a", "b", "c"}
    assert sum(targets[i] == "b" for i in order[:9]) == 3


def test_embedding_probe_refuses_labels_outside_the_label_list(tmp_path: Path, tiny_model: Path) -> None:
    with pytest.raises(ValueError, match="not in `labels`"):
        _probe_case(tiny_model, tmp_path, make_rows(3), ["billing"])


@pytest.mark.integration
def test_embedding_probe_on_real_minilm_matches_sklearn(tmp_path: Path) -> None:
    from lmforge.classical.embedding_probe import raw_embeddings
    from lmforge.classical.linear import reorder_columns

    rows = make_rows(6)
    labels = sorted(TOPICS)
    folder, probe, texts = _probe_case("minilm-l6", tmp_path, rows, labels)
    probe_texts = [*texts[:6], "my parcel never arrived", "I was charged twice"]
    expected = reorder_columns(
        probe.estimator.predict_proba(raw_embeddings("minilm-l6", None, probe_texts, 24)),
        [str(c) for c in probe.estimator.classes_],
        labels,
    )
    assert np.abs(_folder_proba(folder, probe_texts, 24) - expected).max() < 1e-4
    # minilm-l6 has near-constant dimensions: unguarded, 1/std put weights of 4e31 in the head,
    # which a fine-tune starting from it (LP-FT) could not train.
    assert np.abs(probe.weight).max() < 1e3
