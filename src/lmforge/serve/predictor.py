"""Load a registered model version (a folder from `lmforge.registry.download`) and score texts.

Classification prefers the exported ONNX graph (int8 when the export shipped one), which is
2-3x faster than torch on CPU with the same argmax on the test set (checked at export);
`runtime="torch"` forces the model folder. Generation models run with transformers.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lmforge.errors import LmforgeError
from lmforge.registry.names import TASK_TAG
from lmforge.tasks.registry import get_task

Runtime = Literal["auto", "onnx", "torch"]


class ServeError(LmforgeError):
    """A model that cannot be served as asked; requests see a subclass (statuses in `serve/errors.py`)."""

    headline = "serve error"


class EmptyPrompt(ServeError):
    """The prompt has no tokens, so there is nothing to continue: the client's error."""


class GenerationFailed(ServeError):
    """`model.generate` raised: the server's error."""


@dataclass(frozen=True)
class Classified:
    label: str
    confidence: float
    probabilities: dict[str, float]


def classified(labels: list[str], probs: np.ndarray) -> list[Classified]:
    """One answer per row of probabilities (columns in `labels` order)."""
    out = []
    for row in probs:
        best = int(row.argmax())
        out.append(
            Classified(labels[best], float(row[best]), dict(zip(labels, map(float, row), strict=True)))
        )
    return out


class ClassifierPredictor:
    """Texts in, labels and probabilities out; safe to call from one worker thread at a time."""

    task = "classification"

    def __init__(self, folder: Path, *, runtime: Runtime = "auto", threads: int | None = None) -> None:
        from transformers import AutoTokenizer

        from lmforge.models.quiet import quiet_transformers

        quiet_transformers()
        model_dir = folder / "model"
        serving = _serving(folder)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        config = json.loads((model_dir / "config.json").read_text())
        id2label = config.get("id2label") or {}
        self.labels = serving.get("labels") or [id2label[str(i)] for i in range(len(id2label))]
        self.max_length = int(serving.get("max_length") or 256)
        onnx = serving.get("onnx")
        if runtime == "onnx" and not onnx:
            raise ServeError(f"{folder.name} has no exported ONNX graph", hint="serve with --runtime torch")
        self.runtime = "onnx" if onnx and runtime != "torch" else "torch"
        if self.runtime == "onnx":
            from lmforge.export.onnx import OnnxClassifier

            self.file = str(onnx)
            self._onnx = OnnxClassifier(
                folder / "export" / str(onnx), self.tokenizer, max_length=self.max_length, threads=threads
            )
        else:
            import torch

            from lmforge.models.load import load_trained_classifier

            if threads:
                torch.set_num_threads(threads)
            self.file = "model.safetensors"
            self._model = load_trained_classifier(model_dir, on_device=True)[1]

    def classify(self, texts: list[str]) -> list[Classified]:
        """One batch; the caller (the micro-batcher) decides its size."""
        return classified(self.labels, _softmax(self._logits(texts)))

    def _logits(self, texts: list[str]) -> np.ndarray:
        if self.runtime == "onnx":
            return self._onnx.logits_batch(texts)
        import torch

        batch = self.tokenizer(
            texts, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt"
        )
        with torch.inference_mode():
            return np.asarray(self._model(**batch.to(self._model.device)).logits.float().cpu().numpy())

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, truncation=False)["input_ids"])


class KindPredictor:
    """A linear model or an ensemble (`models/kinds.py`), scored by `models.scorer`: the ONNX
    files named in serving.json, or in-process (`runtime="torch"`: scikit-learn for the linear
    part, torch for the transformer). The answers are the evaluate stage's probabilities."""

    task = "classification"

    def __init__(
        self, folder: Path, kind: str, *, runtime: Runtime = "auto", threads: int | None = None
    ) -> None:
        from lmforge.models.scorer import load_scorer, reorder

        model_dir = folder / "model"
        serving = _serving(folder)
        graphs = [serving.get("onnx")] + ([serving.get("linear_onnx")] if kind == "ensemble" else [])
        onnx = all(graphs)
        if runtime == "onnx" and not onnx:
            raise ServeError(f"{folder.name} has no exported ONNX graph", hint="serve with --runtime torch")
        self.kind = kind
        self.runtime = "onnx" if onnx and runtime != "torch" else "torch"
        if self.runtime == "torch" and threads:
            import torch

            torch.set_num_threads(threads)
        max_length = serving.get("max_length")
        self._scorer = load_scorer(
            model_dir,
            max_length=int(max_length) if max_length else None,
            export_dir=folder / "export" if self.runtime == "onnx" else None,
            threads=threads,
        )
        self.labels: list[str] = list(serving.get("labels") or self._scorer.labels)
        self._reorder = lambda probs: reorder(probs, self._scorer.labels, self.labels, where=folder.name)
        self._reorder(
            np.zeros((0, len(self._scorer.labels)), dtype=np.float32)
        )  # same label set, checked now
        if kind == "ensemble":
            _check_weights(folder, serving)
        self.max_length = int(max_length or 0) or None
        names = [str(g) for g in graphs] if self.runtime == "onnx" else _in_process_files(kind)
        self.file = "+".join(names)

    def classify(self, texts: list[str]) -> list[Classified]:
        """One batch; the caller (the micro-batcher) decides its size."""
        return classified(
            self.labels, self._reorder(self._scorer.proba(texts, batch_size=max(1, len(texts))))
        )

    def count_tokens(self, text: str) -> int:
        """Tokens for the transformer member; words for a linear model (it has no tokenizer)."""
        tokenizer = getattr(_transformer_member(self._scorer), "tokenizer", None)
        if tokenizer is not None:
            return len(tokenizer(text, truncation=False)["input_ids"])
        return len(text.split())


