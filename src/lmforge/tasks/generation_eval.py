"""Scoring causal LMs: perplexity from the model's loss, batched generation, and text
metrics (ROUGE with rouge-score, BLEU with sacrebleu, exact match) called directly."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from lmforge.tasks.generation import IGNORE, CausalCollator, Encoded, prompt_ids

# Lower is better only for perplexity and loss; the gate and the trainer need the direction.
GREATER_IS_BETTER = {
    "rouge1": True,
    "rouge2": True,
    "rouge_l": True,
    "bleu": True,
    "exact_match": True,
    "perplexity": False,
    "loss": False,
}


def normalise(text: str) -> str:
    """Lower case, no surrounding or repeated whitespace: what exact match compares."""
    return re.sub(r"\s+", " ", text).strip().lower()


def text_metrics(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measure (0-1, stemmed), corpus BLEU (0-100) and exact match (0-1)."""
    import sacrebleu
    from rouge_score import rouge_scorer

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not predictions:
        return {}
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for prediction, reference in zip(predictions, references, strict=True):
        scores = scorer.score(reference, prediction)
        for key in totals:
            totals[key] += scores[key].fmeasure
    n = len(predictions)
    bleu = sacrebleu.corpus_bleu(list(predictions), [list(references)])
    exact = sum(normalise(p) == normalise(r) for p, r in zip(predictions, references, strict=True))
    return {
        "rouge1": totals["rouge1"] / n,
        "rouge2": totals["rouge2"] / n,
        "rouge_l": totals["rougeL"] / n,
        "bleu": float(bleu.score),
        "exact_match": exact / n,
    }


def perplexity(
    model: Any,
    encoded: Encoded,
    pad_token_id: int,
    *,
    batch_size: int = 8,
    on_batch: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """exp(mean negative log-likelihood per target token), summed over all tokens (not a
    mean of batch means, which would weigh short batches too much)."""
    import torch

    model.eval()
    device = next(model.parameters()).device
    collate = CausalCollator(pad_token_id)
    total_nll, total_tokens = 0.0, 0
    order = sorted(range(len(encoded)), key=lambda i: len(encoded.input_ids[i]))
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            batch = {k: v.to(device) for k, v in collate([encoded[i] for i in chunk]).items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            shifted = logits[:, :-1].float()
            targets = batch["labels"][:, 1:]
            nll = torch.nn.functional.cross_entropy(
                shifted.reshape(-1, shifted.size(-1)),
                targets.reshape(-1),
                ignore_index=IGNORE,
                reduction="sum",
            )
            total_nll += float(nll)
            total_tokens += int((targets != IGNORE).sum())
            if on_batch is not None:
                on_batch(len(chunk))
    if total_tokens == 0:
        return {"loss": float("nan"), "perplexity": float("nan"), "tokens": 0.0}
    loss = total_nll / total_tokens
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": float(total_tokens)}


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    batch_size: int = 8,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_prompt_tokens: int | None = None,
    seed: int = 0,
    on_batch: Callable[[int], None] | None = None,
) -> list[str]:
    """Continue each rendered prompt; returns only the new text. Prompts are batched by
    length and padded on the left, so every row continues from its last real token; a
    prompt longer than `max_prompt_tokens` keeps its end (where the answer starts)."""
    import torch

    model.eval()
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = [prompt_ids(tokenizer, p) for p in prompts]
    if max_prompt_tokens:
        encoded = [ids[-max_prompt_tokens:] for ids in encoded]
    torch.manual_seed(seed)
    outputs = [""] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    options: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": do_sample}
    if do_sample:
        options.update(temperature=temperature, top_p=top_p)
    else:  # silence the "temperature is ignored" warnings of the model's generation config
        options.update(temperature=None, top_p=None, top_k=None)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            width = max(len(encoded[i]) for i in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, index in enumerate(chunk):
                n = len(encoded[index])
                ids[row, width - n :] = torch.tensor(encoded[index])
                mask[row, width - n :] = 1
            generated = model.generate(
                input_ids=ids.to(device), attention_mask=mask.to(device), pad_token_id=pad, **options
            )
            for row, index in enumerate(chunk):
                outputs[index] = tokenizer.decode(generated[row, width:], skip_special_tokens=True).strip()
            if on_batch is not None:
                on_batch(len(chunk))
    return outputs
