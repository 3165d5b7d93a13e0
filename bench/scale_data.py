"""A deterministic synthetic table for the clean stage at scale (bench_scale.py part b).

~100-character texts drawn from a fixed vocabulary, with what a real scraped file holds:
exact duplicates (some differing only in case/punctuation), near-duplicates (a word swapped or
a typo), e-mail addresses and phone numbers, mojibake (UTF-8 read as cp1252), and six labels.
The same (rows, seed) always writes the same file, so figures compare across runs and machines.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

_WORDS = (  # noqa: SIM905 (a sentence of words reads better than a 100-item list)
    "the a my our this that very really quite so not never always today yesterday tomorrow "
    "order account card payment refund delivery parcel app screen phone bank transfer balance "
    "fee charge limit pin password login code message email support agent flight hotel room "
    "happy sad angry afraid surprised loved tired excited worried calm lonely grateful bored "
    "feel think want need got lost found sent received blocked opened closed changed cancelled "
    "late early again still just only even also because when while after before since until "
    "café naïve résumé señor über jalapeño crème brûlée fiancée déjà façade"
).split()
LABELS = ("joy", "sadness", "anger", "fear", "love", "surprise")
# Shares of the rows; the rest are unique texts.
EXACT, NEAR, PII, MOJIBAKE = 0.05, 0.05, 0.02, 0.01


def _sentence(rng: random.Random) -> str:
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < rng.randint(80, 115):
        words.append(rng.choice(_WORDS))
    return " ".join(words)


def _near(rng: random.Random, text: str) -> str:
    words = text.split()
    i = rng.randrange(len(words) - 1)
    if rng.random() < 0.5:
        words[i], words[i + 1] = words[i + 1], words[i]
    else:  # one typo: a dropped letter
        word = words[i]
        if len(word) > 2:
            j = rng.randrange(len(word))
            words[i] = word[:j] + word[j + 1 :]
    return " ".join(words)


def _pii(rng: random.Random, text: str) -> str:
    if rng.random() < 0.5:
        return f"{text[:60]} mail me at user{rng.randrange(10**6)}@example.com"
    return f"{text[:60]} call +44 20 7946 {rng.randrange(10**4):04d}"


def rows(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """`n` (text, label) rows; duplicates copy an earlier row, so the first of a group is kept."""
    rng = random.Random(seed)
    out: list[tuple[str, str]] = []
    for i in range(n):
        roll = rng.random()
        label = rng.choice(LABELS)
        if i and roll < EXACT:
            text, label = out[rng.randrange(i)]
            if rng.random() < 0.3:
                text = text.upper() + "!"
        elif i and roll < EXACT + NEAR:
            text, label = out[rng.randrange(i)]
            text = _near(rng, text)
        elif roll < EXACT + NEAR + PII:
            text = _pii(rng, _sentence(rng))
        elif roll < EXACT + NEAR + PII + MOJIBAKE:
            text = _sentence(rng) + " café déjà vu"
            text = text.encode("utf-8").decode("cp1252", errors="replace")
        else:
            text = _sentence(rng)
        out.append((text, label))
    return out


def write(path: Path, n: int, seed: int = 0) -> Path:
    """Write `n` rows as a text,label CSV."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows(n, seed))
    return path
