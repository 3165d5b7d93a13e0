"""Text repair reports what it changed and leaves clean text alone."""

from __future__ import annotations

import pytest

from lmforge.data.textfix import TextFixer, normalize_whitespace, strip_html, token_count

MOJIBAKE = "doesn\u2019t".encode().decode("cp1252")


@pytest.mark.parametrize(
    ("text", "fixed", "changes"),
    [
        ("plain text", "plain text", []),
        (MOJIBAKE + " work", "doesn't work", ["unicode"]),
        ("two  spaces\tand\na line", "two spaces and a line", ["whitespace"]),
        ("zero\u200bwidth and soft\xadhyphen", "zerowidth and softhyphen", ["whitespace"]),
        ("  padded  ", "padded", ["whitespace"]),
        (
            "family \U0001f468\u200d\U0001f469\u200d\U0001f467 stays",
            "family \U0001f468\u200d\U0001f469\u200d\U0001f467 stays",
            [],
        ),
    ],
)
def test_fixer_repairs_and_names_each_change(text: str, fixed: str, changes: list[str]) -> None:
    assert TextFixer().fix(text) == (fixed, changes)


@pytest.mark.parametrize(
    ("text", "stripped"),
    [
        ("<p>Hello &amp; <b>bye</b></p>", "Hello & bye"),
        ("mail <EMAIL> here", "mail <EMAIL> here"),
        ("<script>alert(1)</script>after", "after"),
        ("a < b and c > d", "a < b and c > d"),
    ],
)
def test_strip_html_keeps_placeholders_and_comparisons(text: str, stripped: str) -> None:
    assert normalize_whitespace(strip_html(text)) == stripped


def test_html_is_left_alone_unless_asked() -> None:
    assert TextFixer().fix("<b>bold</b>")[0] == "<b>bold</b>"
    # Tags become spaces, which the whitespace step then tidies (and reports).
    assert TextFixer(html=True).fix("<b>bold</b>") == ("bold", ["html", "whitespace"])


@pytest.mark.parametrize(("text", "count"), [("", 0), ("one", 1), (" two  words ", 2)])
def test_token_count_is_whitespace_tokens(text: str, count: int) -> None:
    assert token_count(text) == count
