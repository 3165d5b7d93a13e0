"""Generation and language modelling: conversations, prompts, loss masking, packing.

A generation example is a conversation: a list of `{"role", "content"}` messages whose
last message is the assistant's answer (the target). The prompt is everything before
it, rendered with the tokenizer's chat template (or a plain template when it has none);
the loss is computed on the answer's tokens only. Earlier assistant turns of a
multi-turn conversation are context, not targets.

A language-modelling example is raw text; every token is a target.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas is only a type here
    import pandas as pd

IGNORE = -100  # label id the loss skips (PyTorch's cross-entropy ignore_index)

PLAIN_ROLES = {"system": "### System:", "user": "### Instruction:", "assistant": "### Response:"}


def conversation(
    instruction: str, input_text: str | None = None, output: str | None = None, system: str | None = None
) -> list[dict[str, str]]:
    """Messages for an instruction (+ optional input) and its output (Alpaca-style rows)."""
    user = instruction.strip()
    if input_text is not None and str(input_text).strip():
        user = f"{user}\n\n{str(input_text).strip()}"
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": user})
    if output is not None:
        messages.append({"role": "assistant", "content": output})
    return messages


def parse_messages(value: Any) -> list[dict[str, str]]:
    """A chat `messages` cell (a list, or its JSON text) as a checked list of messages.

    Raises ValueError with a readable reason; the caller adds the file and row.
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"messages is not valid JSON ({exc.msg})") from None
    if hasattr(value, "tolist"):  # a numpy array from Parquet
        value = value.tolist()
    if not isinstance(value, list) or not value:
        raise ValueError("messages must be a non-empty list of {role, content} objects")
    messages = []
    for index, message in enumerate(value):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise ValueError(f"message {index + 1} must have `role` and `content`")
        role, content = str(message["role"]), message["content"]
        if role not in PLAIN_ROLES:
            raise ValueError(f"message {index + 1}: role '{role}' is not system, user or assistant")
        messages.append({"role": role, "content": "" if content is None else str(content)})
    if messages[-1]["role"] != "assistant":
        raise ValueError("the last message must be the assistant's answer (the training target)")
    if not any(m["role"] == "user" for m in messages):
        raise ValueError("messages has no user message")
    return messages


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_prompt(tokenizer: Any, messages: Sequence[dict[str, str]]) -> str:
    """The text the model continues: every message, then the assistant's turn opening."""
    if has_chat_template(tokenizer):
        return str(tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True))
    parts = [f"{PLAIN_ROLES[m['role']]}\n{m['content']}\n\n" for m in messages]
    return "".join(parts) + PLAIN_ROLES["assistant"] + "\n"


def render_completion(tokenizer: Any, messages: Sequence[dict[str, str]]) -> str:
    """The target text after the prompt: the answer and the template's end of turn."""
    prompt = render_prompt(tokenizer, messages[:-1])
    if has_chat_template(tokenizer):
        full = str(tokenizer.apply_chat_template(list(messages), tokenize=False))
        if full.startswith(prompt):
            return full[len(prompt) :]
        # Templates that rewrite earlier turns (rare): fall back to answer + end of sequence.
    return messages[-1]["content"] + (tokenizer.eos_token or "")


@dataclass
class Encoded:
    """Tokenised examples ready for the Trainer, and what truncation did to them."""

    input_ids: list[list[int]]
    labels: list[list[int]]
    truncated: int = 0  # examples cut to max_length
    dropped: list[int] = field(default_factory=list)  # indices of examples left out

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return {"input_ids": self.input_ids[index], "labels": self.labels[index]}

    @property
    def target_tokens(self) -> int:
        return sum(sum(1 for t in labels if t != IGNORE) for labels in self.labels)


def _bos(tokenizer: Any, text: str) -> list[int]:
    # Plain templates start a sequence with BOS (as pretraining did); chat templates
    # write their own start tokens.
    bos = tokenizer.bos_token_id
    starts = tokenizer.bos_token and text.startswith(tokenizer.bos_token)
    return [bos] if bos is not None and not starts else []


def prompt_ids(tokenizer: Any, prompt_text: str) -> list[int]:
    """Token ids of a rendered prompt, the same for training and for generation."""
    ids = list(tokenizer(prompt_text, add_special_tokens=False)["input_ids"])
    return ids if has_chat_template(tokenizer) else _bos(tokenizer, prompt_text) + ids


