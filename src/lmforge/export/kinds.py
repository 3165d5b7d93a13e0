"""Export of the linear and ensemble model kinds (`models/kinds.py`); the transformer export
is `stages/export.py`'s own.

linear    `linear_head.onnx`: the head only (the TF-IDF features stay the fitted scikit-learn
          vectoriser in `model/linear.skops`, so serving tokenises exactly as training did).
ensemble  the transformer's graphs as for a transformer, plus `linear_head.onnx`.

Either way the parity check is on the *served* probabilities: the scorer built from the
export's `serving.json` against the in-process scorer on the test split (`models/scorer.py`,
the same code the server runs), with `export.onnx_max_logit_diff` bounding the largest
probability difference and 100% argmax agreement required, as for a transformer's logits.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from lmforge.config import ExportConfig
from lmforge.errors import ExportCheckFailed
from lmforge.export.card import model_card
from lmforge.pipeline.context import Inputs, StageContext, StageResult

LINEAR_ONNX = "linear_head.onnx"


def export_linear(
    ctx: StageContext,
    cfg: ExportConfig,
    inputs: Inputs,
    texts: list[str],
    truth: list[str],
    labels: list[str],
) -> StageResult:
    from lmforge.classical.linear import load_linear
    from lmforge.classical.onnx import export_head

    model_dir = inputs["train"].path("model")
    with ctx.progress("exporting the linear head to ONNX", total=None):
        onnx = export_head(load_linear(model_dir), ctx.out.path(LINEAR_ONNX))
    _write_serving(ctx, {"kind": "linear", "labels": labels, "onnx": Path(onnx).name})
    check = served_parity(ctx, cfg, model_dir, None, texts, truth, labels, "linear")
    check["rows"] = [
        _row("scikit-learn", "linear.skops", check["in_process"], "reference"),
        _row("ONNX head", LINEAR_ONNX, check["onnx"], _agreement(check["onnx"])),
    ]
    ctx.out.write_json("onnx_check", check)
    ctx.out.write_text("MODEL_CARD.md", model_card(ctx, inputs, check))
    summary = {"onnx": LINEAR_ONNX, "int8": None, "serving_file": LINEAR_ONNX, "check": check}
    return StageResult(metrics=_metrics(check), summary=summary)


def export_ensemble(
    ctx: StageContext,
    cfg: ExportConfig,
    inputs: Inputs,
    texts: list[str],
    truth: list[str],
    labels: list[str],
    max_length: int | None,
    transformer: dict[str, Any],
    summary: dict[str, Any],
) -> StageResult:
    """`transformer` is the check of the transformer member's graphs (already written)."""
    from lmforge.classical.linear import load_linear
    from lmforge.classical.onnx import export_head
    from lmforge.models.kinds import read_kind

    model_dir = inputs["train"].path("model")
    members = read_kind(model_dir)["members"]
    linear_path = next(m["path"] for m in members if m["kind"] == "linear")
    with ctx.progress("exporting the linear member's head to ONNX", total=None):
        export_head(load_linear(model_dir / linear_path), ctx.out.path(LINEAR_ONNX))
    weights = {m["kind"]: float(m["weight"]) for m in members}
    serving = {
        "kind": "ensemble",
        "labels": labels,
        "max_length": max_length,
        "onnx": "model.onnx",
        "linear_onnx": LINEAR_ONNX,
        "weights": weights,
    }
    # The strict check runs on the fp32 graph; the int8 one is then held to the accuracy bound.
    _write_serving(ctx, serving)
    parity = served_parity(ctx, cfg, model_dir, max_length, texts, truth, labels, "ensemble")
    check = {**transformer, "kind": "ensemble", "weights": weights, "ensemble": parity}
    served = "model.onnx"
    if summary["serving_file"] != "model.onnx":
        _write_serving(ctx, {**serving, "onnx": summary["serving_file"]})
        int8 = _served(ctx, model_dir, max_length, texts, truth, labels)
        drop = parity["in_process"]["accuracy"] - int8["accuracy"]
        parity["int8"] = {**int8, "accuracy_drop": drop, "shipped": drop <= cfg.max_accuracy_drop}
        if parity["int8"]["shipped"]:
            served = summary["serving_file"]
        else:
            ctx.warn(
                f"the ensemble with model.int8.onnx loses {drop:.3f} accuracy "
                f"(> export.max_accuracy_drop={cfg.max_accuracy_drop}): serving uses model.onnx"
            )
    _write_serving(ctx, {**serving, "onnx": served})
    ctx.out.write_json("onnx_check", check)
    ctx.out.write_text("MODEL_CARD.md", model_card(ctx, inputs, check))
    metrics = {
        "onnx_max_logit_diff": transformer["fp32"]["max_logit_diff"],
        "onnx_megabytes": transformer["fp32"]["megabytes"],
        "ensemble_max_prob_diff": parity["onnx"]["max_prob_diff"],
    }
    return StageResult(metrics=metrics, summary={**summary, "serving_file": served, "check": check})


