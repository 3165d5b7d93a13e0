"""Text repair before training: Unicode (ftfy), HTML, control characters and whitespace.

Each repair is reported by name, so the clean stage can list what it changed in every
row instead of silently rewriting the user's data.
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass

_TAG = re.compile(r"<(?:/?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?|!--.*?--)>", re.DOTALL)
_BLOCK = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.DOTALL | re.IGNORECASE)
_BREAK = re.compile(r"<(?:br|/p|/div|/li|/h[1-6])\s*/?>", re.IGNORECASE)
_SPACES = re.compile(r"\s+")
# Placeholders written by PII masking look like tags; never strip them.
_PLACEHOLDER = re.compile(r"^<[A-Z_]+>$")


@dataclass(frozen=True)
class TextFixer:
    """Which repairs to apply; `fix` returns the new text and the names of what changed."""

    unicode: bool = True
    html: bool = False
    whitespace: bool = True

    def fix(self, text: str) -> tuple[str, list[str]]:
        changes: list[str] = []
        if self.unicode:
            text = _step(text, _fix_unicode, "unicode", changes)
        if self.html:
            text = _step(text, strip_html, "html", changes)
        if self.whitespace:
            text = _step(text, normalize_whitespace, "whitespace", changes)
        return text, changes


def _step(text: str, function: object, name: str, changes: list[str]) -> str:
    fixed = function(text)  # type: ignore[operator]
    if fixed != text:
        changes.append(name)
    return str(fixed)


def _fix_unicode(text: str) -> str:
    import ftfy

    # ftfy leaves line breaks and spacing to the whitespace step, which reports them apart.
    return str(ftfy.fix_text(text, normalization="NFC", fix_line_breaks=False))


def strip_html(text: str) -> str:
    """Drop script/style blocks and tags (keeping `<EMAIL>`-style placeholders), decode entities."""
    if "<" not in text and "&" not in text:
        return text
    text = _BLOCK.sub(" ", text)
    text = _BREAK.sub("\n", text)
    text = _TAG.sub(lambda m: m.group(0) if _PLACEHOLDER.match(m.group(0)) else " ", text)
    return html.unescape(text)


def normalize_whitespace(text: str) -> str:
    """Control characters become spaces, invisible format characters (zero-width space, BOM,
    soft hyphen) are removed, and runs of whitespace become one space."""
    if text.isascii() and text.isprintable() and "  " not in text and text == text.strip():
        return text  # the common case, without building a new string
    cleaned = "".join(_replacement(c) for c in text)
    return _SPACES.sub(" ", cleaned).strip()


def _replacement(char: str) -> str:
    category = unicodedata.category(char)
    if category in ("Cc", "Zl", "Zp"):
        return " "
    if category == "Cf" and char != "\u200d":  # the zero-width joiner holds emoji sequences together
        return ""
    return char


def token_count(text: str) -> int:
    """Whitespace-separated tokens: model-independent, so length filters need no tokenizer."""
    return len(text.split())
