"""Class balance and offline augmentation: oversampling, token edits, paraphrase mechanics.

Paraphrasing runs a tiny random-initialised llama with a word-level tokenizer, so the
batching, prompting, seeding and post-processing code runs for real in well under a second.
"""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pytest

from lmforge.data.augment import augment_train, clean_paraphrase, oversample, paraphrase, token_edits

WORDS = ["my", "card", "payment", "was", "declined", "today", "can", "you", "check", "why", "parcel", "late"]


def frame(counts: dict[str, int]) -> pd.DataFrame:
    """A train split with `counts[label]` rows per label and an extra column that must survive."""
    rng = random.Random(1)
    rows = []
    for label, n in counts.items():
        for _ in range(n):
            rows.append((" ".join(rng.sample(WORDS, 5)), label))
    data = pd.DataFrame(rows, columns=["text", "label"])
    data.insert(0, "source_row", range(2, len(data) + 2))  # 1-based spreadsheet rows after a header
    data["split"] = "train"
    return data


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide llama and a word-level tokenizer with a chat template, saved to a folder."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-llama")
    specials = ["<unk>", "<pad>", "<|im_start|>", "<|im_end|>"]
    vocab = {word: i for i, word in enumerate([*specials, *sorted(set(WORDS) | {"user", "assistant"})])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", eos_token="<|im_end|>"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> {% endfor %}"
        "{% if add_generation_prompt %}<|im_start|> assistant {% endif %}"
    )
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=vocab["<pad>"],
        eos_token_id=vocab["<|im_end|>"],
        bos_token_id=vocab["<|im_start|>"],
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # a louder end-of-message row, so random outputs often stop by themselves
        model.lm_head.weight[vocab["<|im_end|>"]] *= 4
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize(
    ("target", "expected"), [(1.0, {"a": 10, "b": 10, "c": 10}), (0.5, {"a": 10, "b": 5, "c": 5})]
)
def test_oversample_raises_each_class_to_the_target(target: float, expected: dict[str, int]) -> None:
    data = frame({"a": 10, "b": 4, "c": 1})
    out = oversample(data, target=target, seed=0)
    assert out["label"].value_counts().to_dict() == expected
    originals = out[out["origin"] == "original"]
    pd.testing.assert_frame_equal(originals[data.columns].reset_index(drop=True), data)
    copies = out[out["origin"] == "oversample"]
    # A duplicate is an exact copy of the row it names, extra columns included.
    by_row = data.set_index("source_row")
    for _, row in copies.iterrows():
        assert (row["text"], row["label"], row["split"]) == tuple(by_row.loc[row["source_row"]])
    assert copies["augment_model"].isna().all()


def test_oversample_spreads_duplicates_and_replays_with_its_seed() -> None:
    data = frame({"a": 9, "b": 4})
    first, again, other = (oversample(data, target=1.0, seed=s) for s in (3, 3, 4))
    pd.testing.assert_frame_equal(first, again)
    copies = first[first["origin"] == "oversample"]["source_row"].value_counts()
    assert sorted(copies.tolist()) == [1, 1, 1, 2]  # 5 copies over 4 rows: whole copy + 1 extra
    assert not other.equals(first)


def test_oversample_rejects_a_target_outside_0_1() -> None:
    with pytest.raises(ValueError, match="target"):
        oversample(frame({"a": 2}), target=1.5)


@pytest.mark.parametrize(
    "text",
    ["please help me", "a a", "send it to <EMAIL> now please", "call <PHONE> or <EMAIL>", "x y z w v u t s"],
)
def test_token_edits_change_the_text_and_keep_placeholders(text: str) -> None:
    rng = random.Random(0)
    for _ in range(20):
        variants = token_edits(text, rng=rng, n=3, p_delete=0.3)
        assert variants and len(set(variants)) == len(variants) <= 3
        for variant in variants:
            assert variant != text and variant.split()
            for placeholder in ("<EMAIL>", "<PHONE>"):
                assert variant.count(placeholder) == text.count(placeholder)


@pytest.mark.parametrize("text", ["", "   ", "hello", "<EMAIL>"])
def test_token_edits_leave_texts_under_two_words_alone(text: str) -> None:
    assert token_edits(text, rng=random.Random(0), n=2) == []


def test_token_edits_replay_with_the_same_rng_seed() -> None:
    text = "my card payment was declined twice today"
    assert token_edits(text, rng=random.Random(5), n=4) == token_edits(text, rng=random.Random(5), n=4)


SOURCE = "My card payment was declined twice today"


