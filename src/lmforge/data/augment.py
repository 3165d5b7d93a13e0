"""Class balance and offline augmentation of the training split.

Three switchable methods, applied to the train split only (evaluation data must stay real):

* ``oversample``: duplicate random rows of small classes up to a fraction of the largest class.
* ``token_edits``: EDA-style swap / delete / insert of words (no WordNet: it is not available
  offline), keeping ``<EMAIL>``-style placeholders whole.
* ``paraphrase``: a small instruction-tuned causal LM (smollm2-135m) rewrites messages.

Every added row says where it came from (``origin``, ``source_row``, ``augment_model``), so the
report can count augmented rows and a bad variant can be traced to the row it was made from.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from itertools import zip_longest
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ORIGINS = ("original", "oversample", "token-edit", "paraphrase")
INSTRUCTION = "Paraphrase the following customer message. Keep its meaning. Reply with the paraphrase only."
# Two worked examples: without them smollm2-135m mostly *answers* the message instead of
# rewriting it (measured on banking-style messages). The second one shows a placeholder kept.
FEW_SHOT = (
    ("The app crashes every time I open it.", "Each time I launch the app, it crashes."),
    ("Please send the invoice to <EMAIL> again.", "Could you resend the invoice to <EMAIL>?"),
)
_WORD_RE = re.compile(r"\S*<[^<>\s]+>\S*|\S+")  # a placeholder glued to punctuation stays one word
_PLACEHOLDER_RE = re.compile(r"<[^<>\s]+>")
_PREFIX_RE = re.compile(
    r"^\s*(?:here(?: is|'s)\s+)?(?:the\s+|a\s+|my\s+)?(?:customer\s+)?"
    r"(?:paraphrased?(?:\s+message)?|rephrased(?:\s+message)?|rewritten(?:\s+message)?|message)"
    r"(?:\s+is)?\s*:\s*",
    re.IGNORECASE,
)
_QUOTES = "\"'`\u201c\u201d\u2018\u2019\u00ab\u00bb"  # straight, curly and guillemet quotes


def oversample(frame: pd.DataFrame, *, target: float = 1.0, seed: int = 0) -> pd.DataFrame:
    """Duplicate random rows of each class until it has ``ceil(target * largest class)`` rows.

    Whole copies of a class are taken before a random remainder, so duplicates are spread
    evenly instead of piling up on the rows a with-replacement draw happens to hit.

    Args:
        frame: rows with ``label`` (and ``source_row``, ``text``; other columns are kept).
        target: fraction of the largest class count each class is raised to (1.0 = balanced).
        seed: seeds which rows are duplicated.

    Returns:
        All original rows first, then the duplicates (``origin="oversample"``).
    """
    base = _with_provenance(frame)
    missing = _missing_per_class(base, target)
    extra = _oversample_rows(base, missing, np.random.default_rng(seed))
    return pd.concat([base, extra], ignore_index=True)


def token_edits(text: str, *, rng: random.Random, n: int = 1, p_delete: float = 0.1) -> list[str]:
    """Up to ``n`` distinct variants of ``text``, each made by one random swap, deletion or insertion.

    A text of fewer than two words gives no variants: any edit of it is either a no-op or
    turns the word into a repetition that adds nothing to learn from.

    Args:
        text: the text to vary; ``<...>`` placeholders are never split or deleted.
        rng: the caller's random generator, so a whole augmentation run replays from one seed.
        n: how many variants are wanted.
        p_delete: per-word deletion probability of the delete operation (one word at least).

    Returns:
        Variants that all differ from ``text`` (fewer than ``n`` when it has few distinct edits).
    """
    words = _WORD_RE.findall(text)
    if len(words) < 2:
        return []
    variants: list[str] = []
    for _ in range(8 * n):  # bounded: a text like "a a" has few distinct edits
        if len(variants) == n:
            break
        operation = rng.choice((_swap, _delete, _insert))
        variant = " ".join(operation(list(words), rng, p_delete))
        if variant and variant != " ".join(words) and variant not in variants:
            variants.append(variant)
    return variants


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
    if not text or _normalise(text) == _normalise(source) or len(text) > 3 * len(source.strip()):
        return None
    if Counter(_PLACEHOLDER_RE.findall(text)) != Counter(_PLACEHOLDER_RE.findall(source)):
        return None
    return text


def augment_train(
    frame: pd.DataFrame,
    *,
    oversample_target: float | None = None,
    token_edits_per_row: int = 0,
    paraphrases_per_row: int = 0,
    max_paraphrases: int = 200,
    model: str = "smollm2-135m",
    seed: int = 0,
    base_dir: Path | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Add paraphrases, token edits and duplicates to a train split; every method is optional.

    With ``oversample_target`` set, only classes below the target get new rows, and only as many
    as they miss: paraphrases first, then token edits (they add variety), then duplicates fill
    what is still missing. Without it, every row gets ``token_edits_per_row`` edits and
    ``paraphrases_per_row`` paraphrases. Generated texts equal to an existing text are dropped.

    Args:
        frame: the train split with ``source_row``, ``text``, ``label`` (other columns are kept).
        oversample_target: balance classes to this fraction of the largest class; None = off.
        token_edits_per_row: edit variants per original row (0 = off).
        paraphrases_per_row: paraphrases per original row (0 = off).
        max_paraphrases: cap on paraphrase *attempts* (generation is slow on CPU).
        model: the paraphrasing causal LM.
        seed: seeds every random choice, so a run replays exactly.
        base_dir: folder a relative ``model`` path is resolved against.
        on_progress: ``(method, done, total)`` as methods progress.

    Returns:
        The frame with added rows after the originals, and the count of added rows per origin.
    """
    base = _with_provenance(frame)
    originals = base[base["origin"] == "original"].reset_index(drop=True)
    rng = random.Random(seed)
    need = None if oversample_target is None else _missing_per_class(base, oversample_target)
    seen = {_normalise(text) for text in base["text"]}  # generated copies of existing texts add nothing
    report = on_progress or (lambda method, done, total: None)
    added: list[pd.DataFrame] = []
    if paraphrases_per_row > 0:
        plan = _plan(originals, paraphrases_per_row, need, max_paraphrases, rng)
        outputs = paraphrase(
            [str(originals["text"].iat[p]) for p in plan],
            model=model,
            seed=seed,
            base_dir=base_dir,
            on_progress=lambda done: report("paraphrase", done, len(plan)),
        )
        added.append(_new_rows(originals, plan, outputs, "paraphrase", model, seen))
        need = _subtract(need, added[-1])
    if token_edits_per_row > 0:
        plan = _plan(originals, token_edits_per_row, need, None, rng)
        sources, variants = [], []
        for position, wanted in Counter(plan).items():
            for variant in token_edits(str(originals["text"].iat[position]), rng=rng, n=wanted):
                sources.append(position)
                variants.append(variant)
        added.append(_new_rows(originals, sources, variants, "token-edit", None, seen))
        need = _subtract(need, added[-1])
        report("token-edit", len(plan), len(plan))
    if need is not None:
        added.append(_oversample_rows(originals, need, np.random.default_rng(seed)))
        report("oversample", len(added[-1]), len(added[-1]))
    counts = {origin: sum(int((rows["origin"] == origin).sum()) for rows in added) for origin in ORIGINS[1:]}
    return pd.concat([base, *added], ignore_index=True), counts


