"""Shared test assets: a tiny random-initialised BERT built from a config, tiny datasets."""

from __future__ import annotations

import csv
import random
from pathlib import Path
from typing import Any

import pytest

TOPICS = {
    "billing": ["invoice", "charge", "refund", "payment", "price", "bill"],
    "shipping": ["parcel", "delivery", "courier", "tracking", "package", "arrive"],
    "login": ["password", "login", "account", "locked", "reset", "username"],
    "bug": ["crash", "error", "freeze", "broken", "glitch", "update"],
}
FILLER = ["please", "help", "my", "the", "is", "not", "with", "today", "again", "why", "i", "need"]


def make_rows(per_class: int = 30, seed: int = 0) -> list[tuple[str, str]]:
    """Short texts whose label is given by topic words (easy for a tiny model)."""
    rng = random.Random(seed)
    rows = []
    for label, words in TOPICS.items():
        for _ in range(per_class):
            picked = rng.sample(words, 2) + rng.sample(FILLER, 3)
            rng.shuffle(picked)
            rows.append((" ".join(picked), label))
    rng.shuffle(rows)
    return rows


def write_csv(path: Path, rows: list[tuple[Any, ...]], header: tuple[str, ...] = ("text", "label")) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def build_tiny_bert(folder: Path, *, hidden: int = 32, seed: int = 0) -> Path:
    """A 2-layer BERT `hidden` wide with a word-level vocabulary, saved like a hub model."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    words = sorted({w for ws in TOPICS.values() for w in ws} | set(FILLER))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *"abcdefghijklmnopqrstuvwxyz"]
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
    )
    torch.manual_seed(seed)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


OPPOSITES = {
    "hot": "cold",
    "big": "small",
    "fast": "slow",
    "up": "down",
    "light": "dark",
    "happy": "sad",
    "open": "closed",
    "early": "late",
    "full": "empty",
    "hard": "soft",
    "old": "new",
    "rich": "poor",
}
ASKS = ("opposite of {}", "what is the opposite of {}", "give the opposite of {}", "the opposite of {} is")
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def make_instructions(seed: int = 0) -> list[dict[str, str]]:
    """Instruction rows of a learnable task: the opposite of a word, asked four ways."""
    rows = [
        {"instruction": ask.format(word), "input": "", "output": opposite}
        for word, opposite in OPPOSITES.items()
        for ask in ASKS
    ]
    random.Random(seed).shuffle(rows)
    return rows


def messages_frame(rows: list[dict[str, str]]) -> Any:
    """Instruction rows as the causal stages' tables hold them: one JSON `messages` column."""
    import json

    import pandas as pd

    return pd.DataFrame(
        {
            "messages": [
                json.dumps(
                    [
                        {"role": "user", "content": r["instruction"]},
                        {"role": "assistant", "content": r["output"]},
                    ]
                )
                for r in rows
            ]
        }
    )


def build_tiny_llama(folder: Path, *, chat: bool = True, hidden: int = 32, seed: int = 0) -> Path:
    """A 2-layer Llama `hidden` wide with a word-level tokenizer (ChatML template when
    `chat`), saved like a hub model: fast stand-in for a causal LM in unit tests."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    special = ["<unk>", "<s>", "<|im_end|>", "<|im_start|>", "<pad>"]
    words = sorted({w for pair in OPPOSITES.items() for w in pair} | {w for a in ASKS for w in a.split()})
    words += ["system", "user", "assistant", "###", "Instruction:", "Response:", "System:"]
    vocab = {w: i for i, w in enumerate([*special, *[w for w in words if w != "{}"]])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="<unk>", bos_token="<s>", eos_token="<|im_end|>", pad_token="<pad>"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
    if chat:
        tokenizer.chat_template = CHATML
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=4,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BERT with a word-level vocabulary, saved like a hub model."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture
def data_csv(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "data.csv", make_rows())


def fast_config(folder: Path, data: Path, model: Path) -> dict[str, Any]:
    """A fast config: tiny model, a few epochs, runs and tracking inside `folder`."""
    return {
        "project": "test-project",
        "task": "classification",
        "data": {"train": str(data), "text_column": "text", "label_column": "label"},
        "split": {"validation": 0.2, "test": 0.2, "seed": 1},
        "model": str(model),
        "train": {
            # Mean pooling: the random-init tiny BERT learns these topics from every seed with
            # it, and only from some seeds through the untrained [CLS] pooler.
            "pooling": "mean",
            "epochs": 8,
            "batch_size": 8,
            "learning_rate": 5e-3,
            "max_length": 16,
            "logging_steps": 2,
            "early_stopping_patience": None,
        },
        # Auto-labelling embeds with the tiny model too: unit tests never load a real one.
        "label": {"embedding_model": str(model), "reviewed": str(folder / "reviewed_labels.csv")},
        "tracking": {"uri": f"sqlite:///{folder}/mlruns.db", "tensorboard": False},
        "output_dir": str(folder / "runs"),
    }


@pytest.fixture
def config_dict(tmp_path: Path, data_csv: Path, tiny_model: Path) -> dict[str, Any]:
    return fast_config(tmp_path, data_csv, tiny_model)


def pytest_configure(config: pytest.Config) -> None:
    # Nothing may load from a hub at test time.
    import os

    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("LMFORGE_CACHE", str(Path(config.rootpath) / ".pytest_cache" / "lmforge"))
