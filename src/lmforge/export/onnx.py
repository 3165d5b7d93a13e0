"""Classification models as ONNX: fp32 export with `torch.onnx.export`, int8 dynamic
quantization with onnxruntime, and a small runtime that scores texts with either.

The TorchScript exporter (`dynamo=False`) is used on purpose: it needs no extra package,
exports minilm in ~1.5 s and matches torch's logits to ~1e-6 (DESIGN.md facts); the dynamo
exporter needs onnxscript and takes ~10x longer for the same graph.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmforge.errors import LmforgeError
from lmforge.models.batching import length_sorted_batches

OPSET = 17


class OnnxExportError(LmforgeError):
    headline = "export failed"


@dataclass(frozen=True)
class OnnxFile:
    path: Path
    bytes: int
    inputs: tuple[str, ...]


def export_classifier(model_dir: Path, out: Path, *, opset: int = OPSET) -> OnnxFile:
    """Write `model_dir` (a transformers sequence classifier) as one ONNX graph whose
    batch and sequence axes are dynamic; inputs are whatever the tokenizer produces."""
    import torch

    from lmforge.models.load import load_trained_classifier

    tokenizer, model = load_trained_classifier(model_dir)
    sample = tokenizer(["an example", "a second, longer example text"], padding=True, return_tensors="pt")
    names = tuple(k for k in ("input_ids", "attention_mask", "token_type_ids") if k in sample)

    class Logits(torch.nn.Module):  # positional inputs in a fixed order, logits out
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *args: torch.Tensor) -> torch.Tensor:
            return self.model(**dict(zip(names, args, strict=True))).logits

    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        # The tracer warns about every Python-level shape branch in transformers' masking code;
        # the parity check on the test set (not these warnings) is what says the graph is right.
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                Logits(),
                tuple(sample[n] for n in names),
                str(tmp),
                input_names=list(names),
                output_names=["logits"],
                dynamic_axes={**axes, "logits": {0: "batch"}},
                opset_version=opset,
                dynamo=False,
            )
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise OnnxExportError(
            f"torch.onnx.export failed for {model_dir.name}: {exc}", hint="set export.onnx: false"
        ) from exc
    os.replace(tmp, out)
    return OnnxFile(out, out.stat().st_size, names)


def quantize_int8(fp32: Path, out: Path) -> OnnxFile:
    """Dynamic int8 quantization of the weights (activations stay float, scaled per batch):
    no calibration data needed, ~4x smaller, faster matmuls on CPUs with VNNI/AVX2."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # "consider pre-processing" advice, logged on the root logger
    try:
        quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8)
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        root.setLevel(level)
    os.replace(tmp, out)
    session = _session(out, threads=1)
    return OnnxFile(out, out.stat().st_size, tuple(i.name for i in session.get_inputs()))


def _session(path: Path, threads: int | None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3  # onnxruntime warns about unused initializers on every load
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxClassifier:
    """Scores texts with an exported graph; the tokenizer is the model folder's."""

    def __init__(self, path: Path, tokenizer: Any, *, max_length: int, threads: int | None = None) -> None:
        self.path = path
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.session = _session(path, threads)
        self.inputs = [i.name for i in self.session.get_inputs()]

    def logits_batch(self, texts: list[str]) -> np.ndarray:
        """Logits of one batch, in the order given (the caller batches)."""
        encoded = self.tokenizer(
            texts, truncation=True, max_length=self.max_length, padding=True, return_tensors="np"
        )
        feed = {name: encoded[name].astype(np.int64) for name in self.inputs}
        return np.asarray(self.session.run(["logits"], feed)[0], dtype=np.float32)

    def logits(self, texts: list[str], *, batch_size: int = 32) -> np.ndarray:
        """Logits of any number of texts, batched by length like the torch path."""
        out: np.ndarray | None = None
        for index, batch in length_sorted_batches(
            self.tokenizer, texts, batch_size=batch_size, max_length=self.max_length
        ):
            feed = {name: batch[name].numpy().astype(np.int64) for name in self.inputs}
            logits = self.session.run(["logits"], feed)[0]
            if out is None:
                out = np.zeros((len(texts), logits.shape[1]), dtype=np.float32)
            out[index] = logits
        return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return np.asarray(exp / exp.sum(axis=-1, keepdims=True))
