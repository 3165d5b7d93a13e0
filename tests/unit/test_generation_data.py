"""Prompt building, loss masking, truncation, packing and chat parsing on a tiny tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmforge.tasks.generation import (
    IGNORE,
    CausalCollator,
    conversation,
    encode_conversations,
    encode_texts,
    encode_texts_packed,
    pack,
    parse_messages,
    render_completion,
    render_prompt,
)


@pytest.fixture(scope="module")
def tokenizer(tiny_llama: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llama)


@pytest.fixture
def plain(tokenizer):
    from copy import deepcopy

    other = deepcopy(tokenizer)
    other.chat_template = None
    return other


def test_conversation_joins_instruction_and_input() -> None:
    messages = conversation("opposite of hot", "context here", "cold", system="be brief")
    assert messages == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "opposite of hot\n\ncontext here"},
        {"role": "assistant", "content": "cold"},
    ]
    assert conversation("q", "  ", "a")[0]["content"] == "q"


def test_chat_template_prompt_and_completion(tokenizer) -> None:
    messages = conversation("opposite of hot", None, "cold")
    assert (
        render_prompt(tokenizer, messages[:-1])
        == "<|im_start|>user\nopposite of hot<|im_end|>\n<|im_start|>assistant\n"
    )
    assert render_completion(tokenizer, messages) == "cold<|im_end|>\n"


def test_loss_is_masked_on_prompt_tokens(tokenizer) -> None:
    messages = conversation("opposite of hot", None, "cold")
    encoded = encode_conversations(tokenizer, [messages], 64)
    ids, labels = encoded.input_ids[0], encoded.labels[0]
    targets = [t for t in labels if t != IGNORE]
    # Exactly the answer and the end-of-turn token are trained.
    assert tokenizer.convert_ids_to_tokens(targets) == ["cold", "<|im_end|>"]
    prompt_len = len(
        tokenizer(render_prompt(tokenizer, messages[:-1]), add_special_tokens=False)["input_ids"]
    )
    assert labels[:prompt_len] == [IGNORE] * prompt_len
    assert ids[prompt_len:] == targets


def test_plain_template_when_tokenizer_has_none(plain) -> None:
    messages = conversation("opposite of hot", None, "cold")
    assert render_prompt(plain, messages[:-1]) == "### Instruction:\nopposite of hot\n\n### Response:\n"
    encoded = encode_conversations(plain, [messages], 64)
    assert encoded.input_ids[0][0] == plain.bos_token_id  # pretraining-style start of sequence
    assert plain.convert_ids_to_tokens([t for t in encoded.labels[0] if t != IGNORE]) == [
        "cold",
        "<|im_end|>",
    ]


@pytest.mark.parametrize(
    ("max_length", "drop", "kept", "truncated", "dropped"),
    [
        (64, False, 2, 0, []),
        (12, False, 2, 1, []),  # the long row is cut but keeps answer tokens
        (12, True, 1, 0, [1]),  # drop instead of cut
        (6, False, 0, 0, [0, 1]),  # prompts alone fill max_length: nothing to learn, left out
    ],
)
def test_truncation_is_counted(tokenizer, max_length, drop, kept, truncated, dropped) -> None:
    rows = [
        conversation("opposite of hot", None, "cold"),
        conversation("what is the opposite of big", None, "small small small small small"),
    ]
    encoded = encode_conversations(tokenizer, rows, max_length, drop_long=drop)
    assert (len(encoded), encoded.truncated, encoded.dropped) == (kept, truncated, dropped)
    assert all(len(ids) <= max_length for ids in encoded.input_ids)


def test_packing_keeps_every_token_and_the_mask(tokenizer) -> None:
    rows = [
        conversation(f"opposite of {w}", None, o)
        for w, o in [("hot", "cold"), ("big", "small"), ("up", "down")]
    ]
    encoded = encode_conversations(tokenizer, rows, 64)
    packed = pack(encoded, 16)
    assert sum(len(b) for b in packed.input_ids) == sum(len(i) for i in encoded.input_ids)
    assert all(len(b) <= 16 for b in packed.input_ids)
    assert packed.target_tokens == encoded.target_tokens


def test_language_modeling_texts(tokenizer) -> None:
    texts = ["hot cold big small", "up down"]
    one = encode_texts(tokenizer, texts, 64)
    assert one.labels == one.input_ids and one.input_ids[0][-1] == tokenizer.eos_token_id
    assert encode_texts(tokenizer, texts, 3).truncated == 2
    packed = encode_texts_packed(tokenizer, texts, 4)
    assert [t for b in packed.input_ids for t in b] == [t for ids in one.input_ids for t in ids]


def test_collator_pads_right_with_ignored_labels() -> None:
    batch = CausalCollator(pad_token_id=0)(
        [{"input_ids": [5, 6, 7], "labels": [IGNORE, 6, 7]}, {"input_ids": [8], "labels": [8]}]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE, 6, 7], [8, IGNORE, IGNORE]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_parse_chat_messages() -> None:
    value = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert parse_messages(json.dumps(value)) == value
    assert parse_messages(value) == value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("not json", "not valid JSON"),
        ([], "non-empty list"),
        ([{"role": "user"}], "must have `role` and `content`"),
        ([{"role": "bot", "content": "x"}], "role 'bot'"),
        ([{"role": "user", "content": "x"}], "last message must be the assistant"),
        ([{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}], "no user message"),
    ],
)
def test_bad_chat_messages_say_why(value, reason) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_messages(value)


@pytest.mark.parametrize(
    ("name", "content", "task"),
    [
        (
            "chat.jsonl",
            '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n',
            "generation",
        ),
        ("alpaca.jsonl", '{"instruction": "a", "input": "", "output": "b"}\n', "generation"),
        ("pairs.csv", "prompt,response\na,b\n", "generation"),
        ("domain.txt", "one paragraph\n\nanother one\n", "language-modeling"),
    ],
)
def test_init_guesses_the_causal_tasks(tmp_path: Path, name: str, content: str, task: str) -> None:
    from lmforge.config import load_config
    from lmforge.starter import guess, render

    data = tmp_path / name
    data.write_text(content, encoding="utf-8")
    found = guess(data)
    assert found.task == task
    config = tmp_path / "lmforge.yaml"
    config.write_text(render(data, found, tmp_path), encoding="utf-8")
    loaded = load_config(config)  # the starter config is valid as written
    assert loaded.task == task and loaded.model == "smollm2-135m"


def test_txt_paragraphs_are_rows(tmp_path: Path) -> None:
    from lmforge.datafiles import read_data_file

    path = tmp_path / "notes.txt"
    path.write_text("first line\nsame paragraph\n\n\nsecond\n", encoding="utf-8")
    frame = read_data_file(path).frame
    assert frame["text"].tolist() == ["first line\nsame paragraph", "second"]
    assert frame["source_row"].tolist() == [1, 5]