@pytest.mark.parametrize(
    ("output", "source", "expected"),
    [
        (
            'Paraphrase: "Could you check why my card was refused?"',
            SOURCE,
            "Could you check why my card was refused?",
        ),
        ("Here is the paraphrased message: my card got refused.", SOURCE, "my card got refused."),
        (
            "\u201cMy card got refused twice.\u201d\n\nI hope this helps!",
            SOURCE,
            "My card got refused twice.",
        ),
        ('"My card got refused twice".', SOURCE, "My card got refused twice."),
        ("Mail <EMAIL> why my card was refused", f"{SOURCE} <EMAIL>", "Mail <EMAIL> why my card was refused"),
        ("   ", SOURCE, None),
        ('""', SOURCE, None),
        ("my card payment was declined twice today!", SOURCE, None),  # the input again
        ("I am sorry to hear that. " * 6, SOURCE, None),  # over 3x the input: the model answered instead
        ("my card was declined, email me", f"{SOURCE} <EMAIL>", None),  # lost the placeholder
        ("my card was declined, <PHONE>", SOURCE, None),  # invented one
    ],
)
def test_clean_paraphrase(output: str, source: str, expected: str | None) -> None:
    assert clean_paraphrase(output, source) == expected


def test_paraphrase_returns_one_entry_per_input(tiny_llama: Path) -> None:
    texts = ["my card payment was declined", "", "parcel is late", "password reset", "can you check why"]
    done: list[int] = []
    out = paraphrase(texts, model=str(tiny_llama), batch_size=2, max_new_tokens=4, on_progress=done.append)
    assert len(out) == len(texts) and out[1] is None
    assert done == sorted(done) and done[-1] == len(texts)
    accepted = [(text, para) for text, para in zip(texts, out, strict=True) if para is not None]
    assert accepted, "a random model still says something for most prompts"
    for text, para in accepted:
        assert para.lower() != text and len(para.split()) <= 4  # capped by max_new_tokens
    again = paraphrase(texts, model=str(tiny_llama), batch_size=2, max_new_tokens=4)
    assert again == out  # seeded sampling replays


def test_paraphrase_rejects_outputs_cut_off_by_the_token_budget(tiny_llama: Path) -> None:
    texts = ["my card payment was declined today", "can you check why", "parcel late"] * 2
    # One token is never a finished paraphrase: either the end mark alone or a cut-off word.
    assert paraphrase(texts, model=str(tiny_llama), max_new_tokens=1) == [None] * len(texts)


@pytest.mark.parametrize("greedy", [True, False])
def test_paraphrase_greedy_and_sampled_both_run(tiny_llama: Path, greedy: bool) -> None:
    out = paraphrase(["parcel is late"] * 3, model=str(tiny_llama), temperature=0 if greedy else 0.7)
    produced = {para for para in out if para is not None}
    assert len(out) == 3
    if greedy:
        assert len(produced) <= 1  # same prompt, no sampling: the same answer
    else:
        assert len(produced) >= 2  # sampling varies the answers to one prompt


def test_augment_train_balances_with_edits_first_then_duplicates() -> None:
    data = frame({"a": 12, "b": 3, "c": 6})
    out, counts = augment_train(data, oversample_target=1.0, token_edits_per_row=2, seed=0)
    assert out["label"].value_counts().to_dict() == {"a": 12, "b": 12, "c": 12}
    assert counts == {"oversample": 3, "token-edit": 12, "paraphrase": 0}  # b: 6 edits + 3 copies
    assert out["origin"].value_counts().to_dict() == {"original": 21, "token-edit": 12, "oversample": 3}
    pd.testing.assert_frame_equal(out.iloc[:21][data.columns], data)
    edits = out[out["origin"] == "token-edit"]
    assert set(edits["label"]) == {"b", "c"}  # the largest class needs nothing
    assert not set(edits["text"]) & set(data["text"])
    sources = data.set_index("source_row")
    for _, row in edits.iterrows():
        assert sources.loc[row["source_row"], "label"] == row["label"]
        assert set(row["text"].split()) <= set(sources.loc[row["source_row"], "text"].split())


def test_augment_train_without_balancing_edits_every_row() -> None:
    data = frame({"a": 4, "b": 2})
    out, counts = augment_train(data, token_edits_per_row=1, seed=2)
    assert counts == {"oversample": 0, "token-edit": 6, "paraphrase": 0}
    assert sorted(out[out["origin"] == "token-edit"]["source_row"]) == sorted(data["source_row"])
    untouched, none = augment_train(data)
    assert none == dict.fromkeys(("oversample", "token-edit", "paraphrase"), 0)
    assert (untouched["origin"] == "original").all() and len(untouched) == len(data)


def test_augment_train_paraphrases_keep_provenance_and_respect_the_cap(tiny_llama: Path) -> None:
    data = frame({"a": 6, "b": 2})
    seen: list[tuple[str, int, int]] = []
    out, counts = augment_train(
        data,
        oversample_target=1.0,
        paraphrases_per_row=2,
        max_paraphrases=3,
        model=str(tiny_llama),
        on_progress=lambda *event: seen.append(event),
    )
    assert out["label"].value_counts().to_dict() == {"a": 6, "b": 6}
    assert 0 <= counts["paraphrase"] <= 3 and counts["paraphrase"] + counts["oversample"] == 4
    paraphrased = out[out["origin"] == "paraphrase"]
    assert (paraphrased["augment_model"] == str(tiny_llama)).all()
    assert set(paraphrased["source_row"]) <= set(data[data["label"] == "b"]["source_row"])
    assert ("paraphrase", 3, 3) in seen and seen[-1][0] == "oversample"