def _with_provenance(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy with ``origin`` / ``augment_model`` (and ``source_row`` from the position if absent)."""
    base = frame.reset_index(drop=True).copy()
    if "source_row" not in base:
        base["source_row"] = range(len(base))
    base["origin"] = base["origin"].fillna("original") if "origin" in base else "original"
    if "augment_model" not in base:
        base["augment_model"] = None
    return base


def _missing_per_class(frame: pd.DataFrame, target: float) -> dict[Any, int]:
    """Rows each class lacks to reach ``ceil(target * largest class count)``."""
    if not 0 < target <= 1:
        raise ValueError(f"oversample target must be in (0, 1], got {target}")
    counts = frame["label"].value_counts()
    wanted = math.ceil(target * int(counts.max())) if len(counts) else 0
    return {label: max(0, wanted - int(n)) for label, n in counts.items()}


def _oversample_rows(frame: pd.DataFrame, missing: dict[Any, int], gen: np.random.Generator) -> pd.DataFrame:
    """Duplicates of ``frame``'s rows: for each class, whole copies, then a random remainder."""
    picks: list[int] = []
    for label, n in missing.items():
        positions = np.flatnonzero((frame["label"] == label).to_numpy())
        if n <= 0 or len(positions) == 0:
            continue
        copies, remainder = divmod(n, len(positions))
        picks.extend(np.tile(positions, copies).tolist())
        picks.extend(gen.choice(positions, size=remainder, replace=False).tolist())
    rows = frame.iloc[picks].copy()
    rows["origin"] = "oversample"
    rows["augment_model"] = None
    return rows


def _plan(
    frame: pd.DataFrame, per_row: int, need: dict[Any, int] | None, cap: int | None, rng: random.Random
) -> list[int]:
    """Positions of the rows to derive new rows from, one entry per wanted new row.

    Rows of a class are taken in a shuffled order, cycled ``per_row`` times; classes are
    interleaved so a ``cap`` shares its budget fairly instead of going to the first class.
    """
    per_class: list[list[int]] = []
    for label, positions in frame.groupby("label", sort=True).indices.items():
        order = list(positions)
        rng.shuffle(order)
        wanted = per_row * len(order) if need is None else min(need.get(label, 0), per_row * len(order))
        per_class.append([order[i % len(order)] for i in range(wanted)])
    plan = [int(p) for group in zip_longest(*per_class) for p in group if p is not None]
    return plan if cap is None else plan[:cap]


def _new_rows(
    frame: pd.DataFrame,
    positions: Sequence[int],
    texts: Sequence[str | None],
    origin: str,
    model: str | None,
    seen: set[str],
) -> pd.DataFrame:
    """Copies of the source rows with the new texts; rejected and already-seen texts are dropped."""
    keep_positions, keep_texts = [], []
    for position, text in zip(positions, texts, strict=True):
        key = _normalise(text) if text else ""
        if key and key not in seen:
            seen.add(key)
            keep_positions.append(position)
            keep_texts.append(text)
    rows = frame.iloc[keep_positions].copy()
    rows["text"] = keep_texts
    rows["origin"] = origin
    rows["augment_model"] = model
    return rows


def _subtract(need: dict[Any, int] | None, rows: pd.DataFrame) -> dict[Any, int] | None:
    """What each class still misses after ``rows`` were added (None stays None: balancing off)."""
    if need is None:
        return None
    got = rows["label"].value_counts()
    return {label: max(0, n - int(got.get(label, 0))) for label, n in need.items()}


def _normalise(text: str) -> str:
    """Case- and punctuation-blind form, so "Hi!" and "hi" count as the same text."""
    return " ".join(re.findall(r"<[^<>\s]+>|\w+", text.casefold()))


def _swap(words: list[str], rng: random.Random, _p: float) -> list[str]:
    i, j = rng.sample(range(len(words)), 2)
    words[i], words[j] = words[j], words[i]
    return words


def _delete(words: list[str], rng: random.Random, p: float) -> list[str]:
    """Drop each ordinary word with probability ``p``; at least one goes and at least one stays."""
    deletable = [i for i, word in enumerate(words) if not _PLACEHOLDER_RE.search(word)]
    if not deletable or len(words) < 2:
        return words
    gone = {i for i in deletable if rng.random() < p} or {rng.choice(deletable)}
    if len(gone) == len(words):
        gone.discard(rng.choice(sorted(gone)))
    return [word for i, word in enumerate(words) if i not in gone]


def _insert(words: list[str], rng: random.Random, _p: float) -> list[str]:
    """Insert a copy of one of the text's own words elsewhere (never a placeholder: that fakes PII).

    Not right beside the word itself: "card card" is a typo pattern, not a new phrasing.
    """
    pool = [i for i, word in enumerate(words) if not _PLACEHOLDER_RE.search(word)]
    if not pool:
        return words
    source = rng.choice(pool)
    where = rng.choice([k for k in range(len(words) + 1) if k not in (source, source + 1)])
    words.insert(where, words[source])
    return words


def _generate(
    tokenizer: Any, lm: Any, texts: list[str], max_new_tokens: int, temperature: float
) -> list[tuple[str, bool]]:
    """Raw completions of the paraphrase prompt for one batch, each with whether it ended by itself.

    The loader pads on the left, so every prompt continues from its last real token.
    """
    import torch

    prompts = [_prompt(tokenizer, text) for text in texts]
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    sampling: dict[str, Any] = {"do_sample": False}
    if temperature > 0:
        sampling = {"do_sample": True, "temperature": temperature, "top_p": 0.9}
    with torch.inference_mode():
        out = lm.generate(
            **batch, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id, **sampling
        )
    new_tokens = out[:, batch["input_ids"].shape[1] :]
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