def served_parity(
    ctx: StageContext,
    cfg: ExportConfig,
    model_dir: Path,
    max_length: int | None,
    texts: list[str],
    truth: list[str],
    labels: list[str],
    kind: str,
) -> dict[str, Any]:
    """In-process vs served (ONNX, from this export's serving.json) probabilities on the test
    texts; raises `ExportCheckFailed` when they disagree beyond the bound."""
    from lmforge.models.scorer import load_scorer, reorder

    reference = load_scorer(model_dir, max_length=max_length)
    started = time.perf_counter()
    expected = reorder(reference.proba(texts), reference.labels, labels, where=f"the {kind} model")
    seconds = time.perf_counter() - started
    onnx = _served(ctx, model_dir, max_length, texts, truth, labels)
    got = onnx.pop("probs")
    diff = float(np.abs(got - expected).max()) if len(texts) else 0.0
    agree = float(np.mean(got.argmax(1) == expected.argmax(1))) if len(texts) else 1.0
    check: dict[str, Any] = {
        "texts": len(texts),
        "kind": kind,
        "in_process": _entry(expected, truth, labels, seconds),
        "onnx": {**onnx, "max_prob_diff": diff, "argmax_agreement": agree},
    }
    if diff > cfg.onnx_max_logit_diff or agree < 1.0:
        ctx.out.write_json("onnx_check", check)
        raise ExportCheckFailed(
            f"the exported {kind} model disagrees with the trained one on the test set: max |probability "
            f"diff| {diff:.2e} (limit export.onnx_max_logit_diff={cfg.onnx_max_logit_diff}), "
            f"argmax agreement {agree:.1%}",
            hint="set export.onnx: false to skip ONNX",
        )
    ctx.log(f"{kind} ONNX: max |probability diff| {diff:.1e}, argmax agreement 100% on {len(texts)} texts")
    return check


def _served(
    ctx: StageContext,
    model_dir: Path,
    max_length: int | None,
    texts: list[str],
    truth: list[str],
    labels: list[str],
) -> dict[str, Any]:
    from lmforge.models.scorer import load_scorer, reorder

    scorer = load_scorer(model_dir, max_length=max_length, export_dir=ctx.out.folder)
    started = time.perf_counter()
    probs = reorder(scorer.proba(texts), scorer.labels, labels, where="the exported model")
    entry = _entry(probs, truth, labels, time.perf_counter() - started)
    return {**entry, "probs": probs}


def _write_serving(ctx: StageContext, serving: dict[str, Any]) -> None:
    ctx.out.write_json("serving", {"task": "classification", **serving})


def _entry(probs: np.ndarray, truth: list[str], labels: list[str], seconds: float) -> dict[str, Any]:
    predicted = [labels[i] for i in probs.argmax(1)] if len(truth) else []
    accuracy = float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)])) if truth else 0.0
    return {
        "accuracy": accuracy,
        "seconds": seconds,
        "texts_per_second": len(truth) / seconds if seconds > 0 else None,
    }


def _agreement(entry: dict[str, Any]) -> str:
    return (
        f"max |probability diff| {entry['max_prob_diff']:.1e}, "
        f"argmax agreement {100 * entry['argmax_agreement']:.0f}%"
    )


def _row(fmt: str, file: str, entry: dict[str, Any], check: str) -> dict[str, Any]:
    """One line of the report's export table."""
    return {
        "format": fmt,
        "file": file,
        "accuracy": entry["accuracy"],
        "texts_per_second": entry["texts_per_second"],
        "check": check,
    }


def _metrics(check: dict[str, Any]) -> dict[str, float]:
    return {"onnx_max_prob_diff": check["onnx"]["max_prob_diff"]}
