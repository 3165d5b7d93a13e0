"""One way to score texts with any kind of trained classifier folder (`models/kinds.py`).

`load_scorer(model_dir)` reads the folder's kind and returns a `Scorer`: `.labels` (the
column order of its probabilities) and `.proba(texts)`. Evaluate, export's parity checks and
the server all go through it, so an ensemble is averaged by one piece of code whatever runs
its members:

    transformer  the torch model (`load_trained_classifier`), or its exported ONNX graph
    linear       the scikit-learn pipeline (`load_linear`), or its ONNX head (`OnnxLinear`)
    ensemble     sum of weight x member probabilities, member columns put in the ensemble's
                 label order; the kind file is checked at load (weights, labels, member paths)

`export_dir` selects the ONNX files named in its `serving.json` instead of the in-process
models: the serving path, and what export compares against the in-process one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from lmforge.errors import LmforgeError
from lmforge.models.kinds import KIND_FILE, KindFileError, read_kind

OnBatch = Callable[[int], None] | None
# Ensemble weights are written as floats that sum to 1; anything further off was edited.
WEIGHT_TOLERANCE = 1e-6


class ModelFolderError(LmforgeError):
    """A model folder whose kind record or files cannot be used as they are."""

    headline = "model folder error"


class Scorer(Protocol):
    labels: list[str]
    kind: str

    def proba(self, texts: list[str], *, batch_size: int = 32, on_batch: OnBatch = None) -> np.ndarray: ...


def load_scorer(
    model_dir: Path,
    *,
    max_length: int | None = None,
    export_dir: Path | None = None,
    threads: int | None = None,
) -> Scorer:
    """The scorer for `model_dir`: in-process models, or the ONNX files of `export_dir`."""
    model_dir = Path(model_dir)
    record = load_kind_record(model_dir)
    kind = record["kind"]
    serving = _serving(export_dir) if export_dir is not None else None
    if kind == "transformer":
        return _transformer(model_dir, max_length, export_dir, serving, threads)
    if kind == "linear":
        return _linear(model_dir, export_dir, serving, threads)
    return _ensemble(model_dir, record, max_length, export_dir, serving, threads)


def reorder(probs: np.ndarray, columns: Sequence[str], labels: Sequence[str], *, where: str) -> np.ndarray:
    """`probs` (columns in `columns` order) with its columns in `labels` order."""
    if sorted(columns) != sorted(labels) or len(set(columns)) != len(columns):
        raise ModelFolderError(
            f"{where} predicts labels {_few(columns)}, expected {_few(labels)}",
            hint="the model was trained on another label set",
        )
    if list(columns) == list(labels):
        return probs
    index = [list(columns).index(label) for label in labels]
    return np.asarray(probs[:, index])


@dataclass
class TransformerScorer:
    """A fine-tuned transformer: torch in-process, or `onnx` (an `OnnxClassifier`) when given."""

    model_dir: Path
    labels: list[str]
    max_length: int
    tokenizer: Any
    model: Any = None
    onnx: Any = None
    kind: str = "transformer"

    def proba(self, texts: list[str], *, batch_size: int = 32, on_batch: OnBatch = None) -> np.ndarray:
        if self.onnx is None:
            from lmforge.tasks.classification import predict_proba

            return predict_proba(
                self.model,
                self.tokenizer,
                texts,
                batch_size=batch_size,
                max_length=self.max_length,
                on_batch=on_batch,
            )
        from lmforge.export.onnx import softmax

        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            out[start : start + len(chunk)] = softmax(self.onnx.logits_batch(chunk))
            if on_batch is not None:
                on_batch(len(chunk))
        return out


@dataclass
class LinearScorer:
    """TF-IDF features + linear head: scikit-learn in-process, or its ONNX head (`OnnxLinear`)."""

    model_dir: Path
    labels: list[str]
    runner: Any
    kind: str = "linear"

    def proba(self, texts: list[str], *, batch_size: int = 256, on_batch: OnBatch = None) -> np.ndarray:
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            out[start : start + len(chunk)] = self.runner.proba(chunk)
            if on_batch is not None:
                on_batch(len(chunk))
        return out


@dataclass
class EnsembleScorer:
    """Weighted average of member probabilities, each member's columns in `labels` order."""

    labels: list[str]
    members: list[tuple[float, Scorer]]
    kind: str = "ensemble"

    def proba(self, texts: list[str], *, batch_size: int = 32, on_batch: OnBatch = None) -> np.ndarray:
        total = np.zeros((len(texts), len(self.labels)), dtype=np.float64)
        for i, (weight, member) in enumerate(self.members):
            # Progress follows the first member only, so the bar counts each text once.
            probs = member.proba(texts, batch_size=batch_size, on_batch=on_batch if i == 0 else None)
            total += weight * reorder(
                probs, member.labels, self.labels, where=f"ensemble member {member.kind}"
            )
        return total.astype(np.float32)


