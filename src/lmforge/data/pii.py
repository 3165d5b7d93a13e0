"""Offline detection and masking of personal data (PII) in training texts and served requests.

Each type is found in two steps: a cheap regular expression (or a character count) proposes
candidates, and a well-kept validator accepts or rejects them, so that dates, order numbers,
prices and version strings are not masked:

* ``email`` -> ``<EMAIL>``: a conservative ``local@domain.tld`` pattern.
* ``phone`` -> ``<PHONE>``: ``phonenumbers.PhoneNumberMatcher`` with leniency ``VALID`` and a
  configurable default region for numbers written without a ``+country`` prefix.
* ``card`` -> ``<CARD>``: 13-19 digits with optional spaces/dashes, accepted only when
  ``stdnum.luhn`` passes.
* ``iban`` -> ``<IBAN>``: upper-case IBAN-shaped tokens, with or without spaces, accepted only
  when ``stdnum.iban.is_valid`` passes (country length, format and mod-97 checksum).
* ``ip`` -> ``<IP>``: IPv4/IPv6 candidates validated with the stdlib ``ipaddress`` module.
* ``url`` -> ``<URL>``: ``http://``, ``https://`` and ``www.`` links (off by default, because
  links are often task content rather than personal data).

Person names are deliberately not detected: the libraries that do it (presidio, scrubadub)
need spaCy or transformer NER models downloaded from a hub, which lmforge never does offline.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache

import phonenumbers
from stdnum import iban as stdnum_iban
from stdnum import luhn

PII_TYPES: tuple[str, ...] = ("email", "phone", "card", "iban", "ip", "url")
DEFAULT_TYPES: tuple[str, ...] = ("email", "phone", "card", "iban", "ip")  # url off by default

PLACEHOLDERS: dict[str, str] = {name: f"<{name.upper()}>" for name in PII_TYPES}

# Overlap precedence, most specific first. A URL encloses whatever it contains (an IP host, an
# e-mail in a query); an e-mail's digits are not a phone; an IBAN's digits are not a card; a card
# or an IP is a stricter match than the phone matcher's digit runs.
_PRECEDENCE: dict[str, int] = {
    name: rank for rank, name in enumerate(("url", "email", "iban", "card", "ip", "phone"))
}

_EMAIL_RE = re.compile(r"(?<![\w.%+-])[\w.%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}(?![\w-])")
_URL_RE = re.compile(r"(?<![\w.])(?:https?://|www\.)[^\s<>\"']+", re.IGNORECASE)
_URL_TRAILING = ".,;:!?)]}'\""
_CARD_RE = re.compile(r"(?<!\w)\d(?:[ -]?\d){12,}(?!\w)")
# Four-character groups after the country code and check digits, optionally space-separated,
# ending in at most one shorter group, which keeps following words out of the candidate.
_IBAN_RE = re.compile(
    r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?![A-Za-z0-9])"
)
_IPV4_RE = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
_IPV6_RE = re.compile(
    r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{1,4})?(?![\w:])"
)
_DIGIT_RE = re.compile(r"\d")
_DIGIT_RUN_RE = re.compile(r"\d+")

# Fewest digits a text needs before a validator is worth calling: the shortest valid phone
# numbers have 7 digits, card numbers 13, an IPv4 address 4, an IBAN's check digits plus BBAN 2+.
_MIN_DIGITS = {"phone": 7, "card": 13, "ip": 4, "iban": 2}


@dataclass(frozen=True)
class PiiSpan:
    """One detected piece of personal data: its type and ``text[start:end] == value``."""

    type: str
    start: int
    end: int
    value: str


def _find_email(text: str, n_digits: int, region: str) -> list[PiiSpan]:
    if "@" not in text:
        return []
    return [PiiSpan("email", m.start(), m.end(), m.group()) for m in _EMAIL_RE.finditer(text)]


def _find_url(text: str, n_digits: int, region: str) -> list[PiiSpan]:
    lowered = text.lower()
    if "http" not in lowered and "www." not in lowered:
        return []
    spans = []
    for m in _URL_RE.finditer(text):
        # Sentence punctuation right after a link belongs to the sentence, not the link.
        value = m.group().rstrip(_URL_TRAILING)
        spans.append(PiiSpan("url", m.start(), m.start() + len(value), value))
    return spans


def _find_phone(text: str, n_digits: int, region: str) -> list[PiiSpan]:
    if n_digits < _MIN_DIGITS["phone"]:
        return []
    matcher = phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID)
    return [PiiSpan("phone", m.start, m.end, m.raw_string) for m in matcher]


def _luhn_run(candidate: str) -> tuple[int, int] | None:
    """Offsets of the longest run of whole digit groups in ``candidate`` that is a card number.

    Why: the pattern is greedy, so a card next to other numbers ("4111 1111 1111 1111 2024",
    "on 12 4111...") yields one long candidate; trying sub-runs of its space/dash-separated groups
    recovers the card without splitting a group. Printed cards group digits by 3-6, so runs with
    1-2 digit groups (lists like "1 2 3 4 ...") are skipped: with 13+ digits, one in ten such
    runs would pass Luhn by chance.
    """
    groups = [(m.start(), m.end()) for m in _DIGIT_RUN_RE.finditer(candidate)]
    best: tuple[int, int] | None = None
    for i in range(len(groups)):
        n_digits = 0
        for j in range(i, len(groups)):
            n_digits += groups[j][1] - groups[j][0]
            if n_digits > 19 or (j > i and min(b - a for a, b in groups[i : j + 1]) < 3):
                break
            start, end = groups[i][0], groups[j][1]
            if n_digits < 13 or (best is not None and end - start <= best[1] - best[0]):
                continue
            if luhn.is_valid("".join(candidate[a:b] for a, b in groups[i : j + 1])):
                best = (start, end)
    return best


def _find_card(text: str, n_digits: int, region: str) -> list[PiiSpan]:
    if n_digits < _MIN_DIGITS["card"]:
        return []
    spans = []
    for m in _CARD_RE.finditer(text):
        run = _luhn_run(m.group())
        if run is not None:
            start, end = m.start() + run[0], m.start() + run[1]
            spans.append(PiiSpan("card", start, end, text[start:end]))
    return spans


def _valid_iban_prefix(candidate: str) -> str | None:
    """Longest valid IBAN made of the candidate's leading space-separated groups.

    Why: a spaced IBAN followed by an upper-case four-letter word ("... 3211 CALL") is one
    candidate for the pattern; dropping trailing groups recovers the real IBAN.
    """
    groups = candidate.split(" ")
    for end in range(len(groups), 0, -1):
        value = " ".join(groups[:end])
        if len(value.replace(" ", "")) < 15:  # shortest IBAN (Norway) has 15 characters
            return None
        if stdnum_iban.is_valid(value):
            return value
    return None


def _find_iban(text: str, n_digits: int, region: str) -> list[PiiSpan]:
    if n_digits < _MIN_DIGITS["iban"]:
        return []
    spans = []
    for m in _IBAN_RE.finditer(text):
        value = _valid_iban_prefix(m.group())
        if value is not None:
            spans.append(PiiSpan("iban", m.start(), m.start() + len(value), value))
    return spans


def _find_ip(text: str, n_digits: int, region: str) -> list[PiiSpan]:
    spans = []
    if n_digits >= _MIN_DIGITS["ip"] and text.count(".") >= 3:
        for m in _IPV4_RE.finditer(text):
            try:
                ipaddress.IPv4Address(m.group())  # rejects octets > 255 and leading zeros
            except ValueError:
                continue
            spans.append(PiiSpan("ip", m.start(), m.end(), m.group()))
    if text.count(":") >= 2:
        for m in _IPV6_RE.finditer(text):
            # Requiring a digit keeps hex-looking words joined by "::" (C++ scopes) out.
            if not _DIGIT_RE.search(m.group()):
                continue
            try:
                ipaddress.IPv6Address(m.group())  # rejects clock times and MAC addresses
            except ValueError:
                continue
            spans.append(PiiSpan("ip", m.start(), m.end(), m.group()))
    return spans


_FINDERS: dict[str, Callable[[str, int, str], list[PiiSpan]]] = {
    "email": _find_email,
    "phone": _find_phone,
    "card": _find_card,
    "iban": _find_iban,
    "ip": _find_ip,
    "url": _find_url,
}


def _resolve_overlaps(spans: list[PiiSpan]) -> list[PiiSpan]:
    """Keep the most specific span wherever candidates overlap, then sort by position.

    Why: one string can satisfy several detectors (a card number's digits also look like a
    phone number); masking it twice would corrupt the text, masking the wrong type the counts.
    """
    ordered = sorted(spans, key=lambda s: (_PRECEDENCE[s.type], -(s.end - s.start), s.start))
    kept: list[PiiSpan] = []
    for span in ordered:
        if all(span.end <= k.start or span.start >= k.end for k in kept):
            kept.append(span)
    return sorted(kept, key=lambda s: s.start)


class PiiDetector:
    """Finds and masks personal data of the chosen types; cheap enough for every training row."""

    def __init__(self, types: Iterable[str] = DEFAULT_TYPES, *, phone_region: str = "US") -> None:
        """Choose the PII types to detect.

        Args:
            types: Names from ``PII_TYPES``; ``url`` is off by default because links are often
                task content, not personal data.
            phone_region: ISO 3166 region used to read phone numbers written without ``+``.

        Raises:
            ValueError: If a type is unknown, naming it and the allowed ones.
        """
        self.types: tuple[str, ...] = tuple(dict.fromkeys(types))
        unknown = [t for t in self.types if t not in PII_TYPES]
        if unknown:
            raise ValueError(f"unknown PII type(s) {unknown}; allowed: {', '.join(PII_TYPES)}")
        self.phone_region = phone_region
        self._finders = [_FINDERS[t] for t in self.types]

    def find(self, text: str) -> list[PiiSpan]:
        """All PII spans in ``text``, non-overlapping and sorted by start offset."""
        if not text:
            return []
        # Counted once per text: most rows have few digits, which lets the digit-based
        # detectors return before touching their validators.
        n_digits = len(_DIGIT_RE.findall(text))
        spans: list[PiiSpan] = []
        for finder in self._finders:
            spans.extend(finder(text, n_digits, self.phone_region))
        return _resolve_overlaps(spans) if len(spans) > 1 else spans

    def mask(self, text: str) -> tuple[str, dict[str, int]]:
        """Replace each span by its placeholder (``<EMAIL>``, ``<PHONE>``, ...).

        Returns:
            The masked text and the number of spans per type found (types not found are absent,
            so a text without PII returns itself and ``{}``).
        """
        spans = self.find(text)
        if not spans:
            return text, {}
        pieces: list[str] = []
        cursor = 0
        for span in spans:
            pieces.append(text[cursor : span.start])
            pieces.append(PLACEHOLDERS[span.type])
            cursor = span.end
        pieces.append(text[cursor:])
        return "".join(pieces), dict(Counter(span.type for span in spans))

    def mask_many(self, texts: Iterable[str]) -> tuple[list[str], dict[str, int]]:
        """Mask every text; the counts are totals over all texts (types never found are absent)."""
        masked: list[str] = []
        totals: Counter[str] = Counter()
        for text in texts:
            new_text, counts = self.mask(text)
            masked.append(new_text)
            totals.update(counts)
        return masked, dict(totals)


@cache
def default_detector() -> PiiDetector:
    """One shared detector of the default types, for texts that reach a store from a client
    (logged requests, feedback): built once, since phone matching setup is not free."""
    return PiiDetector()


def mask_text(text: str | None) -> str | None:
    """``text`` with the default types masked (None stays None); masking twice changes nothing."""
    return None if text is None else default_detector().mask(text)[0]
