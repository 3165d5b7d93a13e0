"""Text metrics and perplexity against values computed by hand."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from lmforge.tasks.generation import IGNORE, Encoded
from lmforge.tasks.generation_eval import generate, normalise, perplexity, text_metrics


def test_identical_texts_score_perfectly() -> None:
    scores = text_metrics(["the cat sat on the mat"], ["the cat sat on the mat"])
    assert scores["rouge1"] == scores["rouge2"] == scores["rouge_l"] == scores["exact_match"] == 1.0
    assert scores["bleu"] == pytest.approx(100.0)


def test_rouge_by_hand() -> None:
    # reference "the cat sat", prediction "the cat ran": unigram overlap 2/3 both ways -> F 2/3;
    # bigram overlap 1 of 2 -> F 1/2; longest common subsequence "the cat" -> F 2/3.
    scores = text_metrics(["the cat ran"], ["the cat sat"])
    assert scores["rouge1"] == pytest.approx(2 / 3)
    assert scores["rouge2"] == pytest.approx(1 / 2)
    assert scores["rouge_l"] == pytest.approx(2 / 3)
    assert scores["exact_match"] == 0.0


def test_bleu_by_hand() -> None:
    # "a b c d" vs "a b c e": n-gram precisions 3/4, 2/3, 1/2 and 0/1; sacrebleu's default
    # `exp` smoothing turns the zero 4-gram count into 1/(2 * 1). Equal lengths: no brevity penalty.
    scores = text_metrics(["a b c d"], ["a b c e"])
    by_hand = 100 * math.exp((math.log(3 / 4) + math.log(2 / 3) + math.log(1 / 2) + math.log(1 / 2)) / 4)
    assert scores["bleu"] == pytest.approx(by_hand, rel=1e-6)


def test_exact_match_ignores_case_and_spacing() -> None:
    assert normalise("  Cold \n") == "cold"
    assert text_metrics(["Cold", "hot"], ["cold ", "warm"])["exact_match"] == 0.5


def test_perplexity_is_exp_of_mean_token_loss(tiny_llama: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    rows = Encoded([[1, 5, 6, 7], [1, 8, 9]], [[IGNORE, IGNORE, 6, 7], [1, 8, 9]])
    # By hand: sum the next-token negative log-likelihoods of every target, divide by their count.
    nll, count = 0.0, 0
    with torch.no_grad():
        for ids, labels in zip(rows.input_ids, rows.labels, strict=True):
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0], dim=-1)
            for position in range(1, len(ids)):
                if labels[position] != IGNORE:
                    nll -= float(logp[position - 1, labels[position]])
                    count += 1
    found = perplexity(model, rows, pad_token_id=4, batch_size=2)
    assert found["tokens"] == count == 4
    assert found["perplexity"] == pytest.approx(math.exp(nll / count), rel=1e-5)


def test_batched_generation_equals_one_at_a_time(tiny_llama: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    prompts = [
        "<|im_start|>user\nopposite of hot<|im_end|>\n<|im_start|>assistant\n",
        "<|im_start|>user\nup<|im_end|>\n",
    ]
    batched = generate(model, tokenizer, prompts, max_new_tokens=5, batch_size=2)
    single = [generate(model, tokenizer, [p], max_new_tokens=5, batch_size=1)[0] for p in prompts]
    assert batched == single
