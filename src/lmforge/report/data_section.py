"""The report's data section: what happened to the rows between the file and training.

Rows in and out at every step, examples of each removal, PII counts, duplicate-label
conflicts, label-noise candidates, auto-labels and their confidence, leakage between
splits, augmentation, and the label distribution before and after.
"""

from __future__ import annotations

from typing import Any

from lmforge.pipeline.context import Inputs
from lmforge.report import plots


def data_section(inputs: Inputs, min_confidence: float) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Template values and PNG images for the data section."""
    validate, clean, label, split, augment = (
        inputs[n] for n in ("validate", "clean", "label", "split", "augment")
    )
    ingest_rows = inputs["ingest"].manifest["rows"]
    cleaned, labelled = clean.manifest["rows"], label.manifest["rows"]
    steps = [
        {"step": "read from files", "rows": sum(ingest_rows.values()), "note": _splits(ingest_rows)},
        {
            "step": "validate",
            "rows": sum(
                validate.manifest["rows"].get(n, 0) for n in ("train", "validation", "test", "unlabeled")
            ),
            "note": f"{sum(validate.summary.get('rejected_reasons', {}).values())} rejected",
        },
        {
            "step": "clean",
            "rows": sum(clean.summary["rows_out"].values()),
            "note": f"{cleaned.get('removed', 0)} removed, {cleaned.get('changed', 0)} changed",
        },
        {
            "step": "label",
            "rows": labelled["train"] + _held_out(clean),
            "note": f"{labelled.get('auto_labelled', 0)} auto-labelled, "
            f"{labelled.get('queued', 0)} queued for review",
        },
        {
            "step": "split (leakage removed)",
            "rows": sum(split.manifest["rows"].get(n, 0) for n in ("train", "validation", "test")),
            "note": f"{split.manifest['rows'].get('leakage_removed', 0)} train rows copied held-out rows",
        },
        {
            "step": "augment (train only)",
            "rows": augment.manifest["rows"]["train"],
            "note": ", ".join(f"{k} +{v}" for k, v in augment.summary.get("added", {}).items()) or "off",
        },
    ]
    labelled = label.table("train")
    series = {
        "in the data file": validate.summary.get("label_counts", {}),
        "after cleaning and labelling": labelled["label"].value_counts().to_dict(),
    }
    if augment.summary.get("added"):
        series["train split after augmentation"] = augment.table("train")["label"].value_counts().to_dict()
    images = {"labels_before_after": plots.label_before_after(series)}
    lengths_before = validate.table("train")["text"].str.len().tolist()
    if validate.has("unlabeled.parquet"):
        lengths_before += validate.table("unlabeled")["text"].str.len().tolist()
    lengths_after = labelled["text"].str.len().tolist()
    images["lengths"] = plots.length_histogram(lengths_before, lengths_after)
    hist = label.summary.get("confidence_histogram", {})
    if sum(hist.get("counts", [])):
        images["confidence"] = plots.confidence_histogram(hist["counts"], hist["edges"], min_confidence)
    values = {
        "steps": steps,
        "clean": clean.summary,
        "label": label.summary,
        "label_rows": label.manifest["rows"],
        "leakage": split.summary.get("leakage", {}),
        "augment": augment.summary,
    }
    return values, images


def _splits(rows: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in rows.items())


def _held_out(clean: Any) -> int:
    out = clean.summary.get("rows_out", {})
    return int(out.get("validation", 0) + out.get("test", 0))
