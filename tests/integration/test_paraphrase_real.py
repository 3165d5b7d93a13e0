"""smollm2-135m paraphrases short customer messages offline, with usable and related outputs.

What is robust across seeds (measured on seeds 0-4 and greedy): at least 2 of 3 messages get a
paraphrase through the filters, and at least 2 of 3 share a content word with their message.
A 135M model sometimes answers instead of rewriting or changes the speaker, so asking more
of every single output would make this test flaky rather than stricter.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from lmforge.data.augment import paraphrase

pytestmark = pytest.mark.integration

MESSAGES = [
    "My card payment was declined twice today, can you check why?",
    "I still have not received my parcel, where is it?",
    "How do I reset my password? I can't log in.",
]
STOPWORDS = {"the", "and", "you", "your", "can", "could", "please", "for", "with", "have", "has", "not"}
STOPWORDS |= {"are", "was", "how", "what", "why", "this", "that", "its", "i'm", "can't", "still"}


def content_stems(text: str) -> set[str]:
    """Words of 3+ letters that carry meaning, cut to 4 letters so "receive" meets "received"."""
    return {word[:4] for word in re.findall(r"[a-z']{3,}", text.lower()) if word not in STOPWORDS}


@pytest.fixture
def one_thread() -> Iterator[None]:
    """On a shared 2-core machine, torch's 2 OpenMP threads spin-wait on each other when another
    process holds a core: one thread generated 5-10x faster there (measured, 20 tokens: 3.8 s vs
    18-57 s). Restored afterwards so other tests keep their setting."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
def test_smollm2_paraphrases_customer_messages() -> None:
    paraphrase(MESSAGES[:1], max_new_tokens=1)  # load (and convert the GGUF once) outside the timing
    done: list[int] = []
    start = time.perf_counter()
    outputs = paraphrase(MESSAGES, seed=0, on_progress=done.append)
    seconds = time.perf_counter() - start
    print(f"\n{len(MESSAGES)} messages in {seconds:.1f} s")
    for message, output in zip(MESSAGES, outputs, strict=True):
        print(f"  {message!r} -> {output!r}")

    assert len(outputs) == len(MESSAGES) and done[-1] == len(MESSAGES)
    kept = [(message, output) for message, output in zip(MESSAGES, outputs, strict=True) if output]
    assert len(kept) >= 2, outputs
    for message, output in kept:
        assert output.lower().strip(" ?.!") != message.lower().strip(" ?.!")
        assert len(output) <= 3 * len(message)
    related = [output for message, output in kept if content_stems(message) & content_stems(output)]
    assert len(related) >= 2, outputs
