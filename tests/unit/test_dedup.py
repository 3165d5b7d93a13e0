"""Exact and near-duplicate detection: normal forms, near matches, kept-row links, leakage, seeds."""

from __future__ import annotations

import random

import numpy as np
import pytest
from datasketch import LeanMinHash, MinHash, MinHashLSH

from lmforge.data import dedup
from lmforge.data.dedup import Match, _Sketches, cross_duplicates, find_duplicates, normal_form

BASE = "I am still waiting on my new card, it was ordered two weeks ago and has not arrived"
DIFFERENT = [
    "How do I top up my account with a bank transfer from abroad?",
    "my flight got cancelled and i feel so angry right now",
    "Which currencies can I hold and exchange in the app?",
    "i feel happy that the weekend is finally here with my friends",
    "Why was I charged a fee for withdrawing cash at the ATM?",
    "the parcel was delivered to the wrong address and nobody answers",
]


def _wide(text: str) -> str:
    """The full-width form of ASCII letters (U+FF21...), as East Asian input methods type them."""
    return "".join(chr(ord(c) + 0xFEE0) for c in text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello,   World!", "hello world"),
        ("  tabs\tand\nnewlines  ", "tabs and newlines"),
        (_wide("FULL") + "\u3000" + _wide("width"), "full width"),  # full-width + ideographic space
        ("ﬁne ﬂower", "fine flower"),  # ligatures (NFKC)
        ("Straße", "strasse"),  # casefold, not lower
        ("co\u00adoperate\u200bnow", "cooperatenow"),  # invisible format characters vanish
        ("snake_case & e-mail :)", "snake case e mail"),
        ("café ☕ 100%", "café 100"),
        ("?!...", ""),
    ],
)
def test_normal_form(text: str, expected: str) -> None:
    assert normal_form(text) == expected


@pytest.mark.parametrize(
    "variant",
    [
        BASE.upper(),  # case
        BASE.replace(",", "") + "!!!",  # punctuation
        "  " + BASE.replace(" ", "   ") + "\n",  # whitespace
        BASE.replace("card", _wide("card")),  # unicode width variant
    ],
)
def test_exact_duplicate_links_to_first(variant: str) -> None:
    matches = find_duplicates([BASE, DIFFERENT[0], variant])
    assert matches == [Match(index=2, duplicate_of=0, kind="exact", similarity=1.0)]


@pytest.mark.parametrize(
    ("variant", "threshold"),
    [
        (BASE.replace("arrived", "arived"), 0.8),  # a deleted character
        (BASE.replace("ordered", "ordred"), 0.8),  # a substituted/deleted character
        (BASE.replace("has not", "not has"), 0.7),  # a swapped word pair
        (BASE + " yet", 0.8),  # an appended word
    ],
)
def test_near_duplicate_found(variant: str, threshold: float) -> None:
    matches = find_duplicates([BASE, *DIFFERENT, variant], threshold=threshold)
    assert len(matches) == 1
    match = matches[0]
    assert (match.index, match.duplicate_of, match.kind) == (len(DIFFERENT) + 1, 0, "near")
    assert threshold <= match.similarity < 1.0


def test_near_disabled_keeps_only_exact() -> None:
    texts = [BASE, BASE + " yet", BASE.lower()]
    assert find_duplicates(texts, near=False) == [Match(2, 0, "exact", 1.0)]


@pytest.mark.parametrize("threshold", [0.5, 0.8])
def test_different_texts_not_matched(threshold: float) -> None:
    assert find_duplicates([BASE, *DIFFERENT], threshold=threshold) == []
    assert cross_duplicates(DIFFERENT[:3], DIFFERENT[3:], threshold=threshold) == []


def test_chain_links_only_to_kept_rows() -> None:
    a = "the parcel was delivered to the wrong address and nobody answers the phone"
    b = "the parcel was delivered to the wrong adress and nobody answers the phone today"
    c = "the parcel was delivered to the wrong adress and nobody answer the phone today again"
    # a~b and b~c at 0.8, but a and c are not: b is removed, so c must stay as its own row.
    matches = find_duplicates([a, b, c], threshold=0.8)
    assert [(m.index, m.duplicate_of, m.kind) for m in matches] == [(1, 0, "near")]