def _in_process_files(kind: str) -> list[str]:
    return ["linear.skops"] if kind == "linear" else ["model.safetensors", "linear/linear.skops"]


def _transformer_member(scorer: Any) -> Any:
    for _, member in getattr(scorer, "members", []):
        if member.kind == "transformer":
            return member
    return None


def _check_weights(folder: Path, serving: dict[str, Any]) -> None:
    """serving.json repeats the ensemble's weights for readers; the kind file is what is used,
    so the two must agree (a hand-edited copy is refused, not silently ignored)."""
    from lmforge.models.kinds import read_kind

    if "weights" not in serving:
        return
    members = read_kind(folder / "model").get("members", [])
    used = {str(m["kind"]): float(m["weight"]) for m in members}
    shown = serving["weights"]
    if (
        not isinstance(shown, dict)
        or set(shown) != set(used)
        or any(not isinstance(shown[k], (int, float)) or abs(float(shown[k]) - used[k]) > 1e-9 for k in used)
    ):
        raise ServeError(
            f"{folder.name}: export/serving.json weights {shown!r} differ from the model's {used!r}",
            hint="export the model again",
        )


class GenerationPredictor:
    """A causal LM answering prompts one request at a time (a lock serialises `generate`)."""

    task = "generation"
    runtime = "torch"
    file = "model.safetensors"

    def __init__(self, folder: Path, *, threads: int | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from lmforge.models.device import place
        from lmforge.models.quiet import quiet_transformers

        quiet_transformers()
        if threads:
            torch.set_num_threads(threads)
        model_dir = folder / "model"
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = place(AutoModelForCausalLM.from_pretrained(model_dir).eval())
        self.max_length = int(getattr(self.model.config, "max_position_embeddings", 2048))
        self.labels: list[str] = []
        self._lock = threading.Lock()

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        """The same rendering the model was trained with (chat template or plain template)."""
        from lmforge.tasks.generation import render_prompt

        return render_prompt(self.tokenizer, messages)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, truncation=False)["input_ids"])

    def stream(self, prompt: str, *, max_new_tokens: int, temperature: float, top_p: float) -> Iterator[str]:
        """Text pieces as they are generated (the whole answer when iterated to the end)."""
        import torch
        from transformers import TextIteratorStreamer

        from lmforge.tasks.generation import prompt_ids

        ids = torch.tensor([prompt_ids(self.tokenizer, prompt)], dtype=torch.long, device=self.model.device)
        if ids.shape[1] == 0:
            raise EmptyPrompt("the prompt has no tokens", hint="send a non-empty prompt")
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 else {}
        kwargs = {
            **inputs,
            "max_new_tokens": max_new_tokens,
            "streamer": streamer,
            "pad_token_id": self.tokenizer.pad_token_id,
            **sampling,
        }
        failed: list[BaseException] = []

        def generate() -> None:
            try:
                self.model.generate(**kwargs)
            except BaseException as exc:  # end the stream, or the reader below waits forever
                failed.append(exc)
                streamer.end()

        with self._lock:
            worker = threading.Thread(target=generate, daemon=True)
            worker.start()
            yield from streamer
            worker.join()
        if failed:
            raise GenerationFailed(f"generation failed: {failed[0]}") from failed[0]


def load_predictor(folder: Path, *, runtime: Runtime = "auto", threads: int | None = None) -> Any:
    """The predictor for the version in `folder`, by the task recorded at registration."""
    task = _task(folder)
    if get_task(task).uses_labels:
        kind = _kind(folder)
        if kind != "transformer":
            return KindPredictor(folder, kind, runtime=runtime, threads=threads)
        return ClassifierPredictor(folder, runtime=runtime, threads=threads)
    return GenerationPredictor(folder, threads=threads)


def _serving(folder: Path) -> dict[str, Any]:
    path = folder / "export" / "serving.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _kind(folder: Path) -> str:
    """The model folder's kind; serving.json must say the same one (absent: a transformer)."""
    from lmforge.models.scorer import ModelFolderError, load_kind_record

    try:
        kind = str(load_kind_record(folder / "model")["kind"])
    except ModelFolderError as exc:
        raise ServeError(exc.message, hint=exc.hint) from exc
    serving = _serving(folder)
    said = serving.get("kind", "transformer")  # written before kinds existed: a transformer
    if serving and said != kind:
        raise ServeError(
            f"{folder.name}: export/serving.json says kind {said!r}, the model folder holds {kind!r}",
            hint="export the model again",
        )
    return kind


def _task(folder: Path) -> str:
    serving = _serving(folder)
    if serving.get("task"):
        return str(serving["task"])
    version = folder / "version.json"
    tags = json.loads(version.read_text()).get("tags", {}) if version.exists() else {}
    if tags.get(TASK_TAG):
        return str(tags[TASK_TAG])
    if not (folder / "model" / "config.json").exists():  # a linear model: no transformers config
        return "classification"
    config = json.loads((folder / "model" / "config.json").read_text())
    causal = any(a.endswith("ForCausalLM") for a in config.get("architectures", []))
    return "generation" if causal else "classification"


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return np.asarray(exp / exp.sum(axis=-1, keepdims=True))
