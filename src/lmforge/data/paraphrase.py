"""Paraphrases written by a small instruction-tuned causal LM, filtered before use.

smollm2-135m often answers a message instead of rewriting it, echoes it, or rambles; the
prompt carries two worked examples and `clean_paraphrase` rejects what is still unusable, so
`paraphrase` returns None for a row rather than a bad variant.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

INSTRUCTION = "Paraphrase the following customer message. Keep its meaning. Reply with the paraphrase only."
# Two worked examples: without them smollm2-135m mostly *answers* the message instead of
# rewriting it (measured on banking-style messages). The second one shows a placeholder kept.
FEW_SHOT = (
    ("The app crashes every time I open it.", "Each time I launch the app, it crashes."),
    ("Please send the invoice to <EMAIL> again.", "Could you resend the invoice to <EMAIL>?"),
)
PLACEHOLDER_RE = re.compile(r"<[^<>\s]+>")
_PREFIX_RE = re.compile(
    r"^\s*(?:here(?: is|'s)\s+)?(?:the\s+|a\s+|my\s+)?(?:customer\s+)?"
    r"(?:paraphrased?(?:\s+message)?|rephrased(?:\s+message)?|rewritten(?:\s+message)?|message)"
    r"(?:\s+is)?\s*:\s*",
    re.IGNORECASE,
)
_QUOTES = "\"'`\u201c\u201d\u2018\u2019\u00ab\u00bb"  # straight, curly and guillemet quotes


def normalise(text: str) -> str:
    """Case- and punctuation-blind form, so "Hi!" and "hi" count as the same text."""
    return " ".join(re.findall(r"<[^<>\s]+>|\w+", text.casefold()))


def paraphrase(
    texts: Sequence[str],
    *,
    model: str = "smollm2-135m",
    batch_size: int = 8,
    max_new_tokens: int = 64,
    temperature: float = 0.7,
    seed: int = 0,
    base_dir: Path | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> list[str | None]:
    """One paraphrase per text from a causal LM, ``None`` where the output was rejected.

    Texts are batched by token length so short messages do not wait for long ones, and each
    batch generates at most 1.5x its longest text (capped by ``max_new_tokens``): a paraphrase
    is about as long as its source, and CPU generation costs time per token. An output cut off
    by that budget in its first paragraph is rejected: the model was answering or rambling.

    Args:
        texts: the messages to rewrite (repeat a text to get several sampled variants).
        model: zoo name, local folder or .gguf file, resolved like every lmforge model.
        batch_size: prompts generated together.
        max_new_tokens: hard cap of generated tokens per text.
        temperature: sampling temperature with top-p 0.9; 0 means greedy decoding.
        seed: seeds sampling (the global torch generator is restored afterwards).
        base_dir: folder a relative ``model`` path is resolved against.
        on_progress: called after each batch with the number of texts done so far.

    Returns:
        A list aligned with ``texts``; rejected outputs (see ``clean_paraphrase``) are ``None``.
    """
    import torch

    from lmforge.models.load import load_causal_lm
    from lmforge.models.resolve import resolve_model

    results: list[str | None] = [None] * len(texts)
    todo = [i for i, text in enumerate(texts) if text.strip()]
    if not todo:
        return results
    tokenizer, lm = load_causal_lm(resolve_model(model, base_dir))
    lengths = {i: len(tokenizer(texts[i], add_special_tokens=False)["input_ids"]) for i in todo}
    todo.sort(key=lengths.__getitem__)
    done = len(texts) - len(todo)  # empty texts need no generation
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            budget = min(max_new_tokens, max(8, math.ceil(1.5 * max(lengths[i] for i in batch))))
            outputs = _generate(tokenizer, lm, [texts[i] for i in batch], budget, temperature)
            for i, (output, finished) in zip(batch, outputs, strict=True):
                # Cut off mid-paragraph by the budget: the model kept talking (an answer, a ramble).
                complete = finished or "\n\n" in output.strip()
                results[i] = clean_paraphrase(output, texts[i]) if complete else None
            done += len(batch)
            if on_progress is not None:
                on_progress(done)
    return results


def clean_paraphrase(output: str, source: str) -> str | None:
    """The usable paraphrase in a raw model output, or ``None`` when there is none.

    Small models wrap the answer ("Paraphrase: ...", quotes) and often keep talking after a
    blank line; those parts are cut. Rejected: empty outputs, outputs equal to the source
    after normalisation, outputs over 3x the source's length (the model answered or rambled),
    and outputs that lost or invented a ``<...>`` placeholder (PII would leak or be faked).
    """
    text = output.strip().split("\n\n", 1)[0].strip()
    text = _PREFIX_RE.sub("", text, count=1).strip()
    if text and text[0] in _QUOTES:
        text = text[1:]
        if text and text[-1] in _QUOTES:
            text = text[:-1]
        elif len(text) > 1 and text[-2] in _QUOTES and text[-1] in ".!?":  # "...".
            text = text[:-2] + text[-1]
    text = " ".join(text.split())
    if not text or normalise(text) == normalise(source) or len(text) > 3 * len(source.strip()):
        return None
    if Counter(PLACEHOLDER_RE.findall(text)) != Counter(PLACEHOLDER_RE.findall(source)):
        return None
    return text


def _generate(
    tokenizer: Any, lm: Any, texts: list[str], max_new_tokens: int, temperature: float
) -> list[tuple[str, bool]]:
    """Raw completions of the paraphrase prompt for one batch, each with whether it ended by itself.

    The loader pads on the left, so every prompt continues from its last real token.
    """
    import torch

    prompts = [_prompt(tokenizer, text) for text in texts]
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(lm.device)
    sampling: dict[str, Any] = {"do_sample": False}
    if temperature > 0:
        sampling = {"do_sample": True, "temperature": temperature, "top_p": 0.9}
    with torch.inference_mode():
        out = lm.generate(
            **batch, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id, **sampling
        )
    new_tokens = out[:, batch["input_ids"].shape[1] :].cpu()
    stops = lm.generation_config.eos_token_id
    if stops is None:
        stops = tokenizer.eos_token_id
    stop_ids = torch.tensor(stops if isinstance(stops, list) else [stops])
    finished = torch.isin(new_tokens, stop_ids).any(dim=1).tolist()
    return list(zip(tokenizer.batch_decode(new_tokens, skip_special_tokens=True), finished, strict=True))


def _prompt(tokenizer: Any, text: str) -> str:
    """The chat prompt with the worked examples; a plain-text prompt for models without a template."""
    if getattr(tokenizer, "chat_template", None) is None:
        shots = "".join(f"Message: {a}\nParaphrase: {b}\n\n" for a, b in FEW_SHOT)
        return f"{INSTRUCTION}\n\n{shots}Message: {text}\nParaphrase:"
    messages = [{"role": "system", "content": "You rewrite messages in other words."}]
    for message, rewrite in FEW_SHOT:
        messages += [
            {"role": "user", "content": f"{INSTRUCTION}\n\n{message}"},
            {"role": "assistant", "content": rewrite},
        ]
    messages.append({"role": "user", "content": f"{INSTRUCTION}\n\n{text}"})
    return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