def test_exact_twin_of_a_removed_row_links_to_the_kept_row() -> None:
    edited = BASE + " yet"
    matches = find_duplicates([BASE, edited, edited.upper()])
    assert [(m.index, m.duplicate_of, m.kind) for m in matches] == [(1, 0, "near"), (2, 0, "near")]
    assert matches[0].similarity == matches[1].similarity


def test_picks_the_most_similar_kept_row() -> None:
    longer = BASE + " and i really need it for my holiday trip next week"  # Jaccard 0.62 to BASE: kept
    query = BASE + " and i really need it for my"  # 0.75 to BASE, 0.83 to `longer`
    matches = find_duplicates([BASE, longer, query], threshold=0.7)
    assert [(m.index, m.duplicate_of) for m in matches] == [(2, 1)]
    assert matches[0].similarity == pytest.approx(0.825, abs=0.01)


def _edit(text: str, rng: random.Random) -> str:
    """Delete one random character: a realistic near-copy."""
    pos = rng.randrange(len(text))
    return text[:pos] + text[pos + 1 :]


def _brute_force_removed(texts: list[str], threshold: float) -> set[int]:
    """Greedy reference without LSH: exact Jaccard of 5-gram sets against every kept row."""
    kept: list[set[str]] = []
    removed = set()
    for i, text in enumerate(texts):
        form = normal_form(text)
        grams = {form[j : j + 5] for j in range(max(len(form) - 4, 1))}
        if any(len(grams & k) / len(grams | k) >= threshold for k in kept):
            removed.add(i)
        else:
            kept.append(grams)
    return removed


def test_invariants_on_many_rows() -> None:
    rng = random.Random(0)
    words = ["card", "transfer", "fee", "account", "top", "up", "limit", "refund", "cash", "atm", "pin"]
    sources = [" ".join(rng.choices(words, k=12)) for _ in range(60)]
    texts = sources + [_edit(_edit(rng.choice(sources), rng), rng) for _ in range(60)]
    rng.shuffle(texts)
    matches = find_duplicates(texts, threshold=0.7)
    removed = {m.index for m in matches}
    assert len(removed) == len(matches)  # each duplicate appears once
    assert removed == _brute_force_removed(texts, 0.7)  # LSH missed no pair here
    assert all(m.duplicate_of < m.index and m.duplicate_of not in removed for m in matches)
    assert all(m.similarity >= 0.7 for m in matches)
    kept = [t for i, t in enumerate(texts) if i not in removed]
    assert find_duplicates(kept, threshold=0.7) == []  # one representative per cluster


def test_cross_duplicates_index_reference() -> None:
    reference = [DIFFERENT[0], BASE, DIFFERENT[1]]
    texts = [DIFFERENT[2], BASE.upper(), BASE + " yet", "", DIFFERENT[3], BASE + " yet"]
    matches = cross_duplicates(texts, reference)
    assert [(m.index, m.duplicate_of, m.kind) for m in matches] == [
        (1, 1, "exact"),
        (2, 1, "near"),
        (5, 1, "near"),  # rows of `texts` are not deduplicated against each other
    ]


@pytest.mark.parametrize(
    ("texts", "reference", "expected"),
    [
        ([], [BASE], []),
        ([BASE], [], []),
        (["", "?!"], ["ok", "..."], [Match(0, 1, "exact", 1.0), Match(1, 1, "exact", 1.0)]),
        (["ok"], [""], []),
    ],
)
def test_cross_empty(texts: list[str], reference: list[str], expected: list[Match]) -> None:
    assert cross_duplicates(texts, reference) == expected


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        ([], []),
        (["", "!!!", "  ", "a"], [Match(1, 0, "exact", 1.0), Match(2, 0, "exact", 1.0)]),
        (["ok", "ab", "abc", "OK."], [Match(3, 0, "exact", 1.0)]),  # shorter than a shingle
    ],
)
def test_empty_and_short(texts: list[str], expected: list[Match]) -> None:
    assert find_duplicates(texts) == expected


def test_threshold_one_uses_two_bands() -> None:
    # One-character shingles: "ab" and "ba" have the same set, so they are near at Jaccard 1.0.
    assert find_duplicates(["ab", "ba"], threshold=1.0, shingle_size=1) == [Match(1, 0, "near", 1.0)]


