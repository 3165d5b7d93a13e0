"""Auto-labelling mechanics on tiny random models: shapes, probabilities, batching, errors.

The tiny models know nothing, so these tests check what must hold for any model (scores are
log-probabilities of the answer tokens, rows sum to 1, padding and batching change nothing);
tests/integration/test_autolabel_real.py checks that the real models label correctly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lmforge.data.autolabel import auto_label, choose_method, few_shot_examples
from lmforge.data.zeroshot import ZeroShotScorer
from lmforge.errors import ConfigError, DataError
from tests.conftest import FILLER, TOPICS, make_rows

NAMES = ["sports", "cooking", "weather"]
WORDS = [
    *["classify", "the", "text", "into", "exactly", "one", "of", "these", "labels", "answer", "with"],
    *["label", "only", "sports", "cooking", "weather", "goal", "match", "team", "rain", "sun", "wind"],
    *["bake", "oven", "soup", "a", "is", "today"],
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TEXTS = ["the team scored a goal", "bake the soup in the oven", "rain and wind today", "sun"]


@pytest.fixture(scope="module", params=["chat", "plain"])
def tiny_llama(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide random llama with a word-level tokenizer (with or without a chat template)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp(f"tiny-llama-{request.param}")
    extra = [":", ",", ".", "user", "assistant", "multi", "word", "Classify", "Answer", "Text", "Label"]
    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", *WORDS, *extra])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>")
    tokenizer.add_special_tokens({"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"})
    if request.param == "chat":
        tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def reference_log_likelihood(scorer: ZeroShotScorer, text: str) -> list[float]:
    """log P(answer | prompt) the slow, obvious way: one unpadded forward pass per label."""
    import torch

    prompt = scorer.prompt_ids(text)
    scores = []
    for answer in scorer.answers:
        with torch.inference_mode():
            logits = scorer.model(torch.tensor([prompt + answer])).logits[0].float()
        logprobs = logits.log_softmax(-1)
        scores.append(sum(float(logprobs[len(prompt) - 1 + j, t]) for j, t in enumerate(answer)))
    return scores


def test_zero_shot_gives_a_distribution_over_the_label_names(tiny_llama: Path) -> None:
    progress: list[int] = []
    result = auto_label(
        TEXTS, NAMES, method="zero-shot", generator_model=str(tiny_llama), on_progress=progress.append
    )
    assert result.method == "zero-shot" and result.model == str(tiny_llama)
    assert result.probabilities.shape == (len(TEXTS), len(NAMES))
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert result.labels == [NAMES[i] for i in result.probabilities.argmax(axis=1)]
    assert result.confidence == pytest.approx(result.probabilities.max(axis=1).tolist())
    assert sum(progress) == len(TEXTS)
    again = auto_label(TEXTS, NAMES, method="zero-shot", generator_model=str(tiny_llama))
    np.testing.assert_array_equal(result.probabilities, again.probabilities)  # deterministic


def test_shared_prompt_scores_equal_one_pass_per_label(tiny_llama: Path) -> None:
    # Labels of different token lengths exercise the padding of the answers; texts of
    # different lengths the left padding and position ids of the prompts.
    scorer = ZeroShotScorer.load(str(tiny_llama), ["sports", "multi word", "weather"])
    batched = scorer.log_likelihoods(TEXTS)
    expected = np.array([reference_log_likelihood(scorer, text) for text in TEXTS])
    np.testing.assert_allclose(batched, expected, atol=1e-4)
    assert (batched < 0).all()


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_batch_size_does_not_change_the_probabilities(tiny_llama: Path, batch_size: int) -> None:
    scorer = ZeroShotScorer.load(str(tiny_llama), NAMES)
    one_by_one = np.vstack([scorer.probabilities([t]) for t in TEXTS])
    np.testing.assert_allclose(scorer.probabilities(TEXTS, batch_size=batch_size), one_by_one, atol=1e-5)


def test_prompt_lists_labels_and_answers_end_the_turn(tiny_llama: Path) -> None:
    scorer = ZeroShotScorer.load(str(tiny_llama), NAMES)
    tokens = scorer.tokenizer.convert_ids_to_tokens(scorer.prompt_ids("rain today"))
    assert [t for t in tokens if t in NAMES] == NAMES  # every label is offered, in order
    assert tokens[-2:] == (["<|im_start|>", "assistant"] if scorer.chat else ["Label", ":"])
    eos = scorer.tokenizer.eos_token_id
    for answer in scorer.answers:
        assert (answer[-1] == eos) == scorer.chat  # the chat template's end-of-turn closes the name


def test_control_tokens_in_a_text_stay_text(tiny_llama: Path) -> None:
    scorer = ZeroShotScorer.load(str(tiny_llama), NAMES)
    eos = scorer.tokenizer.eos_token_id
    plain = scorer.prompt_ids("rain today").count(eos)
    assert scorer.prompt_ids("rain <|im_end|> today").count(eos) == plain


def test_few_shot_examples_go_into_the_prompt(tiny_llama: Path) -> None:
    texts = ["goal match", "soup", "rain", "team goal", "oven"]
    labels = ["sports", "cooking", "weather", "sports", "cooking"]
    examples = few_shot_examples(texts, labels, NAMES, 1)
    assert examples == [("goal match", "sports"), ("soup", "cooking"), ("rain", "weather")]
    assert few_shot_examples(texts, labels, NAMES, 2)[3:] == [("team goal", "sports"), ("oven", "cooking")]
    bare = ZeroShotScorer.load(str(tiny_llama), NAMES)
    shown = ZeroShotScorer.load(str(tiny_llama), NAMES, examples=examples)
    assert len(shown.prompt_ids("sun")) > len(bare.prompt_ids("sun")) + 6
    result = auto_label(
        ["sun"],
        NAMES,
        labeled_texts=texts,
        labeled_labels=labels,
        method="zero-shot",
        generator_model=str(tiny_llama),
        examples_per_class=1,
    )
    assert result.probabilities.shape == (1, 3)


def test_embeddings_probe_labels_rows_like_their_topic(tiny_model: Path) -> None:
    rows = make_rows(per_class=12, seed=3)
    unlabeled = [" ".join([*words[:2], *FILLER[:2]]) for words in TOPICS.values()]
    progress: list[int] = []
    result = auto_label(
        unlabeled,
        [],
        labeled_texts=[t for t, _ in rows],
        labeled_labels=[label for _, label in rows],
        embedding_model=str(tiny_model),
        on_progress=progress.append,
    )
    assert result.method == "embeddings" and result.label_names == sorted(TOPICS)
    assert result.probabilities.shape == (4, 4) and sum(progress) == 4
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0, atol=1e-5)
    # Even a random encoder keeps which words a text has; the probe learns the topic words.
    assert sum(a == b for a, b in zip(result.labels, TOPICS, strict=True)) >= 3


@pytest.mark.parametrize(
    ("method", "counts", "expected"),
    [
        ("auto", {"a": 5, "b": 5}, "embeddings"),
        ("auto", {"a": 5, "b": 4}, "zero-shot"),
        ("auto", {"a": 9}, "zero-shot"),
        ("embeddings", {}, "embeddings"),
        ("zero-shot", {"a": 50, "b": 50}, "zero-shot"),
    ],
)
def test_choose_method(method: str, counts: dict[str, int], expected: str) -> None:
    labels = [name for name, n in counts.items() for _ in range(n)]
    assert choose_method(method, ["a", "b"], labels, 5) == expected


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"method": "zero-shot", "label_names": []}, ConfigError, "label.labels"),
        ({"method": "guess"}, ConfigError, "label.method"),
        ({"label_names": ["a"]}, ConfigError, "at least 2 labels"),
        ({"labeled_labels": ["c"], "labeled_texts": ["x"]}, ConfigError, "missing from the list: c"),
        ({"method": "embeddings", "labeled_labels": ["a"], "labeled_texts": ["x"]}, DataError, "none for: b"),
    ],
)
def test_user_errors_name_the_config_key(kwargs: dict, error: type[Exception], message: str) -> None:
    arguments = {"label_names": ["a", "b"], **kwargs}
    with pytest.raises(error, match=message):
        auto_label(["some text"], generator_model="not-a-model", embedding_model="not-a-model", **arguments)


def test_nothing_to_label_loads_no_model() -> None:
    result = auto_label([], ["a", "b"], method="zero-shot", generator_model="no/such-model")
    assert result.labels == [] and result.probabilities.shape == (0, 2)
    numeric = auto_label([], [], labeled_texts=["x", "y"], labeled_labels=[1, 0], embedding_model="none")
    assert numeric.label_names == ["0", "1"]  # labels read from a CSV as numbers become strings
