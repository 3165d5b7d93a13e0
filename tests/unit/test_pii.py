"""Tests for lmforge.data.pii: each type's formats, look-alikes that must not match, masking."""

from __future__ import annotations

import itertools

import pytest

from lmforge.data.pii import DEFAULT_TYPES, PII_TYPES, PiiDetector, PiiSpan

ALL = PiiDetector(PII_TYPES)


@pytest.mark.parametrize(
    ("value", "pii_type"),
    [
        ("jane.doe@example.com", "email"),
        ("j_smith+news@mail.co.uk", "email"),
        ("+1 415-555-0132", "phone"),
        ("(415) 555-0132", "phone"),
        ("415.555.0132", "phone"),
        ("+44 20 7946 0958", "phone"),
        ("4111 1111 1111 1111", "card"),
        ("5500-0000-0000-0004", "card"),
        ("4111111111111111", "card"),
        ("378282246310005", "card"),  # 15-digit Amex test number
        ("GB82 WEST 1234 5698 7654 32", "iban"),
        ("DE89370400440532013000", "iban"),
        ("SA03 8000 0000 6080 1016 7519", "iban"),
        ("192.168.1.20", "ip"),
        ("8.8.8.8", "ip"),
        ("2001:db8::1", "ip"),
        ("fe80::1ff:fe23:4567:890a", "ip"),
        ("::ffff:192.0.2.1", "ip"),
        ("https://example.com/path?q=1", "url"),
        ("http://foo.org", "url"),
        ("www.example.org/page", "url"),
    ],
)
def test_each_type_is_found_inside_a_sentence(value: str, pii_type: str) -> None:
    text = f"Contact: {value}, thanks."
    spans = ALL.find(text)
    assert spans == [PiiSpan(pii_type, 9, 9 + len(value), value)]


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112 was declined",  # Luhn check fails
        "upgraded to version 1.2.3 yesterday",
        "host 999.10.10.10 is out of range",
        "the meeting is on 2024-01-15 at 12:30:45",
        "where is my order #12345?",
        "it costs $1,299.00 plus tax",
        "GB82 WEST 1234 5698 7654 33",  # IBAN checksum off by one
        "DE89370400440532013001",
        "call ext 555-0132",  # too short to be a valid number
        "mac 00:1A:2B:3C:4D:5E and std::vector",
        "i didnt feel humiliated",
        "scores 1 2 3 4 5 6 7 8 9 1 2 3 3 today",  # 1-digit groups, though the digits pass Luhn
    ],
)
def test_look_alikes_are_not_pii(text: str) -> None:
    assert ALL.find(text) == []
    assert ALL.mask(text) == (text, {})


@pytest.mark.parametrize(
    ("text", "expected", "counts"),
    [
        (
            "Mail jane@example.com or call +1 415-555-0132.",
            "Mail <EMAIL> or call <PHONE>.",
            {"email": 1, "phone": 1},
        ),
        (
            "Card 4111 1111 1111 1111, IBAN DE89370400440532013000.",
            "Card <CARD>, IBAN <IBAN>.",
            {"card": 1, "iban": 1},
        ),
        ("from 10.0.0.1 and 10.0.0.2 via 2001:db8::1", "from <IP> and <IP> via <IP>", {"ip": 3}),
        ("on 12 4111 1111 1111 1111 2024 ok", "on 12 <CARD> 2024 ok", {"card": 1}),
        ("pay SA03 8000 0000 6080 1016 7519 CALL me", "pay <IBAN> CALL me", {"iban": 1}),
    ],
)
def test_mask_exact_output_and_counts(text: str, expected: str, counts: dict[str, int]) -> None:
    assert ALL.mask(text) == (expected, counts)


@pytest.mark.parametrize(
    ("text", "pii_type", "value"),
    [
        ("write to john.4155550132@example.com now", "email", "john.4155550132@example.com"),
        ("card 5500-0000-0000-0004 ok", "card", "5500-0000-0000-0004"),
        ("iban GB82 WEST 1234 5698 7654 32 ok", "iban", "GB82 WEST 1234 5698 7654 32"),
        ("see https://shop.example.com/u/4155550132 ok", "url", "https://shop.example.com/u/4155550132"),
        ("see http://192.168.1.1/admin ok", "url", "http://192.168.1.1/admin"),
    ],
)
def test_overlapping_candidates_keep_the_more_specific_type(text: str, pii_type: str, value: str) -> None:
    spans = ALL.find(text)
    assert [(s.type, s.value) for s in spans] == [(pii_type, value)]


def test_spans_are_sorted_and_non_overlapping() -> None:
    text = "a@b.io 4111111111111111 8.8.8.8 +44 20 7946 0958 b@c.io"
    spans = ALL.find(text)
    assert [s.type for s in spans] == ["email", "card", "ip", "phone", "email"]
    assert all(prev.end <= nxt.start for prev, nxt in itertools.pairwise(spans))
    assert all(text[s.start : s.end] == s.value for s in spans)


def test_url_is_off_by_default_and_types_can_be_chosen() -> None:
    assert "url" not in DEFAULT_TYPES
    text = "see https://example.com or mail a@b.io"
    assert PiiDetector().mask(text) == ("see https://example.com or mail <EMAIL>", {"email": 1})
    assert PiiDetector(["url"]).mask(text) == ("see <URL> or mail a@b.io", {"url": 1})


def test_phone_region_reads_national_numbers() -> None:
    text = "ring 020 7946 0958 today"
    assert PiiDetector(phone_region="GB").mask(text) == ("ring <PHONE> today", {"phone": 1})
    assert PiiDetector(phone_region="US").mask(text) == (text, {})


@pytest.mark.parametrize("types", [["email", "name"], ["Phone"], ["ssn"]])
def test_unknown_type_names_it_and_the_allowed_ones(types: list[str]) -> None:
    with pytest.raises(ValueError, match="unknown PII type") as info:
        PiiDetector(types)
    bad = next(t for t in types if t not in PII_TYPES)
    assert repr(bad) in str(info.value)
    assert all(name in str(info.value) for name in PII_TYPES)


@pytest.mark.parametrize("text", ["", "plain text, no numbers", "3 apples and 4 pears", "ratio 3:2"])
def test_texts_without_pii_come_back_unchanged(text: str) -> None:
    masked, counts = ALL.mask(text)
    assert masked is text
    assert counts == {}


def test_mask_many_totals_counts_over_texts() -> None:
    texts = ["a@b.io and c@d.io", "no pii here", "call (415) 555-0132 or a@b.io"]
    masked, totals = PiiDetector().mask_many(texts)
    assert masked == ["<EMAIL> and <EMAIL>", "no pii here", "call <PHONE> or <EMAIL>"]
    assert totals == {"email": 3, "phone": 1}
    assert PiiDetector().mask_many([]) == ([], {})