@pytest.mark.parametrize("seed", [1, 7])
def test_signatures_equal_datasketch_and_are_seeded(seed: int) -> None:
    forms = [normal_form(t) for t in [BASE, *DIFFERENT, "hi"]]
    sketches = _Sketches(forms, 5, 64, seed)
    for i in range(len(forms)):
        reference = MinHash(num_perm=64, seed=seed, hashfunc=int)
        reference.update_batch(sketches.shingles(i).tolist())
        assert np.array_equal(reference.hashvalues, sketches.signatures()[i])
    again = _Sketches(forms, 5, 64, seed)
    assert np.array_equal(again.signatures(), sketches.signatures())
    other = _Sketches(forms, 5, 64, seed + 1)
    assert not np.array_equal(other.signatures(), sketches.signatures())


def _datasketch_near(forms: list[str], threshold: float) -> dict[int, tuple[int, float]]:
    """What `find_duplicates` did with datasketch's MinHashLSH: query kept rows, insert misses."""
    sketches = _Sketches(forms, 5, 128, 1)
    signatures = sketches.signatures()
    lsh = MinHashLSH(num_perm=128, params=dedup._bands(threshold, 128))
    near: dict[int, tuple[int, float]] = {}
    for pos in range(len(forms)):
        lean = LeanMinHash(seed=1, hashvalues=signatures[pos], scheme="affine32")
        hit = dedup._best_match(lsh.query(lean), sketches, pos, threshold)
        if hit is None:
            lsh.insert(pos, lean, check_duplication=False)
        else:
            near[pos] = hit
    return near


@pytest.mark.parametrize(("rows_per_block", "threshold"), [(1, 0.8), (7, 0.8), (50, 0.6), (10_000, 0.8)])
def test_blocks_and_band_index_equal_datasketch_lsh(
    monkeypatch: pytest.MonkeyPatch, rows_per_block: int, threshold: float
) -> None:
    # Clusters of near-copies spread over many blocks: a copy must find its kept original in an
    # earlier block (the band index) as in its own (the per-block dict), exactly as MinHashLSH did.
    rng = random.Random(11)
    texts = [BASE, *DIFFERENT]
    for _ in range(120):
        texts.append(_edit(rng.choice(texts[: len(texts) // 4 + 7]), rng))
    forms = list(dict.fromkeys(normal_form(t) for t in texts))
    monkeypatch.setattr(dedup, "_ROWS", rows_per_block)
    expected = _datasketch_near(forms, threshold)
    matches = find_duplicates(forms, threshold=threshold)
    assert {m.index: (m.duplicate_of, m.similarity) for m in matches} == expected
    assert len(expected) > 50  # the check has something to compare


@pytest.mark.parametrize("chars", [1, 150, 10**9])
def test_long_texts_are_shingled_in_char_bounded_blocks(monkeypatch: pytest.MonkeyPatch, chars: int) -> None:
    # Hostile sizes: a few 20,000-character texts among short ones. Blocks are cut by characters
    # (a text longer than the budget is a block alone), and the matches do not depend on the cut.
    rng = random.Random(5)
    long_text = " ".join(rng.choice(DIFFERENT) for _ in range(400))[:20_000]
    texts = [BASE, long_text, *DIFFERENT, _edit(long_text, rng), _edit(BASE, rng), long_text.upper()]
    expected = find_duplicates(texts)  # one block
    assert [(m.index, m.duplicate_of, m.kind) for m in expected] == [
        (8, 1, "near"),
        (9, 0, "near"),
        (10, 1, "exact"),
    ]
    monkeypatch.setattr(dedup, "_CHARS", chars)
    assert list(dedup._char_blocks(["ab", "cde", "f", "ghij"])) == (
        [(0, 1), (1, 2), (2, 3), (3, 4)] if chars == 1 else [(0, 4)]
    )
    assert find_duplicates(texts) == expected


def test_deterministic_results() -> None:
    rng = random.Random(3)
    texts = [BASE, *DIFFERENT] + [_edit(rng.choice([BASE, *DIFFERENT]), rng) for _ in range(20)]
    first = find_duplicates(texts, threshold=0.7, seed=5)
    assert first == find_duplicates(texts, threshold=0.7, seed=5)
    assert len(first) >= 15


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": 1.5}, "threshold"),
        ({"num_perm": 1}, "num_perm"),
        ({"shingle_size": 0}, "shingle_size"),
    ],
)
def test_bad_settings_rejected(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        find_duplicates([BASE], **kwargs)  # type: ignore[arg-type]