def encode_conversations(
    tokenizer: Any,
    conversations: Sequence[Sequence[dict[str, str]]],
    max_length: int,
    *,
    drop_long: bool = False,
) -> Encoded:
    """Prompt + completion token ids; labels are IGNORE on the prompt's tokens.

    The prompt and the completion are tokenised separately and concatenated, so the
    boundary between masked and trained tokens is exact. A sequence longer than
    `max_length` is cut at the right (counted in `truncated`), or left out with
    `drop_long`; one whose cut leaves no target token is always left out.
    """
    out = Encoded([], [])
    for index, messages in enumerate(conversations):
        prompt = prompt_ids(tokenizer, render_prompt(tokenizer, messages[:-1]))
        completion = tokenizer(render_completion(tokenizer, messages), add_special_tokens=False)["input_ids"]
        ids, labels = prompt + completion, [IGNORE] * len(prompt) + completion
        if len(ids) > max_length:
            if drop_long or len(prompt) >= max_length:
                out.dropped.append(index)
                continue
            ids, labels = ids[:max_length], labels[:max_length]
            out.truncated += 1
        out.input_ids.append(ids)
        out.labels.append(labels)
    return out


def encode_texts(
    tokenizer: Any, texts: Sequence[str], max_length: int, *, drop_long: bool = False
) -> Encoded:
    """Raw text for language modelling: every token is a target; each text ends with EOS
    so packed texts stay apart."""
    out = Encoded([], [])
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    for index, text in enumerate(texts):
        ids = _bos(tokenizer, text) + tokenizer(text, add_special_tokens=False)["input_ids"] + eos
        if len(ids) > max_length:
            if drop_long:
                out.dropped.append(index)
                continue
            out.truncated += 1
            ids = ids[:max_length]
        out.input_ids.append(ids)
        out.labels.append(list(ids))
    return out


def encode_texts_packed(tokenizer: Any, texts: Sequence[str], max_length: int) -> Encoded:
    """Language modelling without truncation: all texts concatenated (EOS between them)
    and cut into `max_length` blocks, so no token is lost."""
    stream: list[int] = []
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    for text in texts:
        stream += _bos(tokenizer, text) + tokenizer(text, add_special_tokens=False)["input_ids"] + eos
    blocks = [stream[i : i + max_length] for i in range(0, len(stream), max_length)]
    blocks = [b for b in blocks if len(b) > 1]
    return Encoded(blocks, [list(b) for b in blocks])


def pack(encoded: Encoded, max_length: int) -> Encoded:
    """Concatenate examples (labels kept, so prompts stay masked) into full blocks of
    `max_length` tokens: fewer pad tokens, fewer steps. Attention spans the joined
    examples, the usual trade-off of simple packing."""
    ids: list[int] = []
    labels: list[int] = []
    for one_ids, one_labels in zip(encoded.input_ids, encoded.labels, strict=True):
        ids += one_ids
        labels += one_labels
    out = Encoded([], [], truncated=encoded.truncated, dropped=list(encoded.dropped))
    for start in range(0, len(ids), max_length):
        block_labels = labels[start : start + max_length]
        if any(t != IGNORE for t in block_labels[1:]):  # a block with nothing to learn is skipped
            out.input_ids.append(ids[start : start + max_length])
            out.labels.append(block_labels)
    return out


class CausalCollator:
    """Pads a batch on the right: pad id for inputs, IGNORE for labels, 0 for attention."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None) -> None:
        self.pad_token_id = pad_token_id
        self.multiple = pad_to_multiple_of

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        length = max(len(f["input_ids"]) for f in features)
        if self.multiple:
            length = -(-length // self.multiple) * self.multiple
        ids = torch.full((len(features), length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), length), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(features), length), dtype=torch.long)
        for row, feature in enumerate(features):
            n = len(feature["input_ids"])
            ids[row, :n] = torch.tensor(feature["input_ids"])
            labels[row, :n] = torch.tensor(feature["labels"])
            mask[row, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def encode_split(tokenizer: Any, table: pd.DataFrame, cfg: Any, lm: bool) -> Encoded:
    """Token ids and masked labels of a split (`messages` or `text` rows) for the `train`
    settings `cfg`: truncated or dropped by `long_examples`, packed when `packing`."""
    drop = cfg.long_examples == "drop"
    if lm:
        texts = table["text"].tolist()
        if cfg.packing:
            return encode_texts_packed(tokenizer, texts, cfg.max_length)
        return encode_texts(tokenizer, texts, cfg.max_length, drop_long=drop)
    conversations = [json.loads(m) for m in table["messages"]]
    encoded = encode_conversations(tokenizer, conversations, cfg.max_length, drop_long=drop)
    return pack(encoded, cfg.max_length) if cfg.packing else encoded
