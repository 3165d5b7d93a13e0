"""export (classification): the trained model as ONNX fp32 and int8, each checked against
torch on the whole test split, plus a model card.

Checks, on the test texts:
- fp32: max |logit diff| vs torch within `export.onnx_max_logit_diff` and 100% argmax
  agreement, else the stage fails (a graph that disagrees with the model is a bug, not a
  trade-off).
- int8: its accuracy drop vs torch is measured; above `export.max_accuracy_drop` the int8
  file is not shipped (a warning says why) and serving uses the fp32 graph.

Outputs: `model.onnx`, `model.int8.onnx` (when within bounds), `onnx_check.json`
(parity, accuracy, size and speed of each), `MODEL_CARD.md`. The model folder itself
(safetensors, tokenizer) stays in `train/model/`; nothing here is pickled.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from lmforge.config import ExportConfig
from lmforge.errors import ExportCheckFailed
from lmforge.export.card import model_card
from lmforge.pipeline.context import Inputs, StageContext, StageResult


def run(ctx: StageContext, cfg: ExportConfig, inputs: Inputs) -> StageResult:
    from lmforge.models.kinds import kind_of

    split, train = inputs["split"], inputs["train"]
    labels: list[str] = split.json("labels")
    model_dir = train.path("model")
    kind = kind_of(model_dir)
    max_length = _max_length(train, model_dir, kind)
    if not cfg.onnx:
        ctx.log("export.onnx is false: only the model card is written")
        ctx.out.write_text("MODEL_CARD.md", model_card(ctx, inputs, None))
        _serving(ctx, labels, max_length, None, kind=kind)
        return StageResult(summary={"onnx": None})
    test = split.table("test")
    texts, truth = test["text"].tolist(), test["label"].tolist()
    if kind == "linear":
        from lmforge.export.kinds import export_linear

        return export_linear(ctx, cfg, inputs, texts, truth, labels)
    if train.has("ensemble.json") and train.json("ensemble").get("used"):
        ctx.warn("the ONNX files hold the best single model; the ensemble is not exported")
    check = _transformer_export(ctx, cfg, model_dir, texts, truth, labels, max_length or 128)
    summary = _summary(check)
    if kind == "ensemble":
        from lmforge.export.kinds import export_ensemble

        return export_ensemble(ctx, cfg, inputs, texts, truth, labels, max_length, check, summary)
    ctx.out.write_json("onnx_check", check)
    ctx.out.write_text("MODEL_CARD.md", model_card(ctx, inputs, check))
    _serving(ctx, labels, max_length or 128, summary["serving_file"])
    return StageResult(metrics=_metrics(check), summary=summary)


def _max_length(train: Any, model_dir: Any, kind: str) -> int | None:
    """The token limit the model was trained with (None for a linear model: it reads words)."""
    if kind == "linear":
        return None
    recorded = train.json("hyperparameters").get("max_length") if train.has("hyperparameters.json") else None
    if recorded:
        return int(recorded)
    import json

    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    return int(config.get("lmforge_max_length") or 128)


def _transformer_export(
    ctx: StageContext,
    cfg: ExportConfig,
    model_dir: Any,
    texts: list[str],
    truth: list[str],
    labels: list[str],
    max_length: int,
) -> dict[str, Any]:
    """model.onnx checked against torch (the stage fails on disagreement), model.int8.onnx
    measured and shipped within the accuracy bound; returns the check report."""
    from lmforge.export.onnx import OnnxClassifier, export_classifier, quantize_int8

    with ctx.progress("exporting to ONNX", total=None):
        fp32 = export_classifier(model_dir, ctx.out.path("model.onnx"), opset=cfg.opset)
    torch_logits, torch_seconds = _torch_logits(model_dir, texts, max_length)
    tokenizer = _tokenizer(model_dir)
    fp32_logits, fp32_seconds = _timed(OnnxClassifier(fp32.path, tokenizer, max_length=max_length), texts)
    diff = float(np.abs(fp32_logits - torch_logits).max()) if len(texts) else 0.0
    agree = float(np.mean(fp32_logits.argmax(1) == torch_logits.argmax(1))) if len(texts) else 1.0
    check: dict[str, Any] = {
        "texts": len(texts),
        "torch": _entry(torch_logits, truth, labels, torch_seconds, model_dir / "model.safetensors"),
        "fp32": {
            **_entry(fp32_logits, truth, labels, fp32_seconds, fp32.path),
            "max_logit_diff": diff,
            "argmax_agreement": agree,
        },
    }
    if diff > cfg.onnx_max_logit_diff or agree < 1.0:
        ctx.out.write_json("onnx_check", check)
        raise ExportCheckFailed(
            f"the ONNX graph disagrees with torch on the test set: max |logit diff| {diff:.2e} "
            f"(limit export.onnx_max_logit_diff={cfg.onnx_max_logit_diff}), argmax agreement {agree:.1%}",
            hint="set export.onnx: false to skip ONNX",
        )
    ctx.log(f"model.onnx: max |logit diff| {diff:.1e} vs torch, argmax agreement 100% on {len(texts)} texts")
    if cfg.int8:
        check["int8"] = _int8(
            ctx,
            cfg,
            quantize_int8,
            OnnxClassifier,
            tokenizer,
            texts,
            truth,
            labels,
            max_length,
            check["torch"]["accuracy"],
        )
    return check


def _serving(
    ctx: StageContext,
    labels: list[str],
    max_length: int | None,
    onnx_file: str | None,
    *,
    kind: str = "transformer",
    **extra: Any,
) -> None:
    """What `lmforge serve` needs beside the files: the kind of model, the label order and the
    token limit the model was trained with, and which graph(s) to run."""
    serving: dict[str, Any] = {"task": "classification", "kind": kind, "labels": labels, "onnx": onnx_file}
    if max_length is not None:
        serving["max_length"] = max_length
    ctx.out.write_json("serving", {**serving, **extra})


def _int8(
    ctx: StageContext,
    cfg: ExportConfig,
    quantize: Any,
    runtime: Any,
    tokenizer: Any,
    texts: list[str],
    truth: list[str],
    labels: list[str],
    max_length: int,
    torch_accuracy: float,
) -> dict[str, Any]:
    with ctx.progress("quantizing to int8", total=None):
        int8 = quantize(ctx.out.path("model.onnx"), ctx.out.path("model.int8.onnx"))
    logits, seconds = _timed(runtime(int8.path, tokenizer, max_length=max_length), texts)
    entry = _entry(logits, truth, labels, seconds, int8.path)
    drop = torch_accuracy - entry["accuracy"]
    entry["accuracy_drop"] = drop
    entry["shipped"] = drop <= cfg.max_accuracy_drop
    if not entry["shipped"]:
        int8.path.unlink()
        ctx.warn(
            f"int8 accuracy drops {drop:.3f} (> export.max_accuracy_drop={cfg.max_accuracy_drop}): "
            "model.int8.onnx not shipped, serving uses model.onnx"
        )
    else:
        ctx.log(f"model.int8.onnx: {int8.bytes / 1e6:.0f} MB, accuracy drop {drop:+.3f} vs torch")
    return entry


def _entry(
    logits: np.ndarray, truth: list[str], labels: list[str], seconds: float, path: Any
) -> dict[str, Any]:
    predicted = [labels[i] for i in logits.argmax(1)] if len(truth) else []
    accuracy = float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)])) if truth else 0.0
    return {
        "accuracy": accuracy,
        "seconds": seconds,
        "texts_per_second": len(truth) / seconds if seconds > 0 else None,
        "megabytes": path.stat().st_size / 1e6,
        "file": path.name,
    }


def _timed(runtime: Any, texts: list[str]) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    logits = runtime.logits(texts)
    return logits, time.perf_counter() - started


def _tokenizer(model_dir: Any) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


def _torch_logits(model_dir: Any, texts: list[str], max_length: int) -> tuple[np.ndarray, float]:
    import torch

    from lmforge.models.batching import length_sorted_batches
    from lmforge.models.load import load_trained_classifier

    tokenizer, model = load_trained_classifier(model_dir)
    out = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    started = time.perf_counter()
    with torch.inference_mode():
        for index, batch in length_sorted_batches(tokenizer, texts, batch_size=32, max_length=max_length):
            out[index] = model(**batch).logits.float().numpy()
    return out, time.perf_counter() - started


def _metrics(check: dict[str, Any]) -> dict[str, float]:
    metrics = {
        "onnx_max_logit_diff": check["fp32"]["max_logit_diff"],
        "onnx_megabytes": check["fp32"]["megabytes"],
    }
    if "int8" in check:
        metrics["int8_accuracy_drop"] = check["int8"]["accuracy_drop"]
        metrics["int8_megabytes"] = check["int8"]["megabytes"]
    return metrics


def _summary(check: dict[str, Any]) -> dict[str, Any]:
    int8 = check.get("int8")
    return {
        "onnx": "model.onnx",
        "int8": "model.int8.onnx" if int8 and int8["shipped"] else None,
        "serving_file": "model.int8.onnx" if int8 and int8["shipped"] else "model.onnx",
        "check": check,
    }
