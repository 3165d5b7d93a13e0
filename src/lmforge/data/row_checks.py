"""Per-row cleaning that every task's clean stage applies the same way: text repair with
personal-data masking, and the length limits of the `clean` section.

The classification and the generation clean stages both call these, so a `clean` key means
the same thing whatever the task (generation checks the prompt and the answer of a row).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING

import pandas as pd

from lmforge.config import CleanConfig, ExecutorConfig
from lmforge.data.cleanlog import CleanLog
from lmforge.data.textfix import TextFixer, token_count

if TYPE_CHECKING:
    from lmforge.data.pii import PiiDetector


class Repairer:
    """Unicode / HTML (/ whitespace) repair, then PII detection and masking, of one text."""

    def __init__(self, cfg: CleanConfig, *, whitespace: bool) -> None:
        # Generation keeps whitespace as it is: dialogues and code need their newlines.
        self.fixer = TextFixer(unicode=cfg.fix_unicode, html=cfg.strip_html, whitespace=whitespace)
        self.mask_pii = cfg.pii == "mask"
        self.detector: PiiDetector | None = None
        if cfg.pii != "off":
            from lmforge.data.pii import PiiDetector

            self.detector = PiiDetector(cfg.pii_types, phone_region=cfg.phone_region)

    def repair(self, text: str) -> tuple[str, list[str], dict[str, int]]:
        """The repaired text, the changes made (`pii:<kind>` for a mask) and the PII found.

        Found PII is returned even when not masked: `clean.pii: drop` drops the row instead.
        """
        text, changes = self.fixer.fix(text)
        found: dict[str, int] = {}
        if self.detector is not None:
            masked, found = self.detector.mask(text)
            if found and self.mask_pii:
                text = masked
                changes = [*changes, *(f"pii:{kind}" for kind in sorted(found))]
        return text, changes, found


# One text's repair: (repaired text, changes made, PII found), as `Repairer.repair` returns it.
Repaired = tuple[str, list[str], dict[str, int]]


def repair_texts(cfg: CleanConfig, *, whitespace: bool) -> Callable[[list[str]], list[Repaired]]:
    """`Repairer.repair` over a block of texts, with one Repairer built here (once per Ray
    Data actor: the PII detector's patterns and phone library are loaded once)."""
    repairer = Repairer(cfg, whitespace=whitespace)
    return lambda texts: [repairer.repair(text) for text in texts]


REPAIR_BLOCK = 10_000  # texts repaired at a time in this process


def repaired_in_blocks(
    cfg: CleanConfig, texts: Sequence[str], *, whitespace: bool, executor: ExecutorConfig | None = None
) -> Iterator[Repaired]:
    """`Repairer.repair` of every text in order, a block at a time (so only one block's results
    are held): in this process, or by Ray Data actors with an `executor` (`data/on_ray.py`)."""
    work = partial(repair_texts, cfg, whitespace=whitespace)
    if executor is None:
        repair = work()
        for start in range(0, len(texts), REPAIR_BLOCK):
            yield from repair(list(texts[start : start + REPAIR_BLOCK]))
        return
    from lmforge.data.on_ray import map_blocks

    for block in map_blocks(executor, work, texts):
        yield from block


def masks_at_ingest(cfg: CleanConfig) -> bool:
    """Whether personal data is masked as the files are read (the first stage that writes rows),
    rather than only in the clean stage: the default whenever the clean stage would mask or drop
    it, so no artifact holds a raw value. `clean.keep_raw_pii: true` opts out."""
    return cfg.enabled and cfg.pii != "off" and not cfg.keep_raw_pii


class IngestMasker:
    """Masks personal data in the texts ingest writes, with the clean stage's detector.

    Why mask the repaired text too: text repair (HTML entities, odd Unicode) can reveal a value
    the raw text hides (`john&#64;example.com`); when it does, the row is stored repaired and
    masked, so the clean stage never finds a value that an earlier artifact holds raw.
    Masking is idempotent: placeholders are never detected, and repair keeps them.
    """

    def __init__(self, cfg: CleanConfig, *, whitespace: bool) -> None:
        from lmforge.data.pii import PiiDetector

        self.fixer = TextFixer(unicode=cfg.fix_unicode, html=cfg.strip_html, whitespace=whitespace)
        self.detector = PiiDetector(cfg.pii_types, phone_region=cfg.phone_region)

    def mask(self, text: str) -> tuple[str, dict[str, int]]:
        """The text with its personal data replaced by placeholders, and the counts per type."""
        masked, found = self.detector.mask(text)
        repaired, _ = self.fixer.fix(masked)
        if repaired != masked:
            hidden, more = self.detector.mask(repaired)
            if more:
                masked = hidden
                found = {k: found.get(k, 0) + more.get(k, 0) for k in {*found, *more}}
        return masked, found


def found_label(found: Mapping[str, int]) -> str | None:
    """The `pii` column's value for a row: `email:1 phone:2`, or None when nothing was found."""
    return " ".join(f"{kind}:{n}" for kind, n in sorted(found.items())) or None


def parse_found(value: object) -> dict[str, int]:
    """The counts a `pii` column value holds ({} for None / NaN / empty)."""
    if not isinstance(value, str) or not value:
        return {}
    return {kind: int(n) for kind, n in (part.split(":") for part in value.split())}


def merge_found(*counts: Mapping[str, int]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for found in counts:
        for kind, n in found.items():
            merged[kind] = merged.get(kind, 0) + n
    return merged


def length_filter(
    cfg: CleanConfig,
    name: str,
    frame: pd.DataFrame,
    log: CleanLog,
    columns: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """`frame` without the rows whose texts break `clean.min_chars` / `max_chars` /
    `min_tokens` / `max_tokens`; each removal is logged with the limit it broke.

    `columns` maps each checked column to the word that names it in the reason (default:
    `text`, unnamed); a row goes when any of its checked texts breaks a limit.
    """
    dropped = pd.Series(False, index=frame.index)
    for column, role in (columns or {"text": ""}).items():
        texts = frame[column].fillna("").astype(str)
        chars, tokens = texts.str.len(), texts.map(token_count)
        prefix = f"{role} " if role else ""
        checks = [
            (chars < cfg.min_chars, f"{prefix}shorter than clean.min_chars={cfg.min_chars}"),
            (chars > (cfg.max_chars or float("inf")), f"{prefix}longer than clean.max_chars={cfg.max_chars}"),
            (tokens < cfg.min_tokens, f"{prefix}fewer tokens than clean.min_tokens={cfg.min_tokens}"),
            (
                tokens > (cfg.max_tokens or float("inf")),
                f"{prefix}more tokens than clean.max_tokens={cfg.max_tokens}",
            ),
        ]
        for mask, reason in checks:
            hit = mask & ~dropped
            if hit.any():
                log.remove(name, frame[hit], reason)
                dropped |= hit
    return frame[~dropped].reset_index(drop=True)
