"""The model card shipped beside an exported classifier: what it was trained on, how good
it is, what it is for, where it fails, and the hashes that identify every file."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

from lmforge.models.kinds import read_kind
from lmforge.pipeline.artifacts import file_sha256
from lmforge.pipeline.context import Inputs, StageContext

# Markdown punctuation that could start a link, an image, a code span or a table cell, or end an
# escape: backslash-escaped so a value from the data renders as the characters it holds.
_MARKDOWN = re.compile(r"([\\`\[\]|])")


def md_text(value: object) -> str:
    """A value from the user's data or config (label, file or model name) as inert Markdown text.

    Why: the card is rendered by MLflow's UI and by model hubs; a label such as
    `<script>...</script>` or `![x](http://...)` must show as text, not run or load anything.
    HTML-escaping `<`, `>` and `&` stops tags and entities; backslash-escaping brackets,
    backticks, pipes and backslashes stops link and image syntax, code spans and table cells;
    line breaks become spaces (a line of its own could start a heading or a block). The text
    still reads the same once rendered.
    """
    text = html.escape(" ".join(str(value).split()), quote=False)
    return _MARKDOWN.sub(r"\\\1", text)


def model_card(ctx: StageContext, inputs: Inputs, check: dict[str, Any] | None) -> str:
    """Markdown for `MODEL_CARD.md`; `check` is the ONNX parity report (None: no ONNX)."""
    config = ctx.config
    split, train, evaluate = inputs["split"], inputs["train"], inputs["evaluate"]
    labels: list[str] = split.json("labels")
    metrics = evaluate.metrics
    trained = train.json("hyperparameters") if train.has("hyperparameters.json") else {}
    record = read_kind(train.path("model"))
    lines = [
        f"# {md_text(config.project_name)}",
        "",
        *_what_lines(record, train),
        "",
        "## Intended use",
        f"Assigns one of {len(labels)} labels to a short text: {', '.join(md_text(x) for x in labels)}. "
        "It was trained for the domain of its training data below; use it on texts of the same kind and "
        "language, and route low-confidence predictions to a person.",
        "",
        "## Data",
        *_data_lines(ctx, split),
        "",
        "## Test-set metrics",
        "| metric | value |",
        "| --- | --- |",
        *(f"| {k} | {v:.4f} |" for k, v in metrics.items() if isinstance(v, (int, float))),
        "",
        "| label | precision | recall | F1 | support |",
        "| --- | --- | --- | --- | --- |",
        *(
            f"| {md_text(c['label'])} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} "
            f"| {c['support']} |"
            for c in evaluate.json("per_class")
        ),
        "",
        "## Limitations",
        *_length_lines(record, trained),
        "- The label set is closed: a text about anything else still gets one of the labels above.",
        "- Confidence is the softmax probability; it is not calibrated and is overconfident out of domain.",
        "- The test set comes from the same source as the training data; real traffic may differ "
        "(watch it with `lmforge monitor`).",
        "",
        "## Files",
        "| file | sha256 | MB |",
        "| --- | --- | --- |",
        *_file_lines(train.path("model"), ctx.out.folder, check),
        "",
        *_storage_lines(record),
        "",
        "## Loading",
        *(_loading_lines(trained.get("pooling", "default")) if record["kind"] != "linear" else []),
        *_kind_loading_lines(record),
    ]
    if check:
        lines += ["", "## Export checks", *_check_lines(check)]
    return "\n".join(lines) + "\n"


def _data_lines(ctx: StageContext, split: Any) -> list[str]:
    config = ctx.config
    lines = []
    for role in ("train", "validation", "test"):
        name = getattr(config.data, role)
        if name:
            path = config.resolve_path(name)
            digest = file_sha256(path) if path.exists() else "missing"
            lines.append(f"- `{role}` file {md_text(Path(name).name)}, sha256 `{digest}`")
    rows = split.manifest.get("rows", {})
    lines.append(
        f"- Split rows: train {rows.get('train', 0)}, validation {rows.get('validation', 0)}, "
        f"test {rows.get('test', 0)}"
    )
    counts = split.summary.get("label_counts", {}).get("train", {})
    if counts:
        lines.append(
            "- Train label counts: " + ", ".join(f"{md_text(k)} {v}" for k, v in sorted(counts.items()))
        )
    return lines


def _file_lines(model_dir: Path, export_dir: Path, check: dict[str, Any] | None) -> list[str]:
    files = [p for p in sorted(model_dir.rglob("*")) if p.is_file()]
    if check and check.get("kind") != "linear":
        files += [export_dir / "model.onnx"]
        if check.get("int8", {}).get("shipped"):
            files.append(export_dir / "model.int8.onnx")
    if check and check.get("kind") in ("linear", "ensemble"):
        files.append(export_dir / "linear_head.onnx")
    return [
        f"| {md_text(p.relative_to(model_dir) if p.is_relative_to(model_dir) else p.name)} "
        f"| `{file_sha256(p)}` | {p.stat().st_size / 1e6:.1f} |"
        for p in files
    ]


def _check_lines(check: dict[str, Any]) -> list[str]:
    if check.get("kind") == "linear":
        return [_parity_line("the linear model (ONNX head)", check)]
    lines = _transformer_check_lines(check)
    if check.get("kind") == "ensemble":
        lines.append(_parity_line("the ensemble (ONNX graphs, weighted)", check["ensemble"]))
    return lines


def _parity_line(what: str, parity: dict[str, Any]) -> str:
    onnx = parity["onnx"]
    return (
        f"- {what} vs in-process on {parity['texts']} test texts: max |probability diff| "
        f"{onnx['max_prob_diff']:.2e}, argmax agreement {onnx['argmax_agreement']:.1%}."
    )


def _transformer_check_lines(check: dict[str, Any]) -> list[str]:
    fp32 = check["fp32"]
    lines = [
        f"- ONNX fp32 vs torch on {check['texts']} test texts: "
        f"max |logit diff| {fp32['max_logit_diff']:.2e}, "
        f"argmax agreement {fp32['argmax_agreement']:.1%}.",
    ]
    int8 = check.get("int8")
    if int8:
        verdict = "shipped" if int8["shipped"] else "not shipped (accuracy drop above the bound)"
        lines.append(
            f"- ONNX int8: accuracy {int8['accuracy']:.4f} vs torch {check['torch']['accuracy']:.4f} "
            f"(drop {int8['accuracy_drop']:+.4f}), {int8['megabytes']:.1f} MB vs {fp32['megabytes']:.1f} MB; "
            f"{verdict}."
        )
    return lines


def _what_lines(record: dict[str, Any], train: Any) -> list[str]:
    """What the model is: a fine-tuned transformer, a linear model, or an ensemble of both."""
    base = md_text(train.summary.get("model"))
    method = md_text(train.summary.get("method"))
    if record["kind"] == "linear":
        return [_linear_sentence(record)]
    if record["kind"] == "ensemble":
        parts = ", ".join(
            f"{md_text(m['kind'])} ({md_text(m['path'])}) weight {float(m['weight']):.3f}"
            for m in record.get("members", [])
        )
        linear = read_kind(train.path("model") / _linear_path(record))
        return [
            f"Text classifier: a weighted average of the class probabilities of its members: {parts}. "
            f"The transformer was fine-tuned by lmforge from {base}; the linear member: "
            f"{_linear_sentence(linear)}"
        ]
    return [f"Text classifier fine-tuned by lmforge from {base} with method {method}."]


def _linear_sentence(record: dict[str, Any]) -> str:
    head = {"logistic_regression": "logistic regression", "linear_svc": "calibrated linear SVM"}.get(
        str(record.get("head")), md_text(record.get("head"))
    )
    c = record.get("C")
    strength = f" with C={float(c):g}" if isinstance(c, (int, float)) else ""
    return f"TF-IDF word 1-2-grams and character 2-5-grams (scikit-learn) with a {head} head{strength}."


def _linear_path(record: dict[str, Any]) -> str:
    return next((str(m["path"]) for m in record.get("members", []) if m.get("kind") == "linear"), "linear")


def _length_lines(record: dict[str, Any], trained: dict[str, Any]) -> list[str]:
    lines = []
    if record["kind"] != "linear" and trained.get("max_length"):
        lines.append(f"- Texts longer than {trained['max_length']} tokens are truncated.")
    if record["kind"] != "transformer":
        lines.append("- The linear part sees words and character n-grams of its training vocabulary only.")
    return lines


def _storage_lines(record: dict[str, Any]) -> list[str]:
    if record["kind"] == "transformer":
        return [
            "Weights are safetensors and ONNX only: nothing in this model is pickled. Loading it needs no "
            "`trust_remote_code`."
        ]
    formats = "ONNX and skops" if record["kind"] == "linear" else "safetensors, ONNX and skops"
    return [
        f"Weights are {formats} (`linear.skops`, the scikit-learn pipeline); lmforge loads the skops "
        "file with an explicit list of trusted types, never with pickle."
    ]


def _kind_loading_lines(record: dict[str, Any]) -> list[str]:
    if record["kind"] == "transformer":
        return []
    return [
        '`lmforge.models.scorer.load_scorer("model").proba(texts)` scores texts in-process with this '
        "kind of model; `lmforge serve` runs the ONNX files named in `serving.json`."
    ]


def _loading_lines(pooling: str) -> list[str]:
    if pooling != "mean":
        return [
            '`AutoModelForSequenceClassification.from_pretrained("model")` (transformers), or the ONNX '
            "file with onnxruntime (inputs as the tokenizer gives them, output `logits`)."
        ]
    return [
        "The head classifies the *mean* of the token states (how the base model was pretrained; "
        "`lmforge_pooling: mean` in `config.json`). Load it with "
        '`lmforge.models.load.load_trained_classifier("model")`, or run the ONNX file with '
        "onnxruntime (it contains the pooling). transformers' `AutoModelForSequenceClassification` "
        "would build the architecture's [CLS] head instead and predict wrongly.",
    ]