def load_kind_record(model_dir: Path) -> dict[str, Any]:
    """The folder's kind record, or a one-line error naming the folder or the file."""
    if not model_dir.is_dir():
        raise ModelFolderError(f"model folder {model_dir} does not exist")
    try:
        return read_kind(model_dir)
    except (KindFileError, ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise ModelFolderError(f"{model_dir / KIND_FILE}: unreadable kind record ({exc})") from exc


def _serving(export_dir: Path) -> dict[str, Any]:
    path = Path(export_dir) / "serving.json"
    try:
        serving = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFolderError(f"{path}: cannot read it ({exc})", hint="export the model again") from exc
    if not isinstance(serving, dict):
        raise ModelFolderError(f"{path}: expected a JSON object")
    return serving


def _onnx_file(export_dir: Path, serving: dict[str, Any], key: str) -> Path:
    """An ONNX file named in serving.json, refused when the name leaves the export folder."""
    name = serving.get(key)
    if not isinstance(name, str) or not name:
        raise ModelFolderError(
            f"{export_dir / 'serving.json'}: no '{key}' graph", hint="serve with --runtime torch"
        )
    path = (export_dir / name).resolve()
    if path.parent != Path(export_dir).resolve() or not path.is_file():
        raise ModelFolderError(
            f"{export_dir / 'serving.json'}: '{key}' names {name!r}, not a file of the export"
        )
    return path


def _transformer(
    model_dir: Path,
    max_length: int | None,
    export_dir: Path | None,
    serving: dict[str, Any] | None,
    threads: int | None,
) -> TransformerScorer:
    if not (model_dir / "config.json").is_file():
        raise ModelFolderError(f"{model_dir} is not a transformers model folder (no config.json)")
    if export_dir is None or serving is None:
        from lmforge.models.load import load_trained_classifier, trained_max_length

        tokenizer, model = load_trained_classifier(model_dir, on_device=True)
        labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
        length = max_length or trained_max_length(model.config)
        return TransformerScorer(model_dir, labels, length, tokenizer, model=model)
    from transformers import AutoTokenizer

    from lmforge.export.onnx import OnnxClassifier
    from lmforge.models.quiet import quiet_transformers

    quiet_transformers()
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    id2label = config.get("id2label") or {}
    labels = [str(id2label[str(i)]) for i in range(len(id2label))]
    length = int(max_length or serving.get("max_length") or config.get("lmforge_max_length") or 128)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    onnx = OnnxClassifier(
        _onnx_file(export_dir, serving, "onnx"), tokenizer, max_length=length, threads=threads
    )
    return TransformerScorer(model_dir, labels, length, tokenizer, onnx=onnx)


def _linear(
    model_dir: Path, export_dir: Path | None, serving: dict[str, Any] | None, threads: int | None
) -> LinearScorer:
    if export_dir is None or serving is None:
        from lmforge.classical.linear import load_linear

        model = load_linear(model_dir)
        return LinearScorer(model_dir, [str(label) for label in model.labels], model)
    from lmforge.classical.onnx import OnnxLinear

    key = "linear_onnx" if serving.get("kind") == "ensemble" else "onnx"
    path = _onnx_file(export_dir, serving, key)
    try:
        runner = OnnxLinear(model_dir, path, threads=threads)
    except LmforgeError:
        raise
    except Exception as exc:  # onnxruntime's load errors, a head of another width: one line
        raise ModelFolderError(f"{path}: cannot serve it ({type(exc).__name__}: {exc})") from exc
    # The runner's columns follow the kind file's label order, the in-process model's its classes.
    return LinearScorer(model_dir, [str(label) for label in runner.labels], runner)


def _ensemble(
    model_dir: Path,
    record: dict[str, Any],
    max_length: int | None,
    export_dir: Path | None,
    serving: dict[str, Any] | None,
    threads: int | None,
) -> EnsembleScorer:
    where = model_dir / KIND_FILE
    labels, members = check_ensemble(record, where)
    scorers: list[tuple[float, Scorer]] = []
    for member in members:
        folder = _member_folder(model_dir, member["path"], where)
        scorer: Scorer
        if member["kind"] == "transformer":
            scorer = _transformer(folder, max_length, export_dir, serving, threads)
        else:
            if folder == model_dir.resolve():
                raise ModelFolderError(f"{where}: the linear member cannot be the ensemble folder itself")
            scorer = _linear(folder, export_dir, serving, threads)
        if sorted(scorer.labels) != sorted(labels):
            raise ModelFolderError(
                f"{where}: member {member['path']!r} ({member['kind']}) predicts {_few(scorer.labels)}, "
                f"the ensemble {_few(labels)}",
                hint="an ensemble's members must be trained on the same labels",
            )
        scorers.append((float(member["weight"]), scorer))
    return EnsembleScorer(labels, scorers)


def check_ensemble(record: dict[str, Any], where: Path | str) -> tuple[list[str], list[dict[str, Any]]]:
    """The ensemble's labels and members, or a one-line error naming what is wrong."""
    labels = record.get("labels")
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise ModelFolderError(f"{where}: 'labels' must be a non-empty list of label names")
    if len(set(labels)) != len(labels):
        raise ModelFolderError(f"{where}: 'labels' lists a label twice")
    method = record.get("method", "weighted_average")
    if method != "weighted_average":
        raise ModelFolderError(
            f"{where}: unknown ensemble method {method!r} (this lmforge knows weighted_average)"
        )
    members = record.get("members")
    if not isinstance(members, list) or len(members) < 2:
        raise ModelFolderError(f"{where}: 'members' must list at least two members")
    for i, member in enumerate(members):
        if not isinstance(member, dict) or member.get("kind") not in ("transformer", "linear"):
            raise ModelFolderError(f"{where}: members[{i}].kind must be transformer or linear")
        if not isinstance(member.get("path"), str):
            raise ModelFolderError(f"{where}: members[{i}].path must be a folder name")
        weight = member.get("weight")
        if (
            isinstance(weight, bool)
            or not isinstance(weight, (int, float))
            or not math.isfinite(weight)
            or weight < 0
        ):
            raise ModelFolderError(f"{where}: members[{i}].weight must be a number >= 0, not {weight!r}")
    # One member of each kind, the transformer being the folder itself: export writes one graph
    # per kind (serving.json's `onnx` and `linear_onnx`) and keys the weights by kind.
    if sorted(m["kind"] for m in members) != ["linear", "transformer"]:
        raise ModelFolderError(f"{where}: 'members' must be one transformer and one linear model")
    if next(m for m in members if m["kind"] == "transformer")["path"] not in (".", ""):
        raise ModelFolderError(f"{where}: the transformer member must be the folder itself (path '.')")
    total = sum(float(m["weight"]) for m in members)
    if abs(total - 1.0) > WEIGHT_TOLERANCE:
        raise ModelFolderError(
            f"{where}: member weights sum to {total:.6g}, not 1", hint="train the model again"
        )
    return list(labels), members


def _member_folder(model_dir: Path, path: str, where: Path) -> Path:
    """A member's folder, which must be the ensemble folder or a folder inside it: a kind
    file pointing elsewhere (`../other`, an absolute path) is refused, never followed."""
    root = model_dir.resolve()
    folder = (root / path).resolve()
    if folder != root and root not in folder.parents:
        raise ModelFolderError(f"{where}: member path {path!r} leaves the model folder")
    if not folder.is_dir():
        raise ModelFolderError(f"{where}: member folder {path!r} is missing")
    return folder


def _few(labels: Sequence[str]) -> str:
    shown = ", ".join(sorted(map(str, labels))[:5])
    return f"[{shown}{', ...' if len(labels) > 5 else ''}]"
