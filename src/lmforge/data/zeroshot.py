"""Zero-shot labelling by a causal LM: score each label name as the answer to a prompt.

The prompt lists the label names (and optionally a few labelled examples); each name's score
is the summed log-likelihood of its answer tokens, so the result is a distribution over the
names. Split from `autolabel` so each module reads in one sitting.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# Zero-shot reads only the start of long texts: one 10,000-character row would cost as much
# as a hundred short ones, and a small model decides from the opening sentences anyway.
MAX_TEXT_CHARS = 1000
INSTRUCTION = "Classify the text into exactly one of these labels: {labels}.\nAnswer with the label only."


class ZeroShotScorer:
    """Scores every label name as the model's answer to "which label fits this text?".

    A label's score is the *summed* log-likelihood of its answer tokens, end-of-turn token
    included: that is log P(answer | prompt), a proper distribution over the candidate
    strings. Since the prompt lists the names, the tokens after a name's first are near-certain,
    so the sum does not penalise long names; a per-token mean would instead reward a name whose
    unlikely first token is followed by easy ones. The end-of-turn token separates a name from
    a longer one it prefixes ("sport" vs "sports").
    """

    def __init__(
        self, tokenizer: Any, model: Any, label_names: Sequence[str], examples: Sequence[tuple[str, str]] = ()
    ) -> None:
        self.tokenizer = tokenizer
        self.model = model
        self.names = list(label_names)
        self.examples = list(examples)
        self.chat = bool(getattr(tokenizer, "chat_template", None))
        self.answers = [self._answer_ids(name) for name in self.names]

    @classmethod
    def load(
        cls,
        reference: str,
        label_names: Sequence[str],
        *,
        examples: Sequence[tuple[str, str]] = (),
        base_dir: Path | None = None,
    ) -> ZeroShotScorer:
        """Load the causal LM `reference` (zoo name, folder or .gguf) and build a scorer."""
        from lmforge.models.load import load_causal_lm
        from lmforge.models.resolve import resolve_model

        tokenizer, model = load_causal_lm(resolve_model(reference, base_dir))
        return cls(tokenizer, model, label_names, examples)

    def prompt_ids(self, text: str) -> list[int]:
        """Token ids of the prompt for `text`, ending where the answer starts."""
        intro = INSTRUCTION.format(labels=", ".join(self.names))
        turns: list[tuple[str, str | None]] = [*self.examples, (text[:MAX_TEXT_CHARS], None)]
        if not self.chat:
            blocks = [f"Text: {t}\nLabel:" + (f" {label}" if label else "") for t, label in turns]
            # split_special_tokens: "</s>" typed in a text is text, not the end of the sequence.
            prompt = intro + "\n\n" + "\n\n".join(blocks)
            return list(self.tokenizer(prompt, split_special_tokens=True)["input_ids"])
        messages = []
        for i, (turn_text, label) in enumerate(turns):
            content = f"Text: {turn_text}" if i else f"{intro}\n\nText: {turn_text}"
            messages.append({"role": "user", "content": content})
            if label is not None:
                messages.append({"role": "assistant", "content": label})
        return self._chat_ids(messages, add_generation_prompt=True)

    def log_likelihoods(self, texts: Sequence[str], *, max_rows: int = 16) -> np.ndarray:
        """log P(label | prompt) for every text and label: texts x labels.

        The prompts are read once and their key/value cache is shared by all labels, so the
        cost is one prompt plus a few answer tokens per label instead of one prompt per label
        (6 labels: ~5x fewer tokens through the model, same scores to 1e-5). The answers run
        in passes of at most `max_rows` (text, label) rows, each with its own copy of the cache,
        which bounds memory when there are many labels (77 labels x 700 prompt tokens would
        otherwise copy ~2.5 GB of cache for smollm2).
        """
        import torch

        ids, mask = _left_pad([self.prompt_ids(text) for text in texts], self._pad_id())
        # Positions count real tokens only, so a padded row scores exactly as it would alone.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        per_pass = max(1, max_rows // len(texts))
        chunks = [
            list(range(i, min(i + per_pass, len(self.answers))))
            for i in range(0, len(self.answers), per_pass)
        ]
        with torch.inference_mode():
            prompt = self.model(
                input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1
            )
            # The first answer token is predicted by the prompt's last position.
            first = prompt.logits[:, -1].float().log_softmax(-1)
            heads = torch.tensor([answer[0] for answer in self.answers])
            scores = first[:, heads]
            for labels in chunks:
                cache = prompt.past_key_values if len(chunks) == 1 else copy.deepcopy(prompt.past_key_values)
                scores[:, labels] += self._answer_tails(cache, mask, labels)
        return scores.numpy().astype(np.float64)

    def _answer_tails(self, cache: Any, mask: Any, labels: list[int]) -> Any:
        """Summed log-probabilities of the answers' tokens after the first (texts x labels),
        continuing from the prompts' cache; answers are right-padded so pads come last."""
        import torch

        rest = [self.answers[i][1:] for i in labels]
        width = max(len(r) for r in rest)
        rows = mask.shape[0] * len(labels)
        if width == 0:
            return torch.zeros((mask.shape[0], len(labels)))
        cache.batch_repeat_interleave(len(labels))
        inputs = torch.full((rows, width), self._pad_id(), dtype=torch.long)
        targets = torch.zeros_like(inputs)
        tail_mask = torch.zeros_like(inputs)
        for row in range(rows):
            answer = self.answers[labels[row % len(labels)]]
            inputs[row, : len(answer) - 1] = torch.tensor(answer[:-1], dtype=torch.long)
            targets[row, : len(answer) - 1] = torch.tensor(answer[1:], dtype=torch.long)
            tail_mask[row, : len(answer) - 1] = 1
        lengths = mask.sum(-1).repeat_interleave(len(labels))
        out = self.model(
            input_ids=inputs,
            attention_mask=torch.cat([mask.repeat_interleave(len(labels), 0), tail_mask], dim=1),
            position_ids=lengths[:, None] + torch.arange(width)[None, :],
            past_key_values=cache,
        )
        token_lp = out.logits.float().log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        return (token_lp * tail_mask).sum(-1).view(mask.shape[0], len(labels))

    def probabilities(
        self, texts: Sequence[str], *, batch_size: int = 16, on_progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Softmax over the label scores, texts x labels.

        `batch_size // len(labels)` texts (at least one) share a forward pass; with more labels
        than `batch_size`, one text's labels are split over several answer passes.
        """
        per_pass = max(1, batch_size // len(self.names))
        scores = np.zeros((len(texts), len(self.names)), dtype=np.float64)
        for start in range(0, len(texts), per_pass):
            chunk = texts[start : start + per_pass]
            scores[start : start + len(chunk)] = self.log_likelihoods(chunk, max_rows=batch_size)
            if on_progress is not None:
                on_progress(len(chunk))
        scores -= scores.max(axis=1, keepdims=True)
        exp = np.exp(scores)
        return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)

    def _pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(pad) if pad is not None else 0

    def _answer_ids(self, name: str) -> list[int]:
        """The tokens the model would write to answer `name`, taken from the chat template itself
        (name + end-of-turn), so they match what the model was trained to produce."""
        if not self.chat:
            return list(self.tokenizer(f" {name}\n", add_special_tokens=False)["input_ids"])
        question = [{"role": "user", "content": "x"}]
        prompt = self._chat_ids(question, add_generation_prompt=True)
        answered = [*question, {"role": "assistant", "content": name}]
        full = self._chat_ids(answered, add_generation_prompt=False)
        if full[: len(prompt)] == prompt and len(full) > len(prompt):
            return full[len(prompt) :]
        return list(self.tokenizer(name, add_special_tokens=False)["input_ids"])  # odd template

    def _chat_ids(self, messages: list[dict[str, str]], *, add_generation_prompt: bool) -> list[int]:
        """The chat template's token ids. Control tokens typed in a text ("<|im_end|>") are
        encoded as plain text so a text cannot end its turn early; a tokenizer that cannot
        spell them as plain text gets the text unchanged (rare, and only costs that row)."""
        options = {"add_generation_prompt": add_generation_prompt, "tokenize": True, "return_dict": False}
        try:
            ids = self.tokenizer.apply_chat_template(messages, sanitize_control_tokens=True, **options)
        except ValueError:
            ids = self.tokenizer.apply_chat_template(messages, **options)
        return list(ids)


def _left_pad(rows: list[list[int]], pad: int) -> tuple[Any, Any]:
    """Token id rows as one left-padded tensor (every prompt ends at the last column) + mask."""
    import torch

    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row) :] = 1
    return ids, mask
