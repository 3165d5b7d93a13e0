"""What kind of classifier a model folder holds: a fine-tuned transformer, a linear model on
TF-IDF features, or an ensemble of the two.

The kind is written in `lmforge_kind.json` inside the folder (the train artifact's `model/`,
and so a registered version's `model/`), so every reader of a model folder (evaluate, export,
serve, the UI playground, eject) asks the folder, never the config that made it. A folder
without the file is a Hugging Face model folder: every model trained before the file existed.

    transformer  the Hugging Face folder (config.json, model.safetensors, tokenizer)
    linear       linear.skops (scikit-learn Pipeline: TF-IDF features + linear head, loaded
                 through skops with an explicit list of trusted types) + lmforge_kind.json
    ensemble     the transformer folder + `linear/` (a linear folder); lmforge_kind.json lists
                 the members with their weights: probabilities are the weighted sum
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from lmforge.errors import LmforgeError

KIND_FILE = "lmforge_kind.json"
Kind = Literal["transformer", "linear", "ensemble"]
KINDS: tuple[str, ...] = ("transformer", "linear", "ensemble")


class KindFileError(LmforgeError):
    """A `lmforge_kind.json` that is not JSON or names no known kind (edited or corrupt)."""

    headline = "model folder error"


def read_kind(model_dir: Path) -> dict[str, Any]:
    """The folder's kind record ({"kind": "transformer"} when the folder has none)."""
    path = Path(model_dir) / KIND_FILE
    if not path.exists():
        return {"kind": "transformer"}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KindFileError(f"{path}: not a readable kind record ({exc})") from exc
    if not isinstance(record, dict) or record.get("kind") not in KINDS:
        raise KindFileError(f"{path}: 'kind' must be one of {', '.join(KINDS)}")
    return record


def kind_of(model_dir: Path) -> str:
    return str(read_kind(model_dir)["kind"])


def write_kind(model_dir: Path, kind: Kind, **facts: Any) -> Path:
    """Write the folder's kind record (labels, members and weights, head settings ...)."""
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}")
    path = Path(model_dir) / KIND_FILE
    path.write_text(json.dumps({"kind": kind, **facts}, indent=2, sort_keys=True), encoding="utf-8")
    return path
