"""export (generation, language-modeling): the merged model as one GGUF file for llama.cpp
and Ollama users, checked by loading it back with transformers and comparing logits with
the model folder on test prompts. The folder `train/model/` (safetensors) is the other
export: it loads with transformers alone.

An architecture GGUF cannot hold here (only llama-style models are written) is skipped
with a warning; a file whose logits drift more than `export.max_logit_diff` fails the stage.
"""

from __future__ import annotations

import json

from lmforge.config import ExportConfig
from lmforge.errors import ExportCheckFailed
from lmforge.pipeline.context import Inputs, StageContext, StageResult
from lmforge.tasks.registry import get_task


def run(ctx: StageContext, cfg: ExportConfig, inputs: Inputs) -> StageResult:
    from lmforge.export.gguf import GgufExportError, compare_gguf, export_gguf
    from lmforge.models.resolve import resolve_model

    model = inputs["train"].path("model")
    base = resolve_model(ctx.config.model_name, ctx.config.base_dir)
    try:
        written = export_gguf(
            model,
            ctx.out.path("model.gguf"),
            dtype=cfg.gguf_dtype,
            source_gguf=base.path if base.is_gguf else None,  # keeps the original tokenizer metadata
        )
    except GgufExportError as exc:
        ctx.warn(f"no GGUF file: {exc}")
        return StageResult(summary={"gguf": None, "skipped": str(exc)})
    texts = _check_texts(inputs, get_task(ctx.config.task).raw_text)
    with ctx.progress("checking the GGUF file against the model", total=None):
        check = compare_gguf(model, written.path, texts)
    summary = {
        "gguf": "model.gguf",
        "dtype": written.dtype,
        "bytes": written.bytes,
        "max_logit_diff": check.max_abs_diff,
        "same_next_token": check.same_next_token,
        "texts": len(texts),
    }
    ctx.out.write_json("gguf_check", summary)
    if check.max_abs_diff > cfg.max_logit_diff or not check.same_next_token:
        raise ExportCheckFailed(
            f"the GGUF file's logits differ from the model's by {check.max_abs_diff:.4f} "
            f"(limit export.max_logit_diff={cfg.max_logit_diff}; same next token: {check.same_next_token})",
            hint="try export.gguf_dtype: f32, or set export.gguf: false",
        )
    ctx.log(
        f"model.gguf ({written.bytes / 1e6:.0f} MB, {written.dtype}): max |logit diff| "
        f"{check.max_abs_diff:.4f} vs the model folder on {len(texts)} test texts"
    )
    return StageResult(
        metrics={"gguf_max_logit_diff": check.max_abs_diff, "gguf_megabytes": written.bytes / 1e6},
        summary=summary,
    )


def _check_texts(inputs: Inputs, raw_text: bool) -> list[str]:
    test = inputs["split"].table("test").head(3)
    if raw_text:
        return [t[:500] for t in test["text"]]
    texts = []
    for messages in test["messages"]:
        turns = json.loads(messages)
        texts.append("\n".join(m["content"] for m in turns)[:500])
    return texts
