"""Score one causal LM on the test split: perplexity on every row (the first
`evaluate.perplexity_rows` when set), and (generation) answers to the first
`evaluate.generation_rows` prompts scored by ROUGE, BLEU and exact match. The base model
(baseline stage) and the fine-tuned one (evaluate) are scored by this same function on the
same rows, so their numbers compare."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from lmforge.config import EvaluateConfig
from lmforge.pipeline.context import StageContext
from lmforge.tasks.generation import encode_conversations, encode_texts_packed, render_prompt
from lmforge.tasks.generation_eval import generate, perplexity, text_metrics
from lmforge.tasks.registry import get_task


@dataclass
class Scores:
    metrics: dict[str, float]
    prompts: list[str] = field(default_factory=list)  # rendered, as the model saw them
    questions: list[str] = field(default_factory=list)  # the prompt's messages, for people
    references: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    tokens_per_second: float = 0.0


def score(ctx: StageContext, reference: str, test: pd.DataFrame, cfg: EvaluateConfig, who: str) -> Scores:
    import time

    from lmforge.models.load import load_causal_lm
    from lmforge.models.resolve import resolve_model

    lm = get_task(ctx.config.task).raw_text
    tokenizer, model = load_causal_lm(resolve_model(reference, ctx.config.base_dir))
    pad = tokenizer.pad_token_id
    read = test if cfg.perplexity_rows is None else test.head(cfg.perplexity_rows)
    if lm:
        encoded = encode_texts_packed(tokenizer, read["text"].tolist(), cfg.max_length)
        conversations: list[list[dict[str, str]]] = []
    else:
        conversations = [json.loads(m) for m in test["messages"]]
        encoded = encode_conversations(tokenizer, conversations[: len(read)], cfg.max_length)
    with ctx.progress(f"{who}: test perplexity", total=len(encoded)) as bar:
        metrics = perplexity(model, encoded, pad, batch_size=cfg.batch_size, on_batch=bar.advance)
    metrics["test_tokens"] = metrics.pop("tokens")
    metrics["perplexity_rows"] = float(len(read))
    scores = Scores(metrics)
    if lm or not cfg.generation_rows:
        return scores
    chosen = conversations[: cfg.generation_rows]
    scores.prompts = [render_prompt(tokenizer, c[:-1]) for c in chosen]
    scores.references = [c[-1]["content"] for c in chosen]
    scores.questions = ["\n\n".join(m["content"] for m in c[:-1] if m["role"] != "system") for c in chosen]
    started = time.perf_counter()
    with ctx.progress(f"{who}: answering test prompts", total=len(chosen)) as bar:
        scores.answers = generate(
            model,
            tokenizer,
            scores.prompts,
            max_new_tokens=cfg.max_new_tokens,
            batch_size=min(cfg.batch_size, 8),
            do_sample=cfg.do_sample,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            max_prompt_tokens=max(cfg.max_length - cfg.max_new_tokens, 8),
            on_batch=bar.advance,
        )
    seconds = time.perf_counter() - started
    new_tokens = sum(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in scores.answers)
    scores.tokens_per_second = new_tokens / max(seconds, 1e-9)
    scores.metrics.update(text_metrics(scores.answers, scores.references))
    scores.metrics["generated_rows"] = float(len(chosen))
    return scores


def metric_line(metrics: dict[str, Any]) -> str:
    shown = [f"perplexity {metrics['perplexity']:.2f}"]
    if "rouge_l" in metrics:
        shown += [f"ROUGE-L {metrics['rouge_l']:.3f}", f"BLEU {metrics['bleu']:.1f}"]
    return ", ".join(shown)
